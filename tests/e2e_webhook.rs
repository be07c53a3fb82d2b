//! The admission webhooks on the real control plane: the API server calls kreload over TLS.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const STAMP: &str = "kreload.dev/config-hash";
const PASSWORD: &str = "correct-horse-battery-staple-e2e";

fn stamp_of(meta: &kube::api::ObjectMeta) -> Option<String> {
    meta.annotations.as_ref()?.get(STAMP).cloned()
}

fn pod(name: &str, secret: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "image": "registry.invalid/app:1",
                "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]}],
            "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}]
        }
    }))
    .unwrap()
}

async fn create_configs(ns: &TestNamespace) {
    let cms: Api<ConfigMap> = ns.api();
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "app-config"}, "data": {"app.conf": "a=1"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let secrets: Api<Secret> = ns.api();
    for name in ["db", "sentinel"] {
        let s: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"password": PASSWORD, "unused": "u0"}})).unwrap();
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
}

/// Creates `pod` with server-side dry-run and returns the stamp the webhook gave it.
async fn dry_run_stamp(ns: &TestNamespace, pod: &Pod) -> String {
    let api: Api<Pod> = ns.api();
    let created = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            pod,
        )
        .await
        .unwrap();
    stamp_of(&created.metadata).expect("the webhook stamps every pod")
}

async fn set_secret(ns: &TestNamespace, name: &str, key: &str, value: &str) {
    let api: Api<Secret> = ns.api();
    let patch = json!({"stringData": {key: value}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Waits until kreload has seen every Secret change made so far: Secret events arrive in order,
/// so once a change to the sentinel shows in a stamp, all earlier changes are in the store too.
async fn sync_secrets(ns: &TestNamespace, round: u32) {
    let before = dry_run_stamp(ns, &pod("probe", "sentinel")).await;
    set_secret(ns, "sentinel", "password", &format!("round-{round}")).await;
    wait_for(
        "kreload to see the sentinel change",
        Duration::from_secs(20),
        || async { (dry_run_stamp(ns, &pod("probe", "sentinel")).await != before).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn pods_are_stamped_with_what_they_consume() {
    let _kreload = shared_kreload();
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-pod-stamp").await;
    create_configs(&ns).await;
    sync_secrets(&ns, 0).await;

    let api: Api<Pod> = ns.api();
    let p1 = api
        .create(&PostParams::default(), &pod("p1", "db"))
        .await
        .unwrap();
    let s1 = stamp_of(&p1.metadata).expect("stamped at creation");
    assert!(s1.starts_with("v2."), "{s1}");

    // A key the pod does not consume changes: the stamp does not.
    set_secret(&ns, "db", "unused", "u1").await;
    sync_secrets(&ns, 1).await;
    let p2 = api
        .create(&PostParams::default(), &pod("p2", "db"))
        .await
        .unwrap();
    assert_eq!(stamp_of(&p2.metadata).as_deref(), Some(s1.as_str()));

    // The consumed key changes: a pod created now gets another stamp.
    set_secret(&ns, "db", "password", "rotated").await;
    sync_secrets(&ns, 2).await;
    let p3 = api
        .create(&PostParams::default(), &pod("p3", "db"))
        .await
        .unwrap();
    let s3 = stamp_of(&p3.metadata).unwrap();
    assert_ne!(s3, s1);
    // The first pod keeps what it started with: it is now stale, and can be found.
    assert_eq!(stamp_of(&api.get("p1").await.unwrap().metadata), Some(s1));
}

#[tokio::test]
async fn opted_in_deployments_are_stamped_once_and_gitops_reapply_changes_nothing() {
    let _kreload = shared_kreload();
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-deploy-stamp").await;
    create_configs(&ns).await;
    sync_secrets(&ns, 0).await;
    let api: Api<Deployment> = ns.api();
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app:1",
        "envFrom": [{"configMapRef": {"name": "app-config"}}]}]});
    let manifest = deployment(
        "web",
        2,
        json!({"reloader.stakater.com/auto": "true"}),
        spec,
    );
    let created = api.create(&PostParams::default(), &manifest).await.unwrap();
    let stamp = stamp_of(
        created
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap(),
    )
    .expect("template stamped at CREATE");
    wait_rollout(&ns, "web").await;
    let pods = pods(&ns, "web").await;
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(
            stamp_of(&p.metadata).as_deref(),
            Some(stamp.as_str()),
            "pods carry the template's stamp"
        );
    }
    assert_eq!(
        replica_sets(&ns, "web").await.len(),
        1,
        "no second ReplicaSet after creation"
    );

    // A GitOps tool re-applies the original manifest, which has no stamp.
    let mut reapply = manifest.clone();
    reapply.metadata.resource_version = api.get("web").await.unwrap().resource_version();
    let replaced = api
        .replace("web", &PostParams::default(), &reapply)
        .await
        .unwrap();
    assert_eq!(
        stamp_of(
            replaced
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
        ),
        Some(stamp.clone())
    );
    // Give the controller manager time to act on any template change (there must be none).
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_rollout(&ns, "web").await;
    assert_eq!(
        replica_sets(&ns, "web").await.len(),
        1,
        "re-apply created no ReplicaSet"
    );
}

#[tokio::test]
async fn server_side_dry_run_stamps_and_creates_nothing() {
    let _kreload = shared_kreload();
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-dry-run").await;
    create_configs(&ns).await;
    let api: Api<Deployment> = ns.api();
    let manifest = deployment(
        "dry",
        1,
        json!({"reloader.stakater.com/auto": "true"}),
        json!({"volumes": [{"name": "c", "configMap": {"name": "app-config"}}]}),
    );
    let out = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &manifest,
        )
        .await
        .unwrap();
    assert!(
        stamp_of(
            out.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
        )
        .is_some()
    );
    assert!(
        api.get_opt("dry").await.unwrap().is_none(),
        "dry-run created nothing"
    );
    let events: Api<Event> = ns.api();
    assert!(
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "dry-run recorded no event"
    );
}

