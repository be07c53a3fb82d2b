//! Which workloads a config change rolls: pure, over the index and the global filters.

use std::collections::BTreeSet;

use crate::domain::entry::ConfigChange;
use crate::domain::trigger::{Filters, contribution};
use crate::domain::workload::WorkloadId;
use crate::metrics::{Metrics, SkipReason};
use crate::state::index::WorkloadIndex;
use crate::state::namespaces::NamespaceFilter;

use super::ReloadSettings;
use super::queue::Reasons;

/// What a config change means for one workload whose trigger set it touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Roll it, for these configs and keys.
    Roll(Reasons),
    /// Do not roll it (the change is skipped on purpose: annotations or labels only, a create or
    /// delete without `--reload-on-create`/`--reload-on-delete`), but account for the new hash so
    /// that the change never rolls it later (at a restart or leader change).
    Account,
}

/// The workloads a change affects, and how. A workload rolls only for a change of the data it
/// consumes (or a create/delete when the flags ask for it); metadata never rolls anything.
pub fn affected(
    change: &ConfigChange,
    index: &WorkloadIndex,
    filters: &Filters,
    namespaces: &NamespaceFilter,
    settings: &ReloadSettings,
    metrics: &Metrics,
) -> Vec<(WorkloadId, Effect)> {
    if !namespaces.is_watched(&change.namespace) {
        metrics.skipped(SkipReason::Namespace);
        return Vec::new();
    }
    let changed_keys: BTreeSet<&str> = match (&change.old, &change.new) {
        (Some(old), Some(new)) => old.changed_keys(new).into_iter().collect(),
        (Some(e), None) | (None, Some(e)) => e.keys.keys().map(String::as_str).collect(),
        (None, None) => BTreeSet::new(),
    };
    let mut out = Vec::new();
    for w in index.candidates(&change.namespace, &change.id) {
        // Ignored kinds are not even watched; this keeps the rule if one ever is.
        if settings.ignored_workload_types.contains(&w.id.kind) {
            continue;
        }
        let contribution_of = |entry| contribution(&w.policy, &w.refs, &change.id, entry, filters);
        let before = contribution_of(change.old.as_deref());
        let after = contribution_of(change.new.as_deref());
        if before == after {
            metrics.skipped(SkipReason::NotConsumed);
            continue;
        }
        let keys: BTreeSet<String> = changed_keys
            .iter()
            .filter(|k| w.refs.get(&change.id).is_none_or(|c| c.consumes(k)))
            .map(|k| (*k).to_owned())
            .collect();
        let rolls = match (&change.old, &change.new) {
            (None, _) => settings.reload_on_create,
            (_, None) => settings.reload_on_delete,
            // The config as it is now decides (an `ignore` added with a data change skips it).
            (Some(_), Some(_)) => after.is_some() && !keys.is_empty(),
        };
        if rolls {
            out.push((
                w.id.clone(),
                Effect::Roll(Reasons::from([(change.id.clone(), keys)])),
            ));
            continue;
        }
        metrics.skipped(match (&change.old, &change.new) {
            (None, _) => SkipReason::Created,
            (_, None) => SkipReason::Deleted,
            _ => SkipReason::MetadataOnly,
        });
        out.push((w.id.clone(), Effect::Account));
    }
    out
}
