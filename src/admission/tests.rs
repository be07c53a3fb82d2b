use super::review::{Preparsed, parse, parse_for_mutate};
use super::*;
use crate::domain::annotations::CONFIG_HASH;
use crate::domain::config::{ConfigId, ConfigKind, ValueDigest};
use crate::domain::entry::ConfigEntry;
use crate::domain::policy::{self, Annotations, ConfigPolicy};
use crate::domain::refs::Consumption;
use crate::domain::stamp::HashKey;
use crate::domain::trigger::{Filters, encode_consumed_set, encode_trigger_set};
use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

fn admission() -> Admission {
    let store = Arc::new(DigestStore::new());
    let keys = [("app.conf", "v1"), ("unused", "x")];
    let entry = ConfigEntry {
        keys: keys
            .iter()
            .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
            .collect(),
        ..Default::default()
    };
    store.upsert(
        "ns",
        ConfigId::new(ConfigKind::ConfigMap, "app"),
        Arc::new(entry),
    );
    store.mark_synced(ConfigKind::ConfigMap);
    store.mark_synced(ConfigKind::Secret);
    admission_with(store, Filters::default())
}

fn admission_with(store: Arc<DigestStore>, filters: Filters) -> Admission {
    Admission::new(
        Stamper::new(HashKey::new(vec![1; 32]).unwrap(), filters),
        store,
        Arc::new(WorkloadIndex::new()),
        Arc::default(),
        BTreeSet::new(),
    )
    .with_own_user(Some(KRELOAD_USER.into()))
}

const KRELOAD_USER: &str = "system:serviceaccount:kreload:kreload";

/// A review as kreload's own write: its field manager and its user.
fn as_kreload(body: Vec<u8>) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["request"]["options"] = json!({"kind": "PatchOptions", "fieldManager": "kreload"});
    v["request"]["userInfo"] = json!({"username": KRELOAD_USER});
    serde_json::to_vec(&v).unwrap()
}

fn review(group: &str, kind: &str, operation: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": group, "version": "v1", "kind": kind},
                    "namespace": "ns", "operation": operation, "object": object}
    }))
    .unwrap()
}

fn response(a: &Answer) -> Value {
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["response"]["uid"], "u-1");
    v["response"].clone()
}

fn apply_patch(object: &Value, resp: &Value) -> Value {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

fn deployment(annotations: Value, template_annotations: Option<Value>) -> Value {
    let mut template = json!({"spec": {"containers": [{"name": "c", "volumeMounts": [],
        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "app.conf"}}}]}]}});
    if let Some(t) = template_annotations {
        template["metadata"] = json!({"annotations": t});
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": annotations},
           "spec": {"replicas": 1, "template": template}})
}

#[test]
fn pods_are_stamped_with_what_they_consume() {
    let a = admission();
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}});
    let answer = a.mutate(&review("", "Pod", "CREATE", pod.clone())).unwrap();
    assert_eq!(answer.outcome, Outcome::Patched);
    let resp = response(&answer);
    assert_eq!(resp["allowed"], true);
    assert_eq!(resp["patchType"], "JSONPatch");
    let stamped = apply_patch(&pod, &resp);
    let stamp = stamped["metadata"]["annotations"][CONFIG_HASH]
        .as_str()
        .unwrap();
    assert!(a.stamper().key().is_current(stamp));
}

#[test]
fn opted_in_templates_are_stamped_and_match_their_pods() {
    let a = admission();
    let d = deployment(json!({"reloader.stakater.com/auto": "true"}), None);
    let resp = response(
        &a.mutate(&review("apps", "Deployment", "CREATE", d.clone()))
            .unwrap(),
    );
    let stamped = apply_patch(&d, &resp);
    let template_stamp =
        stamped["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH].clone();
    // A pod made from the stamped template gets the same stamp: its trigger set is the same.
    let pod = json!({"metadata": stamped["spec"]["template"]["metadata"].clone(), "spec": stamped["spec"]["template"]["spec"].clone()});
    let answer = a.mutate(&review("", "Pod", "CREATE", pod)).unwrap();
    assert_eq!(
        answer.outcome,
        Outcome::Allowed,
        "the inherited stamp is already right"
    );
    // Idempotent: the stamped object needs no further patch (reinvocation).
    let again = a
        .mutate(&review("apps", "Deployment", "UPDATE", stamped))
        .unwrap();
    assert_eq!(again.outcome, Outcome::Allowed);
    assert!(template_stamp.is_string());
}

#[test]
fn workloads_not_opted_in_are_left_alone() {
    let a = admission();
    let d = deployment(json!({}), None);
    let answer = a
        .mutate(&review("apps", "Deployment", "CREATE", d))
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
    assert!(response(&answer).get("patch").is_none());
}

#[test]
fn foreign_stamps_on_update_are_an_unknown_baseline() {
    let a = admission();
    let d = deployment(
        json!({"reloader.stakater.com/auto": "true"}),
        Some(json!({CONFIG_HASH: "v1.00000000.aa"})),
    );
    assert_eq!(
        a.mutate(&review("apps", "Deployment", "UPDATE", d.clone()))
            .unwrap()
            .outcome,
        Outcome::Allowed
    );
    assert_eq!(
        a.mutate(&review("apps", "Deployment", "CREATE", d))
            .unwrap()
            .outcome,
        Outcome::Patched
    );
}

fn review_update(object: Value, old: Value) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&review("apps", "Deployment", "UPDATE", object)).unwrap();
    v["request"]["oldObject"] = old;
    serde_json::to_vec(&v).unwrap()
}

fn review_update_of(group: &str, kind: &str, object: Value, old: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&review(group, kind, "UPDATE", object)).unwrap();
    v["request"]["oldObject"] = old;
    serde_json::to_vec(&v).unwrap()
}