fn manifest_with(annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad\n  annotations:\n{annotations}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: bad}}\n  template:\n    metadata:\n      labels: {{app: bad}}\n    spec:\n      containers: [{{name: app, image: registry.invalid/app:1}}]\n"
    )
}

#[tokio::test]
async fn annotation_rules_are_enforced_with_clear_messages() {
    let _kreload = shared_kreload();
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-validate").await;
    let apply = |annotations: &str| {
        kubectl(
            &["apply", "-n", &ns.name, "-f", "-"],
            Some(&manifest_with(annotations)),
        )
    };

    let (ok, _, err) = apply(
        "    reloader.stakater.com/auto: \"true\"\n    reloader.stakater.com/search: \"true\"",
    );
    assert!(!ok, "auto + search must be denied");
    assert!(
        err.contains("reloader.stakater.com/auto") && err.contains("reloader.stakater.com/search"),
        "{err}"
    );
    assert!(err.contains("denied the request"), "{err}");

    for (annotations, names) in [
        ("    reloader.stakater.com/auto: \"yes\"", "yes"),
        (
            "    configmap.reloader.stakater.com/reload: \"app-(\"",
            "app-(",
        ),
        (
            "    deployment.reloader.stakater.com/pause-period: \"five minutes\"",
            "five minutes",
        ),
    ] {
        let (ok, _, err) = apply(annotations);
        assert!(!ok, "{annotations} must be denied");
        assert!(
            err.contains(names),
            "message names the value {names:?}: {err}"
        );
    }

    // A name no ConfigMap has: admitted, with a warning the client prints.
    let (ok, _, err) = apply("    configmap.reloader.stakater.com/reload: \"does-not-exist\"");
    assert!(ok, "{err}");
    assert!(
        err.contains("Warning:") && err.contains("does-not-exist"),
        "{err}"
    );
}

/// An HTTPS client that trusts any certificate: these requests go straight to kreload.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
        .unwrap()
}

