//! Leader election through a real Lease on the harness control plane: exactly one of two
//! candidates leads; an aborted leader is replaced once its lease expires; a leader that shuts
//! down gracefully releases the lease, so the other takes over at once. And with kreload
//! processes: a replica whose watches cannot sync never holds the Lease; the replica that does
//! not lead serves admission.

mod common;

use std::time::Duration;

use common::observe::*;
use common::workloads::*;
use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kreload::reload::lease::{self, LeaseConfig};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const LEASE: &str = "kreload-leader";

/// One candidate: its leadership flag, its task and the trigger for its graceful shutdown.
struct Elector {
    identity: String,
    leading: watch::Receiver<bool>,
    handle: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Elector {
    fn start(
        client: &Client,
        ns: &TestNamespace,
        identity: &str,
        lease_duration: Duration,
        renew_every: Duration,
    ) -> Elector {
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let config = LeaseConfig {
            namespace: ns.name.clone(),
            name: LEASE.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
            renew_every,
        };
        let (leading, handle) = lease::spawn(client.clone(), config, async move {
            let _ = shutdown_rx.await;
        });
        Elector {
            identity: identity.to_owned(),
            leading,
            handle,
            shutdown: Some(shutdown),
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    /// Signals a graceful shutdown and waits for the task to finish (it releases the lease).
    async fn shut_down(mut self) {
        let _ = self.shutdown.take().expect("not shut down yet").send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.handle)
            .await
            .expect("elector finishes within 10s of shutdown")
            .expect("elector task does not panic");
        assert!(!self.leads(), "a shut-down elector does not lead");
    }

    /// Kills the task without any release, as a crashed process would.
    async fn abort(self) {
        self.handle.abort();
        let _ = self.handle.await;
        // Keep the shutdown sender alive until the task is gone, so it cannot release.
        drop(self.shutdown);
    }
}

/// Waits until exactly one of the two electors leads; returns (leader, follower).
async fn wait_single_leader(a: Elector, b: Elector) -> (Elector, Elector) {
    let leader_is_a = wait_for(
        "exactly one of two electors to lead",
        Duration::from_secs(10),
        || {
            let (la, lb) = (a.leads(), b.leads());
            async move { (la != lb).then_some(la) }
        },
    )
    .await;
    if leader_is_a { (a, b) } else { (b, a) }
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get(LEASE)
        .await
        .expect("read the Lease")
        .spec
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn exactly_one_of_two_leads() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "kreload-lease-one").await;
    let (dur, renew) = (Duration::from_secs(3), Duration::from_millis(500));
    let a = Elector::start(&client, &ns, "candidate-a", dur, renew);
    let b = Elector::start(&client, &ns, "candidate-b", dur, renew);

    let (leader, follower) = wait_single_leader(a, b).await;

    // Never both, never neither, for 3 s of steady state.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        let (l, f) = (leader.leads(), follower.leads());
        assert!(!(l && f), "both electors believe they lead");
        assert!(l, "{} stopped leading without contention", leader.identity);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let api: Api<Lease> = ns.api();
    assert_eq!(
        holder(&api).await.as_deref(),
        Some(leader.identity.as_str())
    );
    let spec = api.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert!(spec.renew_time.is_some() && spec.acquire_time.is_some());

    leader.shut_down().await;
    follower.shut_down().await;
}

#[tokio::test]
async fn aborted_leader_is_replaced_after_expiry() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "kreload-lease-abort").await;
    let (dur, renew) = (Duration::from_secs(3), Duration::from_millis(500));
    let a = Elector::start(&client, &ns, "candidate-a", dur, renew);
    let b = Elector::start(&client, &ns, "candidate-b", dur, renew);
    let (leader, follower) = wait_single_leader(a, b).await;

    let api: Api<Lease> = ns.api();
    let before = api.get(LEASE).await.unwrap().spec.unwrap();
    let old = leader.identity.clone();
    leader.abort().await;

    // The lease expires 3 s after the last renewal; the follower looks every 500 ms.
    wait_for(
        "the follower to take over the aborted leader's lease",
        Duration::from_secs(8),
        || {
            let leads = follower.leads();
            async move { leads.then_some(()) }
        },
    )
    .await;
    let after = api.get(LEASE).await.unwrap().spec.unwrap();
    assert_eq!(
        after.holder_identity.as_deref(),
        Some(follower.identity.as_str())
    );
    assert_ne!(after.holder_identity.as_deref(), Some(old.as_str()));
    assert!(
        after.lease_transitions.unwrap_or(0) > before.lease_transitions.unwrap_or(0),
        "a takeover bumps leaseTransitions: {before:?} -> {after:?}"
    );
    assert!(
        after.acquire_time > before.acquire_time,
        "takeover sets acquireTime"
    );

    follower.shut_down().await;
}