/// The stamp a patched answer writes at `pointer` (an annotation path), if any.
fn written(object: &Value, answer: &Answer, pointer: &str) -> Option<Value> {
    let resp = response(answer);
    resp.get("patch")?;
    apply_patch(object, &resp).pointer(pointer).cloned()
}

const TEMPLATE_STAMP: &str = "/spec/template/metadata/annotations/kreload.dev~1config-hash";
const ACCOUNTED: &str = "/metadata/annotations/kreload.dev~1accounted-hash";

fn opted_in(template_stamp: Option<&str>) -> Value {
    deployment(
        json!({"reloader.stakater.com/auto": "true"}),
        template_stamp.map(|s| json!({CONFIG_HASH: s})),
    )
}

#[test]
fn a_stamp_written_by_the_update_itself_is_kept() {
    let a = admission();
    let stale = format!("v2.{}.{}", a.stamper().key().id(), "0".repeat(64));
    let other = format!("v2.{}.{}", a.stamper().key().id(), "1".repeat(64));
    // The watcher (maybe on a replica whose store differs) writes a new stamp: kept.
    let answer = a
        .mutate(&as_kreload(review_update(
            opted_in(Some(&other)),
            opted_in(Some(&stale)),
        )))
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
    // Anyone else writing a stamp (a manifest carrying an exported one), or claiming kreload's
    // field manager as another user: the old stamp is kept, so no sync rolls the workload.
    let new = opted_in(Some(&other));
    let answer = a
        .mutate(&review_update(new.clone(), opted_in(Some(&stale))))
        .unwrap();
    assert_eq!(written(&new, &answer, TEMPLATE_STAMP), Some(json!(stale)));
    let mut claimed: Value =
        serde_json::from_slice(&review_update(new.clone(), opted_in(Some(&stale)))).unwrap();
    claimed["request"]["options"] = json!({"fieldManager": "kreload"});
    claimed["request"]["userInfo"] = json!({"username": "mallory"});
    let answer = a.mutate(&serde_json::to_vec(&claimed).unwrap()).unwrap();
    assert_eq!(written(&new, &answer, TEMPLATE_STAMP), Some(json!(stale)));
}

#[test]
fn updates_never_advance_a_stamp_by_themselves() {
    let a = admission();
    let stale = format!("v2.{}.{}", a.stamper().key().id(), "0".repeat(64));
    let old = opted_in(Some(&stale));
    // A label, a scale, an annotation: the stale stamp stays (the watcher rolls, or not).
    let mut labelled = old.clone();
    labelled["metadata"]["labels"] = json!({"team": "a"});
    labelled["spec"]["replicas"] = json!(3);
    labelled["metadata"]["annotations"]["note"] = json!("x");
    let answer = a.mutate(&review_update(labelled, old.clone())).unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
    // A re-apply that drops the stamp gets the old one back, not the current hash.
    let dropped = opted_in(None);
    let answer = a
        .mutate(&review_update(dropped.clone(), old.clone()))
        .unwrap();
    assert_eq!(
        written(&dropped, &answer, TEMPLATE_STAMP),
        Some(json!(stale))
    );
    // An update that changes the template rolls anyway: the current hash comes with it.
    let mut changed = dropped.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
    let answer = a
        .mutate(&review_update(changed.clone(), old.clone()))
        .unwrap();
    let current = written(&changed, &answer, TEMPLATE_STAMP).unwrap();
    assert_ne!(current, json!(stale));
    assert!(a.stamper().is_current(current.as_str().unwrap()));
    // `kubectl rollout restart` changes the template's annotations: it rolls too.
    let mut restarted = old.clone();
    restarted["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
        json!("2026-12-01T00:00:00Z");
    let answer = a.mutate(&review_update(restarted.clone(), old)).unwrap();
    assert_eq!(written(&restarted, &answer, TEMPLATE_STAMP), Some(current));
}

#[test]
fn unstamped_workloads_stay_unstamped_until_their_first_roll() {
    let a = admission();
    let old = deployment(json!({}), None);
    // Opting in by annotation (`kubectl annotate`) rolls nothing: no stamp is written.
    let answer = a.mutate(&review_update(opted_in(None), old)).unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
    let mut labelled = opted_in(None);
    labelled["metadata"]["labels"] = json!({"team": "a"});
    let answer = a.mutate(&review_update(labelled, opted_in(None))).unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
}

#[test]
fn the_accounted_hash_is_kept_like_the_stamp_and_dropped_when_the_template_rolls() {
    let a = admission();
    let stale = format!("v2.{}.{}", a.stamper().key().id(), "0".repeat(64));
    let accounted = format!("v2.{}.{}", a.stamper().key().id(), "2".repeat(64));
    let mut old = opted_in(Some(&stale));
    old["metadata"]["annotations"]["kreload.dev/accounted-hash"] = json!(accounted);
    // A re-apply without kreload's annotations gets both back.
    let dropped = opted_in(None);
    let answer = a
        .mutate(&review_update(dropped.clone(), old.clone()))
        .unwrap();
    assert_eq!(
        written(&dropped, &answer, TEMPLATE_STAMP),
        Some(json!(stale))
    );
    assert_eq!(
        written(&dropped, &answer, ACCOUNTED),
        Some(json!(accounted))
    );
    // kreload's own accounting write is kept as it writes it.
    let mut newer = old.clone();
    newer["metadata"]["annotations"]["kreload.dev/accounted-hash"] = json!("v2.x.3");
    assert_eq!(
        a.mutate(&as_kreload(review_update(newer, old.clone())))
            .unwrap()
            .outcome,
        Outcome::Allowed
    );
    // A template change brings the current hash and drops the accounted one with it.
    let mut changed = old.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
    let answer = a.mutate(&review_update(changed.clone(), old)).unwrap();
    assert_eq!(written(&changed, &answer, ACCOUNTED), None);
    assert!(written(&changed, &answer, TEMPLATE_STAMP).is_some());
}

#[test]
fn jobs_are_never_patched_on_update_and_roll_only_when_opted_in_on_the_job() {
    let all = admission_with(
        Arc::new(DigestStore::new()),
        Filters {
            auto_reload_all: true,
            ..Default::default()
        },
    );
    let job = |annotations: Value| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "annotations": annotations},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}}}})
    };
    // --auto-reload-all does not reach Jobs, at CREATE as in the watcher.
    let plain = job(json!({}));
    assert_eq!(
        all.mutate(&review("batch", "Job", "CREATE", plain.clone()))
            .unwrap()
            .outcome,
        Outcome::Allowed
    );
    let explicit = job(json!({"reloader.stakater.com/auto": "true"}));
    assert_eq!(
        all.mutate(&review("batch", "Job", "CREATE", explicit.clone()))
            .unwrap()
            .outcome,
        Outcome::Patched
    );
    // At UPDATE (the garbage collector removing a finalizer, say) nothing is ever patched: the
    // API server would refuse the whole request.
    let mut finalizing = explicit.clone();
    finalizing["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
    let mut changed = finalizing.clone();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("x");
    for (new, old) in [
        (finalizing.clone(), explicit.clone()),
        (changed, explicit),
        (plain.clone(), plain),
    ] {
        assert_eq!(
            all.mutate(&review_update_of("batch", "Job", new, old))
                .unwrap()
                .outcome,
            Outcome::Allowed
        );
    }
}

