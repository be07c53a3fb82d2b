//! Reading Reloader's annotations into typed policies, and the rules the validating webhook enforces.
//!
//! Pure: no I/O, no clock. A bad value becomes a [`Violation`] and the field falls back to its
//! default, so the webhook, `kreload check` and the watcher all read annotations the same way and
//! none of them can panic on user input.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use regex::Regex;

use crate::domain::annotations::{
    AnnotationNames, CONFIGMAPS_EXCLUDE, ROLLOUT_STRATEGY, SECRETS_EXCLUDE,
};
use crate::domain::config::ConfigKind;

pub type Annotations = BTreeMap<String, String>;

/// Workload keys other than the reload keys ([`AnnotationNames::reload_keys`]): read from the
/// same place, ignored on the template whenever the workload has reload keys.
fn other_workload_keys(names: &AnnotationNames) -> [&str; 4] {
    [
        CONFIGMAPS_EXCLUDE,
        SECRETS_EXCLUDE,
        &names.pause_period,
        ROLLOUT_STRATEGY,
    ]
}

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
        let (m, mut bad) = Self::parse_lenient(list);
        if bad.is_empty() {
            Ok(m)
        } else {
            Err(bad.swap_remove(0))
        }
    }

    /// Every good entry, and each bad one with why: an object admitted before kreload (or with
    /// the validating webhook off) keeps the entries that work instead of losing its list.
    pub fn parse_lenient(list: &str) -> (NameMatcher, Vec<(String, String)>) {
        let mut m = NameMatcher::default();
        let mut bad = Vec::new();
        for entry in split_list(list) {
            if has_regex_meta(entry) {
                // Check the entry on its own first: wrapped, `a)|(b` would compile and match
                // any name starting with `a`.
                match Regex::new(entry).and_then(|_| Regex::new(&format!("^(?:{entry})$"))) {
                    Ok(re) => m.patterns.push(re),
                    Err(e) => {
                        bad.push((entry.to_string(), regex_reason(&e)));
                        continue;
                    }
                }
            } else {
                m.exact.insert(entry.to_string());
            }
            m.entries.push(entry.to_string());
        }
        (m, bad)
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
    /// The typed autos; `None` when absent. As in Reloader, a typed auto that is set (even to
    /// "false") keeps `--auto-reload-all` from applying to its kind.
    pub configmap_auto: Option<bool>,
    pub secret_auto: Option<bool>,
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
pub fn reload_key(names: &AnnotationNames, kind: ConfigKind) -> &str {
    match kind {
        ConfigKind::ConfigMap => &names.configmap_reload,
        ConfigKind::Secret => &names.secret_reload,
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

    pub fn typed_auto(&self, kind: ConfigKind) -> Option<bool> {
        match kind {
            ConfigKind::ConfigMap => self.configmap_auto,
            ConfigKind::Secret => self.secret_auto,
        }
    }

    /// Whether a referenced config of `kind` rolls the workload through auto: `auto: "true"`,
    /// the typed auto for `kind` true, or `--auto-reload-all` with neither `auto` nor the typed
    /// auto for `kind` set (Reloader's rule: `configmap.reloader.stakater.com/auto: "false"` opts
    /// a workload out of `--auto-reload-all` for ConfigMaps).
    pub fn auto_for(&self, kind: ConfigKind, auto_reload_all: bool) -> bool {
        self.auto == Some(true)
            || self.typed_auto(kind) == Some(true)
            || (auto_reload_all && self.auto.is_none() && self.typed_auto(kind).is_none())
    }

    /// True when some config change could roll this workload: auto through either kind,
    /// search, or a non-empty reload list.
    pub fn opted_in(&self, auto_reload_all: bool) -> bool {
        ConfigKind::ALL
            .iter()
            .any(|k| self.auto_for(*k, auto_reload_all))
            || self.search
            || !self.configmap_reload.is_empty()
            || !self.secret_reload.is_empty()
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
        "`{auto}: \"true\"` cannot be combined with `{search}: \"true\"`: remove one of them \
         (`{auto}` rolls on a change to any ConfigMap or Secret the pod spec references; \
         `{search}` rolls only on referenced ones that carry `{search_match}: \"true\"`)"
    )]
    AutoWithSearch {
        auto: String,
        search: String,
        search_match: String,
    },
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
        "`{search_match}` has no effect on a workload: it belongs on the ConfigMap or Secret \
         that should trigger workloads using `{search}`"
    )]
    MatchOnWorkload {
        search_match: String,
        search: String,
    },
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
    /// A bad value of a Secrets Store CSI key (with `--enable-csi-integration`): never denied,
    /// only ignored.
    #[error("{problem}; ignored for Secrets Store CSI rolls (the other values still apply)")]
    CsiValueIgnored { problem: String },
}

