//! Issue 11 item 4: Secrets Store CSI (`--enable-csi-integration`). No CSI driver runs on the
//! harness: the test installs the `secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io`
//! CRD (as the driver's chart does: `status` at the top level, no status subresource) and
//! writes the SecretProviderClassPodStatus objects itself, as the driver would: one per pod and
//! SecretProviderClass when a pod mounts the volume, its versions rewritten on a rotation, and
//! deleted with its pod.
//!
//! A CSI roll writes `kreload.dev/csi-versions` on the pod template and never moves the config
//! stamp, so rolls are seen as a new ReplicaSet and a new value of that annotation. Absence of a
//! roll is shown by a sentinel: kreload runs without a storm guard (`--min-roll-interval 0s`,
//! so nothing is deferred), a rotation of the sentinel's own class is made after the action, and
//! once the sentinel rolled, kreload's roll counter must show the sentinel's roll and no other.
//!
//! The CRD is left in place (other runs use it), except by the test of an API not served, which
//! holds the others off while it removes and reinstalls it.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::observe::{events, notes, occurrences, scrape, wait_metric};
use common::workloads::*;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use serde_json::{Value, json};
use tokio::sync::RwLock;

const GROUP: &str = "secrets-store.csi.x-k8s.io";
const PLURAL: &str = "secretproviderclasspodstatuses";
const DRIVER: &str = "secrets-store.csi.k8s.io";
const CSI_VERSIONS: &str = "kreload.dev/csi-versions";
const SPC_AUTO: &str = "secretproviderclass.reloader.stakater.com/auto";
const SPC_RELOAD: &str = "secretproviderclass.reloader.stakater.com/reload";
const SPC_EXCLUDE: &str = "secretproviderclasses.exclude.reloader.stakater.com/reload";
const AUTO: &str = "reloader.stakater.com/auto";
const ROLLS: &str = "reloader_reload_executed_total";

/// Tests take it shared; the test that removes the CRD takes it alone.
fn crd_lock() -> &'static RwLock<()> {
    static LOCK: std::sync::OnceLock<RwLock<()>> = std::sync::OnceLock::new();
    LOCK.get_or_init(|| RwLock::new(()))
}

fn statuses() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "SecretProviderClassPodStatus"),
        PLURAL,
    )
}

fn api(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client(), &ns.name, &statuses())
}

/// The driver's CRD for SecretProviderClassPodStatus, as its chart installs it (v1 only here).
async fn ensure_status_crd(client: &kube::Client) {
    let name = format!("{PLURAL}.{GROUP}");
    let object = json!({"type": "object", "properties": {
        "id": {"type": "string"}, "version": {"type": "string"}}});
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "secretproviderclasspodstatus",
                      "kind": "SecretProviderClassPodStatus",
                      "listKind": "SecretProviderClassPodStatusList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "status": {"type": "object", "properties": {
                        "mounted": {"type": "boolean"},
                        "objects": {"type": "array", "items": object},
                        "podName": {"type": "string"},
                        "secretProviderClassName": {"type": "string"},
                        "targetPath": {"type": "string"}}}}}}}]
        }
    });
    apply_crd(client, &statuses(), crd).await;
}

/// A pod spec mounting the SecretProviderClass `spc` through the Secrets Store CSI driver, and
/// the ConfigMap `cm` (so that config opt-ins have something to consume).
fn mounts(spc: &str) -> Value {
    json!({
        "containers": [{"name": "app", "image": IMAGE,
            "envFrom": [{"configMapRef": {"name": "cm"}}],
            "volumeMounts": [{"name": "secrets", "mountPath": "/mnt/secrets", "readOnly": true}]}],
        "volumes": [{"name": "secrets", "csi": {"driver": DRIVER, "readOnly": true,
            "volumeAttributes": {"secretProviderClass": spc}}}]
    })
}

/// The SecretProviderClass a pod mounts through the driver, if any.
fn spc_of(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .filter_map(|v| v.csi.as_ref())
        .filter(|c| c.driver == DRIVER)
        .find_map(|c| {
            c.volume_attributes
                .as_ref()?
                .get("secretProviderClass")
                .cloned()
        })
}

