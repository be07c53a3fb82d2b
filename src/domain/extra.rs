//! Extra workload kinds (`--extra-workload GROUP/VERSION/RESOURCE:JSONPOINTER`): any API resource
//! with a pod template at that JSON pointer (a Knative Service's `/spec/template`, say) is
//! watched, stamped and rolled as the built-in kinds are.
//!
//! [`WorkloadKind`] stays a small `Copy` value: an extra kind is `WorkloadKind::Extra(i)`, an
//! index into a registry filled once at start, after discovery found the kind's name (the flag
//! names the resource, the watch and the admission requests need the kind). The registry keeps
//! `'static` strings, so every name a built-in kind answers with, an extra kind answers with too.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::domain::workload::WorkloadKind;

/// At most this many extra kinds (each is a watch per namespace scope and a metrics slot).
pub const MAX_EXTRA: usize = 8;

/// One `--extra-workload` value, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraWorkload {
    pub group: String,
    pub version: String,
    /// The resource (plural), as in RBAC rules.
    pub resource: String,
    /// The pod template's JSON pointer, as given (e.g. `/spec/template`).
    pub pointer: String,
    /// The same pointer as unescaped object keys (what a merge patch nests).
    pub path: Vec<String>,
}

impl ExtraWorkload {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

impl fmt::Display for ExtraWorkload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.group, self.version, self.resource, self.pointer
        )
    }
}

/// Whether `s` is a lowercase DNS-style name (letters, digits, `-` and `.`), as API groups,
/// versions and resources are.
fn dns_like(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// A JSON pointer's keys, unescaped (`~1` is `/`, `~0` is `~`). Every key must be non-empty: a
/// pod template is reached through object keys (a merge patch cannot index an array).
pub fn pointer_keys(pointer: &str) -> Result<Vec<String>, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("the JSON pointer {pointer:?} must start with '/'"));
    };
    rest.split('/')
        .map(|raw| {
            if raw.is_empty() {
                return Err(format!("the JSON pointer {pointer:?} has an empty key"));
            }
            let mut key = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    key.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => key.push('~'),
                    Some('1') => key.push('/'),
                    _ => {
                        return Err(format!(
                            "the JSON pointer {pointer:?} has a '~' not followed by 0 or 1"
                        ));
                    }
                }
            }
            Ok(key)
        })
        .collect()
}

impl FromStr for ExtraWorkload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected GROUP/VERSION/RESOURCE:JSONPOINTER, e.g. serving.knative.dev/v1/services:/spec/template";
        let Some((gvr, pointer)) = s.split_once(':') else {
            return Err(format!("{s:?}: {usage}"));
        };
        let parts: Vec<&str> = gvr.split('/').collect();
        let [group, version, resource] = parts[..] else {
            return Err(format!("{s:?}: {usage}"));
        };
        for (what, value) in [
            ("group", group),
            ("version", version),
            ("resource", resource),
        ] {
            if !dns_like(value) {
                return Err(format!(
                    "{s:?}: the {what} {value:?} is not a lowercase API name; {usage}"
                ));
            }
        }
        if let Some(k) = WorkloadKind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.plural() == resource)
        {
            return Err(format!(
                "{s:?}: {resource}.{group} is a built-in kind ({k}), rolled already"
            ));
        }
        let path = pointer_keys(pointer).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(ExtraWorkload {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: resource.to_owned(),
            pointer: pointer.to_owned(),
            path,
        })
    }
}

/// Checks a list of `--extra-workload` values: no resource twice, at most [`MAX_EXTRA`].
pub fn check_list(extras: &[ExtraWorkload]) -> Result<(), String> {
    if extras.len() > MAX_EXTRA {
        return Err(format!(
            "at most {MAX_EXTRA} --extra-workload values are supported ({} given)",
            extras.len()
        ));
    }
    for (i, e) in extras.iter().enumerate() {
        if extras[..i]
            .iter()
            .any(|o| o.group == e.group && o.resource == e.resource)
        {
            return Err(format!(
                "--extra-workload names {}.{} twice",
                e.resource, e.group
            ));
        }
    }
    Ok(())
}