/// A parsed value with the rules it broke and the mistakes it likely contains.
#[derive(Clone, Debug)]
pub struct Parsed<T> {
    pub value: T,
    pub violations: Vec<Violation>,
    pub warnings: Vec<Warning>,
}

/// A boolean annotation, `None` when absent or bad (bad ones are recorded).
pub(crate) fn read_bool(
    violations: &mut Vec<Violation>,
    key: &str,
    value: Option<&String>,
) -> Option<bool> {
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

pub(crate) fn read_matcher(
    violations: &mut Vec<Violation>,
    key: &str,
    value: Option<&String>,
) -> NameMatcher {
    let Some(value) = value else {
        return NameMatcher::default();
    };
    let (matcher, bad) = NameMatcher::parse_lenient(value);
    violations.extend(
        bad.into_iter()
            .map(|(entry, reason)| Violation::BadReloadEntry {
                key: key.to_string(),
                entry,
                reason,
            }),
    );
    matcher
}

pub(crate) fn read_names(value: Option<&String>) -> BTreeSet<String> {
    value
        .map(|v| split_list(v).map(String::from).collect())
        .unwrap_or_default()
}

/// Reads the workload's annotations (under `names`), or its pod template's when the workload has
/// none of the reload keys (Reloader's rule). The other workload keys come from the same place;
/// when neither place has reload keys, from the workload first, then the template.
pub fn parse_workload(
    names: &AnnotationNames,
    workload: &Annotations,
    template: Option<&Annotations>,
) -> Parsed<WorkloadPolicy> {
    let has_any = |a: &Annotations, keys: &[&str]| keys.iter().any(|k| a.contains_key(*k));
    let reload_keys = names.reload_keys();
    let source = if has_any(workload, &reload_keys) {
        PolicySource::Workload
    } else if template.is_some_and(|t| has_any(t, &reload_keys)) {
        PolicySource::Template
    } else {
        PolicySource::None
    };

    let mut warnings = Vec::new();
    let search_match = names.search_match.as_str();
    if workload.contains_key(search_match) || template.is_some_and(|t| t.contains_key(search_match))
    {
        warnings.push(Warning::MatchOnWorkload {
            search_match: names.search_match.clone(),
            search: names.search.clone(),
        });
    }
    if source == PolicySource::Workload
        && template
            .is_some_and(|t| has_any(t, &reload_keys) || has_any(t, &other_workload_keys(names)))
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
    let bool_at = |v: &mut Vec<Violation>, key: &str| read_bool(v, key, get(key));
    let auto = bool_at(v, &names.auto);
    let configmap_auto = bool_at(v, &names.configmap_auto);
    let secret_auto = bool_at(v, &names.secret_auto);
    let search = bool_at(v, &names.search).unwrap_or(false);
    if auto == Some(true) && search {
        v.push(Violation::AutoWithSearch {
            auto: names.auto.clone(),
            search: names.search.clone(),
            search_match: names.search_match.clone(),
        });
    }
    let configmap_reload = read_matcher(v, &names.configmap_reload, get(&names.configmap_reload));
    let secret_reload = read_matcher(v, &names.secret_reload, get(&names.secret_reload));
    let pause_period = get(&names.pause_period).and_then(|value| {
        let d = parse_go_duration(value);
        if d.is_none() {
            v.push(Violation::BadPausePeriod {
                key: names.pause_period.clone(),
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

/// `match` / `ignore` (under `names`) on a ConfigMap or Secret.
pub fn parse_config(names: &AnnotationNames, annotations: &Annotations) -> Parsed<ConfigPolicy> {
    let mut violations = Vec::new();
    let mut read = |key: &str| read_bool(&mut violations, key, annotations.get(key));
    let matched = read(&names.search_match).unwrap_or(false);
    let ignore = read(&names.ignore).unwrap_or(false);
    Parsed {
        value: ConfigPolicy { matched, ignore },
        violations,
        warnings: Vec::new(),
    }
}

/// True when any key is an annotation the validating webhook judges (under `names`): only such
/// objects are validated (the webhook configuration's `matchConditions` say the same to the API
/// server).
pub fn has_reloader_annotations(names: &AnnotationNames, a: &Annotations) -> bool {
    a.keys().any(|k| names.is_judged(k))
}

#[cfg(test)]
mod tests;