fn objects(version: &str) -> Value {
    json!([{"id": "secret/db-password", "version": version},
           {"id": "secret/api-token", "version": format!("t-{version}")}])
}

async fn list_statuses(ns: &TestNamespace) -> Vec<DynamicObject> {
    api(ns)
        .list(&ListParams::default())
        .await
        .expect("list SecretProviderClassPodStatuses")
        .items
}

fn class_of(o: &DynamicObject) -> Option<&str> {
    o.data
        .pointer("/status/secretProviderClassName")
        .and_then(Value::as_str)
}

fn pod_of(o: &DynamicObject) -> Option<&str> {
    o.data.pointer("/status/podName").and_then(Value::as_str)
}

/// As the driver does when pods mount: a SecretProviderClassPodStatus for every live pod that
/// mounts `spc` and has none yet, with the versions `version(pod)` gives (per-mount versions,
/// as a provider whose version differs per mount would write).
async fn mount_new_pods(ns: &TestNamespace, spc: &str, version: impl Fn(&str) -> String) -> usize {
    let have: BTreeSet<String> = list_statuses(ns)
        .await
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    let pods: Api<Pod> = ns.api();
    let mut created = 0;
    for pod in pods
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
    {
        if pod.metadata.deletion_timestamp.is_some() || spc_of(&pod).as_deref() != Some(spc) {
            continue;
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let name = format!("{pod_name}-{}-{spc}", ns.name);
        if have.contains(&name) {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": "SecretProviderClassPodStatus",
            "metadata": {"name": name, "labels": {"internal.secrets-store.csi.k8s.io/node-name": "kwok-node"}},
            "status": {"podName": pod_name, "secretProviderClassName": spc, "mounted": true,
                       "targetPath": "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/secrets/mount",
                       "objects": objects(&version(&pod_name))}
        }))
        .unwrap();
        api(ns)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("create SecretProviderClassPodStatus {name}: {e}"));
        created += 1;
    }
    created
}

async fn patch_status(ns: &TestNamespace, name: &str, patch: Value) {
    api(ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch SecretProviderClassPodStatus {name}: {e}"));
}

/// As the driver's rotation does: the statuses of `spc` that `pick` chooses (by pod name) get
/// the new versions. Returns how many.
async fn rotate_where(
    ns: &TestNamespace,
    spc: &str,
    version: &str,
    pick: impl Fn(&str) -> bool,
) -> usize {
    let mut n = 0;
    for o in list_statuses(ns).await {
        if class_of(&o) != Some(spc) || !pod_of(&o).is_some_and(&pick) {
            continue;
        }
        let name = o.metadata.name.clone().unwrap_or_default();
        patch_status(ns, &name, json!({"status": {"objects": objects(version)}})).await;
        n += 1;
    }
    n
}

async fn rotate(ns: &TestNamespace, spc: &str, version: &str) -> usize {
    rotate_where(ns, spc, version, |_| true).await
}

/// As the driver does when pods go: their SecretProviderClassPodStatuses are deleted.
async fn unmount_gone_pods(ns: &TestNamespace) -> usize {
    let pods: Api<Pod> = ns.api();
    let live: BTreeSet<String> = pods
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    let mut deleted = 0;
    for o in list_statuses(ns).await {
        if pod_of(&o).is_some_and(|p| !live.contains(p)) {
            let name = o.metadata.name.clone().unwrap_or_default();
            api(ns)
                .delete(&name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("delete SecretProviderClassPodStatus {name}: {e}"));
            deleted += 1;
        }
    }
    deleted
}

/// What a Deployment looks like to this test: its CSI roll value, config stamp, ReplicaSets.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    csi: Option<String>,
    stamp: Option<String>,
    revisions: usize,
}

