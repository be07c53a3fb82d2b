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

    /// What this replica had queued when it stopped leading: a roll still owed is owed as if
    /// seen while following (`current`: the workload's hash now); drift from accounting still
    /// queued has a known cause (a change skipped on purpose), so it is not of unknown cause.
    pub(super) fn left_queued(&mut self, id: WorkloadId, roll: bool, current: Option<String>) {
        if roll {
            self.owed.insert(id, current.into_iter().collect());
        } else {
            self.unknown.remove(&id);
        }
    }

    /// How many workloads it remembers.
    pub(super) fn len(&self) -> usize {
        self.unknown.len() + self.owed.len()
    }

    /// Forgets the workloads `keep` says are gone.
    pub(super) fn retain(&mut self, keep: impl Fn(&WorkloadId) -> bool) {
        self.unknown.retain(|id, _| keep(id));
        self.owed.retain(|id, _| keep(id));
    }

    /// Whether a change seen while following owes any workload a roll (with `--webhook-url`:
    /// whether to call it on taking over).
    pub(super) fn owes_any(&self) -> bool {
        !self.owed.is_empty()
    }

    /// Whether a change seen while following owes this workload a roll: its stamp is none of
    /// the hashes it had from that change on (the old leader did not roll it since).
    fn owes(&self, id: &WorkloadId, stamp: Option<&str>) -> bool {
        self.owed
            .get(id)
            .is_some_and(|hashes| stamp.is_none_or(|s| !hashes.iter().any(|h| h == s)))
    }

    /// On taking over: for each drifted workload, and each workload a change seen while
    /// following owes a roll (stamped or not, whatever its accounted hash says), whether to roll
    /// it (`true`) or account for its current hash (`false`). `state` gives a workload's stamp
    /// and current hash, if kreload still acts on it.
    pub(super) fn plan(
        &self,
        drift: Drift,
        state: impl Fn(&WorkloadId) -> Option<(Option<String>, String)>,
    ) -> Vec<(WorkloadId, bool)> {
        let mut plan: Vec<(WorkloadId, bool)> = drift
            .into_iter()
            .map(|(id, baseline, stamp)| {
                let unknown = self.unknown.get(&id) == Some(&baseline);
                let owed = self.owes(&id, stamp.as_deref());
                (id, unknown || owed)
            })
            .collect();
        let planned: std::collections::HashSet<WorkloadId> =
            plan.iter().map(|(id, _)| id.clone()).collect();
        let mut extra: Vec<WorkloadId> = self
            .owed
            .keys()
            .filter(|id| !planned.contains(*id))
            .filter(|id| {
                state(id).is_some_and(|(stamp, current)| {
                    stamp.as_deref() != Some(current.as_str()) && self.owes(id, stamp.as_deref())
                })
            })
            .cloned()
            .collect();
        extra.sort();
        plan.extend(extra.into_iter().map(|id| (id, true)));
        plan
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
        let plan = w.plan(
            vec![
                (id("old"), s("h0"), s("h0")),
                (id("moved"), s("h1"), s("h1")),
                (id("data"), s("h0"), s("h0")),
                (id("meta"), s("h0"), s("h0")),
                (id("rolled"), s("h1"), s("h1")),
                (id("late"), s("h1"), s("h1")),
                (id("unseen"), s("h0"), s("h0")),
            ],
            |_| None,
        );
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
        assert!(w.plan(drift, |_| None).into_iter().all(|(_, roll)| roll));
    }

    #[test]
    fn an_owed_roll_is_planned_even_without_drift() {
        // Seen while following: a data change for an unstamped workload (no baseline, so no
        // drift), and one for a workload whose accounted hash already equals the new hash (the
        // old leader accounted an annotation edit after the data change reached its store).
        let mut w = Witness::following(vec![]);
        w.saw(id("unstamped"), &roll(), s("h1"));
        w.saw(id("accounted"), &roll(), s("h1"));
        w.saw(id("rolled"), &roll(), s("h1"));
        w.saw(id("gone"), &roll(), s("h1"));
        let state = |i: &WorkloadId| match i.name.as_str() {
            "unstamped" => Some((None, "h1".to_owned())),
            "accounted" => Some((s("h0"), "h1".to_owned())),
            "rolled" => Some((s("h1"), "h1".to_owned())),
            _ => None,
        };
        assert_eq!(
            w.plan(vec![], state),
            vec![(id("accounted"), true), (id("unstamped"), true)]
        );
    }

    #[test]
    fn what_a_leader_left_queued_is_not_of_unknown_cause() {
        // Stepping down with an accounting and a roll still queued: both workloads have drifted.
        let mut w = Witness::following(vec![
            (id("account"), s("h0"), s("h0")),
            (id("roll"), s("h0"), s("h0")),
        ]);
        w.left_queued(id("account"), false, s("h1"));
        w.left_queued(id("roll"), true, s("h1"));
        let drift = vec![
            (id("account"), s("h0"), s("h0")),
            (id("roll"), s("h0"), s("h0")),
        ];
        assert_eq!(
            w.plan(drift, |_| None),
            vec![(id("account"), false), (id("roll"), true)]
        );
        w.retain(|i| i.name != "roll");
        assert_eq!(w.len(), 0);
        assert!(!w.owes_any());
    }
}
