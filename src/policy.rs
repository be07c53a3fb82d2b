//! Reading Reloader's annotations into typed policies, and the rules the validating webhook enforces.
//!
//! Pure: no I/O, no clock. A bad value becomes a [`Violation`] and the field falls back to its
//! default, so the webhook, `kreload check` and the watcher all read annotations the same way and
//! none of them can panic on user input.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use regex::Regex;

use crate::annotations::{
    AUTO, CONFIGMAP_AUTO, CONFIGMAP_RELOAD, CONFIGMAPS_EXCLUDE, IGNORE, MATCH, PAUSE_PERIOD,
    RELOAD_KEYS, RELOADER_DOMAIN, ROLLOUT_STRATEGY, SEARCH, SECRET_AUTO, SECRET_RELOAD,
    SECRETS_EXCLUDE,
};
use crate::model::ConfigKind;

pub type Annotations = BTreeMap<String, String>;

/// Workload keys other than [`RELOAD_KEYS`]: read from the same place, ignored on the template
/// whenever the workload has reload keys.
const OTHER_WORKLOAD_KEYS: [&str; 4] = [
    CONFIGMAPS_EXCLUDE,
    SECRETS_EXCLUDE,
    PAUSE_PERIOD,
    ROLLOUT_STRATEGY,
];

/// Go's `strconv.ParseBool`: Reloader reads booleans with it, so existing manifests may use any of
/// its spellings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration` (what Reloader uses for the pause period), restricted to
/// non-negative durations. `None` on bad input or overflow.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    // Go's Duration is an i64 of nanoseconds; magnitudes up to 2^63 are accumulated, as in Go.
    const LIMIT: u64 = 1 << 63;
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let mut total: u64 = 0;
    while !rest.is_empty() {
        // [0-9]*
        let n = digits(rest);
        let mut v: u64 = 0;
        for c in rest[..n].bytes() {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            if v > LIMIT {
                return None;
            }
        }
        let has_int = n > 0;
        rest = &rest[n..];
        // (\.[0-9]*)? : the fraction stops gaining precision on overflow, as in Go.
        let (mut frac, mut scale, mut has_frac) = (0u64, 1f64, false);
        if let Some(after_dot) = rest.strip_prefix('.') {
            let n = digits(after_dot);
            has_frac = n > 0;
            let mut overflow = false;
            for c in after_dot[..n].bytes() {
                let next = frac
                    .checked_mul(10)
                    .and_then(|x| x.checked_add(u64::from(c - b'0')));
                match next {
                    Some(y) if !overflow && y <= LIMIT => {
                        frac = y;
                        scale *= 10.0;
                    }
                    _ => overflow = true,
                }
            }
            rest = &after_dot[n..];
        }
        if !has_int && !has_frac {
            return None;
        }
        // The unit runs up to the next digit or dot, which are ASCII, so slicing stays on a char
        // boundary.
        let unit_len = rest
            .bytes()
            .take_while(|c| *c != b'.' && !c.is_ascii_digit())
            .count();
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        if v > LIMIT / unit {
            return None;
        }
        v *= unit;
        if frac > 0 {
            v += (frac as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return None;
            }
        }
        total = total.checked_add(v).filter(|t| *t <= LIMIT)?;
    }
    match (neg, total) {
        (_, 0) => Some(Duration::ZERO),
        (true, _) => None,
        (false, t) if t < LIMIT => Some(Duration::from_nanos(t)),
        _ => None,
    }
}

/// Comma list, entries trimmed, empty entries skipped (Reloader's reading of every list).
fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// Characters that make an entry a regular expression rather than a plain name. `-` is not one:
/// it is only special inside a class, and most object names contain it.
fn has_regex_meta(s: &str) -> bool {
    s.contains([
        '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
    ])
}

/// A Kubernetes object name: DNS-1123 subdomain.
fn is_dns1123_subdomain(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            matches!((b.first(), b.last()), (Some(&f), Some(&l)) if alnum(f) && alnum(l))
                && b.iter().all(|&c| alnum(c) || c == b'-')
        })
}

