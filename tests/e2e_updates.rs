//! Issue 10, "do no harm" at admission: ordinary writes to workloads never roll them, are never
//! refused for annotations they already carried, never leave them stuck; Jobs are never patched at
//! UPDATE; a pending Rollout restart survives an unrelated update; stamps are bound to their
//! namespace and an older recipe's stamps roll nothing; pods of CronJob Jobs and of Argo Rollouts
//! carry their owner's stamp.
//!
//! As in the watcher tests, a roll is a new template stamp plus a new revision whose pods are
//! Ready carrying it; "no roll" is the same stamp and revision count after waiting past the
//! coalescing window and the storm guard. Each test runs its own kreload, scoped to its own
//! namespaces (`kreload_for`).

mod common;

use std::time::Duration;

use common::workloads::*;
use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// Runs the harness kubectl in the test's namespace: stdout, or stderr when it fails.
fn kubectl_in(ns: &TestNamespace, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut all = vec!["-n", ns.name.as_str()];
    all.extend_from_slice(args);
    match kubectl(&all, stdin) {
        (true, out, _) => Ok(out),
        (false, _, err) => Err(err.trim().to_owned()),
    }
}

/// Runs a kubectl write that must be allowed; a refusal becomes a failure line.
fn allowed(ns: &TestNamespace, what: &str, args: &[&str], stdin: Option<&str>) -> Option<String> {
    kubectl_in(ns, args, stdin)
        .err()
        .map(|e| format!("[{}] {what} was refused: {e}", ns.name))
}

/// Waits (bounded) until the object is gone; on timeout, says what still holds it.
async fn expect_gone<K>(api: &Api<K>, what: &str, within: Duration) -> Result<(), String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let gone = try_wait_for(within, || async {
        matches!(api.get_opt(what).await, Ok(None)).then_some(())
    })
    .await;
    match gone {
        Some(()) => Ok(()),
        None => {
            let left = api.get_opt(what).await.ok().flatten();
            let state = left.map(|o| {
                let m = o.meta();
                format!(
                    "deletionTimestamp {:?}, finalizers {:?}",
                    m.deletion_timestamp.as_ref().map(|t| t.0.to_string()),
                    m.finalizers
                )
            });
            Err(format!(
                "{what} is still there {within:?} after its delete ({state:?})"
            ))
        }
    }
}

/// The object stamp the webhook gives a server-side dry-run copy of this Rollout (restart
/// strategy: the stamp is on the object): the current hash in kreload's store.
async fn rollout_object_probe(ns: &TestNamespace, name: &str) -> Option<String> {
    let live = get_json(ns, Kind::Rollout, name).await?;
    let mut annotations = live.pointer("/metadata/annotations")?.clone();
    annotations.as_object_mut()?.remove(STAMP);
    let copy: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": format!("{name}-probe"), "annotations": annotations},
        "spec": live["spec"].clone()
    }))
    .ok()?;
    let out = dyn_api(ns, Kind::Rollout)
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &copy,
        )
        .await
        .ok()?;
    out.annotations().get(STAMP).cloned()
}

