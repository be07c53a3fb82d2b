//! Watches the workload kinds into the index, keeping only what the decision needs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::domain::annotations::{ACCOUNTED_HASH, AnnotationNames, CONFIG_HASH, CSI_VERSIONS};
use crate::domain::workload::{
    LeanStatus, LeanTemplate, LeanWorkloadSpec, StampLocation, WORKLOAD_GENERATION, WorkloadId,
    WorkloadKind, WorkloadNews, WorkloadRef, rolls,
};
use crate::domain::{csi, policy};
use crate::metrics::Metrics;
use crate::state::csi::{CsiWorkload, CsiWorkloads};
use crate::state::index::{WorkloadIndex, WorkloadInfo};
use crate::watch::sync::{SyncSet, watch_name};

/// Names the workload kind a [`WatchedWorkload`] is read as.
pub trait WorkloadKindMarker: Clone + std::fmt::Debug + Send + Sync + 'static {
    const KIND: WorkloadKind;
}

macro_rules! kind_marker {
    ($name:ident, $kind:expr) => {
        #[derive(Clone, Debug)]
        pub struct $name;
        impl WorkloadKindMarker for $name {
            const KIND: WorkloadKind = $kind;
        }
    };
}
kind_marker!(DeploymentKind, WorkloadKind::Deployment);
kind_marker!(StatefulSetKind, WorkloadKind::StatefulSet);
kind_marker!(DaemonSetKind, WorkloadKind::DaemonSet);
kind_marker!(CronJobKind, WorkloadKind::CronJob);
kind_marker!(JobKind, WorkloadKind::Job);
kind_marker!(RolloutKind, WorkloadKind::Rollout);
kind_marker!(DeploymentConfigKind, WorkloadKind::DeploymentConfig);

/// The extra kind (`--extra-workload`) registered at index `I`.
#[derive(Clone, Debug)]
pub struct ExtraKind<const I: u8>;
impl<const I: u8> WorkloadKindMarker for ExtraKind<I> {
    const KIND: WorkloadKind = WorkloadKind::Extra(I);
}

/// A workload as kreload watches it: metadata and the lean template only.
#[derive(Clone, Debug)]
pub struct WatchedWorkload<K: WorkloadKindMarker> {
    pub metadata: ObjectMeta,
    spec: LeanWorkloadSpec,
    status: LeanStatus,
    kind: PhantomData<K>,
}

/// What [`WatchedWorkload`] reads of an object.
#[derive(Deserialize)]
struct Watched {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "crate::domain::refs::null_default")]
    spec: LeanWorkloadSpec,
    #[serde(default, deserialize_with = "crate::domain::refs::null_default")]
    status: LeanStatus,
}

impl<'de, K: WorkloadKindMarker> Deserialize<'de> for WatchedWorkload<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !K::KIND.is_extra() {
            let w = Watched::deserialize(d)?;
            return Ok(WatchedWorkload {
                metadata: w.metadata,
                spec: w.spec,
                status: w.status,
                kind: PhantomData,
            });
        }
        // An extra kind's template is wherever its pointer says: read the whole object. Its
        // spec and status are its API's own: only the template at the pointer and the status's
        // `observedGeneration` are read, leniently (see `LeanWorkloadSpec::of_extra`).
        #[derive(Deserialize)]
        struct Metadata {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        let whole = serde_json::Value::deserialize(d)?;
        let metadata = Metadata::deserialize(&whole)
            .map_err(serde::de::Error::custom)?
            .metadata;
        let status = LeanStatus {
            observed_generation: whole
                .pointer("/status/observedGeneration")
                .and_then(serde_json::Value::as_i64),
            ..LeanStatus::default()
        };
        Ok(WatchedWorkload {
            metadata,
            spec: LeanWorkloadSpec::of_extra(K::KIND, &whole),
            status,
            kind: PhantomData,
        })
    }
}

