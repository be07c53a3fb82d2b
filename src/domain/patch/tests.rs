use super::*;
use crate::domain::annotations::ACCOUNTED_HASH;
use proptest::prelude::*;

fn apply(doc: &Value, base: &str, stamp: &str) -> Value {
    let mut out = doc.clone();
    let patch: json_patch::Patch =
        serde_json::from_value(stamp_patch(base, shape_of(doc, base), stamp)).unwrap();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

#[test]
fn pointer_segments_are_escaped() {
    assert_eq!(
        escape_pointer("kreload.dev/config-hash"),
        "kreload.dev~1config-hash"
    );
    assert_eq!(escape_pointer("a~b/c"), "a~0b~1c");
}

#[test]
fn creates_metadata_and_annotations_when_absent() {
    let doc = json!({"spec": {"template": {"spec": {}}}});
    let out = apply(&doc, "/spec/template", "v1.k.x");
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH],
        "v1.k.x"
    );
    let doc = json!({"metadata": {"name": "p"}});
    assert_eq!(
        apply(&doc, "", "s")["metadata"]["annotations"][CONFIG_HASH],
        "s"
    );
}

#[test]
fn replaces_an_old_stamp_and_keeps_other_annotations() {
    let doc = json!({"metadata": {"annotations": {CONFIG_HASH: "old", "a/b": "c"}}});
    let out = apply(&doc, "", "new");
    assert_eq!(
        out,
        json!({"metadata": {"annotations": {CONFIG_HASH: "new", "a/b": "c"}}})
    );
}

#[test]
fn null_annotations_are_replaced() {
    let doc = json!({"metadata": {"annotations": null}});
    assert_eq!(
        apply(&doc, "", "s"),
        json!({"metadata": {"annotations": {CONFIG_HASH: "s"}}})
    );
}

#[test]
fn merge_patch_nests_under_the_template_path() {
    assert_eq!(
        template_merge_patch(&["spec", "jobTemplate", "spec", "template"], "s"),
        json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"annotations": {CONFIG_HASH: "s"}}}}}}})
    );
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z/~.]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z/~.]{0,6}|metadata|annotations", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// The patch yields exactly the stamp and changes nothing else.
    #[test]
    fn patch_sets_exactly_the_stamp(mut doc in arb_json(), stamp in "[ -~]{0,20}") {
        // The base must be an object for the pointer to address it (true of any pod or template).
        if !doc.is_object() { doc = json!({"x": doc}); }
        let out = apply(&doc, "", &stamp);
        prop_assert_eq!(&out["metadata"]["annotations"][CONFIG_HASH], &json!(stamp));
        // Undo the stamp and compare with the original, modulo containers the patch created.
        let mut expected = doc.clone();
        let meta = expected.as_object_mut().unwrap().entry("metadata").or_insert_with(|| json!({}));
        if !meta.is_object() { *meta = json!({}); }
        let ann = meta.as_object_mut().unwrap().entry("annotations").or_insert_with(|| json!({}));
        if !ann.is_object() { *ann = json!({}); }
        ann.as_object_mut().unwrap().insert(CONFIG_HASH.to_string(), json!(stamp));
        prop_assert_eq!(out, expected);
    }
}

#[test]
fn recreated_jobs_drop_generated_fields_and_carry_the_stamp() {
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                     "labels": {"team": "a", "batch.kubernetes.io/controller-uid": "u", "job-name": "j"}},
        "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                 "template": {"metadata": {"labels": {"app": "x", "controller-uid": "u", "batch.kubernetes.io/job-name": "j"}},
                              "spec": {"restartPolicy": "Never"}}},
        "status": {"succeeded": 1}
    });
    let fresh = fresh_job(job, "v1.k.s");
    assert_eq!(fresh["metadata"]["labels"], json!({"team": "a"}));
    assert!(
        fresh["metadata"].get("uid").is_none()
            && fresh["metadata"].get("resourceVersion").is_none()
    );
    assert!(fresh.get("status").is_none() && fresh["spec"].get("selector").is_none());
    assert_eq!(
        fresh["spec"]["template"]["metadata"]["labels"],
        json!({"app": "x"})
    );
    assert_eq!(
        fresh["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH],
        "v1.k.s"
    );
}

