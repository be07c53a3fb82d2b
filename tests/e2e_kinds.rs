//! Issue 11 items 5 and 10: workloads beyond Kubernetes' own kinds.
//!
//! - OpenShift DeploymentConfigs, on a CRD of that group and kind standing in for OpenShift's
//!   API. The harness runs no OpenShift controller, so what is checked is kreload's part: the
//!   stamp at CREATE, the owner lookup of their pods, and the one template patch that triggers
//!   their ConfigChange rollout.
//! - Argo Rollouts that take their pod template from a Deployment (`spec.workloadRef`), on the
//!   minimal Rollout CRD. No Argo Rollouts controller runs either: what it would do (note a
//!   change of the Deployment on the Rollout) the test does.
//!
//! Each test runs its own kreload, scoped to its own namespace (`kreload_for`); the CRDs are
//! registered before it starts, since kreload discovers the optional kinds once, at start. The
//! CRDs stay (other tests use them); the objects of their kinds are deleted at the end.

mod common;

use std::time::Duration;

use common::observe::{events, notes, occurrences, wait_metric, wait_watched_and_indexed};
use common::workloads::*;
use common::*;
use k8s_openapi::api::core::v1::ReplicationController;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

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
    wait_watched_and_indexed(&kreload, "DeploymentConfig").await;

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

/// A Rollout's `spec.restartAt` and the stamp on its metadata.
fn restart_of(rollout: &Value) -> (Option<String>, Option<String>) {
    let restart_at = rollout
        .pointer("/spec/restartAt")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let stamp = rollout
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(STAMP))
        .and_then(Value::as_str)
        .map(str::to_owned);
    (restart_at, stamp)
}

