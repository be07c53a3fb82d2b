//! The validating webhook's rules for one object, shared by the webhook and `kreload check`.

use serde::Deserialize;

use crate::domain::annotations::AnnotationNames;
use crate::domain::config::ConfigKind;
use crate::domain::policy::{self, Annotations, Warning, WorkloadPolicy};
use crate::domain::workload::{LeanMeta, LeanWorkload, WorkloadKind, object_or_default};

/// What the annotation rules say of one object.
#[derive(Debug)]
pub struct Checked {
    /// The workload's policy (for workloads).
    pub policy: Option<WorkloadPolicy>,
    pub violations: Vec<policy::Violation>,
    pub warnings: Vec<Warning>,
}

/// The validating webhook's rules for one object given as JSON, with the annotations under
/// `names`, without the store (so without the warnings that need it): shared with `kreload
/// check`. `None` for kinds the rules do not cover; an error when the object cannot be read.
pub fn check_rules(
    names: &AnnotationNames,
    group: &str,
    kind: &str,
    object: &str,
) -> Option<Result<Checked, String>> {
    let read = || -> Result<(), String> {
        if object.trim_start().starts_with('{') {
            Ok(())
        } else {
            Err("it is not a JSON object".into())
        }
    };
    if ConfigKind::from_group_kind(group, kind).is_some() {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Meta {
            #[serde(deserialize_with = "object_or_default")]
            metadata: LeanMeta,
        }
        return Some(
            read()
                .and_then(|()| serde_json::from_str::<Meta>(object).map_err(|e| e.to_string()))
                .map(|m| {
                    let parsed = policy::parse_config(names, m.metadata.annotations());
                    Checked {
                        policy: None,
                        violations: parsed.violations,
                        warnings: parsed.warnings,
                    }
                }),
        );
    }
    let kind = WorkloadKind::from_group_kind(group, kind)?;
    Some(
        read()
            .and_then(|()| LeanWorkload::from_json(kind, object).map_err(|e| e.to_string()))
            .map(|w| {
                let parsed = policy::parse_workload(
                    names,
                    w.metadata.annotations(),
                    w.template(kind).annotations(),
                );
                Checked {
                    policy: Some(parsed.value),
                    violations: parsed.violations,
                    warnings: parsed.warnings,
                }
            }),
    )
}

/// The annotations the rules judge on one object ([`AnnotationNames::is_judged`]), on its
/// metadata and on its pod template. `None` when the object cannot be read (or is of a kind the
/// rules do not cover).
fn judged(
    names: &AnnotationNames,
    group: &str,
    kind: &str,
    object: &str,
) -> Option<(Annotations, Annotations)> {
    let reloader = |a: Option<&Annotations>| -> Annotations {
        a.into_iter()
            .flatten()
            .filter(|(k, _)| names.is_judged(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    if !object.trim_start().starts_with('{') {
        return None;
    }
    if ConfigKind::from_group_kind(group, kind).is_some() {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Meta {
            #[serde(deserialize_with = "object_or_default")]
            metadata: LeanMeta,
        }
        let m: Meta = serde_json::from_str(object).ok()?;
        return Some((
            reloader(m.metadata.annotations.as_ref()),
            Annotations::new(),
        ));
    }
    let kind = WorkloadKind::from_group_kind(group, kind)?;
    let w = LeanWorkload::from_json(kind, object).ok()?;
    Some((
        reloader(w.metadata.annotations.as_ref()),
        reloader(w.template(kind).annotations()),
    ))
}

/// Whether an UPDATE from `old` to `new` sets, changes or removes an annotation the rules judge.
/// The validating webhook judges only such writes: a Reloader-era object with a value kreload
/// would refuse can still be labelled, scaled, patched and deleted. Unreadable objects count as
/// changed (the rules then say why).
pub fn changes_judged_annotations(
    names: &AnnotationNames,
    group: &str,
    kind: &str,
    old: &str,
    new: &str,
) -> bool {
    match (
        judged(names, group, kind, old),
        judged(names, group, kind, new),
    ) {
        (Some(old), Some(new)) => old != new,
        _ => true,
    }
}

/// Whether an object is being deleted (requests on it, e.g. finalizer removals, are never judged).
pub fn being_deleted(object: &str) -> bool {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Meta {
        #[serde(deserialize_with = "object_or_default")]
        metadata: LeanMeta,
    }
    serde_json::from_str::<Meta>(object).is_ok_and(|m| m.metadata.deletion_timestamp.is_some())
}
