//! Workloads and configs on the harness for the end-to-end tests: manifests of every kind,
//! kreload scoped to a test's namespaces, and waits that detect a roll (a new template stamp,
//! a new revision whose pods are Ready carrying it) or its absence.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::*;

pub const STAMP: &str = "kreload.dev/config-hash";
pub const IMAGE: &str = "registry.invalid/app:1";
/// Longer than the default coalescing window (1 s): how long a non-roll is given to show.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How long a roll may take to show in the template (coalescing, plus a deferred roll under the
/// default 10 s storm guard, plus a leader takeover).
pub const ROLL_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `--min-roll-interval` plus a margin: after this, a deferred roll would have shown.
pub const STORM_GUARD: Duration = Duration::from_secs(12);

// ---------------------------------------------------------------------------------------------
// kreload

/// A kreload that is shut down gracefully (SIGTERM, wait) when dropped, so its webhook
/// configurations are gone before the test's namespaces are.
pub struct Running(pub Kreload);

impl std::ops::Deref for Running {
    type Target = Kreload;
    fn deref(&self) -> &Kreload {
        &self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.terminate();
    }
}

/// A kreload watching exactly `namespaces`, with webhook configurations named after the first.
pub fn kreload_for(namespaces: &[&TestNamespace], extra: &[&str]) -> Running {
    kreload_with_env(namespaces, extra, &[])
}

/// As [`kreload_for`], with these environment variables.
pub fn kreload_with_env(
    namespaces: &[&TestNamespace],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Running {
    let list = namespaces
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let webhook = format!("kreload-{}", namespaces[0].name);
    let mut args = vec![
        "--namespaces",
        &list,
        "--webhook-config-name",
        &webhook,
        "--log-level",
        "debug",
    ];
    args.extend_from_slice(extra);
    Running(Kreload::start_with_env(&args, env))
}

/// Registers a minimal `rollouts.argoproj.io` CRD (idempotent) and waits until it is served.
pub async fn ensure_rollout_crd(client: &kube::Client) {
    ensure_crd(client, Kind::Rollout).await;
}

/// Registers a minimal `deploymentconfigs.apps.openshift.io` CRD (idempotent), standing in for
/// OpenShift's API, and waits until it is served. The harness runs no OpenShift controller.
pub async fn ensure_deployment_config_crd(client: &kube::Client) {
    ensure_crd(client, Kind::DeploymentConfig).await;
}

/// Registers a minimal CRD for `kind` (any schema; a status subresource) and waits until it is
/// served. It is left in place: other tests, and other runs, use it too.
async fn ensure_crd(client: &kube::Client, kind: Kind) {
    ensure_crd_of(client, kind.resource()).await;
}

/// As [`ensure_crd`], for any namespaced resource.
pub async fn ensure_crd_of(client: &kube::Client, resource: ApiResource) {
    let name = format!("{}.{}", resource.plural, resource.group);
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": resource.group, "scope": "Namespaced",
            "names": {"plural": resource.plural, "singular": resource.kind.to_lowercase(),
                      "kind": resource.kind, "listKind": format!("{}List", resource.kind)},
            "versions": [{"name": resource.version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}}}]
        }
    });
    apply_crd(client, &resource, crd).await;
}

