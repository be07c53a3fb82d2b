//! Watches the Secrets Store CSI driver's SecretProviderClassPodStatuses (with
//! `--enable-csi-integration`, when the API is served) into the mounts and the digest store,
//! and reports each change of the versions a SecretProviderClass mounts to whoever listens (the
//! watcher). The rules are [`crate::domain::csi`]'s.

use std::borrow::Cow;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::domain::csi::{self, Mount, PodStatus};
use crate::domain::entry::ConfigChange;
use crate::domain::refs::null_default;
use crate::metrics::Metrics;
use crate::state::mounts::Mounts;
use crate::state::store::{Changed, DigestStore};
use crate::watch::sync::{SyncSet, watch_name};

/// A SecretProviderClassPodStatus as kreload watches it: metadata and the lean status.
#[derive(Clone, Debug, Deserialize)]
pub struct WatchedPodStatus {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_default")]
    pub status: PodStatus,
}

impl WatchedPodStatus {
    fn namespace(&self) -> String {
        self.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }

    /// The mount it records (`None`: it names no SecretProviderClass).
    fn mount(self) -> Option<Mount> {
        // RFC 3339 in seconds, as the API server writes it: its text sorts as its time does.
        let created = self
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.status.mount(created)
    }
}

impl kube::Resource for WatchedPodStatus {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(csi::STATUS_KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(csi::GROUP)
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(csi::VERSION)
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(csi::STATUS_PLURAL)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Keeps the mounts and the SecretProviderClasses' versions current, forever, in one namespace
/// (`scope`) or in all. As for configs: watch errors are retried with backoff, and after every
/// re-list the differences from what was known are reported, so nothing missed is lost; the
/// first listing is the baseline.
pub async fn run(
    client: Client,
    scope: Option<String>,
    store: Arc<DigestStore>,
    mounts: Arc<Mounts>,
    metrics: Arc<Metrics>,
    changes: Option<mpsc::UnboundedSender<ConfigChange>>,
    sync: SyncSet,
) {
    let api: Api<WatchedPodStatus> = match &scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let name = watch_name(csi::STATUS_KIND, scope.as_deref());
    let report = |changed: Vec<Changed>| {
        for (namespace, id, old, new) in changed {
            tracing::debug!(%namespace, config = %id, "SecretProviderClass versions changed");
            if let Some(tx) = &changes {
                let _ = tx.send(ConfigChange {
                    namespace,
                    id,
                    old,
                    new,
                });
            }
        }
    };
    let mut relist: Vec<(String, String, Mount)> = Vec::new();
    let mut listed_once = false;
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
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
                metrics.watch_event(csi::STATUS_KIND);
                let (namespace, name) = (obj.namespace(), obj.name());
                if let Some(mount) = obj.mount() {
                    relist.push((namespace, name, mount));
                }
            }
            watcher::Event::InitDone => {
                let changed = mounts.replace(&store, scope.as_deref(), std::mem::take(&mut relist));
                // The first listing is the baseline, not a change.
                if listed_once {
                    report(changed);
                }
                listed_once = true;
                sync.mark(&name);
                tracing::info!(watch = name, "SecretProviderClassPodStatuses listed");
            }
            watcher::Event::Apply(obj) => {
                metrics.watch_event(csi::STATUS_KIND);
                let (namespace, name) = (obj.namespace(), obj.name());
                match obj.mount() {
                    Some(mount) => report(mounts.apply(&store, &namespace, &name, mount)),
                    // It names no class any more: as if deleted.
                    None => report(
                        mounts
                            .remove(&store, &namespace, &name)
                            .into_iter()
                            .collect(),
                    ),
                }
            }
            watcher::Event::Delete(obj) => {
                metrics.watch_event(csi::STATUS_KIND);
                report(
                    mounts
                        .remove(&store, &obj.namespace(), &obj.name())
                        .into_iter()
                        .collect(),
                );
            }
        }
    }
}
