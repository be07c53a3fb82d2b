use serde_json::json;

use super::*;
use crate::domain::annotations::{AnnotationNames, CONFIG_HASH};
use crate::domain::patch::{Roll, roll_patch};
use crate::domain::workload::{LeanWorkload, StampLocation, template_changed};

fn parse(s: &str) -> Result<ExtraWorkload, String> {
    s.parse()
}

#[test]
fn a_flag_value_names_group_version_resource_and_pointer() {
    let e = parse("serving.knative.dev/v1/services:/spec/template").unwrap();
    assert_eq!(e.group, "serving.knative.dev");
    assert_eq!(e.version, "v1");
    assert_eq!(e.resource, "services");
    assert_eq!(e.pointer, "/spec/template");
    assert_eq!(e.path, ["spec", "template"]);
    assert_eq!(e.api_version(), "serving.knative.dev/v1");
    assert_eq!(
        e.to_string(),
        "serving.knative.dev/v1/services:/spec/template"
    );

    let deep = parse("example.com/v1beta1/things:/spec/a~1b/c~0d/template").unwrap();
    assert_eq!(deep.path, ["spec", "a/b", "c~d", "template"]);
}

#[test]
fn malformed_values_are_refused_with_the_expected_form() {
    for bad in [
        "",
        "services:/spec/template",
        "v1/services:/spec/template",
        "a/b/c/d:/spec/template",
        "serving.knative.dev/v1/services",
        "serving.knative.dev/v1/Services:/spec/template",
        "serving.knative.dev//services:/spec/template",
        "serving.knative.dev/v1/services:spec/template",
        "serving.knative.dev/v1/services:/",
        "serving.knative.dev/v1/services:/spec//template",
        "serving.knative.dev/v1/services:/spec/~2",
        "serving.knative.dev/v1/services:/spec/x~",
    ] {
        let err = parse(bad).unwrap_err();
        assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
    }
    let builtin = parse("apps/v1/deployments:/spec/template").unwrap_err();
    assert!(builtin.contains("built-in kind (Deployment)"), "{builtin}");
    let rollout = parse("argoproj.io/v1alpha1/rollouts:/spec/template").unwrap_err();
    assert!(rollout.contains("built-in"), "{rollout}");
}

#[test]
fn a_list_names_each_resource_once_and_at_most_the_maximum() {
    let a = parse("a.example.com/v1/things:/spec/template").unwrap();
    let b = parse("b.example.com/v1/things:/spec/template").unwrap();
    assert!(check_list(&[a.clone(), b.clone()]).is_ok());
    let again = parse("a.example.com/v2/things:/spec/other").unwrap();
    assert!(
        check_list(&[a.clone(), again])
            .unwrap_err()
            .contains("twice")
    );
    let many: Vec<ExtraWorkload> = (0..=MAX_EXTRA)
        .map(|i| parse(&format!("g{i}.example.com/v1/things:/spec/template")).unwrap())
        .collect();
    assert!(check_list(&many).unwrap_err().contains("at most 8"));
    assert!(check_list(&many[..MAX_EXTRA]).is_ok());
}

#[test]
fn unregistered_indexes_name_no_served_kind() {
    // Index 7 is never registered by the test below.
    let k = WorkloadKind::Extra(7);
    assert_eq!(k.as_str(), "UnregisteredExtraKind");
    assert!(k.is_extra() && k.optional());
    assert!(k.slot() < WorkloadKind::SLOTS);
    assert_eq!(WorkloadKind::Deployment.slot(), 0);
}