/// Issue 11 item 10 (Reloader #1090): a Rollout that takes its pod template from a Deployment
/// (`spec.workloadRef`) is rolled as Reloader rolls it: `spec.restartAt` on the Rollout, for a
/// change of a config the Deployment's template consumes. Its own template stays empty (Argo
/// Rollouts refuses one), and the Deployment, not opted in, is never touched. A label edit
/// rolls nothing; when the Deployment's template comes to consume another config (noted on the
/// Rollout, as Argo Rollouts' controller does), the new hash is accounted for, not rolled, and
/// a change of that config rolls it.
#[tokio::test]
async fn rollouts_with_a_workload_ref_restart_for_the_referenced_templates_configs() {
    let client = client().await;
    ensure_rollout_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-k-ref").await;
    cm("ref-cm").create(&ns).await;
    cm("ref-cm2").create(&ns).await;
    // The Deployment Argo Rollouts takes the template from, scaled to zero as it does.
    create(
        &ns,
        workload(
            Kind::Deployment,
            "web",
            0,
            json!({}),
            env_from(&["ref-cm"], &[]),
        ),
    )
    .await;
    let deployment_before = get_json(&ns, Kind::Deployment, "web")
        .await
        .expect("Deployment web")["spec"]["template"]
        .clone();
    let kreload = kreload_for(&[&ns], &[]);
    let mut failures = Vec::new();

    create(
        &ns,
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "ro", "annotations": {"reloader.stakater.com/auto": "true"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "strategy": {"canary": {}}}}),
    )
    .await;
    let rollout = || async {
        get_json(&ns, Kind::Rollout, "ro")
            .await
            .expect("Rollout ro")
    };
    let created = rollout().await;
    if created["spec"].get("template").is_some() {
        failures.push(format!(
            "admission gave the Rollout a template (Argo Rollouts refuses one with workloadRef): {}",
            created["spec"]
        ));
    }
    if restart_of(&created) != (None, None) {
        failures.push(format!(
            "a new Rollout: want no restartAt and no stamp, got {:?}",
            restart_of(&created)
        ));
    }
    wait_metric(
        &kreload,
        "kreload_index_workloads",
        &[],
        Duration::from_secs(30),
        |n| n >= 1.0,
    )
    .await
    .unwrap_or_else(|e| panic!("Rollout ro is not indexed: {e}"));

    // Metadata only: nothing, past the coalescing window.
    relabel_cm(&ns, "ref-cm", "before").await;
    tokio::time::sleep(SETTLE).await;
    let unchanged = restart_of(&rollout().await);
    if unchanged != (None, None) {
        failures.push(format!(
            "a label edit of ref-cm restarted the Rollout: {unchanged:?}"
        ));
    }

    // A data change of the config the Deployment's template consumes: restartAt, and the
    // stamp on the Rollout's metadata; once, past the storm guard.
    set_cm(&ns, "ref-cm", "k", "v1").await;
    let Some(first) = try_wait_for(ROLL_TIMEOUT, || async {
        let r = restart_of(&rollout().await);
        (r.0.is_some() && r.1.is_some()).then_some(r)
    })
    .await
    else {
        failures.push(format!(
            "no restart within {ROLL_TIMEOUT:?} of a change of ref-cm: {:?}",
            restart_of(&rollout().await)
        ));
        check(failures, &[&kreload]);
        return;
    };
    let stamp = first.1.clone().unwrap();
    if !stamp.starts_with("v2.") {
        failures.push(format!("the Rollout's stamp {stamp:?} is not v2"));
    }
    relabel_cm(&ns, "ref-cm", "after").await;
    tokio::time::sleep(STORM_GUARD).await;
    let live = rollout().await;
    if restart_of(&live) != first {
        failures.push(format!(
            "restarted, then again (a label edit came after): {first:?} -> {:?}",
            restart_of(&live)
        ));
    }
    if live["spec"].get("template").is_some() {
        failures.push(format!(
            "the roll gave the Rollout a template: {}",
            live["spec"]
        ));
    }
    let reloaded = events(&ns, "ro", "Reloaded").await;
    if occurrences(&reloaded) != 1
        || !notes(&reloaded)
            .iter()
            .any(|n| n.contains("ConfigMap ref-cm"))
    {
        failures.push(format!(
            "want one Reloaded Event naming ConfigMap ref-cm on Rollout ro, got {:?}",
            notes(&reloaded)
        ));
    }

    // The Deployment's template comes to consume ref-cm2 too; Argo Rollouts notes the
    // Deployment's new generation on the Rollout and rolls the new template out itself.
    // kreload reads the template again and accounts for the new hash: no restart.
    let mut template = deployment_before.clone();
    template["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "ref-cm"}}, {"configMapRef": {"name": "ref-cm2"}}]);
    let d = dyn_api(&ns, Kind::Deployment)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template}})),
        )
        .await
        .expect("change the Deployment's template");
    let generation = d.metadata.generation.unwrap_or_default().to_string();
    dyn_api(&ns, Kind::Rollout)
        .patch(
            "ro",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"rollout.argoproj.io/workload-generation": generation}}})),
        )
        .await
        .expect("note the Deployment's generation on the Rollout");
    let accounted = try_wait_for(Duration::from_secs(20), || async {
        rollout()
            .await
            .pointer("/metadata/annotations")?
            .get("kreload.dev/accounted-hash")?
            .as_str()
            .map(str::to_owned)
    })
    .await;
    match &accounted {
        None => failures.push(
            "the Deployment's template consumes ref-cm2 now, but kreload accounted for no new hash on the Rollout (it would restart it at the next leader change)".to_owned(),
        ),
        Some(a) if *a == stamp => failures.push(format!("accounted hash {a} equals the old stamp")),
        Some(_) => {}
    }
    tokio::time::sleep(SETTLE).await;
    if restart_of(&rollout().await) != first {
        failures.push(format!(
            "the Deployment's template change restarted the Rollout: {first:?} -> {:?}",
            restart_of(&rollout().await)
        ));
    }

    // A data change of the config it consumes now: restarted again.
    set_cm(&ns, "ref-cm2", "k", "v1").await;
    let second = try_wait_for(ROLL_TIMEOUT, || async {
        let r = restart_of(&rollout().await);
        (r.0 != first.0 && r.1 != first.1).then_some(r)
    })
    .await;
    if second.is_none() {
        failures.push(format!(
            "no restart within {ROLL_TIMEOUT:?} of a change of ref-cm2, which the Deployment's template consumes now: {:?}",
            restart_of(&rollout().await)
        ));
    }
    // The Deployment itself is not opted in: kreload never wrote its template.
    let deployment_now = get_json(&ns, Kind::Deployment, "web")
        .await
        .expect("Deployment web")["spec"]["template"]
        .clone();
    if deployment_now["metadata"]
        .get("annotations")
        .and_then(|a| a.get(STAMP))
        .is_some()
    {
        failures.push(format!(
            "kreload stamped the referenced Deployment's template: {}",
            deployment_now["metadata"]
        ));
    }
    delete(&ns, Kind::Rollout, "ro").await;
    check(failures, &[&kreload]);
}
