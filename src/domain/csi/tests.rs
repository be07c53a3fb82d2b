use super::*;
use crate::domain::annotations::AnnotationNames;
use crate::domain::policy::{PolicySource, parse_workload};

fn objs(v: &[(&str, &str)]) -> Vec<MountedObject> {
    v.iter()
        .map(|(id, version)| MountedObject {
            id: (*id).into(),
            version: (*version).into(),
        })
        .collect()
}

fn mounted(class: &str, v: &[(&str, &str)]) -> Mounted {
    Mounted {
        namespace: "ns".into(),
        pod: "pod-0".into(),
        class: class.into(),
        versions: versions_digest(&objs(v)),
    }
}

#[test]
fn versions_digest_is_order_free_and_distinguishes_sets() {
    let a = versions_digest(&objs(&[("a", "1"), ("b", "2")]));
    assert_eq!(a, versions_digest(&objs(&[("b", "2"), ("a", "1")])));
    assert_ne!(a, versions_digest(&objs(&[("a", "1"), ("b", "3")])));
    assert_ne!(a, versions_digest(&objs(&[("a", "12")])));
    assert_ne!(
        versions_digest(&objs(&[("ab", "c")])),
        versions_digest(&objs(&[("a", "bc")]))
    );
    assert_eq!(versions_digest(&[]), None);
}

#[test]
fn only_an_update_of_a_known_status_with_other_versions_is_a_rotation() {
    let v1 = mounted("spc", &[("a", "1")]);
    let v2 = mounted("spc", &[("a", "2")]);
    // An add (first mount, a new pod, a status first seen in a listing): learnt.
    assert_eq!(rotation(None, &v2), None);
    // Same versions (a label edit): nothing.
    assert_eq!(rotation(Some(&v1), &v1.clone()), None);
    // Versions changed: a rotation to the new ones.
    let r = rotation(Some(&v1), &v2).unwrap();
    assert_eq!((r.namespace.as_str(), r.class.as_str()), ("ns", "spc"));
    assert_eq!(Some(r.versions), v2.versions);
    // From or to nothing mounted: not a rotation.
    let empty = mounted("spc", &[]);
    assert_eq!(rotation(Some(&empty), &v2), None);
    assert_eq!(rotation(Some(&v1), &empty), None);
    // Another class: learnt, not a rotation.
    assert_eq!(rotation(Some(&v1), &mounted("other", &[("a", "2")])), None);
}

#[test]
fn the_annotation_value_is_keyed_namespace_bound_and_stable() {
    let key = HashKey::new(vec![7; 32]).unwrap();
    let other = HashKey::new(vec![8; 32]).unwrap();
    let r = rotation(
        Some(&mounted("spc", &[("a", "1")])),
        &mounted("spc", &[("a", "2")]),
    )
    .unwrap();
    let value = versions_annotation(&key, &r);
    assert_eq!(value, versions_annotation(&key, &r.clone()));
    assert!(value.starts_with("v2."));
    assert!(!value.contains('2') || !value.ends_with(".2"));
    assert_ne!(value, versions_annotation(&other, &r));
    let elsewhere = Rotation {
        namespace: "other".into(),
        ..r.clone()
    };
    assert_ne!(value, versions_annotation(&key, &elsewhere));
    let other_class = Rotation {
        class: "spc2".into(),
        ..r
    };
    assert_ne!(value, versions_annotation(&key, &other_class));
}

