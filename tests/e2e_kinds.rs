//! Issue 11 items 5 and 10: workloads beyond Kubernetes' own kinds.
//!
//! - OpenShift DeploymentConfigs, on a CRD of that group and kind standing in for OpenShift's
//!   API. The harness runs no OpenShift controller, so what is checked is kreload's part: the
//!   stamp at CREATE, the owner lookup of their pods, and the one template patch that triggers
//!   their ConfigChange rollout.
//!
//! Each test runs its own kreload, scoped to its own namespace (`kreload_for`); the CRDs are
//! registered before it starts, since kreload discovers the optional kinds once, at start. The
//! CRDs stay (other tests use them); the objects of their kinds are deleted at the end.

mod common;

use std::time::Duration;

use common::observe::{events, notes, occurrences, wait_metric};
use common::workloads::*;
use common::*;
use k8s_openapi::api::core::v1::ReplicationController;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

/// Deletes an object of a CRD's kind and waits until it is gone.
async fn delete(ns: &TestNamespace, kind: Kind, name: &str) {
    let api = dyn_api(ns, kind);
    let _ = api.delete(name, &DeleteParams::default()).await;
    wait_for(
        &format!("{kind:?} {}/{name} to be deleted", ns.name),
        Duration::from_secs(30),
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// A label and an annotation on a ConfigMap: metadata only, which never rolls anything.
async fn relabel_cm(ns: &TestNamespace, name: &str, value: &str) {
    patch_cm(
        ns,
        name,
        json!({"metadata": {"labels": {"e2e-touched": value}, "annotations": {"note": value}}}),
    )
    .await;
}

/// Issue 11 item 5: a DeploymentConfig is stamped at CREATE; the pods of its
/// ReplicationController (`<dc>-<version>`, as OpenShift names and labels it) carry its stamp;
/// a data change of a config in its trigger set patches its template once with a new v2 stamp
/// (the template change that triggers its ConfigChange rollout); a label edit of that config
/// and a change outside its trigger set (a Secret, under `configmap.reloader.stakater.com/auto`)
/// patch nothing.
#[tokio::test]
async fn deployment_configs_are_stamped_and_rolled_like_deployments() {
    let client = client().await;
    ensure_deployment_config_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-k-dc").await;
    cm("dc-cm").create(&ns).await;
    secret("dc-secret").create(&ns).await;
    let kreload = kreload_for(&[&ns], &[]);
    let mut failures = Vec::new();
    let log = std::fs::read_to_string(&kreload.log).unwrap_or_default();
    if !log.contains("deploymentconfigs served") {
        failures.push("kreload's log does not say it found DeploymentConfigs served".to_owned());
    }

    create(
        &ns,
        workload(
            Kind::DeploymentConfig,
            "web",
            1,
            json!({"configmap.reloader.stakater.com/auto": "true"}),
            env_from(&["dc-cm"], &["dc-secret"]),
        ),
    )
    .await;
    let dc = get_json(&ns, Kind::DeploymentConfig, "web")
        .await
        .expect("DeploymentConfig web");
    let Some(created) = stamp_in(&dc, Kind::DeploymentConfig) else {
        panic!(
            "DeploymentConfig web was not stamped at CREATE: template {}; kreload log: {}",
            dc["spec"]["template"],
            kreload.log.display()
        );
    };
    assert!(created.starts_with("v2."), "stamp {created:?} is not v2");
    // The watch has it (the pods' owner lookup reads the index).
    wait_metric(
        &kreload,
        "kreload_watch_events_total",
        &[("kind", "DeploymentConfig")],
        Duration::from_secs(30),
        |n| n >= 1.0,
    )
    .await
    .unwrap_or_else(|e| panic!("DeploymentConfigs are not watched: {e}"));
    wait_metric(
        &kreload,
        "kreload_index_workloads",
        &[],
        Duration::from_secs(30),
        |n| n >= 1.0,
    )
    .await
    .unwrap_or_else(|e| panic!("DeploymentConfig web is not indexed: {e}"));

    // The ReplicationController OpenShift's deployer makes for version 1, without the stamp:
    // its pods' stamp can only come from the webhook.
    let mut template = dc["spec"]["template"].clone();
    let pod_spec = template["spec"].clone();
    template["metadata"] = json!({
        "labels": {"app": "web", "deploymentconfig": "web", "deployment": "web-1"},
        "annotations": {"openshift.io/deployment-config.name": "web",
                        "openshift.io/deployment.name": "web-1"}
    });
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "web-1",
            "labels": {"openshift.io/deployment-config.name": "web"},
            "annotations": {"openshift.io/deployment-config.name": "web",
                            "openshift.io/deployment-config.latest-version": "1"},
            "ownerReferences": [{"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
                "name": "web", "uid": dc["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 1, "selector": {"deployment": "web-1", "deploymentconfig": "web"},
                 "template": template}
    }))
    .unwrap();
    ns.api::<ReplicationController>()
        .create(&PostParams::default(), &rc)
        .await
        .expect("create the DeploymentConfig's ReplicationController");
    let pod = first_pod(&ns, "deployment=web-1").await;
    let consumed = bare_pod_stamp(&ns, &pod_spec).await;
    if consumed.as_ref() == Some(&created) {
        failures.push(
            "test setup: the DeploymentConfig's stamp equals its consumed set's; the owner check proves nothing"
                .to_owned(),
        );
    }
    let got = pod.annotations().get(STAMP).cloned();
    if got.as_ref() != Some(&created) {
        failures.push(format!(
            "pod {} of ReplicationController web-1: stamp {got:?}, want DeploymentConfig web's {created} (the stamp of everything it consumes is {consumed:?})",
            pod.name_any()
        ));
    }

    // A Secret is outside its trigger set, and a label edit of its ConfigMap is metadata:
    // nothing, past the coalescing window.
    let before = baseline(&ns, Kind::DeploymentConfig, "web").await;
    set_secret(&ns, "dc-secret", "password", "rotated").await;
    relabel_cm(&ns, "dc-cm", "before").await;
    tokio::time::sleep(SETTLE).await;
    if let Err(e) = expect_unchanged(&ns, Kind::DeploymentConfig, "web", &before).await {
        failures.push(format!(
            "after a Secret change and a ConfigMap label edit: {e}"
        ));
    }
    // A data change of its ConfigMap: one template patch, with a new v2 stamp, and one
    // Reloaded Event. A label edit after it rolls nothing either (past the storm guard, which
    // would only have deferred a second roll).
    set_cm(&ns, "dc-cm", "mode", "b").await;
    match expect_roll(&ns, Kind::DeploymentConfig, "web", &before).await {
        Err(e) => failures.push(e),
        Ok(stamp) => {
            relabel_cm(&ns, "dc-cm", "after").await;
            tokio::time::sleep(STORM_GUARD).await;
            let after = Base {
                stamp: Some(stamp),
                revisions: 0,
            };
            if let Err(e) = expect_unchanged(&ns, Kind::DeploymentConfig, "web", &after).await {
                failures.push(format!("rolled, then again (a label edit came after): {e}"));
            }
            let reloaded = events(&ns, "web", "Reloaded").await;
            if occurrences(&reloaded) != 1
                || !notes(&reloaded)
                    .iter()
                    .any(|n| n.contains("ConfigMap dc-cm"))
            {
                failures.push(format!(
                    "want one Reloaded Event naming ConfigMap dc-cm on DeploymentConfig web, got {:?}",
                    notes(&reloaded)
                ));
            }
        }
    }
    delete(&ns, Kind::DeploymentConfig, "web").await;
    check(failures, &[&kreload]);
}
