//! Kubernetes label selectors in their string form (`a=b,c!=d,e in (x,y),!f,g`), for the
//! `--resource-label-selector` and `--namespace-selector` flags.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    source: String,
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid label selector {selector:?}: {reason} (expected e.g. \"app=web,tier!=db,env in (a,b),!legacy\")"
)]
pub struct SelectorError {
    selector: String,
    reason: String,
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, &'static str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses");
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses");
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_set(rest: &str) -> Result<Vec<String>, &'static str> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or("a set must be written (v1,v2)")?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if values.iter().any(|v| !valid_value(v)) {
        return Err("invalid value in set");
    }
    Ok(values)
}

fn parse_requirement(part: &str) -> Result<Requirement, &'static str> {
    let part = part.trim();
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        return if valid_key(key) {
            Ok(Requirement::NotExists(key.to_owned()))
        } else {
            Err("invalid key")
        };
    }
    for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) {
                return Err("invalid key");
            }
            if !valid_value(v) {
                return Err("invalid value");
            }
            return Ok(if negated {
                Requirement::NotEquals(k.to_owned(), v.to_owned())
            } else {
                Requirement::Equals(k.to_owned(), v.to_owned())
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim();
    if !valid_key(key) {
        return Err("invalid key");
    }
    if rest.is_empty() {
        return Ok(Requirement::Exists(key.to_owned()));
    }
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(key.to_owned(), parse_set(set)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(Requirement::In(key.to_owned(), parse_set(set)?));
    }
    Err("unknown operator (use =, ==, !=, in, notin, or !key)")
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| SelectorError {
            selector: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.trim().is_empty() {
            return Ok(Selector::default());
        }
        let requirements = split_top_level(s)
            .map_err(error)?
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<_, _>>()
            .map_err(error)?;
        Ok(Selector {
            source: s.to_owned(),
            requirements,
        })
    }
}

/// Reloader's form of `--namespace-selector` and `--resource-label-selector`: the flag may be
/// repeated and each value is a comma list; the items are joined with commas, and two legacy
/// spellings are rewritten item by item, as Reloader does: `key:value` means `key=value`, and
/// `key:*` or `key=*` means "has the label `key`". Returns the selector in Kubernetes syntax
/// (parse it with [`Selector::from_str`]); an empty string selects everything.
pub fn from_reloader_flags(values: &[String]) -> String {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|item| {
            let trimmed = item.trim();
            if let Some((key, value)) = trimmed.split_once(':') {
                if value == "*" {
                    return key.to_owned();
                }
                return format!("{key}={value}");
            }
            match trimmed.split_once('=') {
                Some((key, "*")) => key.to_owned(),
                _ => item.to_owned(),
            }
        })
        .filter(|item| !item.trim().is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests;
