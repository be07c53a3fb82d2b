use super::*;
use crate::domain::config::{ConfigId, ConfigKind, ValueDigest};
use crate::domain::entry::ConfigEntry;
use crate::domain::refs::Consumption;
use crate::domain::trigger::Filters;
use crate::state::index::WorkloadInfo;
use std::collections::BTreeMap;

fn settings() -> ReloadSettings {
    ReloadSettings {
        coalesce_window: Duration::from_secs(1),
        min_roll_interval: Duration::from_secs(10),
        reload_on_create: false,
        reload_on_delete: false,
        ignored_workload_types: BTreeSet::new(),
    }
}

fn workload(
    name: &str,
    annotations: &[(&str, &str)],
    refs: &[(&str, Consumption)],
) -> WorkloadInfo {
    let refs = refs
        .iter()
        .map(|(n, c)| (ConfigId::new(ConfigKind::ConfigMap, *n), c.clone()))
        .collect();
    WorkloadInfo::deployment("ns", name, annotations, refs)
}

fn entry(keys: &[(&str, &str)], labels: &[(&str, &str)]) -> Arc<ConfigEntry> {
    Arc::new(ConfigEntry {
        keys: keys
            .iter()
            .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
            .collect(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    })
}

fn change(old: Option<Arc<ConfigEntry>>, new: Option<Arc<ConfigEntry>>) -> ConfigChange {
    ConfigChange {
        namespace: "ns".into(),
        id: ConfigId::new(ConfigKind::ConfigMap, "app"),
        old,
        new,
    }
}

fn names(
    index: &WorkloadIndex,
    c: &ConfigChange,
    s: &ReloadSettings,
) -> Vec<(String, Vec<String>)> {
    affected(
        c,
        index,
        &Filters::default(),
        &NamespaceFilter::default(),
        s,
        &Metrics::default(),
    )
    .into_iter()
    .map(|(id, reasons)| (id.name, reasons.values().flatten().cloned().collect()))
    .collect()
}

fn index() -> WorkloadIndex {
    let index = WorkloadIndex::new();
    let keys = Consumption::Keys(["a".to_string()].into());
    index.upsert(workload(
        "uses-a",
        &[("reloader.stakater.com/auto", "true")],
        &[("app", keys)],
    ));
    index.upsert(workload(
        "uses-all",
        &[("reloader.stakater.com/auto", "true")],
        &[("app", Consumption::All)],
    ));
    index.upsert(workload(
        "lists-it",
        &[("configmap.reloader.stakater.com/reload", "app")],
        &[],
    ));
    index
}

#[test]
fn only_workloads_consuming_a_changed_key_roll_with_those_keys() {
    let index = index();
    let c = change(
        Some(entry(&[("a", "1"), ("b", "1")], &[])),
        Some(entry(&[("a", "1"), ("b", "2")], &[])),
    );
    assert_eq!(
        names(&index, &c, &settings()),
        vec![
            ("lists-it".into(), vec!["b".into()]),
            ("uses-all".into(), vec!["b".into()])
        ]
    );
    let c = change(
        Some(entry(&[("a", "1")], &[])),
        Some(entry(&[("a", "2")], &[])),
    );
    assert_eq!(names(&index, &c, &settings()).len(), 3);
}

#[test]
fn metadata_only_changes_roll_nothing() {
    let c = change(
        Some(entry(&[("a", "1")], &[])),
        Some(entry(&[("a", "1")], &[("team", "x")])),
    );
    assert!(names(&index(), &c, &settings()).is_empty());
}

#[test]
fn creation_and_deletion_roll_only_when_asked() {
    let index = index();
    let created = change(None, Some(entry(&[("a", "1")], &[])));
    let deleted = change(Some(entry(&[("a", "1")], &[])), None);
    assert!(names(&index, &created, &settings()).is_empty());
    assert!(names(&index, &deleted, &settings()).is_empty());
    let s = ReloadSettings {
        reload_on_create: true,
        reload_on_delete: true,
        ..settings()
    };
    assert_eq!(names(&index, &created, &s).len(), 3);
    assert_eq!(names(&index, &deleted, &s).len(), 3);
}

#[test]
fn ignored_workload_types_never_roll() {
    let s = ReloadSettings {
        ignored_workload_types: BTreeSet::from([WorkloadKind::Deployment]),
        ..settings()
    };
    let c = change(
        Some(entry(&[("a", "1")], &[])),
        Some(entry(&[("a", "2")], &[])),
    );
    assert!(names(&index(), &c, &s).is_empty());
}

#[test]
fn recreated_jobs_drop_generated_fields_and_carry_the_stamp() {
    let job: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                     "labels": {"team": "a", "batch.kubernetes.io/controller-uid": "u", "job-name": "j"}},
        "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                 "template": {"metadata": {"labels": {"app": "x", "controller-uid": "u", "batch.kubernetes.io/job-name": "j"}},
                              "spec": {"restartPolicy": "Never"}}},
        "status": {"succeeded": 1}
    }))
    .unwrap();
    let fresh = serde_json::to_value(fresh_job(job, "v1.k.s")).unwrap();
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
fn reasons_name_configs_and_keys_never_values() {
    let reasons = Reasons::from([(
        ConfigId::new(ConfigKind::Secret, "db"),
        BTreeSet::from(["password".to_string()]),
    )]);
    assert_eq!(describe(&reasons), "Secret db changed (keys: password)");
    assert_eq!(
        describe(&Reasons::new()),
        "config changed while kreload was not rolling"
    );
}
