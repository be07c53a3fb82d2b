//! The digest store: per ConfigMap and Secret, only digests of its values plus the labels and
//! annotations the rules read. Filled by watches; read by admission and the watcher. Readers
//! take a short read lock and never wait on I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::model::{ConfigId, ConfigKind, ValueDigest};
use crate::policy::{self, ConfigPolicy};
use crate::refs::null_default;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::borrow::Cow;
use std::marker::PhantomData;

/// What kreload keeps of one config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigEntry {
    pub labels: BTreeMap<String, String>,
    pub policy: ConfigPolicy,
    /// Every key (of `data` and `binaryData`) with the digest of its value.
    pub keys: BTreeMap<String, ValueDigest>,
}

impl ConfigEntry {
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

/// A value digested as it is deserialized: the value itself is dropped at once, so neither the
/// store nor the deserialized object ever holds config data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestedValue(pub ValueDigest);

impl<'de> Deserialize<'de> for DigestedValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowed when the JSON has no escapes; owned (and dropped right here) when it has.
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(DigestedValue(ValueDigest::of(s.as_bytes())))
    }
}

/// Names the config kind a [`WatchedConfig`] is read as.
pub trait ConfigKindMarker: Clone + std::fmt::Debug + Send + Sync + 'static {
    const KIND: ConfigKind;
    const PLURAL: &'static str;
}

#[derive(Clone, Debug)]
pub struct ConfigMapKind;
impl ConfigKindMarker for ConfigMapKind {
    const KIND: ConfigKind = ConfigKind::ConfigMap;
    const PLURAL: &'static str = "configmaps";
}

#[derive(Clone, Debug)]
pub struct SecretKind;
impl ConfigKindMarker for SecretKind {
    const KIND: ConfigKind = ConfigKind::Secret;
    const PLURAL: &'static str = "secrets";
}

/// A ConfigMap or Secret as kreload watches it: metadata and value digests only.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedConfig<K: ConfigKindMarker> {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub data: BTreeMap<String, DigestedValue>,
    #[serde(default, deserialize_with = "null_default")]
    pub binary_data: BTreeMap<String, DigestedValue>,
    #[serde(skip)]
    kind: PhantomData<K>,
}

impl<K: ConfigKindMarker> WatchedConfig<K> {
    pub fn id(&self) -> ConfigId {
        ConfigId::new(K::KIND, self.metadata.name.clone().unwrap_or_default())
    }

    pub fn entry(self) -> ConfigEntry {
        let annotations = self.metadata.annotations.unwrap_or_default();
        let policy = policy::parse_config(&annotations).value;
        let keys = self
            .data
            .into_iter()
            .chain(self.binary_data)
            .map(|(k, v)| (k, v.0))
            .collect();
        ConfigEntry {
            labels: self.metadata.labels.unwrap_or_default(),
            policy,
            keys,
        }
    }
}

impl<K: ConfigKindMarker> kube::Resource for WatchedConfig<K> {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::KIND.as_str())
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

type Namespace = BTreeMap<ConfigId, Arc<ConfigEntry>>;

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

