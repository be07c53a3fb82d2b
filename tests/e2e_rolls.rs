//! Rolls that go wrong, and what kreload shows of its rolls, on the real control plane: a roll
//! another admission policy refuses backs off; each roll records its own Event; every metric
//! moves when its event happens; a deposed leader starts no write.
//!
//! Isolation as in e2e_watcher: each test runs its own kreload scoped to its own namespaces,
//! and its admission policies and webhooks match only its namespace.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::observe::*;
use common::policy::DenyPolicy;
use common::workloads::*;
use common::*;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

fn auto() -> Value {
    json!({"reloader.stakater.com/auto": "true"})
}

/// A policy that refuses every UPDATE of Deployment `name` that changes its template stamp
/// (the roll), and lets every other write through.
async fn deny_rolls_of(ns: &TestNamespace, name: &str) -> DenyPolicy {
    let stamp =
        |o: &str| format!("{o}.spec.template.metadata.?annotations[?'{STAMP}'].orValue('')");
    let expression = format!(
        "object.metadata.name != '{name}' || {} == {}",
        stamp("object"),
        stamp("oldObject")
    );
    let policy = DenyPolicy::create(
        ns,
        "no-roll",
        ("apps", "deployments"),
        "UPDATE",
        &expression,
    )
    .await;
    policy.wait_enforced(true, probe_roll(ns, name)).await;
    policy
}