/// The last line of a regex error ("unclosed group", ...): the full message is a multi-line
/// diagram that reads badly in an admission response.
fn regex_reason(e: &regex::Error) -> String {
    let msg = e.to_string();
    msg.lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .unwrap_or(msg.trim())
        .to_string()
}

/// A reload-list: each entry is a name or a regular expression matched against the whole name.
#[derive(Clone, Debug, Default)]
pub struct NameMatcher {
    entries: Vec<String>,
    /// Entries without regex metacharacters: a regex of them is plain equality, so a set lookup
    /// answers for them and the common case never runs a regex.
    exact: HashSet<String>,
    patterns: Vec<Regex>,
}

impl NameMatcher {
    /// Errs with the first entry that is neither a name nor a regex, and why.
    pub fn parse(list: &str) -> Result<NameMatcher, (String, String)> {
        let mut m = NameMatcher::default();
        for entry in split_list(list) {
            if has_regex_meta(entry) {
                // Check the entry on its own first: wrapped, `a)|(b` would compile and match
                // any name starting with `a`.
                let re = Regex::new(entry)
                    .and_then(|_| Regex::new(&format!("^(?:{entry})$")))
                    .map_err(|e| (entry.to_string(), regex_reason(&e)))?;
                m.patterns.push(re);
            } else {
                m.exact.insert(entry.to_string());
            }
            m.entries.push(entry.to_string());
        }
        Ok(m)
    }

    pub fn matches(&self, name: &str) -> bool {
        self.exact.contains(name) || self.patterns.iter().any(|re| re.is_match(name))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Entries that are plain object names (valid DNS-1123 subdomain, no regex metacharacters),
    /// for the warning about names that no object has. Names with a dot are regexes here (the dot
    /// matches any character), so they are not reported.
    pub fn literal_names(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .map(String::as_str)
            .filter(|e| !has_regex_meta(e) && is_dns1123_subdomain(e))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RolloutStrategy {
    /// Roll by changing the pod template.
    #[default]
    Rollout,
    /// Argo Rollouts: roll by setting `spec.restartAt`.
    Restart,
}

/// Where the reload annotations were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicySource {
    #[default]
    None,
    Workload,
    Template,
}

/// A workload's reload annotations, typed.
#[derive(Clone, Debug, Default)]
pub struct WorkloadPolicy {
    /// `None` when absent: only then does `--auto-reload-all` apply.
    pub auto: Option<bool>,
    pub configmap_auto: bool,
    pub secret_auto: bool,
    pub search: bool,
    pub configmap_reload: NameMatcher,
    pub secret_reload: NameMatcher,
    pub configmaps_exclude: BTreeSet<String>,
    pub secrets_exclude: BTreeSet<String>,
    pub pause_period: Option<Duration>,
    pub rollout_strategy: RolloutStrategy,
    pub source: PolicySource,
}

/// The reload-list annotation key for a kind (for [`Warning::NoSuchConfig`]).
pub fn reload_key(kind: ConfigKind) -> &'static str {
    match kind {
        ConfigKind::ConfigMap => CONFIGMAP_RELOAD,
        ConfigKind::Secret => SECRET_RELOAD,
    }
}

impl WorkloadPolicy {
    pub fn reload_list(&self, kind: ConfigKind) -> &NameMatcher {
        match kind {
            ConfigKind::ConfigMap => &self.configmap_reload,
            ConfigKind::Secret => &self.secret_reload,
        }
    }

    pub fn excludes(&self, kind: ConfigKind, name: &str) -> bool {
        match kind {
            ConfigKind::ConfigMap => self.configmaps_exclude.contains(name),
            ConfigKind::Secret => self.secrets_exclude.contains(name),
        }
    }

    pub fn typed_auto(&self, kind: ConfigKind) -> bool {
        match kind {
            ConfigKind::ConfigMap => self.configmap_auto,
            ConfigKind::Secret => self.secret_auto,
        }
    }

