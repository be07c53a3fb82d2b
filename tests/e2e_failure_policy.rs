//! With kreload stopped, pods are still created: the mutating webhook fails open.

mod common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::PostParams;
use serde_json::json;

#[tokio::test]
async fn pods_are_created_while_kreload_is_down() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-fail-open").await;
    let kreload = Kreload::start(&[]);
    let api: kube::Api<Pod> = ns.api();
    let pod = |name: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "a", "image": "registry.invalid/a:1"}]}})).unwrap()
    };
    let up = api
        .create(&PostParams::default(), &pod("while-up"))
        .await
        .unwrap();
    assert!(
        up.annotations().contains_key("kreload.dev/config-hash"),
        "stamped while kreload runs"
    );

    kreload.stop();
    // The webhook configurations still point at kreload's (now closed) port.
    let down = api
        .create(&PostParams::default(), &pod("while-down"))
        .await
        .expect("created although the webhook is down");
    assert!(!down.annotations().contains_key("kreload.dev/config-hash"));

    // The killed kreload could not remove its webhook configurations: remove them, or they stay
    // in the cluster (pointing at a closed port) for the next test binaries, whose kubectl apply
    // and helm install of objects with the same names they would break.
    let (ok, _, err) = kubectl(
        &[
            "delete",
            "--ignore-not-found",
            "mutatingwebhookconfiguration/kreload",
            "validatingwebhookconfiguration/kreload",
        ],
        None,
    );
    assert!(ok, "delete the webhook configurations: {err}");
}
