//! What kreload keeps of one config (the labels and annotations the rules read, and digests of
//! its values, never the values), a read view of one namespace's configs, and the change the
//! watcher acts on.

use std::collections::BTreeMap;
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
    pub keys: BTreeMap<String, ValueDigest>,
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
