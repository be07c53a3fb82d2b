use super::*;
use crate::domain::refs::Consumption;

fn info(
    ns: &str,
    name: &str,
    annotations: &[(&str, &str)],
    refs: &[(ConfigKind, &str)],
) -> WorkloadInfo {
    let refs = refs
        .iter()
        .map(|(k, n)| (ConfigId::new(*k, *n), Consumption::All))
        .collect();
    WorkloadInfo::deployment(ns, name, annotations, refs)
}

fn names(v: Vec<Arc<WorkloadInfo>>) -> Vec<String> {
    v.iter().map(|w| w.id.name.clone()).collect()
}

const CM: ConfigKind = ConfigKind::ConfigMap;

#[test]
fn candidates_are_referencing_and_list_matching_workloads_of_the_namespace() {
    let index = WorkloadIndex::new();
    index.upsert(info(
        "a",
        "uses-app",
        &[("reloader.stakater.com/auto", "true")],
        &[(CM, "app")],
    ));
    index.upsert(info(
        "a",
        "lists-app",
        &[("configmap.reloader.stakater.com/reload", "app-.*,other")],
        &[],
    ));
    index.upsert(info(
        "b",
        "other-ns",
        &[("reloader.stakater.com/auto", "true")],
        &[(CM, "app")],
    ));
    assert_eq!(
        names(index.candidates("a", &ConfigId::new(CM, "app"))),
        vec!["uses-app"]
    );
    assert_eq!(
        names(index.candidates("a", &ConfigId::new(CM, "app-1"))),
        vec!["lists-app"]
    );
    assert_eq!(
        names(index.candidates("a", &ConfigId::new(CM, "other"))),
        vec!["lists-app"]
    );
    assert!(
        index
            .candidates("a", &ConfigId::new(ConfigKind::Secret, "app"))
            .is_empty()
    );
    assert_eq!(
        names(index.candidates("b", &ConfigId::new(CM, "app"))),
        vec!["other-ns"]
    );
}

#[test]
fn updates_relink_and_removal_unlinks() {
    let index = WorkloadIndex::new();
    index.upsert(info(
        "a",
        "w",
        &[("reloader.stakater.com/auto", "true")],
        &[(CM, "old")],
    ));
    index.upsert(info(
        "a",
        "w",
        &[("reloader.stakater.com/auto", "true")],
        &[(CM, "new")],
    ));
    assert!(index.candidates("a", &ConfigId::new(CM, "old")).is_empty());
    assert_eq!(index.candidates("a", &ConfigId::new(CM, "new")).len(), 1);
    let id = index.all()[0].id.clone();
    index.set_stamp(&id, "v1.k.x");
    assert_eq!(index.get(&id).unwrap().stamp.as_deref(), Some("v1.k.x"));
    assert!(index.remove(&id).is_some());
    assert!(index.candidates("a", &ConfigId::new(CM, "new")).is_empty());
    assert!(index.is_empty());
}

#[test]
fn replace_kind_drops_workloads_that_disappeared() {
    let index = WorkloadIndex::new();
    index.upsert(info(
        "a",
        "gone",
        &[("configmap.reloader.stakater.com/reload", "x")],
        &[],
    ));
    index.replace_kind(
        WorkloadKind::Deployment,
        None,
        vec![info("a", "kept", &[], &[(CM, "x")])],
    );
    assert_eq!(names(index.all()), vec!["kept"]);
    assert_eq!(
        names(index.candidates("a", &ConfigId::new(CM, "x"))),
        vec!["kept"]
    );
}

#[test]
fn pod_owners_are_found_by_kind_and_name() {
    let index = WorkloadIndex::new();
    index.upsert(info(
        "a",
        "web",
        &[("reloader.stakater.com/search", "true")],
        &[],
    ));
    assert!(
        index
            .policy_of("a", WorkloadKind::Deployment, "web")
            .unwrap()
            .search
    );
    assert!(
        index
            .policy_of("a", WorkloadKind::StatefulSet, "web")
            .is_none()
    );
}
