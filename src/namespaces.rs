//! Which namespaces kreload acts in: `--namespaces`, `--namespaces-to-ignore` and
//! `--namespace-selector` (the last one needs a watch of Namespace labels).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, RwLock};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::selector::Selector;

#[derive(Debug, Default)]
pub struct NamespaceFilter {
    only: BTreeSet<String>,
    ignore: BTreeSet<String>,
    selector: Option<Selector>,
    /// Namespaces whose labels match the selector (kept by [`watch_selected`]).
    selected: RwLock<HashSet<String>>,
}

impl NamespaceFilter {
    pub fn new(
        only: BTreeSet<String>,
        ignore: BTreeSet<String>,
        selector: Option<Selector>,
    ) -> Self {
        NamespaceFilter {
            only,
            ignore,
            selector,
            selected: Default::default(),
        }
    }

    pub fn is_watched(&self, namespace: &str) -> bool {
        (self.only.is_empty() || self.only.contains(namespace))
            && !self.ignore.contains(namespace)
            && (self.selector.is_none()
                || self
                    .selected
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(namespace))
    }

    /// The one namespace to watch when `--namespaces` names exactly one (watches can then be
    /// namespaced instead of cluster-wide).
    pub fn single(&self) -> Option<&str> {
        (self.only.len() == 1)
            .then(|| self.only.first().map(String::as_str))
            .flatten()
    }

    /// `--namespaces`, for narrowing the webhook configurations in local mode.
    pub fn only(&self) -> &BTreeSet<String> {
        &self.only
    }

    pub fn has_selector(&self) -> bool {
        self.selector.is_some()
    }

    #[cfg(test)]
    fn select(&self, names: &[&str]) {
        *self.selected.write().unwrap() = names.iter().map(|s| s.to_string()).collect();
    }
}

/// Keeps the set of namespaces matching `--namespace-selector` current; `synced` turns true after
/// the first listing.
pub async fn watch_selected(
    client: Client,
    filter: Arc<NamespaceFilter>,
    synced: watch::Sender<bool>,
) {
    let Some(selector) = filter.selector.clone() else {
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
                *filter.selected.write().unwrap_or_else(|e| e.into_inner()) =
                    std::mem::take(&mut relist);
                let _ = synced.send(true);
            }
            Ok(Some(watcher::Event::Apply(ns))) => {
                filter
                    .selected
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(ns.name_any());
            }
            Ok(Some(watcher::Event::Delete(ns))) => {
                filter
                    .selected
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&ns.name_any());
            }
            Ok(None) => break,
            Err(error) => tracing::warn!(%error, "namespace watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_ignore_and_selector_combine() {
        assert!(NamespaceFilter::default().is_watched("any"));
        let f = NamespaceFilter::new(set(&["a", "b"]), set(&["b"]), None);
        assert!(f.is_watched("a") && !f.is_watched("b") && !f.is_watched("c"));
        let f = NamespaceFilter::new(set(&[]), set(&["x"]), Some("team=a".parse().unwrap()));
        f.select(&["s", "x"]);
        assert!(f.is_watched("s") && !f.is_watched("x") && !f.is_watched("t"));
        assert_eq!(
            NamespaceFilter::new(set(&["a"]), set(&[]), None).single(),
            Some("a")
        );
    }
}