    /// True when some config change could roll this workload: auto true, a typed auto, search, a
    /// non-empty reload list, or (auto absent and `auto_reload_all`).
    pub fn opted_in(&self, auto_reload_all: bool) -> bool {
        self.auto == Some(true)
            || self.configmap_auto
            || self.secret_auto
            || self.search
            || !self.configmap_reload.is_empty()
            || !self.secret_reload.is_empty()
            || (self.auto.is_none() && auto_reload_all)
    }
}

/// A ConfigMap's or Secret's own annotations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigPolicy {
    pub matched: bool,
    pub ignore: bool,
}

/// A rule broken: the validating webhook denies with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error(
        "`{AUTO}: \"true\"` cannot be combined with `{SEARCH}: \"true\"`: remove one of them \
         (`{AUTO}` rolls on a change to any ConfigMap or Secret the pod spec references; \
         `{SEARCH}` rolls only on referenced ones that carry `{MATCH}: \"true\"`)"
    )]
    AutoWithSearch,
    #[error(
        "`{key}: {value:?}` is not a boolean: use \"true\" or \"false\" \
         (accepted spellings: true/false, True/False, TRUE/FALSE, t/f, T/F, 1/0)"
    )]
    NotABoolean { key: String, value: String },
    #[error(
        "`{key}`: entry {entry:?} is neither a valid name nor a valid regular expression \
         ({reason}): fix it, or escape special characters with a backslash"
    )]
    BadReloadEntry {
        key: String,
        entry: String,
        reason: String,
    },
    #[error(
        "`{key}: {value:?}` is not a duration: use a non-negative Go duration such as \
         \"5m\", \"30s\" or \"1h\""
    )]
    BadPausePeriod { key: String, value: String },
    #[error(
        "`{key}: {value:?}` is not a rollout strategy: use \"rollout\" (change the pod \
         template, the default) or \"restart\" (set spec.restartAt)"
    )]
    BadRolloutStrategy { key: String, value: String },
}

/// A likely mistake: admitted, with an admission warning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Warning {
    #[error(
        "`{MATCH}` has no effect on a workload: it belongs on the ConfigMap or Secret that \
         should trigger workloads using `{SEARCH}`"
    )]
    MatchOnWorkload,
    #[error(
        "reload annotations are set on both the workload and its pod template: the pod \
         template's are ignored; keep them in the workload's metadata.annotations only"
    )]
    TemplateAnnotationsIgnored,
    #[error(
        "`{key}` names {kind} {name:?}, but no {kind} of that name exists in this namespace: \
         check the spelling (a {kind} created later with that name will still trigger a roll)"
    )]
    NoSuchConfig {
        key: String,
        kind: ConfigKind,
        name: String,
    },
}

/// A parsed value with the rules it broke and the mistakes it likely contains.
#[derive(Clone, Debug)]
pub struct Parsed<T> {
    pub value: T,
    pub violations: Vec<Violation>,
    pub warnings: Vec<Warning>,
}

/// A boolean annotation, `None` when absent or bad (bad ones are recorded).
fn read_bool(violations: &mut Vec<Violation>, key: &str, value: Option<&String>) -> Option<bool> {
    let value = value?;
    let parsed = parse_bool(value);
    if parsed.is_none() {
        violations.push(Violation::NotABoolean {
            key: key.to_string(),
            value: value.clone(),
        });
    }
    parsed
}

fn read_matcher(violations: &mut Vec<Violation>, key: &str, value: Option<&String>) -> NameMatcher {
    let Some(value) = value else {
        return NameMatcher::default();
    };
    NameMatcher::parse(value).unwrap_or_else(|(entry, reason)| {
        violations.push(Violation::BadReloadEntry {
            key: key.to_string(),
            entry,
            reason,
        });
        NameMatcher::default()
    })
}

fn read_names(value: Option<&String>) -> BTreeSet<String> {
    value
        .map(|v| split_list(v).map(String::from).collect())
        .unwrap_or_default()
}

