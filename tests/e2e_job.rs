//! Jobs roll only when opted in explicitly (a reload annotation on the Job itself): the Job is
//! recreated with the new stamp, since its template is immutable. A roll never loses a Job: a
//! manual selector is kept, and a create that another admission policy refuses is retried until
//! it succeeds. Ordinary writes to Jobs (labels, deletes) are never refused and roll nothing.

mod common;

use std::time::Duration;

use common::observe::*;
use common::policy::DenyPolicy;
use common::workloads::*;
use common::*;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// A Job whose one container takes everything from ConfigMap `app`.
fn job(name: &str, annotations: Value) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "a", "image": IMAGE, "envFrom": [{"configMapRef": {"name": "app"}}]}]}}}
    }))
    .unwrap()
}

fn job_stamp(j: &Job) -> Option<String> {
    j.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(STAMP)
        .cloned()
}

/// Waits until kreload's index holds `n` workloads: a change made before the watcher saw a
/// workload cannot roll it.
async fn indexed(kreload: &Kreload, n: usize) {
    wait_metric(
        kreload,
        "kreload_index_workloads",
        &[],
        Duration::from_secs(20),
        |v| v == n as f64,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the Job `name` exists with another uid than `old`; `None` after `timeout`.
async fn recreated(jobs: &Api<Job>, name: &str, old: &Job, timeout: Duration) -> Option<Job> {
    try_wait_for(timeout, || async {
        jobs.get_opt(name)
            .await
            .ok()
            .flatten()
            .filter(|j| j.uid() != old.uid())
    })
    .await
}

/// Issue 10, defect 1 and item 10 ("the Job test never updates or deletes the Job"): an opted-in
/// Job is recreated on a change; a Job without annotations is not (even under
/// --auto-reload-all); labelling either afterwards is allowed and rolls nothing; a foreground
/// delete (the garbage collector then removes its finalizer, an UPDATE) completes.
#[tokio::test]
async fn opted_in_jobs_are_recreated_and_others_left_alone() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-job").await;
    cm("app").create(&ns).await;
    let kreload = kreload_for(&[&ns], &["--auto-reload-all"]);
    let jobs: Api<Job> = ns.api();
    let opted = jobs
        .create(
            &PostParams::default(),
            &job("opted", json!({"reloader.stakater.com/auto": "true"})),
        )
        .await
        .unwrap();
    let plain = jobs
        .create(&PostParams::default(), &job("plain", json!({})))
        .await
        .unwrap();
    let first = job_stamp(&opted).expect("opted-in Job stamped at creation");
    indexed(&kreload, 1).await;

    set_cm(&ns, "app", "k", "2").await;
    let Some(again) = recreated(&jobs, "opted", &opted, ROLL_TIMEOUT).await else {
        panic!(
            "the opted-in Job was not recreated within {ROLL_TIMEOUT:?}; log: {}",
            kreload.log.display()
        );
    };
    let mut failures = Vec::new();
    let second = job_stamp(&again).unwrap_or_default();
    if second == first || !second.starts_with("v2.") {
        failures.push(format!(
            "recreated Job stamped {first} -> {second:?}; want a new v2 stamp"
        ));
    }
    // Not rolled: no explicit opt-in (--auto-reload-all does not reach Jobs).
    tokio::time::sleep(SETTLE).await;
    assert_eq!(jobs.get("plain").await.unwrap().uid(), plain.uid());

    // Ordinary writes: a label on each Job (the plain one's config changed since it was
    // created) is accepted and recreates nothing.
    for (name, uid) in [("opted", again.uid()), ("plain", plain.uid())] {
        let label = json!({"metadata": {"labels": {"e2e-touched": "yes"}}});
        if let Err(e) = jobs
            .patch(name, &PatchParams::default(), &Patch::Merge(&label))
            .await
        {
            failures.push(format!("labelling Job {name} was refused: {}", short(&e)));
        }
        tokio::time::sleep(SETTLE).await;
        let now = jobs.get(name).await.unwrap();
        if now.uid() != uid {
            failures.push(format!("labelling Job {name} recreated it"));
        }
    }
    // Foreground deletes: the garbage collector removes the `foregroundDeletion` finalizer
    // once the pods are gone; kreload must not refuse that UPDATE.
    for name in ["opted", "plain"] {
        if let Err(e) = jobs.delete(name, &DeleteParams::foreground()).await {
            failures.push(format!("deleting Job {name} was refused: {}", short(&e)));
        }
    }
    for name in ["opted", "plain"] {
        let gone = try_wait_for(Duration::from_secs(60), || async {
            jobs.get_opt(name)
                .await
                .ok()
                .and_then(|j| j.is_none().then_some(()))
        })
        .await;
        if gone.is_none() {
            let j = jobs.get_opt(name).await.ok().flatten();
            failures.push(format!(
                "Job {name} still there 60 s after a foreground delete (finalizers {:?}, deleting since {:?})",
                j.as_ref().map(|j| j.finalizers().to_vec()),
                j.and_then(|j| j.metadata.deletion_timestamp)
            ));
        }
    }
    check(failures, &[&kreload]);
}

/// Issue 10, defect 2: a roll never loses a Job with `manualSelector: true`; it is recreated
/// with its own selector and labels (today the selector is stripped, the create is refused and
/// the Job is gone).
#[tokio::test]
async fn a_manual_selector_job_is_recreated_with_its_selector() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-job-manual").await;
    cm("app").create(&ns).await;
    let kreload = kreload_for(&[&ns], &[]);
    let jobs: Api<Job> = ns.api();
    let mut manifest = job("manual", json!({"reloader.stakater.com/auto": "true"}));
    let labels = json!({"e2e-job": "manual"});
    let spec = manifest.spec.as_mut().unwrap();
    spec.manual_selector = Some(true);
    spec.selector = Some(serde_json::from_value(json!({"matchLabels": labels})).unwrap());
    spec.template.metadata = Some(serde_json::from_value(json!({"labels": labels})).unwrap());
    let before = jobs
        .create(&PostParams::default(), &manifest)
        .await
        .unwrap();
    let first = job_stamp(&before).expect("stamped at creation");
    indexed(&kreload, 1).await;

    set_cm(&ns, "app", "k", "2").await;
    let Some(after) = recreated(&jobs, "manual", &before, ROLL_TIMEOUT).await else {
        let now = jobs.get_opt("manual").await.ok().flatten();
        panic!(
            "the manualSelector Job was not recreated within {ROLL_TIMEOUT:?} (it is {}); log: {}",
            if now.is_some() {
                "still the old one"
            } else {
                "gone"
            },
            kreload.log.display()
        );
    };
    let spec = after.spec.as_ref().unwrap();
    assert_eq!(spec.manual_selector, Some(true));
    assert_eq!(
        serde_json::to_value(&spec.selector).unwrap(),
        json!({"matchLabels": labels}),
        "the recreated Job keeps its own selector"
    );
    assert_eq!(
        serde_json::to_value(&spec.template.metadata.as_ref().unwrap().labels).unwrap(),
        labels,
        "and its template labels"
    );
    let second = job_stamp(&after).expect("recreated with a stamp");
    assert!(
        second != first && second.starts_with("v2."),
        "stamp {first} -> {second}; want a new v2 stamp"
    );
}

