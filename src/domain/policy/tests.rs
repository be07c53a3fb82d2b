use super::*;
use crate::domain::annotations::{
    AUTO, CONFIGMAP_AUTO, CONFIGMAP_RELOAD, IGNORE, MATCH, PAUSE_PERIOD, PAUSED_AT, SEARCH,
    SECRET_AUTO, SECRET_RELOAD,
};
use proptest::prelude::*;

fn ann(pairs: &[(&str, &str)]) -> Annotations {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reloader's names.
fn reloader() -> AnnotationNames {
    AnnotationNames::default()
}

fn workload(pairs: &[(&str, &str)]) -> Parsed<WorkloadPolicy> {
    parse_workload(&reloader(), &ann(pairs), None)
}

fn parse_config(a: &Annotations) -> Parsed<ConfigPolicy> {
    super::parse_config(&reloader(), a)
}

// --- booleans -------------------------------------------------------------------------

#[test]
fn go_bool_spellings() {
    for s in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_bool(s), Some(true), "{s}");
    }
    for s in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_bool(s), Some(false), "{s}");
    }
    for s in [
        "yes", "no", "", " true", "true ", "tRUE", "on", "y", "2", "-1", "fAlse",
    ] {
        assert_eq!(parse_bool(s), None, "{s:?}");
    }
}

#[test]
fn every_bool_key_accepts_go_spellings() {
    for key in [AUTO, CONFIGMAP_AUTO, SECRET_AUTO, SEARCH] {
        for (s, want) in [("T", true), ("1", true), ("False", false), ("0", false)] {
            let p = workload(&[(key, s)]);
            assert!(p.violations.is_empty(), "{key}: {s}");
            let got = match key {
                AUTO => p.value.auto.unwrap(),
                CONFIGMAP_AUTO => p.value.configmap_auto.unwrap(),
                SECRET_AUTO => p.value.secret_auto.unwrap(),
                _ => p.value.search,
            };
            assert_eq!(got, want, "{key}: {s}");
        }
    }
    for key in [MATCH, IGNORE] {
        let p = parse_config(&ann(&[(key, "TRUE")]));
        assert!(p.violations.is_empty());
        assert!(p.value.matched || p.value.ignore);
    }
}

#[test]
fn bad_bool_is_a_violation_and_falls_back() {
    for key in [AUTO, CONFIGMAP_AUTO, SECRET_AUTO, SEARCH] {
        let p = workload(&[(key, "yes")]);
        assert_eq!(
            p.violations,
            vec![Violation::NotABoolean {
                key: key.into(),
                value: "yes".into()
            }]
        );
        let v = &p.value;
        assert_eq!(v.auto, None);
        assert!(v.configmap_auto.is_none() && v.secret_auto.is_none() && !v.search);
    }
    let p = parse_config(&ann(&[(MATCH, " true"), (IGNORE, "")]));
    assert_eq!(p.value, ConfigPolicy::default());
    assert_eq!(p.violations.len(), 2);
}

// --- durations ------------------------------------------------------------------------

