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

/// The workloads a change rolls, each with the keys that matter to it.
pub fn affected(
    change: &ConfigChange,
    index: &WorkloadIndex,
    filters: &Filters,
    namespaces: &NamespaceFilter,
    settings: &ReloadSettings,
    metrics: &Metrics,
) -> Vec<(WorkloadId, Reasons)> {
    if !namespaces.is_watched(&change.namespace) {
        metrics.skipped(SkipReason::Namespace);
        return Vec::new();
    }
    if change.old.is_none() && !settings.reload_on_create {
        metrics.skipped(SkipReason::Created);
        return Vec::new();
    }
    if change.new.is_none() && !settings.reload_on_delete {
        metrics.skipped(SkipReason::Deleted);
        return Vec::new();
    }
    let changed_keys: BTreeSet<String> = match (&change.old, &change.new) {
        (Some(old), Some(new)) => old
            .changed_keys(new)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        (Some(e), None) | (None, Some(e)) => e.keys.keys().cloned().collect(),
        (None, None) => BTreeSet::new(),
    };
    let mut out = Vec::new();
    for w in index.candidates(&change.namespace, &change.id) {
        if settings.ignored_workload_types.contains(&w.id.kind) {
            metrics.skipped(SkipReason::WorkloadType);
            continue;
        }
        let before = contribution(
            &w.policy,
            &w.refs,
            &change.id,
            change.old.as_deref(),
            filters,
        );
        let after = contribution(
            &w.policy,
            &w.refs,
            &change.id,
            change.new.as_deref(),
            filters,
        );
        if before == after {
            metrics.skipped(SkipReason::NotConsumed);
            continue;
        }
        let keys = match &w.refs.get(&change.id) {
            Some(consumption) => changed_keys
                .iter()
                .filter(|k| consumption.consumes(k))
                .cloned()
                .collect(),
            None => changed_keys.clone(),
        };
        out.push((w.id.clone(), Reasons::from([(change.id.clone(), keys)])));
    }
    out
}