/// An extra kind as registered: the flag's value and the kind name discovery found.
#[derive(Debug)]
pub struct Registered {
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub pointer: &'static str,
    pub path: &'static [&'static str],
}

static REGISTRY: OnceLock<Vec<Registered>> = OnceLock::new();

/// The API groups of every `--extra-workload`, served or not.
static REQUESTED_GROUPS: OnceLock<Vec<String>> = OnceLock::new();

/// What an index that was never registered answers with (no API has this kind).
static UNREGISTERED: Registered = Registered {
    kind: "UnregisteredExtraKind",
    group: "unregistered.kreload.dev",
    version: "v1",
    plural: "unregistered",
    pointer: "/spec/template",
    path: &["spec", "template"],
};

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// Registers the extra kinds the cluster serves, each with its kind name, and the groups of
/// all that were asked for (`requested`); once per process (at start). Returns the served
/// kinds' [`WorkloadKind`]s, in order; `Err` when called a second time.
pub fn register(
    kinds: &[(ExtraWorkload, String)],
    requested: &[ExtraWorkload],
) -> Result<Vec<WorkloadKind>, String> {
    if kinds.len() > MAX_EXTRA {
        return Err(format!("at most {MAX_EXTRA} extra workload kinds"));
    }
    let _ = REQUESTED_GROUPS.set(requested.iter().map(|e| e.group.clone()).collect());
    let registered = kinds
        .iter()
        .map(|(e, kind)| Registered {
            kind: leak(kind),
            group: leak(&e.group),
            version: leak(&e.version),
            plural: leak(&e.resource),
            pointer: leak(&e.pointer),
            path: Box::leak(
                e.path
                    .iter()
                    .map(|k| leak(k))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
        })
        .collect();
    REGISTRY
        .set(registered)
        .map_err(|_| "extra workload kinds are registered once".to_owned())?;
    Ok((0..kinds.len())
        .map(|i| WorkloadKind::Extra(i as u8))
        .collect())
}

/// The registered extra kind at `index`.
pub fn registered(index: u8) -> &'static Registered {
    REGISTRY
        .get()
        .and_then(|r| r.get(usize::from(index)))
        .unwrap_or(&UNREGISTERED)
}

/// Whether `group` is the API group of an `--extra-workload`, served at start or not: admission
/// lets requests for such kinds it does not know pass untouched (their API may have appeared
/// since kreload started; the chart's rules send them anyway).
pub fn requested_group(group: &str) -> bool {
    REQUESTED_GROUPS
        .get()
        .is_some_and(|groups| groups.iter().any(|g| g == group))
}

/// Every registered extra kind.
pub fn all() -> impl Iterator<Item = WorkloadKind> {
    (0..REGISTRY.get().map_or(0, Vec::len)).map(|i| WorkloadKind::Extra(i as u8))
}

/// For tests anywhere in the crate: the registry as the tests share it (it is set once per
/// process): `serving.knative.dev/v1/services:/spec/template` (kind `Service`) and
/// `example.com/v1/apps:/spec/workload/podTemplate` (kind `App`) served, and
/// `unserved.example.com/v1/things:/spec/template` asked for but not served.
#[cfg(test)]
pub(crate) fn test_kinds() -> (WorkloadKind, WorkloadKind) {
    static KINDS: OnceLock<Vec<WorkloadKind>> = OnceLock::new();
    let kinds = KINDS.get_or_init(|| {
        let parse = |s: &str| s.parse::<ExtraWorkload>().expect("valid");
        let svc = parse("serving.knative.dev/v1/services:/spec/template");
        let app = parse("example.com/v1/apps:/spec/workload/podTemplate");
        let unserved = parse("unserved.example.com/v1/things:/spec/template");
        register(
            &[(svc.clone(), "Service".into()), (app.clone(), "App".into())],
            &[svc, app, unserved],
        )
        .expect("registered once, here")
    });
    (kinds[0], kinds[1])
}

#[cfg(test)]
mod tests;