/// A read view of one namespace, for the pure trigger-set code.
pub trait ConfigView {
    fn get(&self, id: &ConfigId) -> Option<&ConfigEntry>;
    /// Every config of a kind, in name order.
    fn of_kind(&self, kind: ConfigKind) -> Box<dyn Iterator<Item = (&str, &ConfigEntry)> + '_>;
}

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
        let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(id, entry)
    }

    pub fn remove(&self, namespace: &str, id: &ConfigId) -> Option<Arc<ConfigEntry>> {
        let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
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
        let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
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
        let namespaces = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
        namespaces.get(namespace)?.get(id).cloned()
    }

    /// Runs `f` over a read view of one namespace. Keep `f` short and free of I/O.
    pub fn with_namespace<R>(&self, namespace: &str, f: impl FnOnce(&dyn ConfigView) -> R) -> R {
        static EMPTY: Namespace = BTreeMap::new();
        let namespaces = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
        f(namespaces.get(namespace).unwrap_or(&EMPTY))
    }

    /// Number of configs held, by kind.
    pub fn len(&self, kind: ConfigKind) -> usize {
        let namespaces = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
        namespaces
            .values()
            .map(|ns| ns.keys().filter(|id| id.kind == kind).count())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
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
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(keys: &[(&str, &str)]) -> ConfigEntry {
        ConfigEntry {
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn lean_config_keeps_digests_labels_and_policy_only() {
        let cfg: WatchedConfig<SecretKind> = serde_json::from_value(json!({
            "metadata": {"name": "s", "labels": {"a": "b"}, "annotations": {"reloader.stakater.com/match": "true"}},
            "data": {"password": "aHVudGVyMg==", "escaped": "a\"b"},
            "binaryData": {"blob": "AAE="},
            "type": "Opaque"
        }))
        .unwrap();
        assert_eq!(cfg.id(), ConfigId::new(ConfigKind::Secret, "s"));
        let e = cfg.entry();
        assert_eq!(e.keys.len(), 3);
        assert_eq!(e.keys["password"], ValueDigest::of(b"aHVudGVyMg=="));
        assert_eq!(e.keys["escaped"], ValueDigest::of(b"a\"b"));
        assert!(e.policy.matched);
        assert_eq!(e.labels["a"], "b");
        assert!(!format!("{e:?}").contains("aHVudGVyMg"));
    }

    #[test]
    fn changed_keys_lists_added_removed_and_changed() {
        let old = entry(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let new = entry(&[("a", "1"), ("b", "changed"), ("d", "4")]);
        assert_eq!(old.changed_keys(&new), vec!["b", "c", "d"]);
        assert!(old.changed_keys(&old).is_empty());
    }

    #[test]
    fn namespaces_and_kinds_are_separate() {
        let store = DigestStore::new();
        store.upsert(
            "a",
            ConfigId::new(ConfigKind::ConfigMap, "x"),
            Arc::new(entry(&[("k", "1")])),
        );
        store.upsert(
            "a",
            ConfigId::new(ConfigKind::Secret, "x"),
            Arc::new(entry(&[("k", "2")])),
        );
        store.upsert(
            "a",
            ConfigId::new(ConfigKind::Secret, "y"),
            Arc::new(entry(&[])),
        );
        store.upsert(
            "b",
            ConfigId::new(ConfigKind::ConfigMap, "x"),
            Arc::new(entry(&[])),
        );
        assert_eq!(store.len(ConfigKind::ConfigMap), 2);
        assert_eq!(store.len(ConfigKind::Secret), 2);
        let secrets: Vec<String> = store.with_namespace("a", |v| {
            v.of_kind(ConfigKind::Secret)
                .map(|(n, _)| n.to_owned())
                .collect()
        });
        assert_eq!(secrets, vec!["x", "y"]);
        let cms: Vec<String> = store.with_namespace("a", |v| {
            v.of_kind(ConfigKind::ConfigMap)
                .map(|(n, _)| n.to_owned())
                .collect()
        });
        assert_eq!(cms, vec!["x"]);
        assert!(store.with_namespace("none", |v| v.of_kind(ConfigKind::Secret).next().is_none()));
        assert!(
            store
                .remove("b", &ConfigId::new(ConfigKind::ConfigMap, "x"))
                .is_some()
        );
        assert_eq!(store.len(ConfigKind::ConfigMap), 1);
    }

    #[test]
    fn replace_kind_drops_what_disappeared() {
        let store = DigestStore::new();
        store.upsert(
            "a",
            ConfigId::new(ConfigKind::ConfigMap, "gone"),
            Arc::new(entry(&[])),
        );
        store.upsert(
            "a",
            ConfigId::new(ConfigKind::Secret, "kept"),
            Arc::new(entry(&[])),
        );
        store.replace_kind(
            ConfigKind::ConfigMap,
            None,
            vec![("b".into(), "new".into(), entry(&[]))],
        );
        assert!(
            store
                .get("a", &ConfigId::new(ConfigKind::ConfigMap, "gone"))
                .is_none()
        );
        assert!(
            store
                .get("a", &ConfigId::new(ConfigKind::Secret, "kept"))
                .is_some()
        );
        assert!(
            store
                .get("b", &ConfigId::new(ConfigKind::ConfigMap, "new"))
                .is_some()
        );
    }

    #[test]
    fn replace_kind_in_one_namespace_leaves_the_others() {
        let store = DigestStore::new();
        let cm = |n: &str| ConfigId::new(ConfigKind::ConfigMap, n);
        store.upsert("a", cm("x"), Arc::new(entry(&[])));
        store.upsert("b", cm("y"), Arc::new(entry(&[])));
        let changed = store.replace_kind(ConfigKind::ConfigMap, Some("a"), vec![]);
        assert_eq!(changed.len(), 1);
        assert!(store.get("a", &cm("x")).is_none());
        assert!(store.get("b", &cm("y")).is_some());
    }

    #[test]
    fn synced_only_after_both_kinds() {
        let store = DigestStore::new();
        assert!(!store.is_synced());
        store.mark_synced(ConfigKind::ConfigMap);
        assert!(!store.is_synced());
        store.mark_synced(ConfigKind::Secret);
        assert!(store.is_synced());
    }
}
