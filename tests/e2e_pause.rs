//! `deployment.reloader.stakater.com/pause-period`: after a reload the Deployment is paused, so
//! changes within the period land in one rollout when kreload resumes it.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const STAMP: &str = "kreload.dev/config-hash";

#[tokio::test]
async fn changes_within_the_pause_period_land_in_one_rollout() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-pause").await;
    let webhook_name = format!("kreload-{}", ns.name);
    let _kreload = Kreload::start(&[
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &webhook_name,
        "--min-roll-interval",
        "0s",
    ]);
    let cms: Api<ConfigMap> = ns.api();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "app"}, "data": {"k": "v0"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let api: Api<Deployment> = ns.api();
    let annotations = json!({"reloader.stakater.com/auto": "true", "deployment.reloader.stakater.com/pause-period": "6s"});
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app:1", "envFrom": [{"configMapRef": {"name": "app"}}]}]});
    api.create(
        &PostParams::default(),
        &deployment("web", 1, annotations, spec),
    )
    .await
    .unwrap();
    let before = template_stamp(&wait_rollout(&ns, "web").await).expect("stamped at creation");

    let set = |v: &'static str| {
        let cms = cms.clone();
        async move {
            cms.patch(
                "app",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": v}})),
            )
            .await
            .unwrap()
        }
    };
    set("v1").await;
    let paused = wait_for(
        "the reload to pause the Deployment",
        Duration::from_secs(20),
        || async {
            let d = api.get("web").await.ok()?;
            (template_stamp(&d) != Some(before.clone())).then_some(d)
        },
    )
    .await;
    assert_eq!(
        paused.spec.as_ref().unwrap().paused,
        Some(true),
        "paused with the reload"
    );
    assert!(
        paused
            .annotations()
            .contains_key("deployment.reloader.stakater.com/paused-at")
    );
    // A second change during the pause: applied to the template, still no rollout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    set("v2").await;
    let second = wait_for(
        "the second change to reach the template",
        Duration::from_secs(20),
        || async {
            let d = api.get("web").await.ok()?;
            (template_stamp(&d) != template_stamp(&paused)).then_some(d)
        },
    )
    .await;
    assert_eq!(second.spec.as_ref().unwrap().paused, Some(true));
    assert_eq!(
        replica_sets(&ns, "web").await.len(),
        1,
        "no rollout while paused"
    );

    // After the period kreload resumes it: exactly one rollout, carrying the final data.
    let resumed = wait_for(
        "kreload to resume the Deployment",
        Duration::from_secs(30),
        || async {
            let d = api.get("web").await.ok()?;
            (d.spec.as_ref()?.paused != Some(true)).then_some(d)
        },
    )
    .await;
    assert!(
        !resumed
            .annotations()
            .contains_key("deployment.reloader.stakater.com/paused-at")
    );
    let d = wait_rollout(&ns, "web").await;
    assert_eq!(
        replica_sets(&ns, "web").await.len(),
        2,
        "one rollout for both changes"
    );
    let final_stamp = template_stamp(&d).unwrap();
    assert_eq!(Some(final_stamp.clone()), template_stamp(&second));
    for p in pods(&ns, "web").await {
        assert_eq!(p.annotations().get(STAMP), Some(&final_stamp));
    }
}