async fn seen(ns: &TestNamespace, name: &str) -> Seen {
    let o = get_json(ns, Kind::Deployment, name)
        .await
        .unwrap_or_else(|| panic!("Deployment {name} is gone"));
    let ann = |k: &str| {
        o.pointer("/spec/template/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Seen {
        csi: ann(CSI_VERSIONS),
        stamp: ann(STAMP),
        revisions: revisions(ns, Kind::Deployment, name).await,
    }
}

async fn seen_all(ns: &TestNamespace, names: &[&str]) -> Vec<Seen> {
    let mut out = Vec::new();
    for n in names {
        out.push(seen(ns, n).await);
    }
    out
}

/// Waits for one CSI roll of `name` since `before`: a new `csi-versions` value, the rollout
/// done, exactly one new ReplicaSet, and the config stamp unchanged.
async fn expect_csi_roll(ns: &TestNamespace, name: &str, before: &Seen) -> Result<Seen, String> {
    try_wait_for(ROLL_TIMEOUT, || async {
        let s = seen(ns, name).await;
        (s.csi.is_some() && s.csi != before.csi).then_some(())
    })
    .await
    .ok_or_else(|| {
        format!(
            "{name}: expected a CSI roll, but csi-versions stayed {:?}",
            before.csi
        )
    })?;
    try_wait_for(Duration::from_secs(90), || async {
        settled(ns, Kind::Deployment, name).await.then_some(())
    })
    .await
    .ok_or_else(|| format!("{name}: the rollout did not complete within 90s"))?;
    let now = seen(ns, name).await;
    if now.revisions != before.revisions + 1 {
        return Err(format!(
            "{name}: ReplicaSets went {} -> {} for one rotation; want exactly one new",
            before.revisions, now.revisions
        ));
    }
    if now.stamp != before.stamp {
        return Err(format!(
            "{name}: a CSI roll moved the config stamp {:?} -> {:?}",
            before.stamp, now.stamp
        ));
    }
    if now.csi.as_deref().is_some_and(|v| !v.starts_with("v2.")) {
        return Err(format!(
            "{name}: csi-versions {:?} is not keyed (v2.<keyid>.<hex>)",
            now.csi
        ));
    }
    Ok(now)
}

/// The sentinel: rotates its class to a new version and waits for its roll; then kreload's roll
/// counter must be `rolls_before + 1` (no other roll, none deferred: there is no storm guard),
/// and each of `names` must look as in `before`. Returns the sentinel's new look.
#[allow(clippy::too_many_arguments)]
async fn nothing_else_rolled(
    ns: &TestNamespace,
    kreload: &Running,
    sentinel_before: &Seen,
    round: &str,
    names: &[&str],
    before: &[Seen],
    rolls_before: f64,
    when: &str,
) -> (Vec<String>, Seen) {
    let mut failures = Vec::new();
    rotate(ns, "spc-s", round).await;
    let sentinel = match expect_csi_roll(ns, "sentinel", sentinel_before).await {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("{when}: the sentinel did not roll: {e}"));
            seen(ns, "sentinel").await
        }
    };
    match wait_metric(kreload, ROLLS, &[("success", "true")], ROLL_TIMEOUT, |n| {
        n >= rolls_before + 1.0
    })
    .await
    {
        Ok(n) if n == rolls_before + 1.0 => {}
        Ok(n) => failures.push(format!(
            "{when}: kreload rolled {} workloads, want only the sentinel",
            n - rolls_before
        )),
        Err(e) => failures.push(format!("{when}: {e}")),
    }
    for (name, b) in names.iter().zip(before) {
        let now = seen(ns, name).await;
        if now != *b {
            failures.push(format!("{when}: {name} changed: {b:?} -> {now:?}"));
        }
    }
    (failures, sentinel)
}

async fn rolls_so_far(kreload: &Running) -> f64 {
    scrape(kreload).await.get(ROLLS, &[("success", "true")])
}

async fn wait_statuses_listed(kreload: &Running) {
    wait_for(
        "kreload to list SecretProviderClassPodStatuses",
        Duration::from_secs(30),
        || async {
            kreload
                .log_text()
                .contains("SecretProviderClassPodStatuses listed")
                .then_some(())
        },
    )
    .await;
}

fn csi_kreload(ns: &TestNamespace) -> Running {
    kreload_for(
        &[ns],
        &["--enable-csi-integration", "--min-roll-interval", "0s"],
    )
}

