//! The reload queue's scheduling, as pure code over explicit instants: coalescing (changes for
//! one workload within a window become one roll), the storm guard (a workload rolls at most
//! once per interval; later changes are deferred and merged, never dropped), accounting for
//! changes skipped on purpose (no roll, so no storm guard), and retries with exponential
//! backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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

/// A Secrets Store CSI roll: the SecretProviderClass that rotated, and the value of
/// `kreload.dev/csi-versions` to write for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsiRoll {
    pub class: String,
    pub value: String,
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
    /// A Secrets Store CSI rotation to roll for (the latest one pushed).
    pub csi: Option<CsiRoll>,
}

impl Pending {
    /// Whether it may roll the workload (a config roll or a CSI roll), as opposed to accounting
    /// only.
    pub fn rolls(&self) -> bool {
        self.roll || self.csi.is_some()
    }
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
        self.push_roll(id, Some(reasons), None, now)
    }

    /// Schedules a roll for a Secrets Store CSI rotation: coalesced, storm-guarded and paced as
    /// any roll, merged with a config roll pending for the same workload.
    pub fn push_csi(&mut self, id: WorkloadId, csi: CsiRoll, now: Instant) -> Pushed {
        self.push_roll(id, None, Some(csi), now)
    }

    /// `reasons`: a config roll's; `csi`: a CSI roll's.
    fn push_roll(
        &mut self,
        id: WorkloadId,
        reasons: Option<Reasons>,
        csi: Option<CsiRoll>,
        now: Instant,
    ) -> Pushed {
        let allowed = self
            .last_roll
            .get(&id)
            .map(|last| *last + self.min_interval);
        let config_roll = reasons.is_some();
        if let Some(p) = self.pending.get_mut(&id) {
            for (config, keys) in reasons.unwrap_or_default() {
                p.reasons.entry(config).or_default().extend(keys);
            }
            let was_rolling = p.rolls();
            p.roll |= config_roll;
            if csi.is_some() {
                p.csi = csi;
            }
            if was_rolling {
                p.merged += 1;
                return Pushed::Merged;
            }
            // Only accounting was pending: it becomes a roll, under the storm guard.
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
                reasons: reasons.unwrap_or_default(),
                roll: config_roll,
                csi,
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
        self.pop_due_paced(now, usize::MAX)
    }

    /// Takes what is due at `now`, oldest first: every accounting, and at most `rolls` rolls
    /// (cluster-wide pacing); the other due rolls stay, first in line for the next time.
    pub fn pop_due_paced(&mut self, now: Instant, rolls: usize) -> Vec<(WorkloadId, Pending)> {
        let mut due: Vec<(Instant, bool, WorkloadId)> = self
            .pending
            .iter()
            .filter_map(|(id, p)| Some((p.due.filter(|d| *d <= now)?, p.rolls(), id.clone())))
            .collect();
        due.sort();
        let mut budget = rolls;
        let mut out = Vec::with_capacity(due.len());
        for (_, roll, id) in due {
            if roll {
                if budget == 0 {
                    continue;
                }
                budget -= 1;
            }
            out.extend(self.pending.remove_entry(&id));
        }
        out
    }

    /// Whether a roll is due at `now` (and waits for pacing if it is still here after a pop).
    pub fn has_due_roll(&self, now: Instant) -> bool {
        self.pending
            .values()
            .any(|p| p.rolls() && p.due.is_some_and(|d| d <= now))
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
                // A newer rotation pushed meanwhile wins.
                if p.csi.is_none() {
                    p.csi = pending.csi;
                }
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

    /// Takes everything pending (on losing leadership).
    pub fn drain(&mut self) -> Vec<(WorkloadId, Pending)> {
        self.pending.drain().collect()
    }

    /// Whether something is pending for a workload.
    pub fn contains(&self, id: &WorkloadId) -> bool {
        self.pending.contains_key(id)
    }
}

/// Cluster-wide pacing of rolls, on top of each workload's storm guard: at most `per_minute`
/// rolls start in any minute, and at most `concurrent` of kreload's rollouts are in progress at
/// once. Rolls held back wait in the queue, first in line; nothing is dropped.
#[derive(Debug, Default)]
pub struct Pace {
    per_minute: Option<u32>,
    concurrent: Option<u32>,
    /// When the rolls of the last minute started.
    starts: VecDeque<Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Pace {
    pub fn new(per_minute: Option<u32>, concurrent: Option<u32>) -> Self {
        Pace {
            per_minute: per_minute.filter(|n| *n > 0),
            concurrent: concurrent.filter(|n| *n > 0),
            starts: VecDeque::new(),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.per_minute.is_some() || self.concurrent.is_some()
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .starts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            self.starts.pop_front();
        }
    }

    /// How many rolls may start at `now`, with `in_progress` of kreload's rollouts not done.
    pub fn budget(&mut self, now: Instant, in_progress: usize) -> usize {
        self.forget_old(now);
        let by_rate = self.per_minute.map_or(usize::MAX, |n| {
            (n as usize).saturating_sub(self.starts.len())
        });
        let by_concurrency = self
            .concurrent
            .map_or(usize::MAX, |n| (n as usize).saturating_sub(in_progress));
        by_rate.min(by_concurrency)
    }

    /// Records that a roll started at `now`.
    pub fn started(&mut self, now: Instant) {
        if self.per_minute.is_some() {
            self.starts.push_back(now);
        }
    }

    /// When the per-minute limit frees its next slot (`None`: it does not hold anything back).
    pub fn next_slot(&self) -> Option<Instant> {
        let n = self.per_minute? as usize;
        (self.starts.len() >= n)
            .then(|| self.starts.front().map(|t| *t + MINUTE))
            .flatten()
    }
}

#[cfg(test)]
mod tests;
