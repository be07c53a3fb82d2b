//! The validating webhook's rules for one object, shared by the webhook and `kreload check`.

use serde::Deserialize;

use crate::domain::config::ConfigKind;
use crate::domain::policy::{self, Warning, WorkloadPolicy};
use crate::domain::workload::{LeanMeta, LeanWorkload, WorkloadKind, object_or_default};

/// What the annotation rules say of one object.
#[derive(Debug)]
pub struct Checked {
    /// The workload's policy (for workloads).
    pub policy: Option<WorkloadPolicy>,
    pub violations: Vec<policy::Violation>,
    pub warnings: Vec<Warning>,
}

/// The validating webhook's rules for one object given as JSON, without the store (so without
/// the warnings that need it): shared with `kreload check`. `None` for kinds the rules do not
/// cover; an error when the object cannot be read.
pub fn check_rules(group: &str, kind: &str, object: &str) -> Option<Result<Checked, String>> {
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
                    let parsed = policy::parse_config(m.metadata.annotations());
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
            .and_then(|()| serde_json::from_str::<LeanWorkload>(object).map_err(|e| e.to_string()))
            .map(|w| {
                let parsed = policy::parse_workload(
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