#[test]
fn restart_rollouts_keep_their_object_stamp_on_update() {
    let a = admission();
    let stale = format!("v2.{}.{}", a.stamper().key().id(), "0".repeat(64));
    let r = |stamp: Option<&str>| {
        let mut annotations = json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/rollout-strategy": "restart"});
        if let Some(s) = stamp {
            annotations[CONFIG_HASH] = json!(s);
        }
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r", "annotations": annotations},
               "spec": {"template": {"spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}}}})
    };
    // Any update leaves the stale object stamp alone: the watcher's restart must not be lost.
    let mut scaled = r(Some(&stale));
    scaled["spec"]["replicas"] = json!(5);
    let answer = a
        .mutate(&review_update_of(
            "argoproj.io",
            "Rollout",
            scaled,
            r(Some(&stale)),
        ))
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
    let dropped = r(None);
    let answer = a
        .mutate(&review_update_of(
            "argoproj.io",
            "Rollout",
            dropped.clone(),
            r(Some(&stale)),
        ))
        .unwrap();
    assert_eq!(
        written(
            &dropped,
            &answer,
            "/metadata/annotations/kreload.dev~1config-hash"
        ),
        Some(json!(stale))
    );
}

#[test]
fn restart_rollouts_are_stamped_on_the_object_not_the_template() {
    let a = admission();
    let r = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "r", "annotations": {"reloader.stakater.com/auto": "true", "reloader.stakater.com/rollout-strategy": "restart"}},
        "spec": {"template": {"spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}}}});
    let mut body: Value =
        serde_json::from_slice(&review("argoproj.io", "Rollout", "CREATE", r.clone())).unwrap();
    body["request"]["kind"]["version"] = json!("v1alpha1");
    let resp = response(&a.mutate(&serde_json::to_vec(&body).unwrap()).unwrap());
    let out = apply_patch(&r, &resp);
    assert!(out["metadata"]["annotations"][CONFIG_HASH].is_string());
    assert!(out["spec"]["template"].get("metadata").is_none());
}

#[test]
fn rollouts_with_a_workload_ref_keep_an_empty_template_and_are_not_stamped_at_create() {
    let a = admission();
    let stale = format!("v2.{}.{}", a.stamper().key().id(), "0".repeat(64));
    // Argo Rollouts refuses a template on a Rollout that references a Deployment's; what it
    // consumes is in that template, which admission does not read: no stamp at CREATE, and
    // neither the default strategy nor `rollout-strategy: rollout` puts one in a template.
    for strategy in [None, Some("rollout"), Some("restart")] {
        let mut annotations = json!({"reloader.stakater.com/auto": "true"});
        if let Some(s) = strategy {
            annotations["reloader.stakater.com/rollout-strategy"] = json!(s);
        }
        let r = |stamp: Option<&str>| {
            let mut r = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "r", "annotations": annotations.clone()},
                "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}});
            if let Some(s) = stamp {
                r["metadata"]["annotations"][CONFIG_HASH] = json!(s);
            }
            r
        };
        let answer = a
            .mutate(&review("argoproj.io", "Rollout", "CREATE", r(None)))
            .unwrap();
        assert_eq!(answer.outcome, Outcome::Allowed, "{strategy:?}");
        // An update keeps the object stamp (the restart the watcher wrote) and adds no template.
        let relabelled = {
            let mut o = r(None);
            o["metadata"]["labels"] = json!({"x": "y"});
            o
        };
        let answer = a
            .mutate(&review_update_of(
                "argoproj.io",
                "Rollout",
                relabelled.clone(),
                r(Some(&stale)),
            ))
            .unwrap();
        let out = apply_patch(&relabelled, &response(&answer));
        assert_eq!(
            out["metadata"]["annotations"][CONFIG_HASH],
            json!(stale),
            "{strategy:?}"
        );
        assert!(out["spec"].get("template").is_none(), "{strategy:?}: {out}");
    }
}

#[test]
fn unwatched_namespaces_and_ignored_kinds_are_not_stamped() {
    let mut a = admission();
    a.namespaces = Arc::new(NamespaceFilter::new(
        ["other".to_string()].into(),
        Default::default(),
        None,
    ));
    let d = deployment(json!({"reloader.stakater.com/auto": "true"}), None);
    assert_eq!(
        a.mutate(&review("apps", "Deployment", "CREATE", d.clone()))
            .unwrap()
            .outcome,
        Outcome::Allowed
    );
    let pod = json!({"metadata": {"name": "p"}, "spec": {}});
    assert_eq!(
        a.mutate(&review("", "Pod", "CREATE", pod)).unwrap().outcome,
        Outcome::Allowed
    );
    let mut a = admission();
    a.ignored_workloads = BTreeSet::from([WorkloadKind::Deployment]);
    assert_eq!(
        a.mutate(&review("apps", "Deployment", "CREATE", d))
            .unwrap()
            .outcome,
        Outcome::Allowed
    );
}

#[test]
fn cronjob_job_templates_are_stamped() {
    let a = admission();
    let cj = json!({"metadata": {"name": "c", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}}}}}});
    let resp = response(
        &a.mutate(&review("batch", "CronJob", "CREATE", cj.clone()))
            .unwrap(),
    );
    let out = apply_patch(&cj, &resp);
    assert!(
        out["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
            .is_string()
    );
}

