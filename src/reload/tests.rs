use super::*;
use crate::domain::config::{ConfigId, ConfigKind, ValueDigest};
use crate::domain::entry::ConfigEntry;
use crate::domain::refs::Consumption;
use crate::domain::trigger::Filters;
use crate::state::index::WorkloadInfo;
use crate::state::namespaces::NamespaceFilter;
use std::collections::BTreeMap;
use writes::describe;

fn settings() -> ReloadSettings {
    ReloadSettings {
        coalesce_window: Duration::from_secs(1),
        min_roll_interval: Duration::from_secs(10),
        reload_on_create: false,
        reload_on_delete: false,
        ignored_workload_types: BTreeSet::new(),
        max_rolls_per_minute: None,
        max_concurrent_rolls: None,
        annotation_names: Arc::default(),
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
    .filter_map(|(id, effect)| match effect {
        Effect::Roll(reasons) => Some((id.name, reasons.values().flatten().cloned().collect())),
        Effect::Account => None,
    })
    .collect()
}

/// The workloads a change does not roll but must account for.
fn accounted(index: &WorkloadIndex, c: &ConfigChange, s: &ReloadSettings) -> Vec<String> {
    affected(
        c,
        index,
        &Filters::default(),
        &NamespaceFilter::default(),
        s,
        &Metrics::default(),
    )
    .into_iter()
    .filter(|(_, effect)| *effect == Effect::Account)
    .map(|(id, _)| id.name)
    .collect()
}

fn with_policy(mut e: Arc<ConfigEntry>, annotations: &[(&str, &str)]) -> Arc<ConfigEntry> {
    let a: crate::domain::policy::Annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Arc::make_mut(&mut e).policy =
        crate::domain::policy::parse_config(&Default::default(), &a).value;
    e
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
    assert!(
        accounted(&index(), &c, &settings()).is_empty(),
        "nothing to account either"
    );
}

#[test]
fn annotation_edits_of_a_config_roll_nothing_but_are_accounted() {
    let index = index();
    let plain = entry(&[("a", "1")], &[]);
    let ignored = with_policy(plain.clone(), &[("reloader.stakater.com/ignore", "true")]);
    for c in [
        change(Some(plain.clone()), Some(ignored.clone())),
        change(Some(ignored.clone()), Some(plain.clone())),
    ] {
        assert!(names(&index, &c, &settings()).is_empty());
        assert_eq!(accounted(&index, &c, &settings()).len(), 3);
    }
    // `ignore` added together with a data change: the config as it is now decides, no roll.
    let c = change(
        Some(plain.clone()),
        Some(with_policy(
            entry(&[("a", "2")], &[]),
            &[("reloader.stakater.com/ignore", "true")],
        )),
    );
    assert!(names(&index, &c, &settings()).is_empty());
    assert_eq!(accounted(&index, &c, &settings()).len(), 3);
    // `ignore` removed together with a data change: rolls.
    let c = change(Some(ignored), Some(entry(&[("a", "2")], &[])));
    assert_eq!(names(&index, &c, &settings()).len(), 3);
}

#[test]
fn creation_and_deletion_roll_only_when_asked_and_are_accounted_otherwise() {
    let index = index();
    let created = change(None, Some(entry(&[("a", "1")], &[])));
    let deleted = change(Some(entry(&[("a", "1")], &[])), None);
    assert!(names(&index, &created, &settings()).is_empty());
    assert!(names(&index, &deleted, &settings()).is_empty());
    assert_eq!(accounted(&index, &created, &settings()).len(), 3);
    assert_eq!(accounted(&index, &deleted, &settings()).len(), 3);
    let s = ReloadSettings {
        reload_on_create: true,
        reload_on_delete: true,
        ..settings()
    };
    assert_eq!(names(&index, &created, &s).len(), 3);
    assert_eq!(names(&index, &deleted, &s).len(), 3);
    assert!(accounted(&index, &created, &s).is_empty());
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

#[test]
fn event_notes_fit_the_api_limit() {
    use super::writes::fit_note;
    assert_eq!(fit_note("short".into()), "short");
    // A refusal's message can exceed the 1024 bytes an Event note may hold.
    let long = "é".repeat(1000);
    let fitted = fit_note(long.clone());
    assert!(fitted.len() <= 1024, "{} bytes", fitted.len());
    assert!(fitted.ends_with('…'));
    assert!(long.starts_with(fitted.trim_end_matches('…')));
    let exact = "a".repeat(1024);
    assert_eq!(fit_note(exact.clone()), exact);
}

#[test]
fn an_accounted_hash_never_swallows_a_roll() {
    // Accounting for an annotation edit read the store after a data change had reached it, so
    // the accounted hash is already the current one; the data change's roll is still owed.
    assert!(!nothing_owed(
        true,
        Some("v2.k.old"),
        Some("v2.k.new"),
        "v2.k.new"
    ));
    assert!(nothing_owed(
        true,
        Some("v2.k.new"),
        Some("v2.k.new"),
        "v2.k.new"
    ));
    // Accounting is done once the baseline (accounted hash, else stamp) is current.
    assert!(nothing_owed(
        false,
        Some("v2.k.old"),
        Some("v2.k.new"),
        "v2.k.new"
    ));
    assert!(!nothing_owed(
        false,
        Some("v2.k.old"),
        Some("v2.k.old"),
        "v2.k.new"
    ));
}