/// With `--enable-csi-integration` and the API served: a rotation (an update of a status whose
/// own versions changed) rolls, exactly once, each workload opted in for the class (its name in
/// `secretproviderclass…/reload`, on the workload or on its template; `secretproviderclass…/auto`;
/// `reloader.stakater.com/auto`), with an Event naming it, and nothing else (excluded, not opted
/// in, another class, ConfigMap auto). Several pods rotating to the same versions roll once.
/// First mounts, new pods with per-mount versions, deletes, label edits, a restart and a
/// rotation made while kreload was down roll nothing.
#[tokio::test]
async fn rotations_roll_opted_in_workloads_once() {
    let _shared = crd_lock().read().await;
    let client = client().await;
    ensure_status_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-csi").await;
    cm("cm").data(json!({"k": "1"})).create(&ns).await;
    let first = csi_kreload(&ns);
    let mut failures = Vec::new();
    let manifests = [
        ("named", json!({SPC_RELOAD: "x, spc-a"}), "spc-a", 3),
        ("typed", json!({SPC_AUTO: "true"}), "spc-a", 1),
        ("generic", json!({AUTO: "true"}), "spc-a", 1),
        (
            "excluded",
            json!({AUTO: "true", SPC_EXCLUDE: "spc-a"}),
            "spc-a",
            1,
        ),
        ("plain", json!({}), "spc-a", 1),
        ("other", json!({SPC_AUTO: "true"}), "spc-b", 1),
        (
            "cmauto",
            json!({"configmap.reloader.stakater.com/auto": "true"}),
            "spc-a",
            1,
        ),
        ("sentinel", json!({SPC_AUTO: "true"}), "spc-s", 1),
    ];
    for (name, annotations, spc, replicas) in &manifests {
        create(
            &ns,
            workload(
                Kind::Deployment,
                name,
                *replicas,
                annotations.clone(),
                mounts(spc),
            ),
        )
        .await;
    }
    // Opted in on the pod template (no reload key on the workload): read there.
    create(
        &ns,
        with_template_annotations(
            deploy("templated", json!({}), mounts("spc-a")),
            Kind::Deployment,
            json!({SPC_RELOAD: "spc-a"}),
        ),
    )
    .await;
    let rolling = ["named", "typed", "generic", "templated"];
    let keeping = ["excluded", "plain", "other", "cmauto"];
    let all: Vec<&str> = rolling.iter().chain(&keeping).copied().collect();
    let mut cases: Vec<Case> = all
        .iter()
        .map(|n| keeps(Kind::Deployment, n, "baseline"))
        .collect();
    cases.push(keeps(Kind::Deployment, "sentinel", "baseline"));
    baselines(&ns, &cases).await;
    wait_statuses_listed(&first).await;

    // The driver mounts: the first versions of each class are learnt, not a change.
    for spc in ["spc-a", "spc-b", "spc-s"] {
        mount_new_pods(&ns, spc, |_| "1".into()).await;
    }
    let before = seen_all(&ns, &all).await;
    let mut sentinel = seen(&ns, "sentinel").await;
    // The sentinel's first mount must be known before its rotation counts: give the watch the
    // time to see the adds by waiting for the statuses to be counted as watch events.
    wait_metric(
        &first,
        "kreload_watch_events_total",
        &[("kind", "SecretProviderClassPodStatus")],
        ROLL_TIMEOUT,
        |n| n >= 11.0,
    )
    .await
    .unwrap_or_else(|e| panic!("the statuses were not watched: {e}"));
    let (f, s) = nothing_else_rolled(
        &ns,
        &first,
        &sentinel,
        "s1",
        &all,
        &before,
        0.0,
        "after the first mounts",
    )
    .await;
    failures.extend(f);
    sentinel = s;

    // A rotation of spc-a, but of only one of named's three pods: every opted-in workload rolls
    // once, with one Event naming the class; the others do not.
    let named_pods: BTreeSet<String> = pods(&ns, "named")
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let first_named = named_pods.iter().next().cloned().unwrap_or_default();
    let rolls_before = rolls_so_far(&first).await;
    let rotated = rotate_where(&ns, "spc-a", "2", |pod| {
        !named_pods.contains(pod) || pod == first_named
    })
    .await;
    if rotated != 7 {
        failures.push(format!("rotated {rotated} statuses of spc-a, want 7"));
    }
    let mut after = before.clone();
    for (i, name) in all.iter().enumerate() {
        if rolling.contains(name) {
            match expect_csi_roll(&ns, name, &before[i]).await {
                Ok(s) => after[i] = s,
                Err(e) => failures.push(e),
            }
            let reloaded = events(&ns, name, "Reloaded").await;
            if occurrences(&reloaded) != 1
                || !notes(&reloaded)
                    .iter()
                    .any(|n| n.contains("SecretProviderClass spc-a"))
            {
                failures.push(format!(
                    "want one Reloaded Event naming SecretProviderClass spc-a on {name}, got {:?}",
                    notes(&reloaded)
                ));
            }
        }
    }
    let rolled = rolling.len() as f64;
    let (f, s) = nothing_else_rolled(
        &ns,
        &first,
        &sentinel,
        "s2",
        &all,
        &after,
        rolls_before + rolled,
        "after the rotation of spc-a",
    )
    .await;
    failures.extend(f);
    sentinel = s;

    // named's other two pods rotate to the same versions: no second roll.
    let more = rotate_where(&ns, "spc-a", "2", |pod| {
        named_pods.contains(pod) && pod != first_named
    })
    .await;
    if more != 2 {
        failures.push(format!("rotated {more} more statuses of named, want 2"));
    }
    let rolls_before = rolls_so_far(&first).await;
    let (f, s) = nothing_else_rolled(
        &ns,
        &first,
        &sentinel,
        "s3",
        &all,
        &after,
        rolls_before,
        "after the other pods rotated to the same versions",
    )
    .await;
    failures.extend(f);
    sentinel = s;

    // New pods mount, each with versions of its own (a provider whose version differs per
    // mount); the old pods' statuses go; a status's labels change: nothing rolls.
    let mounted = mount_new_pods(&ns, "spc-a", |pod| format!("per-mount-{pod}")).await;
    mount_new_pods(&ns, "spc-s", |_| "s3".into()).await;
    let gone = unmount_gone_pods(&ns).await;
    if mounted < 4 || gone < 4 {
        failures.push(format!(
            "after the roll: {mounted} new pods mounted spc-a and {gone} old statuses went; want 4 or more of each"
        ));
    }
    for o in list_statuses(&ns).await {
        if class_of(&o) == Some("spc-a") {
            let name = o.metadata.name.clone().unwrap_or_default();
            patch_status(
                &ns,
                &name,
                json!({"metadata": {"labels": {"touched": "yes"}}}),
            )
            .await;
        }
    }
    // A replace of a manifest without kreload's csi-versions (GitOps with replace, say): the
    // value is kept, and nothing rolls.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = ns.api();
    let mut typed = deployments.get("typed").await.expect("get typed");
    if let Some(a) = typed
        .spec
        .as_mut()
        .and_then(|s| s.template.metadata.as_mut())
        .and_then(|m| m.annotations.as_mut())
    {
        a.remove(CSI_VERSIONS);
    }
    typed.metadata.managed_fields = None;
    deployments
        .replace("typed", &PostParams::default(), &typed)
        .await
        .expect("replace typed without csi-versions");
    let rolls_before = rolls_so_far(&first).await;
    let (f, s) = nothing_else_rolled(
        &ns,
        &first,
        &sentinel,
        "s4",
        &all,
        &after,
        rolls_before,
        "after re-mounts with per-mount versions, unmounts, label edits and a replace without csi-versions",
    )
    .await;
    failures.extend(f);
    sentinel = s;

    // A restart with nothing changed rolls nothing.
    first.terminate();
    let second = csi_kreload(&ns);
    wait_statuses_listed(&second).await;
    let (f, s) = nothing_else_rolled(
        &ns,
        &second,
        &sentinel,
        "s5",
        &all,
        &after,
        0.0,
        "after a kreload restart",
    )
    .await;
    failures.extend(f);
    sentinel = s;

    // A rotation while kreload is down is not replayed (as Reloader).
    second.terminate();
    rotate(&ns, "spc-a", "3").await;
    let third = csi_kreload(&ns);
    wait_statuses_listed(&third).await;
    let (f, _) = nothing_else_rolled(
        &ns,
        &third,
        &sentinel,
        "s6",
        &all,
        &after,
        0.0,
        "after a rotation made while kreload was down",
    )
    .await;
    failures.extend(f);

    check(failures, &[&first, &second, &third]);
}

