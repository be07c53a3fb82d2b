//! What kreload keeps of one config (the labels and annotations the rules read, and digests of
//! its values, never the values), a read view of one namespace's configs, and the change the
//! watcher acts on.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::domain::annotations::AnnotationNames;
use crate::domain::config::{ConfigId, ConfigKind, ValueDigest};
use crate::domain::policy::{self, Annotations, ConfigPolicy};

/// What kreload keeps of one config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigEntry {
    pub labels: BTreeMap<String, String>,
    pub policy: ConfigPolicy,
    /// Every key (of `data` and `binaryData`) with the digest of its value.
    pub keys: KeyDigests,
}

impl ConfigEntry {
    /// An entry from a config's labels, annotations (read under `names`) and value digests
    /// (`data` and `binaryData`).
    pub fn new(
        names: &AnnotationNames,
        labels: BTreeMap<String, String>,
        annotations: &Annotations,
        keys: impl IntoIterator<Item = (String, ValueDigest)>,
    ) -> Self {
        ConfigEntry {
            labels,
            policy: policy::parse_config(names, annotations).value,
            keys: keys.into_iter().collect(),
        }
    }

    /// The keys whose digests differ between two versions (added, removed or changed).
    pub fn changed_keys<'a>(&'a self, newer: &'a ConfigEntry) -> Vec<&'a str> {
        let mut changed: Vec<&str> = Vec::new();
        for (k, d) in &self.keys {
            if newer.keys.get(k) != Some(d) {
                changed.push(k);
            }
        }
        for k in newer.keys.keys() {
            if !self.keys.contains_key(k) {
                changed.push(k);
            }
        }
        changed.sort_unstable();
        changed
    }
}

/// A key name, shared by every config that has a key of that name (see [`KeyNames`]).
pub type KeyName = Arc<String>;

/// The keys of one config with the digests of their values, sorted by key: one allocation per
/// config (a B-tree map takes a node of eleven slots even for one key, and most configs have one
/// to three), with key names that configs can share.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyDigests(Box<[(KeyName, ValueDigest)]>);

impl KeyDigests {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&ValueDigest> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> + '_ {
        self.0.iter().map(|(k, _)| k.as_ref())
    }

    /// (key, digest) pairs, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ValueDigest)> + '_ {
        self.0.iter().map(|(k, d)| (k.as_ref(), d))
    }

    /// Adds or replaces one key (for building test data; the watch builds entries whole).
    pub fn insert(&mut self, key: String, digest: ValueDigest) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        match v.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => v[i].1 = digest,
            Err(i) => v.insert(i, (Arc::new(key), digest)),
        }
        self.0 = v.into_boxed_slice();
    }

    /// True when every key name is the one `names` holds.
    fn is_interned_in(&self, names: &KeyNames) -> bool {
        self.0
            .iter()
            .all(|(k, _)| names.held.get(k).is_some_and(|n| Arc::ptr_eq(n, k)))
    }

    /// The same keys, with names shared through `names`.
    fn interned(&self, names: &mut KeyNames) -> KeyDigests {
        KeyDigests(self.0.iter().map(|(k, d)| (names.intern(k), *d)).collect())
    }

    /// Shares the names through `names` in place (no new slice).
    fn intern_in_place(&mut self, names: &mut KeyNames) {
        for (k, _) in self.0.iter_mut() {
            *k = names.intern(k);
        }
    }
}