/// Reads the workload's annotations, or its pod template's when the workload has none of
/// [`RELOAD_KEYS`] (Reloader's rule). The other workload keys come from the same place; when
/// neither place has reload keys, from the workload first, then the template.
pub fn parse_workload(
    workload: &Annotations,
    template: Option<&Annotations>,
) -> Parsed<WorkloadPolicy> {
    let has_any = |a: &Annotations, keys: &[&str]| keys.iter().any(|k| a.contains_key(*k));
    let source = if has_any(workload, &RELOAD_KEYS) {
        PolicySource::Workload
    } else if template.is_some_and(|t| has_any(t, &RELOAD_KEYS)) {
        PolicySource::Template
    } else {
        PolicySource::None
    };

    let mut warnings = Vec::new();
    if workload.contains_key(MATCH) || template.is_some_and(|t| t.contains_key(MATCH)) {
        warnings.push(Warning::MatchOnWorkload);
    }
    if source == PolicySource::Workload
        && template.is_some_and(|t| has_any(t, &RELOAD_KEYS) || has_any(t, &OTHER_WORKLOAD_KEYS))
    {
        warnings.push(Warning::TemplateAnnotationsIgnored);
    }

    let get = |key: &str| match source {
        PolicySource::Workload => workload.get(key),
        PolicySource::Template => template.and_then(|t| t.get(key)),
        PolicySource::None => workload.get(key).or_else(|| template?.get(key)),
    };

    let mut violations = Vec::new();
    let v = &mut violations;
    let auto = read_bool(v, AUTO, get(AUTO));
    let configmap_auto = read_bool(v, CONFIGMAP_AUTO, get(CONFIGMAP_AUTO)).unwrap_or(false);
    let secret_auto = read_bool(v, SECRET_AUTO, get(SECRET_AUTO)).unwrap_or(false);
    let search = read_bool(v, SEARCH, get(SEARCH)).unwrap_or(false);
    if auto == Some(true) && search {
        v.push(Violation::AutoWithSearch);
    }
    let configmap_reload = read_matcher(v, CONFIGMAP_RELOAD, get(CONFIGMAP_RELOAD));
    let secret_reload = read_matcher(v, SECRET_RELOAD, get(SECRET_RELOAD));
    let pause_period = get(PAUSE_PERIOD).and_then(|value| {
        let d = parse_go_duration(value);
        if d.is_none() {
            v.push(Violation::BadPausePeriod {
                key: PAUSE_PERIOD.to_string(),
                value: value.clone(),
            });
        }
        d
    });
    let rollout_strategy = match get(ROLLOUT_STRATEGY).map(String::as_str) {
        None | Some("rollout") => RolloutStrategy::Rollout,
        Some("restart") => RolloutStrategy::Restart,
        Some(value) => {
            v.push(Violation::BadRolloutStrategy {
                key: ROLLOUT_STRATEGY.to_string(),
                value: value.to_string(),
            });
            RolloutStrategy::Rollout
        }
    };

    let value = WorkloadPolicy {
        auto,
        configmap_auto,
        secret_auto,
        search,
        configmap_reload,
        secret_reload,
        configmaps_exclude: read_names(get(CONFIGMAPS_EXCLUDE)),
        secrets_exclude: read_names(get(SECRETS_EXCLUDE)),
        pause_period,
        rollout_strategy,
        source,
    };
    Parsed {
        value,
        violations,
        warnings,
    }
}

/// `match` / `ignore` on a ConfigMap or Secret.
pub fn parse_config(annotations: &Annotations) -> Parsed<ConfigPolicy> {
    let mut violations = Vec::new();
    let matched = read_bool(&mut violations, MATCH, annotations.get(MATCH)).unwrap_or(false);
    let ignore = read_bool(&mut violations, IGNORE, annotations.get(IGNORE)).unwrap_or(false);
    Parsed {
        value: ConfigPolicy { matched, ignore },
        violations,
        warnings: Vec::new(),
    }
}

