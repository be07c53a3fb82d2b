use super::*;
use proptest::prelude::*;

fn key() -> HashKey {
    HashKey::new(vec![7; 32]).unwrap()
}

fn present(keys: &[(&str, Option<&[u8]>)]) -> ConfigTrigger {
    ConfigTrigger::Present(
        keys.iter()
            .map(|(k, v)| (k.to_string(), v.map(ValueDigest::of)))
            .collect(),
    )
}

#[test]
fn stamp_is_versioned_keyed_and_hex() {
    let set = TriggerSet::from([(
        ConfigId::new(ConfigKind::Secret, "db"),
        present(&[("password", Some(b"hunter2"))]),
    )]);
    let stamp = key().stamp("ns", &set);
    let parsed = parse(&stamp).unwrap();
    assert_eq!(parsed.version, "v2");
    assert_eq!(parsed.key_id, key().id());
    assert_eq!(parsed.mac.len(), 64);
    assert!(key().is_current(&stamp));
    let other = HashKey::new(vec![8; 32]).unwrap();
    assert_ne!(other.stamp("ns", &set), stamp);
    assert!(!other.is_current(&stamp));
}

#[test]
fn stamp_reveals_nothing_of_the_value() {
    use sha2::Digest;
    let set = TriggerSet::from([(
        ConfigId::new(ConfigKind::Secret, "db"),
        present(&[("password", Some(b"hunter2"))]),
    )]);
    let stamp = key().stamp("ns", &set);
    let sha256 = hex::encode(sha2::Sha256::digest(b"hunter2"));
    assert!(!stamp.contains("hunter2"));
    assert!(!stamp.contains(&sha256[..16]));
}

#[test]
fn absent_config_missing_key_and_empty_config_differ() {
    let id = ConfigId::new(ConfigKind::ConfigMap, "c");
    let sets = [
        TriggerSet::new(),
        TriggerSet::from([(id.clone(), ConfigTrigger::Absent)]),
        TriggerSet::from([(id.clone(), present(&[]))]),
        TriggerSet::from([(id.clone(), present(&[("k", None)]))]),
        TriggerSet::from([(id.clone(), present(&[("k", Some(b""))]))]),
        TriggerSet::from([(
            ConfigId::new(ConfigKind::Secret, "c"),
            present(&[("k", Some(b""))]),
        )]),
    ];
    let stamps: std::collections::BTreeSet<_> = sets.iter().map(|s| key().stamp("ns", s)).collect();
    assert_eq!(stamps.len(), sets.len());
}

#[test]
fn foreign_or_malformed_stamps_are_not_current() {
    let k = key();
    assert!(!k.is_current(""));
    assert!(!k.is_current("v1"));
    assert!(
        !k.is_current(&format!("v1.{}.abcd", k.id())),
        "recipe v1 is an unknown baseline"
    );
    assert!(!k.is_current(&format!("v3.{}.abcd", k.id())));
    assert!(!k.is_current("v2.deadbeef.abcd"));
    assert!(!k.is_current("0123456789abcdef"));
}

#[test]
fn equal_sets_in_two_namespaces_never_stamp_alike() {
    let set = TriggerSet::from([(
        ConfigId::new(ConfigKind::Secret, "db"),
        present(&[("password", Some(b"hunter2"))]),
    )]);
    assert_ne!(key().stamp("team-a", &set), key().stamp("team-b", &set));
    // Length-prefixed: no namespace and set split alike.
    assert_ne!(
        encode("ab", &TriggerSet::new()),
        encode("a", &TriggerSet::new())
    );
}

#[test]
fn short_keys_are_refused() {
    assert!(HashKey::new(vec![1; 31]).is_err());
    assert!(!format!("{:?}", key()).contains("7, 7"));
}

fn arb_set() -> impl Strategy<Value = TriggerSet> {
    let kind = prop_oneof![Just(ConfigKind::ConfigMap), Just(ConfigKind::Secret)];
    let digest = proptest::option::of(
        proptest::collection::vec(any::<u8>(), 0..3).prop_map(|v| ValueDigest::of(&v)),
    );
    let keys = proptest::collection::btree_map("[a.b]{0,3}", digest, 0..3);
    let trigger = prop_oneof![
        Just(ConfigTrigger::Absent),
        keys.prop_map(ConfigTrigger::Present)
    ];
    let id = (kind, "[ab.]{0,3}").prop_map(|(k, n)| ConfigId::new(k, n));
    proptest::collection::btree_map(id, trigger, 0..4)
}

proptest! {
    #[test]
    fn different_sets_never_encode_alike(a in arb_set(), b in arb_set(), na in "[ab]{0,2}", nb in "[ab]{0,2}") {
        prop_assert_eq!(a == b && na == nb, encode(&na, &a) == encode(&nb, &b));
    }

    #[test]
    fn parse_never_panics(s in ".{0,80}") {
        let _ = parse(&s);
        let _ = key().is_current(&s);
    }
}