#[test]
fn go_durations() {
    let ok = [
        ("0", 0),
        ("+0", 0),
        ("-0", 0),
        ("0s", 0),
        ("5m", 300_000_000_000),
        ("30s", 30_000_000_000),
        ("1h", 3_600_000_000_000),
        ("1h30m", 5_400_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("300ms", 300_000_000),
        ("10us", 10_000),
        ("10µs", 10_000),
        ("10μs", 10_000),
        ("7ns", 7),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("+2s", 2_000_000_000),
        ("1h1m1s1ms1us1ns", 3_661_001_001_001),
        ("2562047h47m16.854775807s", i64::MAX as u64),
    ];
    for (s, nanos) in ok {
        assert_eq!(
            parse_go_duration(s),
            Some(Duration::from_nanos(nanos)),
            "{s}"
        );
    }
    let bad = [
        "",
        "5",
        "m",
        ".",
        ".s",
        "-5m",
        "-1ns",
        "5 m",
        " 5m",
        "5m ",
        "5M",
        "1d",
        "1.2.3s",
        "++1s",
        "1e3s",
        "2562047h47m16.854775808s",
        "9223372036854775808ns",
        "99999999999999999999s",
        "1hh",
    ];
    for s in bad {
        assert_eq!(parse_go_duration(s), None, "{s:?}");
    }
}

// --- name matcher ---------------------------------------------------------------------

#[test]
fn matcher_trims_and_skips_empty_entries() {
    let m = NameMatcher::parse(" app , ,db-config,, ").unwrap();
    assert_eq!(m.entries(), ["app", "db-config"]);
    assert!(m.matches("app") && m.matches("db-config"));
    assert!(!m.matches(" app"));
    assert!(NameMatcher::parse(" , ").unwrap().is_empty());
    assert!(NameMatcher::parse("").unwrap().is_empty());
}

#[test]
fn matcher_matches_whole_names() {
    let m = NameMatcher::parse("app").unwrap();
    assert!(m.matches("app"));
    for name in ["app-2", "my-app", "ap", ""] {
        assert!(!m.matches(name), "{name}");
    }
    let m = NameMatcher::parse("app-.*").unwrap();
    assert!(m.matches("app-2") && m.matches("app-"));
    assert!(!m.matches("app") && !m.matches("my-app-2"));
    // Alternation stays inside the anchors.
    let m = NameMatcher::parse("a|b").unwrap();
    assert!(m.matches("a") && m.matches("b"));
    assert!(!m.matches("ab") && !m.matches("xa") && !m.matches("bx"));
}

#[test]
fn matcher_mixes_names_and_regexes() {
    let m = NameMatcher::parse("db, cache-[0-9]+, web.config").unwrap();
    assert!(m.matches("db") && m.matches("cache-12") && m.matches("web.config"));
    assert!(!m.matches("cache-") && !m.matches("cache-1a") && !m.matches("dbx"));
    assert_eq!(m.literal_names().collect::<Vec<_>>(), ["db"]);
}

#[test]
fn matcher_rejects_bad_regexes() {
    for list in ["ok, foo(", "[a-", "a)|(b", "*", "x{2,1}", "a\\"] {
        let (entry, reason) = NameMatcher::parse(list).unwrap_err();
        assert!(list.contains(&entry), "{list}: {entry}");
        assert!(!reason.is_empty() && !reason.contains('\n'), "{reason}");
    }
    let (entry, _) = NameMatcher::parse("ok, foo(, bar[").unwrap_err();
    assert_eq!(entry, "foo(");
}

#[test]
fn literal_names_are_plain_object_names() {
    let m = NameMatcher::parse("db,Upper,under_score,-lead,trail-,app-.*,a.b,ok-1").unwrap();
    assert_eq!(m.literal_names().collect::<Vec<_>>(), ["db", "ok-1"]);
    // Not names, yet valid (literal) regexes: admitted, matched by equality.
    assert!(m.matches("Upper") && m.matches("under_score"));
    let long = "a".repeat(254);
    assert_eq!(
        NameMatcher::parse(&long).unwrap().literal_names().count(),
        0
    );
}

// --- workload parsing -----------------------------------------------------------------

#[test]
fn reads_every_workload_field() {
    let p = workload(&[
        (AUTO, "false"),
        (CONFIGMAP_AUTO, "true"),
        (SECRET_AUTO, "true"),
        (SEARCH, "true"),
        (CONFIGMAP_RELOAD, "cm-a"),
        (SECRET_RELOAD, "s-.*"),
        (CONFIGMAPS_EXCLUDE, " x , y ,"),
        (SECRETS_EXCLUDE, "z"),
        (PAUSE_PERIOD, "5m"),
        (ROLLOUT_STRATEGY, "restart"),
    ]);
    assert!(p.violations.is_empty() && p.warnings.is_empty());
    let v = p.value;
    assert_eq!(v.auto, Some(false));
    assert!(v.configmap_auto == Some(true) && v.secret_auto == Some(true) && v.search);
    assert!(v.configmap_reload.matches("cm-a") && v.secret_reload.matches("s-1"));
    assert_eq!(
        v.configmaps_exclude,
        BTreeSet::from(["x".into(), "y".into()])
    );
    assert!(v.excludes(ConfigKind::Secret, "z") && !v.excludes(ConfigKind::ConfigMap, "z"));
    assert_eq!(v.pause_period, Some(Duration::from_secs(300)));
    assert_eq!(v.rollout_strategy, RolloutStrategy::Restart);
    assert_eq!(v.source, PolicySource::Workload);
}

#[test]
fn defaults_when_nothing_is_set() {
    let p = parse_workload(&reloader(), &ann(&[("unrelated", "x")]), Some(&ann(&[])));
    assert!(p.violations.is_empty() && p.warnings.is_empty());
    let v = p.value;
    assert_eq!(v.source, PolicySource::None);
    assert_eq!(v.auto, None);
    assert!(!v.opted_in(false) && v.opted_in(true));
    assert_eq!(v.rollout_strategy, RolloutStrategy::Rollout);
    assert_eq!(v.pause_period, None);
}

#[test]
fn template_is_read_when_workload_has_no_reload_key() {
    let w = ann(&[(PAUSE_PERIOD, "1h")]);
    let t = ann(&[(AUTO, "true"), (PAUSE_PERIOD, "5m"), (SECRETS_EXCLUDE, "s")]);
    let p = parse_workload(&reloader(), &w, Some(&t));
    assert!(p.warnings.is_empty());
    assert_eq!(p.value.source, PolicySource::Template);
    assert_eq!(p.value.auto, Some(true));
    // The other keys come from the same place as the reload keys.
    assert_eq!(p.value.pause_period, Some(Duration::from_secs(300)));
    assert!(p.value.excludes(ConfigKind::Secret, "s"));
}

#[test]
fn without_reload_keys_other_keys_come_from_workload_then_template() {
    let w = ann(&[(PAUSE_PERIOD, "1h")]);
    let t = ann(&[(PAUSE_PERIOD, "5m"), (ROLLOUT_STRATEGY, "restart")]);
    let p = parse_workload(&reloader(), &w, Some(&t));
    assert_eq!(p.value.source, PolicySource::None);
    assert_eq!(p.value.pause_period, Some(Duration::from_secs(3600)));
    assert_eq!(p.value.rollout_strategy, RolloutStrategy::Restart);
}

#[test]
fn both_places_warns_and_ignores_template() {
    let w = ann(&[(SECRET_RELOAD, "s")]);
    let t = ann(&[(AUTO, "nonsense"), (PAUSE_PERIOD, "bad")]);
    let p = parse_workload(&reloader(), &w, Some(&t));
    assert_eq!(p.value.source, PolicySource::Workload);
    assert_eq!(p.warnings, vec![Warning::TemplateAnnotationsIgnored]);
    // Only what is read is validated.
    assert!(p.violations.is_empty());
    assert_eq!(p.value.auto, None);
    assert_eq!(p.value.pause_period, None);
    // A template carrying only non-reload workload keys is ignored too.
    let t = ann(&[(ROLLOUT_STRATEGY, "restart")]);
    let p = parse_workload(&reloader(), &w, Some(&t));
    assert_eq!(p.warnings, vec![Warning::TemplateAnnotationsIgnored]);
    assert_eq!(p.value.rollout_strategy, RolloutStrategy::Rollout);
}

fn match_on_workload() -> Warning {
    Warning::MatchOnWorkload {
        search_match: MATCH.into(),
        search: SEARCH.into(),
    }
}

fn auto_with_search() -> Violation {
    Violation::AutoWithSearch {
        auto: AUTO.into(),
        search: SEARCH.into(),
        search_match: MATCH.into(),
    }
}

#[test]
fn match_on_workload_warns() {
    let p = workload(&[(MATCH, "true"), (AUTO, "true")]);
    assert_eq!(p.warnings, vec![match_on_workload()]);
    assert!(p.violations.is_empty());
    let p = parse_workload(&reloader(), &ann(&[]), Some(&ann(&[(MATCH, "true")])));
    assert_eq!(p.warnings, vec![match_on_workload()]);
}

#[test]
fn auto_with_search_is_denied_only_when_both_true() {
    let p = workload(&[(AUTO, "True"), (SEARCH, "1")]);
    assert_eq!(p.violations, vec![auto_with_search()]);
    assert!(
        workload(&[(AUTO, "false"), (SEARCH, "true")])
            .violations
            .is_empty()
    );
    assert!(
        workload(&[(AUTO, "true"), (SEARCH, "false")])
            .violations
            .is_empty()
    );
}

#[test]
fn a_bad_reload_entry_is_skipped_and_the_rest_of_the_list_kept() {
    let p = workload(&[(CONFIGMAP_RELOAD, "good, bad(, app-.*")]);
    assert_eq!(p.violations.len(), 1, "{:?}", p.violations);
    let list = &p.value.configmap_reload;
    assert!(list.matches("good") && list.matches("app-1") && !list.matches("bad("));
    assert_eq!(list.entries(), ["good", "app-.*"]);
}

#[test]
fn bad_values_are_violations_with_defaults() {
    let p = workload(&[
        (CONFIGMAP_RELOAD, "good, bad("),
        (SECRET_RELOAD, "[x"),
        (PAUSE_PERIOD, "5 minutes"),
        (ROLLOUT_STRATEGY, "Restart"),
    ]);
    assert_eq!(p.violations.len(), 4, "{:?}", p.violations);
    assert!(matches!(&p.violations[0],
        Violation::BadReloadEntry { key, entry, .. } if key == CONFIGMAP_RELOAD && entry == "bad("));
    assert!(matches!(&p.violations[1],
        Violation::BadReloadEntry { key, entry, .. } if key == SECRET_RELOAD && entry == "[x"));
    assert_eq!(
        p.violations[2],
        Violation::BadPausePeriod {
            key: PAUSE_PERIOD.into(),
            value: "5 minutes".into()
        }
    );
    assert_eq!(
        p.violations[3],
        Violation::BadRolloutStrategy {
            key: ROLLOUT_STRATEGY.into(),
            value: "Restart".into()
        }
    );
    let v = p.value;
    // The good entries stay; the bad ones are dropped.
    assert_eq!(v.configmap_reload.entries(), ["good"]);
    assert!(v.secret_reload.is_empty());
    assert_eq!(v.pause_period, None);
    assert_eq!(v.rollout_strategy, RolloutStrategy::Rollout);
    // Still the workload's: the reload keys are present.
    assert_eq!(v.source, PolicySource::Workload);
}

#[test]
fn rollout_strategy_values() {
    assert_eq!(
        workload(&[(ROLLOUT_STRATEGY, "rollout")])
            .value
            .rollout_strategy,
        RolloutStrategy::Rollout
    );
    for bad in ["", "RESTART", " restart", "recreate"] {
        assert_eq!(workload(&[(ROLLOUT_STRATEGY, bad)]).violations.len(), 1);
    }
}

#[test]
fn policy_accessors() {
    let v = workload(&[(CONFIGMAP_RELOAD, "c"), (SECRET_AUTO, "true")]).value;
    assert!(v.reload_list(ConfigKind::ConfigMap).matches("c"));
    assert!(!v.reload_list(ConfigKind::Secret).matches("c"));
    assert_eq!(v.typed_auto(ConfigKind::Secret), Some(true));
    assert_eq!(v.typed_auto(ConfigKind::ConfigMap), None);
    assert_eq!(
        reload_key(&reloader(), ConfigKind::ConfigMap),
        CONFIGMAP_RELOAD
    );
    assert_eq!(reload_key(&reloader(), ConfigKind::Secret), SECRET_RELOAD);
}

#[test]
fn opted_in_cases() {
    let opted = |pairs: &[(&str, &str)], all| workload(pairs).value.opted_in(all);
    assert!(opted(&[(AUTO, "true")], false));
    assert!(!opted(&[(AUTO, "false")], true));
    assert!(opted(&[(CONFIGMAP_AUTO, "true")], false));
    assert!(opted(&[(SECRET_AUTO, "true")], false));
    assert!(opted(&[(SEARCH, "true")], false));
    assert!(opted(&[(CONFIGMAP_RELOAD, "a")], false));
    assert!(opted(&[(SECRET_RELOAD, "a")], false));
    assert!(opted(&[(AUTO, "false"), (SECRET_RELOAD, "a")], true));
    assert!(!opted(&[(CONFIGMAP_RELOAD, " , ")], false));
    assert!(!opted(&[(CONFIGMAPS_EXCLUDE, "a")], false));
}

#[test]
fn config_policy() {
    let p = parse_config(&ann(&[(MATCH, "true"), (IGNORE, "false")]));
    assert!(p.violations.is_empty() && p.warnings.is_empty());
    assert_eq!(
        p.value,
        ConfigPolicy {
            matched: true,
            ignore: false
        }
    );
    let p = parse_config(&ann(&[(IGNORE, "yes")]));
    assert_eq!(
        p.violations,
        vec![Violation::NotABoolean {
            key: IGNORE.into(),
            value: "yes".into()
        }]
    );
    assert!(!p.value.ignore);
}

#[test]
fn detects_reloader_annotations() {
    let has = |pairs: &[(&str, &str)]| has_reloader_annotations(&reloader(), &ann(pairs));
    assert!(has(&[(MATCH, "true")]));
    assert!(has(&[(CONFIGMAPS_EXCLUDE, "x")]));
    assert!(has(&[(PAUSE_PERIOD, "x")]));
    assert!(!has(&[("kreload.dev/config-hash", "v1")]));
    assert!(
        !has(&[(PAUSED_AT, "2024-01-01T00:00:00Z")]),
        "kreload's own"
    );
    assert!(!has(&[]));
}

// --- custom names (Reloader's --*-annotation flags) -------------------------------------

/// Every renamable annotation outside Reloader's domain, as `--auto-annotation=example.com/auto`
/// and so on would set them.
fn custom() -> AnnotationNames {
    AnnotationNames {
        auto: "example.com/auto".into(),
        configmap_auto: "example.com/configmap-auto".into(),
        secret_auto: "example.com/secret-auto".into(),
        search: "example.com/search".into(),
        search_match: "example.com/match".into(),
        configmap_reload: "example.com/configmap".into(),
        secret_reload: "example.com/secret".into(),
        ignore: "example.com/ignore".into(),
        pause_period: "example.com/pause-period".into(),
        paused_at: "example.com/paused-at".into(),
    }
}

#[test]
fn custom_names_are_read_and_reloaders_names_are_not() {
    let names = custom();
    let read = |pairs: &[(&str, &str)]| parse_workload(&names, &ann(pairs), None);
    let p = read(&[
        ("example.com/configmap-auto", "true"),
        ("example.com/secret-auto", "false"),
        ("example.com/configmap", "app-.*"),
        ("example.com/secret", "db"),
        ("example.com/pause-period", "5m"),
        (CONFIGMAPS_EXCLUDE, "old"),
    ]);
    assert!(p.violations.is_empty(), "{:?}", p.violations);
    let v = &p.value;
    assert_eq!((v.configmap_auto, v.secret_auto), (Some(true), Some(false)));
    assert!(v.configmap_reload.matches("app-1") && v.secret_reload.matches("db"));
    assert_eq!(v.pause_period, Some(std::time::Duration::from_secs(300)));
    assert!(
        v.excludes(ConfigKind::ConfigMap, "old"),
        "exclude keeps its name"
    );
    assert_eq!(read(&[("example.com/auto", "true")]).value.auto, Some(true));
    assert!(read(&[("example.com/search", "true")]).value.search);

    // Reloader's names mean nothing under other names: not read, not judged, not opted in.
    let p = read(&[
        (AUTO, "true"),
        (SEARCH, "maybe"),
        (CONFIGMAP_RELOAD, "app-("),
        (PAUSE_PERIOD, "soon"),
    ]);
    assert!(p.violations.is_empty(), "{:?}", p.violations);
    assert_eq!(p.value.auto, None);
    assert!(p.value.configmap_reload.is_empty() && p.value.pause_period.is_none());
    assert!(!p.value.opted_in(false));
    assert!(p.value.opted_in(true), "--auto-reload-all still reaches it");

    // ConfigMaps and Secrets: `match` and `ignore` under their names.
    let config = |pairs: &[(&str, &str)]| super::parse_config(&names, &ann(pairs));
    let p = config(&[("example.com/match", "true"), ("example.com/ignore", "1")]);
    assert_eq!(
        p.value,
        ConfigPolicy {
            matched: true,
            ignore: true
        }
    );
    let p = config(&[(MATCH, "true"), (IGNORE, "true")]);
    assert_eq!(p.value, ConfigPolicy::default());
    assert!(p.violations.is_empty());
}

#[test]
fn custom_reload_keys_decide_where_annotations_are_read() {
    let names = custom();
    // Reloader's `auto` is no reload key under custom names: the template's are read.
    let w = ann(&[(AUTO, "true")]);
    let t = ann(&[
        ("example.com/auto", "true"),
        ("example.com/pause-period", "1m"),
    ]);
    let p = parse_workload(&names, &w, Some(&t));
    assert_eq!(p.value.source, PolicySource::Template);
    assert_eq!(p.value.auto, Some(true));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // A custom reload key on the workload: the template's keys (custom ones) are ignored.
    let w = ann(&[("example.com/secret", "db")]);
    let p = parse_workload(&names, &w, Some(&t));
    assert_eq!(p.value.source, PolicySource::Workload);
    assert_eq!(p.value.auto, None);
    assert_eq!(p.warnings, vec![Warning::TemplateAnnotationsIgnored]);
}

#[test]
fn rules_and_messages_name_the_custom_keys() {
    let names = custom();
    let read = |pairs: &[(&str, &str)]| parse_workload(&names, &ann(pairs), None);
    let p = read(&[("example.com/auto", "true"), ("example.com/search", "true")]);
    assert_eq!(
        p.violations,
        vec![Violation::AutoWithSearch {
            auto: "example.com/auto".into(),
            search: "example.com/search".into(),
            search_match: "example.com/match".into(),
        }]
    );
    let msg = p.violations[0].to_string();
    assert!(
        msg.contains("`example.com/auto: \"true\"`")
            && msg.contains("`example.com/search: \"true\"`")
            && msg.contains("`example.com/match: \"true\"`")
            && !msg.contains("stakater"),
        "{msg}"
    );
    let p = read(&[("example.com/auto", "yes")]);
    assert_eq!(
        p.violations,
        vec![Violation::NotABoolean {
            key: "example.com/auto".into(),
            value: "yes".into()
        }]
    );
    let p = read(&[("example.com/configmap", "app-(")]);
    assert!(
        matches!(&p.violations[..], [Violation::BadReloadEntry { key, .. }] if key == "example.com/configmap")
    );
    let p = read(&[("example.com/pause-period", "soon")]);
    assert!(
        matches!(&p.violations[..], [Violation::BadPausePeriod { key, .. }] if key == "example.com/pause-period")
    );
    let p = read(&[("example.com/match", "true")]);
    let msg = p.warnings[0].to_string();
    assert!(
        msg.contains("example.com/match") && msg.contains("example.com/search"),
        "{msg}"
    );
    let p = super::parse_config(&names, &ann(&[("example.com/ignore", "yes")]));
    assert_eq!(
        p.violations,
        vec![Violation::NotABoolean {
            key: "example.com/ignore".into(),
            value: "yes".into()
        }]
    );
    assert_eq!(reload_key(&names, ConfigKind::Secret), "example.com/secret");
}

#[test]
fn judged_annotations_follow_the_custom_names() {
    let names = custom();
    let has = |pairs: &[(&str, &str)]| has_reloader_annotations(&names, &ann(pairs));
    assert!(has(&[("example.com/auto", "true")]));
    assert!(has(&[("example.com/ignore", "true")]));
    // Reloader's domain is still judged (the exclude lists and rollout-strategy keep their
    // names), but not kreload's own paused-at, under either name.
    assert!(has(&[(CONFIGMAPS_EXCLUDE, "x")]));
    assert!(has(&[(AUTO, "x")]));
    assert!(!has(&[("example.com/paused-at", "2024-01-01T00:00:00Z")]));
    assert!(!has(&[("example.com/other", "true")]));
    assert_eq!(
        names.outside_domain(),
        [
            "example.com/auto",
            "example.com/configmap",
            "example.com/configmap-auto",
            "example.com/ignore",
            "example.com/match",
            "example.com/pause-period",
            "example.com/search",
            "example.com/secret",
            "example.com/secret-auto",
        ]
    );
    assert!(reloader().outside_domain().is_empty());
}

#[test]
fn names_must_be_distinct_and_not_taken() {
    let flags = [
        "--auto-annotation",
        "--configmap-auto-annotation",
        "--secret-auto-annotation",
        "--auto-search-annotation",
        "--search-match-annotation",
        "--configmap-annotation",
        "--secret-annotation",
        "--ignore-annotation",
        "--pause-deployment-annotation",
        "--pause-deployment-time-annotation",
    ];
    assert_eq!(reloader().check(&flags), Ok(()));
    assert_eq!(custom().check(&flags), Ok(()));
    // Swapped names are still distinct.
    let swapped = AnnotationNames {
        auto: SEARCH.into(),
        search: AUTO.into(),
        ..reloader()
    };
    assert_eq!(swapped.check(&flags), Ok(()));
    let twice = AnnotationNames {
        search: AUTO.into(),
        ..reloader()
    };
    let err = twice.check(&flags).unwrap_err();
    assert!(
        err.contains("--auto-annotation and --auto-search-annotation") && err.contains(AUTO),
        "{err}"
    );
    for taken in [
        "kreload.dev/config-hash",
        "kreload.dev/accounted-hash",
        CONFIGMAPS_EXCLUDE,
        SECRETS_EXCLUDE,
        ROLLOUT_STRATEGY,
    ] {
        let names = AnnotationNames {
            ignore: taken.into(),
            ..reloader()
        };
        let err = names.check(&flags).unwrap_err();
        assert!(
            err.starts_with(&format!("--ignore-annotation={taken}:")),
            "{err}"
        );
    }
}

// --- messages -------------------------------------------------------------------------

#[test]
fn violation_messages_name_key_value_and_fix() {
    let msg = auto_with_search().to_string();
    assert!(msg.contains(AUTO) && msg.contains(SEARCH) && msg.contains(MATCH));
    assert!(msg.contains("remove one"));

    let cases = [
        (
            Violation::NotABoolean {
                key: AUTO.into(),
                value: "yes".into(),
            },
            "\"yes\"",
            "T/F",
        ),
        (
            Violation::BadReloadEntry {
                key: SECRET_RELOAD.into(),
                entry: "foo(".into(),
                reason: "unclosed group".into(),
            },
            "\"foo(\"",
            "unclosed group",
        ),
        (
            Violation::BadPausePeriod {
                key: PAUSE_PERIOD.into(),
                value: "5 minutes".into(),
            },
            "\"5 minutes\"",
            "\"5m\"",
        ),
        (
            Violation::BadRolloutStrategy {
                key: ROLLOUT_STRATEGY.into(),
                value: "Restart".into(),
            },
            "\"Restart\"",
            "\"restart\"",
        ),
    ];
    for (v, value, fix) in cases {
        let msg = v.to_string();
        let key = match &v {
            Violation::NotABoolean { key, .. }
            | Violation::BadReloadEntry { key, .. }
            | Violation::BadPausePeriod { key, .. }
            | Violation::BadRolloutStrategy { key, .. } => key,
            Violation::AutoWithSearch { .. } => unreachable!(),
        };
        assert!(msg.contains(key.as_str()), "{msg}");
        assert!(msg.contains(value), "{msg}");
        assert!(msg.contains(fix), "{msg}");
    }
    // An empty or padded value is visible in the message.
    let msg = workload(&[(SEARCH, " true")]).violations[0].to_string();
    assert!(msg.contains("\" true\""), "{msg}");
}

#[test]
fn bad_entry_message_from_parsing() {
    let p = workload(&[(CONFIGMAP_RELOAD, "app-(")]);
    let msg = p.violations[0].to_string();
    assert!(
        msg.contains(CONFIGMAP_RELOAD) && msg.contains("\"app-(\""),
        "{msg}"
    );
    assert!(!msg.contains('\n') && !msg.contains("^(?:"), "{msg}");
}

#[test]
fn warning_messages() {
    let msg = match_on_workload().to_string();
    assert!(msg.contains(MATCH) && msg.contains("ConfigMap or Secret"));
    assert!(
        Warning::TemplateAnnotationsIgnored
            .to_string()
            .contains("ignored")
    );
    let msg = Warning::NoSuchConfig {
        key: CONFIGMAP_RELOAD.into(),
        kind: ConfigKind::ConfigMap,
        name: "app-cfg".into(),
    }
    .to_string();
    assert!(
        msg.contains(CONFIGMAP_RELOAD) && msg.contains("ConfigMap") && msg.contains("\"app-cfg\"")
    );
}

// --- properties -----------------------------------------------------------------------

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            reloader()
                .reload_keys()
                .iter()
                .chain(&other_workload_keys(&reloader()))
                .chain(&[MATCH, IGNORE])
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
        ),
        any::<String>(),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9.*+?()\\[\\]{}|^$\\\\, -]{0,24}",
        "[-+]?[0-9.]{0,6}(ns|us|µs|ms|s|m|h|d)?[0-9.]{0,4}[smh]?",
        prop::sample::select(vec!["true".to_string(), "false".into(), "yes".into()]),
    ]
}

