//! Issue 11 item 10: any workload with a pod template (`--extra-workload
//! GROUP/VERSION/RESOURCE:JSONPOINTER`), on a minimal CRD standing in for a Knative Service
//! (`widgets.e2e.kreload.dev`, kind `Widget`, a pod template at `/spec/template`). No controller
//! runs for it: what is checked is kreload's part, the stamp at CREATE, the stamp kept at
//! UPDATE, and the one template patch per data change of a consumed config.
//!
//! The CRD is registered before kreload starts (kreload discovers the extra kinds once, at start)
//! and stays (other runs use it); the Widget is deleted at the end.

mod common;

use common::observe::{events, notes, occurrences, wait_watched_and_indexed};
use common::workloads::*;
use common::*;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

const FLAG: &str = "e2e.kreload.dev/v1/widgets:/spec/template";
/// An extra kind no cluster serves: kreload logs it and starts anyway.
const ABSENT: &str = "absent.e2e.kreload.dev/v1/nothings:/spec/template";

fn widgets() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("e2e.kreload.dev", "v1", "Widget"),
        "widgets",
    )
}

fn api(ns: &TestNamespace) -> Api<DynamicObject> {
    Api::namespaced_with(ns.client(), &ns.name, &widgets())
}

async fn widget(ns: &TestNamespace, name: &str) -> Value {
    let w = api(ns)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Widget {name}: {e}"));
    serde_json::to_value(w).unwrap()
}

fn stamp_of(w: &Value) -> Option<String> {
    w.pointer("/spec/template/metadata/annotations")?
        .get(STAMP)?
        .as_str()
        .map(str::to_owned)
}

async fn stamp(ns: &TestNamespace, name: &str) -> Option<String> {
    stamp_of(&widget(ns, name).await)
}

async fn merge(ns: &TestNamespace, name: &str, patch: Value) {
    api(ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch Widget {name}: {e}"));
}

/// Metadata-only edits: a label on the ConfigMap, and a label on the Widget (an UPDATE the
/// webhook sees). Neither rolls anything.
async fn relabel(ns: &TestNamespace, value: &str) {
    patch_cm(
        ns,
        "ew-cm",
        json!({"metadata": {"labels": {"e2e-touched": value}}}),
    )
    .await;
    merge(
        ns,
        "web",
        json!({"metadata": {"labels": {"e2e-touched": value}}}),
    )
    .await;
}

/// A Widget opted in with `reloader.stakater.com/auto` is stamped at CREATE; its stamp is kept
/// when an UPDATE drops it (a GitOps re-apply) and when the Widget or its ConfigMap is only
/// relabelled; a data change of the ConfigMap changes the stamp exactly once (past the
/// coalescing window and the storm guard, with label edits after it), with one Reloaded Event.
/// A kind the cluster does not serve is logged, not watched, and does not stop the start.
#[tokio::test]
async fn extra_workloads_are_stamped_and_rolled_at_their_pointer() {
    let client = client().await;
    ensure_crd_of(&client, widgets()).await;
    let ns = TestNamespace::new(&client, "e2e-extra").await;
    cm("ew-cm").create(&ns).await;
    let kreload = kreload_for(
        &[&ns],
        &["--extra-workload", FLAG, "--extra-workload", ABSENT],
    );
    let mut failures = Vec::new();
    let log = std::fs::read_to_string(&kreload.log).unwrap_or_default();
    if !log.contains("widgets served") {
        failures.push("kreload's log does not say it found widgets served".to_owned());
    }
    if !log.contains("nothings not served") {
        failures.push("kreload's log does not say nothings are not served".to_owned());
    }

    let manifest = json!({
        "apiVersion": "e2e.kreload.dev/v1", "kind": "Widget",
        "metadata": {"name": "web", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                              "spec": env_from(&["ew-cm"], &[])}}
    });
    let obj: DynamicObject = serde_json::from_value(manifest).unwrap();
    api(&ns)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create Widget web");
    let Some(created) = stamp(&ns, "web").await else {
        panic!(
            "Widget web was not stamped at CREATE: {}; kreload log: {}",
            widget(&ns, "web").await["spec"],
            kreload.log.display()
        );
    };
    assert!(created.starts_with("v2."), "stamp {created:?} is not v2");
    wait_watched_and_indexed(&kreload, "Widget").await;

    // An UPDATE that drops the stamp gets it back (admission keeps it, as for Deployments).
    merge(
        &ns,
        "web",
        json!({"spec": {"template": {"metadata": {"annotations": {STAMP: null}}}}}),
    )
    .await;
    let kept = stamp(&ns, "web").await;
    if kept.as_ref() != Some(&created) {
        failures.push(format!(
            "an UPDATE dropping the stamp: stamp {kept:?}, want it kept as {created}"
        ));
    }

    // Label edits of the ConfigMap and of the Widget: nothing, past the coalescing window.
    relabel(&ns, "before").await;
    tokio::time::sleep(SETTLE).await;
    let now = stamp(&ns, "web").await;
    if now.as_ref() != Some(&created) {
        failures.push(format!(
            "after label edits: stamp {created} -> {now:?}, want no roll"
        ));
    }

    // A data change: the stamp changes once.
    set_cm(&ns, "ew-cm", "mode", "b").await;
    let rolled = try_wait_for(ROLL_TIMEOUT, || async {
        stamp(&ns, "web").await.filter(|s| *s != created)
    })
    .await;
    match rolled {
        None => failures.push(format!(
            "a data change of ConfigMap ew-cm: the stamp did not change within {ROLL_TIMEOUT:?}"
        )),
        Some(new) => {
            if !new.starts_with("v2.") {
                failures.push(format!("new stamp {new:?} is not v2"));
            }
            relabel(&ns, "after").await;
            tokio::time::sleep(STORM_GUARD).await;
            let after = stamp(&ns, "web").await;
            if after.as_ref() != Some(&new) {
                failures.push(format!(
                    "rolled to {new}, then again to {after:?} (label edits came after)"
                ));
            }
            let reloaded = events(&ns, "web", "Reloaded").await;
            if occurrences(&reloaded) != 1
                || !notes(&reloaded)
                    .iter()
                    .any(|n| n.contains("ConfigMap ew-cm"))
            {
                failures.push(format!(
                    "want one Reloaded Event naming ConfigMap ew-cm on Widget web, got {:?}",
                    notes(&reloaded)
                ));
            }
        }
    }

    let _ = api(&ns).delete("web", &DeleteParams::default()).await;
    check(failures, &[&kreload]);
}
