//! Keeps the namespace filter's view of `--namespace-selector` current.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::state::namespaces::NamespaceFilter;

/// Keeps the set of namespaces matching `--namespace-selector` current; `synced` turns true after
/// the first listing.
pub async fn watch_selected(
    client: Client,
    filter: Arc<NamespaceFilter>,
    synced: watch::Sender<bool>,
) {
    let Some(selector) = filter.selector().cloned() else {
        let _ = synced.send(true);
        return;
    };
    let api: Api<Namespace> = Api::all(client);
    let config = watcher::Config::default().labels(&selector.to_string());
    let mut relist = HashSet::new();
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        match stream.try_next().await {
            Ok(Some(watcher::Event::Init)) => relist.clear(),
            Ok(Some(watcher::Event::InitApply(ns))) => {
                relist.insert(ns.name_any());
            }
            Ok(Some(watcher::Event::InitDone)) => {
                filter.set_selected(std::mem::take(&mut relist));
                let _ = synced.send(true);
            }
            Ok(Some(watcher::Event::Apply(ns))) => {
                filter.set_matching(&ns.name_any(), true);
            }
            Ok(Some(watcher::Event::Delete(ns))) => {
                filter.set_matching(&ns.name_any(), false);
            }
            Ok(None) => break,
            Err(error) => tracing::warn!(%error, "namespace watch failed; retrying"),
        }
    }
}
