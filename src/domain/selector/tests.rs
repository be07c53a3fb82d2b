use super::*;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_operator() {
    let l = labels(&[("app", "web"), ("env", "prod")]);
    for (sel, expected) in [
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app=db", false),
        ("app!=db", true),
        ("app!=web", false),
        ("env in (prod, staging)", true),
        ("env in (dev)", false),
        ("env notin (dev)", true),
        ("missing notin (dev)", true),
        ("env notin (prod)", false),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("app=web,env in (prod),!legacy", true),
        ("app=web,env=dev", false),
    ] {
        let s: Selector = sel.parse().unwrap();
        assert_eq!(s.matches(&l), expected, "{sel}");
    }
}

#[test]
fn bad_selectors_are_explained() {
    for bad in ["app=we b", "env in prod", "env in (a", "a b c", "=x", "!"] {
        let err = bad.parse::<Selector>().unwrap_err().to_string();
        assert!(err.contains("invalid label selector"), "{bad}: {err}");
    }
}

proptest! {
    #[test]
    fn never_panics(s in ".{0,60}") {
        let _ = s.parse::<Selector>().map(|sel| sel.matches(&BTreeMap::new()));
    }
}

#[test]
fn reloader_flag_forms_become_kubernetes_selectors() {
    let flags =
        |v: &[&str]| from_reloader_flags(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for (given, want) in [
        (&[][..], ""),
        (&["team=a"][..], "team=a"),
        // Legacy `key:value` and the `*` wildcard, in either spelling.
        (&["team:a"][..], "team=a"),
        (&["team:*"][..], "team"),
        (&["team=*"][..], "team"),
        (&["example.com/team:a"][..], "example.com/team=a"),
        // Repeated flags and comma lists are joined; set syntax survives the split on commas.
        (
            &["team:a", "env in (prod,dev)"][..],
            "team=a,env in (prod,dev)",
        ),
        (&["team=a,tier:*", "!legacy"][..], "team=a,tier,!legacy"),
        (&["a!=b"][..], "a!=b"),
    ] {
        let got = flags(given);
        assert_eq!(got, want, "{given:?}");
        got.parse::<Selector>().expect("a valid selector");
    }
    let s: Selector = flags(&["team:a", "tier=*"]).parse().unwrap();
    assert!(s.matches(&labels(&[("team", "a"), ("tier", "x")])));
    assert!(!s.matches(&labels(&[("team", "a")])));
}
