use super::*;
use crate::domain::csi::{MountedObject, versions_digest};

fn m(ns: &str, class: &str, version: &str) -> Mounted {
    Mounted {
        namespace: ns.into(),
        pod: "pod-0".into(),
        class: class.into(),
        versions: versions_digest(&[MountedObject {
            id: "a".into(),
            version: version.into(),
        }]),
    }
}

#[test]
fn statuses_roll_only_on_updates_of_known_objects() {
    let s = CsiStatuses::new();
    assert_eq!(s.apply("u1", Some(m("ns", "spc", "1"))), None, "an add");
    assert_eq!(
        s.apply("u2", Some(m("ns", "spc", "9"))),
        None,
        "another pod, other versions"
    );
    assert_eq!(s.apply("u1", Some(m("ns", "spc", "1"))), None, "unchanged");
    assert!(
        s.apply("u1", Some(m("ns", "spc", "2"))).is_some(),
        "rotated"
    );
    s.remove("u1");
    assert_eq!(s.len(), 1);
    assert_eq!(
        s.apply("u1", Some(m("ns", "spc", "3"))),
        None,
        "re-added after delete"
    );
}

#[test]
fn a_relist_compares_by_uid_and_forgets_what_is_gone() {
    let s = CsiStatuses::new();
    assert!(
        s.relist(None, vec![("u1".into(), m("a", "spc", "1"))])
            .is_empty()
    );
    s.apply("u2", Some(m("b", "spc", "1")));
    // A namespace-scoped relist of `a` keeps `b`'s entries; u1 rotated while the watch was away.
    let r = s.relist(
        Some("a"),
        vec![
            ("u1".into(), m("a", "spc", "2")),
            ("u3".into(), m("a", "spc", "5")),
        ],
    );
    assert_eq!(r.len(), 1);
    assert_eq!(s.len(), 3);
    // A relist without u1: forgotten.
    assert!(
        s.relist(Some("a"), vec![("u3".into(), m("a", "spc", "5"))])
            .is_empty()
    );
    assert_eq!(s.len(), 2);
}

#[test]
fn workloads_by_class() {
    let ws = CsiWorkloads::new();
    let id = |name: &str| WorkloadId {
        kind: WorkloadKind::Deployment,
        namespace: "ns".into(),
        name: name.into(),
    };
    let w = |name: &str, auto: Option<bool>| CsiWorkload {
        id: id(name),
        uid: String::new(),
        api_version: "apps/v1".into(),
        classes: BTreeSet::from(["spc".to_owned()]),
        policy: Arc::default(),
        csi: Arc::new(CsiPolicy {
            auto,
            ..Default::default()
        }),
        location: StampLocation::Template,
        current: None,
    };
    ws.upsert(w("on", Some(true)));
    ws.upsert(w("off", Some(false)));
    let r = Rotation {
        namespace: "ns".into(),
        class: "spc".into(),
        versions: [0; 32],
    };
    assert_eq!(ws.rolled_by(&r, true), vec![id("on")]);
    let other = Rotation {
        class: "x".into(),
        ..r.clone()
    };
    assert!(ws.rolled_by(&other, true).is_empty());
    ws.set_current(&id("on"), "v");
    assert_eq!(ws.get(&id("on")).unwrap().current.as_deref(), Some("v"));
    ws.replace_kind(WorkloadKind::Deployment, Some("ns"), Vec::new());
    assert!(ws.is_empty());
    assert!(ws.rolled_by(&r, true).is_empty());
}
