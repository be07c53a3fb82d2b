use super::*;
use crate::domain::csi::{MountedObject, PodStatus};

fn mount(class: &str, created: &str, version: &str) -> Mount {
    PodStatus {
        secret_provider_class_name: class.into(),
        objects: vec![MountedObject {
            id: "secret/db".into(),
            version: version.into(),
        }],
    }
    .mount(created.into())
    .unwrap()
}

fn kinds(changes: &[Changed]) -> Vec<(String, bool, bool)> {
    changes
        .iter()
        .map(|(_, id, old, new)| (id.name.clone(), old.is_some(), new.is_some()))
        .collect()
}

#[test]
fn a_rotation_changes_the_class_once_and_pods_coming_and_going_only_make_it_appear_and_go() {
    let store = DigestStore::new();
    let mounts = Mounts::new();
    // First mount: the class appears.
    let c = mounts.apply(&store, "ns", "p1-x", mount("x", "t1", "1"));
    assert_eq!(kinds(&c), [("x".into(), false, true)]);
    assert!(
        mounts
            .apply(&store, "ns", "p2-x", mount("x", "t2", "1"))
            .is_empty()
    );
    // Rotation: the first status moves the class, the second changes nothing.
    let c = mounts.apply(&store, "ns", "p1-x", mount("x", "t1", "2"));
    assert_eq!(kinds(&c), [("x".into(), true, true)]);
    assert!(
        mounts
            .apply(&store, "ns", "p2-x", mount("x", "t2", "2"))
            .is_empty()
    );
    // New pods re-mount, the old go: nothing until the last status goes.
    assert!(
        mounts
            .apply(&store, "ns", "p3-x", mount("x", "t3", "2"))
            .is_empty()
    );
    assert_eq!(mounts.remove(&store, "ns", "p1-x"), None);
    assert_eq!(mounts.remove(&store, "ns", "p2-x"), None);
    assert_eq!(mounts.len(), 1);
    let c = mounts.remove(&store, "ns", "p3-x").unwrap();
    assert_eq!((c.2.is_some(), c.3.is_none()), (true, true));
    assert!(mounts.is_empty());
    assert_eq!(store.len(ConfigKind::SecretProviderClass), 0);
}

#[test]
fn a_listing_is_a_baseline_then_reports_what_it_missed() {
    let store = DigestStore::new();
    let mounts = Mounts::new();
    let first = mounts.replace(
        &store,
        None,
        vec![
            ("a".into(), "p1".into(), mount("x", "t1", "1")),
            ("a".into(), "p2".into(), mount("x", "t2", "2")),
            ("b".into(), "p1".into(), mount("x", "t1", "1")),
        ],
    );
    assert_eq!(first.len(), 2);
    let x = ConfigId::new(ConfigKind::SecretProviderClass, "x");
    assert_eq!(
        store.get("a", &x).unwrap().keys,
        mount("x", "", "2").versions
    );
    // The same listing again: nothing.
    let again = mounts.replace(
        &store,
        None,
        vec![
            ("a".into(), "p1".into(), mount("x", "t1", "1")),
            ("a".into(), "p2".into(), mount("x", "t2", "2")),
            ("b".into(), "p1".into(), mount("x", "t1", "1")),
        ],
    );
    assert!(again.is_empty());
    // Scoped to b: a is left alone; b's class went.
    let scoped = mounts.replace(&store, Some("b"), Vec::new());
    assert_eq!(kinds(&scoped), [("x".into(), true, false)]);
    assert!(store.get("a", &x).is_some());
}