impl<K: WorkloadKindMarker> kube::Resource for WatchedWorkload<K> {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::KIND.as_str())
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::KIND.group())
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::KIND.version())
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::KIND.plural())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<K: WorkloadKindMarker> WatchedWorkload<K> {
    pub fn id(&self) -> WorkloadId {
        WorkloadId {
            kind: K::KIND,
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// The pod template its pods are made from: its own, or for a Rollout with
    /// `spec.workloadRef` the referenced one (`referenced`; empty when it could not be read).
    fn template_in_use<'a>(&'a self, referenced: Option<&'a LeanTemplate>) -> &'a LeanTemplate {
        static UNREAD: LazyLock<LeanTemplate> = LazyLock::new(LeanTemplate::default);
        if self.spec.workload_ref(K::KIND).is_some() {
            referenced.unwrap_or(&UNREAD)
        } else {
            self.spec.template(K::KIND)
        }
    }

    /// What the index keeps (annotations read under `names`), or `None` when the workload is
    /// not opted in. `referenced`: for a Rollout with `spec.workloadRef`, the referenced
    /// Deployment's pod template (the one its pods are made from), when it could be read.
    pub fn info(
        &self,
        names: &AnnotationNames,
        auto_reload_all: bool,
        referenced: Option<&LeanTemplate>,
    ) -> Option<WorkloadInfo> {
        let references_template = self.spec.workload_ref(K::KIND).is_some();
        let template = self.template_in_use(referenced);
        let empty = policy::Annotations::new();
        let annotations = self.metadata.annotations.as_ref().unwrap_or(&empty);
        let policy = policy::parse_workload(names, annotations, template.annotations()).value;
        let controlled = self
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true));
        if !rolls(K::KIND, &policy, controlled, auto_reload_all) {
            return None;
        }
        let location = StampLocation::of(K::KIND, &policy, references_template);
        let stamp = match location {
            StampLocation::Template => template.stamp().map(str::to_owned),
            StampLocation::Object => annotations.get(CONFIG_HASH).cloned(),
        };
        Some(WorkloadInfo {
            id: self.id(),
            uid: self.metadata.uid.clone().unwrap_or_default(),
            api_version: format!("{}/{}", K::KIND.group(), K::KIND.version()),
            policy: Arc::new(policy),
            refs: template.spec.references(),
            location,
            stamp,
            accounted: annotations.get(ACCOUNTED_HASH).cloned(),
            paused: self.spec.paused,
            rolled_out: self
                .spec
                .rolled_out(K::KIND, self.metadata.generation, &self.status),
            paused_at: annotations.get(&names.paused_at).cloned(),
        })
    }
}

impl<K: WorkloadKindMarker> WatchedWorkload<K> {
    /// What the CSI index keeps (`--enable-csi-integration`), or `None` when its pod template
    /// mounts no SecretProviderClass or no rotation could roll it. The CSI keys are read from
    /// where the other keys are (decided by the reload keys alone); a bad value is warned about
    /// and costs only itself.
    pub fn csi_info(
        &self,
        names: &AnnotationNames,
        auto_reload_all: bool,
        referenced: Option<&LeanTemplate>,
    ) -> Option<CsiWorkload> {
        let references_template = self.spec.workload_ref(K::KIND).is_some();
        let template = self.template_in_use(referenced);
        let classes = template.spec.csi_classes();
        if classes.is_empty() {
            return None;
        }
        let empty = policy::Annotations::new();
        let annotations = self.metadata.annotations.as_ref().unwrap_or(&empty);
        let policy = policy::parse_workload(names, annotations, template.annotations()).value;
        let (csi_policy, problems) =
            csi::parse_policy(policy.source, annotations, template.annotations());
        for problem in problems {
            tracing::warn!(workload = %self.id(), %problem, "ignored for Secrets Store CSI rolls");
        }
        if !csi::may_roll(K::KIND, &policy, &csi_policy, auto_reload_all) {
            return None;
        }
        let location = StampLocation::of(K::KIND, &policy, references_template);
        let current = match location {
            StampLocation::Template => template.annotations().and_then(|a| a.get(CSI_VERSIONS)),
            StampLocation::Object => annotations.get(CSI_VERSIONS),
        };
        Some(CsiWorkload {
            id: self.id(),
            uid: self.metadata.uid.clone().unwrap_or_default(),
            api_version: format!("{}/{}", K::KIND.group(), K::KIND.version()),
            classes,
            policy: Arc::new(policy),
            csi: Arc::new(csi_policy),
            location,
            current: current.cloned(),
        })
    }
}

