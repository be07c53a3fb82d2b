//! Watches ConfigMaps and Secrets into the digest store, and reports each change of data or of
//! the annotations the rules read to whoever listens (the watcher).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::domain::annotations::AnnotationNames;
use crate::domain::config::{ConfigId, ConfigKind, DigestedValue};
use crate::domain::entry::{ConfigChange, ConfigEntry};
use crate::domain::policy::Annotations;
use crate::domain::refs::null_default;
use crate::metrics::Metrics;
use crate::state::store::DigestStore;
use crate::watch::sync::{SyncSet, watch_name};

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

    /// What the store keeps of it (annotations read under `names`).
    pub fn entry(self, names: &AnnotationNames) -> ConfigEntry {
        ConfigEntry::new(
            names,
            self.metadata.labels.unwrap_or_default(),
            self.metadata
                .annotations
                .as_ref()
                .unwrap_or(&Annotations::new()),
            self.data
                .into_iter()
                .chain(self.binary_data)
                .map(|(k, v)| (k, v.0)),
        )
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

/// Small list pages bound the memory a re-list takes: a page of Secrets is parsed (and digested)
/// at once, and Secrets may be up to 1 MiB each.
const PAGE_SIZE: u32 = 50;

/// Keeps the store's view of one config kind current, forever, in one namespace (`scope`) or in
/// all. Watch errors are retried with backoff by the watcher; after every re-list the store's
/// part is replaced, and differences from what it held are reported as changes, so nothing missed
/// during a disconnect is lost.
#[allow(clippy::too_many_arguments)]
pub async fn run<K: ConfigKindMarker>(
    client: Client,
    scope: Option<String>,
    store: Arc<DigestStore>,
    names: Arc<AnnotationNames>,
    metrics: Arc<Metrics>,
    label_selector: Option<String>,
    changes: Option<mpsc::UnboundedSender<ConfigChange>>,
    sync: SyncSet,
) {
    let api: Api<WatchedConfig<K>> = match &scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let name = watch_name(K::KIND.as_str(), scope.as_deref());
    let mut config = watcher::Config::default().page_size(PAGE_SIZE);
    if let Some(sel) = &label_selector {
        config = config.labels(sel);
    }
    let report = |namespace: &str,
                  id: &ConfigId,
                  old: Option<Arc<ConfigEntry>>,
                  new: Option<Arc<ConfigEntry>>| {
        if old.as_deref() == new.as_deref() {
            return;
        }
        if let Some(tx) = &changes {
            let _ = tx.send(ConfigChange {
                namespace: namespace.to_owned(),
                id: id.clone(),
                old,
                new,
            });
        }
    };
    let mut relist: Vec<(String, String, ConfigEntry)> = Vec::new();
    let mut listed_once = false;
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(watch = name, %error, "watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => relist.clear(),
            watcher::Event::InitApply(obj) => {
                metrics.watch_event(K::KIND.as_str());
                let namespace = obj.metadata.namespace.clone().unwrap_or_default();
                let name = obj.metadata.name.clone().unwrap_or_default();
                relist.push((namespace, name, obj.entry(&names)));
            }
            watcher::Event::InitDone => {
                let fresh = std::mem::take(&mut relist);
                for (namespace, id, old, new) in
                    store.replace_kind(K::KIND, scope.as_deref(), fresh)
                {
                    // The first listing is the baseline, not a change.
                    if listed_once {
                        report(&namespace, &id, old, new);
                    }
                }
                listed_once = true;
                sync.mark(&name);
                tracing::info!(watch = name, "configs listed");
            }
            watcher::Event::Apply(obj) => {
                metrics.watch_event(K::KIND.as_str());
                let namespace = obj.metadata.namespace.clone().unwrap_or_default();
                let id = obj.id();
                let (old, kept) =
                    store.upsert_kept(&namespace, id.clone(), Arc::new(obj.entry(&names)));
                report(&namespace, &id, old, Some(kept));
            }
            watcher::Event::Delete(obj) => {
                metrics.watch_event(K::KIND.as_str());
                let namespace = obj.metadata.namespace.clone().unwrap_or_default();
                let id = obj.id();
                let old = store.remove(&namespace, &id);
                report(&namespace, &id, old, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::ValueDigest;
    use serde_json::json;

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
        let e = cfg.entry(&AnnotationNames::default());
        assert_eq!(e.keys.len(), 3);
        assert_eq!(e.keys["password"], ValueDigest::of(b"aHVudGVyMg=="));
        assert_eq!(e.keys["escaped"], ValueDigest::of(b"a\"b"));
        assert!(e.policy.matched);
        assert_eq!(e.labels["a"], "b");
        assert!(!format!("{e:?}").contains("aHVudGVyMg"));
    }
}