#[test]
fn auto_with_search_is_denied_naming_both() {
    let a = admission();
    let d = deployment(
        json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/search": "true"}),
        None,
    );
    let answer = a
        .validate(&review("apps", "Deployment", "CREATE", d))
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Denied);
    let resp = response(&answer);
    assert_eq!(resp["allowed"], false);
    let msg = resp["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("reloader.stakater.com/auto") && msg.contains("reloader.stakater.com/search"),
        "{msg}"
    );
    assert_eq!(resp["status"]["code"], 403);
}

#[test]
fn missing_reload_list_names_are_warned_about() {
    let a = admission();
    let d = deployment(
        json!({"configmap.reloader.stakater.com/reload": "app,nope"}),
        None,
    );
    let resp = response(
        &a.validate(&review("apps", "Deployment", "CREATE", d))
            .unwrap(),
    );
    assert_eq!(resp["allowed"], true);
    let warnings = resp["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().contains("nope"));
}

#[test]
fn configs_with_bad_booleans_are_denied() {
    let a = admission();
    let cm =
        json!({"metadata": {"name": "c", "annotations": {"reloader.stakater.com/match": "yes"}}});
    assert_eq!(
        a.validate(&review("", "ConfigMap", "CREATE", cm))
            .unwrap()
            .outcome,
        Outcome::Denied
    );
}

#[test]
fn the_validator_judges_only_what_a_request_changes() {
    let a = admission();
    let bad = || {
        deployment(
            json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/search": "true"}),
            None,
        )
    };
    let outcome = |body: Vec<u8>| a.validate(&body).unwrap().outcome;
    // A Reloader-era object with a value kreload refuses: labels, scale, finalizer removal pass.
    let mut labelled = bad();
    labelled["metadata"]["labels"] = json!({"team": "a"});
    labelled["spec"]["replicas"] = json!(3);
    labelled["metadata"]["annotations"]["deployment.reloader.stakater.com/paused-at"] = json!("t");
    assert_eq!(outcome(review_update(labelled, bad())), Outcome::Allowed);
    // Being deleted: anything goes (the garbage collector removes finalizers).
    let mut deleting = bad();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
    let mut changed = deleting.clone();
    changed["metadata"]["annotations"]["reloader.stakater.com/search"] = json!("yes");
    assert_eq!(outcome(review_update(changed, deleting)), Outcome::Allowed);
    // kreload's own writes (a roll, a pause, a Job created again) pass; its field manager
    // claimed by another user does not.
    let own = as_kreload(review("apps", "Deployment", "CREATE", bad()));
    assert_eq!(outcome(own.clone()), Outcome::Allowed);
    let mut claimed: Value = serde_json::from_slice(&own).unwrap();
    claimed["request"]["userInfo"]["username"] = json!("mallory");
    assert_eq!(
        outcome(serde_json::to_vec(&claimed).unwrap()),
        Outcome::Denied
    );
    // A write that sets or changes a judged annotation is judged.
    let good = deployment(json!({"reloader.stakater.com/auto": "true"}), None);
    assert_eq!(outcome(review_update(bad(), good.clone())), Outcome::Denied);
    let mut template_bad = good.clone();
    template_bad["spec"]["template"]["metadata"] =
        json!({"annotations": {"reloader.stakater.com/search": "maybe"}});
    let mut template_bad_on_plain = deployment(json!({}), None);
    template_bad_on_plain["spec"]["template"] = template_bad["spec"]["template"].clone();
    assert_eq!(
        outcome(review_update(
            template_bad_on_plain,
            deployment(json!({}), None)
        )),
        Outcome::Denied
    );
    assert_eq!(
        outcome(review("apps", "Deployment", "CREATE", bad())),
        Outcome::Denied
    );
    // DELETE is never judged.
    assert_eq!(
        outcome(review("apps", "Deployment", "DELETE", bad())),
        Outcome::Allowed
    );
}

#[test]
fn bad_bodies_are_errors_not_panics() {
    let a = admission();
    assert!(matches!(
        a.mutate(b"not json"),
        Err(ReviewError::NotAReview(_))
    ));
    assert!(matches!(a.mutate(b"{}"), Err(ReviewError::NoRequest)));
    assert!(matches!(
        a.mutate(br#"{"request": {"kind": {"kind": "Pod"}}}"#),
        Err(ReviewError::NoUid)
    ));
    let unknown = a
        .mutate(&review("", "Service", "CREATE", json!({})))
        .unwrap();
    assert_eq!(unknown.outcome, Outcome::Unsupported);
    assert_eq!(response(&unknown)["status"]["code"], 400);
    let garbage = a
        .mutate(&review(
            "",
            "Pod",
            "CREATE",
            json!({"spec": {"containers": "x"}}),
        ))
        .unwrap();
    assert_eq!(garbage.outcome, Outcome::Unsupported);
    assert_eq!(
        a.validate(&review("apps", "Deployment", "DELETE", Value::Null))
            .unwrap()
            .outcome,
        Outcome::Allowed
    );
}

/// JSON shaped like the objects the handler reads, with every field free to be anything.
fn arb_object() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9./~\\-]{0,12}".prop_map(Value::String),
        Just(json!("reloader.stakater.com/auto")),
        Just(json!("true")),
    ];
    let keys = prop_oneof![
        Just("metadata".to_string()),
        Just("annotations".to_string()),
        Just("spec".to_string()),
        Just("template".to_string()),
        Just("jobTemplate".to_string()),
        Just("containers".to_string()),
        Just("initContainers".to_string()),
        Just("volumes".to_string()),
        Just("env".to_string()),
        Just("envFrom".to_string()),
        Just("valueFrom".to_string()),
        Just("configMapKeyRef".to_string()),
        Just("secretKeyRef".to_string()),
        Just("configMap".to_string()),
        Just("secret".to_string()),
        Just("projected".to_string()),
        Just("sources".to_string()),
        Just("items".to_string()),
        Just("name".to_string()),
        Just("key".to_string()),
        Just("secretName".to_string()),
        Just("ownerReferences".to_string()),
        Just("labels".to_string()),
        Just(CONFIG_HASH.to_string()),
        Just("reloader.stakater.com/search".to_string()),
        Just("configmap.reloader.stakater.com/reload".to_string()),
        Just("deployment.reloader.stakater.com/pause-period".to_string()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A review with the request's fields in the order the API server writes them (`kind` and
/// `operation` before the objects), which the one-pass parse reads directly.
fn review_in_api_server_order(
    group: &str,
    kind: &str,
    operation: &str,
    object: &Value,
    old: &Value,
) -> Vec<u8> {
    format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"u-1","kind":{},"name":"x","namespace":"ns","operation":"{operation}","userInfo":{{"username":"u"}},"object":{},"oldObject":{},"dryRun":false}}}}"#,
        json!({"group": group, "version": "v1", "kind": kind}),
        object,
        old
    )
    .into_bytes()
}