fn annotations() -> impl Strategy<Value = Annotations> {
    prop::collection::btree_map(key(), value(), 0..8)
}

proptest! {
    #[test]
    fn parse_workload_never_panics(w in annotations(), t in prop::option::of(annotations())) {
        let p = parse_workload(&reloader(), &w, t.as_ref());
        // A bad value never leaves a half-set field behind.
        if p.violations.is_empty() && p.value.auto == Some(true) {
            prop_assert!(!p.value.search);
        }
        for v in &p.violations {
            prop_assert!(!v.to_string().is_empty());
        }
    }

    #[test]
    fn parse_config_never_panics(a in annotations()) {
        let p = parse_config(&a);
        prop_assert!(p.violations.len() <= 2);
    }

    #[test]
    fn name_matcher_never_panics(list in value(), name in value()) {
        if let Ok(m) = NameMatcher::parse(&list) {
            let _ = m.matches(&name);
            prop_assert!(m.literal_names().all(|n| m.matches(n)));
        }
    }

    #[test]
    fn parse_go_duration_never_panics(s in value()) {
        let _ = parse_go_duration(&s);
    }

    #[test]
    fn durations_add_up(h in 0u64..10_000, m in 0u64..100, s in 0u64..100, ms in 0u64..1000) {
        let text = format!("{h}h{m}m{s}s{ms}ms");
        let want = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
        prop_assert_eq!(parse_go_duration(&text), Some(want));
    }

    #[test]
    fn literal_entries_match_only_themselves(
        a in "[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?",
        b in "[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?",
    ) {
        let m = NameMatcher::parse(&format!(" {a} ,")).unwrap();
        prop_assert!(m.matches(&a));
        prop_assert_eq!(m.matches(&b), a == b);
        prop_assert_eq!(m.literal_names().collect::<Vec<_>>(), vec![a.as_str()]);
    }
}