fn object_stamp(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/annotations")?
        .get(STAMP)?
        .as_str()
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Issue 10 rule 1 / defect 8: label, annotate, opt-in, scale, apply, server-side apply and replace never roll; `rollout restart` rolls once.
#[tokio::test]
async fn ordinary_writes_never_roll() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-u-writes").await;
    cm("app-cm").create(&ns).await;
    let auto = json!({"reloader.stakater.com/auto": "true"});
    let manifest = |name: &str, annotations: &Value| {
        deploy(name, annotations.clone(), env_from(&["app-cm"], &[]))
    };
    let original = [
        ("auto", manifest("auto", &auto)),
        ("plain", manifest("plain", &json!({}))),
        ("stamped", manifest("stamped", &auto)),
    ];
    let apply = |m: &Value| kubectl_in(&ns, &["apply", "-f", "-"], Some(&m.to_string()));
    // Created while no kreload runs: no stamp.
    for (_, m) in &original[..2] {
        apply(m).expect("kubectl apply");
    }
    let kreload = kreload_for(&[&ns], &[]);
    // Created with kreload running: stamped at CREATE.
    apply(&original[2].1).expect("kubectl apply");
    let d = Kind::Deployment;
    let cases = [
        keeps(d, "auto", "opted in, unstamped (created before kreload)"),
        keeps(
            d,
            "plain",
            "not opted in, then opted in by kubectl annotate",
        ),
        keeps(d, "stamped", "opted in, stamped at CREATE"),
    ];
    let bases = baselines(&ns, &cases).await;
    assert_eq!(bases[0].stamp, None, "created before kreload: unstamped");
    assert_eq!(bases[1].stamp, None, "not opted in: unstamped");
    let stamp = bases[2]
        .stamp
        .clone()
        .expect("the webhook stamps an opted-in Deployment at CREATE");

    let mut failures = Vec::new();
    for (name, m) in &original {
        let target = format!("deployment/{name}");
        let text = m.to_string();
        let opt_in = "reloader.stakater.com/auto=true";
        let note = if *name == "plain" {
            opt_in
        } else {
            "e2e-note=hello"
        };
        let writes: [(&str, Vec<&str>, Option<&str>); 5] = [
            (
                "kubectl label",
                vec!["label", &target, "e2e-touched=yes"],
                None,
            ),
            ("kubectl annotate", vec!["annotate", &target, note], None),
            (
                "kubectl scale",
                vec!["scale", &target, "--replicas=2"],
                None,
            ),
            ("kubectl apply", vec!["apply", "-f", "-"], Some(&text)),
            (
                "server-side apply (flux)",
                vec![
                    "apply",
                    "--server-side",
                    "--field-manager=flux",
                    "--force-conflicts",
                    "-f",
                    "-",
                ],
                Some(&text),
            ),
        ];
        for (what, args, stdin) in writes {
            failures.extend(allowed(&ns, &format!("{what} of {name}"), &args, stdin));
        }
    }
    // The stamped one: server-side apply with its stamp, then a replace and a server-side apply
    // of the manifest without it (a GitOps tool that does not know the stamp).
    let with_stamp =
        with_template_annotations(original[2].1.clone(), d, json!({ STAMP: stamp.clone() }))
            .to_string();
    let without_stamp = original[2].1.to_string();
    let ssa = [
        "apply",
        "--server-side",
        "--field-manager=flux",
        "--force-conflicts",
        "-f",
        "-",
    ];
    failures.extend(allowed(
        &ns,
        "server-side apply with the stamp",
        &ssa,
        Some(&with_stamp),
    ));
    failures.extend(allowed(
        &ns,
        "kubectl replace without the stamp",
        &["replace", "-f", "-"],
        Some(&without_stamp),
    ));
    failures.extend(allowed(
        &ns,
        "server-side apply without the stamp",
        &ssa,
        Some(&without_stamp),
    ));
    // Past the coalescing window and the storm guard: nothing rolled, the stamp is where it was.
    tokio::time::sleep(STORM_GUARD).await;
    for (c, b) in cases.iter().zip(&bases) {
        if let Err(e) = expect_unchanged(&ns, c.kind, c.name, b).await {
            failures.push(format!("[{}] {e} ({})", ns.name, c.why));
        }
    }

    // A restart is a template change: it rolls once, and the stamp it leaves is the current hash.
    failures.extend(allowed(
        &ns,
        "kubectl rollout restart",
        &["rollout", "restart", "deployment/auto"],
        None,
    ));
    let before = bases[0].clone();
    match expect_roll(&ns, d, "auto", &before).await {
        Err(e) => failures.push(format!("{e} (kubectl rollout restart)")),
        Ok(rolled) => {
            let fresh = fresh_stamp(&ns, "auto").await;
            if fresh.as_ref() != Some(&rolled) {
                failures.push(format!(
                    "Deployment auto: after rollout restart the template stamp is {rolled}, not the current hash {fresh:?}"
                ));
            }
            tokio::time::sleep(STORM_GUARD).await;
            let after = Base {
                stamp: Some(rolled),
                revisions: before.revisions + 1,
            };
            if let Err(e) = expect_unchanged(&ns, d, "auto", &after).await {
                failures.push(format!("rollout restart rolled more than once: {e}"));
            }
        }
    }
    check(failures, &[&kreload]);
}

