//! Certificates from files: kreload serves them, and picks up new ones when the files change
//! without failing a single request.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use serde_json::json;

fn make_certs(dir: &Path) {
    let ok =
        std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/make-certs"))
            .arg(dir)
            .args(["127.0.0.1", "localhost"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
    assert!(ok, "certs/make-certs failed");
}

fn client_trusting(cas: &[&Path]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .no_proxy()
        .pool_max_idle_per_host(0);
    for ca in cas {
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca.join("ca.crt")).unwrap()).unwrap(),
        );
    }
    b.build().unwrap()
}

fn install(from: &Path, to: &Path) {
    // Replace each file atomically, the way a Secret volume or cert-manager updates them.
    for f in ["tls.crt", "tls.key"] {
        let tmp = to.join(format!(".{f}.tmp"));
        std::fs::copy(from.join(f), &tmp).unwrap();
        std::fs::rename(&tmp, to.join(f)).unwrap();
    }
}

#[tokio::test]
async fn certificate_files_are_reloaded_without_failed_requests() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-tls-files").await;
    let dir = std::env::temp_dir().join(format!("kreload-tls-{}", ns.name));
    let (a, b, live) = (dir.join("a"), dir.join("b"), dir.join("live"));
    make_certs(&a);
    make_certs(&b);
    std::fs::create_dir_all(&live).unwrap();
    install(&a, &live);

    let port = free_port();
    let log = dir.join("kreload.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kreload"))
        .args(["run", "--exit-on-stdin-close", "--namespaces", &ns.name])
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--health-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .arg("--tls-cert-file")
        .arg(live.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(live.join("tls.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    let url = format!("https://127.0.0.1:{port}/mutate");
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": ns.name, "operation": "CREATE",
                    "object": {"metadata": {"name": "x"}, "spec": {}}}});
    let both = client_trusting(&[&a, &b]);
    wait_for(
        "kreload to serve certificate A",
        Duration::from_secs(30),
        || async {
            both.post(&url)
                .json(&review)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;

    // Requests on fresh connections, continuously, while the files are replaced.
    let (sent, failed, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = {
        let (sent, failed, stop, url, review, both) = (
            sent.clone(),
            failed.clone(),
            stop.clone(),
            url.clone(),
            review.clone(),
            both.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = both
                    .post(&url)
                    .json(&review)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    install(&b, &live);
    let only_b = client_trusting(&[&b]);
    wait_for(
        "kreload to serve certificate B",
        Duration::from_secs(30),
        || async {
            only_b
                .post(&url)
                .json(&review)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("certificate rotation under load: {sent} requests, {failed} failed");
    assert!(sent > 10, "the load ran ({sent} requests)");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the rotation"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("serving certificate reloaded")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