#[test]
fn recreated_jobs_with_a_manual_selector_keep_it_and_its_labels() {
    let job = json!({
        "metadata": {"name": "j", "uid": "u", "labels": {"app": "x"},
                     "annotations": {ACCOUNTED_HASH: "v2.k.a"}},
        "spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "x", "job-name": "j"}},
                 "template": {"metadata": {"labels": {"app": "x", "job-name": "j"}}}}
    });
    let fresh = fresh_job(job, "v2.k.s");
    assert_eq!(
        fresh["spec"]["selector"],
        json!({"matchLabels": {"app": "x", "job-name": "j"}})
    );
    assert_eq!(
        fresh["spec"]["template"]["metadata"]["labels"],
        json!({"app": "x", "job-name": "j"})
    );
    assert!(
        fresh["metadata"]["annotations"]
            .get(ACCOUNTED_HASH)
            .is_none()
    );
}

#[test]
fn pauses_are_noted_and_resumed_under_the_configured_name() {
    let names = AnnotationNames {
        paused_at: "example.com/paused-at".into(),
        ..AnnotationNames::default()
    };
    let at = "2024-01-01T00:00:00Z";
    let patch = roll_patch(
        &names,
        &Roll {
            template_path: &["spec", "template"],
            location: StampLocation::Template,
            stamp: "v2.k.x",
            drop_accounted: false,
            pause_at: Some(at),
            now: at,
        },
    );
    assert_eq!(patch["spec"]["paused"], json!(true));
    assert_eq!(
        patch["metadata"]["annotations"],
        json!({"example.com/paused-at": at}),
        "only the configured name: {patch}"
    );

    // The resume applies to a Deployment paused under that name, and to none paused under
    // Reloader's default name (that pause is not kreload's).
    let paused =
        |key: &str| json!({"metadata": {"annotations": {key: at}}, "spec": {"paused": true}});
    let resume: json_patch::Patch = serde_json::from_value(resume_patch(&names, at)).unwrap();
    let mut d = paused("example.com/paused-at");
    json_patch::patch(&mut d, &resume).unwrap();
    assert_eq!(
        d,
        json!({"metadata": {"annotations": {}}, "spec": {"paused": false}})
    );
    let mut d = paused(crate::domain::annotations::PAUSED_AT);
    assert!(json_patch::patch(&mut d, &resume).is_err());
}

#[test]
fn a_csi_roll_writes_only_its_annotation_where_the_stamp_lives() {
    use crate::domain::annotations::CSI_VERSIONS;
    let p = add_csi_roll(
        json!({}),
        &["spec", "template"],
        StampLocation::Template,
        "v",
        "now",
    );
    assert_eq!(
        p,
        json!({"spec": {"template": {"metadata": {"annotations": {CSI_VERSIONS: "v"}}}}})
    );
    let cron = ["spec", "jobTemplate", "spec", "template"];
    let p = add_csi_roll(json!({}), &cron, StampLocation::Template, "v", "now");
    assert_eq!(
        p.pointer("/spec/jobTemplate/spec/template/metadata/annotations"),
        Some(&json!({CSI_VERSIONS: "v"}))
    );
    let p = add_csi_roll(
        json!({}),
        &["spec", "template"],
        StampLocation::Object,
        "v",
        "now",
    );
    assert_eq!(
        p,
        json!({"metadata": {"annotations": {CSI_VERSIONS: "v"}}, "spec": {"restartAt": "now"}})
    );
    // Beside a config roll: both land in one patch, the stamp untouched.
    let roll = template_merge_patch(&["spec", "template"], "stamp");
    let p = add_csi_roll(
        roll,
        &["spec", "template"],
        StampLocation::Template,
        "v",
        "now",
    );
    assert_eq!(
        p.pointer("/spec/template/metadata/annotations"),
        Some(&json!({CONFIG_HASH: "stamp", CSI_VERSIONS: "v"}))
    );
}
