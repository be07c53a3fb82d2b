//! The reload queue's scheduling, as pure code over explicit instants: coalescing (changes for
//! one workload within a window become one roll) and the storm guard (a workload rolls at most
//! once per interval; later changes are deferred and merged, never dropped).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::index::WorkloadId;
use crate::model::ConfigId;

/// What a roll is for: each config that changed, with the keys that changed.
pub type Reasons = BTreeMap<ConfigId, BTreeSet<String>>;

#[derive(Debug, Default)]
pub struct Pending {
    pub due: Option<Instant>,
    pub reasons: Reasons,
    /// Changes merged into this roll beyond the first.
    pub merged: u32,
}

/// How a pushed change was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// A new roll was scheduled after the coalescing window.
    Scheduled,
    /// Merged into a roll already waiting.
    Merged,
    /// Scheduled, but later than the window because the workload rolled recently.
    Deferred,
}

#[derive(Debug)]
pub struct ReloadQueue {
    window: Duration,
    min_interval: Duration,
    pending: HashMap<WorkloadId, Pending>,
    last_roll: HashMap<WorkloadId, Instant>,
}

impl ReloadQueue {
    pub fn new(window: Duration, min_interval: Duration) -> Self {
        ReloadQueue {
            window,
            min_interval,
            pending: HashMap::new(),
            last_roll: HashMap::new(),
        }
    }

    pub fn push(&mut self, id: WorkloadId, reasons: Reasons, now: Instant) -> Pushed {
        if let Some(p) = self.pending.get_mut(&id) {
            for (config, keys) in reasons {
                p.reasons.entry(config).or_default().extend(keys);
            }
            p.merged += 1;
            return Pushed::Merged;
        }
        let mut due = now + self.window;
        let mut pushed = Pushed::Scheduled;
        if let Some(last) = self.last_roll.get(&id) {
            let allowed = *last + self.min_interval;
            if allowed > due {
                due = allowed;
                pushed = Pushed::Deferred;
            }
        }
        self.pending.insert(
            id,
            Pending {
                due: Some(due),
                reasons,
                merged: 0,
            },
        );
        pushed
    }