#[tokio::test]
async fn graceful_shutdown_releases_at_once() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "kreload-lease-release").await;
    // A long lease: only a release lets the follower take over within 2.5 s.
    let (dur, renew) = (Duration::from_secs(10), Duration::from_millis(500));
    let a = Elector::start(&client, &ns, "candidate-a", dur, renew);
    let b = Elector::start(&client, &ns, "candidate-b", dur, renew);
    let (leader, follower) = wait_single_leader(a, b).await;
    // Let the leader renew at least once, so that the lease is fresh when it goes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(leader.leads() && !follower.leads());

    let api: Api<Lease> = ns.api();
    let old = leader.identity.clone();
    let started = tokio::time::Instant::now();
    leader.shut_down().await;
    assert_ne!(
        holder(&api).await.as_deref(),
        Some(old.as_str()),
        "a gracefully stopped leader no longer holds the lease"
    );

    let remaining = Duration::from_millis(2500).saturating_sub(started.elapsed());
    wait_for(
        "the follower to take over the released lease",
        remaining,
        || {
            let leads = follower.leads();
            async move { leads.then_some(()) }
        },
    )
    .await;
    assert_eq!(
        holder(&api).await.as_deref(),
        Some(follower.identity.as_str())
    );

    follower.shut_down().await;
}

// ---------------------------------------------------------------------------------------------
// kreload processes

