//! Proves the harness cluster is real: a Deployment's pods become Ready through kwok, and a
//! template change rolls it to a new ReplicaSet through the real controller manager.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn deployment_becomes_ready_and_rolls_on_template_change() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-cluster").await;
    let api: kube::Api<Deployment> = ns.api();
    api.create(
        &PostParams::default(),
        &deployment("web", 2, json!({}), json!({})),
    )
    .await
    .unwrap();
    wait_rollout(&ns, "web").await;
    let ready = pods(&ns, "web")
        .await
        .iter()
        .filter(|p| is_ready(p))
        .count();
    assert_eq!(ready, 2, "both pods are Ready");
    assert_eq!(replica_sets(&ns, "web").await.len(), 1);

    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"e2e/changed": "1"}}}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_rollout(&ns, "web").await;
    let sets = replica_sets(&ns, "web").await;
    assert_eq!(sets.len(), 2, "a new ReplicaSet was created");
    let replicas: Vec<i32> = sets
        .iter()
        .map(|rs| rs.status.as_ref().unwrap().replicas)
        .collect();
    assert!(
        replicas.contains(&0) && replicas.contains(&2),
        "old ReplicaSet at 0, new at 2: {replicas:?}"
    );
}
