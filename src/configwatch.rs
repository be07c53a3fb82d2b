//! Watches ConfigMaps and Secrets into the digest store, and reports each change of data or of
//! the annotations the rules read to whoever listens (the watcher).

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::model::ConfigId;
use crate::store::{ConfigEntry, ConfigKindMarker, DigestStore, WatchedConfig};
use crate::sync::{SyncSet, watch_name};

/// One config that appeared, changed or disappeared.
#[derive(Clone, Debug)]
pub struct ConfigChange {
    pub namespace: String,
    pub id: ConfigId,
    pub old: Option<Arc<ConfigEntry>>,
    pub new: Option<Arc<ConfigEntry>>,
}

/// Small list pages bound the memory a re-list takes: a page of Secrets is parsed (and digested)
/// at once, and Secrets may be up to 1 MiB each.
const PAGE_SIZE: u32 = 50;

/// Keeps the store's view of one config kind current, forever, in one namespace (`scope`) or in
/// all. Watch errors are retried with backoff by the watcher; after every re-list the store's
/// part is replaced, and differences from what it held are reported as changes, so nothing missed
/// during a disconnect is lost.
pub async fn run<K: ConfigKindMarker>(
    client: Client,
    scope: Option<String>,
    store: Arc<DigestStore>,
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
                metrics.count(
                    "kreload_watch_events_total",
                    &[("kind", K::KIND.as_str())],
                    1,
                );
                let namespace = obj.metadata.namespace.clone().unwrap_or_default();
                let name = obj.metadata.name.clone().unwrap_or_default();
                relist.push((namespace, name, obj.entry()));
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
                metrics.count(
                    "kreload_watch_events_total",
                    &[("kind", K::KIND.as_str())],
                    1,
                );
                let namespace = obj.metadata.namespace.clone().unwrap_or_default();
                let id = obj.id();
                let entry = Arc::new(obj.entry());
                let old = store.upsert(&namespace, id.clone(), entry.clone());
                report(&namespace, &id, old, Some(entry));
            }
            watcher::Event::Delete(obj) => {
                metrics.count(
                    "kreload_watch_events_total",
                    &[("kind", K::KIND.as_str())],
                    1,
                );
                let namespace = obj.metadata.namespace.clone().unwrap_or_default();
                let id = obj.id();
                let old = store.remove(&namespace, &id);
                report(&namespace, &id, old, None);
            }
        }
    }
}
