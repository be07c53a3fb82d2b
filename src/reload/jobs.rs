//! Jobs whose roll deleted them and whose new copy is not created yet. A roll must never lose a
//! Job: the copy is kept here until its create succeeds, retried with backoff (another admission
//! policy, a quota, a timeout, the old Job still terminating), whether or not this replica still
//! leads: finishing a roll already begun conflicts with nothing a new leader does.

use std::collections::HashMap;
use std::time::Instant;

use kube::api::DynamicObject;

use crate::domain::workload::WorkloadId;

use super::queue::backoff;

pub(super) struct JobCreate {
    pub(super) job: DynamicObject,
    pub(super) failures: u32,
    due: Instant,
}

/// The Jobs waiting to be created again.
#[derive(Default)]
pub(super) struct JobCreates {
    pending: HashMap<WorkloadId, JobCreate>,
}

impl JobCreates {
    /// A Job to create as soon as possible.
    pub(super) fn insert(&mut self, id: WorkloadId, job: DynamicObject, now: Instant) {
        self.pending.insert(
            id,
            JobCreate {
                job,
                failures: 0,
                due: now,
            },
        );
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|c| c.due).min()
    }

    pub(super) fn take_due(&mut self, now: Instant) -> Vec<(WorkloadId, JobCreate)> {
        let due: Vec<WorkloadId> = self
            .pending
            .iter()
            .filter(|(_, c)| c.due <= now)
            .map(|(id, _)| id.clone())
            .collect();
        due.into_iter()
            .filter_map(|id| self.pending.remove_entry(&id))
            .collect()
    }

    /// Puts a create back after it failed; returns the wait before the next attempt.
    pub(super) fn retry(
        &mut self,
        id: WorkloadId,
        mut create: JobCreate,
        now: Instant,
    ) -> std::time::Duration {
        create.failures += 1;
        let wait = backoff(create.failures);
        create.due = now + wait;
        self.pending.insert(id, create);
        wait
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }
}