/// What a referenced pod template was read for: the reference, the Rollout's generation, and
/// the referenced workload's generation as Argo Rollouts' controller noted it on the Rollout.
type ReadFor = (WorkloadRef, Option<i64>, Option<String>);

/// The pod templates of the Deployments that Rollouts take theirs from (`spec.workloadRef`),
/// read from the API when a Rollout is first seen, and again only when its reference or spec
/// changes, or when Argo Rollouts' controller notes a change of the Deployment on it
/// ([`WORKLOAD_GENERATION`]).
struct ReferencedTemplates {
    client: Client,
    read: HashMap<(String, String), (ReadFor, Option<LeanTemplate>)>,
}

impl ReferencedTemplates {
    /// The pod template `w` takes from another object, if it has a `spec.workloadRef` and the
    /// template could be read.
    async fn of<K: WorkloadKindMarker>(&mut self, w: &WatchedWorkload<K>) -> Option<LeanTemplate> {
        let reference = w.spec.workload_ref(K::KIND)?;
        let id = w.id();
        let key = (id.namespace.clone(), id.name.clone());
        let read_for: ReadFor = (
            reference.clone(),
            w.metadata.generation,
            w.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(WORKLOAD_GENERATION))
                .cloned(),
        );
        if let Some((was, template)) = self.read.get(&key)
            && *was == read_for
        {
            return template.clone();
        }
        let Some(deployment) = reference.deployment() else {
            tracing::warn!(workload = %id, reference = %format!("{}/{}", reference.kind, reference.name),
                "its spec.workloadRef is not an apps Deployment: kreload reads no pod template for it, so only its reload lists can roll it");
            self.read.insert(key, (read_for, None));
            return None;
        };
        let api: Api<WatchedWorkload<DeploymentKind>> =
            Api::namespaced(self.client.clone(), &id.namespace);
        let template = match api.get_opt(deployment).await {
            Ok(Some(d)) => Some(d.spec.template(WorkloadKind::Deployment).clone()),
            Ok(None) => {
                tracing::info!(workload = %id, deployment, "the Deployment its spec.workloadRef names does not exist (yet): no configs consumed");
                None
            }
            Err(error) => {
                // Not remembered: read again at the Rollout's next event.
                tracing::warn!(workload = %id, deployment, %error, "cannot read the Deployment its spec.workloadRef names: no configs consumed for now");
                return None;
            }
        };
        self.read.insert(key, (read_for, template.clone()));
        template
    }

    fn forget(&mut self, id: &WorkloadId) {
        self.read.remove(&(id.namespace.clone(), id.name.clone()));
    }
}

