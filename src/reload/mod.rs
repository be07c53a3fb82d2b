//! The watcher's acting half: turns config changes into rolls of exactly the affected
//! workloads, through the reload queue, on the leader only.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::domain::annotations::{CONFIG_HASH, FIELD_MANAGER, PAUSED_AT};
use crate::domain::entry::ConfigChange;
use crate::domain::patch::template_merge_patch;
use crate::domain::stamper::Stamper;
use crate::domain::workload::{StampLocation, WorkloadId, WorkloadKind};
use crate::metrics::{Metrics, RollResult, SkipReason};
use crate::state::index::{WorkloadIndex, WorkloadInfo};
use crate::state::namespaces::NamespaceFilter;
use crate::state::store::DigestStore;

pub mod affected;
pub mod lease;
pub mod queue;
mod writes;

pub use affected::affected;
use queue::{Pending, Pushed, Reasons, ReloadQueue};
pub use writes::api_resource;
use writes::{describe, fresh_job, now_rfc3339, object_ref};

/// The watcher's settings (from flags).
#[derive(Clone, Debug)]
pub struct ReloadSettings {
    pub coalesce_window: Duration,
    pub min_roll_interval: Duration,
    pub reload_on_create: bool,
    pub reload_on_delete: bool,
    pub ignored_workload_types: BTreeSet<WorkloadKind>,
}

/// Rolls workloads on the leader: holds the stamp computation, reads the store and the index.
pub struct Reloader {
    client: Client,
    stamper: Stamper,
    store: Arc<DigestStore>,
    index: Arc<WorkloadIndex>,
    namespaces: Arc<NamespaceFilter>,
    metrics: Arc<Metrics>,
    settings: ReloadSettings,
    identity: String,
}

/// What a roll did.
enum Rolled {
    Nothing,
    Rolled { pause_for: Option<Duration> },
}

