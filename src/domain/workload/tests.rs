use super::*;
use serde_json::json;

#[test]
fn templates_are_found_per_kind() {
    let deploy: LeanWorkload = serde_json::from_value(json!({
        "metadata": {"name": "d", "annotations": {"reloader.stakater.com/auto": "true"}},
        "spec": {"template": {"metadata": {"annotations": {CONFIG_HASH: "v1.a.b"}},
                              "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "c"}}]}]}}}
    }))
    .unwrap();
    let t = deploy.template(WorkloadKind::Deployment);
    assert_eq!(t.stamp(), Some("v1.a.b"));
    assert_eq!(t.spec.references().len(), 1);
    assert_eq!(t.shape(), MetadataShape::Annotations);

    let cron: LeanWorkload = serde_json::from_value(json!({
        "metadata": {"name": "c"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"volumes": [{"secret": {"secretName": "s"}}]}}}}}
    }))
    .unwrap();
    let t = cron.template(WorkloadKind::CronJob);
    assert_eq!(t.shape(), MetadataShape::NoMetadata);
    assert_eq!(t.spec.references().len(), 1);
    assert_eq!(
        WorkloadKind::CronJob.template_pointer(),
        "/spec/jobTemplate/spec/template"
    );
}

#[test]
fn pod_owner_is_derived_from_the_controller_reference() {
    let pod: LeanPod = serde_json::from_value(json!({
        "metadata": {"labels": {"pod-template-hash": "5d9f7"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-api-5d9f7", "controller": true}]}
    }))
    .unwrap();
    assert_eq!(
        pod.owner_workload(),
        Some((WorkloadKind::Deployment, "web-api".into()))
    );
    assert_eq!(pod.shape(), MetadataShape::NoAnnotations);

    let orphan: LeanPod = serde_json::from_value(
        json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "x"}]}}),
    )
    .unwrap();
    assert_eq!(orphan.owner_workload(), None);
    let sts: LeanPod = serde_json::from_value(json!({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": true}]}})).unwrap();
    assert_eq!(
        sts.owner_workload(),
        Some((WorkloadKind::StatefulSet, "db".into()))
    );
}

#[test]
fn kinds_round_trip() {
    for k in WorkloadKind::ALL {
        assert_eq!(WorkloadKind::from_kind(k.as_str()), Some(k));
    }
    assert_eq!(WorkloadKind::from_kind("ReplicaSet"), None);
}
