//! kreload installed for real, on the harness's real node (`real-0`: containerd, runc, the
//! kubelet and kube-proxy; see docs/testing-real-node.md): `helm install` of deploy/helm/kreload
//! with the image built here (tests/images/build), self-managed certificates, two replicas and
//! `failurePolicy: Fail` on the mutating webhook. Then the seed's walkthrough with a real app
//! (tests/apps/config-echo) that serves the config file and the Secret-backed env var it started
//! with; the leader's pod deleted; and kreload's own rolling update while pods are being created.
//!
//! Built only with the cargo feature `real-node` (scripts/test turns it on when the harness runs
//! the real node, and says loudly when it cannot). Built, it never skips: without the real node it
//! fails, saying how to start one.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const STAMP: &str = "kreload.dev/config-hash";
const NODE: &str = "real-0";
const HOME: &str = "kreload";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The harness's state dir (where up wrote the kubeconfig).
fn state_dir() -> PathBuf {
    kubeconfig_path()
        .parent()
        .expect("the kubeconfig is in the state dir")
        .to_owned()
}

/// Fails, with instructions, unless the harness runs the real node and it is Ready.
async fn require_real_node(client: &Client) {
    let mode = state_dir().join("node-mode");
    let how = "start it with `KRELOAD_CLUSTER_REAL_NODE=1 tests/cluster/up` (or run scripts/test, \
               which does where the machine allows it); see docs/testing-real-node.md";
    assert!(
        std::fs::read_to_string(&mode).is_ok_and(|m| m.trim() == "real"),
        "the harness runs no real node ({} is missing): {how}",
        mode.display()
    );
    let node = Api::<Node>::all(client.clone())
        .get(NODE)
        .await
        .unwrap_or_else(|e| panic!("no Node {NODE} ({e}): {how}"));
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    assert!(ready, "Node {NODE} is not Ready: {how}");
}

/// Builds kreload's and config-echo's images and imports them into the node; their references.
fn build_images() -> (String, String) {
    let (ok, out, err) = run_env(
        &repo().join("tests/images/build"),
        &["--import"],
        &[("KRELOAD_CLUSTER_STATE", state_dir().to_str().unwrap())],
    );
    assert!(ok, "tests/images/build --import failed:\n{err}");
    let get = |app: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{app}=")))
            .unwrap_or_else(|| panic!("tests/images/build printed no {app}= line:\n{out}"))
            .to_owned()
    };
    (get("kreload"), get("config-echo"))
}

