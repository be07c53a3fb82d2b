//! Jobs roll only when opted in explicitly (a reload annotation on the Job itself): the Job is
//! recreated with the new stamp, since its template is immutable.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

fn job(name: &str, annotations: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "a", "image": "registry.invalid/a:1", "envFrom": [{"configMapRef": {"name": "app"}}]}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn opted_in_jobs_are_recreated_and_others_left_alone() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-job").await;
    let _kreload = Kreload::start(&[
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &format!("kreload-{}", ns.name),
        "--auto-reload-all",
    ]);
    let cms: Api<ConfigMap> = ns.api();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app"}, "data": {"k": "1"}})).unwrap(),
    )
    .await
    .unwrap();
    let jobs: Api<Job> = ns.api();
    let opted = jobs
        .create(
            &PostParams::default(),
            &job("opted", json!({"reloader.stakater.com/auto": "true"})),
        )
        .await
        .unwrap();
    let plain = jobs
        .create(&PostParams::default(), &job("plain", json!({})))
        .await
        .unwrap();
    let stamp = |j: &Job| {
        j.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("kreload.dev/config-hash")
            .cloned()
    };
    let first = stamp(&opted).expect("opted-in Job stamped at creation");

    cms.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    let recreated = wait_for(
        "the opted-in Job to be recreated",
        Duration::from_secs(30),
        || async {
            jobs.get_opt("opted")
                .await
                .ok()
                .flatten()
                .filter(|j| j.uid() != opted.uid())
        },
    )
    .await;
    let second = stamp(&recreated).expect("recreated with a stamp");
    assert_ne!(second, first);
    // Not rolled: no explicit opt-in (--auto-reload-all does not reach Jobs).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(jobs.get("plain").await.unwrap().uid(), plain.uid());
}
