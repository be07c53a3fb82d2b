//! What a replica saw while it did not lead, so that taking over rolls only what a consumed-data
//! change touched. A config annotation edit, create or delete made while the old leader was
//! dying (or before it wrote its accounted hash) leaves the workload's baseline behind the
//! current hash; rolling every such drift at the takeover would roll for a change kreload skips
//! on purpose. The follower sees every change as the leader does, so it knows which drift a
//! roll owes and which it only has to account for.

use std::collections::HashMap;

use crate::domain::workload::WorkloadId;

use super::affected::Effect;

/// A workload whose baseline differs from the current hash: its id, baseline and stamp.
pub(super) type Drift = Vec<(WorkloadId, Option<String>, Option<String>)>;

/// How many hashes are kept per workload after its last consumed-data change (a storm of
/// skipped changes beyond that makes the roll owed again: never lost, at worst one roll more).
const HASHES_KEPT: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Witness {
    /// Drift already there when this replica began to follow, by baseline: its cause is
    /// unknown, so it rolls, as at a start-up, unless the baseline has moved since.
    unknown: HashMap<WorkloadId, Option<String>>,
    /// Workloads a change seen while following would have rolled, with every hash they had
    /// from that change on: a stamp among them reflects the change (the old leader rolled it).
    owed: HashMap<WorkloadId, Vec<String>>,
}

impl Witness {
    /// Begins following, with the drift there is now.
    pub(super) fn following(drift: Drift) -> Self {
        Witness {
            unknown: drift
                .into_iter()
                .map(|(id, baseline, _)| (id, baseline))
                .collect(),
            owed: HashMap::new(),
        }
    }

    /// A change seen while following, what it would have done to one workload, and the hash
    /// the workload has after it. Every change of a workload's hash comes with an effect.
    pub(super) fn saw(&mut self, id: WorkloadId, effect: &Effect, current: Option<String>) {
        match effect {
            Effect::Roll(_) => {
                self.owed.insert(id, current.into_iter().collect());
            }
            Effect::Account => {
                if let Some(hashes) = self.owed.get_mut(&id) {
                    if hashes.len() >= HASHES_KEPT {
                        hashes.clear();
                    }
                    hashes.extend(current);
                }
            }
        }
    }

    /// A workload found (created, or re-listed) while following, already drifted: a change
    /// slipped by before it was indexed, of unknown cause, so it rolls as at a start-up.
    pub(super) fn found(&mut self, id: WorkloadId, baseline: Option<String>) {
        self.unknown.insert(id, baseline);
    }

    /// On taking over: for each drifted workload, whether to roll it (`true`) or account for
    /// its current hash (`false`).
    pub(super) fn plan(&self, drift: Drift) -> Vec<(WorkloadId, bool)> {
        drift
            .into_iter()
            .map(|(id, baseline, stamp)| {
                let unknown = self.unknown.get(&id) == Some(&baseline);
                let owed = self
                    .owed
                    .get(&id)
                    .is_some_and(|hashes| stamp.as_ref().is_none_or(|s| !hashes.contains(s)));
                (id, unknown || owed)
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

    fn s(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    fn roll() -> Effect {
        Effect::Roll(Reasons::new())
    }

    #[test]
    fn a_takeover_rolls_only_drift_a_consumed_data_change_caused() {
        // When this replica began to follow, "old" had drifted for reasons it cannot know.
        let mut w = Witness::following(vec![
            (id("old"), s("h0"), s("h0")),
            (id("moved"), s("h0"), s("h0")),
        ]);
        // While it followed: a data change for "data" (hash h1), then an annotation edit (h2);
        // an annotation edit for "meta"; a data change for "rolled" that the old leader rolled
        // (to h1), then an annotation edit the old leader had no time to account (h2); a data
        // change for "late", rolled by the old leader to h1 before the follower saw the data
        // change to h2.
        w.saw(id("data"), &roll(), s("h1"));
        w.saw(id("data"), &Effect::Account, s("h2"));
        w.saw(id("meta"), &Effect::Account, s("h1"));
        w.saw(id("rolled"), &roll(), s("h1"));
        w.saw(id("rolled"), &Effect::Account, s("h2"));
        w.saw(id("late"), &roll(), s("h2"));
        let plan = w.plan(vec![
            (id("old"), s("h0"), s("h0")),
            (id("moved"), s("h1"), s("h1")),
            (id("data"), s("h0"), s("h0")),
            (id("meta"), s("h0"), s("h0")),
            (id("rolled"), s("h1"), s("h1")),
            (id("late"), s("h1"), s("h1")),
            (id("unseen"), s("h0"), s("h0")),
        ]);
        assert_eq!(
            plan,
            vec![
                (id("old"), true),
                (id("moved"), false),
                (id("data"), true),
                (id("meta"), false),
                (id("rolled"), false),
                (id("late"), true),
                (id("unseen"), false),
            ]
        );
    }

    #[test]
    fn a_replica_that_never_followed_rolls_all_drift_as_at_start_up() {
        let drift = vec![(id("a"), s("h0"), s("h0")), (id("b"), s("h1"), s("h0"))];
        let w = Witness::following(drift.clone());
        assert!(w.plan(drift).into_iter().all(|(_, roll)| roll));
    }
}
