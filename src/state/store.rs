//! The digest store: per ConfigMap and Secret, only digests of its values plus the labels and
//! annotations the rules read. Filled by watches; read by admission and the watcher. Readers
//! take a short read lock and never wait on I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::domain::config::{ConfigId, ConfigKind};
use crate::domain::entry::{ConfigEntry, ConfigView, KeyNames, Namespace};

/// A difference found by a re-list: namespace, config, entry before, entry after.
pub type Changed = (
    String,
    ConfigId,
    Option<Arc<ConfigEntry>>,
    Option<Arc<ConfigEntry>>,
);

/// Configs by namespace.
pub struct DigestStore {
    inner: RwLock<Inner>,
    synced: [AtomicBool; 2],
    /// Whether entries keep their labels: only a resource label selector reads them, and a
    /// config's labels take about as much memory as the rest of its entry.
    keep_labels: bool,
}

impl Default for DigestStore {
    fn default() -> Self {
        DigestStore {
            inner: RwLock::default(),
            synced: Default::default(),
            keep_labels: true,
        }
    }
}

#[derive(Default)]
struct Inner {
    namespaces: HashMap<String, Namespace>,
    /// Key names shared by every entry held (entries come in with names of their own).
    names: KeyNames,
}

impl DigestStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose entries keep no labels, for when no rule reads them (no resource label
    /// selector): entries read from it have empty labels.
    pub fn without_labels() -> Self {
        DigestStore {
            keep_labels: false,
            ..Self::default()
        }
    }

    /// What the store keeps of an entry: key names shared, labels only if kept.
    fn admit(&self, names: &mut KeyNames, entry: Arc<ConfigEntry>) -> Arc<ConfigEntry> {
        if self.keep_labels || entry.labels.is_empty() {
            return names.share(entry);
        }
        let mut owned = Arc::unwrap_or_clone(entry);
        owned.labels = BTreeMap::new();
        Arc::new(names.share_owned(owned))
    }

    /// Records a config; returns the previous entry.
    pub fn upsert(
        &self,
        namespace: &str,
        id: ConfigId,
        entry: Arc<ConfigEntry>,
    ) -> Option<Arc<ConfigEntry>> {
        self.upsert_kept(namespace, id, entry).0
    }

    /// Records a config; returns the previous entry and the one kept (without labels when the
    /// store drops them), so that a caller compares like with like.
    pub fn upsert_kept(
        &self,
        namespace: &str,
        id: ConfigId,
        entry: Arc<ConfigEntry>,
    ) -> (Option<Arc<ConfigEntry>>, Arc<ConfigEntry>) {
        let mut inner = self.inner.write();
        let entry = self.admit(&mut inner.names, entry);
        let old = inner
            .namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(id, entry.clone());
        (old, entry)
    }

    pub fn remove(&self, namespace: &str, id: &ConfigId) -> Option<Arc<ConfigEntry>> {
        let mut inner = self.inner.write();
        let namespaces = &mut inner.namespaces;
        let ns = namespaces.get_mut(namespace)?;
        let old = ns.remove(id);
        if ns.is_empty() {
            namespaces.remove(namespace);
        }
        old
    }

    /// Replaces every config of one kind (after a full re-list) and returns what differs from
    /// before, as (namespace, id, old, new), so a watcher can act on what it missed.
    pub fn replace_kind(
        &self,
        kind: ConfigKind,
        scope: Option<&str>,
        fresh: Vec<(String, String, ConfigEntry)>,
    ) -> Vec<Changed> {
        let mut inner = self.inner.write();
        let Inner { namespaces, names } = &mut *inner;
        let mut old: HashMap<(String, ConfigId), Arc<ConfigEntry>> = HashMap::new();
        for (namespace, ns) in namespaces.iter_mut() {
            if scope.is_some_and(|only| only != namespace) {
                continue;
            }
            let ids: Vec<ConfigId> = ns.keys().filter(|id| id.kind == kind).cloned().collect();
            for id in ids {
                let entry = ns.remove(&id).expect("listed above");
                old.insert((namespace.clone(), id), entry);
            }
        }
        let mut changed = Vec::new();
        for (namespace, name, entry) in fresh {
            let id = ConfigId::new(kind, name);
            let mut entry = entry;
            if !self.keep_labels {
                entry.labels = BTreeMap::new();
            }
            let entry = Arc::new(names.share_owned(entry));
            let before = old.remove(&(namespace.clone(), id.clone()));
            if before.as_deref() != Some(&entry) {
                changed.push((namespace.clone(), id.clone(), before, Some(entry.clone())));
            }
            namespaces.entry(namespace).or_default().insert(id, entry);
        }
        changed.extend(
            old.into_iter()
                .map(|((namespace, id), before)| (namespace, id, Some(before), None)),
        );
        namespaces.retain(|_, ns| !ns.is_empty());
        changed
    }

    pub fn get(&self, namespace: &str, id: &ConfigId) -> Option<Arc<ConfigEntry>> {
        let inner = self.inner.read();
        inner.namespaces.get(namespace)?.get(id).cloned()
    }

    /// Runs `f` over a read view of one namespace. Keep `f` short and free of I/O.
    pub fn with_namespace<R>(&self, namespace: &str, f: impl FnOnce(&dyn ConfigView) -> R) -> R {
        static EMPTY: Namespace = BTreeMap::new();
        let inner = self.inner.read();
        f(inner.namespaces.get(namespace).unwrap_or(&EMPTY))
    }

    /// Number of configs held, by kind.
    pub fn len(&self, kind: ConfigKind) -> usize {
        let inner = self.inner.read();
        inner
            .namespaces
            .values()
            .map(|ns| ns.keys().filter(|id| id.kind == kind).count())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.read().namespaces.is_empty()
    }

    pub fn mark_synced(&self, kind: ConfigKind) {
        self.synced[kind as usize].store(true, Ordering::Release);
    }

    /// True once both kinds have been fully listed.
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests;
