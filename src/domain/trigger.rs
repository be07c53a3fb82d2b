//! A workload's trigger set: exactly the configs (at key precision) whose change would roll it
//! under the decision rule, with the digests they have now.

use std::collections::BTreeSet;

use crate::domain::config::{ConfigId, ConfigKind};
use crate::domain::decide::decide;
use crate::domain::entry::{ConfigEntry, ConfigView};
use crate::domain::policy::{ConfigPolicy, WorkloadPolicy};
use crate::domain::refs::{Consumption, References};
use crate::domain::selector::Selector;
use crate::domain::stamp::{ConfigTrigger, Encoder, TriggerSet};

/// The global filters of the decision rule's first step that depend on the config.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub ignored_kinds: BTreeSet<ConfigKind>,
    pub resource_label_selector: Option<Selector>,
    pub auto_reload_all: bool,
}

impl Filters {
    /// False when step 1 keeps this config out (its kind is ignored, or its labels do not match).
    /// An absent config has no labels to test; it passes, so that its creation is noticed.
    pub fn admits(&self, kind: ConfigKind, entry: Option<&ConfigEntry>) -> bool {
        if self.ignored_kinds.contains(&kind) {
            return false;
        }
        match (&self.resource_label_selector, entry) {
            (Some(sel), Some(e)) => sel.matches(&e.labels),
            _ => true,
        }
    }
}

/// What of `entry` a consumption covers, digests included.
fn consumed(entry: Option<&ConfigEntry>, consumption: &Consumption) -> ConfigTrigger {
    let Some(entry) = entry else {
        return ConfigTrigger::Absent;
    };
    ConfigTrigger::Present(match consumption {
        Consumption::All => entry
            .keys
            .iter()
            .map(|(k, d)| (k.clone(), Some(*d)))
            .collect(),
        Consumption::Keys(keys) => keys
            .iter()
            .map(|k| (k.clone(), entry.keys.get(k).copied()))
            .collect(),
    })
}

/// What one config contributes to an opted-in workload's trigger set, given its current entry
/// (`None`: it does not exist): `None` when its change would not roll the workload. A change of
/// the config rolls the workload exactly when this differs before and after.
pub fn contribution(
    policy: &WorkloadPolicy,
    refs: &References,
    id: &ConfigId,
    entry: Option<&ConfigEntry>,
    filters: &Filters,
) -> Option<ConfigTrigger> {
    if !filters.admits(id.kind, entry) {
        return None;
    }
    match refs.get(id) {
        Some(consumption) => {
            let absent = ConfigPolicy::default();
            let config = entry.map_or(&absent, |e| &e.policy);
            decide(
                policy,
                id.kind,
                &id.name,
                config,
                true,
                filters.auto_reload_all,
            )
            .roll
            .then(|| consumed(entry, consumption))
        }
        // Reload lists name configs whether or not the pod spec references them: all keys count.
        None => {
            let entry = entry?;
            decide(
                policy,
                id.kind,
                &id.name,
                &entry.policy,
                false,
                filters.auto_reload_all,
            )
            .roll
            .then(|| consumed(Some(entry), &Consumption::All))
        }
    }
}

/// The trigger set of an opted-in workload.
pub fn trigger_set(
    policy: &WorkloadPolicy,
    refs: &References,
    view: &dyn ConfigView,
    filters: &Filters,
) -> TriggerSet {
    let mut set = TriggerSet::new();
    for id in refs.keys() {
        if let Some(t) = contribution(policy, refs, id, view.get(id), filters) {
            set.insert(id.clone(), t);
        }
    }
    for kind in ConfigKind::ALL {
        if policy.reload_list(kind).is_empty() {
            continue;
        }
        for (name, entry) in view.of_kind(kind) {
            let id = ConfigId::new(kind, name);
            if refs.contains_key(&id) {
                continue;
            }
            if let Some(t) = contribution(policy, refs, &id, Some(entry), filters) {
                set.insert(id, t);
            }
        }
    }
    set
}

