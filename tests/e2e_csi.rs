//! Issue 11 item 4: Secrets Store CSI (`--enable-csi-integration`). No CSI driver runs on the
//! harness: the test installs the `secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io`
//! CRD (as the driver's chart does: `status` at the top level, no status subresource) and
//! writes the SecretProviderClassPodStatus objects itself, as the driver would: one per pod and
//! SecretProviderClass when a pod mounts the volume, its versions rewritten on a rotation, and
//! deleted with its pod.
//!
//! The CRD is left in place (other runs use it); the namespace goes with the test.

mod common;

use std::collections::BTreeSet;

use common::observe::{events, notes, occurrences};
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

const GROUP: &str = "secrets-store.csi.x-k8s.io";
const PLURAL: &str = "secretproviderclasspodstatuses";
const DRIVER: &str = "secrets-store.csi.k8s.io";

fn statuses() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "SecretProviderClassPodStatus"),
        PLURAL,
    )
}

fn api(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client(), &ns.name, &statuses())
}

/// The driver's CRD for SecretProviderClassPodStatus, as its chart installs it (v1 only here):
/// the status is an ordinary top-level field (no status subresource), written by the driver.
async fn ensure_status_crd(client: &kube::Client) {
    let name = format!("{PLURAL}.{GROUP}");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
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
    crds.patch(
        &name,
        &PatchParams::apply("kreload-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("apply the CRD {name}: {e}"));
    wait_for(
        &format!("the CRD {name} to be established"),
        std::time::Duration::from_secs(30),
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
    let served: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &statuses());
    wait_for(
        &format!("{PLURAL} to be served"),
        std::time::Duration::from_secs(30),
        || async { served.list(&ListParams::default()).await.ok().map(|_| ()) },
    )
    .await;
}

/// A pod spec mounting the SecretProviderClass `spc` through the Secrets Store CSI driver.
fn mounts(spc: &str) -> Value {
    json!({
        "containers": [{"name": "app", "image": IMAGE,
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

/// As the driver does when pods mount: a SecretProviderClassPodStatus for every live pod that
/// mounts `spc` and has none yet, with the versions it mounted.
async fn mount_new_pods(ns: &TestNamespace, spc: &str, version: &str) -> usize {
    let have: BTreeSet<String> = api(ns)
        .list(&ListParams::default())
        .await
        .expect("list SecretProviderClassPodStatuses")
        .items
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
                       "targetPath": format!("/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/secrets/mount"),
                       "objects": objects(version)}
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

/// As the driver's rotation does: every SecretProviderClassPodStatus of `spc` gets the new
/// versions.
async fn rotate(ns: &TestNamespace, spc: &str, version: &str) {
    for o in api(ns)
        .list(&ListParams::default())
        .await
        .expect("list SecretProviderClassPodStatuses")
        .items
    {
        let name = o.metadata.name.clone().unwrap_or_default();
        if o.data.pointer("/status/secretProviderClassName") != Some(&json!(spc)) {
            continue;
        }
        api(ns)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"objects": objects(version)}})),
            )
            .await
            .unwrap_or_else(|e| panic!("rotate SecretProviderClassPodStatus {name}: {e}"));
    }
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
    for o in api(ns)
        .list(&ListParams::default())
        .await
        .expect("list SecretProviderClassPodStatuses")
        .items
    {
        let pod = o.data.pointer("/status/podName").and_then(Value::as_str);
        if pod.is_some_and(|p| !live.contains(p)) {
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

/// Waits past the coalescing window and the storm guard, then checks that none of `cases`
/// rolled since `bases`.
async fn nothing_rolled(
    ns: &TestNamespace,
    cases: &[Case],
    bases: &[Base],
    when: &str,
) -> Vec<String> {
    tokio::time::sleep(STORM_GUARD).await;
    let mut failures = Vec::new();
    for (c, b) in cases.iter().zip(bases) {
        if let Err(e) = expect_unchanged(ns, c.kind, c.name, b).await {
            failures.push(format!("[{}] {when}: {e} ({})", ns.name, c.why));
        }
    }
    failures
}

async fn all_baselines(ns: &TestNamespace, cases: &[Case]) -> Vec<Base> {
    let mut out = Vec::new();
    for c in cases {
        out.push(baseline(ns, c.kind, c.name).await);
    }
    out
}

/// With `--enable-csi-integration` and the API served: a rotation of the versions a
/// SecretProviderClass mounts rolls, exactly once, the workloads opted in for it (its name in
/// `secretproviderclass.reloader.stakater.com/reload`, `secretproviderclass.reloader.stakater.com/auto`,
/// or `reloader.stakater.com/auto` with a CSI volume of it) and nothing else (excluded, not
/// opted in, another class, the ConfigMap auto). First mounts, re-mounts by the new pods, the
/// old pods' statuses going away and a kreload restart roll nothing; a rotation made while
/// kreload is down rolls the same workloads once when it starts.
#[tokio::test]
async fn secret_provider_class_rotations_roll_opted_in_workloads_once() {
    let client = client().await;
    ensure_status_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-csi").await;
    let first = kreload_for(&[&ns], &["--enable-csi-integration"]);
    let mut failures = Vec::new();
    if !first
        .log_text()
        .contains("secretproviderclasspodstatuses served")
    {
        failures.push(
            "kreload's log does not say it found secretproviderclasspodstatuses served".to_owned(),
        );
    }
    let spc_auto = "secretproviderclass.reloader.stakater.com/auto";
    let spc_reload = "secretproviderclass.reloader.stakater.com/reload";
    let spc_exclude = "secretproviderclasses.exclude.reloader.stakater.com/reload";
    let auto = "reloader.stakater.com/auto";
    let manifests = [
        ("named", json!({spc_reload: "spc-a"}), "spc-a"),
        ("typed", json!({spc_auto: "true"}), "spc-a"),
        ("generic", json!({auto: "true"}), "spc-a"),
        (
            "excluded",
            json!({auto: "true", spc_exclude: "spc-a"}),
            "spc-a",
        ),
        ("plain", json!({}), "spc-a"),
        ("other", json!({spc_auto: "true"}), "spc-b"),
        (
            "cmauto",
            json!({"configmap.reloader.stakater.com/auto": "true"}),
            "spc-a",
        ),
    ];
    for (name, annotations, spc) in &manifests {
        create(&ns, deploy(name, annotations.clone(), mounts(spc))).await;
    }
    let d = Kind::Deployment;
    let roll = [
        rolls(d, "named", "spc-a in its SecretProviderClass reload list"),
        rolls(d, "typed", "SecretProviderClass auto, mounts spc-a"),
        rolls(d, "generic", "auto, mounts spc-a"),
    ];
    let keep = [
        keeps(d, "excluded", "auto, but spc-a in its exclude list"),
        keeps(d, "plain", "mounts spc-a, not opted in"),
        keeps(
            d,
            "other",
            "SecretProviderClass auto, mounts spc-b, which did not change",
        ),
        keeps(d, "cmauto", "ConfigMap auto only, mounts spc-a"),
    ];
    let all: Vec<Case> = roll.iter().chain(&keep).map(|c| Case { ..*c }).collect();
    let bases = baselines(&ns, &all).await;

    // The driver mounts: the first versions of each class are a baseline, not a change.
    mount_new_pods(&ns, "spc-a", "1").await;
    mount_new_pods(&ns, "spc-b", "1").await;
    failures.extend(nothing_rolled(&ns, &all, &bases, "after the first mounts").await);

    // A rotation of spc-a: the opted-in ones roll once, the others not at all.
    rotate(&ns, "spc-a", "2").await;
    let mut cases: Vec<Case> = roll.iter().map(|c| Case { ..*c }).collect();
    cases.extend(keep.iter().map(|c| Case { ..*c }));
    failures.extend(verify(&ns, &cases, &bases).await);
    for name in ["named", "typed", "generic"] {
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

    // The new pods mount the new versions, the old pods' statuses go: nothing rolls.
    let bases = all_baselines(&ns, &all).await;
    let mounted = mount_new_pods(&ns, "spc-a", "2").await;
    let gone = unmount_gone_pods(&ns).await;
    if mounted < 3 || gone < 3 {
        failures.push(format!(
            "after the roll: {mounted} new pods mounted spc-a and {gone} old statuses went; want 3 or more of each"
        ));
    }
    failures.extend(nothing_rolled(&ns, &all, &bases, "after re-mounts and unmounts").await);

    // A restart with nothing changed rolls nothing.
    first.terminate();
    let second = kreload_for(&[&ns], &["--enable-csi-integration"]);
    failures.extend(nothing_rolled(&ns, &all, &bases, "after a kreload restart").await);

    // A rotation while kreload is down rolls the opted-in ones once when it starts.
    second.terminate();
    rotate(&ns, "spc-a", "3").await;
    let third = kreload_for(&[&ns], &["--enable-csi-integration"]);
    let mut cases: Vec<Case> = roll.iter().map(|c| Case { ..*c }).collect();
    cases.extend(keep.iter().map(|c| Case { ..*c }));
    failures.extend(verify(&ns, &cases, &bases).await);

    check(failures, &[&first, &second, &third]);
}

/// Off by default, as in Reloader: without `--enable-csi-integration`, a rotation rolls nothing,
/// even for a workload opted in for its SecretProviderClass by name.
#[tokio::test]
async fn without_the_flag_rotations_roll_nothing() {
    let client = client().await;
    ensure_status_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-csi-off").await;
    let kreload = kreload_for(&[&ns], &[]);
    create(
        &ns,
        deploy(
            "named",
            json!({"secretproviderclass.reloader.stakater.com/reload": "spc-a", "reloader.stakater.com/auto": "true"}),
            mounts("spc-a"),
        ),
    )
    .await;
    let keep = [keeps(Kind::Deployment, "named", "CSI integration is off")];
    let bases = baselines(&ns, &keep).await;
    mount_new_pods(&ns, "spc-a", "1").await;
    tokio::time::sleep(SETTLE).await;
    rotate(&ns, "spc-a", "2").await;
    let failures = nothing_rolled(&ns, &keep, &bases, "after a rotation").await;
    check(failures, &[&kreload]);
}
