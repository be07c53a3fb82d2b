//! Graceful shutdown: SIGTERM stops accepting, drains, releases the lease, and exits 0.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

#[tokio::test]
async fn sigterm_drains_and_releases_the_lease() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-shutdown").await;
    let lease_name = format!("lease-{}", ns.name);
    let kreload = Kreload::start(&[
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &format!("kreload-{}", ns.name),
        "--enable-ha",
        "--lease-name",
        &lease_name,
        "--identity",
        "shutdown-test",
    ]);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kreload");
    let holder = || async {
        leases
            .get_opt(&lease_name)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    wait_for("kreload to lead", Duration::from_secs(20), || async {
        (holder().await.as_deref() == Some("shutdown-test")).then_some(())
    })
    .await;

    let status = kreload.terminate();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exits 0 after SIGTERM"
    );
    assert_eq!(
        holder().await,
        None,
        "the lease was released, so a successor need not wait for it to expire"
    );
    let log = kreload.log_text();
    assert!(log.contains("draining open connections"), "{log}");
    // Local mode removes its webhook configurations on the way out.
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    assert!(
        hooks
            .get_opt(&format!("kreload-{}", ns.name))
            .await
            .unwrap()
            .is_none()
    );
}