/// The trigger set of a pod that belongs to no opted-in workload: everything it consumes.
pub fn consumed_set(refs: &References, view: &dyn ConfigView) -> TriggerSet {
    refs.iter()
        .map(|(id, c)| (id.clone(), consumed(view.get(id), c)))
        .collect()
}

/// What [`consumed_set`] gives, encoded as
/// [`encode`](crate::domain::stamp::encode) would, without building the set (no key or name is copied).
pub fn encode_consumed_set(namespace: &str, refs: &References, view: &dyn ConfigView) -> Vec<u8> {
    let mut e = Encoder::new(namespace, refs.len(), refs.len() * 48);
    for (id, consumption) in refs {
        encode_consumed(&mut e, id.kind, &id.name, view.get(id), consumption);
    }
    e.finish()
}

/// One config of a trigger set: what `consumption` covers of `entry` (as `trigger::consumed`).
fn encode_consumed(
    e: &mut Encoder,
    kind: ConfigKind,
    name: &str,
    entry: Option<&ConfigEntry>,
    consumption: &Consumption,
) {
    let Some(entry) = entry else {
        return e.absent(kind, name);
    };
    match consumption {
        Consumption::All => {
            e.present(kind, name, entry.keys.len());
            for (key, digest) in &entry.keys {
                e.key(key, Some(digest));
            }
        }
        Consumption::Keys(keys) => {
            e.present(kind, name, keys.len());
            for key in keys {
                e.key(key, entry.keys.get(key));
            }
        }
    }
}

/// What [`trigger_set`] gives, encoded as
/// [`encode`](crate::domain::stamp::encode) would, without building the set. Each config is let in or
/// kept out by the same calls as `trigger::contribution` makes (the global filters, then
/// `decide`); a property test checks that the stamps agree.
pub fn encode_trigger_set(
    namespace: &str,
    policy: &WorkloadPolicy,
    refs: &References,
    view: &dyn ConfigView,
    filters: &Filters,
) -> Vec<u8> {
    static ALL: Consumption = Consumption::All;
    let absent = ConfigPolicy::default();
    let mut members: Vec<(ConfigKind, &str, Option<&ConfigEntry>, &Consumption)> =
        Vec::with_capacity(refs.len());
    for (id, consumption) in refs {
        let entry = view.get(id);
        if filters.admits(id.kind, entry)
            && decide(
                policy,
                id.kind,
                &id.name,
                entry.map_or(&absent, |e| &e.policy),
                true,
                filters.auto_reload_all,
            )
            .roll
        {
            members.push((id.kind, &id.name, entry, consumption));
        }
    }
    // Reload lists name configs whether or not the pod spec references them: all keys count.
    let mut unreferenced = false;
    let mut referenced_names: Vec<(ConfigKind, &str)> = Vec::new();
    for kind in ConfigKind::ALL {
        if policy.reload_list(kind).is_empty() {
            continue;
        }
        if referenced_names.is_empty() {
            // In `refs`' order, so a binary search answers without building a `ConfigId`.
            referenced_names = refs.keys().map(|id| (id.kind, id.name.as_str())).collect();
        }
        for (name, entry) in view.of_kind(kind) {
            let referenced = referenced_names.binary_search(&(kind, name)).is_ok();
            if !referenced
                && filters.admits(kind, Some(entry))
                && decide(
                    policy,
                    kind,
                    name,
                    &entry.policy,
                    false,
                    filters.auto_reload_all,
                )
                .roll
            {
                members.push((kind, name, Some(entry), &ALL));
                unreferenced = true;
            }
        }
    }
    if unreferenced {
        // The set's order: by kind, then name (`ConfigId`'s order).
        members.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    }
    let mut e = Encoder::new(namespace, members.len(), members.len() * 48);
    for (kind, name, entry, consumption) in members {
        encode_consumed(&mut e, kind, name, entry, consumption);
    }
    e.finish()
}

#[cfg(test)]
mod tests;