/// Keeps the index's view of one workload kind current, forever, in one namespace (`scope`) or
/// in all. Workloads the index did not have, once the first listing is done, are reported on
/// `news`, and so are Rollouts whose referenced pod template now consumes other configs.
#[allow(clippy::too_many_arguments)]
pub async fn run<K: WorkloadKindMarker>(
    client: Client,
    scope: Option<String>,
    index: Arc<WorkloadIndex>,
    names: Arc<AnnotationNames>,
    auto_reload_all: bool,
    metrics: Arc<Metrics>,
    sync: SyncSet,
    news: mpsc::UnboundedSender<WorkloadNews>,
    csi: Option<Arc<CsiWorkloads>>,
) {
    let mut referenced = ReferencedTemplates {
        client: client.clone(),
        read: HashMap::new(),
    };
    let api: Api<WatchedWorkload<K>> = match &scope {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let name = watch_name(K::KIND.as_str(), scope.as_deref());
    // Every opted-in workload is indexed, whether or not its namespace is watched now: a
    // namespace labelled later (`--namespace-selector`) must find its workloads there. The
    // namespace filter is applied when deciding.
    let gauge = || metrics.set_index_workloads(index.len());
    let mut relist = Vec::new();
    let mut csi_relist = Vec::new();
    let mut listed_once = false;
    let mut stream = watcher::watcher(api, watcher::Config::default().page_size(200))
        .default_backoff()
        .boxed();
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(kind = %K::KIND, %error, "workload watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => {
                relist.clear();
                csi_relist.clear();
            }
            watcher::Event::InitApply(w) => {
                metrics.watch_event(K::KIND.as_str());
                let template = referenced.of(&w).await;
                if csi.is_some() {
                    csi_relist.extend(w.csi_info(&names, auto_reload_all, template.as_ref()));
                }
                relist.extend(w.info(&names, auto_reload_all, template.as_ref()));
            }
            watcher::Event::InitDone => {
                if let Some(csi) = &csi {
                    csi.replace_kind(K::KIND, scope.as_deref(), std::mem::take(&mut csi_relist));
                }
                let added =
                    index.replace_kind(K::KIND, scope.as_deref(), std::mem::take(&mut relist));
                if std::mem::replace(&mut listed_once, true) {
                    for id in added {
                        let _ = news.send(WorkloadNews::New(id));
                    }
                }
                sync.mark(&name);
                gauge();
                tracing::info!(watch = name, "workloads listed");
            }
            watcher::Event::Apply(w) => {
                metrics.watch_event(K::KIND.as_str());
                let template = referenced.of(&w).await;
                if let Some(csi) = &csi {
                    match w.csi_info(&names, auto_reload_all, template.as_ref()) {
                        Some(i) => csi.upsert(i),
                        None => csi.remove(&w.id()),
                    }
                }
                match w.info(&names, auto_reload_all, template.as_ref()) {
                    Some(i) => {
                        let id = i.id.clone();
                        let replaced = w.spec.workload_ref(K::KIND).is_some()
                            && index.get(&id).is_some_and(|old| old.refs != i.refs);
                        if index.upsert(i) && listed_once {
                            let _ = news.send(WorkloadNews::New(id));
                        } else if replaced && listed_once {
                            let _ = news.send(WorkloadNews::TemplateReplaced(id));
                        }
                    }
                    None => {
                        index.remove(&w.id());
                    }
                }
                gauge();
            }
            watcher::Event::Delete(w) => {
                metrics.watch_event(K::KIND.as_str());
                referenced.forget(&w.id());
                index.remove(&w.id());
                if let Some(csi) = &csi {
                    csi.remove(&w.id());
                }
                gauge();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An extra kind's own fields named like a built-in workload's are not read: a watch that
    /// failed on them would never sync.
    #[test]
    fn an_extra_kind_is_read_at_its_pointer_only() {
        let (_, app) = crate::domain::extra::test_kinds();
        assert_eq!(app, WorkloadKind::Extra(1));
        let w: WatchedWorkload<ExtraKind<1>> = serde_json::from_value(json!({
            "metadata": {"name": "w", "namespace": "a", "uid": "u", "generation": 4,
                         "annotations": {"reloader.stakater.com/auto": "true"}},
            "spec": {"template": "its own", "replicas": "many", "paused": "no", "jobTemplate": 3,
                     "workload": {"podTemplate": {"metadata": {"annotations": {CONFIG_HASH: "v1.k.x"}},
                                                  "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "c"}}]}]}}}},
            "status": {"replicas": "all", "observedGeneration": 3}
        }))
        .unwrap();
        let info = w.info(&AnnotationNames::default(), false, None).unwrap();
        assert_eq!(info.stamp.as_deref(), Some("v1.k.x"));
        assert_eq!(info.refs.len(), 1);
        assert_eq!(w.status.observed_generation, Some(3));
    }

    #[test]
    fn only_opted_in_workloads_are_kept_with_their_stamp() {
        let d: WatchedWorkload<DeploymentKind> = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "a", "uid": "u", "annotations": {"reloader.stakater.com/auto": "true"}},
            "spec": {"template": {"metadata": {"annotations": {CONFIG_HASH: "v1.k.x"}},
                                  "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "c"}}]}]}}}
        }))
        .unwrap();
        let info = d.info(&AnnotationNames::default(), false, None).unwrap();
        assert_eq!(info.stamp.as_deref(), Some("v1.k.x"));
        assert_eq!(info.refs.len(), 1);
        assert_eq!(info.api_version, "apps/v1");

        let plain: WatchedWorkload<DeploymentKind> =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {}})).unwrap();
        assert!(
            plain
                .info(&AnnotationNames::default(), false, None)
                .is_none()
        );
        assert!(
            plain
                .info(&AnnotationNames::default(), true, None)
                .is_some(),
            "--auto-reload-all opts it in"
        );
    }

    #[test]
    fn jobs_roll_only_when_opted_in_on_the_job_itself() {
        let job = |meta: serde_json::Value| -> WatchedWorkload<JobKind> {
            serde_json::from_value(json!({"metadata": meta, "spec": {"template": {"spec": {}}}}))
                .unwrap()
        };
        assert!(
            job(json!({"name": "j", "annotations": {"reloader.stakater.com/auto": "true"}}))
                .info(&AnnotationNames::default(), false, None)
                .is_some()
        );
        assert!(
            job(json!({"name": "j"}))
                .info(&AnnotationNames::default(), true, None)
                .is_none(),
            "--auto-reload-all does not reach Jobs"
        );
        let from_cron = json!({"name": "j", "annotations": {"reloader.stakater.com/auto": "true"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "c", "uid": "u", "controller": true}]});
        assert!(
            job(from_cron)
                .info(&AnnotationNames::default(), false, None)
                .is_none(),
            "a CronJob's Job is not rolled"
        );
    }

    #[test]
    fn rollouts_with_a_workload_ref_consume_what_the_referenced_template_does() {
        let r: WatchedWorkload<RolloutKind> = serde_json::from_value(json!({
            "metadata": {"name": "r", "namespace": "a", "annotations": {CONFIG_HASH: "v1.k.obj"}},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}
        }))
        .unwrap();
        let template: LeanTemplate = serde_json::from_value(json!({
            "metadata": {"annotations": {"reloader.stakater.com/auto": "true", CONFIG_HASH: "v1.k.tpl"}},
            "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "c"}}]}]}
        }))
        .unwrap();
        // Opted in by the referenced template's annotations, as Reloader reads the template
        // it takes from the Deployment; the stamp is the Rollout's own.
        let info = r
            .info(&AnnotationNames::default(), false, Some(&template))
            .unwrap();
        assert_eq!(info.location, StampLocation::Object);
        assert_eq!(info.stamp.as_deref(), Some("v1.k.obj"));
        assert_eq!(info.refs.len(), 1);
        // Unread (no Deployment yet): it consumes nothing, and nothing opts it in.
        assert!(r.info(&AnnotationNames::default(), false, None).is_none());
        let all = r.info(&AnnotationNames::default(), true, None).unwrap();
        assert!(all.refs.is_empty());
        assert_eq!(all.location, StampLocation::Object);
        // A Rollout with its own template ignores any referenced one.
        let own: WatchedWorkload<RolloutKind> = serde_json::from_value(json!({
            "metadata": {"name": "o"}, "spec": {"template": {"spec": {}}}
        }))
        .unwrap();
        assert!(
            own.info(&AnnotationNames::default(), false, Some(&template))
                .is_none()
        );
    }

    #[test]
    fn restart_rollouts_carry_the_stamp_on_the_object() {
        let r: WatchedWorkload<RolloutKind> = serde_json::from_value(json!({
            "metadata": {"name": "r", "annotations": {"reloader.stakater.com/auto": "true",
                "reloader.stakater.com/rollout-strategy": "restart", CONFIG_HASH: "v1.k.obj"}},
            "spec": {"template": {"metadata": {"annotations": {CONFIG_HASH: "v1.k.tpl"}}}}
        }))
        .unwrap();
        assert_eq!(
            r.info(&AnnotationNames::default(), false, None)
                .unwrap()
                .stamp
                .as_deref(),
            Some("v1.k.obj")
        );
    }
}
