use super::*;
use crate::domain::annotations::{
    AUTO, CONFIGMAP_AUTO, CONFIGMAP_RELOAD, CONFIGMAPS_EXCLUDE, SEARCH, SECRET_AUTO, SECRET_RELOAD,
    SECRETS_EXCLUDE,
};
use crate::domain::policy::{Annotations, NameMatcher, parse_workload};
use proptest::prelude::*;
use std::collections::BTreeSet;

use ConfigKind::{ConfigMap, Secret};

fn policy(pairs: &[(&str, &str)]) -> WorkloadPolicy {
    let a: Annotations = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let p = parse_workload(&Default::default(), &a, None);
    assert!(p.violations.is_empty(), "{:?}", p.violations);
    p.value
}

const PLAIN: ConfigPolicy = ConfigPolicy {
    matched: false,
    ignore: false,
};
const MATCHED: ConfigPolicy = ConfigPolicy {
    matched: true,
    ignore: false,
};
const IGNORED: ConfigPolicy = ConfigPolicy {
    matched: true,
    ignore: true,
};

fn d(roll: bool, step: Step) -> Decision {
    Decision { roll, step }
}

#[test]
fn step_names_are_distinct_snake_case() {
    let names: BTreeSet<_> = Step::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names.len(), Step::ALL.len());
    for s in Step::ALL {
        assert!(
            s.as_str()
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c == b'_')
        );
        assert!(s.explain().ends_with('.'));
    }
}

#[test]
fn ignore_beats_everything() {
    let p = policy(&[(AUTO, "true"), (CONFIGMAP_RELOAD, "c")]);
    assert_eq!(
        decide(&p, ConfigMap, "c", &IGNORED, true, true),
        d(false, Step::Ignored)
    );
}

#[test]
fn exclude_beats_reload_list_and_auto() {
    let p = policy(&[(CONFIGMAP_RELOAD, "c.*"), (CONFIGMAPS_EXCLUDE, "c1")]);
    assert_eq!(
        decide(&p, ConfigMap, "c1", &PLAIN, true, false),
        d(false, Step::Excluded)
    );
    assert_eq!(
        decide(&p, ConfigMap, "c2", &PLAIN, true, false),
        d(true, Step::ReloadList)
    );
    let p = policy(&[(AUTO, "true"), (SECRETS_EXCLUDE, "s")]);
    assert_eq!(
        decide(&p, Secret, "s", &PLAIN, true, false),
        d(false, Step::Excluded)
    );
    // Excludes are per kind.
    assert_eq!(
        decide(&p, ConfigMap, "s", &PLAIN, true, false),
        d(true, Step::Auto)
    );
}

#[test]
fn reload_list_matches_even_when_not_referenced() {
    let p = policy(&[(SECRET_RELOAD, "db-.*")]);
    assert_eq!(
        decide(&p, Secret, "db-pass", &PLAIN, false, false),
        d(true, Step::ReloadList)
    );
    // Per kind, and whole-name.
    assert_eq!(
        decide(&p, ConfigMap, "db-pass", &PLAIN, false, false),
        d(false, Step::NotOptedIn)
    );
    assert_eq!(
        decide(&p, Secret, "old-db-pass", &PLAIN, false, false),
        d(false, Step::NotOptedIn)
    );
}

#[test]
fn reload_list_beats_auto_false() {
    let p = policy(&[(AUTO, "false"), (CONFIGMAP_RELOAD, "c")]);
    assert_eq!(
        decide(&p, ConfigMap, "c", &PLAIN, true, true),
        d(true, Step::ReloadList)
    );
}

#[test]
fn search_needs_reference_and_match() {
    let p = policy(&[(SEARCH, "true")]);
    assert_eq!(
        decide(&p, ConfigMap, "c", &MATCHED, true, false),
        d(true, Step::Search)
    );
    assert_eq!(
        decide(&p, ConfigMap, "c", &MATCHED, false, false),
        d(false, Step::NotOptedIn)
    );
    assert_eq!(
        decide(&p, ConfigMap, "c", &PLAIN, true, false),
        d(false, Step::NotOptedIn)
    );
    // match without search does nothing.
    assert_eq!(
        decide(&policy(&[]), ConfigMap, "c", &MATCHED, true, false),
        d(false, Step::NotOptedIn)
    );
}

#[test]
fn search_unmatched_falls_through_to_auto_reload_all() {
    // auto absent, so --auto-reload-all still applies (step 6 as written).
    let p = policy(&[(SEARCH, "true")]);
    assert_eq!(
        decide(&p, ConfigMap, "c", &PLAIN, true, true),
        d(true, Step::Auto)
    );
}