/// A dry-run of what a roll writes: a new template stamp, written as kreload writes it (its
/// field manager; the tests' kreload acts as the tests' user). A stamp anyone else writes is
/// not taken (the mutating webhook keeps the old one), so the policy would never see it.
fn probe_roll(
    ns: &TestNamespace,
    name: &str,
) -> impl FnMut() -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Deployment, kube::Error>> + Send>,
> + use<> {
    let api: Api<Deployment> = ns.api();
    let name = name.to_owned();
    move || {
        let api = api.clone();
        let name = name.clone();
        Box::pin(async move {
            let patch =
                json!({"spec": {"template": {"metadata": {"annotations": {STAMP: "v2.probe.0"}}}}});
            let pp = PatchParams {
                dry_run: true,
                field_manager: Some("kreload".into()),
                ..Default::default()
            };
            api.patch(&name, &pp, &Patch::Merge(&patch)).await
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Backoff

/// Issue 10, defect 9 (failed rolls retried every 2 s forever, a Warning Event each time): a
/// refused roll is retried with exponential backoff, counted in `kreload_rolls_failing`, with a
/// `ReloadFailed` Event on the 1st, 2nd and 4th failure only; once allowed it succeeds.
#[tokio::test]
async fn a_refused_roll_backs_off_and_succeeds_once_allowed() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-rolls-backoff").await;
    cm("app-cm").create(&ns).await;
    let kreload = kreload_for(&[&ns], &[]);
    create(&ns, deploy("web", auto(), env_from(&["app-cm"], &[]))).await;
    let d = Kind::Deployment;
    let base = baselines(&ns, &[rolls(d, "web", "")]).await.remove(0);
    let policy = deny_rolls_of(&ns, "web").await;

    let error = [("result", "error")];
    let errors_before = scrape(&kreload).await.get("kreload_reloads_total", &error);
    set_cm(&ns, "app-cm", "k", "v1").await;
    wait_metric(
        &kreload,
        "kreload_reloads_total",
        &error,
        ROLL_TIMEOUT,
        |v| v > errors_before,
    )
    .await
    .unwrap_or_else(|e| panic!("the refused roll was never tried: {e}"));
    // From the first failure, retries after 2, 4, 8, 16 s: failures at 0, 2, 6, 14 s (the next
    // at 30 s). Retrying every 2 s would fail about 10 times.
    const OBSERVE: Duration = Duration::from_secs(20);
    tokio::time::sleep(OBSERVE).await;
    let during = scrape(&kreload).await;
    let failed = during.get("kreload_reloads_total", &error) - errors_before;
    let warnings = events(&ns, "web", "ReloadFailed").await;
    let mut failures = Vec::new();
    eprintln!(
        "{failed} failed attempts within {OBSERVE:?} of the first; ReloadFailed: {:?}",
        notes(&warnings)
    );
    if !(3.0..=5.0).contains(&failed) {
        failures.push(format!(
            "{failed} failed attempts within {OBSERVE:?} of the first; with a backoff of 2, 4, 8, 16 s want 4 (3 to 5)"
        ));
    }
    let gauge = during.get("kreload_rolls_failing", &[]);
    if gauge != 1.0 || !during.has("kreload_rolls_failing") {
        failures.push(format!(
            "kreload_rolls_failing is {gauge} while one roll is refused; want 1"
        ));
    }
    let warned = occurrences(&warnings);
    let want = (1..=failed as u32).filter(|n| n.is_power_of_two()).count();
    if warned != want {
        failures.push(format!(
            "{warned} ReloadFailed Warnings for {failed} failures; want {want}, one on the 1st, 2nd, 4th... failure: {:?}",
            notes(&warnings)
        ));
    }
    if let Err(e) = expect_unchanged(&ns, d, "web", &base).await {
        failures.push(format!("{e} (the policy refuses the roll)"));
    }

    policy.remove(probe_roll(&ns, "web")).await;
    // The next retry comes at most one backoff (16 s) later.
    let allowed_in = Duration::from_secs(60);
    if try_wait_for(allowed_in, || async {
        workload_stamp(&ns, d, "web")
            .await
            .filter(|s| Some(s) != base.stamp.as_ref())
    })
    .await
    .is_none()
    {
        failures.push(format!(
            "the roll did not succeed within {allowed_in:?} of the policy's removal"
        ));
    } else if let Err(e) = expect_roll(&ns, d, "web", &base).await {
        failures.push(e);
    }
    if let Err(e) = wait_metric(
        &kreload,
        "kreload_rolls_failing",
        &[],
        Duration::from_secs(10),
        |v| v == 0.0,
    )
    .await
    {
        failures.push(format!("after the roll succeeded: {e}"));
    }
    check(failures, &[&kreload]);
}

// ---------------------------------------------------------------------------------------------
// Events

/// Issue 10, defect 9 (later reloads folded into the first one's Event series, with its
/// note): two rolls of one Deployment for two ConfigMaps record two `Reloaded` Events, each
/// naming its own ConfigMap and keys.
#[tokio::test]
async fn each_roll_records_its_own_event() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-rolls-events").await;
    cm("first-cm").data(json!({"alpha": "0"})).create(&ns).await;
    cm("second-cm").data(json!({"beta": "0"})).create(&ns).await;
    let _kreload = kreload_for(&[&ns], &["--min-roll-interval", "1s"]);
    create(
        &ns,
        deploy("web", auto(), env_from(&["first-cm", "second-cm"], &[])),
    )
    .await;
    let d = Kind::Deployment;
    let base = baselines(&ns, &[rolls(d, "web", "")]).await.remove(0);

    set_cm(&ns, "first-cm", "alpha", "1").await;
    let first = expect_roll(&ns, d, "web", &base)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    set_cm(&ns, "second-cm", "beta", "1").await;
    let after_first = Base {
        stamp: Some(first),
        revisions: base.revisions + 1,
    };
    expect_roll(&ns, d, "web", &after_first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Events are recorded right after each roll; give the second a moment.
    let reloaded = try_wait_for(Duration::from_secs(10), || async {
        let ev = events(&ns, "web", "Reloaded").await;
        (ev.len() >= 2).then_some(ev)
    })
    .await;
    let ev = match reloaded {
        Some(ev) => ev,
        None => events(&ns, "web", "Reloaded").await,
    };
    let all = notes(&ev);
    assert_eq!(
        ev.len(),
        2,
        "want one Reloaded Event per roll (2); have {} Event(s), {} occurrence(s): {all:?}",
        ev.len(),
        occurrences(&ev)
    );
    let note = |e: &k8s_openapi::api::events::v1::Event| e.note.clone().unwrap_or_default();
    let (a, b) = (note(&ev[0]), note(&ev[1]));
    assert!(
        a.contains("ConfigMap first-cm") && a.contains("alpha") && !a.contains("second-cm"),
        "the first roll's Event names first-cm and its key alpha only: {all:?}"
    );
    assert!(
        b.contains("ConfigMap second-cm") && b.contains("beta") && !b.contains("first-cm"),
        "the second roll's Event names second-cm and its key beta only: {all:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// How a metric moved between two scrapes, for the failure list.
fn moved(
    failures: &mut Vec<String>,
    what: &str,
    before: &Scrape,
    after: &Scrape,
    (name, labels): (&str, &[(&str, &str)]),
    want: impl Fn(f64) -> bool,
) {
    let (b, a) = (before.get(name, labels), after.get(name, labels));
    if !want(a - b) {
        failures.push(format!("{what}: {name}{labels:?} went {b} -> {a}"));
    }
}

/// Waits until `name{labels}` rose above its value in `before`; records a failure otherwise.
async fn rises(
    failures: &mut Vec<String>,
    what: &str,
    kreload: &Kreload,
    before: &Scrape,
    (name, labels): (&str, &[(&str, &str)]),
    timeout: Duration,
) {
    let b = before.get(name, labels);
    if let Err(e) = wait_metric(kreload, name, labels, timeout, |v| v > b).await {
        failures.push(format!("{what}: {e} (was {b})"));
    }
}

/// Issue 10, item 10 (metrics): every metric of docs/operations.md moves when its event
/// happens: admission histogram, rolls (success, error), skipped changes per reason,
/// coalesced and deferred changes, watch events, leader, index and store sizes, failing rolls
/// and Jobs waiting to be created again. (Skip reason `workload_type` cannot move on a real
/// run: kinds in --ignored-workload-types are not watched, so no change ever reaches one.)
#[tokio::test]
async fn every_metric_moves_when_its_event_happens() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-rolls-metrics").await;
    // kreload's own namespace: watched (it is in --namespaces) but never acted on, so its
    // changes are skipped for `namespace`; it holds the hash key and the Lease.
    let home = TestNamespace::new(&client, "e2e-rolls-metrics-home").await;
    let lease = "kreload-metrics";
    let leases: Api<Lease> = home.api();
    let held_elsewhere: Lease = serde_json::from_value(json!({
        "metadata": {"name": lease},
        "spec": {"holderIdentity": "e2e-someone-else", "leaseDurationSeconds": 3600,
                 "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
                 "acquireTime": MicroTime(k8s_openapi::jiff::Timestamp::now())}
    }))
    .unwrap();
    leases
        .create(&PostParams::default(), &held_elsewhere)
        .await
        .unwrap();
    let identity = format!("{}-kreload", ns.name);
    let kreload = kreload_for(
        &[&ns, &home],
        &[
            "--namespace",
            &home.name,
            "--enable-ha",
            "--lease-name",
            lease,
            "--lease-duration",
            "4s",
            "--identity",
            &identity,
        ],
    );
    let mut f = Vec::new();
    let m0 = scrape(&kreload).await;
    let leader = ("kreload_leader", &[][..]);

    // Configs and workloads appear: watch events, store and index sizes, admission reviews.
    cm("app-cm")
        .data(json!({"k": "v0", "unused": "x"}))
        .create(&ns)
        .await;
    secret("app-secret").create(&ns).await;
    cm("job-cm").create(&ns).await;
    cm("home-cm").create(&home).await;
    let web = json!({"containers": [{"name": "app", "image": IMAGE,
        "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "app-cm", "key": "k"}}}],
        "envFrom": [{"secretRef": {"name": "app-secret"}},
                    {"configMapRef": {"name": "late-cm", "optional": true}}]}]});
    create(&ns, deploy("web", auto(), web)).await;
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "batch", "annotations": auto()},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "a", "image": IMAGE, "envFrom": [{"configMapRef": {"name": "job-cm"}}]}]}}}
    }))
    .unwrap();
    let jobs: Api<Job> = ns.api();
    let job_before = jobs.create(&PostParams::default(), &job).await.unwrap();
    let bad = deploy(
        "bad",
        json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/search": "true"}),
        json!({}),
    );
    let denied = ns
        .api::<Deployment>()
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad).unwrap(),
        )
        .await;
    assert!(denied.is_err(), "auto + search is denied");
    let d = Kind::Deployment;
    let base = baselines(&ns, &[rolls(d, "web", "")]).await.remove(0);
    let m1 = scrape(&kreload).await;
    for kind in ["ConfigMap", "Secret", "Deployment", "Job"] {
        moved(
            &mut f,
            "configs and workloads created",
            &m0,
            &m1,
            ("kreload_watch_events_total", &[("kind", kind)]),
            |d| d >= 1.0,
        );
    }
    moved(
        &mut f,
        "web and batch created",
        &m0,
        &m1,
        ("kreload_index_workloads", &[]),
        |d| d == 2.0,
    );
    moved(
        &mut f,
        "3 ConfigMaps created",
        &m0,
        &m1,
        ("kreload_store_configs", &[("kind", "ConfigMap")]),
        |d| d >= 3.0,
    );
    moved(
        &mut f,
        "a Secret created",
        &m0,
        &m1,
        ("kreload_store_configs", &[("kind", "Secret")]),
        |d| d >= 1.0,
    );
    moved(
        &mut f,
        "a Deployment and its pod stamped",
        &m0,
        &m1,
        (
            "kreload_admission_requests_seconds_count",
            &[("webhook", "mutate"), ("result", "patched")],
        ),
        |d| d >= 2.0,
    );
    moved(
        &mut f,
        "auto + search denied",
        &m0,
        &m1,
        (
            "kreload_admission_requests_seconds_count",
            &[("webhook", "validate"), ("result", "denied")],
        ),
        |d| d >= 1.0,
    );
    if m1.get(leader.0, leader.1) != 0.0 {
        f.push("kreload_leader is not 0 while another holds the Lease".into());
    }

    // Leadership: the other holder goes away.
    leases
        .delete(lease, &DeleteParams::default())
        .await
        .unwrap();
    if let Err(e) = wait_metric(&kreload, leader.0, leader.1, Duration::from_secs(20), |v| {
        v == 1.0
    })
    .await
    {
        f.push(format!("the Lease freed: {e}"));
    }

    // Two changes within the coalescing window: one roll. A third right after it: deferred by
    // the storm guard (10 s), then rolled.
    let m = scrape(&kreload).await;
    set_cm(&ns, "app-cm", "k", "v1").await;
    set_cm(&ns, "app-cm", "k", "v2").await;
    let s1 = wait_for("the first roll", ROLL_TIMEOUT, || async {
        workload_stamp(&ns, d, "web")
            .await
            .filter(|s| Some(s) != base.stamp.as_ref())
    })
    .await;
    let after = scrape(&kreload).await;
    set_cm(&ns, "app-cm", "k", "v3").await;
    moved(
        &mut f,
        "two changes 1 roll",
        &m,
        &after,
        ("kreload_changes_coalesced_total", &[]),
        |d| d >= 1.0,
    );
    rises(
        &mut f,
        "a roll",
        &kreload,
        &m,
        (
            "kreload_reloads_total",
            &[("kind", "Deployment"), ("result", "success")],
        ),
        Duration::from_secs(5),
    )
    .await;
    rises(
        &mut f,
        "a change within the storm guard",
        &kreload,
        &after,
        ("kreload_changes_deferred_total", &[]),
        Duration::from_secs(10),
    )
    .await;
    let s1_base = Base {
        stamp: Some(s1),
        revisions: base.revisions + 1,
    };
    let s2 = expect_roll(&ns, d, "web", &s1_base)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s2_base = Base {
        stamp: Some(s2),
        revisions: base.revisions + 2,
    };

    // A change undone within the coalescing window: the roll finds the stamp current.
    let m = scrape(&kreload).await;
    set_cm(&ns, "app-cm", "k", "v4").await;
    set_cm(&ns, "app-cm", "k", "v3").await;
    rises(
        &mut f,
        "a change undone before its roll",
        &kreload,
        &m,
        (
            "kreload_changes_skipped_total",
            &[("reason", "already_current")],
        ),
        ROLL_TIMEOUT,
    )
    .await;

    // A key nobody consumes; an annotation-only edit (`ignore`, then without it); a config
    // created and deleted (no --reload-on-create/-delete); a change in kreload's namespace.
    let m = scrape(&kreload).await;
    set_cm(&ns, "app-cm", "unused", "y").await;
    let ignore =
        |v: Value| json!({"metadata": {"annotations": {"reloader.stakater.com/ignore": v}}});
    patch_cm(&ns, "app-cm", ignore(json!("true"))).await;
    patch_cm(&ns, "app-cm", ignore(Value::Null)).await;
    cm("late-cm").create(&ns).await;
    ns.api::<ConfigMap>()
        .delete("late-cm", &DeleteParams::default())
        .await
        .unwrap();
    set_cm(&home, "home-cm", "k", "v1").await;
    for (reason, what) in [
        ("not_consumed", "a key nobody consumes changed"),
        ("metadata_only", "ignore added and removed"),
        ("created", "late-cm created"),
        ("deleted", "late-cm deleted"),
        ("namespace", "home-cm changed in kreload's own namespace"),
    ] {
        rises(
            &mut f,
            what,
            &kreload,
            &m,
            ("kreload_changes_skipped_total", &[("reason", reason)]),
            Duration::from_secs(10),
        )
        .await;
    }
    tokio::time::sleep(STORM_GUARD).await;
    if let Err(e) = expect_unchanged(&ns, d, "web", &s2_base).await {
        f.push(format!("{e} (only skipped changes since)"));
    }

    // A refused roll: an error, one roll failing; then allowed: a success, none failing.
    let policy = deny_rolls_of(&ns, "web").await;
    let m = scrape(&kreload).await;
    set_cm(&ns, "app-cm", "k", "v5").await;
    rises(
        &mut f,
        "a refused roll",
        &kreload,
        &m,
        (
            "kreload_reloads_total",
            &[("kind", "Deployment"), ("result", "error")],
        ),
        ROLL_TIMEOUT,
    )
    .await;
    if let Err(e) = wait_metric(
        &kreload,
        "kreload_rolls_failing",
        &[],
        Duration::from_secs(5),
        |v| v == 1.0,
    )
    .await
    {
        f.push(format!("a refused roll: {e}"));
    }
    policy.remove(probe_roll(&ns, "web")).await;
    if let Err(e) = wait_metric(
        &kreload,
        "kreload_rolls_failing",
        &[],
        Duration::from_secs(60),
        |v| v == 0.0,
    )
    .await
    {
        f.push(format!("the roll allowed again: {e}"));
    }
    rises(
        &mut f,
        "the roll allowed again",
        &kreload,
        &m,
        (
            "kreload_reloads_total",
            &[("kind", "Deployment"), ("result", "success")],
        ),
        Duration::from_secs(10),
    )
    .await;

    // A Job whose create is refused waits in memory; created once allowed.
    let policy =
        DenyPolicy::create(&ns, "no-job-create", ("batch", "jobs"), "CREATE", "false").await;
    let probe_job = || {
        let jobs = jobs.clone();
        let mut job = job.clone();
        job.metadata.name = Some("probe".into());
        async move {
            let dry_run = PostParams {
                dry_run: true,
                ..Default::default()
            };
            jobs.create(&dry_run, &job).await
        }
    };
    policy.wait_enforced(true, probe_job).await;
    let m = scrape(&kreload).await;
    set_cm(&ns, "job-cm", "k", "v1").await;
    if let Err(e) = wait_metric(&kreload, "kreload_jobs_to_create", &[], ROLL_TIMEOUT, |v| {
        v == 1.0
    })
    .await
    {
        f.push(format!("a rolled Job's create refused: {e}"));
    }
    policy.remove(probe_job).await;
    if let Err(e) = wait_metric(
        &kreload,
        "kreload_jobs_to_create",
        &[],
        Duration::from_secs(60),
        |v| v == 0.0,
    )
    .await
    {
        f.push(format!("the Job's create allowed again: {e}"));
    }
    let recreated = jobs
        .get_opt("batch")
        .await
        .unwrap()
        .is_some_and(|j| j.uid() != job_before.uid());
    if !recreated {
        f.push("the rolled Job was not created again".into());
    }
    rises(
        &mut f,
        "a Job rolled",
        &kreload,
        &m,
        (
            "kreload_reloads_total",
            &[("kind", "Job"), ("result", "success")],
        ),
        Duration::from_secs(5),
    )
    .await;
    check(f, &[&kreload]);
}

