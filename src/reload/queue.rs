//! The reload queue's scheduling, as pure code over explicit instants: coalescing (changes for
//! one workload within a window become one roll) and the storm guard (a workload rolls at most
//! once per interval; later changes are deferred and merged, never dropped).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::domain::config::ConfigId;
use crate::domain::workload::WorkloadId;

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
mod tests;
