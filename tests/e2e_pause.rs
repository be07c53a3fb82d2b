//! `deployment.reloader.stakater.com/pause-period`: after a reload the Deployment is paused, so
//! changes within the period land in one rollout when kreload resumes it. kreload resumes only
//! its own pause: never the user's, nor one the user took over.

mod common;

use std::time::Duration;

use common::observe::*;
use common::workloads::*;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

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

// ---------------------------------------------------------------------------------------------
// Whose pause it is (issue 10, defect 9: resume undid the user's pause; a pause whose period
// was removed was never resumed after a restart).

const PAUSE_PERIOD: &str = "deployment.reloader.stakater.com/pause-period";
const PAUSED_AT: &str = "deployment.reloader.stakater.com/paused-at";

fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused) == Some(true)
}

/// A settled Deployment `name` (auto, `pause-period`) consuming ConfigMap `app`.
async fn paused_on_reload(ns: &TestNamespace, name: &str, period: &str) {
    let annotations = json!({"reloader.stakater.com/auto": "true", PAUSE_PERIOD: period});
    create(ns, deploy(name, annotations, env_from(&["app"], &[]))).await;
    wait_rollout(ns, name).await;
}

async fn patch_deployment(ns: &TestNamespace, name: &str, patch: serde_json::Value) {
    ns.api::<Deployment>()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch Deployment {name}: {e}"));
}

/// Scrapes kreload once its Deployment watch has been quiet for 2 s (the controller's last
/// status updates after a rollout are seen), so that the next event is the test's own write.
async fn quiet_scrape(kreload: &Kreload) -> Scrape {
    let count = |s: &Scrape| s.get("kreload_watch_events_total", &[("kind", "Deployment")]);
    let mut last = scrape(kreload).await;
    let mut since = tokio::time::Instant::now();
    let deadline = since + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = scrape(kreload).await;
        if count(&now) != count(&last) {
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= Duration::from_secs(2) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kreload's Deployment watch did not go quiet within 30 s"
        );
        last = now;
    }
}

/// Waits until kreload's watch has seen a write made after `before` was scraped (by
/// [`quiet_scrape`]).
async fn watch_saw_it(kreload: &Kreload, before: &Scrape) {
    let seen = before.get("kreload_watch_events_total", &[("kind", "Deployment")]);
    wait_metric(
        kreload,
        "kreload_watch_events_total",
        &[("kind", "Deployment")],
        Duration::from_secs(20),
        |v| v > seen,
    )
    .await
    .unwrap_or_else(|e| panic!("kreload's watch did not see the write: {e}"));
}

/// Waits until the template stamp differs from `before`; returns the Deployment.
async fn stamp_moved(ns: &TestNamespace, name: &str, before: &Option<String>) -> Deployment {
    let api: Api<Deployment> = ns.api();
    wait_for(
        &format!("Deployment {name} to be rolled"),
        ROLL_TIMEOUT,
        || async {
            let d = api.get(name).await.ok()?;
            (template_stamp(&d) != *before).then_some(d)
        },
    )
    .await
}

/// Issue 10, defect 9: a Deployment the user paused (`kubectl rollout pause`) before a reload
/// is still paused after the pause-period: kreload neither takes nor undoes the user's pause.
#[tokio::test]
async fn a_deployment_the_user_paused_stays_paused_after_a_reload() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-pause-user").await;
    let kreload = kreload_for(&[&ns], &["--min-roll-interval", "0s"]);
    cm("app").create(&ns).await;
    paused_on_reload(&ns, "web", "4s").await;
    let api: Api<Deployment> = ns.api();
    let before = template_stamp(&api.get("web").await.unwrap());

    let seen = quiet_scrape(&kreload).await;
    patch_deployment(&ns, "web", json!({"spec": {"paused": true}})).await;
    watch_saw_it(&kreload, &seen).await;
    set_cm(&ns, "app", "k", "v1").await;
    let rolled = stamp_moved(&ns, "web", &before).await;
    let mut failures = Vec::new();
    if rolled.annotations().contains_key(PAUSED_AT) {
        failures.push(format!(
            "kreload marked the user's pause as its own ({PAUSED_AT} set)"
        ));
    }
    // Past the pause-period (4 s), with a margin for kreload to (wrongly) resume it.
    tokio::time::sleep(Duration::from_secs(4) + STORM_GUARD).await;
    let now = api.get("web").await.unwrap();
    if !is_paused(&now) {
        failures.push("the user's pause was undone after the pause-period".to_owned());
    }
    if replica_sets(&ns, "web").await.len() != 1 {
        failures.push("the paused Deployment rolled out".to_owned());
    }
    check(failures, &[&kreload]);
}