/// Issue 10 rule 2 / defect 6: a Reloader-era object kreload would refuse can be labelled, scaled, patched, rolled by kreload and deleted; setting a bad annotation is denied.
#[tokio::test]
async fn reloader_era_objects_stay_writable() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-u-era").await;
    cm("era-cm").create(&ns).await;
    // `auto` with `search`: kreload denies creating this, but it was created before kreload.
    let era = json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/search": "true"});
    create(&ns, deploy("era", era, env_from(&["era-cm"], &[]))).await;
    let kreload = kreload_for(&[&ns], &[]);
    let d = Kind::Deployment;
    let cases = [rolls(
        d,
        "era",
        "kreload's own roll of a workload with auto + search",
    )];
    let bases = baselines(&ns, &cases).await;

    let mut failures = Vec::new();
    let patch = r#"{"spec":{"revisionHistoryLimit":5}}"#;
    let writes: [(&str, &[&str]); 4] = [
        (
            "kubectl label",
            &["label", "deployment/era", "e2e-touched=yes"],
        ),
        (
            "kubectl scale",
            &["scale", "deployment/era", "--replicas=2"],
        ),
        (
            "kubectl patch",
            &["patch", "deployment/era", "--type=merge", "-p", patch],
        ),
        (
            "kubectl scale",
            &["scale", "deployment/era", "--replicas=1"],
        ),
    ];
    for (what, args) in writes {
        failures.extend(allowed(
            &ns,
            &format!("{what} of a Reloader-era Deployment"),
            args,
            None,
        ));
    }
    // A write that sets a bad annotation is still denied, with a message naming it.
    let bad = "deployment.reloader.stakater.com/pause-period=soon";
    match kubectl_in(&ns, &["annotate", "deployment/era", bad], None) {
        Ok(_) => failures.push(format!("kubectl annotate {bad} was allowed")),
        Err(e) if !(e.contains("denied") && e.contains("pause-period")) => failures.push(format!(
            "kubectl annotate {bad} failed without a denial naming pause-period: {e}"
        )),
        Err(_) => {}
    }
    // kreload's own roll of it goes through (exactly once).
    set_cm(&ns, "era-cm", "k", "v1").await;
    failures.extend(verify(&ns, &cases, &bases).await);
    // And it can be deleted, also in the foreground (the garbage collector's finalizer removal
    // is an UPDATE of an object carrying the refused annotations).
    failures.extend(allowed(
        &ns,
        "kubectl delete --cascade=foreground",
        &[
            "delete",
            "deployment/era",
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    ));
    let api: Api<Deployment> = ns.api();
    if let Err(e) = expect_gone(&api, "era", Duration::from_secs(60)).await {
        failures.push(format!("[{}] Deployment {e}", ns.name));
    }
    check(failures, &[&kreload]);
}

fn job(name: &str, annotations: Value, config: &str, spec: Value) -> Job {
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "app", "image": IMAGE,
                "envFrom": [{"configMapRef": {"name": config}}]}]}}}
    });
    for (k, v) in spec.as_object().into_iter().flatten() {
        job["spec"][k] = v.clone();
    }
    serde_json::from_value(job).expect("valid Job")
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