// ---------------------------------------------------------------------------------------------
// A deposed leader

/// A validating webhook of the test's own that holds kreload's Deployment writes until
/// released, and records which Deployments were held and which were written after the release.
#[derive(Default)]
struct Holder {
    held: AtomicUsize,
    held_names: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Written after the release. The API server itself re-runs admission when it retries a
    /// held patch that conflicted with a concurrent write (e.g. a status update): a
    /// Deployment held before is such a retry, not a new write.
    after_release: std::sync::Mutex<Vec<String>>,
    probes: AtomicUsize,
    released: tokio::sync::Notify,
    open: std::sync::atomic::AtomicBool,
}

async fn hold(
    axum::extract::State(h): axum::extract::State<Arc<Holder>>,
    axum::Json(review): axum::Json<Value>,
) -> axum::Json<Value> {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let name = request["name"].as_str().unwrap_or_default().to_owned();
    // The probe writes as kreload does, but as a dry run.
    if request["dryRun"].as_bool() == Some(true) {
        h.probes.fetch_add(1, Ordering::SeqCst);
        return allow(uid);
    }
    if request["options"]["fieldManager"].as_str() == Some("kreload") {
        if h.open.load(Ordering::SeqCst) {
            h.after_release.lock().unwrap().push(name);
        } else {
            let released = h.released.notified();
            h.held_names.lock().unwrap().insert(name);
            h.held.fetch_add(1, Ordering::SeqCst);
            if !h.open.load(Ordering::SeqCst) {
                released.await;
            }
            h.held.fetch_sub(1, Ordering::SeqCst);
        }
    }
    allow(uid)
}