/// Without `--enable-csi-integration` nothing changes: the SecretProviderClass keys decide
/// nothing (a workload with only them on its metadata is read from its template as before; one
/// with only them is not opted in), are never denied, and two workloads that differ only by
/// them carry identical stamps; a rotation rolls nothing, and a ConfigMap change rolls each
/// opted-in one once.
#[tokio::test]
async fn without_the_flag_the_csi_keys_change_nothing() {
    let _shared = crd_lock().read().await;
    let client = client().await;
    ensure_status_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-csi-off").await;
    cm("cm").data(json!({"k": "1"})).create(&ns).await;
    let kreload = kreload_for(&[&ns], &[]);
    let mut failures = Vec::new();
    create(
        &ns,
        deploy(
            "twin-a",
            json!({AUTO: "true", SPC_RELOAD: "spc-a", SPC_AUTO: "yes", SPC_EXCLUDE: "x"}),
            mounts("spc-a"),
        ),
    )
    .await;
    create(
        &ns,
        deploy("twin-b", json!({AUTO: "true"}), mounts("spc-a")),
    )
    .await;
    // Only an SPC key on the metadata: the template's keys are read, as without it.
    create(
        &ns,
        with_template_annotations(
            deploy("tpl", json!({SPC_AUTO: "true"}), mounts("spc-a")),
            Kind::Deployment,
            json!({AUTO: "true"}),
        ),
    )
    .await;
    // Only SPC keys: not opted in, never stamped.
    create(
        &ns,
        deploy("spc-only", json!({SPC_AUTO: "true"}), mounts("spc-a")),
    )
    .await;
    let cases = [
        rolls(Kind::Deployment, "twin-a", "auto; SPC keys alongside"),
        rolls(Kind::Deployment, "twin-b", "auto"),
        rolls(Kind::Deployment, "tpl", "auto on its template"),
        keeps(Kind::Deployment, "spc-only", "only SPC keys"),
    ];
    let bases = baselines(&ns, &cases).await;
    let stamp = |b: &Base| b.stamp.clone();
    if stamp(&bases[0]).is_none() || stamp(&bases[0]) != stamp(&bases[1]) {
        failures.push(format!(
            "twin-a and twin-b differ only by SPC keys, but their stamps are {:?} and {:?}",
            bases[0].stamp, bases[1].stamp
        ));
    }
    if stamp(&bases[2]).is_none() {
        failures
            .push("tpl is not stamped: an SPC key on its metadata hid its template's auto".into());
    }
    if bases[3].stamp.is_some() {
        failures.push(format!(
            "spc-only was stamped ({:?}): SPC keys opted it in",
            bases[3].stamp
        ));
    }
    let pod_stamp = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(STAMP).cloned())
    };
    let (a, b) = (
        first_pod(&ns, "app=twin-a").await,
        first_pod(&ns, "app=twin-b").await,
    );
    if pod_stamp(&a).is_none() || pod_stamp(&a) != pod_stamp(&b) {
        failures.push(format!(
            "the pods of twin-a and twin-b carry {:?} and {:?}",
            pod_stamp(&a),
            pod_stamp(&b)
        ));
    }
    mount_new_pods(&ns, "spc-a", |_| "1".into()).await;
    rotate(&ns, "spc-a", "2").await;
    // The sentinel here is a ConfigMap change: each opted-in workload rolls exactly once (no
    // second roll from the rotation), and spc-only not at all.
    set_cm(&ns, "cm", "k", "2").await;
    failures.extend(verify(&ns, &cases, &bases).await);
    for name in ["twin-a", "twin-b", "tpl", "spc-only"] {
        if seen(&ns, name).await.csi.is_some() {
            failures.push(format!("{name} carries {CSI_VERSIONS} with the flag off"));
        }
    }
    let (a, b) = (
        workload_stamp(&ns, Kind::Deployment, "twin-a").await,
        workload_stamp(&ns, Kind::Deployment, "twin-b").await,
    );
    if a.is_none() || a != b {
        failures.push(format!(
            "after the roll the twins' stamps are {a:?} and {b:?}"
        ));
    }
    check(failures, &[&kreload]);
}

