//! The Secrets Store CSI mounts kreload knows (one per SecretProviderClassPodStatus), kept so
//! that each status event can be told apart from a newer write, and the versions of each
//! SecretProviderClass they make, kept in the digest store like any config. The rules are in
//! [`crate::domain::csi`]; this holds the state and applies them under one lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::domain::config::{ConfigId, ConfigKind};
use crate::domain::csi::{self, Mount};
use crate::domain::entry::KeyDigests;
use crate::state::store::{Changed, DigestStore};

/// Mounts by namespace, then by status name.
#[derive(Default)]
pub struct Mounts {
    inner: Mutex<HashMap<String, BTreeMap<String, Mount>>>,
}

fn class_id(class: &str) -> ConfigId {
    ConfigId::new(ConfigKind::SecretProviderClass, class)
}

/// Sets a class's versions in the store (`None`: removes it); the change, if any.
fn set(
    store: &DigestStore,
    namespace: &str,
    class: &str,
    versions: Option<&KeyDigests>,
) -> Option<Changed> {
    let id = class_id(class);
    let (old, new) = match versions {
        Some(v) => {
            let (old, kept) = store.upsert_kept(namespace, id.clone(), Arc::new(csi::entry(v)));
            (old, Some(kept))
        }
        None => (store.remove(namespace, &id), None),
    };
    (old.as_deref() != new.as_deref()).then(|| (namespace.to_owned(), id, old, new))
}

impl Mounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of statuses known.
    pub fn len(&self) -> usize {
        self.inner.lock().values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A status added or updated: the class changes it makes (none, or one; two if the status
    /// now names another class than before and that one is left with no status).
    pub fn apply(
        &self,
        store: &DigestStore,
        namespace: &str,
        name: &str,
        mount: Mount,
    ) -> Vec<Changed> {
        let mut inner = self.inner.lock();
        let ns = inner.entry(namespace.to_owned()).or_default();
        let before = ns.insert(name.to_owned(), mount.clone());
        let mut out = Vec::new();
        let current = store.get(namespace, &class_id(&mount.class));
        if let Some(v) =
            csi::after_apply(before.as_ref(), &mount, current.as_deref().map(|e| &e.keys))
        {
            out.extend(set(store, namespace, &mount.class, Some(v)));
        }
        if let Some(b) = before.filter(|b| b.class != mount.class)
            && !ns.values().any(|m| m.class == b.class)
        {
            out.extend(set(store, namespace, &b.class, None));
        }
        out
    }

    /// A status deleted: its class is gone when no other status names it.
    pub fn remove(&self, store: &DigestStore, namespace: &str, name: &str) -> Option<Changed> {
        let mut inner = self.inner.lock();
        let ns = inner.get_mut(namespace)?;
        let gone = ns.remove(name)?;
        let orphaned = !ns.values().any(|m| m.class == gone.class);
        if ns.is_empty() {
            inner.remove(namespace);
        }
        if orphaned {
            set(store, namespace, &gone.class, None)
        } else {
            None
        }
    }

    /// A full listing, in one namespace (`scope`) or all: replaces what was known there and
    /// returns the class changes it makes.
    pub fn replace(
        &self,
        store: &DigestStore,
        scope: Option<&str>,
        fresh: Vec<(String, String, Mount)>,
    ) -> Vec<Changed> {
        let mut inner = self.inner.lock();
        let mut by_ns: HashMap<String, BTreeMap<String, Mount>> = HashMap::new();
        for (namespace, name, mount) in fresh {
            by_ns.entry(namespace).or_default().insert(name, mount);
        }
        let mut namespaces: Vec<String> = inner
            .keys()
            .filter(|ns| scope.is_none_or(|only| only == ns.as_str()))
            .cloned()
            .collect();
        namespaces.extend(by_ns.keys().filter(|ns| !inner.contains_key(*ns)).cloned());
        // Classes in the store with no status known (none should be): gone after a listing.
        let mut out = Vec::new();
        for namespace in namespaces {
            let known = inner.remove(&namespace).unwrap_or_default();
            let fresh = by_ns.remove(&namespace).unwrap_or_default();
            let current: BTreeMap<String, KeyDigests> = store.with_namespace(&namespace, |view| {
                view.of_kind(ConfigKind::SecretProviderClass)
                    .map(|(class, e)| (class.to_owned(), e.keys.clone()))
                    .collect()
            });
            for (class, versions) in csi::after_listing(&known, &fresh, &current) {
                out.extend(set(store, &namespace, &class, versions.as_ref()));
            }
            if !fresh.is_empty() {
                inner.insert(namespace, fresh);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