fn allow(uid: Value) -> axum::Json<Value> {
    axum::Json(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true}
    }))
}

/// The holding webhook's configuration, removed when dropped.
struct HoldWebhook(String);

impl Drop for HoldWebhook {
    fn drop(&mut self) {
        let name = self.0.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let _ = Api::<ValidatingWebhookConfiguration>::all(client().await)
                    .delete(&name, &DeleteParams::default())
                    .await;
            });
        })
        .join()
        .ok();
    }
}

/// Serves the holding webhook on 127.0.0.1 and registers it for UPDATEs of Deployments in
/// `ns`; returns the state and the guard of its configuration.
async fn holding_webhook(ns: &TestNamespace) -> (Arc<Holder>, HoldWebhook) {
    use base64::Engine;
    use kreload::admission::{server, tls};
    let certs = tls::GeneratedCerts::generate(&["127.0.0.1".into()], Duration::from_secs(3600))
        .expect("certificates");
    let resolver = tls::CertResolver::new(certs.certified_key().expect("key"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = Arc::new(Holder::default());
    let router = axum::Router::new()
        .route("/hold", axum::routing::post(hold))
        .with_state(holder.clone());
    let limits = server::Limits {
        request_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    tokio::spawn(server::serve_tls(
        listener,
        tls::server_config(resolver),
        router,
        limits,
        std::future::pending::<()>(),
    ));
    let name = format!("{}-hold", ns.name);
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "hold.e2e.kreload.dev",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}/hold"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem),
            },
            "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["deployments"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}},
            "failurePolicy": "Fail", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "timeoutSeconds": 30
        }]
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(ns.client())
        .create(&PostParams::default(), &config)
        .await
        .expect("register the holding webhook");
    (holder, HoldWebhook(name))
}

