//! What a replica saw while it did not lead, so that taking over rolls only what a consumed-data
//! change touched. A config annotation edit, create or delete made while the old leader was
//! dying (or before it wrote its accounted hash) leaves the workload's baseline behind the
//! current hash; rolling every such drift at the takeover would roll for a change kreload skips
//! on purpose. The follower sees every change as the leader does, so it knows which drift a
//! roll owes and which it only has to account for.

use std::collections::{HashMap, HashSet};

use crate::domain::workload::WorkloadId;

use super::affected::Effect;

/// A workload whose baseline differs from the current hash, with that baseline.
pub(super) type Drift = Vec<(WorkloadId, Option<String>)>;

#[derive(Debug, Default)]
pub(super) struct Witness {
    /// Drift already there when this replica began to follow: its cause is unknown, so it
    /// rolls, as at a start-up, unless the baseline has moved since (someone acted on it).
    unknown: HashMap<WorkloadId, Option<String>>,
    /// Workloads that a change seen while following would have rolled.
    rolled: HashSet<WorkloadId>,
}

impl Witness {
    /// Begins following, with the drift there is now.
    pub(super) fn following(drift: Drift) -> Self {
        Witness {
            unknown: drift.into_iter().collect(),
            rolled: HashSet::new(),
        }
    }

    /// A change seen while following, and what it would have done to one workload.
    pub(super) fn saw(&mut self, id: WorkloadId, effect: &Effect) {
        if matches!(effect, Effect::Roll(_)) {
            self.rolled.insert(id);
        }
    }

    /// On taking over: for each drifted workload, whether to roll it (`true`) or account for
    /// its current hash (`false`).
    pub(super) fn plan(&self, drift: Drift) -> Vec<(WorkloadId, bool)> {
        drift
            .into_iter()
            .map(|(id, baseline)| {
                let unknown = self.unknown.get(&id) == Some(&baseline);
                let roll = unknown || self.rolled.contains(&id);
                (id, roll)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workload::WorkloadKind;
    use crate::reload::queue::Reasons;

    fn id(name: &str) -> WorkloadId {
        WorkloadId {
            kind: WorkloadKind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn base(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn a_takeover_rolls_only_drift_a_consumed_data_change_caused() {
        // When this replica began to follow, "old" had drifted for reasons it cannot know.
        let mut w = Witness::following(vec![(id("old"), base("s0")), (id("moved"), base("s0"))]);
        // While it followed: a data change for "data", an annotation edit for "meta" and
        // "data", nothing it saw for "moved" (the old leader rolled it, then a skipped change
        // drifted it again).
        w.saw(id("data"), &Effect::Roll(Reasons::new()));
        w.saw(id("data"), &Effect::Account);
        w.saw(id("meta"), &Effect::Account);
        let plan = w.plan(vec![
            (id("old"), base("s0")),
            (id("moved"), base("s1")),
            (id("data"), base("s0")),
            (id("meta"), base("s0")),
            (id("unseen"), base("s0")),
        ]);
        assert_eq!(
            plan,
            vec![
                (id("old"), true),
                (id("moved"), false),
                (id("data"), true),
                (id("meta"), false),
                (id("unseen"), false),
            ]
        );
    }

    #[test]
    fn a_replica_that_never_followed_rolls_all_drift_as_at_start_up() {
        let drift = vec![(id("a"), base("s0")), (id("b"), None)];
        let w = Witness::following(drift.clone());
        assert!(w.plan(drift).into_iter().all(|(_, roll)| roll));
    }
}