/// Issue 10 defect 1: under --auto-reload-all, a foreground-deleted Job goes, a TTL-0 Job is cleaned up after it completes, an unstamped opted-in Job can be labelled.
#[tokio::test]
async fn jobs_are_never_patched_at_update() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-u-jobs").await;
    cm("job-cm").create(&ns).await;
    cm("ttl-cm").create(&ns).await;
    let jobs: Api<Job> = ns.api();
    let pp = PostParams::default();
    // Created while no kreload runs: no stamp.
    for (name, annotations) in [
        ("early", json!({})),
        ("opted", json!({"reloader.stakater.com/auto": "true"})),
    ] {
        jobs.create(&pp, &job(name, annotations, "job-cm", json!({})))
            .await
            .unwrap_or_else(|e| panic!("create Job {name}: {e}"));
    }
    let kreload = kreload_for(&[&ns], &["--auto-reload-all"]);
    let mut failures = Vec::new();

    // An opted-in Job without a stamp can be labelled (the webhook must not patch its template).
    failures.extend(allowed(
        &ns,
        "kubectl label of an unstamped opted-in Job",
        &["label", "job/opted", "e2e-touched=yes"],
        None,
    ));
    let opted = jobs.get("opted").await.expect("Job opted");
    if let Some(s) = job_stamp(&opted) {
        failures.push(format!("Job opted: labelling stamped its template ({s})"));
    }

    // A foreground delete: the garbage collector removes its finalizer with an UPDATE.
    failures.extend(allowed(
        &ns,
        "kubectl delete --cascade=foreground of a Job",
        &[
            "delete",
            "job/early",
            "--cascade=foreground",
            "--wait=false",
        ],
        None,
    ));
    if let Err(e) = expect_gone(&jobs, "early", Duration::from_secs(60)).await {
        failures.push(format!("[{}] Job {e}", ns.name));
    }

    // TTL-after-finished deletes in the foreground too. The config changes while the Job runs
    // (three pods one after another), so a stamp taken at its CREATE would be stale by then.
    let ttl = json!({"ttlSecondsAfterFinished": 0, "completions": 3, "parallelism": 1});
    jobs.create(&pp, &job("ttl", json!({}), "ttl-cm", ttl))
        .await
        .expect("create Job ttl");
    set_cm(&ns, "ttl-cm", "k", "v1").await;
    let completed = std::cell::Cell::new(false);
    let gone = try_wait_for(Duration::from_secs(90), || async {
        match jobs.get_opt("ttl").await {
            Ok(None) => Some(()),
            Ok(Some(j)) => {
                let done = j
                    .status
                    .and_then(|s| s.conditions)
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Complete" && c.status == "True");
                completed.set(completed.get() || done);
                None
            }
            Err(_) => None,
        }
    })
    .await;
    let completed = completed.get();
    if gone.is_none() {
        let left = jobs.get_opt("ttl").await.ok().flatten();
        failures.push(format!(
            "[{}] Job ttl (ttlSecondsAfterFinished: 0) still there 90s after creation; completed: {completed}; deletionTimestamp {:?}, finalizers {:?}",
            ns.name,
            left.as_ref()
                .and_then(|j| j.metadata.deletion_timestamp.as_ref())
                .map(|t| t.0.to_string()),
            left.as_ref().map(|j| j.finalizers().to_vec()),
        ));
    }
    check(failures, &[&kreload]);
}