/// Applies `crd` (a CustomResourceDefinition of `resource`) and waits until it is established and
/// `resource` is served.
pub async fn apply_crd(client: &kube::Client, resource: &ApiResource, crd: Value) {
    let name = format!("{}.{}", resource.plural, resource.group);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply("kreload-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("apply the CRD {name}: {e}"));
    wait_for(
        &format!("the CRD {name} to be established"),
        Duration::from_secs(30),
        || async {
            let c = crds.get(&name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;
    let served: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", resource);
    wait_for(
        &format!("{} to be served", resource.plural),
        Duration::from_secs(30),
        || async { served.list(&ListParams::default()).await.ok().map(|_| ()) },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Configs

/// A ConfigMap or Secret to create.
pub struct Cfg {
    pub secret: bool,
    pub name: String,
    pub labels: Value,
    pub annotations: Value,
    pub data: Value,
}

pub fn cm(name: &str) -> Cfg {
    Cfg {
        secret: false,
        name: name.to_owned(),
        labels: json!({}),
        annotations: json!({}),
        data: json!({"k": "v0"}),
    }
}

pub fn secret(name: &str) -> Cfg {
    Cfg {
        secret: true,
        ..cm(name)
    }
}

impl Cfg {
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
    pub fn labels(mut self, labels: Value) -> Self {
        self.labels = labels;
        self
    }
    pub fn annotations(mut self, annotations: Value) -> Self {
        self.annotations = annotations;
        self
    }
    pub async fn create(self, ns: &TestNamespace) {
        let meta =
            json!({"name": self.name, "labels": self.labels, "annotations": self.annotations});
        if self.secret {
            let s: Secret =
                serde_json::from_value(json!({"metadata": meta, "stringData": self.data})).unwrap();
            ns.api::<Secret>()
                .create(&PostParams::default(), &s)
                .await
                .unwrap_or_else(|e| panic!("create Secret {}: {e}", self.name));
        } else {
            let c: ConfigMap =
                serde_json::from_value(json!({"metadata": meta, "data": self.data})).unwrap();
            ns.api::<ConfigMap>()
                .create(&PostParams::default(), &c)
                .await
                .unwrap_or_else(|e| panic!("create ConfigMap {}: {e}", self.name));
        }
    }
}

pub async fn patch_cm(ns: &TestNamespace, name: &str, patch: Value) {
    ns.api::<ConfigMap>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch ConfigMap {name}: {e}"));
}

pub async fn set_cm(ns: &TestNamespace, name: &str, key: &str, value: &str) {
    patch_cm(ns, name, json!({"data": {key: value}})).await;
}

pub async fn set_secret(ns: &TestNamespace, name: &str, key: &str, value: &str) {
    ns.api::<Secret>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {key: value}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch Secret {name}: {e}"));
}

// ---------------------------------------------------------------------------------------------
// Workloads

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Rollout,
    DeploymentConfig,
}

impl Kind {
    pub fn resource(self) -> ApiResource {
        match self {
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Kind::CronJob => ApiResource::erase::<CronJob>(&()),
            Kind::Rollout => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"),
                "rollouts",
            ),
            Kind::DeploymentConfig => ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("apps.openshift.io", "v1", "DeploymentConfig"),
                "deploymentconfigs",
            ),
        }
    }

    /// JSON pointer to the pod template.
    pub fn template(self) -> &'static str {
        match self {
            Kind::CronJob => "/spec/jobTemplate/spec/template",
            _ => "/spec/template",
        }
    }

    /// Kinds whose controller runs in the harness and records each template as a revision
    /// (ReplicaSet or ControllerRevision) whose pods we can watch.
    pub fn has_revisions(self) -> bool {
        matches!(self, Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet)
    }
}

pub fn dyn_api(ns: &TestNamespace, kind: Kind) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client(), &ns.name, &kind.resource())
}

/// A pod spec whose single container takes everything from these ConfigMaps and Secrets.
pub fn env_from(cms: &[&str], secrets: &[&str]) -> Value {
    let mut from: Vec<Value> = cms
        .iter()
        .map(|c| json!({"configMapRef": {"name": c}}))
        .collect();
    from.extend(secrets.iter().map(|s| json!({"secretRef": {"name": s}})));
    json!({"containers": [{"name": "app", "image": IMAGE, "envFrom": from}]})
}

/// A manifest of `kind` named `name` (pods labelled `app: name`), with these workload
/// annotations and pod spec (a default container is added when the spec has none).
pub fn workload(
    kind: Kind,
    name: &str,
    replicas: i32,
    annotations: Value,
    pod_spec: Value,
) -> Value {
    let mut spec = pod_spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": IMAGE}]);
    }
    let template = json!({"metadata": {"labels": {"app": name}}, "spec": spec});
    let selector = json!({"matchLabels": {"app": name}});
    let meta = json!({"name": name, "annotations": annotations});
    match kind {
        Kind::Deployment => json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas, "selector": selector, "template": template,
                     "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}
        }),
        Kind::StatefulSet => json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
            "spec": {"replicas": replicas, "serviceName": name, "selector": selector,
                     "podManagementPolicy": "Parallel", "template": template}
        }),
        Kind::DaemonSet => json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": selector, "template": template}
        }),
        Kind::CronJob => {
            let mut template = template;
            template["spec"]["restartPolicy"] = json!("Never");
            json!({
                "apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
                "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": template}}}
            })
        }
        Kind::Rollout => json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": meta,
            "spec": {"replicas": replicas, "selector": selector, "template": template,
                     "strategy": {"canary": {}}}
        }),
        // A DeploymentConfig's selector is a plain label map; its ConfigChange trigger rolls it
        // out when the template changes.
        Kind::DeploymentConfig => json!({
            "apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig", "metadata": meta,
            "spec": {"replicas": replicas, "selector": {"app": name}, "template": template,
                     "strategy": {"type": "Rolling"}, "triggers": [{"type": "ConfigChange"}]}
        }),
    }
}

