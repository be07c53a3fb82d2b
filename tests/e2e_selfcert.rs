//! Self-managed certificates: kreload makes its own CA and serving certificate, writes the CA
//! bundle into its webhook configurations, and rotates, while the API server keeps calling it
//! without a single failed admission.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test]
async fn certificates_rotate_under_load_without_failed_admissions() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-selfcert").await;
    let name = format!("kreload-{}", ns.name);
    let secret = format!("tls-{}", ns.name);
    let port = free_port();
    let health = free_port();
    // The webhook configurations as an install would have them, pointing at kreload, with no
    // CA bundle yet: kreload fills it in.
    let (m, v) = kreload::admission::webhooks::local(
        &format!("https://127.0.0.1:{port}"),
        "",
        &name,
        &[ns.name.clone()].into(),
    );
    kreload::admission::webhooks::apply(client.clone(), &m, &v)
        .await
        .unwrap();

    let log = std::env::temp_dir().join(format!("{name}.log"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kreload"))
        .args([
            "run",
            "--exit-on-stdin-close",
            "--self-managed-certs",
            "--cert-names",
            "127.0.0.1",
        ])
        .args([
            "--cert-secret",
            &secret,
            "--webhook-config-name",
            &name,
            "--namespaces",
            &ns.name,
        ])
        .args([
            "--cert-validity",
            "30s",
            "--cert-renew-before",
            "20s",
            "--cert-check-interval",
            "1s",
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--health-listen",
            &format!("127.0.0.1:{health}"),
        ])
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let pods: Api<Pod> = ns.api();
    let pod: Pod = serde_json::from_value(json!({"metadata": {"generateName": "p-"}, "spec": {"containers": [{"name": "a", "image": "registry.invalid/a:1"}]}})).unwrap();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let stamped = |p: &Pod| p.annotations().contains_key("kreload.dev/config-hash");
    wait_for(
        "the API server to trust kreload's own CA",
        Duration::from_secs(30),
        || async {
            pods.create(&dry, &pod)
                .await
                .ok()
                .filter(|p| stamped(p))
                .map(|_| ())
        },
    )
    .await;
    let bundle_of = || async {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        api.get(&name).await.unwrap().webhooks.unwrap()[0]
            .client_config
            .ca_bundle
            .clone()
            .unwrap()
            .0
    };
    let first_bundle = bundle_of().await;

    // Admission requests through the API server, continuously, across rotations (every ~10 s).
    let (mut sent, mut failed) = (0u32, 0u32);
    let mut cas = std::collections::BTreeSet::new();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kreload");
    let started = Instant::now();
    let mut two_cas_seen = false;
    while started.elapsed() < Duration::from_secs(25) {
        sent += 1;
        match pods.create(&dry, &pod).await {
            Ok(p) if stamped(&p) => {}
            _ => failed += 1,
        }
        if sent % 10 == 0 {
            if let Some(s) = secrets.get_opt(&secret).await.unwrap() {
                cas.insert(s.data.unwrap()["ca.crt"].0.clone());
            }
            two_cas_seen |= String::from_utf8_lossy(&bundle_of().await)
                .matches("BEGIN CERTIFICATE")
                .count()
                == 2;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let rotations = text.matches("serving the rotated certificate").count();
    eprintln!(
        "self-managed rotation under load: {sent} admissions, {failed} failed, {rotations} rotations, {} CAs",
        cas.len()
    );

    let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await;
    let _ =
        Api::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>::all(
            client.clone(),
        )
        .delete(&name, &DeleteParams::default())
        .await;
    let _ = secrets.delete(&secret, &DeleteParams::default()).await;

    assert!(
        rotations >= 1,
        "the certificate rotated at least once:\n{text}"
    );
    assert!(cas.len() >= 2, "the Secret got a new CA");
    assert!(
        two_cas_seen,
        "the bundle carried the old and the new CA through a rotation"
    );
    assert!(
        String::from_utf8_lossy(&first_bundle).contains("BEGIN CERTIFICATE"),
        "kreload wrote its CA bundle"
    );
    assert_eq!(
        failed, 0,
        "{failed} of {sent} admissions failed during rotation"
    );
}