/// Issue 10 defect 5: a label on an Argo Rollout (rollout-strategy: restart) while its roll is pending does not swallow the restart.
#[tokio::test]
async fn rollout_restart_survives_an_update_within_the_window() {
    let client = client().await;
    // kreload discovers the CRD when it starts.
    ensure_rollout_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-u-restart").await;
    cm("ro-cm").create(&ns).await;
    let kreload = kreload_for(&[&ns], &["--coalesce-window", "5s"]);
    let annotations = json!({"reloader.stakater.com/auto": "true",
        "reloader.stakater.com/rollout-strategy": "restart"});
    create(
        &ns,
        workload(
            Kind::Rollout,
            "ro",
            1,
            annotations,
            env_from(&["ro-cm"], &[]),
        ),
    )
    .await;
    let live = get_json(&ns, Kind::Rollout, "ro")
        .await
        .expect("Rollout ro");
    let before = object_stamp(&live).expect("the webhook stamps the Rollout object at CREATE");
    assert_eq!(live.pointer("/spec/restartAt"), None, "a new Rollout");

    set_cm(&ns, "ro-cm", "k", "v1").await;
    let changed = tokio::time::Instant::now();
    // Once kreload has seen the change (a fresh copy is stamped differently), and well inside
    // the 5 s window, an unrelated update arrives.
    let current = wait_for(
        "kreload's store to see the ConfigMap change",
        Duration::from_secs(10),
        || async {
            rollout_object_probe(&ns, "ro")
                .await
                .filter(|s| *s != before)
        },
    )
    .await;
    dyn_api(&ns, Kind::Rollout)
        .patch(
            "ro",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e-touched": "yes"}}})),
        )
        .await
        .expect("label the Rollout");
    eprintln!(
        "labelled {:?} after the ConfigMap change",
        changed.elapsed()
    );

    let restarted = try_wait_for(ROLL_TIMEOUT, || async {
        let o = get_json(&ns, Kind::Rollout, "ro").await?;
        let at = o.pointer("/spec/restartAt").filter(|v| !v.is_null())?;
        (object_stamp(&o).as_ref() == Some(&current)).then(|| at.clone())
    })
    .await;
    let mut failures = Vec::new();
    if restarted.is_none() {
        let o = get_json(&ns, Kind::Rollout, "ro").await.unwrap_or_default();
        failures.push(format!(
            "[{}] Rollout ro: no restart within {ROLL_TIMEOUT:?} of the change: spec.restartAt {:?}, object stamp {:?} (before {before}, current {current})",
            ns.name,
            o.pointer("/spec/restartAt"),
            object_stamp(&o)
        ));
    }
    check(failures, &[&kreload]);
}

/// Issue 10 rule 4: equal Secrets in two namespaces give different pod stamps; v1-stamped workloads do not roll when kreload starts, then roll once with a v2 stamp.
#[tokio::test]
async fn stamps_are_namespace_bound_and_v1_stamps_roll_nothing() {
    let client = client().await;
    let a = TestNamespace::new(&client, "e2e-u-ns-a").await;
    let b = TestNamespace::new(&client, "e2e-u-ns-b").await;
    for ns in [&a, &b] {
        secret("db")
            .data(json!({"password": "hunter2"}))
            .create(ns)
            .await;
    }
    let first = kreload_for(&[&a, &b], &[]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "app", "image": IMAGE,
            "envFrom": [{"secretRef": {"name": "db"}}]}]}
    }))
    .unwrap();
    let mut stamps = Vec::new();
    for ns in [&a, &b] {
        let created = ns
            .api::<Pod>()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        stamps.push(created.annotations().get(STAMP).cloned());
    }
    let mut failures = Vec::new();
    match (&stamps[0], &stamps[1]) {
        (Some(sa), Some(sb)) if sa != sb => {}
        (Some(_), Some(_)) => failures.push(format!(
            "pods in {} and {} consuming equal Secrets carry equal stamps {:?}: the stamp tells whether two namespaces' Secret values are equal",
            a.name, b.name, stamps[0]
        )),
        _ => failures.push(format!("pods were not stamped at CREATE: {stamps:?}")),
    }
    first.terminate();

    // Workloads stamped by the previous recipe with the current key, written while no kreload
    // runs (so no webhook is registered for the namespace).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kreload");
    let key = secrets
        .get("kreload-hash-key")
        .await
        .expect("kreload's hash key Secret (created by the kreload above)");
    let key = key.data.unwrap_or_default()["key"].0.clone();
    let key_id = kreload::domain::stamp::HashKey::new(key)
        .expect("a usable hash key")
        .id()
        .to_owned();
    let v1 = format!("v1.{key_id}.{}", "5e".repeat(32));
    let auto = json!({"reloader.stakater.com/auto": "true"});
    for kind in [Kind::Deployment, Kind::StatefulSet] {
        let name = if kind == Kind::Deployment {
            "web"
        } else {
            "db"
        };
        let w = workload(kind, name, 1, auto.clone(), env_from(&[], &["db"]));
        create(&a, with_template_annotations(w, kind, json!({ STAMP: v1 }))).await;
    }
    let cases = [
        rolls(Kind::Deployment, "web", "v1 stamp, then a Secret change"),
        rolls(Kind::StatefulSet, "db", "v1 stamp, then a Secret change"),
    ];
    let bases = baselines(&a, &cases).await;
    for (c, base) in cases.iter().zip(&bases) {
        assert_eq!(base.stamp.as_ref(), Some(&v1), "{:?} {}", c.kind, c.name);
    }

    // The new recipe starts: a v1 stamp is an unknown baseline, so nothing rolls.
    let second = kreload_for(&[&a, &b], &[]);
    tokio::time::sleep(STORM_GUARD).await;
    for (c, base) in cases.iter().zip(&bases) {
        if let Err(e) = expect_unchanged(&a, c.kind, c.name, base).await {
            failures.push(format!(
                "[{}] {e} (starting kreload over a v1 stamp)",
                a.name
            ));
        }
    }
    // The next real change rolls each once, with a v2 stamp.
    set_secret(&a, "db", "password", "hunter3").await;
    failures.extend(verify(&a, &cases, &bases).await);
    check(failures, &[&first, &second]);
}

