//! The reload queue's scheduling, as pure code over explicit instants: coalescing (changes for
//! one workload within a window become one roll), the storm guard (a workload rolls at most
//! once per interval; later changes are deferred and merged, never dropped), accounting for
//! changes skipped on purpose (no roll, so no storm guard), and retries with exponential
//! backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::domain::config::ConfigId;
use crate::domain::workload::WorkloadId;

/// What a roll is for: each config that changed, with the keys that changed.
pub type Reasons = BTreeMap<ConfigId, BTreeSet<String>>;

/// The first retry of a failed roll waits this long; each next one twice as long, up to
/// [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
pub const RETRY_CAP: Duration = Duration::from_secs(300);

/// How long to wait before the `failures`-th retry (1 for the first).
pub fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    RETRY_FIRST.saturating_mul(factor).min(RETRY_CAP)
}

#[derive(Debug, Default)]
pub struct Pending {
    pub due: Option<Instant>,
    pub reasons: Reasons,
    /// Changes merged into this roll beyond the first.
    pub merged: u32,
    /// False while only changes skipped on purpose are pending: account for the new hash, do
    /// not roll.
    pub roll: bool,
    /// Failed attempts so far (for the backoff of the next retry).
    pub failures: u32,
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

    /// Schedules a roll for a change.
    pub fn push(&mut self, id: WorkloadId, reasons: Reasons, now: Instant) -> Pushed {
        let allowed = self
            .last_roll
            .get(&id)
            .map(|last| *last + self.min_interval);
        if let Some(p) = self.pending.get_mut(&id) {
            for (config, keys) in reasons {
                p.reasons.entry(config).or_default().extend(keys);
            }
            if p.roll {
                p.merged += 1;
                return Pushed::Merged;
            }
            // Only accounting was pending: it becomes a roll, under the storm guard.
            p.roll = true;
            return match (p.due, allowed) {
                (Some(due), Some(allowed)) if allowed > due => {
                    p.due = Some(allowed);
                    Pushed::Deferred
                }
                _ => Pushed::Scheduled,
            };
        }
        let mut due = now + self.window;
        let mut pushed = Pushed::Scheduled;
        if let Some(allowed) = allowed.filter(|a| *a > due) {
            due = allowed;
            pushed = Pushed::Deferred;
        }
        self.pending.insert(
            id,
            Pending {
                due: Some(due),
                reasons,
                roll: true,
                ..Default::default()
            },
        );
        pushed
    }

    /// Schedules accounting for a change skipped on purpose, unless something is pending for
    /// the workload already (a pending roll accounts for everything when it happens). Returns
    /// whether it was scheduled.
    pub fn push_account(&mut self, id: WorkloadId, now: Instant) -> bool {
        if self.pending.contains_key(&id) {
            return false;
        }
        self.pending.insert(
            id,
            Pending {
                due: Some(now + self.window),
                ..Default::default()
            },
        );
        true
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

    /// Puts a roll back after its write failed, to be tried again after the backoff of its
    /// failure count; returns that wait. A change that arrived meanwhile is merged into it.
    pub fn retry(&mut self, id: WorkloadId, pending: Pending, now: Instant) -> Duration {
        let failures = pending.failures + 1;
        let wait = backoff(failures);
        match self.pending.get_mut(&id) {
            Some(p) => {
                for (config, keys) in pending.reasons {
                    p.reasons.entry(config).or_default().extend(keys);
                }
                p.roll |= pending.roll;
                p.failures = p.failures.max(failures);
                p.due = p.due.max(Some(now + wait));
            }
            None => {
                self.pending.insert(
                    id,
                    Pending {
                        due: Some(now + wait),
                        failures,
                        ..pending
                    },
                );
            }
        }
        wait
    }

    /// Workloads whose last attempt failed and that wait for a retry.
    pub fn failing(&self) -> usize {
        self.pending.values().filter(|p| p.failures > 0).count()
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