/// The mutating webhook as it was before the one-pass parse: the reference it must match.
fn mutate_slow(a: &Admission, body: &[u8]) -> Result<Answer, ReviewError> {
    a.mutate_parsed(body, parse(body)?)
}

fn same_answer(
    fast: Result<Answer, ReviewError>,
    slow: Result<Answer, ReviewError>,
) -> Result<(), TestCaseError> {
    match (fast, slow) {
        (Ok(f), Ok(s)) => {
            prop_assert_eq!(f.outcome, s.outcome);
            prop_assert_eq!(
                String::from_utf8_lossy(&f.body),
                String::from_utf8_lossy(&s.body)
            );
        }
        (Err(f), Err(s)) => prop_assert_eq!(format!("{f:?}"), format!("{s:?}")),
        (f, s) => prop_assert!(
            false,
            "fast {:?} vs slow {:?}",
            f.map(|a| a.body),
            s.map(|a| a.body)
        ),
    }
    Ok(())
}

#[test]
fn the_one_pass_parse_reads_objects_directly_and_falls_back() {
    let a = admission();
    let d = deployment(json!({"reloader.stakater.com/auto": "true"}), None);
    let body = review_in_api_server_order("apps", "Deployment", "UPDATE", &d, &d);
    let req = parse_for_mutate(&body).unwrap();
    assert!(matches!(req.parsed_object, Some(Preparsed::Workload(_))));
    assert!(matches!(req.parsed_old, Some(Some(_))));
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}});
    let body = review_in_api_server_order("", "Pod", "CREATE", &pod, &Value::Null);
    let req = parse_for_mutate(&body).unwrap();
    assert!(matches!(req.parsed_object, Some(Preparsed::Pod(_))));
    assert!(req.parsed_old.is_none() && req.old_object.is_none());
    // Objects the lean types cannot read: the raw path answers, as it always did.
    let garbage = json!({"spec": {"containers": "x"}});
    let body = review_in_api_server_order("", "Pod", "CREATE", &garbage, &Value::Null);
    assert!(parse_for_mutate(&body).unwrap().parsed_object.is_none());
    assert_eq!(a.mutate(&body).unwrap().outcome, Outcome::Unsupported);
    let body = review_in_api_server_order("", "Pod", "CREATE", &json!([1]), &Value::Null);
    assert_eq!(a.mutate(&body).unwrap().outcome, Outcome::Unsupported);
    // A duplicate field is refused as before.
    let dup = br#"{"request": {"uid": "u-1", "uid": "u-2", "kind": {"kind": "Pod"}}}"#;
    assert!(matches!(a.mutate(dup), Err(ReviewError::NotAReview(_))));
}

fn arb_policy() -> impl Strategy<Value = Annotations> {
    let bool_value = prop_oneof![Just("true"), Just("false"), Just("yes")];
    let list = prop_oneof![
        Just("a"),
        Just("a, b"),
        Just("x.*"),
        Just("(a|c)"),
        Just("[")
    ];
    (
        proptest::option::of(bool_value.clone()),
        proptest::option::of(bool_value.clone()),
        proptest::option::of(bool_value.clone()),
        proptest::option::of(bool_value),
        proptest::option::of(list.clone()),
        proptest::option::of(list.clone()),
        proptest::option::of(list),
    )
        .prop_map(
            |(auto, cm_auto, search, secret_auto, cm_list, s_list, excl)| {
                let mut a = Annotations::new();
                let mut put = |k: &str, v: Option<&str>| {
                    if let Some(v) = v {
                        a.insert(k.to_string(), v.to_string());
                    }
                };
                put("reloader.stakater.com/auto", auto);
                put("configmap.reloader.stakater.com/auto", cm_auto);
                put("secret.reloader.stakater.com/auto", secret_auto);
                put("reloader.stakater.com/search", search);
                put("configmap.reloader.stakater.com/reload", cm_list);
                put("secret.reloader.stakater.com/reload", s_list);
                put("configmaps.exclude.reloader.stakater.com/reload", excl);
                a
            },
        )
}

