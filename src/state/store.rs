//! The digest store: per ConfigMap and Secret, only digests of its values plus the labels and
//! annotations the rules read. Filled by watches; read by admission and the watcher. Readers
//! take a short read lock and never wait on I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::domain::config::{ConfigId, ConfigKind};
use crate::domain::entry::{ConfigEntry, ConfigView, Namespace};

/// A difference found by a re-list: namespace, config, entry before, entry after.
pub type Changed = (
    String,
    ConfigId,
    Option<Arc<ConfigEntry>>,
    Option<Arc<ConfigEntry>>,
);

/// Configs by namespace.
#[derive(Default)]
pub struct DigestStore {
    namespaces: RwLock<HashMap<String, Namespace>>,
    synced: [AtomicBool; 2],
}

impl DigestStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a config; returns the previous entry.
    pub fn upsert(
        &self,
        namespace: &str,
        id: ConfigId,
        entry: Arc<ConfigEntry>,
    ) -> Option<Arc<ConfigEntry>> {
        let mut namespaces = self.namespaces.write();
        namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(id, entry)
    }

    pub fn remove(&self, namespace: &str, id: &ConfigId) -> Option<Arc<ConfigEntry>> {
        let mut namespaces = self.namespaces.write();
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
        let mut namespaces = self.namespaces.write();
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
            let entry = Arc::new(entry);
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
        let namespaces = self.namespaces.read();
        namespaces.get(namespace)?.get(id).cloned()
    }

    /// Runs `f` over a read view of one namespace. Keep `f` short and free of I/O.
    pub fn with_namespace<R>(&self, namespace: &str, f: impl FnOnce(&dyn ConfigView) -> R) -> R {
        static EMPTY: Namespace = BTreeMap::new();
        let namespaces = self.namespaces.read();
        f(namespaces.get(namespace).unwrap_or(&EMPTY))
    }

    /// Number of configs held, by kind.
    pub fn len(&self, kind: ConfigKind) -> usize {
        let namespaces = self.namespaces.read();
        namespaces
            .values()
            .map(|ns| ns.keys().filter(|id| id.kind == kind).count())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.read().is_empty()
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