/// A kreload process started by the test itself (not in local mode); killed when dropped.
struct Process {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn lease_holder(api: &Api<Lease>, name: &str) -> Option<String> {
    api.get_opt(name).await.ok()??.spec?.holder_identity
}

/// Issue 10, defect 9 (the Lease was contended before the watches had synced): a replica whose
/// watches cannot sync (its ServiceAccount may manage the Lease but not list Secrets) never
/// holds the Lease, and a replica that syncs takes it.
#[tokio::test]
async fn a_replica_whose_watches_cannot_sync_never_holds_the_lease() {
    let client = client().await;
    let home = TestNamespace::new(&client, "e2e-lease-home").await;
    let ns = TestNamespace::new(&client, "e2e-lease-nosync").await;
    let sa = "kreload-nosync";
    let dir = limited_identity(&home, sa).await;
    // At home: its hash key, the Lease, Events. Where it watches: everything but Secrets.
    grant(
        &client,
        &home.name,
        &home.name,
        sa,
        json!([
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
        ]),
    )
    .await;
    grant(
        &client,
        &ns.name,
        &home.name,
        sa,
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["get", "list", "watch", "patch", "create", "delete"]},
            {"apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["apps.openshift.io"], "resources": ["deploymentconfigs"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        ]),
    )
    .await;
    let kubeconfig = dir.join("sa.kubeconfig");

    let lease_name = "kreload-nosync";
    let duration = "4s";
    let health = free_port();
    let log = dir.join("kreload.log");
    let nosync = Process {
        child: std::process::Command::new(kreload_bin())
            .arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--namespace", &home.name, "--namespaces", &ns.name])
            .arg("--tls-cert-file")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key-file")
            .arg(dir.join("tls.key"))
            .args(["--listen", "127.0.0.1:0"])
            .args(["--health-listen", &format!("127.0.0.1:{health}")])
            .args(["--enable-ha", "--lease-name", lease_name])
            .args(["--lease-duration", duration, "--identity", "nosync"])
            .args(["--exit-on-stdin-close", "--log-level", "debug"])
            .env_remove("KUBECONFIG")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kreload"),
        log,
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let livez = format!("http://127.0.0.1:{health}/livez");
    wait_for(
        "the replica that cannot list Secrets to serve /livez",
        Duration::from_secs(60),
        || async {
            let r = http.get(&livez).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    let leases: Api<Lease> = home.api();
    let log_of = |p: &Process| std::fs::read_to_string(&p.log).unwrap_or_default();
    // Alone, for two lease durations: it must not take the Lease.
    let alone_until = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < alone_until {
        let holder = lease_holder(&leases, lease_name).await;
        assert_ne!(
            holder.as_deref(),
            Some("nosync"),
            "a replica that cannot list Secrets (its watches never sync) holds the Lease; log: {}",
            nosync.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let synced = Running(Kreload::start(&[
        "--namespace",
        &home.name,
        "--namespaces",
        &ns.name,
        "--webhook-config-name",
        &format!("kreload-{}", ns.name),
        "--enable-ha",
        "--lease-name",
        lease_name,
        "--lease-duration",
        duration,
        "--identity",
        "synced",
        "--log-level",
        "debug",
    ]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let holder = lease_holder(&leases, lease_name).await;
        assert_ne!(
            holder.as_deref(),
            Some("nosync"),
            "the replica that cannot sync took the Lease; log: {}",
            nosync.log.display()
        );
        if holder.as_deref() == Some("synced") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica that synced did not take the Lease within 30 s (holder {holder:?}); logs: {} {}",
            synced.log.display(),
            nosync.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = http
        .get(format!("http://127.0.0.1:{health}/readyz"))
        .send()
        .await
        .unwrap();
    assert!(
        !ready.status().is_success(),
        "the replica that cannot list Secrets says it is ready"
    );
    let text = log_of(&nosync);
    assert!(
        text.contains("secrets") && text.contains("forbidden"),
        "the replica's watches fail for want of Secret rights (else this test proves nothing); log: {}",
        nosync.log.display()
    );
    // Kept when the test fails (for the log); it holds a token.
    drop(nosync);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stamp an admission answer's JSON patch writes, if any.
fn patched_stamp(answer: &Value) -> Option<String> {
    use base64::Engine;
    let patch = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .ok()?;
    let ops: Vec<Value> = serde_json::from_slice(&bytes).ok()?;
    ops.iter().find_map(|op| {
        let value = if op["path"].as_str()?.ends_with(&STAMP.replace('/', "~1")) {
            &op["value"]
        } else {
            op["value"].get(STAMP)?
        };
        value.as_str().map(str::to_owned)
    })
}

/// Issue 10, item 10 (the non-leader replica was never shown to serve admission): of two
/// replicas, the one that does not lead answers the API server's admission reviews (its own
/// metrics count them) and stamps a pod as the leader would.
#[tokio::test]
async fn the_replica_that_does_not_lead_serves_admission() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-lease-follower").await;
    let home = TestNamespace::new(&client, "e2e-lease-follower-home").await;
    cm("app-cm").create(&ns).await;
    let lease_name = "kreload-follower";
    let start = |who: &str| {
        Running(Kreload::start(&[
            "--namespace",
            &home.name,
            "--namespaces",
            &ns.name,
            "--webhook-config-name",
            &format!("kreload-{}-{who}", ns.name),
            "--enable-ha",
            "--lease-name",
            lease_name,
            "--identity",
            who,
            "--log-level",
            "debug",
        ]))
    };
    let a = start("a");
    let b = start("b");
    let leases: Api<Lease> = home.api();
    let leader = wait_for("a replica to lead", Duration::from_secs(30), || async {
        lease_holder(&leases, lease_name)
            .await
            .filter(|h| h == "a" || h == "b")
    })
    .await;
    let (follower, follower_id) = if leader == "a" { (&b, "b") } else { (&a, "a") };
    // Any result: the other replica's webhook may have stamped the pod first.
    let patched = [("webhook", "mutate")];
    let count = "kreload_admission_requests_seconds_count";
    let before = scrape(follower).await;

    // Through the API server: both replicas' webhooks are registered (the API server takes a
    // moment to call a new one); the follower's own metrics count what it answered.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "app", "image": IMAGE,
                                 "envFrom": [{"configMapRef": {"name": "app-cm"}}]}]}
    }))
    .unwrap();
    let pods: Api<Pod> = ns.api();
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let stamp = wait_for(
        "the follower to answer an admission review from the API server",
        Duration::from_secs(30),
        || async {
            let created = pods.create(&dry_run, &pod).await.ok()?;
            let now = scrape(follower).await;
            (now.get(count, &patched) > before.get(count, &patched))
                .then(|| created.annotations().get(STAMP).cloned())
                .flatten()
        },
    )
    .await;
    let after = scrape(follower).await;
    assert_ne!(
        after.get("kreload_leader", &[]),
        1.0,
        "{follower_id} does not lead"
    );
    assert_eq!(
        lease_holder(&leases, lease_name).await.as_deref(),
        Some(leader.as_str())
    );

    // Directly: the follower's answer to a review of the same pod stamps it alike.
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "e2e-follower", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": ns.name, "operation": "CREATE", "name": "probe-2",
                    "userInfo": {"username": "e2e"},
                    "object": serde_json::to_value(&pod).unwrap()}
    });
    let answer: Value = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("https://{}/mutate", follower.admission))
        .json(&review)
        .send()
        .await
        .expect("the follower answers")
        .json()
        .await
        .unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(
        patched_stamp(&answer).as_deref(),
        Some(stamp.as_str()),
        "the follower stamps the pod as the API server's pod was stamped: {answer}"
    );
}
