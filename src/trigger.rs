//! A workload's trigger set: exactly the configs (at key precision) whose change would roll it
//! under the decision rule, with the digests they have now.

use std::collections::BTreeSet;

use crate::decide::decide;
use crate::model::{ConfigId, ConfigKind};
use crate::policy::{ConfigPolicy, WorkloadPolicy};
use crate::refs::{Consumption, References};
use crate::selector::Selector;
use crate::stamp::{ConfigTrigger, TriggerSet};
use crate::store::{ConfigEntry, ConfigView};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ValueDigest;
    use crate::policy::{Annotations, parse_workload};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    type Ns = BTreeMap<ConfigId, Arc<ConfigEntry>>;

    /// (kind, name, key/value pairs, policy) of each config.
    type Fixture<'a> = (ConfigKind, &'a str, &'a [(&'a str, &'a str)], ConfigPolicy);

    fn ns(configs: &[Fixture]) -> Ns {
        configs
            .iter()
            .map(|(kind, name, keys, policy)| {
                let keys = keys
                    .iter()
                    .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
                    .collect();
                (
                    ConfigId::new(*kind, *name),
                    Arc::new(ConfigEntry {
                        keys,
                        policy: *policy,
                        labels: Default::default(),
                    }),
                )
            })
            .collect()
    }

    fn policy(pairs: &[(&str, &str)]) -> WorkloadPolicy {
        let a: Annotations = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_workload(&a, None).value
    }

    fn refs(list: &[(ConfigKind, &str, Option<&[&str]>)]) -> References {
        list.iter()
            .map(|(k, n, keys)| {
                let c = match keys {
                    None => Consumption::All,
                    Some(keys) => Consumption::Keys(keys.iter().map(|s| s.to_string()).collect()),
                };
                (ConfigId::new(*k, *n), c)
            })
            .collect()
    }

    const CM: ConfigKind = ConfigKind::ConfigMap;
    const SECRET: ConfigKind = ConfigKind::Secret;
    const PLAIN: ConfigPolicy = ConfigPolicy {
        matched: false,
        ignore: false,
    };
    const MATCHED: ConfigPolicy = ConfigPolicy {
        matched: true,
        ignore: false,
    };
    const IGNORED: ConfigPolicy = ConfigPolicy {
        matched: false,
        ignore: true,
    };

    #[test]
    fn auto_takes_referenced_configs_at_key_precision() {
        let view = ns(&[
            (CM, "app", &[("a", "1"), ("b", "2")], PLAIN),
            (SECRET, "db", &[("password", "p")], PLAIN),
        ]);
        let set = trigger_set(
            &policy(&[("reloader.stakater.com/auto", "true")]),
            &refs(&[(CM, "app", Some(&["a", "missing"])), (SECRET, "db", None)]),
            &view,
            &Filters::default(),
        );
        assert_eq!(set.len(), 2);
        let ConfigTrigger::Present(keys) = &set[&ConfigId::new(CM, "app")] else {
            panic!()
        };
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["a", "missing"]);
        assert_eq!(keys["missing"], None);
    }

    #[test]
    fn reload_lists_take_unreferenced_configs_whole() {
        let view = ns(&[
            (CM, "extra-1", &[("k", "v")], PLAIN),
            (CM, "other", &[], PLAIN),
            (SECRET, "extra-1", &[], PLAIN),
        ]);
        let set = trigger_set(
            &policy(&[("configmap.reloader.stakater.com/reload", "extra-.*")]),
            &refs(&[]),
            &view,
            &Filters::default(),
        );
        assert_eq!(
            set.keys().cloned().collect::<Vec<_>>(),
            vec![ConfigId::new(CM, "extra-1")]
        );
    }

    #[test]
    fn search_takes_only_matched_configs_and_ignore_wins() {
        let view = ns(&[
            (CM, "m", &[], MATCHED),
            (CM, "n", &[], PLAIN),
            (CM, "i", &[], IGNORED),
        ]);
        let r = refs(&[(CM, "m", None), (CM, "n", None), (CM, "i", None)]);
        let set = trigger_set(
            &policy(&[("reloader.stakater.com/search", "true")]),
            &r,
            &view,
            &Filters::default(),
        );
        assert_eq!(
            set.keys().cloned().collect::<Vec<_>>(),
            vec![ConfigId::new(CM, "m")]
        );
        let set = trigger_set(
            &policy(&[("reloader.stakater.com/auto", "true")]),
            &r,
            &view,
            &Filters::default(),
        );
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn global_filters_keep_configs_out() {
        let view = ns(&[(CM, "c", &[], PLAIN), (SECRET, "s", &[], PLAIN)]);
        let r = refs(&[(CM, "c", None), (SECRET, "s", None)]);
        let filters = Filters {
            ignored_kinds: BTreeSet::from([SECRET]),
            ..Default::default()
        };
        let set = trigger_set(
            &policy(&[("reloader.stakater.com/auto", "true")]),
            &r,
            &view,
            &filters,
        );
        assert_eq!(
            set.keys().cloned().collect::<Vec<_>>(),
            vec![ConfigId::new(CM, "c")]
        );
        let filters = Filters {
            resource_label_selector: Some("team=a".parse().unwrap()),
            ..Default::default()
        };
        assert!(
            trigger_set(
                &policy(&[("reloader.stakater.com/auto", "true")]),
                &r,
                &view,
                &filters
            )
            .is_empty()
        );
    }

    #[test]
    fn auto_reload_all_opts_in_unless_auto_false() {
        let view = ns(&[(CM, "c", &[], PLAIN)]);
        let r = refs(&[(CM, "c", None)]);
        let all = Filters {
            auto_reload_all: true,
            ..Default::default()
        };
        assert_eq!(trigger_set(&policy(&[]), &r, &view, &all).len(), 1);
        assert!(
            trigger_set(
                &policy(&[("reloader.stakater.com/auto", "false")]),
                &r,
                &view,
                &all
            )
            .is_empty()
        );
        assert!(trigger_set(&policy(&[]), &r, &view, &Filters::default()).is_empty());
    }

    #[test]
    fn absent_configs_are_marked_absent() {
        let set = consumed_set(&refs(&[(SECRET, "later", None)]), &ns(&[]));
        assert_eq!(set[&ConfigId::new(SECRET, "later")], ConfigTrigger::Absent);
    }
}