impl Reloader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        stamper: Stamper,
        store: Arc<DigestStore>,
        index: Arc<WorkloadIndex>,
        namespaces: Arc<NamespaceFilter>,
        metrics: Arc<Metrics>,
        settings: ReloadSettings,
        identity: String,
    ) -> Self {
        Reloader {
            client,
            stamper,
            store,
            index,
            namespaces,
            metrics,
            settings,
            identity,
        }
    }

    pub fn affected(&self, change: &ConfigChange) -> Vec<(WorkloadId, Reasons)> {
        affected(
            change,
            &self.index,
            self.stamper.filters(),
            &self.namespaces,
            &self.settings,
            &self.metrics,
        )
    }

    /// The stamp a workload should carry now, if it is still opted in.
    fn current_stamp(&self, w: &WorkloadInfo) -> Option<String> {
        self.store.with_namespace(&w.id.namespace, |view| {
            self.stamper.workload_stamp(view, &w.policy, &w.refs)
        })
    }

    /// Stamped workloads (with the current key) whose stamp differs from the current hash:
    /// changes made while no leader was rolling. Unstamped and foreign-stamped ones are left.
    fn startup_drift(&self) -> Vec<WorkloadId> {
        self.index
            .all()
            .into_iter()
            .filter(|w| !self.settings.ignored_workload_types.contains(&w.id.kind))
            .filter(|w| self.namespaces.is_watched(&w.id.namespace))
            .filter(|w| match (&w.stamp, self.current_stamp(w)) {
                (Some(stamp), Some(current)) => self.stamper.is_current(stamp) && *stamp != current,
                _ => false,
            })
            .map(|w| w.id.clone())
            .collect()
    }

    /// How long to keep a Deployment paused after a reload, if its `pause-period` asks for it.
    fn pause_period(w: &WorkloadInfo) -> Option<Duration> {
        (w.id.kind == WorkloadKind::Deployment)
            .then_some(w.policy.pause_period)
            .flatten()
            .filter(|p| !p.is_zero())
    }

    async fn roll(
        &self,
        recorder: &Recorder,
        id: &WorkloadId,
        pending: &Pending,
    ) -> Result<Rolled, kube::Error> {
        let Some(w) = self.index.get(id) else {
            return Ok(Rolled::Nothing);
        };
        let Some(stamp) = self.current_stamp(&w) else {
            return Ok(Rolled::Nothing);
        };
        if w.stamp.as_deref() == Some(stamp.as_str()) {
            self.metrics.skipped(SkipReason::AlreadyCurrent);
            return Ok(Rolled::Nothing);
        }
        let mut patch = match w.stamp_location() {
            StampLocation::Template => template_merge_patch(id.kind.template_path(), &stamp),
            StampLocation::Object => json!({
                "metadata": {"annotations": {CONFIG_HASH: stamp}},
                "spec": {"restartAt": now_rfc3339()},
            }),
        };
        // pause-period: pause with this change so that changes within the period land in one
        // rollout when kreload resumes it. Already paused by kreload: just add the change.
        let pause_for = Self::pause_period(&w).filter(|_| w.paused_at.is_none());
        if pause_for.is_some() {
            patch["spec"]["paused"] = json!(true);
            patch["metadata"]["annotations"][PAUSED_AT] = json!(now_rfc3339());
        }
        if id.kind == WorkloadKind::Job {
            self.recreate_job(id, &stamp).await?;
        } else {
            self.patch(id, &patch).await?;
        }
        self.index.set_stamp(id, &stamp);
        let note = describe(&pending.reasons);
        tracing::info!(workload = %id, changes = %note, paused_for = ?pause_for, "rolled");
        let _ = recorder
            .publish(
                &Event {
                    type_: EventType::Normal,
                    reason: "Reloaded".into(),
                    note: Some(match pause_for {
                        Some(p) => format!("Rolling after a pause of {}s: {note}", p.as_secs()),
                        None => format!("Rolling: {note}"),
                    }),
                    action: "Reload".into(),
                    secondary: None,
                },
                &object_ref(&w),
            )
            .await;
        Ok(Rolled::Rolled { pause_for })
    }

    /// One merge patch under kreload's field manager. No resourceVersion, so a concurrent writer
    /// does not make it conflict; transient errors are retried by the caller.
    async fn patch(&self, id: &WorkloadId, patch: &serde_json::Value) -> Result<(), kube::Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &id.namespace, &api_resource(id.kind));
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        api.patch(&id.name, &pp, &Patch::Merge(patch))
            .await
            .map(|_| ())
    }

    /// A Job's template is immutable: it is rolled by deleting it (with its pods) and creating it
    /// again from its spec, stamped, as Reloader does.
    async fn recreate_job(&self, id: &WorkloadId, stamp: &str) -> Result<(), kube::Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &id.namespace, &api_resource(id.kind));
        let job = api.get(&id.name).await?;
        let fresh = fresh_job(job, stamp);
        api.delete(&id.name, &kube::api::DeleteParams::background())
            .await?;
        // The name is free once the API server has removed the object (pods go in the background).
        let mut tries = 0;
        loop {
            let pp = kube::api::PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            };
            match api.create(&pp, &fresh).await {
                Err(kube::Error::Api(s)) if s.code == 409 && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// Resumes a Deployment kreload paused, and forgets the pause.
    async fn resume(&self, id: &WorkloadId) -> Result<(), kube::Error> {
        let patch =
            json!({"spec": {"paused": false}, "metadata": {"annotations": {PAUSED_AT: null}}});
        match self.patch(id, &patch).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other,
        }
    }

    /// Deployments that a previous leader paused: when each is due to resume.
    fn paused_deployments(&self) -> Vec<(WorkloadId, Instant)> {
        let now = Instant::now();
        let wall = time::OffsetDateTime::now_utc();
        self.index
            .all()
            .into_iter()
            .filter_map(|w| {
                let period = Self::pause_period(&w)?;
                let at = w.paused_at.as_deref()?;
                let paused =
                    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                        .ok();
                let left = paused.map_or(Duration::ZERO, |p| {
                    let elapsed = Duration::try_from(wall - p).unwrap_or(Duration::ZERO);
                    period.saturating_sub(elapsed)
                });
                Some((w.id.clone(), now + left))
            })
            .collect()
    }

    /// Rolls everything due, up to 8 patches at once, and records the outcomes.
    async fn roll_due(
        &self,
        recorder: &Recorder,
        queue: &mut ReloadQueue,
        pauses: &mut HashMap<WorkloadId, Instant>,
    ) {
        let now = Instant::now();
        let due = queue.pop_due(now);
        let results: Vec<_> = futures::stream::iter(due)
            .map(|(id, pending)| async {
                let result = self.roll(recorder, &id, &pending).await;
                (id, pending, result)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for (id, pending, result) in results {
            match result {
                Ok(Rolled::Rolled { pause_for }) => {
                    queue.rolled(&id, now);
                    self.metrics.reload(id.kind, RollResult::Success);
                    if let Some(p) = pause_for {
                        pauses.insert(id, now + p);
                    }
                }
                Ok(Rolled::Nothing) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(error) => {
                    self.metrics.reload(id.kind, RollResult::Error);
                    tracing::warn!(workload = %id, %error, "roll failed; will retry");
                    if let Some(w) = self.index.get(&id) {
                        let event = Event {
                            type_: EventType::Warning,
                            reason: "ReloadFailed".into(),
                            note: Some(format!(
                                "kreload could not patch the pod template: {error}"
                            )),
                            action: "Reload".into(),
                            secondary: None,
                        };
                        let _ = recorder.publish(&event, &object_ref(&w)).await;
                    }
                    queue.retry(id, pending, now, Duration::from_secs(2));
                }
            }
        }
    }

    /// Resumes the Deployments whose pause is over.
    async fn resume_due(&self, pauses: &mut HashMap<WorkloadId, Instant>) {
        let now = Instant::now();
        let due: Vec<WorkloadId> = pauses
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            match self.resume(&id).await {
                Ok(()) => {
                    pauses.remove(&id);
                    tracing::info!(workload = %id, "pause period over: resumed");
                }
                Err(error) => {
                    tracing::warn!(workload = %id, %error, "could not resume; will retry");
                    pauses.insert(id, now + Duration::from_secs(2));
                }
            }
        }
    }

    /// Runs until `changes` closes. Acts only while `leader` is true; on becoming leader it
    /// first rolls what drifted while nobody was rolling, and takes over pending resumes.
    pub async fn run(
        self,
        mut changes: mpsc::UnboundedReceiver<ConfigChange>,
        mut leader: watch::Receiver<bool>,
    ) {
        let reporter = Reporter {
            controller: "kreload".into(),
            instance: Some(self.identity.clone()),
        };
        let recorder = Recorder::new(self.client.clone(), reporter);
        let mut queue = ReloadQueue::new(
            self.settings.coalesce_window,
            self.settings.min_roll_interval,
        );
        let mut pauses: HashMap<WorkloadId, Instant> = HashMap::new();
        let mut leading = false;
        loop {
            if *leader.borrow_and_update() != leading {
                leading = !leading;
                self.metrics.set_leader(leading);
                if leading {
                    let drift = self.startup_drift();
                    tracing::info!(
                        workloads = drift.len(),
                        "leading: rolling workloads whose config changed while nobody was rolling"
                    );
                    let now = Instant::now();
                    for id in drift {
                        queue.push(id, Reasons::new(), now);
                    }
                    pauses.extend(self.paused_deployments());
                } else {
                    queue.clear();
                    pauses.clear();
                }
            }
            let next = [queue.next_due(), pauses.values().min().copied()]
                .into_iter()
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else { break };
                    if !leading {
                        continue;
                    }
                    let now = Instant::now();
                    for (id, reasons) in self.affected(&change) {
                        match queue.push(id, reasons, now) {
                            Pushed::Merged => self.metrics.coalesced(),
                            Pushed::Deferred => self.metrics.deferred(),
                            Pushed::Scheduled => {}
                        }
                    }
                }
                _ = leader.changed() => {}
                () = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                    self.roll_due(&recorder, &mut queue, &mut pauses).await;
                    self.resume_due(&mut pauses).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