#[test]
fn registered_kinds_are_named_read_and_rolled_at_their_pointer() {
    let (knative, app) = test_kinds();
    let kinds = [knative, app];
    assert_eq!(kinds, [WorkloadKind::Extra(0), WorkloadKind::Extra(1)]);
    assert!(register(&[], &[]).is_err(), "registered once");
    assert!(requested_group("unserved.example.com"));
    assert!(requested_group("serving.knative.dev"));
    assert!(!requested_group("apps"));
    assert_eq!(all().collect::<Vec<_>>(), kinds);

    assert_eq!(knative.as_str(), "Service");
    assert_eq!(knative.group(), "serving.knative.dev");
    assert_eq!(knative.version(), "v1");
    assert_eq!(knative.plural(), "services");
    assert_eq!(app.template_pointer(), "/spec/workload/podTemplate");
    assert_eq!(app.template_path(), ["spec", "workload", "podTemplate"]);
    assert_eq!(
        WorkloadKind::from_group_kind("serving.knative.dev", "Service"),
        Some(knative)
    );
    assert_eq!(WorkloadKind::from_group_kind("", "Service"), None);
    assert_eq!(WorkloadKind::every().count(), WorkloadKind::ALL.len() + 2);
    assert_ne!(knative.slot(), app.slot());

    // Read at the pointer, wherever it is.
    let obj = json!({
        "metadata": {"name": "a", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"workload": {"podTemplate": {
            "metadata": {"annotations": {CONFIG_HASH: "v1.k.x"}},
            "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "c"}}]}]}
        }}}
    });
    let w = LeanWorkload::from_json(app, &obj.to_string()).unwrap();
    assert_eq!(w.template(app).stamp(), Some("v1.k.x"));
    assert_eq!(w.template(app).spec.references().len(), 1);
    // A template that is not an object, or no template, is none.
    let odd = json!({"spec": {"workload": {"podTemplate": [1]}}});
    assert!(
        LeanWorkload::from_json(app, &odd.to_string())
            .unwrap()
            .template_opt(app)
            .is_none()
    );
    // The kind's own fields named like a built-in workload's are not read.
    let own = json!({"spec": {"template": "x", "replicas": "many", "jobTemplate": [],
                              "workload": {"podTemplate": {"metadata": {"annotations": {CONFIG_HASH: "v1.k.x"}}}}}});
    let w = LeanWorkload::from_json(app, &own.to_string()).unwrap();
    assert_eq!(w.template(app).stamp(), Some("v1.k.x"));
    let none = json!({"metadata": {"name": "a"}});
    assert!(
        LeanWorkload::from_json(app, &none.to_string())
            .unwrap()
            .template_opt(app)
            .is_none()
    );

    // A template change at the pointer is seen; the stamp alone is not a change.
    let mut restamped = obj.clone();
    restamped["spec"]["workload"]["podTemplate"]["metadata"]["annotations"][CONFIG_HASH] =
        json!("v1.k.y");
    assert!(!template_changed(app, &obj, &restamped));
    let mut edited = obj.clone();
    edited["spec"]["workload"]["podTemplate"]["spec"]["containers"][0]["image"] = json!("x");
    assert!(template_changed(app, &obj, &edited));
    // kreload's own CSI roll (kreload.dev/csi-versions) is not a change by someone else either.
    let mut csi_rolled = obj.clone();
    csi_rolled["spec"]["workload"]["podTemplate"]["metadata"]["annotations"]
        [crate::domain::annotations::CSI_VERSIONS] = json!("v2.k.z");
    assert!(!template_changed(app, &obj, &csi_rolled));

    // The roll: a merge patch with the stamp on the template's metadata.
    let roll = |kind: WorkloadKind| {
        roll_patch(
            &AnnotationNames::default(),
            &Roll {
                template_path: kind.template_path(),
                location: StampLocation::Template,
                stamp: "v1.k.z",
                drop_accounted: false,
                pause_at: None,
                now: "2026-01-01T00:00:00Z",
            },
        )
    };
    assert_eq!(
        roll(app),
        json!({"spec": {"workload": {"podTemplate": {"metadata": {"annotations": {CONFIG_HASH: "v1.k.z"}}}}}})
    );
    assert_eq!(
        roll(knative),
        json!({"spec": {"template": {"metadata": {"annotations": {CONFIG_HASH: "v1.k.z"}}}}})
    );
    assert_eq!(
        StampLocation::of(knative, &Default::default(), false),
        StampLocation::Template
    );
}