/// A one-replica Deployment.
pub fn deploy(name: &str, annotations: Value, pod_spec: Value) -> Value {
    workload(Kind::Deployment, name, 1, annotations, pod_spec)
}

/// Puts `annotations` on the pod template of a manifest.
pub fn with_template_annotations(mut manifest: Value, kind: Kind, annotations: Value) -> Value {
    manifest
        .pointer_mut(&format!("{}/metadata", kind.template()))
        .expect("manifest has a template")["annotations"] = annotations;
    manifest
}

pub async fn create(ns: &TestNamespace, manifest: Value) {
    let kind = match manifest["kind"].as_str().unwrap() {
        "Deployment" => Kind::Deployment,
        "StatefulSet" => Kind::StatefulSet,
        "DaemonSet" => Kind::DaemonSet,
        "CronJob" => Kind::CronJob,
        "Rollout" => Kind::Rollout,
        "DeploymentConfig" => Kind::DeploymentConfig,
        other => panic!("unknown kind {other}"),
    };
    let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
    let obj: DynamicObject = serde_json::from_value(manifest).unwrap();
    dyn_api(ns, kind)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind:?} {}/{name}: {e}", ns.name));
}

pub async fn get_json(ns: &TestNamespace, kind: Kind, name: &str) -> Option<Value> {
    let obj = dyn_api(ns, kind).get_opt(name).await.ok()??;
    Some(serde_json::to_value(obj).unwrap())
}

pub fn stamp_in(obj: &Value, kind: Kind) -> Option<String> {
    obj.pointer(&format!("{}/metadata/annotations", kind.template()))?
        .get(STAMP)?
        .as_str()
        .map(str::to_owned)
}

/// The `kreload.dev/config-hash` of the workload's pod template.
pub async fn workload_stamp(ns: &TestNamespace, kind: Kind, name: &str) -> Option<String> {
    stamp_in(&get_json(ns, kind, name).await?, kind)
}

/// ReplicaSets of a Deployment, ControllerRevisions of a StatefulSet or DaemonSet; 0 otherwise.
pub async fn revisions(ns: &TestNamespace, kind: Kind, name: &str) -> usize {
    match kind {
        Kind::Deployment => replica_sets(ns, name).await.len(),
        Kind::StatefulSet | Kind::DaemonSet => {
            let owner = format!("{kind:?}");
            ns.api::<ControllerRevision>()
                .list(&ListParams::default())
                .await
                .expect("list ControllerRevisions")
                .items
                .iter()
                .filter(|r| {
                    r.owner_references()
                        .iter()
                        .any(|o| o.kind == owner && o.name == name)
                })
                .count()
        }
        Kind::CronJob | Kind::Rollout | Kind::DeploymentConfig => 0,
    }
}

/// One look: has the workload's controller finished rolling out its current template?
pub async fn settled(ns: &TestNamespace, kind: Kind, name: &str) -> bool {
    let Some(o) = get_json(ns, kind, name).await else {
        return false;
    };
    let int = |p: &str| o.pointer(p).and_then(Value::as_i64);
    let observed = int("/status/observedGeneration") >= int("/metadata/generation");
    match kind {
        Kind::Deployment => {
            let want = int("/spec/replicas").unwrap_or(1);
            let status_done = observed
                && [
                    "/status/replicas",
                    "/status/updatedReplicas",
                    "/status/readyReplicas",
                    "/status/availableReplicas",
                ]
                .iter()
                .all(|p| int(p) == Some(want));
            if !status_done {
                return false;
            }
            let sets = replica_sets(ns, name).await;
            let with_pods: Vec<_> = sets
                .iter()
                .filter(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0))
                .collect();
            with_pods.len() == 1
                && with_pods[0]
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .map(i64::from)
                    == Some(want)
        }
        Kind::StatefulSet => {
            let want = int("/spec/replicas").unwrap_or(1);
            let text = |p: &str| o.pointer(p).and_then(Value::as_str);
            observed
                && [
                    "/status/replicas",
                    "/status/readyReplicas",
                    "/status/updatedReplicas",
                ]
                .iter()
                .all(|p| int(p) == Some(want))
                && text("/status/currentRevision").is_some()
                && text("/status/currentRevision") == text("/status/updateRevision")
        }
        Kind::DaemonSet => {
            let want = int("/status/desiredNumberScheduled").unwrap_or(0);
            want > 0
                && observed
                && [
                    "/status/currentNumberScheduled",
                    "/status/updatedNumberScheduled",
                    "/status/numberReady",
                    "/status/numberAvailable",
                ]
                .iter()
                .all(|p| int(p) == Some(want))
                && int("/status/numberMisscheduled").unwrap_or(0) == 0
        }
        Kind::CronJob | Kind::Rollout | Kind::DeploymentConfig => true,
    }
}

