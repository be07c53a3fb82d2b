//! Watches the Secrets Store CSI driver's SecretProviderClassPodStatuses (with
//! `--enable-csi-integration`) into the status bookkeeping, and reports each rotation (an update
//! of a known status whose own versions changed) to the watcher. The rules are
//! [`crate::domain::csi`]'s; nothing here touches the digest store or the stamps.

use std::borrow::Cow;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::domain::csi::{self, Mounted, PodStatus, Rotation};
use crate::domain::refs::null_default;
use crate::metrics::Metrics;
use crate::state::csi::CsiStatuses;
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
    fn uid(&self) -> String {
        self.metadata.uid.clone().unwrap_or_default()
    }

    /// What kreload keeps of it (`None`: it names no SecretProviderClass).
    fn mounted(self) -> Option<Mounted> {
        let pod = self
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.kind == "Pod")
            .map(|o| o.uid.clone());
        let namespace = self.metadata.namespace.unwrap_or_default();
        self.status.mounted(namespace, pod)
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

/// The API of the statuses in `scope` (a namespace, or all).
pub fn api(client: Client, scope: Option<&str>) -> Api<WatchedPodStatus> {
    match scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Keeps the status bookkeeping current, forever, in one namespace (`scope`) or in all, and
/// sends each rotation on `rotations`. Watch errors are retried with backoff; a re-list compares
/// each object with what kreload had for the same uid. `sync` is marked after the first
/// listing, which only learns.
pub async fn run(
    client: Client,
    scope: Option<String>,
    statuses: Arc<CsiStatuses>,
    metrics: Arc<Metrics>,
    rotations: mpsc::UnboundedSender<Rotation>,
    sync: SyncSet,
) {
    let api = api(client, scope.as_deref());
    let name = watch_name(csi::STATUS_KIND, scope.as_deref());
    let report = |r: Rotation| {
        tracing::debug!(namespace = %r.namespace, class = %r.class, "SecretProviderClass versions rotated");
        let _ = rotations.send(r);
    };
    let mut relist: Vec<(String, Mounted)> = Vec::new();
    let mut listed_once = false;
    let mut stream = watcher::watcher(api, watcher::Config::default().page_size(500))
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
                let uid = obj.uid();
                if let Some(m) = obj.mounted() {
                    relist.push((uid, m));
                }
            }
            watcher::Event::InitDone => {
                for r in statuses.relist(scope.as_deref(), std::mem::take(&mut relist)) {
                    report(r);
                }
                if !std::mem::replace(&mut listed_once, true) {
                    sync.mark(&name);
                    tracing::info!(
                        watch = name,
                        statuses = statuses.len(),
                        "SecretProviderClassPodStatuses listed"
                    );
                }
            }
            watcher::Event::Apply(obj) => {
                metrics.watch_event(csi::STATUS_KIND);
                let uid = obj.uid();
                if let Some(r) = statuses.apply(&uid, obj.mounted()) {
                    report(r);
                }
            }
            watcher::Event::Delete(obj) => {
                metrics.watch_event(csi::STATUS_KIND);
                statuses.remove(&obj.uid());
            }
        }
    }
}