/// Sends a request head over TLS (trusting kreload's CA from its webhook configuration) and
/// returns the first line of the answer.
async fn raw_https(addr: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let config: Api<MutatingWebhookConfiguration> = Api::all(client().await);
    let ca = config.get("kreload").await.unwrap().webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca.0[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap()
}

async fn raw_https_head(addr: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = raw_https(addr).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("an answer before the body")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn slow_clients_cannot_hold_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let kreload = shared_kreload();
    // Half a request head, then silence: the server closes the connection (header-read timeout).
    let mut stream = raw_https(&kreload.admission).await;
    stream
        .write_all(b"POST /mutate HTTP/1.1\r\nHost: kreload\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a connection with an unfinished request head open for 30 s"
    );
    // A TCP connection that never starts TLS is dropped too (handshake timeout).
    let mut tcp = tokio::net::TcpStream::connect(&kreload.admission)
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the server kept a silent TCP connection open for 30 s"
    );
}

#[tokio::test]
async fn bad_input_over_https_gets_clear_errors_and_the_server_keeps_serving() {
    let kreload = shared_kreload();
    let url = format!("https://{}/mutate", kreload.admission);
    let http = raw_client();
    let post = |body: Vec<u8>| {
        http.post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = post(b"not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("not an admission.k8s.io/v1 AdmissionReview")
    );
    let r = post(br#"{"kind": "Pod"}"#.to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no request"));
    let r = post(br#"{"request": {"kind": {"kind": "Pod"}}}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no uid"));

    let unknown = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-unknown", "kind": {"group": "", "version": "v1", "kind": "Service"}, "operation": "CREATE", "object": {}}});
    let r = post(serde_json::to_vec(&unknown).unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["response"]["uid"], "u-unknown");
    assert_eq!(v["response"]["allowed"], false);
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("does not handle")
    );

    // Over the limit: answered 413 from the Content-Length alone, before the body is read.
    let head = raw_https_head(&kreload.admission, "POST /mutate HTTP/1.1\r\nHost: kreload\r\nContent-Type: application/json\r\nContent-Length: 5242880\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // Still serving.
    let good = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-good", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "namespace": "default", "operation": "CREATE",
                    "object": {"metadata": {"name": "x"}, "spec": {"containers": []}}}});
    let r = post(serde_json::to_vec(&good).unwrap()).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["patchType"], "JSONPatch");
}

/// Every form in which a Secret value, or a digest kreload could compute of it, might leak, each
/// with a description: the value and its base64 (the text of the Secret's `data`, which kreload
/// digests as the API server returns it); for each of these two, SHA-256 (kreload's digest) and
/// SHA-1 (Reloader's), in hex (whole, and its first 16 characters, as a short digest would be
/// printed), in base64 (whole, and 16 characters), and as the Debug list of its first bytes.
fn forms_of_secret(value: &str) -> Vec<(String, String)> {
    use sha1::Digest as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = b64.encode(value);
    let mut forms = vec![
        ("the value".to_owned(), value.to_owned()),
        ("its base64".to_owned(), text.clone()),
    ];
    for (input, of) in [
        (value.as_bytes(), "the value"),
        (text.as_bytes(), "its base64"),
    ] {
        let sha1 = sha1::Sha1::digest(input).to_vec();
        let sha256 = <sha2::Sha256 as sha2::Digest>::digest(input).to_vec();
        for (digest, algorithm) in [(sha1, "SHA-1"), (sha256, "SHA-256")] {
            let hex = hex::encode(&digest);
            let base64 = b64.encode(&digest);
            let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest);
            let debug = format!("{:?}", &digest[..8]);
            for (form, needle) in [
                ("hex, 16 characters", hex[..16].to_owned()),
                ("upper-case hex, 16 characters", hex[..16].to_uppercase()),
                ("hex", hex.clone()),
                ("base64, 16 characters", base64[..16].to_owned()),
                ("URL-safe base64, 16 characters", url_safe[..16].to_owned()),
                ("base64", base64.clone()),
                ("bytes", debug.trim_end_matches(']').to_owned()),
            ] {
                forms.push((format!("{algorithm} of {of}, {form}"), needle));
            }
        }
    }
    forms
}