/// One look: are all the workload's live pods (as many as it wants) Ready and stamped `stamp`?
pub async fn pods_carry(
    ns: &TestNamespace,
    kind: Kind,
    name: &str,
    stamp: &str,
) -> Result<(), String> {
    let o = get_json(ns, kind, name)
        .await
        .ok_or_else(|| format!("{kind:?} {name} is gone"))?;
    let want = match kind {
        Kind::DaemonSet => o.pointer("/status/desiredNumberScheduled"),
        _ => o.pointer("/spec/replicas"),
    }
    .and_then(Value::as_i64)
    .unwrap_or(1) as usize;
    let live: Vec<_> = pods(ns, name)
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let seen: Vec<(String, bool, Option<String>)> = live
        .iter()
        .map(|p| {
            let s = p.annotations().get(STAMP).cloned();
            (p.name_any(), is_ready(p), s)
        })
        .collect();
    let ok = live.len() == want
        && seen
            .iter()
            .all(|(_, ready, s)| *ready && s.as_deref() == Some(stamp));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "want {want} live Ready pods stamped {stamp}; have (name, ready, stamp): {seen:?}"
        ))
    }
}

/// Polls `check` until it returns `Some`, or gives up after `timeout` with `None`.
pub async fn try_wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first pod matching `selector`, once there is one.
pub async fn first_pod(ns: &TestNamespace, selector: &str) -> Pod {
    wait_for(
        &format!("a pod matching {selector} in {}", ns.name),
        Duration::from_secs(60),
        || async {
            ns.api::<Pod>()
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        },
    )
    .await
}

/// The stamp the webhook gives a bare pod with this spec (dry-run): the stamp of everything it
/// consumes, which is what an owner-less pod gets.
pub async fn bare_pod_stamp(ns: &TestNamespace, spec: &Value) -> Option<String> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare-probe"}, "spec": spec
    }))
    .ok()?;
    let out = ns
        .api::<Pod>()
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod,
        )
        .await
        .ok()?;
    out.annotations().get(STAMP).cloned()
}

/// What a workload looked like before the test acted.
#[derive(Clone, Debug)]
pub struct Base {
    pub stamp: Option<String>,
    pub revisions: usize,
}

pub async fn baseline(ns: &TestNamespace, kind: Kind, name: &str) -> Base {
    Base {
        stamp: workload_stamp(ns, kind, name).await,
        revisions: revisions(ns, kind, name).await,
    }
}

/// Waits for a roll: the template stamp changes, the controller rolls out a new revision whose
/// pods are Ready carrying the new stamp, and exactly one revision was added. Returns the stamp.
pub async fn expect_roll(
    ns: &TestNamespace,
    kind: Kind,
    name: &str,
    before: &Base,
) -> Result<String, String> {
    let what = format!("{kind:?} {name}");
    let new = try_wait_for(ROLL_TIMEOUT, || async {
        workload_stamp(ns, kind, name)
            .await
            .filter(|s| Some(s) != before.stamp.as_ref())
    })
    .await
    .ok_or_else(|| {
        format!(
            "{what}: expected a roll, but the template stamp did not change within {ROLL_TIMEOUT:?} (still {:?})",
            before.stamp
        )
    })?;
    if !new.starts_with("v2.") {
        return Err(format!(
            "{what}: new template stamp {new:?} is not v2.<keyid>.<hex>"
        ));
    }
    if !kind.has_revisions() {
        return Ok(new);
    }
    try_wait_for(Duration::from_secs(90), || async {
        settled(ns, kind, name).await.then_some(())
    })
    .await
    .ok_or_else(|| {
        format!("{what}: the rollout after the stamp change did not complete within 90s")
    })?;
    let current = workload_stamp(ns, kind, name).await.unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match pods_carry(ns, kind, name, &current).await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("{what}: after the roll: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let now = revisions(ns, kind, name).await;
    if now != before.revisions + 1 {
        return Err(format!(
            "{what}: revisions went {} -> {now} for one change; want exactly one new",
            before.revisions
        ));
    }
    Ok(current)
}

/// Checks that nothing rolled: same template stamp, same number of revisions.
pub async fn expect_unchanged(
    ns: &TestNamespace,
    kind: Kind,
    name: &str,
    before: &Base,
) -> Result<(), String> {
    let now = baseline(ns, kind, name).await;
    if now.stamp == before.stamp && now.revisions == before.revisions {
        Ok(())
    } else {
        Err(format!(
            "{kind:?} {name}: expected no roll, but the template stamp went {:?} -> {:?} and revisions {} -> {}",
            before.stamp, now.stamp, before.revisions, now.revisions
        ))
    }
}

/// The stamp kreload's webhook gives a fresh copy of this Deployment right now (server-side
/// dry-run CREATE of the same annotations and template, without the stamp): the current hash.
pub async fn fresh_stamp(ns: &TestNamespace, name: &str) -> Option<String> {
    let api: Api<Deployment> = ns.api();
    let d = api.get(name).await.ok()?;
    let mut spec = d.spec.clone()?;
    if let Some(a) = spec
        .template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        a.remove(STAMP);
    }
    let copy = Deployment {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{name}-probe")),
            annotations: d.metadata.annotations.clone(),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    let out = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &copy,
        )
        .await
        .ok()?;
    out.spec?
        .template
        .metadata?
        .annotations?
        .get(STAMP)
        .cloned()
}