/// True when any key is a Reloader annotation: only such objects are validated.
pub fn has_reloader_annotations(a: &Annotations) -> bool {
    a.keys().any(|k| k.contains(RELOADER_DOMAIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ann(pairs: &[(&str, &str)]) -> Annotations {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn workload(pairs: &[(&str, &str)]) -> Parsed<WorkloadPolicy> {
        parse_workload(&ann(pairs), None)
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
                    CONFIGMAP_AUTO => p.value.configmap_auto,
                    SECRET_AUTO => p.value.secret_auto,
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
            assert!(!v.configmap_auto && !v.secret_auto && !v.search);
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
        assert!(v.configmap_auto && v.secret_auto && v.search);
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
        let p = parse_workload(&ann(&[("unrelated", "x")]), Some(&ann(&[])));
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
        let p = parse_workload(&w, Some(&t));
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
        let p = parse_workload(&w, Some(&t));
        assert_eq!(p.value.source, PolicySource::None);
        assert_eq!(p.value.pause_period, Some(Duration::from_secs(3600)));
        assert_eq!(p.value.rollout_strategy, RolloutStrategy::Restart);
    }

    #[test]
    fn both_places_warns_and_ignores_template() {
        let w = ann(&[(SECRET_RELOAD, "s")]);
        let t = ann(&[(AUTO, "nonsense"), (PAUSE_PERIOD, "bad")]);
        let p = parse_workload(&w, Some(&t));
        assert_eq!(p.value.source, PolicySource::Workload);
        assert_eq!(p.warnings, vec![Warning::TemplateAnnotationsIgnored]);
        // Only what is read is validated.
        assert!(p.violations.is_empty());
        assert_eq!(p.value.auto, None);
        assert_eq!(p.value.pause_period, None);
        // A template carrying only non-reload workload keys is ignored too.
        let t = ann(&[(ROLLOUT_STRATEGY, "restart")]);
        let p = parse_workload(&w, Some(&t));
        assert_eq!(p.warnings, vec![Warning::TemplateAnnotationsIgnored]);
        assert_eq!(p.value.rollout_strategy, RolloutStrategy::Rollout);
    }

    #[test]
    fn match_on_workload_warns() {
        let p = workload(&[(MATCH, "true"), (AUTO, "true")]);
        assert_eq!(p.warnings, vec![Warning::MatchOnWorkload]);
        assert!(p.violations.is_empty());
        let p = parse_workload(&ann(&[]), Some(&ann(&[(MATCH, "true")])));
        assert_eq!(p.warnings, vec![Warning::MatchOnWorkload]);
    }

    #[test]
    fn auto_with_search_is_denied_only_when_both_true() {
        let p = workload(&[(AUTO, "True"), (SEARCH, "1")]);
        assert_eq!(p.violations, vec![Violation::AutoWithSearch]);
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
        assert!(v.configmap_reload.is_empty() && v.secret_reload.is_empty());
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
        assert!(v.typed_auto(ConfigKind::Secret) && !v.typed_auto(ConfigKind::ConfigMap));
        assert_eq!(reload_key(ConfigKind::ConfigMap), CONFIGMAP_RELOAD);
        assert_eq!(reload_key(ConfigKind::Secret), SECRET_RELOAD);
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
        assert!(has_reloader_annotations(&ann(&[(MATCH, "true")])));
        assert!(has_reloader_annotations(&ann(&[(CONFIGMAPS_EXCLUDE, "x")])));
        assert!(has_reloader_annotations(&ann(&[(PAUSE_PERIOD, "x")])));
        assert!(!has_reloader_annotations(&ann(&[(
            "kreload.dev/config-hash",
            "v1"
        )])));
        assert!(!has_reloader_annotations(&ann(&[])));
    }

    // --- messages -------------------------------------------------------------------------

    #[test]
    fn violation_messages_name_key_value_and_fix() {
        let msg = Violation::AutoWithSearch.to_string();
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
                Violation::AutoWithSearch => unreachable!(),
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
        let msg = Warning::MatchOnWorkload.to_string();
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
            msg.contains(CONFIGMAP_RELOAD)
                && msg.contains("ConfigMap")
                && msg.contains("\"app-cfg\"")
        );
    }

    // --- properties -----------------------------------------------------------------------

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(
                RELOAD_KEYS
                    .iter()
                    .chain(&OTHER_WORKLOAD_KEYS)
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
            let p = parse_workload(&w, t.as_ref());
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
}