#[tokio::test]
async fn secret_values_and_their_digests_appear_nowhere() {
    const NEW_PASSWORD: &str = "correct-horse-battery-staple-rotated";
    let kreload = shared_kreload();
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-secrecy").await;
    create_configs(&ns).await;
    sync_secrets(&ns, 0).await;
    let api: Api<Deployment> = ns.api();
    let spec = json!({"containers": [{"name": "app", "image": "registry.invalid/app:1",
        "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}]});
    api.create(
        &PostParams::default(),
        &deployment(
            "web",
            1,
            json!({"reloader.stakater.com/auto": "true"}),
            spec,
        ),
    )
    .await
    .unwrap();
    let first = template_stamp(&wait_rollout(&ns, "web").await);
    // A rotation: the watcher digests the new value, rolls, and records a Reloaded Event.
    set_secret(&ns, "db", "password", NEW_PASSWORD).await;
    wait_for(
        "the rotation to roll the Deployment",
        Duration::from_secs(60),
        || async {
            let d = api.get("web").await.ok()?;
            (template_stamp(&d) != first).then_some(())
        },
    )
    .await;
    wait_rollout(&ns, "web").await;
    let events: Api<Event> = ns.api();
    wait_for("the Reloaded Event", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Reloaded"))
            .then_some(())
    })
    .await;

    let mut haystacks = vec![];
    for p in pods(&ns, "web").await {
        haystacks.push((
            format!("pod {} annotations", p.name_any()),
            format!("{:?}", p.metadata.annotations),
        ));
    }
    let d = api.get("web").await.unwrap();
    haystacks.push((
        "deployment annotations".into(),
        format!(
            "{:?} {:?}",
            d.metadata.annotations,
            d.spec.unwrap().template.metadata.unwrap().annotations
        ),
    ));
    for rs in replica_sets(&ns, "web").await {
        haystacks.push((
            format!("ReplicaSet {} annotations", rs.name_any()),
            format!(
                "{:?} {:?}",
                rs.metadata.annotations,
                rs.spec.and_then(|s| s.template?.metadata?.annotations)
            ),
        ));
    }
    haystacks.push((
        "events".into(),
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap(),
    ));
    haystacks.push((
        "metrics".into(),
        reqwest::get(format!("{}/metrics", kreload.health))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    ));
    let kubeconfig = kubeconfig_path();
    let kc = kubeconfig.to_str().unwrap();
    for command in [
        vec!["status", "-n", &ns.name, "--kubeconfig", kc],
        vec![
            "explain",
            "deployment/web",
            "-n",
            &ns.name,
            "--kubeconfig",
            kc,
        ],
    ] {
        let (ok, out, err) = run_with_stdin(kreload_bin(), &command, None);
        assert!(ok, "kreload {}: {err}", command[0]);
        assert!(out.contains("Secret/db"), "{out}");
        haystacks.push((format!("`kreload {}` output", command[0]), out + &err));
    }
    // Last, so that everything above was logged.
    let log = kreload.log_text();
    assert!(log.contains("DEBUG"), "debug logging is on");
    haystacks.push(("kreload log".into(), log));

    for value in [PASSWORD, NEW_PASSWORD] {
        for (form, needle) in forms_of_secret(value) {
            for (what, text) in &haystacks {
                assert!(
                    !text.contains(needle.as_str()),
                    "a Secret value appears in the {what}: {form}"
                );
            }
        }
    }
}

#[tokio::test]
async fn admission_metrics_are_served() {
    let kreload = shared_kreload();
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-metrics").await;
    create_configs(&ns).await;
    for _ in 0..20 {
        dry_run_stamp(&ns, &pod("m", "db")).await;
    }
    let text = reqwest::get(format!("{}/metrics", kreload.health))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    let count =
        value("kreload_admission_requests_seconds_count{webhook=\"mutate\",result=\"patched\"}");
    let sum =
        value("kreload_admission_requests_seconds_sum{webhook=\"mutate\",result=\"patched\"}");
    assert!(count >= 20.0, "{count}");
    eprintln!(
        "mutating admission in kreload (patched pods): {count} requests, mean {:.3} ms",
        sum / count * 1000.0
    );
    assert!(text.contains("kreload_store_configs{kind=\"Secret\"}"));
    let ready = reqwest::get(format!("{}/readyz", kreload.health))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