// ---------------------------------------------------------------------------------------------
// Cases

/// One workload and what the test's action must do to it.
pub struct Case {
    pub kind: Kind,
    pub name: &'static str,
    pub roll: bool,
    pub why: &'static str,
}

pub fn rolls(kind: Kind, name: &'static str, why: &'static str) -> Case {
    Case {
        kind,
        name,
        roll: true,
        why,
    }
}

pub fn keeps(kind: Kind, name: &'static str, why: &'static str) -> Case {
    Case {
        kind,
        name,
        roll: false,
        why,
    }
}

/// Waits until every workload has rolled out, gives kreload time to (wrongly) act on them, and
/// records the baselines. A freshly created workload has exactly one revision: kreload stamps it
/// at CREATE and must not roll it when the watcher first sees it.
pub async fn baselines(ns: &TestNamespace, cases: &[Case]) -> Vec<Base> {
    for c in cases {
        wait_for(
            &format!("{:?} {}/{} to roll out", c.kind, ns.name, c.name),
            Duration::from_secs(90),
            || async { settled(ns, c.kind, c.name).await.then_some(()) },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut out = Vec::new();
    for c in cases {
        let b = baseline(ns, c.kind, c.name).await;
        if c.kind.has_revisions() {
            assert_eq!(
                b.revisions, 1,
                "{:?} {}/{} has {} revisions right after creation (a second rollout when kreload first saw it?)",
                c.kind, ns.name, c.name, b.revisions
            );
        }
        out.push(b);
    }
    out
}

/// After the test acted: every `rolls` case rolls exactly once, every `keeps` case does not.
/// Returns one line per failing case.
pub async fn verify(ns: &TestNamespace, cases: &[Case], bases: &[Base]) -> Vec<String> {
    let rolled: Vec<Result<String, String>> =
        join_all(cases.iter().zip(bases).map(|(c, b)| async move {
            if c.roll {
                expect_roll(ns, c.kind, c.name, b).await
            } else {
                Ok(String::new())
            }
        }))
        .await;
    // Long enough for a second roll to show: past the coalescing window AND the storm guard,
    // which would have deferred a second roll of a workload that just rolled.
    let settle = if cases.iter().any(|c| c.roll) {
        STORM_GUARD
    } else {
        SETTLE
    };
    tokio::time::sleep(settle).await;
    let mut failures = Vec::new();
    for ((c, b), r) in cases.iter().zip(bases).zip(rolled) {
        let outcome = match (c.roll, r) {
            (true, Err(e)) => Err(e),
            (true, Ok(stamp)) => {
                // Still exactly one roll after the coalescing window.
                let after = Base {
                    stamp: Some(stamp),
                    revisions: b.revisions + usize::from(c.kind.has_revisions()),
                };
                expect_unchanged(ns, c.kind, c.name, &after)
                    .await
                    .map_err(|e| format!("rolled, then again: {e}"))
            }
            (false, _) => expect_unchanged(ns, c.kind, c.name, b).await,
        };
        if let Err(e) = outcome {
            failures.push(format!("[{}] {} ({})", ns.name, e, c.why));
        }
    }
    failures
}

pub fn check(failures: Vec<String>, kreloads: &[&Running]) {
    let logs: Vec<String> = kreloads
        .iter()
        .map(|k| k.log.display().to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n  {}\nkreload logs: {}",
        failures.len(),
        failures.join("\n  "),
        logs.join(", ")
    );
}
