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
        pod.owner_candidates(),
        vec![(WorkloadKind::Deployment, "web-api".into())]
    );
    assert_eq!(pod.shape(), MetadataShape::NoAnnotations);

    let orphan: LeanPod = serde_json::from_value(
        json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "x"}]}}),
    )
    .unwrap();
    assert!(orphan.owner_candidates().is_empty());
    let sts: LeanPod = serde_json::from_value(json!({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": true}]}})).unwrap();
    assert_eq!(
        sts.owner_candidates(),
        vec![(WorkloadKind::StatefulSet, "db".into())]
    );
    let rollout: LeanPod = serde_json::from_value(json!({
        "metadata": {"labels": {"rollouts-pod-template-hash": "6b7f"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "canary-6b7f", "controller": true}]}
    }))
    .unwrap();
    assert_eq!(
        rollout.owner_candidates(),
        vec![(WorkloadKind::Rollout, "canary".into())]
    );
    let cron_job_pod: LeanPod = serde_json::from_value(json!({
        "metadata": {"ownerReferences": [{"kind": "Job", "name": "backup-29411520", "controller": true}]}
    }))
    .unwrap();
    assert_eq!(
        cron_job_pod.owner_candidates(),
        vec![
            (WorkloadKind::CronJob, "backup".into()),
            (WorkloadKind::Job, "backup-29411520".into())
        ]
    );
    let job_pod: LeanPod = serde_json::from_value(json!({
        "metadata": {"ownerReferences": [{"kind": "Job", "name": "migrate", "controller": true}]}
    }))
    .unwrap();
    assert_eq!(
        job_pod.owner_candidates(),
        vec![(WorkloadKind::Job, "migrate".into())]
    );
}

#[test]
fn kinds_round_trip() {
    for k in WorkloadKind::ALL {
        assert_eq!(WorkloadKind::from_kind(k.as_str()), Some(k));
    }
    assert_eq!(WorkloadKind::from_kind("ReplicaSet"), None);
}

#[test]
fn pods_of_a_deployment_config_find_it_through_its_replication_controller() {
    let pod = |labels: serde_json::Value, annotations: serde_json::Value, rc: &str| -> LeanPod {
        serde_json::from_value(json!({"metadata": {"labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController", "name": rc, "controller": true}]}}))
        .unwrap()
    };
    let dc = |name: &str| vec![(WorkloadKind::DeploymentConfig, name.to_owned())];
    assert_eq!(
        pod(
            json!({"deploymentconfig": "web-api", "deployment": "web-api-3"}),
            json!({}),
            "web-api-3"
        )
        .owner_candidates(),
        dc("web-api")
    );
    assert_eq!(
        pod(
            json!({}),
            json!({"openshift.io/deployment-config.name": "db"}),
            "db-12"
        )
        .owner_candidates(),
        dc("db"),
        "the annotation OpenShift puts on the pods names it too"
    );
    assert_eq!(
        pod(
            json!({"openshift.io/deployment-config.name": "db"}),
            json!({}),
            "db-1"
        )
        .owner_candidates(),
        dc("db")
    );
    // Not a DeploymentConfig's: no label, a label of another name, no version suffix.
    assert!(
        pod(json!({}), json!({}), "web-3")
            .owner_candidates()
            .is_empty()
    );
    assert!(
        pod(json!({"deploymentconfig": "web"}), json!({}), "webx-3")
            .owner_candidates()
            .is_empty()
    );
    assert!(
        pod(json!({"deploymentconfig": "web"}), json!({}), "web-latest")
            .owner_candidates()
            .is_empty()
    );
    assert!(
        pod(json!({"deploymentconfig": "web"}), json!({}), "web-")
            .owner_candidates()
            .is_empty()
    );
}

#[test]
fn deployment_configs_are_an_optional_api_with_their_template_at_spec_template() {
    let k = WorkloadKind::from_group_kind("apps.openshift.io", "DeploymentConfig").unwrap();
    assert_eq!(k, WorkloadKind::DeploymentConfig);
    assert_eq!((k.version(), k.plural()), ("v1", "deploymentconfigs"));
    assert_eq!(k.template_pointer(), "/spec/template");
    assert!(k.optional() && WorkloadKind::Rollout.optional());
    assert!(!WorkloadKind::Deployment.optional());
    assert_eq!(
        WorkloadKind::from_group_kind("apps", "DeploymentConfig"),
        None
    );
}

#[test]
fn rollouts_with_a_workload_ref_carry_their_stamp_on_the_object() {
    let rollout = |spec: serde_json::Value| -> LeanWorkload {
        serde_json::from_value(json!({"metadata": {"name": "r"}, "spec": spec})).unwrap()
    };
    let referencing = rollout(
        json!({"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}),
    );
    let r = referencing.workload_ref(WorkloadKind::Rollout).unwrap();
    assert_eq!(r.deployment(), Some("web"));
    assert!(referencing.template_opt(WorkloadKind::Rollout).is_none());
    // Only a Rollout's spec.workloadRef counts.
    assert_eq!(referencing.workload_ref(WorkloadKind::Deployment), None);
    for (reference, deployment) in [
        (
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web"}),
            None,
        ),
        (
            json!({"apiVersion": "v1", "kind": "PodTemplate", "name": "web"}),
            None,
        ),
        (
            json!({"apiVersion": "example.com/v1", "kind": "Deployment", "name": "web"}),
            None,
        ),
        (json!({"apiVersion": "apps/v1", "kind": "Deployment"}), None),
        (
            json!({"apiVersion": "apps/v1beta2", "kind": "Deployment", "name": "d"}),
            Some("d"),
        ),
    ] {
        let w = rollout(json!({"workloadRef": reference}));
        assert_eq!(
            w.workload_ref(WorkloadKind::Rollout).unwrap().deployment(),
            deployment,
            "{reference}"
        );
    }
    assert_eq!(
        rollout(json!({"workloadRef": null})).workload_ref(WorkloadKind::Rollout),
        None
    );

    let default = WorkloadPolicy::default();
    let restart = crate::domain::policy::parse_workload(
        &crate::domain::annotations::AnnotationNames::default(),
        &[(
            crate::domain::annotations::ROLLOUT_STRATEGY.to_owned(),
            "restart".to_owned(),
        )]
        .into_iter()
        .collect(),
        None,
    )
    .value;
    use StampLocation::{Object, Template};
    for (kind, policy, references, want) in [
        (WorkloadKind::Rollout, &default, false, Template),
        (WorkloadKind::Rollout, &restart, false, Object),
        (WorkloadKind::Rollout, &default, true, Object),
        (WorkloadKind::Rollout, &restart, true, Object),
        (WorkloadKind::Deployment, &restart, false, Template),
        (WorkloadKind::DeploymentConfig, &default, false, Template),
    ] {
        assert_eq!(
            StampLocation::of(kind, policy, references),
            want,
            "{kind} {references}"
        );
    }
}
