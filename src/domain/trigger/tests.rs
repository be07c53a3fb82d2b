use super::*;
use crate::domain::config::ValueDigest;
use crate::domain::policy::{Annotations, parse_workload};
use std::collections::BTreeMap;
use std::sync::Arc;

type Ns = BTreeMap<ConfigId, Arc<ConfigEntry>>;

/// (kind, name, key/value pairs, policy) of each config.
type Fixture<'a> = (ConfigKind, &'a str, &'a [(&'a str, &'a str)], ConfigPolicy);

fn ns(configs: &[Fixture]) -> Ns {
    configs
        .iter()
        .map(|(kind, name, keys, policy)| {
            let keys = keys
                .iter()
                .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
                .collect();
            (
                ConfigId::new(*kind, *name),
                Arc::new(ConfigEntry {
                    keys,
                    policy: *policy,
                    labels: Default::default(),
                }),
            )
        })
        .collect()
}

fn policy(pairs: &[(&str, &str)]) -> WorkloadPolicy {
    let a: Annotations = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_workload(&Default::default(), &a, None).value
}

fn refs(list: &[(ConfigKind, &str, Option<&[&str]>)]) -> References {
    list.iter()
        .map(|(k, n, keys)| {
            let c = match keys {
                None => Consumption::All,
                Some(keys) => Consumption::Keys(keys.iter().map(|s| s.to_string()).collect()),
            };
            (ConfigId::new(*k, *n), c)
        })
        .collect()
}

const CM: ConfigKind = ConfigKind::ConfigMap;
const SECRET: ConfigKind = ConfigKind::Secret;
const PLAIN: ConfigPolicy = ConfigPolicy {
    matched: false,
    ignore: false,
};
const MATCHED: ConfigPolicy = ConfigPolicy {
    matched: true,
    ignore: false,
};
const IGNORED: ConfigPolicy = ConfigPolicy {
    matched: false,
    ignore: true,
};

#[test]
fn auto_takes_referenced_configs_at_key_precision() {
    let view = ns(&[
        (CM, "app", &[("a", "1"), ("b", "2")], PLAIN),
        (SECRET, "db", &[("password", "p")], PLAIN),
    ]);
    let set = trigger_set(
        &policy(&[("reloader.stakater.com/auto", "true")]),
        &refs(&[(CM, "app", Some(&["a", "missing"])), (SECRET, "db", None)]),
        &view,
        &Filters::default(),
    );
    assert_eq!(set.len(), 2);
    let ConfigTrigger::Present(keys) = &set[&ConfigId::new(CM, "app")] else {
        panic!()
    };
    assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["a", "missing"]);
    assert_eq!(keys["missing"], None);
}

#[test]
fn reload_lists_take_unreferenced_configs_whole() {
    let view = ns(&[
        (CM, "extra-1", &[("k", "v")], PLAIN),
        (CM, "other", &[], PLAIN),
        (SECRET, "extra-1", &[], PLAIN),
    ]);
    let set = trigger_set(
        &policy(&[("configmap.reloader.stakater.com/reload", "extra-.*")]),
        &refs(&[]),
        &view,
        &Filters::default(),
    );
    assert_eq!(
        set.keys().cloned().collect::<Vec<_>>(),
        vec![ConfigId::new(CM, "extra-1")]
    );
}

#[test]
fn search_takes_only_matched_configs_and_ignore_wins() {
    let view = ns(&[
        (CM, "m", &[], MATCHED),
        (CM, "n", &[], PLAIN),
        (CM, "i", &[], IGNORED),
    ]);
    let r = refs(&[(CM, "m", None), (CM, "n", None), (CM, "i", None)]);
    let set = trigger_set(
        &policy(&[("reloader.stakater.com/search", "true")]),
        &r,
        &view,
        &Filters::default(),
    );
    assert_eq!(
        set.keys().cloned().collect::<Vec<_>>(),
        vec![ConfigId::new(CM, "m")]
    );
    let set = trigger_set(
        &policy(&[("reloader.stakater.com/auto", "true")]),
        &r,
        &view,
        &Filters::default(),
    );
    assert_eq!(set.len(), 2);
}

#[test]
fn global_filters_keep_configs_out() {
    let view = ns(&[(CM, "c", &[], PLAIN), (SECRET, "s", &[], PLAIN)]);
    let r = refs(&[(CM, "c", None), (SECRET, "s", None)]);
    let filters = Filters {
        ignored_kinds: BTreeSet::from([SECRET]),
        ..Default::default()
    };
    let set = trigger_set(
        &policy(&[("reloader.stakater.com/auto", "true")]),
        &r,
        &view,
        &filters,
    );
    assert_eq!(
        set.keys().cloned().collect::<Vec<_>>(),
        vec![ConfigId::new(CM, "c")]
    );
    let filters = Filters {
        resource_label_selector: Some("team=a".parse().unwrap()),
        ..Default::default()
    };
    assert!(
        trigger_set(
            &policy(&[("reloader.stakater.com/auto", "true")]),
            &r,
            &view,
            &filters
        )
        .is_empty()
    );
}

#[test]
fn auto_reload_all_opts_in_unless_auto_false() {
    let view = ns(&[(CM, "c", &[], PLAIN)]);
    let r = refs(&[(CM, "c", None)]);
    let all = Filters {
        auto_reload_all: true,
        ..Default::default()
    };
    assert_eq!(trigger_set(&policy(&[]), &r, &view, &all).len(), 1);
    assert!(
        trigger_set(
            &policy(&[("reloader.stakater.com/auto", "false")]),
            &r,
            &view,
            &all
        )
        .is_empty()
    );
    assert!(trigger_set(&policy(&[]), &r, &view, &Filters::default()).is_empty());
}

#[test]
fn absent_configs_are_marked_absent() {
    let set = consumed_set(&refs(&[(SECRET, "later", None)]), &ns(&[]));
    assert_eq!(set[&ConfigId::new(SECRET, "later")], ConfigTrigger::Absent);
}