/// `--enable-csi-integration` asked for, the API served, but kreload may not list the statuses:
/// an error says which RBAC is missing, and kreload runs without CSI rolls (a replica that does
/// not start would take admission and every other roll down with it).
#[tokio::test]
async fn missing_rbac_is_an_error_and_kreload_runs_without_csi() {
    let _shared = crd_lock().read().await;
    let client = client().await;
    ensure_status_crd(&client).await;
    let home = TestNamespace::new(&client, "e2e-csi-home").await;
    let ns = TestNamespace::new(&client, "e2e-csi-rbac").await;
    let sa = "kreload-nocsi";
    let dir = limited_identity(&home, sa).await;
    grant(
        &client,
        &home.name,
        &home.name,
        sa,
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}]),
    )
    .await;
    grant(
        &client,
        &ns.name,
        &home.name,
        sa,
        // Every kind kreload may watch here (the optional kinds' CRDs may be installed by
        // other tests), but not the CSI statuses.
        json!([{"apiGroups": ["", "apps", "batch", "argoproj.io", "apps.openshift.io"], "resources": ["*"], "verbs": ["get", "list", "watch", "patch"]}]),
    )
    .await;
    let kubeconfig = dir.join("sa.kubeconfig");
    let log = dir.join("kreload.log");
    let mut child = std::process::Command::new(kreload_bin())
        .arg("run")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--namespace", &home.name, "--namespaces", &ns.name])
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
        .args(["--enable-csi-integration", "--exit-on-stdin-close"])
        .env_remove("KUBECONFIG")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start kreload");
    // It runs without CSI rolls: its watches sync and the error names the missing RBAC.
    let synced = try_wait_for(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("every watch has synced").then_some(()) }
    })
    .await;
    let running = child.try_wait().ok().flatten().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        synced.is_some() && running,
        "kreload did not run on without the right to list {PLURAL}; log:\n{}",
        tail(&text, 40)
    );
    assert!(
        text.contains("forbidden") && text.contains(PLURAL) && text.contains(GROUP),
        "kreload's error does not name the missing RBAC; log:\n{}",
        tail(&text, 40)
    );
}