fn run_env(
    program: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn helm_run(args: &[&str]) -> (bool, String, String) {
    let kubeconfig = kubeconfig_path();
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    all.extend_from_slice(args);
    run_with_stdin(helm(), &all, None)
}

/// The Helm release `kreload`, uninstalled (and its namespace deleted) when dropped, so that a
/// failing test leaves no `failurePolicy: Fail` webhook behind for the tests after it.
struct Release;

impl Release {
    fn install(image: &str) -> Release {
        uninstall(); // a release left by an interrupted run
        // Local mode uses the same names: the tests before this one (e2e_failure_policy kills its
        // kreload on purpose) can leave their webhook configurations, which Helm will not adopt.
        let (ok, _, err) = kubectl(
            &[
                "delete",
                "--ignore-not-found",
                "mutatingwebhookconfiguration/kreload",
                "validatingwebhookconfiguration/kreload",
            ],
            None,
        );
        assert!(ok, "delete local mode's webhook configurations: {err}");
        let (repository, tag) = image.rsplit_once(':').expect("image reference has a tag");
        let values = json!({
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "certificates": {"mode": "self-managed"},
            "webhooks": {"mutating": {"failurePolicy": "Fail"}},
            "nodeSelector": {"type": "real"},
            "tolerations": [{"key": "kreload.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
        });
        let file =
            std::env::temp_dir().join(format!("kreload-incluster-{}.json", std::process::id()));
        std::fs::write(&file, values.to_string()).unwrap();
        let (ok, out, err) = helm_run(&[
            "install",
            "kreload",
            repo().join("deploy/helm/kreload").to_str().unwrap(),
            "--namespace",
            HOME,
            "--create-namespace",
            "--values",
            file.to_str().unwrap(),
            "--wait",
            "--timeout",
            "240s",
        ]);
        let _ = std::fs::remove_file(&file);
        if !ok {
            let (_, pods, _) = kubectl(&["-n", HOME, "get", "pods", "-o", "wide"], None);
            let (_, events, _) = kubectl(&["-n", HOME, "get", "events"], None);
            let (_, logs, _) = kubectl(&["-n", HOME, "logs", "deploy/kreload", "--tail=40"], None);
            uninstall();
            panic!(
                "helm install failed:\n{out}{err}\npods:\n{pods}\nevents:\n{events}\nlog:\n{logs}"
            );
        }
        Release
    }
}

fn uninstall() {
    let _ = helm_run(&[
        "uninstall",
        "kreload",
        "--namespace",
        HOME,
        "--wait",
        "--timeout",
        "120s",
    ]);
    // kreload's own objects (hash key, certificate, Lease) are not the chart's: the namespace goes.
    let _ = kubectl(
        &[
            "delete",
            "namespace",
            HOME,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ],
        None,
    );
}

impl Drop for Release {
    fn drop(&mut self) {
        uninstall();
    }
}

/// kreload's pods, by the chart's selector labels.
async fn kreload_pods(client: &Client) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), HOME)
        .list(&ListParams::default().labels("app.kubernetes.io/name=kreload"))
        .await
        .expect("list kreload pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn lease_holder(client: &Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), HOME)
        .get_opt("kreload")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// What a config-echo pod answers: fetched from its pod IP (inside the node's network namespace)
/// through the API server's pods/proxy, which reaches it over the harness's egress bridge.
fn echo_answer(ns: &str, pod: &str) -> Value {
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/");
    let (ok, out, err) = kubectl(&["get", "--raw", &path], None);
    assert!(ok, "GET {path}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{pod} answered {out:?}: {e}"))
}

/// The answers of every Ready pod of the Deployment `app` once its rollout is complete, keyed by
/// pod name.
async fn answers(ns: &TestNamespace, app: &str) -> Vec<(String, Value)> {
    wait_rollout(ns, app).await;
    let mut out = Vec::new();
    for p in pods(ns, app).await {
        if p.metadata.deletion_timestamp.is_some() || !is_ready(&p) {
            continue;
        }
        let name = p.name_any();
        let a = echo_answer(&ns.name, &name);
        assert_eq!(a["pod"], json!(name), "the answer comes from the pod asked");
        out.push((name, a));
    }
    out
}

/// Waits for the template stamp of `app` to differ from `before`; returns the new one.
async fn next_stamp(ns: &TestNamespace, app: &str, before: &str, why: &str) -> String {
    let api: Api<Deployment> = ns.api();
    wait_for(
        &format!("kreload to roll {app} after {why}"),
        Duration::from_secs(90),
        || async {
            let d = api.get(app).await.ok()?;
            template_stamp(&d).filter(|s| s != before)
        },
    )
    .await
}

fn config_echo(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echo", "annotations": {
            "reloader.stakater.com/search": "true",
            "secret.reloader.stakater.com/auto": "true"
        }},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "echo"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "nodeSelector": {"type": "real"},
                    "tolerations": [{"key": "kreload.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "echo",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "env": [{"name": "APP_SECRET", "valueFrom": {"secretKeyRef": {"name": "echo-secret", "key": "APP_SECRET"}}}],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/data/cfg"}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "resources": {"limits": {"memory": "32Mi"}, "requests": {"cpu": "10m", "memory": "8Mi"}}
                    }],
                    // Only index.html is consumed: a change to any other key must not roll.
                    "volumes": [{"name": "cfg", "configMap": {"name": "echo-cm", "items": [{"key": "index.html", "path": "index.html"}]}}]
                }
            }
        }
    })
}