/// Issue 10 defect 9 (owners): pods of a CronJob's Job and of an Argo Rollout's ReplicaSet carry their owner's trigger-set stamp.
#[tokio::test]
async fn pods_of_cronjob_jobs_and_rollouts_carry_their_owners_stamp() {
    let client = client().await;
    ensure_rollout_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-u-owners").await;
    cm("cj-cm").create(&ns).await;
    secret("cj-secret").create(&ns).await;
    cm("ro-cm").create(&ns).await;
    secret("ro-secret").create(&ns).await;
    let kreload = kreload_for(&[&ns], &[]);
    let mut failures = Vec::new();

    // A CronJob reloading on Secrets only, whose pods consume a ConfigMap too: its trigger set
    // is smaller than what its pods consume.
    create(
        &ns,
        workload(
            Kind::CronJob,
            "nightly",
            1,
            json!({"secret.reloader.stakater.com/auto": "true"}),
            env_from(&["cj-cm"], &["cj-secret"]),
        ),
    )
    .await;
    let cron = get_json(&ns, Kind::CronJob, "nightly").await.unwrap();
    let cron_stamp = stamp_in(&cron, Kind::CronJob).expect("CronJob stamped at CREATE");
    let mut template = cron
        .pointer("/spec/jobTemplate/spec/template")
        .unwrap()
        .clone();
    let pod_spec = template["spec"].clone();
    // What the CronJob controller would create, minus the copied stamp: the pod's stamp can only
    // come from the webhook.
    if let Some(a) = template["metadata"]["annotations"].as_object_mut() {
        a.remove(STAMP);
    }
    let job_name = "nightly-29430720";
    let run: Job = serde_json::from_value(json!({
        "metadata": {"name": job_name, "ownerReferences": [{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
            "uid": cron["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"backoffLimit": 0, "template": template}
    }))
    .unwrap();
    ns.api::<Job>()
        .create(&PostParams::default(), &run)
        .await
        .expect("create the CronJob's Job");
    let pod = first_pod(&ns, &format!("job-name={job_name}")).await;
    let consumed = bare_pod_stamp(&ns, &pod_spec).await;
    if consumed.as_ref() == Some(&cron_stamp) {
        failures.push(
            "test setup: the CronJob's stamp equals its consumed set's; the check below proves nothing"
                .into(),
        );
    }
    let got = pod.annotations().get(STAMP).cloned();
    if got.as_ref() != Some(&cron_stamp) {
        failures.push(format!(
            "pod {} of CronJob nightly's Job {job_name}: stamp {got:?}, want the CronJob's {cron_stamp} (the stamp of everything it consumes is {consumed:?})",
            pod.name_any()
        ));
    }

    // An Argo Rollout reloading on ConfigMaps only, and a ReplicaSet of it as Argo would make.
    create(
        &ns,
        workload(
            Kind::Rollout,
            "ro",
            1,
            json!({"configmap.reloader.stakater.com/auto": "true"}),
            env_from(&["ro-cm"], &["ro-secret"]),
        ),
    )
    .await;
    let rollout = get_json(&ns, Kind::Rollout, "ro").await.unwrap();
    let rollout_stamp = stamp_in(&rollout, Kind::Rollout).expect("Rollout stamped at CREATE");
    let hash = "6f7d9c5b4";
    let labels = json!({"app": "ro", "rollouts-pod-template-hash": hash});
    let mut template = rollout["spec"]["template"].clone();
    let pod_spec = template["spec"].clone();
    template["metadata"] = json!({"labels": labels});
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": format!("ro-{hash}"), "labels": labels, "ownerReferences": [{
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "ro",
            "uid": rollout["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}
    }))
    .unwrap();
    ns.api::<ReplicaSet>()
        .create(&PostParams::default(), &rs)
        .await
        .expect("create the Rollout's ReplicaSet");
    let pod = first_pod(&ns, &format!("rollouts-pod-template-hash={hash}")).await;
    let consumed = bare_pod_stamp(&ns, &pod_spec).await;
    if consumed.as_ref() == Some(&rollout_stamp) {
        failures.push(
            "test setup: the Rollout's stamp equals its consumed set's; the check below proves nothing"
                .into(),
        );
    }
    let got = pod.annotations().get(STAMP).cloned();
    if got.as_ref() != Some(&rollout_stamp) {
        failures.push(format!(
            "pod {} of Rollout ro's ReplicaSet: stamp {got:?}, want the Rollout's {rollout_stamp} (the stamp of everything it consumes is {consumed:?})",
            pod.name_any()
        ));
    }
    check(failures, &[&kreload]);
}

/// Issue 10 ("no roll is lost"): a config changed right after its workload was created, maybe
/// before the watcher indexed the workload (no change event can find it then), still rolls the
/// workload, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_right_after_a_workload_is_created_still_rolls_it() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-u-early").await;
    let kreload = kreload_for(&[&ns], &["--min-roll-interval", "0s"]);
    let names: Vec<String> = (0..6).map(|i| format!("early-{i}")).collect();
    for name in &names {
        cm(name).create(&ns).await;
    }
    let mut cases = Vec::new();
    let mut bases = Vec::new();
    for name in &names {
        let name: &'static str = Box::leak(name.clone().into_boxed_str());
        create(
            &ns,
            deploy(
                name,
                json!({"reloader.stakater.com/auto": "true"}),
                env_from(&[name], &[]),
            ),
        )
        .await;
        // At once: the watcher may not have the Deployment yet.
        set_cm(&ns, name, "k", "v1").await;
        cases.push(rolls(
            Kind::Deployment,
            name,
            "its ConfigMap changed right after it was created",
        ));
    }
    for c in &cases {
        wait_for(
            &format!("{} to roll out", c.name),
            Duration::from_secs(90),
            || async { settled(&ns, c.kind, c.name).await.then_some(()) },
        )
        .await;
    }
    // The baseline is the stamp the webhook gave at creation, before the change.
    for c in &cases {
        let created = ns
            .api::<ReplicaSet>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.name == c.name)
            })
            .min_by_key(|rs| rs.metadata.creation_timestamp.clone().map(|t| t.0))
            .and_then(|rs| {
                rs.spec?
                    .template?
                    .metadata?
                    .annotations?
                    .get(STAMP)
                    .cloned()
            });
        bases.push(Base {
            stamp: created,
            revisions: 1,
        });
    }
    check(verify(&ns, &cases, &bases).await, &[&kreload]);
}
