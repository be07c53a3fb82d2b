use super::*;
use proptest::prelude::*;
use serde_json::json;

fn mount(class: &str, created: &str, version: &str) -> Mount {
    PodStatus {
        secret_provider_class_name: class.into(),
        objects: vec![
            MountedObject {
                id: "secret/db".into(),
                version: version.into(),
            },
            MountedObject {
                id: "secret/api".into(),
                version: format!("t-{version}"),
            },
        ],
    }
    .mount(created.into())
    .unwrap()
}

fn v(version: &str) -> KeyDigests {
    mount("x", "", version).versions
}

#[test]
fn reads_the_status_and_keeps_only_digests_of_versions() {
    let s: PodStatus = serde_json::from_value(json!({
        "podName": "p", "secretProviderClassName": "spc", "mounted": true,
        "targetPath": "/var/lib/kubelet/x",
        "objects": [{"id": "secret/db", "version": "v7"}, {"id": "secret/api", "version": null}]
    }))
    .unwrap();
    let m = s.mount("2024-01-01T00:00:00Z".into()).unwrap();
    assert_eq!(m.class, "spc");
    assert_eq!(m.versions.len(), 2);
    assert_eq!(m.versions["secret/db"], ValueDigest::of(b"v7"));
    assert!(!format!("{m:?}").contains("v7"));
    // No class named: nothing to roll for.
    let none: PodStatus = serde_json::from_value(json!({"objects": null})).unwrap();
    assert_eq!(none.mount(String::new()), None);
}

#[test]
fn last_writer_wins_and_repeats_change_nothing() {
    let a1 = mount("x", "t1", "1");
    // The first mount sets the class.
    assert_eq!(after_apply(None, &a1, None), Some(&a1.versions));
    // A new pod mounting what the class has changes nothing.
    assert_eq!(
        after_apply(None, &mount("x", "t2", "1"), Some(&v("1"))),
        None
    );
    // A rotation of one status moves the class; the same rotation of the others does not.
    let a2 = mount("x", "t1", "2");
    assert_eq!(
        after_apply(Some(&a1), &a2, Some(&v("1"))),
        Some(&a2.versions)
    );
    let b2 = mount("x", "t2", "2");
    assert_eq!(
        after_apply(Some(&mount("x", "t2", "1")), &b2, Some(&v("2"))),
        None
    );
    // A status updated without a change of its own versions (a label, say) is no newer write,
    // even when the class moved on: it changes nothing.
    assert_eq!(after_apply(Some(&a1), &a1, Some(&v("2"))), None);
    // A new pod that mounted newer versions (the store rotated before the driver polled) wins.
    let c3 = mount("x", "t3", "3");
    assert_eq!(after_apply(None, &c3, Some(&v("2"))), Some(&c3.versions));
}

#[test]
fn a_listing_lets_the_newest_win_and_drops_classes_no_status_names() {
    let known = BTreeMap::new();
    let fresh: BTreeMap<String, Mount> = [
        ("b-new".to_string(), mount("x", "2024-01-02T00:00:00Z", "2")),
        ("a-old".to_string(), mount("x", "2024-01-01T00:00:00Z", "1")),
        ("c-tie".to_string(), mount("y", "2024-01-01T00:00:00Z", "5")),
        ("d-tie".to_string(), mount("y", "2024-01-01T00:00:00Z", "6")),
    ]
    .into();
    let got = after_listing(&known, &fresh, &BTreeMap::new());
    assert_eq!(got["x"], Some(v("2")), "the newest status wins");
    assert_eq!(got["y"], Some(v("6")), "a tie goes to the later name");

    // Listed again with nothing changed: no change.
    let current: BTreeMap<String, KeyDigests> =
        [("x".to_string(), v("2")), ("y".to_string(), v("6"))].into();
    assert!(after_listing(&fresh, &fresh, &current).is_empty());

    // Pods replaced while the watch was down: the new ones mounted newer versions; y's went.
    let later: BTreeMap<String, Mount> =
        [("e".to_string(), mount("x", "2024-01-03T00:00:00Z", "3"))].into();
    let got = after_listing(&fresh, &later, &current);
    assert_eq!(got.len(), 2);
    assert_eq!(got["x"], Some(v("3")));
    assert_eq!(got["y"], None);

    // Pods replaced, same versions: no change at all.
    let same: BTreeMap<String, Mount> =
        [("f".to_string(), mount("x", "2024-01-03T00:00:00Z", "2"))].into();
    let got = after_listing(&fresh, &same, &current);
    assert_eq!(got.len(), 1, "only y went: {got:?}");
}

proptest! {
    /// Applying every status of a listing one by one, in listing order, ends where the listing
    /// does: one rule, whichever way the statuses arrive.
    #[test]
    fn listing_equals_applying_in_order(
        statuses in prop::collection::vec((0u8..3, 0u8..4, 0u8..3), 0..12)
    ) {
        let fresh: BTreeMap<String, Mount> = statuses
            .iter()
            .enumerate()
            .map(|(i, (class, created, version))| {
                (
                    format!("s{i}"),
                    mount(&format!("c{class}"), &format!("t{created}"), &version.to_string()),
                )
            })
            .collect();
        let listed = after_listing(&BTreeMap::new(), &fresh, &BTreeMap::new());
        let mut ordered: Vec<(String, Mount)> = fresh.clone().into_iter().collect();
        listing_order(&mut ordered);
        let mut current: BTreeMap<String, KeyDigests> = BTreeMap::new();
        for (_, m) in &ordered {
            if let Some(v) = after_apply(None, m, current.get(&m.class)) {
                current.insert(m.class.clone(), v.clone());
            }
        }
        let listed: BTreeMap<String, KeyDigests> =
            listed.into_iter().filter_map(|(c, v)| Some((c, v?))).collect();
        prop_assert_eq!(listed, current);
    }
}