#[test]
fn auto_needs_reference() {
    let p = policy(&[(AUTO, "true")]);
    assert_eq!(
        decide(&p, Secret, "s", &PLAIN, true, false),
        d(true, Step::Auto)
    );
    assert_eq!(
        decide(&p, Secret, "s", &PLAIN, false, false),
        d(false, Step::NotOptedIn)
    );
}

#[test]
fn typed_auto_is_per_kind() {
    let p = policy(&[(CONFIGMAP_AUTO, "true")]);
    assert_eq!(
        decide(&p, ConfigMap, "c", &PLAIN, true, false),
        d(true, Step::Auto)
    );
    assert_eq!(
        decide(&p, Secret, "c", &PLAIN, true, false),
        d(false, Step::NotOptedIn)
    );
    let p = policy(&[(SECRET_AUTO, "true"), (AUTO, "false")]);
    assert_eq!(
        decide(&p, Secret, "s", &PLAIN, true, false),
        d(true, Step::Auto)
    );
}

#[test]
fn auto_reload_all_respects_auto_false() {
    let unset = policy(&[]);
    assert_eq!(
        decide(&unset, ConfigMap, "c", &PLAIN, true, true),
        d(true, Step::Auto)
    );
    assert_eq!(
        decide(&unset, ConfigMap, "c", &PLAIN, true, false),
        d(false, Step::NotOptedIn)
    );
    assert_eq!(
        decide(&unset, ConfigMap, "c", &PLAIN, false, true),
        d(false, Step::NotOptedIn)
    );
    let off = policy(&[(AUTO, "false")]);
    assert_eq!(
        decide(&off, ConfigMap, "c", &PLAIN, true, true),
        d(false, Step::NotOptedIn)
    );
}

#[test]
fn a_typed_auto_set_to_false_opts_its_kind_out_of_auto_reload_all() {
    let p = policy(&[(CONFIGMAP_AUTO, "false")]);
    assert_eq!(
        decide(&p, ConfigMap, "c", &PLAIN, true, true),
        d(false, Step::NotOptedIn)
    );
    assert_eq!(
        decide(&p, Secret, "s", &PLAIN, true, true),
        d(true, Step::Auto),
        "Secrets still roll under --auto-reload-all"
    );
    assert!(p.opted_in(true) && !p.opted_in(false));
    let both = policy(&[(CONFIGMAP_AUTO, "false"), (SECRET_AUTO, "false")]);
    assert!(!both.opted_in(true));
}

fn arb_policy() -> impl Strategy<Value = WorkloadPolicy> {
    let names = || prop::collection::btree_set("[a-c]{1,2}", 0..3);
    (
        prop::option::of(any::<bool>()),
        (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            any::<bool>(),
        ),
        ("[a-c.*]{0,3}", "[a-c.*]{0,3}"),
        (names(), names()),
    )
        .prop_map(
            |(auto, (cm, s, search), (cl, sl), (ce, se))| WorkloadPolicy {
                auto,
                configmap_auto: cm,
                secret_auto: s,
                search,
                configmap_reload: NameMatcher::parse(&cl).unwrap_or_default(),
                secret_reload: NameMatcher::parse(&sl).unwrap_or_default(),
                configmaps_exclude: ce,
                secrets_exclude: se,
                ..WorkloadPolicy::default()
            },
        )
}

proptest! {
    #[test]
    fn decide_is_total_and_consistent(
        p in arb_policy(),
        secret in any::<bool>(),
        name in "[a-c]{1,2}",
        matched in any::<bool>(),
        ignore in any::<bool>(),
        referenced in any::<bool>(),
        all in any::<bool>(),
    ) {
        let kind = if secret { Secret } else { ConfigMap };
        let config = ConfigPolicy { matched, ignore };
        let got = decide(&p, kind, &name, &config, referenced, all);
        prop_assert_eq!(
            got.roll,
            matches!(got.step, Step::ReloadList | Step::Search | Step::Auto)
        );
        prop_assert_ne!(got.step, Step::GlobalFilter);
        if ignore || p.excludes(kind, &name) {
            prop_assert!(!got.roll);
        }
        // Without a reload-list match, nothing rolls for an unreferenced config.
        if !referenced && !p.reload_list(kind).matches(&name) {
            prop_assert!(!got.roll);
        }
        // A roll implies the workload is opted in.
        if got.roll {
            prop_assert!(p.opted_in(all));
        }
    }
}
