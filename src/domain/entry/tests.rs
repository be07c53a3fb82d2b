use super::*;

fn digest(v: &str) -> ValueDigest {
    ValueDigest::of(v.as_bytes())
}

fn keys(pairs: &[(&str, &str)]) -> KeyDigests {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), digest(v)))
        .collect()
}

fn entry(pairs: &[(&str, &str)]) -> Arc<ConfigEntry> {
    Arc::new(ConfigEntry {
        keys: keys(pairs),
        ..Default::default()
    })
}

#[test]
fn keys_are_sorted_and_a_repeated_key_keeps_its_last_digest_as_a_map_would() {
    let k = keys(&[("b", "1"), ("a", "2"), ("b", "3"), ("c", "4")]);
    let map: BTreeMap<String, ValueDigest> = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "4")]
        .iter()
        .map(|(k, v)| (k.to_string(), digest(v)))
        .collect();
    assert_eq!(
        k.iter().map(|(k, d)| (k.clone(), *d)).collect::<Vec<_>>(),
        map.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(k.len(), 3);
    assert_eq!(k["b"], digest("3"));
    assert_eq!(k.get("missing"), None);
    assert!(k.contains_key("a") && !k.contains_key("d"));
    assert_eq!(k.keys().cloned().collect::<Vec<_>>(), vec!["a", "b", "c"]);
}

#[test]
fn insert_adds_in_order_and_replaces() {
    let mut k = keys(&[("b", "1")]);
    k.insert("a".into(), digest("2"));
    k.insert("b".into(), digest("3"));
    assert_eq!(k, keys(&[("a", "2"), ("b", "3")]));
}

#[test]
fn debug_shows_key_names_and_no_digest() {
    let text = format!("{:?}", keys(&[("password", "hunter2")]));
    assert!(text.contains("password"), "{text}");
    assert!(!text.contains(&hex::encode(digest("hunter2").0)), "{text}");
}

#[test]
fn shared_entries_hold_each_key_name_once_and_stay_equal() {
    let mut names = KeyNames::default();
    let a = names.share(entry(&[("ca.crt", "1"), ("password", "2")]));
    let b = names.share(entry(&[("password", "3")]));
    assert_eq!(names.len(), 2);
    assert!(Arc::ptr_eq(&a.keys.0[1].0, &b.keys.0[0].0));
    assert_eq!(*a, *entry(&[("ca.crt", "1"), ("password", "2")]));
    // Already shared: the same entry comes back, not a copy.
    let again = names.share(a.clone());
    assert!(Arc::ptr_eq(&again, &a));
}

#[test]
fn names_no_config_uses_are_dropped_as_the_set_grows() {
    let mut names = KeyNames::default();
    for round in 0..20 {
        // Each round's entries are dropped at once: their names are unused afterwards.
        for n in 0..50 {
            let _ = names.share(entry(&[(&format!("key-{round}-{n}"), "v")]));
        }
    }
    let kept = names.share(entry(&[("kept", "v")]));
    assert!(names.len() < 300, "{} names held for 1 in use", names.len());
    assert!(kept.keys.contains_key("kept"));
}