impl FromIterator<(String, ValueDigest)> for KeyDigests {
    /// As a map would collect them: sorted, and a repeated key keeps its last digest.
    fn from_iter<I: IntoIterator<Item = (String, ValueDigest)>>(iter: I) -> Self {
        let mut v: Vec<(KeyName, ValueDigest)> =
            iter.into_iter().map(|(k, d)| (Arc::new(k), d)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                std::mem::swap(later, kept);
                true
            } else {
                false
            }
        });
        KeyDigests(v.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a KeyDigests {
    type Item = (&'a String, &'a ValueDigest);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (KeyName, ValueDigest)>,
        fn(&'a (KeyName, ValueDigest)) -> (&'a String, &'a ValueDigest),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, d)| (k.as_ref(), d))
    }
}

impl std::ops::Index<&str> for KeyDigests {
    type Output = ValueDigest;

    fn index(&self, key: &str) -> &ValueDigest {
        self.get(key).expect("no such key")
    }
}

impl fmt::Debug for KeyDigests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The key names in use, each held once: most configs repeat names that others use too
/// (`ca.crt`, `password`, `application.yaml`, a chart's keys in every release).
#[derive(Default)]
pub struct KeyNames {
    held: HashSet<KeyName>,
    /// How many names were held after the last sweep.
    swept_at: usize,
}

impl KeyNames {
    fn intern(&mut self, name: &KeyName) -> KeyName {
        match self.held.get(name) {
            Some(held) => held.clone(),
            None => {
                self.held.insert(name.clone());
                name.clone()
            }
        }
    }

    /// `entry` with its key names shared through these names (the same `Arc` if they already
    /// are). Names that no config uses any more are dropped once the set has doubled since the
    /// last time, so it stays within twice the names in use.
    pub fn share(&mut self, entry: Arc<ConfigEntry>) -> Arc<ConfigEntry> {
        if entry.keys.is_interned_in(self) {
            return entry;
        }
        let keys = entry.keys.interned(self);
        self.sweep_if_grown();
        match Arc::try_unwrap(entry) {
            Ok(mut owned) => {
                owned.keys = keys;
                Arc::new(owned)
            }
            Err(shared) => Arc::new(ConfigEntry {
                labels: shared.labels.clone(),
                policy: shared.policy,
                keys,
            }),
        }
    }

    /// Shares the key names of an entry not shared yet, in place.
    pub fn share_owned(&mut self, mut entry: ConfigEntry) -> ConfigEntry {
        entry.keys.intern_in_place(self);
        self.sweep_if_grown();
        entry
    }

    /// Sweeping only when the set has doubled keeps its cost amortised (a constant per name
    /// added) and the set within about twice the names in use.
    fn sweep_if_grown(&mut self) {
        if self.held.len() >= (2 * self.swept_at).max(64) {
            self.held.retain(|name| Arc::strong_count(name) > 1);
            self.swept_at = self.held.len();
        }
    }

    /// Number of distinct names held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A read view of one namespace, for the pure trigger-set and stamp code.
pub trait ConfigView {
    fn get(&self, id: &ConfigId) -> Option<&ConfigEntry>;
    /// Every config of a kind, in name order.
    fn of_kind(&self, kind: ConfigKind) -> Box<dyn Iterator<Item = (&str, &ConfigEntry)> + '_>;
}

/// One namespace's configs, by id.
pub type Namespace = BTreeMap<ConfigId, Arc<ConfigEntry>>;

impl ConfigView for Namespace {
    fn get(&self, id: &ConfigId) -> Option<&ConfigEntry> {
        BTreeMap::get(self, id).map(Arc::as_ref)
    }

    fn of_kind(&self, kind: ConfigKind) -> Box<dyn Iterator<Item = (&str, &ConfigEntry)> + '_> {
        let start = ConfigId::new(kind, "");
        Box::new(
            self.range(start..)
                .take_while(move |(id, _)| id.kind == kind)
                .map(|(id, e)| (id.name.as_str(), e.as_ref())),
        )
    }
}

/// One config that appeared, changed or disappeared (`None`: it does not exist).
#[derive(Clone, Debug)]
pub struct ConfigChange {
    pub namespace: String,
    pub id: ConfigId,
    pub old: Option<Arc<ConfigEntry>>,
    pub new: Option<Arc<ConfigEntry>>,
}

#[cfg(test)]
mod tests;