/// Issue 10, defect 2: when another admission policy refuses the Job's create, the Job is
/// kept in memory (`kreload_jobs_to_create` is 1) and created once the policy is gone (today
/// it is lost for good).
#[tokio::test]
async fn a_job_whose_create_is_refused_comes_back_once_allowed() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-job-refused").await;
    cm("app").create(&ns).await;
    let kreload = kreload_for(&[&ns], &[]);
    let jobs: Api<Job> = ns.api();
    let before = jobs
        .create(
            &PostParams::default(),
            &job("opted", json!({"reloader.stakater.com/auto": "true"})),
        )
        .await
        .unwrap();
    let first = job_stamp(&before).expect("stamped at creation");
    indexed(&kreload, 1).await;

    let policy =
        DenyPolicy::create(&ns, "no-job-create", ("batch", "jobs"), "CREATE", "false").await;
    let probe = || {
        let jobs = jobs.clone();
        async move {
            let dry_run = PostParams {
                dry_run: true,
                ..Default::default()
            };
            jobs.create(&dry_run, &job("probe", json!({}))).await
        }
    };
    policy.wait_enforced(true, probe).await;

    set_cm(&ns, "app", "k", "2").await;
    let mut failures = Vec::new();
    // Deleted by the roll, its create refused.
    let deleted = try_wait_for(ROLL_TIMEOUT, || async {
        (jobs.get_opt("opted").await.ok()?.is_none()).then_some(())
    })
    .await;
    if deleted.is_none() {
        failures.push(format!(
            "the roll did not delete the Job within {ROLL_TIMEOUT:?}"
        ));
    }
    if let Err(e) = wait_metric(
        &kreload,
        "kreload_jobs_to_create",
        &[],
        Duration::from_secs(20),
        |v| v == 1.0,
    )
    .await
    {
        failures.push(format!("while its create is refused: {e}"));
    }

    policy.remove(probe).await;
    match recreated(&jobs, "opted", &before, Duration::from_secs(90)).await {
        None => failures.push(
            "the Job was not created again within 90 s of the policy's removal: lost".to_owned(),
        ),
        Some(after) => {
            let second = job_stamp(&after).unwrap_or_default();
            if second == first || !second.starts_with("v2.") {
                failures.push(format!(
                    "the Job came back stamped {second:?}; want a new v2 stamp (was {first})"
                ));
            }
            if let Err(e) = wait_metric(
                &kreload,
                "kreload_jobs_to_create",
                &[],
                Duration::from_secs(10),
                |v| v == 0.0,
            )
            .await
            {
                failures.push(format!("after the create succeeded: {e}"));
            }
        }
    }
    check(failures, &[&kreload]);
}