    /// When the next roll is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.due).min()
    }

    /// Takes every roll due at `now`, oldest first.
    pub fn pop_due(&mut self, now: Instant) -> Vec<(WorkloadId, Pending)> {
        let due: Vec<WorkloadId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        let mut out: Vec<(WorkloadId, Pending)> = due
            .into_iter()
            .filter_map(|id| self.pending.remove_entry(&id))
            .collect();
        out.sort_by_key(|(id, p)| (p.due, id.clone()));
        out
    }

    /// Records that a workload rolled at `now` (starts its storm-guard interval).
    pub fn rolled(&mut self, id: &WorkloadId, now: Instant) {
        self.last_roll.insert(id.clone(), now);
        // Forget rolls whose interval is over: memory stays proportional to recent rolls.
        if self.last_roll.len() > 1024 {
            let min = self.min_interval;
            self.last_roll.retain(|_, t| now.duration_since(*t) < min);
        }
    }

    /// Puts a roll back (its patch failed), to be tried again after `retry_in`.
    pub fn retry(&mut self, id: WorkloadId, pending: Pending, now: Instant, retry_in: Duration) {
        let reasons = pending.reasons;
        match self.pending.get_mut(&id) {
            Some(p) => {
                for (config, keys) in reasons {
                    p.reasons.entry(config).or_default().extend(keys);
                }
            }
            None => {
                self.pending.insert(
                    id,
                    Pending {
                        due: Some(now + retry_in),
                        reasons,
                        merged: pending.merged,
                    },
                );
            }
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops everything (on losing leadership: the next leader recomputes from the cluster).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConfigKind;
    use crate::workload::WorkloadKind;
    use proptest::prelude::*;

    fn w(name: &str) -> WorkloadId {
        WorkloadId {
            kind: WorkloadKind::Deployment,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn reason(config: &str, key: &str) -> Reasons {
        Reasons::from([(
            ConfigId::new(ConfigKind::ConfigMap, config),
            BTreeSet::from([key.to_owned()]),
        )])
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn changes_within_the_window_are_one_roll() {
        let t0 = Instant::now();
        let mut q = ReloadQueue::new(S, 10 * S);
        assert_eq!(q.push(w("a"), reason("cm", "x"), t0), Pushed::Scheduled);
        assert_eq!(
            q.push(w("a"), reason("secret", "y"), t0 + S / 5),
            Pushed::Merged
        );
        assert!(q.pop_due(t0 + S / 2).is_empty());
        let rolls = q.pop_due(t0 + S);
        assert_eq!(rolls.len(), 1);
        assert_eq!(rolls[0].1.reasons.len(), 2);
        assert_eq!(rolls[0].1.merged, 1);
        assert!(q.is_empty());
    }

    #[test]
    fn a_zero_window_rolls_at_once() {
        let t0 = Instant::now();
        let mut q = ReloadQueue::new(Duration::ZERO, Duration::ZERO);
        q.push(w("a"), reason("cm", "x"), t0);
        assert_eq!(q.pop_due(t0).len(), 1);
    }

    #[test]
    fn the_storm_guard_defers_but_never_drops() {
        let t0 = Instant::now();
        let mut q = ReloadQueue::new(S, 10 * S);
        q.push(w("a"), reason("cm", "1"), t0);
        let first = q.pop_due(t0 + S);
        q.rolled(&first[0].0, t0 + S);
        assert_eq!(
            q.push(w("a"), reason("cm", "2"), t0 + 2 * S),
            Pushed::Deferred
        );
        for i in 3..20 {
            assert_eq!(
                q.push(
                    w("a"),
                    reason("cm", &i.to_string()),
                    t0 + 2 * S + i * S / 10
                ),
                Pushed::Merged
            );
        }
        assert!(q.pop_due(t0 + 10 * S).is_empty(), "not before the interval");
        let second = q.pop_due(t0 + 11 * S);
        assert_eq!(second.len(), 1);
        assert_eq!(
            second[0].1.reasons.values().next().unwrap().len(),
            18,
            "every deferred change is carried"
        );
        // Another workload is not held back by the first one's interval.
        assert_eq!(
            q.push(w("b"), reason("cm", "x"), t0 + 2 * S),
            Pushed::Scheduled
        );
    }

    #[test]
    fn failed_rolls_are_retried_with_their_reasons() {
        let t0 = Instant::now();
        let mut q = ReloadQueue::new(S, S);
        q.push(w("a"), reason("cm", "x"), t0);
        let (id, p) = q.pop_due(t0 + S).pop().unwrap();
        q.retry(id, p, t0 + S, S);
        assert_eq!(q.next_due(), Some(t0 + 2 * S));
        assert_eq!(q.pop_due(t0 + 2 * S)[0].1.reasons.len(), 1);
    }

    proptest! {
        /// However changes arrive, every workload that got one is rolled, rolls of one workload
        /// are at least the interval apart, and no change is lost.
        #[test]
        fn no_change_is_lost_and_rolls_respect_the_interval(events in proptest::collection::vec((0u8..3, 0u64..5000), 1..60)) {
            let t0 = Instant::now();
            let (window, interval) = (Duration::from_millis(300), Duration::from_millis(2000));
            let mut q = ReloadQueue::new(window, interval);
            let mut events = events;
            events.sort_by_key(|(_, at)| *at);
            let mut pushed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut rolled: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut last: HashMap<String, Instant> = HashMap::new();
            let mut drain = |q: &mut ReloadQueue, until: Instant, rolled: &mut BTreeMap<String, BTreeSet<String>>| -> Result<(), TestCaseError> {
                while let Some(due) = q.next_due().filter(|d| *d <= until) {
                    for (id, p) in q.pop_due(due) {
                        if let Some(prev) = last.get(&id.name) {
                            prop_assert!(due.duration_since(*prev) >= interval);
                        }
                        last.insert(id.name.clone(), due);
                        q.rolled(&id, due);
                        for keys in p.reasons.values() {
                            rolled.entry(id.name.clone()).or_default().extend(keys.iter().cloned());
                        }
                    }
                }
                Ok(())
            };
            for (i, (workload, at)) in events.iter().enumerate() {
                let now = t0 + Duration::from_millis(*at);
                drain(&mut q, now, &mut rolled)?;
                let name = workload.to_string();
                q.push(w(&name), reason("cm", &i.to_string()), now);
                pushed.entry(name).or_default().insert(i.to_string());
            }
            drain(&mut q, t0 + Duration::from_secs(3600), &mut rolled)?;
            prop_assert!(q.is_empty());
            prop_assert_eq!(pushed, rolled);
        }
    }
}
