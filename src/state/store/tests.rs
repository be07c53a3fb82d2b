use super::*;
use crate::domain::config::ValueDigest;

fn entry(keys: &[(&str, &str)]) -> ConfigEntry {
    ConfigEntry {
        keys: keys
            .iter()
            .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
            .collect(),
        ..Default::default()
    }
}

#[test]
fn changed_keys_lists_added_removed_and_changed() {
    let old = entry(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let new = entry(&[("a", "1"), ("b", "changed"), ("d", "4")]);
    assert_eq!(old.changed_keys(&new), vec!["b", "c", "d"]);
    assert!(old.changed_keys(&old).is_empty());
}

#[test]
fn namespaces_and_kinds_are_separate() {
    let store = DigestStore::new();
    store.upsert(
        "a",
        ConfigId::new(ConfigKind::ConfigMap, "x"),
        Arc::new(entry(&[("k", "1")])),
    );
    store.upsert(
        "a",
        ConfigId::new(ConfigKind::Secret, "x"),
        Arc::new(entry(&[("k", "2")])),
    );
    store.upsert(
        "a",
        ConfigId::new(ConfigKind::Secret, "y"),
        Arc::new(entry(&[])),
    );
    store.upsert(
        "b",
        ConfigId::new(ConfigKind::ConfigMap, "x"),
        Arc::new(entry(&[])),
    );
    assert_eq!(store.len(ConfigKind::ConfigMap), 2);
    assert_eq!(store.len(ConfigKind::Secret), 2);
    let secrets: Vec<String> = store.with_namespace("a", |v| {
        v.of_kind(ConfigKind::Secret)
            .map(|(n, _)| n.to_owned())
            .collect()
    });
    assert_eq!(secrets, vec!["x", "y"]);
    let cms: Vec<String> = store.with_namespace("a", |v| {
        v.of_kind(ConfigKind::ConfigMap)
            .map(|(n, _)| n.to_owned())
            .collect()
    });
    assert_eq!(cms, vec!["x"]);
    assert!(store.with_namespace("none", |v| v.of_kind(ConfigKind::Secret).next().is_none()));
    assert!(
        store
            .remove("b", &ConfigId::new(ConfigKind::ConfigMap, "x"))
            .is_some()
    );
    assert_eq!(store.len(ConfigKind::ConfigMap), 1);
}

#[test]
fn replace_kind_drops_what_disappeared() {
    let store = DigestStore::new();
    store.upsert(
        "a",
        ConfigId::new(ConfigKind::ConfigMap, "gone"),
        Arc::new(entry(&[])),
    );
    store.upsert(
        "a",
        ConfigId::new(ConfigKind::Secret, "kept"),
        Arc::new(entry(&[])),
    );
    store.replace_kind(
        ConfigKind::ConfigMap,
        None,
        vec![("b".into(), "new".into(), entry(&[]))],
    );
    assert!(
        store
            .get("a", &ConfigId::new(ConfigKind::ConfigMap, "gone"))
            .is_none()
    );
    assert!(
        store
            .get("a", &ConfigId::new(ConfigKind::Secret, "kept"))
            .is_some()
    );
    assert!(
        store
            .get("b", &ConfigId::new(ConfigKind::ConfigMap, "new"))
            .is_some()
    );
}

#[test]
fn replace_kind_in_one_namespace_leaves_the_others() {
    let store = DigestStore::new();
    let cm = |n: &str| ConfigId::new(ConfigKind::ConfigMap, n);
    store.upsert("a", cm("x"), Arc::new(entry(&[])));
    store.upsert("b", cm("y"), Arc::new(entry(&[])));
    let changed = store.replace_kind(ConfigKind::ConfigMap, Some("a"), vec![]);
    assert_eq!(changed.len(), 1);
    assert!(store.get("a", &cm("x")).is_none());
    assert!(store.get("b", &cm("y")).is_some());
}

#[test]
fn synced_only_after_both_kinds() {
    let store = DigestStore::new();
    assert!(!store.is_synced());
    store.mark_synced(ConfigKind::ConfigMap);
    assert!(!store.is_synced());
    store.mark_synced(ConfigKind::Secret);
    assert!(store.is_synced());
}

#[test]
fn a_store_without_labels_drops_them_and_keeps_the_rest() {
    let labelled = |k: &str| ConfigEntry {
        labels: [("team".to_string(), "a".to_string())].into(),
        ..entry(&[(k, "1")])
    };
    let id = |n: &str| ConfigId::new(ConfigKind::ConfigMap, n);
    let store = DigestStore::without_labels();
    store.upsert("a", id("x"), Arc::new(labelled("k")));
    store.replace_kind(
        ConfigKind::Secret,
        None,
        vec![("a".into(), "y".into(), labelled("k"))],
    );
    let x = store.get("a", &id("x")).unwrap();
    let y = store
        .get("a", &ConfigId::new(ConfigKind::Secret, "y"))
        .unwrap();
    assert!(x.labels.is_empty() && y.labels.is_empty());
    assert_eq!(x.keys, entry(&[("k", "1")]).keys);
    // The default store keeps them (a resource label selector reads them).
    let store = DigestStore::new();
    store.upsert("a", id("x"), Arc::new(labelled("k")));
    assert_eq!(store.get("a", &id("x")).unwrap().labels["team"], "a");
}

#[test]
fn a_store_without_labels_hands_back_what_it_keeps() {
    let store = DigestStore::without_labels();
    let mut labelled = entry(&[("a", "1")]);
    labelled.labels = [("team".to_string(), "x".to_string())].into();
    let (old, kept) = store.upsert_kept(
        "ns",
        ConfigId::new(ConfigKind::ConfigMap, "c"),
        Arc::new(labelled.clone()),
    );
    assert!(old.is_none() && kept.labels.is_empty());
    // The same object again: what is kept equals what was kept, so no change is reported.
    let (old, kept) = store.upsert_kept(
        "ns",
        ConfigId::new(ConfigKind::ConfigMap, "c"),
        Arc::new(labelled),
    );
    assert_eq!(old.as_deref(), Some(kept.as_ref()));
}