/// Issue 10, defect 9: a Deployment kreload paused, whose `paused-at` annotation the user
/// removed (taking the pause over), is not resumed by kreload.
#[tokio::test]
async fn a_pause_the_user_took_over_is_not_resumed() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-pause-taken").await;
    let kreload = kreload_for(&[&ns], &["--min-roll-interval", "0s"]);
    cm("app").create(&ns).await;
    paused_on_reload(&ns, "web", "6s").await;
    let api: Api<Deployment> = ns.api();
    let before = template_stamp(&api.get("web").await.unwrap());

    set_cm(&ns, "app", "k", "v1").await;
    let rolled = stamp_moved(&ns, "web", &before).await;
    assert!(
        is_paused(&rolled) && rolled.annotations().contains_key(PAUSED_AT),
        "kreload pauses with the reload: {:?}",
        rolled.metadata.annotations
    );
    patch_deployment(
        &ns,
        "web",
        json!({"metadata": {"annotations": {PAUSED_AT: null}}}),
    )
    .await;
    // Past the pause-period (6 s from the pause), with a margin.
    tokio::time::sleep(Duration::from_secs(6) + STORM_GUARD).await;
    let now = api.get("web").await.unwrap();
    assert!(
        is_paused(&now),
        "kreload resumed a pause the user took over (removed {PAUSED_AT}); log: {}",
        kreload.log.display()
    );
}

/// Issue 10, defect 9: a Deployment kreload paused whose `pause-period` annotation was removed
/// during the period is resumed, also by a kreload started after the removal.
#[tokio::test]
async fn a_pause_whose_period_was_removed_is_resumed_also_across_a_restart() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-pause-removed").await;
    cm("app").create(&ns).await;
    let first = kreload_for(&[&ns], &["--min-roll-interval", "0s"]);
    // "running": resumed by the same kreload; "restarted": by the next one, long before its
    // period of 10 minutes would end.
    paused_on_reload(&ns, "running", "15s").await;
    paused_on_reload(&ns, "restarted", "10m").await;
    let api: Api<Deployment> = ns.api();
    let before = [
        template_stamp(&api.get("running").await.unwrap()),
        template_stamp(&api.get("restarted").await.unwrap()),
    ];
    set_cm(&ns, "app", "k", "v1").await;
    for (name, before) in ["running", "restarted"].iter().zip(&before) {
        let d = stamp_moved(&ns, name, before).await;
        assert!(
            is_paused(&d) && d.annotations().contains_key(PAUSED_AT),
            "{name}: kreload pauses with the reload"
        );
        patch_deployment(
            &ns,
            name,
            json!({"metadata": {"annotations": {PAUSE_PERIOD: null}}}),
        )
        .await;
    }

    let resumed = |name: &'static str| {
        let api = api.clone();
        async move {
            let d = api.get(name).await.ok()?;
            (!is_paused(&d) && !d.annotations().contains_key(PAUSED_AT)).then_some(())
        }
    };
    let mut failures = Vec::new();
    if try_wait_for(Duration::from_secs(40), || resumed("running"))
        .await
        .is_none()
    {
        failures
            .push("running: not resumed within 40 s of the pause (period 15 s, removed)".into());
    }
    first.terminate();
    let second = kreload_for(&[&ns], &["--min-roll-interval", "0s"]);
    if try_wait_for(Duration::from_secs(30), || resumed("restarted"))
        .await
        .is_none()
    {
        failures.push(
            "restarted: a kreload started after the pause-period was removed did not resume it within 30 s"
                .into(),
        );
    }
    check(failures, &[&first, &second]);
}