fn ann(v: &[(&str, &str)]) -> Annotations {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn decide(workload: &[(&str, &str)], template: &[(&str, &str)], all: bool) -> bool {
    let (w, t) = (ann(workload), ann(template));
    let names = AnnotationNames::default();
    let policy = parse_workload(&names, &w, Some(&t)).value;
    let (csi, _) = parse_policy(policy.source, &w, Some(&t));
    rolls_for(WorkloadKind::Deployment, &policy, &csi, "spc", all)
}

#[test]
fn opt_in_and_exclusion() {
    assert!(decide(&[(SPC_RELOAD, "other, spc")], &[], false));
    assert!(decide(&[(SPC_RELOAD, "sp.*")], &[], false));
    assert!(!decide(&[(SPC_RELOAD, "other")], &[], false));
    assert!(decide(&[(SPC_AUTO, "true")], &[], false));
    assert!(!decide(&[(SPC_AUTO, "false")], &[], true));
    assert!(decide(
        &[("reloader.stakater.com/auto", "true")],
        &[],
        false
    ));
    assert!(!decide(
        &[("reloader.stakater.com/auto", "false")],
        &[],
        true
    ));
    assert!(decide(&[], &[], true));
    assert!(!decide(&[], &[], false));
    assert!(!decide(
        &[
            ("reloader.stakater.com/auto", "true"),
            (SPC_EXCLUDE, "a, spc")
        ],
        &[],
        false
    ));
    // ConfigMap auto says nothing about SecretProviderClasses.
    assert!(!decide(
        &[("configmap.reloader.stakater.com/auto", "true")],
        &[],
        false
    ));
    // Jobs are never rolled for CSI.
    let policy = WorkloadPolicy::default();
    let csi = CsiPolicy {
        auto: Some(true),
        ..Default::default()
    };
    assert!(!rolls_for(WorkloadKind::Job, &policy, &csi, "spc", true));
    assert!(!may_roll(WorkloadKind::Job, &policy, &csi, true));
    assert!(may_roll(WorkloadKind::CronJob, &policy, &csi, false));
}

#[test]
fn csi_keys_are_read_where_the_reload_keys_say_and_never_choose_the_place() {
    // The workload has a reload key: the template's CSI keys are not read.
    assert!(!decide(
        &[("configmap.reloader.stakater.com/auto", "true")],
        &[(SPC_AUTO, "true")],
        false
    ));
    // The workload has only a CSI key: it does not make the workload the source; the template
    // (which has reload keys) is read, for the CSI keys too.
    let (w, t) = (
        ann(&[(SPC_AUTO, "true")]),
        ann(&[("reloader.stakater.com/auto", "true")]),
    );
    let policy = parse_workload(&AnnotationNames::default(), &w, Some(&t)).value;
    assert_eq!(policy.source, PolicySource::Template);
    assert_eq!(policy.auto, Some(true));
    let (csi, _) = parse_policy(policy.source, &w, Some(&t));
    assert_eq!(csi.auto, None);
    // Neither place has reload keys: each CSI key from the workload, else the template.
    assert!(decide(&[], &[(SPC_AUTO, "true")], false));
}

#[test]
fn bad_values_are_problems_that_cost_only_themselves() {
    let w = ann(&[(SPC_AUTO, "yes"), (SPC_RELOAD, "spc,(bad")]);
    let (csi, problems) = parse_policy(PolicySource::None, &w, None);
    assert_eq!(csi.auto, None);
    assert!(csi.reload.matches("spc"));
    assert_eq!(problems.len(), 2);
}

#[test]
fn a_status_keeps_no_version_string() {
    let status: PodStatus = serde_json::from_value(serde_json::json!({
        "secretProviderClassName": "spc", "podName": "p",
        "objects": [{"id": "secret/a", "version": "s3cr3t-version"}]
    }))
    .unwrap();
    let m = status.clone().mounted("ns".into(), None).unwrap();
    assert!(!format!("{m:?}").contains("s3cr3t-version"));
    // The owning pod's uid when there is one, else the pod's name.
    assert_eq!(m.pod, "p");
    assert_eq!(
        status
            .mounted("ns".into(), Some("uid-1".into()))
            .unwrap()
            .pod,
        "uid-1"
    );
    let none: PodStatus = serde_json::from_value(serde_json::json!({"objects": null})).unwrap();
    assert_eq!(none.mounted("ns".into(), None), None);
}

#[test]
fn a_status_reused_for_another_pod_is_a_mount_not_a_rotation() {
    // The driver names a status after its pod: a StatefulSet pod made again under the same name
    // (or a node's pods mounting again) gets the old object, updated in place.
    let before = mounted("spc", &[("a", "v1")]);
    let mut other_pod = mounted("spc", &[("a", "per-mount-2")]);
    other_pod.pod = "pod-0-new-uid".into();
    assert_eq!(rotation(Some(&before), &other_pod), None);
    let same_pod = mounted("spc", &[("a", "v2")]);
    assert!(rotation(Some(&before), &same_pod).is_some());
}