/// Takes the Lease over for someone else, with a fresh renewal and a long duration.
async fn steal(leases: &Api<Lease>, name: &str) {
    wait_for(
        "the Lease to be stolen",
        Duration::from_secs(20),
        || async {
            let mut lease = leases.get(name).await.ok()?;
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some("e2e-thief".into());
            spec.lease_duration_seconds = Some(3600);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            leases
                .replace(name, &PostParams::default(), &lease)
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

/// Issue 10, defect 9 (a roll batch checked leadership only when it ended): a leader deposed
/// in the middle of a batch starts no write once it no longer believes it leads. kreload's
/// roll writes are held by a webhook of the test's own (all write slots busy), the Lease is
/// taken over, and only after kreload logged "lost leadership" are the writes released: any
/// roll write arriving after that started after the loss.
#[tokio::test]
async fn a_deposed_leader_starts_no_write() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-rolls-deposed").await;
    let home = TestNamespace::new(&client, "e2e-rolls-deposed-home").await;
    cm("app-cm").create(&ns).await;
    let lease = "kreload-deposed";
    let identity = format!("{}-kreload", ns.name);
    let kreload = kreload_for(
        &[&ns],
        &[
            "--namespace",
            &home.name,
            "--enable-ha",
            "--lease-name",
            lease,
            "--lease-duration",
            "5s",
            "--identity",
            &identity,
        ],
    );
    const WORKLOADS: usize = 24;
    let names: Vec<String> = (0..WORKLOADS).map(|i| format!("w{i:02}")).collect();
    for name in &names {
        create(
            &ns,
            workload(
                Kind::Deployment,
                name,
                0,
                auto(),
                env_from(&["app-cm"], &[]),
            ),
        )
        .await;
    }
    let api: Api<Deployment> = ns.api();
    let mut before = Vec::new();
    for name in &names {
        let d = api.get(name).await.unwrap();
        before.push(template_stamp(&d).expect("stamped at CREATE"));
    }
    let (holder, _webhook) = holding_webhook(&ns).await;
    let mut probe = probe_roll(&ns, &names[0]);
    wait_for(
        "the holding webhook to be called",
        Duration::from_secs(30),
        || {
            let p = probe();
            let holder = holder.clone();
            async move {
                let _ = p.await;
                (holder.probes.load(Ordering::SeqCst) > 0).then_some(())
            }
        },
    )
    .await;
    let leases: Api<Lease> = home.api();
    wait_for("kreload to lead", Duration::from_secs(30), || async {
        let h = leases.get_opt(lease).await.ok()??.spec?.holder_identity?;
        (h == identity).then_some(())
    })
    .await;

    set_cm(&ns, "app-cm", "k", "v1").await;
    // Every write slot busy: the held count stops growing.
    let mut held = 0;
    let mut stable_since = tokio::time::Instant::now();
    let deadline = stable_since + ROLL_TIMEOUT;
    loop {
        let now = holder.held.load(Ordering::SeqCst);
        if now != held {
            held = now;
            stable_since = tokio::time::Instant::now();
        } else if held > 0 && stable_since.elapsed() >= Duration::from_secs(2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kreload's rolls never reached the holding webhook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    steal(&leases, lease).await;
    wait_for(
        "kreload to log that it lost leadership",
        Duration::from_secs(20),
        || async { kreload.log_text().contains("lost leadership").then_some(()) },
    )
    .await;
    holder.open.store(true, Ordering::SeqCst);
    holder.released.notify_waiters();
    // The writes held return; any write started after them would arrive within moments.
    wait_for(
        "the held writes to return",
        Duration::from_secs(20),
        || async { (holder.held.load(Ordering::SeqCst) == 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let held_names = holder.held_names.lock().unwrap().clone();
    let after = holder.after_release.lock().unwrap().clone();
    let started_after: Vec<&String> = after.iter().filter(|n| !held_names.contains(*n)).collect();
    let mut rolled = 0;
    for (name, b) in names.iter().zip(&before) {
        let d = api.get(name).await.unwrap();
        if template_stamp(&d).as_ref() != Some(b) {
            rolled += 1;
        }
    }
    eprintln!(
        "{held} roll writes held when the Lease was taken; {rolled} of {WORKLOADS} rolled; after the loss: {} write(s) to workloads not in flight, {} retried by the API server",
        started_after.len(),
        after.len() - started_after.len()
    );
    assert!(
        started_after.is_empty(),
        "roll writes to {started_after:?} started after kreload logged that it lost leadership (in flight were {held_names:?}); log: {}",
        kreload.log.display()
    );
    assert!(
        rolled <= held && rolled < WORKLOADS,
        "{rolled} rolled, {held} held"
    );
}