fn names(answers: &[(String, Value)]) -> BTreeSet<String> {
    answers.iter().map(|(n, _)| n.clone()).collect()
}

fn assert_all(answers: &[(String, Value)], file: &str, env: &str, when: &str) {
    assert_eq!(
        answers.len(),
        2,
        "{when}: two Ready pods answer: {answers:?}"
    );
    for (pod, a) in answers {
        assert_eq!(
            a["file"],
            json!(file),
            "{when}: {pod} serves the file it started with"
        );
        assert_eq!(
            a["env"],
            json!(env),
            "{when}: {pod} has the env var it started with"
        );
    }
}

async fn patch_data<K>(api: &Api<K>, name: &str, data: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "data": data })),
    )
    .await
    .unwrap_or_else(|e| panic!("patch {name}: {e}"));
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kreload_in_cluster_on_the_real_node() {
    let client = client().await;
    require_real_node(&client).await;
    let (kreload_image, echo_image) = build_images();
    eprintln!("images: {kreload_image}, {echo_image}");

    // --- The install ------------------------------------------------------------------------
    let started = std::time::Instant::now();
    let _release = Release::install(&kreload_image);
    eprintln!("helm install --wait: {:?}", started.elapsed());
    let home_pods = kreload_pods(&client).await;
    assert_eq!(home_pods.len(), 2, "two kreload replicas: {home_pods:?}");
    for p in &home_pods {
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(NODE),
            "{} runs on the real node",
            p.name_any()
        );
        assert_eq!(spec.service_account_name.as_deref(), Some("kreload"));
        assert!(is_ready(p), "{} is Ready through its probes", p.name_any());
        let st = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(st.image, kreload_image, "the image built here");
        assert_eq!(st.restart_count, 0, "{} never restarted", p.name_any());
    }
    let pod_names: BTreeSet<String> = home_pods.iter().map(|p| p.name_any()).collect();
    let holder = wait_for(
        "one replica to hold the Lease",
        Duration::from_secs(60),
        || async {
            lease_holder(&client)
                .await
                .filter(|h| pod_names.contains(h))
        },
    )
    .await;
    eprintln!("Lease held by {holder}");

    // The webhook configurations point at the Service, with the CA kreload wrote itself.
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get("kreload")
        .await
        .expect("the chart's MutatingWebhookConfiguration");
    for w in mutating.webhooks.as_ref().unwrap() {
        let svc = w
            .client_config
            .service
            .as_ref()
            .expect("a Service reference");
        assert_eq!(
            (svc.namespace.as_str(), svc.name.as_str()),
            (HOME, "kreload")
        );
        assert!(
            w.client_config
                .ca_bundle
                .as_ref()
                .is_some_and(|b| !b.0.is_empty()),
            "caBundle written by kreload"
        );
        assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    }
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get("kreload")
        .await
        .expect("the chart's ValidatingWebhookConfiguration");
    assert!(validating.webhooks.as_ref().unwrap().iter().all(|w| {
        w.client_config
            .ca_bundle
            .as_ref()
            .is_some_and(|b| !b.0.is_empty())
    }));

    // --- The seed's walkthrough with a real app ----------------------------------------------
    let ns = TestNamespace::new(&client, "incluster").await;
    let cms: Api<ConfigMap> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let deployments: Api<Deployment> = ns.api();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "echo-cm", "annotations": {"reloader.stakater.com/match": "true"}},
            "data": {"index.html": "hello, version 1", "unused": "nobody reads this, 1"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "echo-secret"},
                "data": {"APP_SECRET": b64("secret-1")}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(config_echo(&echo_image)).unwrap(),
        )
        .await
        .expect("create the config-echo Deployment (admitted by kreload through its Service)");
    Api::<Service>::namespaced(client.clone(), &ns.name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "echo"},
                "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": "http"}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let v1 = answers(&ns, "echo").await;
    eprintln!("config-echo: 2 pods Ready in {:?}", started.elapsed());
    assert_all(&v1, "hello, version 1", "secret-1", "at start");
    let d = deployments.get("echo").await.unwrap();
    let stamp1 =
        template_stamp(&d).expect("the template was stamped at CREATE (webhook via the Service)");
    for p in pods(&ns, "echo").await {
        assert_eq!(
            p.annotations().get(STAMP),
            Some(&stamp1),
            "pods carry the template's stamp"
        );
    }
    // Through the Service too (the API server's services/proxy picks an endpoint).
    let (ok, out, err) = kubectl(
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{}/services/echo:80/proxy/", ns.name),
        ],
        None,
    );
    assert!(
        ok && out.contains("hello, version 1"),
        "the Service answers: {out}{err}"
    );

    // Edit the ConfigMap: the Deployment rolls, and every new pod serves version 2.
    patch_data(&cms, "echo-cm", json!({"index.html": "hello, version 2"})).await;
    let stamp2 = next_stamp(&ns, "echo", &stamp1, "the ConfigMap edit").await;
    let v2 = answers(&ns, "echo").await;
    assert_all(
        &v2,
        "hello, version 2",
        "secret-1",
        "after the ConfigMap edit",
    );
    assert!(
        names(&v1).is_disjoint(&names(&v2)),
        "new pods: {:?} then {:?}",
        names(&v1),
        names(&v2)
    );

    // Rotate the Secret: the env var, read once at start, changes only because the pods roll.
    patch_data(
        &secrets,
        "echo-secret",
        json!({"APP_SECRET": b64("secret-2")}),
    )
    .await;
    let stamp3 = next_stamp(&ns, "echo", &stamp2, "the Secret rotation").await;
    let v3 = answers(&ns, "echo").await;
    assert_all(
        &v3,
        "hello, version 2",
        "secret-2",
        "after the Secret rotation",
    );
    assert!(names(&v2).is_disjoint(&names(&v3)));

    // A key no pod consumes: no roll; the same pods answer the same content.
    let sets_before = replica_sets(&ns, "echo").await.len();
    patch_data(&cms, "echo-cm", json!({"unused": "nobody reads this, 2"})).await;
    // Longer than the coalescing window and a roll's round trip; a roll would show by then.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let d = deployments.get("echo").await.unwrap();
    assert_eq!(
        template_stamp(&d).as_deref(),
        Some(stamp3.as_str()),
        "no roll for an unconsumed key"
    );
    assert_eq!(
        replica_sets(&ns, "echo").await.len(),
        sets_before,
        "no new ReplicaSet"
    );
    let same = answers(&ns, "echo").await;
    assert_eq!(names(&same), names(&v3), "the same pods");
    assert_all(
        &same,
        "hello, version 2",
        "secret-2",
        "after the unconsumed key's edit",
    );

    // --- The leader's pod deleted --------------------------------------------------------------
    // kreload releases the Lease as it shuts down; the other replica or the Deployment's
    // replacement pod (it starts within a second or two here) takes it, whichever asks first.
    let holder = lease_holder(&client).await.expect("a Lease holder");
    Api::<Pod>::namespaced(client.clone(), HOME)
        .delete(&holder, &DeleteParams::default())
        .await
        .expect("delete the leader's pod");
    let started = std::time::Instant::now();
    let new_holder = wait_for(
        "another replica to take the Lease",
        Duration::from_secs(60),
        || async {
            let h = lease_holder(&client).await.filter(|h| *h != holder)?;
            let live: BTreeSet<String> = kreload_pods(&client)
                .await
                .iter()
                .map(|p| p.name_any())
                .collect();
            live.contains(&h).then_some(h)
        },
    )
    .await;
    eprintln!(
        "Lease moved from {holder} to {new_holder} in {:?}",
        started.elapsed()
    );
    let sets_before = replica_sets(&ns, "echo").await.len();
    patch_data(&cms, "echo-cm", json!({"index.html": "hello, version 3"})).await;
    let stamp4 = next_stamp(
        &ns,
        "echo",
        &stamp3,
        "the edit right after the leader change",
    )
    .await;
    let v4 = answers(&ns, "echo").await;
    assert_all(
        &v4,
        "hello, version 3",
        "secret-2",
        "after the leader change",
    );
    // Exactly once: one new ReplicaSet, and the stamp stays (the replacement replica, starting
    // up, finds nothing stale).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        replica_sets(&ns, "echo").await.len(),
        sets_before + 1,
        "one rollout for one change"
    );
    let d = deployments.get("echo").await.unwrap();
    assert_eq!(template_stamp(&d).as_deref(), Some(stamp4.as_str()));
    wait_for(
        "kreload back at two Ready replicas",
        Duration::from_secs(120),
        || async {
            let ps = kreload_pods(&client).await;
            (ps.len() == 2 && ps.iter().all(is_ready)).then_some(())
        },
    )
    .await;

    // --- kreload's own rolling update while pods are being created ------------------------------
    // Dry-run creates go through admission like real ones (the mutating webhook has
    // failurePolicy Fail), without leaving pods behind.
    let pods_api: Api<Pod> = ns.api();
    let stop = Arc::new(AtomicBool::new(false));
    let (created, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let probe: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "probe-"},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
    }))
    .unwrap();
    let load = tokio::spawn({
        let (stop, created, failed, failures) = (
            stop.clone(),
            created.clone(),
            failed.clone(),
            failures.clone(),
        );
        async move {
            let dry = PostParams {
                dry_run: true,
                ..Default::default()
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match pods_api.create(&dry, &probe).await {
                    Ok(p) if p.annotations().contains_key(STAMP) => {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures
                            .lock()
                            .unwrap()
                            .push("admitted without a stamp".into());
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.lock().unwrap().push(e.to_string());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    let (ok, _, err) = kubectl(
        &["-n", HOME, "rollout", "restart", "deployment/kreload"],
        None,
    );
    assert!(ok, "rollout restart: {err}");
    let (ok, out, err) = kubectl(
        &[
            "-n",
            HOME,
            "rollout",
            "status",
            "deployment/kreload",
            "--timeout=240s",
        ],
        None,
    );
    assert!(ok, "rollout status: {out}{err}");
    eprintln!("kreload's rolling update: {:?}", started.elapsed());
    // Old pods may still be terminating (draining): keep creating until they are gone.
    wait_for(
        "the old kreload pods to be gone",
        Duration::from_secs(120),
        || async {
            let all = Api::<Pod>::namespaced(client.clone(), HOME)
                .list(&ListParams::default().labels("app.kubernetes.io/name=kreload"))
                .await
                .ok()?;
            (all.items.len() == 2).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (created, failed) = (
        created.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "pod creations during kreload's rolling update: {created} admitted and stamped, {failed} failed"
    );
    assert!(created > 20, "the load ran ({created} creations)");
    assert_eq!(
        failed,
        0,
        "failed pod creations: {:?}",
        failures.lock().unwrap()
    );

    // Memory, from the kubelet's summary (through the API server's node proxy).
    let (ok, out, err) = kubectl(
        &[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{NODE}/proxy/stats/summary"),
        ],
        None,
    );
    assert!(ok, "stats/summary: {err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    for pod in summary["pods"].as_array().unwrap() {
        if pod["podRef"]["namespace"] != json!(HOME) {
            continue;
        }
        let ws = pod["containers"][0]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap_or(0);
        eprintln!("{}: working set {} MiB", pod["podRef"]["name"], ws >> 20);
        assert!(ws < 256 << 20, "within the chart's 256 MiB limit");
    }
}