fn arb_kind() -> impl Strategy<Value = ConfigKind> {
    prop_oneof![Just(ConfigKind::ConfigMap), Just(ConfigKind::Secret)]
}

fn arb_refs() -> impl Strategy<Value = References> {
    let consumption = prop_oneof![
        Just(Consumption::All),
        proptest::collection::btree_set("[k-m]{1,2}", 0..3).prop_map(Consumption::Keys),
    ];
    proptest::collection::btree_map(
        (arb_kind(), "[a-d]{1,2}").prop_map(|(k, n)| ConfigId::new(k, n)),
        consumption,
        0..5,
    )
}

fn arb_store() -> impl Strategy<Value = Vec<(ConfigKind, String, ConfigEntry)>> {
    let entry = (
        proptest::collection::btree_map("[k-m]{1,2}", any::<u8>(), 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(keys, matched, ignore, team_a)| ConfigEntry {
            labels: if team_a {
                [("team".to_string(), "a".to_string())].into()
            } else {
                Default::default()
            },
            policy: ConfigPolicy { matched, ignore },
            keys: keys
                .into_iter()
                .map(|(k, v)| (k, ValueDigest::of(&[v])))
                .collect(),
        });
    proptest::collection::vec((arb_kind(), "[a-d]{1,2}", entry), 0..8)
}

proptest! {
    /// The stamps built without a trigger set equal the stamps of the trigger set.
    #[test]
    fn encoded_stamps_equal_trigger_set_stamps(
        annotations in arb_policy(),
        refs in arb_refs(),
        configs in arb_store(),
        ignore_secrets in any::<bool>(),
        selector in any::<bool>(),
        auto_reload_all in any::<bool>(),
    ) {
        let store = Arc::new(DigestStore::new());
        for (kind, name, entry) in configs {
            store.upsert("ns", ConfigId::new(kind, name), Arc::new(entry));
        }
        let filters = Filters {
            ignored_kinds: if ignore_secrets { BTreeSet::from([ConfigKind::Secret]) } else { BTreeSet::new() },
            resource_label_selector: selector.then(|| "team=a".parse().unwrap()),
            auto_reload_all,
        };
        let a = admission_with(store.clone(), filters.clone());
        let policy = policy::parse_workload(&Default::default(), &annotations, None).value;
        let expected = store.with_namespace("ns", |view| {
            a.stamper().key().stamp("ns", &crate::domain::trigger::trigger_set(&policy, &refs, view, &filters))
        });
        let encoded = store.with_namespace("ns", |view| {
            a.stamper().key().stamp_encoded(&encode_trigger_set("ns", &policy, &refs, view, &filters))
        });
        prop_assert_eq!(&encoded, &expected);
        if policy.opted_in(auto_reload_all) {
            prop_assert_eq!(a.workload_stamp("ns", &policy, &refs), Some(expected));
        }
        let expected = store.with_namespace("ns", |view| {
            a.stamper().key().stamp("ns", &crate::domain::trigger::consumed_set(&refs, view))
        });
        let encoded = store.with_namespace("ns", |view| {
            a.stamper().key().stamp_encoded(&encode_consumed_set("ns", &refs, view))
        });
        prop_assert_eq!(encoded, expected);
    }

    /// The one-pass parse answers exactly as parsing the raw objects does, in the API
    /// server's field order and in any other.
    #[test]
    fn one_pass_parse_answers_like_the_raw_parse(
        object in arb_object(),
        old in arb_object(),
        kind in prop_oneof![Just(("", "Pod")), Just(("apps", "Deployment")), Just(("batch", "CronJob")), Just(("argoproj.io", "Rollout")), Just(("x", "Y"))],
        operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
        api_server_order in any::<bool>(),
    ) {
        let a = admission();
        let body = if api_server_order {
            review_in_api_server_order(kind.0, kind.1, operation, &object, &old)
        } else {
            serde_json::to_vec(&json!({"request": {"uid": "u-1", "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
                "namespace": "ns", "operation": operation, "object": object, "oldObject": old}})).unwrap()
        };
        same_answer(a.mutate(&body), mutate_slow(&a, &body))?;
    }

    #[test]
    fn one_pass_parse_of_stamped_workloads_answers_like_the_raw_parse(
        new_stamp in prop_oneof![Just(None), Just(Some("current")), Just(Some("other")), Just(Some("foreign"))],
        old_stamp in prop_oneof![Just(None), Just(Some("current")), Just(Some("other"))],
        operation in prop_oneof![Just("CREATE"), Just("UPDATE")],
    ) {
        let a = admission();
        let stamp = |s: Option<&str>| s.map(|s| match s {
            "current" => a.workload_stamp("ns", &policy::parse_workload(&Default::default(), &[("reloader.stakater.com/auto".to_string(), "true".to_string())].into(), None).value, &[(ConfigId::new(ConfigKind::ConfigMap, "app"), Consumption::Keys(["app.conf".to_string()].into()))].into()).unwrap(),
            "other" => format!("v1.{}.{}", a.stamper().key().id(), "0".repeat(64)),
            _ => "v1.00000000.aa".to_string(),
        });
        let d = |s: Option<String>| deployment(json!({"reloader.stakater.com/auto": "true"}), s.map(|s| json!({CONFIG_HASH: s})));
        let body = review_in_api_server_order("apps", "Deployment", operation, &d(stamp(new_stamp)), &d(stamp(old_stamp)));
        same_answer(a.mutate(&body), mutate_slow(&a, &body))?;
    }
}

proptest! {
    /// The fuzz target: structured reviews with arbitrary objects, kinds and operations. Run
    /// long with e.g. `PROPTEST_CASES=200000 cargo test --release --lib fuzz_review`.
    #[test]
    fn fuzz_review_handler(
        object in arb_object(),
        old in arb_object(),
        kind in prop_oneof![Just(("", "Pod")), Just(("apps", "Deployment")), Just(("batch", "CronJob")), Just(("argoproj.io", "Rollout")), Just(("", "ConfigMap")), Just(("", "Secret")), Just(("x", "Y"))],
        operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE"), Just("CONNECT")],
    ) {
        let a = admission();
        let body = serde_json::to_vec(&json!({"request": {"uid": "u-1", "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
            "namespace": "ns", "operation": operation, "object": object, "oldObject": old}})).unwrap();
        for answer in [a.mutate(&body).unwrap(), a.validate(&body).unwrap()] {
            let v: Value = serde_json::from_slice(&answer.body).unwrap();
            prop_assert_eq!(&v["response"]["uid"], "u-1");
            if let Some(p) = v["response"]["patch"].as_str() {
                // Every patch applies to the object it was made for.
                let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
                let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
                let mut doc = object.clone();
                prop_assert!(json_patch::patch(&mut doc, &patch).is_ok(), "patch {} does not apply", String::from_utf8_lossy(&bytes));
            }
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let a = admission();
        let _ = a.mutate(&body);
        let _ = a.validate(&body);
    }

    #[test]
    fn arbitrary_annotations_never_panic(k in "[a-z./]{0,40}", v in ".{0,20}") {
        let a = admission();
        let d = deployment(json!({k.clone(): v.clone()}), Some(json!({k: v})));
        for kind in ["Deployment", "StatefulSet"] {
            let _ = a.mutate(&review("apps", kind, "CREATE", d.clone())).unwrap();
            let _ = a.validate(&review("apps", kind, "UPDATE", d.clone())).unwrap();
        }
    }
}

/// `--extra-workload` kinds (the test registry of `domain::extra`): stamped at CREATE at their
/// pointer, wherever it is; the stamp kept at UPDATE as for a Deployment; a kind of an extra
/// group that was not served at start passes untouched, never refused.
#[test]
fn extra_kinds_are_stamped_at_their_pointer_and_kept_at_update() {
    let (knative, app) = crate::domain::extra::test_kinds();
    let a = admission();
    let template =
        json!({"spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}});
    let obj = json!({
        "metadata": {"name": "w", "namespace": "ns", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"workload": {"podTemplate": template}}
    });
    let stamp_at = "/spec/workload/podTemplate/metadata/annotations/kreload.dev~1config-hash";
    let created = a
        .mutate(&review(app.group(), app.as_str(), "CREATE", obj.clone()))
        .unwrap();
    let stamp = written(&obj, &created, stamp_at).expect("stamped at CREATE");
    assert!(stamp.as_str().unwrap().starts_with("v2."), "{stamp}");
    // The same at the usual place for a Knative-like Service.
    let svc = json!({
        "metadata": {"name": "s", "namespace": "ns", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"template": template}
    });
    let answer = a
        .mutate(&review(
            knative.group(),
            knative.as_str(),
            "CREATE",
            svc.clone(),
        ))
        .unwrap();
    assert_eq!(
        written(
            &svc,
            &answer,
            "/spec/template/metadata/annotations/kreload.dev~1config-hash"
        ),
        Some(stamp.clone())
    );
    // Not opted in: untouched.
    let plain = json!({"metadata": {"name": "p"}, "spec": {"workload": {"podTemplate": template}}});
    let answer = a
        .mutate(&review(app.group(), app.as_str(), "CREATE", plain.clone()))
        .unwrap();
    assert!(response(&answer).get("patch").is_none());

    // UPDATE dropping the stamp (a re-apply) gets the old one back; one writing another is
    // not taken.
    let stamped = apply_patch(&obj, &response(&created));
    let answer = a
        .mutate(&review_update_of(
            app.group(),
            app.as_str(),
            obj.clone(),
            stamped.clone(),
        ))
        .unwrap();
    assert_eq!(written(&obj, &answer, stamp_at), Some(stamp.clone()));
    let mut forged = stamped.clone();
    forged["spec"]["workload"]["podTemplate"]["metadata"]["annotations"]["kreload.dev/config-hash"] =
        json!("v2.x.forged");
    let answer = a
        .mutate(&review_update_of(
            app.group(),
            app.as_str(),
            forged.clone(),
            stamped.clone(),
        ))
        .unwrap();
    assert_eq!(written(&forged, &answer, stamp_at), Some(stamp));

    // Its API's own fields named like a built-in workload's (`spec.template` that is no pod
    // template, `replicas` as a string, a status of its own) are not read: the object is
    // stamped at CREATE and a finalizer's removal at UPDATE is allowed, never refused.
    let mut odd = obj.clone();
    odd["spec"]["template"] = json!("a template of its own API");
    odd["spec"]["jobTemplate"] = json!(3);
    odd["spec"]["replicas"] = json!("many");
    odd["spec"]["paused"] = json!("no");
    odd["status"] = json!({"replicas": "all", "observedGeneration": "one"});
    let created = a
        .mutate(&review(app.group(), app.as_str(), "CREATE", odd.clone()))
        .unwrap();
    assert!(
        written(&odd, &created, stamp_at).is_some(),
        "stamped at CREATE"
    );
    let mut finalizing = apply_patch(&odd, &response(&created));
    finalizing["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    finalizing["metadata"]["deletionTimestamp"] = json!("2026-12-02T08:00:00Z");
    let mut released = finalizing.clone();
    released["metadata"]["finalizers"] = json!([]);
    let answer = a
        .mutate(&review_update_of(
            app.group(),
            app.as_str(),
            released,
            finalizing.clone(),
        ))
        .unwrap();
    assert_ne!(answer.outcome, Outcome::Unsupported);
    assert!(response(&answer)["allowed"].as_bool().unwrap());

    // A kind of an extra group not served at start: allowed by both webhooks, unchanged.
    let other = json!({"metadata": {"name": "t"}, "spec": {}});
    for answer in [
        a.mutate(&review(
            "unserved.example.com",
            "Thing",
            "CREATE",
            other.clone(),
        ))
        .unwrap(),
        a.validate(&review(
            "unserved.example.com",
            "Thing",
            "CREATE",
            other.clone(),
        ))
        .unwrap(),
    ] {
        let resp = response(&answer);
        assert_eq!(resp["allowed"], true, "{resp}");
        assert!(resp.get("patch").is_none());
    }
    // Any other unknown kind is still refused as unsupported.
    let answer = a
        .mutate(&review("other.example.com", "Thing", "CREATE", other))
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Unsupported);
}

/// Secrets Store CSI: the SPC keys are never denied (bad values included), change no stamp and
/// no annotation source; kreload's own `kreload.dev/csi-versions` write on UPDATE is neither a
/// template change that moves the stamp nor anything admission strips.
#[test]
fn secret_provider_class_keys_and_csi_rolls_change_nothing_at_admission() {
    use crate::domain::annotations::CSI_VERSIONS;
    let a = admission();
    let spc = json!({
        "secretproviderclass.reloader.stakater.com/auto": "yes",
        "secretproviderclass.reloader.stakater.com/reload": "spc,(bad",
        "secretproviderclasses.exclude.reloader.stakater.com/reload": "x",
    });
    let stamp_of = |d: Value| {
        let resp = response(
            &a.mutate(&review("apps", "Deployment", "CREATE", d.clone()))
                .unwrap(),
        );
        resp.get("patch").map(|_| {
            apply_patch(&d, &resp)["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
                .clone()
        })
    };
    let mut with = json!({"reloader.stakater.com/auto": "true"});
    with.as_object_mut()
        .unwrap()
        .extend(spc.as_object().unwrap().clone());
    let plain = stamp_of(deployment(
        json!({"reloader.stakater.com/auto": "true"}),
        None,
    ));
    assert!(plain.is_some());
    assert_eq!(stamp_of(deployment(with.clone(), None)), plain);
    // Only SPC keys: not opted in.
    assert_eq!(stamp_of(deployment(spc.clone(), None)), None);
    // SPC keys on the metadata do not hide the template's keys.
    assert_eq!(
        stamp_of(deployment(
            spc.clone(),
            Some(json!({"reloader.stakater.com/auto": "true"}))
        )),
        plain
    );
    let warned = |a: &Admission, d: Value| {
        let answer = a
            .validate(&review("apps", "Deployment", "CREATE", d))
            .unwrap();
        assert_ne!(answer.outcome, Outcome::Denied);
        let resp = response(&answer);
        resp["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .any(|w| w.as_str().unwrap().contains("Secrets Store CSI"))
            })
            .unwrap_or(false)
    };
    let with_csi = admission().with_csi(true);
    for d in [deployment(with, None), deployment(spc, None)] {
        // Flag off: not even a warning. On: a warning, never a denial.
        assert!(!warned(&a, d.clone()));
        assert!(warned(&with_csi, d));
    }
    // kreload's CSI roll on a workload whose stamp is stale: the stamp stays (the write is not
    // a foreign template change), and the annotation is neither stripped nor rewritten.
    let stale = format!("v2.{}.{}", a.stamper().key().id(), "0".repeat(64));
    let old = opted_in(Some(&stale));
    let mut rolled = old.clone();
    rolled["spec"]["template"]["metadata"]["annotations"][CSI_VERSIONS] = json!("v2.k.csi");
    let answer = a
        .mutate(&as_kreload(review_update(rolled.clone(), old.clone())))
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
    let answer = a.mutate(&review_update(rolled, old)).unwrap();
    assert_eq!(answer.outcome, Outcome::Allowed);
}

/// With CSI integration, someone else's UPDATE that drops or changes kreload's
/// `csi-versions` (a replace of the manifest) gets the old value back, opted in for configs or
/// not; kreload's own write stands; without the flag admission leaves it alone.
#[test]
fn csi_versions_dropped_by_a_replace_is_kept() {
    use crate::domain::annotations::CSI_VERSIONS;
    let csi = admission().with_csi(true);
    let off = admission();
    for annotations in [
        json!({"reloader.stakater.com/auto": "true"}),
        json!({"secretproviderclass.reloader.stakater.com/auto": "true"}),
    ] {
        let old = deployment(annotations.clone(), Some(json!({CSI_VERSIONS: "v2.k.old"})));
        let stamp = csi
            .mutate(&review("apps", "Deployment", "CREATE", old.clone()))
            .unwrap();
        let old = if stamp.outcome == Outcome::Patched {
            apply_patch(&old, &response(&stamp))
        } else {
            old
        };
        let mut dropped = old.clone();
        dropped["spec"]["template"]["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(CSI_VERSIONS);
        let answer = csi
            .mutate(&review_update(dropped.clone(), old.clone()))
            .unwrap();
        assert_eq!(
            written(
                &dropped,
                &answer,
                "/spec/template/metadata/annotations/kreload.dev~1csi-versions"
            ),
            Some(json!("v2.k.old")),
            "{annotations}"
        );
        // Without the integration too (turned off since a CSI roll): the old value stays.
        let answer = off
            .mutate(&review_update(dropped.clone(), old.clone()))
            .unwrap();
        assert_eq!(
            written(
                &dropped,
                &answer,
                "/spec/template/metadata/annotations/kreload.dev~1csi-versions"
            ),
            Some(json!("v2.k.old")),
            "without CSI integration: {annotations}"
        );
        let mut rolled = old.clone();
        rolled["spec"]["template"]["metadata"]["annotations"][CSI_VERSIONS] = json!("v2.k.new");
        let answer = csi
            .mutate(&as_kreload(review_update(rolled.clone(), old.clone())))
            .unwrap();
        assert_eq!(answer.outcome, Outcome::Allowed);
    }
}