/// `--enable-csi-integration` asked for, but the API not served: a warning says so, and
/// kreload runs and rolls ConfigMap changes as without the flag.
#[tokio::test]
async fn api_not_served_is_a_warning_and_configs_still_roll() {
    let _alone = crd_lock().write().await;
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = format!("{PLURAL}.{GROUP}");
    let _ = crds.delete(&name, &DeleteParams::default()).await;
    let discovery = client.clone();
    wait_for(
        &format!("{PLURAL} to be no longer served"),
        Duration::from_secs(60),
        || async {
            let served = discovery
                .list_api_group_resources(&format!("{GROUP}/v1"))
                .await
                .is_ok_and(|l| l.resources.iter().any(|r| r.name == PLURAL));
            (!served).then_some(())
        },
    )
    .await;
    let ns = TestNamespace::new(&client, "e2e-csi-unserved").await;
    cm("cm").data(json!({"k": "1"})).create(&ns).await;
    let kreload = csi_kreload(&ns);
    let mut failures = Vec::new();
    if !kreload.log_text().contains("not served") {
        failures.push(format!("kreload's log does not say {PLURAL} is not served"));
    }
    create(&ns, deploy("web", json!({AUTO: "true"}), mounts("spc-a"))).await;
    let cases = [rolls(Kind::Deployment, "web", "auto, consumes cm")];
    let bases = baselines(&ns, &cases).await;
    set_cm(&ns, "cm", "k", "2").await;
    failures.extend(verify(&ns, &cases, &bases).await);
    drop(kreload);
    ensure_status_crd(&client).await;
    if !failures.is_empty() {
        panic!("{}", failures.join("\n"));
    }
}
