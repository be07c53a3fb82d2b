//! The watcher's acting half: turns config changes into rolls of exactly the affected
//! workloads (and accounting for changes skipped on purpose), through the reload queue, on the
//! leader only.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;
use kube::api::DynamicObject;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};

use crate::domain::alert::{reload_message, upgrade_webhook_payload};
use crate::domain::annotations::AnnotationNames;
use crate::domain::csi::{Rotation, versions_annotation};
use crate::domain::entry::ConfigChange;
use crate::domain::patch::{
    Roll, account_patch, add_csi_roll, fresh_job, resume_patch, roll_patch,
};
use crate::domain::stamper::Stamper;
use crate::domain::workload::{WorkloadId, WorkloadKind, WorkloadNews};
use crate::metrics::{Metrics, RollResult, SkipReason};
use crate::state::csi::CsiWorkloads;
use crate::state::index::{WorkloadIndex, WorkloadInfo};
use crate::state::namespaces::NamespaceFilter;
use crate::state::store::DigestStore;

pub mod affected;
pub mod alerts;
mod jobs;
pub mod lease;
pub mod queue;
mod witness;
mod writes;

pub use affected::{Effect, affected};
use alerts::Alerts;
use jobs::JobCreates;
use k8s_openapi::api::core::v1::ObjectReference;
use queue::{CsiRoll, Pace, Pending, Pushed, Reasons, ReloadQueue};
use witness::{Drift, Witness};
pub use writes::{WRITE_TIMEOUT, api_resource};
use writes::{Writer, describe_csi, describe_pending, now_rfc3339, object_ref, short_error};

/// How many rolls are written at once.
const CONCURRENT_WRITES: usize = 8;

/// The watcher's settings (from flags).
#[derive(Clone, Debug)]
pub struct ReloadSettings {
    pub coalesce_window: Duration,
    pub min_roll_interval: Duration,
    pub reload_on_create: bool,
    pub reload_on_delete: bool,
    pub ignored_workload_types: BTreeSet<WorkloadKind>,
    /// Cluster-wide pacing (`--max-rolls-per-minute`, `--max-concurrent-rolls`); `None`: no
    /// limit.
    pub max_rolls_per_minute: Option<u32>,
    pub max_concurrent_rolls: Option<u32>,
    /// The names of the annotations read and written (Reloader's `--*-annotation` flags): a
    /// pause is noted under `paused_at`.
    pub annotation_names: Arc<AnnotationNames>,
}

/// How long a rollout kreload started counts as in progress at most, for the pacing (a rollout
/// stuck longer, say on an image that never pulls, must not hold back every other roll).
const ROLLOUT_COUNTS_FOR: Duration = Duration::from_secs(600);

/// Rolls workloads on the leader: holds the stamp computation, reads the store and the index.
pub struct Reloader {
    writer: Writer,
    stamper: Stamper,
    store: Arc<DigestStore>,
    index: Arc<WorkloadIndex>,
    namespaces: Arc<NamespaceFilter>,
    metrics: Arc<Metrics>,
    settings: ReloadSettings,
    jobs: Mutex<JobCreates>,
    /// Alerts on reload (`ALERT_ON_RELOAD`).
    alerts: Option<Alerts>,
    /// `--webhook-url`: call it instead of rolling.
    instead_of_rolling: Option<Alerts>,
    /// Where a follower's decisions go: they are not the metrics' (the leader reports its own).
    unreported: Metrics,
    /// `--enable-csi-integration`: the workloads that mount a SecretProviderClass.
    csi: Option<Arc<CsiWorkloads>>,
}

/// The cluster-wide pacing and kreload's rollouts in progress (the stamp each was rolled to).
struct Pacing {
    pace: Pace,
    rolling: HashMap<WorkloadId, (Instant, String)>,
}

/// Whether a due item is done already. A roll is owed until the workload carries the current
/// hash: an accounted hash equal to it may have been computed after the consumed-data change
/// this roll is for had reached the store (its event still queued behind the accounting), and
/// must not swallow the roll. Accounting is owed until the baseline is the current hash.
fn nothing_owed(roll: bool, stamp: Option<&str>, baseline: Option<&str>, current: &str) -> bool {
    if roll {
        stamp == Some(current)
    } else {
        baseline == Some(current)
    }
}

/// What one due item did.
enum Done {
    Nothing,
    Accounted,
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
            writer: Writer::new(client, identity),
            stamper,
            store,
            index,
            namespaces,
            metrics,
            settings,
            jobs: Mutex::default(),
            alerts: None,
            instead_of_rolling: None,
            unreported: Metrics::default(),
            csi: None,
        }
    }

    /// Rolls the workloads opted in for a SecretProviderClass when its versions rotate.
    pub fn with_csi(mut self, workloads: Arc<CsiWorkloads>) -> Self {
        self.csi = Some(workloads);
        self
    }

    /// The CSI rolls a rotation asks for: the workloads in its namespace that mount the class,
    /// are opted in for it and pass the global filters, each with the value to write.
    fn csi_rolls(&self, rotation: &Rotation) -> Vec<(WorkloadId, CsiRoll)> {
        let Some(csi) = &self.csi else {
            return Vec::new();
        };
        if !self.namespaces.is_watched(&rotation.namespace) {
            return Vec::new();
        }
        let value = versions_annotation(self.stamper.key(), rotation);
        csi.rolled_by(rotation, self.stamper.filters().auto_reload_all)
            .into_iter()
            .filter(|id| !self.settings.ignored_workload_types.contains(&id.kind))
            .map(|id| {
                let roll = CsiRoll {
                    class: rotation.class.clone(),
                    value: value.clone(),
                };
                (id, roll)
            })
            .collect()
    }

    /// Sends an alert for each roll.
    pub fn with_alerts(mut self, alerts: Alerts) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Calls a URL (Reloader's `--webhook-url` payload) for each change that would roll
    /// something, and rolls nothing.
    pub fn instead_of_rolling(mut self, webhook: Alerts) -> Self {
        self.instead_of_rolling = Some(webhook);
        self
    }

    pub fn affected(&self, change: &ConfigChange) -> Vec<(WorkloadId, Effect)> {
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
            self.stamper
                .workload_stamp(&w.id.namespace, view, &w.policy, &w.refs)
        })
    }

    /// What a workload's pods were last rolled with or kreload last accounted for: its
    /// accounted hash if it has one, else its stamp. `None` for an unknown baseline (unstamped,
    /// or a stamp of another recipe or key).
    fn baseline<'a>(&self, w: &'a WorkloadInfo) -> Option<&'a str> {
        let current = |s: &&'a String| self.stamper.is_current(s);
        w.stamp.as_ref().filter(current)?;
        w.accounted
            .as_ref()
            .filter(current)
            .or(w.stamp.as_ref())
            .map(String::as_str)
    }

    fn acts_on(&self, w: &WorkloadInfo) -> bool {
        !self.settings.ignored_workload_types.contains(&w.id.kind)
            && self.namespaces.is_watched(&w.id.namespace)
    }

    /// Workloads whose baseline (with the current key) differs from the current hash, with
    /// that baseline and their stamp: changes made while no leader was rolling. Unstamped and
    /// foreign-stamped ones are left alone.
    fn startup_drift(&self) -> Drift {
        self.index
            .all()
            .into_iter()
            .filter(|w| self.acts_on(w))
            .filter_map(|w| match (self.baseline(&w), self.current_stamp(&w)) {
                (Some(baseline), Some(current)) if baseline != current => {
                    Some((w.id.clone(), Some(baseline.to_owned()), w.stamp.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Whether a workload's baseline (with the current key) differs from its current hash.
    fn drifted(&self, w: &WorkloadInfo) -> bool {
        match (self.baseline(w), self.current_stamp(w)) {
            (Some(baseline), Some(current)) => baseline != current,
            _ => false,
        }
    }

    /// How long to keep a Deployment paused after a reload, if its `pause-period` asks for it.
    fn pause_period(w: &WorkloadInfo) -> Option<Duration> {
        (w.id.kind == WorkloadKind::Deployment)
            .then_some(w.policy.pause_period)
            .flatten()
            .filter(|p| !p.is_zero())
    }

    /// Rolls one workload, or accounts for a change skipped on purpose.
    async fn roll(
        &self,
        id: &WorkloadId,
        pending: &Pending,
        leader: &watch::Receiver<bool>,
    ) -> Result<Done, kube::Error> {
        // A replica that stopped leading starts no write (the queue is cleared right after).
        if !*leader.borrow() {
            return Ok(Done::Nothing);
        }
        // A CSI roll is owed while the workload does not carry its value yet.
        let csi = pending.csi.as_ref().and_then(|roll| {
            let w = self.csi.as_ref()?.get(id)?;
            (w.current.as_deref() != Some(roll.value.as_str())).then_some((roll, w))
        });
        if pending.csi.is_some() && csi.is_none() {
            self.metrics.skipped(SkipReason::AlreadyCurrent);
        }
        let config = self
            .index
            .get(id)
            .and_then(|w| Some((self.current_stamp(&w)?, w)));
        let Some((stamp, w)) = config else {
            return match csi {
                Some((roll, cw)) => self.roll_csi_only(id, roll, &cw).await,
                None => Ok(Done::Nothing),
            };
        };
        let baseline = self.baseline(&w);
        if nothing_owed(pending.roll, w.stamp.as_deref(), baseline, &stamp) {
            if pending.roll {
                self.metrics.skipped(SkipReason::AlreadyCurrent);
            }
            return match csi {
                Some((roll, cw)) => self.roll_csi_only(id, roll, &cw).await,
                None => Ok(Done::Nothing),
            };
        }
        if !pending.roll
            && let Some((roll, cw)) = &csi
        {
            // Accounting pending beside a CSI roll: one patch does both (the CSI roll does not
            // move the config stamp, so the skipped change is still accounted, never rolled).
            if baseline.is_none() {
                return self.roll_csi_only(id, roll, cw).await;
            }
            let done = self
                .roll_csi_with(id, roll, cw, account_patch(&stamp))
                .await?;
            self.index.set_accounted(id, &stamp);
            return Ok(done);
        }
        if !pending.roll {
            // Unstamped workloads stay unstamped until their first roll: nothing to account.
            if baseline.is_none() {
                return Ok(Done::Nothing);
            }
            self.writer.merge(id, &account_patch(&stamp)).await?;
            self.index.set_accounted(id, &stamp);
            tracing::debug!(workload = %id, "accounted for a change that rolls nothing");
            return Ok(Done::Accounted);
        }
        let now = now_rfc3339();
        // pause-period: pause with this change so that changes within the period land in one
        // rollout when kreload resumes it. Paused already (by kreload: just add the change; by
        // someone else: theirs to resume), no pause of kreload's.
        let pause_for = Self::pause_period(&w).filter(|_| w.paused_at.is_none() && !w.paused);
        if id.kind == WorkloadKind::Job {
            if !self.recreate_job(id, &stamp, leader).await? {
                return Ok(Done::Nothing);
            }
        } else {
            let mut patch = roll_patch(
                &self.settings.annotation_names,
                &Roll {
                    template_path: id.kind.template_path(),
                    location: w.stamp_location(),
                    stamp: &stamp,
                    drop_accounted: w.accounted.is_some(),
                    pause_at: pause_for.map(|_| now.as_str()),
                    now: &now,
                },
            );
            if let Some((roll, _)) = &csi {
                patch = add_csi_roll(
                    patch,
                    id.kind.template_path(),
                    w.stamp_location(),
                    &roll.value,
                    &now,
                );
            }
            self.writer.merge(id, &patch).await?;
            if let Some((roll, _)) = &csi
                && let Some(c) = &self.csi
            {
                c.set_current(id, &roll.value);
            }
        }
        self.index.set_stamp(id, &stamp);
        let note = describe_pending(
            &pending.reasons,
            csi.as_ref().map(|(roll, _)| roll.class.as_str()),
        );
        tracing::info!(workload = %id, changes = %note, paused_for = ?pause_for, "rolled");
        let note = match pause_for {
            Some(p) => format!("Rolling after a pause of {}s: {note}", p.as_secs()),
            None => format!("Rolling: {note}"),
        };
        self.writer
            .event(object_ref(&w), false, "Reloaded", note)
            .await;
        Ok(Done::Rolled { pause_for })
    }

    /// A CSI roll alone: the rotation's value where the workload keeps its stamp (no config
    /// stamp moves), and its Event.
    async fn roll_csi_only(
        &self,
        id: &WorkloadId,
        roll: &CsiRoll,
        w: &crate::state::csi::CsiWorkload,
    ) -> Result<Done, kube::Error> {
        self.roll_csi_with(id, roll, w, serde_json::json!({})).await
    }

    /// A CSI roll added to the merge patch `base` (`{}`, or an accounting patch).
    async fn roll_csi_with(
        &self,
        id: &WorkloadId,
        roll: &CsiRoll,
        w: &crate::state::csi::CsiWorkload,
        base: serde_json::Value,
    ) -> Result<Done, kube::Error> {
        let now = now_rfc3339();
        let patch = add_csi_roll(base, id.kind.template_path(), w.location, &roll.value, &now);
        self.writer.merge(id, &patch).await?;
        if let Some(c) = &self.csi {
            c.set_current(id, &roll.value);
        }
        let note = describe_csi(&roll.class);
        tracing::info!(workload = %id, changes = %note, "rolled");
        let object = ObjectReference {
            api_version: Some(w.api_version.clone()),
            kind: Some(id.kind.as_str().to_owned()),
            name: Some(id.name.clone()),
            namespace: Some(id.namespace.clone()),
            uid: Some(w.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        };
        self.writer
            .event(object, false, "Reloaded", format!("Rolling: {note}"))
            .await;
        Ok(Done::Rolled { pause_for: None })
    }

    /// A Job's template is immutable: it is rolled by deleting it (exactly this Job: a uid
    /// precondition) and creating it again from its spec, stamped, as Reloader does. The copy is
    /// kept until its create succeeds. `false` when the Job is gone or was replaced meanwhile.
    async fn recreate_job(
        &self,
        id: &WorkloadId,
        stamp: &str,
        leader: &watch::Receiver<bool>,
    ) -> Result<bool, kube::Error> {
        let Some(job) = self.writer.get(id).await? else {
            return Ok(false);
        };
        let Some(uid) = job.metadata.uid.clone() else {
            return Ok(false);
        };
        let fresh: DynamicObject = serde_json::to_value(&job)
            .and_then(|job| serde_json::from_value(fresh_job(job, stamp)))
            .map_err(kube::Error::SerdeError)?;
        if !*leader.borrow() || !self.writer.delete_uid(id, &uid).await? {
            return Ok(false);
        }
        self.jobs.lock().insert(id.clone(), fresh, Instant::now());
        self.create_jobs_due().await;
        Ok(true)
    }

    /// Creates the Jobs whose roll deleted them, as far as the API server lets it now.
    async fn create_jobs_due(&self) {
        let due = self.jobs.lock().take_due(Instant::now());
        for (id, create) in due {
            match self.writer.create(&id, &create.job).await {
                Ok(()) => tracing::info!(workload = %id, "Job created again"),
                Err(error) => {
                    let wait = self.jobs.lock().retry(id.clone(), create, Instant::now());
                    tracing::warn!(workload = %id, %error, retry_in = ?wait, "could not create the rolled Job again; will retry");
                }
            }
        }
        self.metrics.set_jobs_to_create(self.jobs.lock().len());
    }

    /// Deployments whose pause kreload made (as their `paused-at` says): when each is due to
    /// resume. Also those whose `pause-period` was removed meanwhile: at once.
    fn paused_deployments(&self) -> Vec<(WorkloadId, Instant)> {
        let now = Instant::now();
        let wall = time::OffsetDateTime::now_utc();
        self.index
            .all()
            .into_iter()
            .filter(|w| w.id.kind == WorkloadKind::Deployment)
            .filter_map(|w| {
                let at = w.paused_at.as_deref()?;
                let period = Self::pause_period(&w).unwrap_or_default();
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

    /// kreload's rollouts still in progress (for the pacing): rolled by it less than
    /// [`ROLLOUT_COUNTS_FOR`] ago, and the workload's controller has not rolled out that stamp
    /// yet. Forgets the others.
    fn rollouts_in_progress(
        &self,
        rolling: &mut HashMap<WorkloadId, (Instant, String)>,
        now: Instant,
    ) -> usize {
        rolling.retain(|id, (at, stamp)| {
            now.duration_since(*at) < ROLLOUT_COUNTS_FOR
                && self
                    .index
                    .get(id)
                    .is_some_and(|w| w.stamp.as_ref() != Some(stamp) || !w.rolled_out)
        });
        rolling.len()
    }

    /// Rolls everything due (as far as the pacing allows), a few writes at once, and records
    /// the outcomes.
    async fn roll_due(
        &self,
        queue: &mut ReloadQueue,
        pauses: &mut HashMap<WorkloadId, Instant>,
        pacing: &mut Pacing,
        leader: &watch::Receiver<bool>,
    ) {
        let now = Instant::now();
        let in_progress = self.rollouts_in_progress(&mut pacing.rolling, now);
        let budget = pacing.pace.budget(now, in_progress);
        let due = queue.pop_due_paced(now, budget);
        let results: Vec<_> = futures::stream::iter(due)
            .map(|(id, pending)| async {
                let result = self.roll(&id, &pending, leader).await;
                (id, pending, result)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;
        for (id, pending, result) in results {
            match result {
                Ok(Done::Rolled { pause_for }) => {
                    if let Some(alerts) = &self.alerts {
                        alerts.alert(&reload_message(
                            &describe_pending(
                                &pending.reasons,
                                pending.csi.as_ref().map(|c| c.class.as_str()),
                            ),
                            &id.namespace,
                            id.kind.as_str(),
                            &id.name,
                            alerts.additional_info(),
                        ));
                    }
                    queue.rolled(&id, now);
                    pacing.pace.started(now);
                    if let Some(stamp) = self.index.get(&id).and_then(|w| w.stamp.clone()) {
                        pacing.rolling.insert(id.clone(), (now, stamp));
                    }
                    self.metrics
                        .reload_in(&id.namespace, id.kind, RollResult::Success);
                    if let Some(p) = pause_for {
                        pauses.insert(id, now + p);
                    }
                }
                Ok(Done::Accounted | Done::Nothing) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(error) => {
                    if pending.roll {
                        self.metrics
                            .reload_in(&id.namespace, id.kind, RollResult::Error);
                    }
                    let failures = pending.failures + 1;
                    let roll = pending.roll;
                    let wait = queue.retry(id.clone(), pending, now);
                    tracing::warn!(workload = %id, %error, retry_in = ?wait, "roll failed; will retry");
                    // A Warning Event on the 1st, 2nd, 4th, 8th... failure: as rare as the retries.
                    if roll
                        && failures.is_power_of_two()
                        && let Some(w) = self.index.get(&id)
                    {
                        let note = format!(
                            "kreload could not roll it (failure {failures}, retrying in {}s): {}",
                            wait.as_secs(),
                            short_error(&error)
                        );
                        self.writer
                            .event(object_ref(&w), true, "ReloadFailed", note)
                            .await;
                    }
                }
            }
        }
        self.metrics.set_rolls_failing(queue.failing());
        self.metrics
            .set_rolls_in_progress(self.rollouts_in_progress(&mut pacing.rolling, now));
    }

    /// Resumes the Deployments whose pause is over.
    async fn resume_due(
        &self,
        pauses: &mut HashMap<WorkloadId, Instant>,
        leader: &watch::Receiver<bool>,
    ) {
        let now = Instant::now();
        let due: Vec<WorkloadId> = pauses
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if !*leader.borrow() {
                return;
            }
            // Only kreload's own pause is undone: the patch tests its `paused-at` first.
            let Some(at) = self.index.get(&id).and_then(|w| w.paused_at.clone()) else {
                pauses.remove(&id);
                continue;
            };
            match self
                .writer
                .json_patch(&id, resume_patch(&self.settings.annotation_names, &at))
                .await
            {
                Ok(()) => {
                    pauses.remove(&id);
                    tracing::info!(workload = %id, "pause period over: resumed");
                }
                // Gone, or someone took the pause over (the test op failed): not ours to undo.
                Err(kube::Error::Api(s)) if matches!(s.code, 404 | 409 | 422) => {
                    pauses.remove(&id);
                    tracing::info!(workload = %id, "not resumed: the pause is no longer kreload's");
                }
                Err(error) => {
                    tracing::warn!(workload = %id, %error, "could not resume; will retry");
                    pauses.insert(id, now + queue::RETRY_FIRST);
                }
            }
        }
    }

    /// Runs until `changes` closes. Acts only while `leader` is true; on becoming leader it
    /// first rolls what drifted while nobody was rolling, and takes over pending resumes.
    pub async fn run(
        self,
        mut changes: mpsc::UnboundedReceiver<ConfigChange>,
        mut news: mpsc::UnboundedReceiver<WorkloadNews>,
        mut rotations: mpsc::UnboundedReceiver<Rotation>,
        mut leader: watch::Receiver<bool>,
    ) {
        let mut queue = ReloadQueue::new(
            self.settings.coalesce_window,
            self.settings.min_roll_interval,
        );
        let mut pauses: HashMap<WorkloadId, Instant> = HashMap::new();
        let mut pacing = Pacing {
            pace: Pace::new(
                self.settings.max_rolls_per_minute,
                self.settings.max_concurrent_rolls,
            ),
            rolling: HashMap::new(),
        };
        let mut leading = false;
        let mut witness = Witness::following(self.startup_drift());
        let mut witness_limit = 1024;
        loop {
            if *leader.borrow_and_update() != leading {
                leading = !leading;
                self.metrics.set_leader(leading);
                if leading {
                    if self.instead_of_rolling.is_none() {
                        // Drift that a consumed-data change caused (or whose cause this replica
                        // cannot know) rolls; drift from changes skipped on purpose is accounted.
                        let plan = witness.plan(self.startup_drift(), |id| {
                            let w = self.index.get(id).filter(|w| self.acts_on(w))?;
                            Some((w.stamp.clone(), self.current_stamp(&w)?))
                        });
                        let rolls = plan.iter().filter(|(_, roll)| *roll).count();
                        tracing::info!(
                            workloads = rolls,
                            accounted = plan.len() - rolls,
                            "leading: rolling workloads whose config changed while nobody was rolling"
                        );
                        let now = Instant::now();
                        for (id, roll) in plan {
                            if roll {
                                queue.push(id, Reasons::new(), now);
                            } else {
                                queue.push_account(id, now);
                            }
                        }
                    }
                    if let Some(webhook) = &self.instead_of_rolling
                        && witness.owes_any()
                    {
                        // A change seen while following would have called it (maybe the old
                        // leader did: at least once, never lost).
                        tracing::info!(
                            "leading: calling --webhook-url for changes made while nobody was leading"
                        );
                        webhook.send(upgrade_webhook_payload());
                    }
                    pauses.extend(self.paused_deployments());
                } else {
                    // What is still queued is left to the next leader; if that is this replica
                    // again, it knows what each queued item was for.
                    witness = Witness::following(self.startup_drift());
                    for (id, pending) in queue.drain() {
                        let current = self.index.get(&id).and_then(|w| self.current_stamp(&w));
                        witness.left_queued(id, pending.roll, current);
                    }
                    pauses.clear();
                }
            }
            let jobs_due = self.jobs.lock().next_due();
            let now = Instant::now();
            // Rolls held back by the pacing: wake when a per-minute slot frees, and look at
            // rollouts in progress every second.
            let queue_due = if !leading {
                None
            } else if pacing.pace.is_limited() && queue.has_due_roll(now) {
                let poll = now + Duration::from_secs(1);
                Some(pacing.pace.next_slot().map_or(poll, |t| t.min(poll)))
            } else {
                queue.next_due()
            };
            let next = [queue_due, pauses.values().min().copied(), jobs_due]
                .into_iter()
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else { break };
                    if !leading {
                        // A follower sees every change as the leader does, and remembers which
                        // workloads a consumed-data change would have rolled: if it takes over,
                        // it rolls only that drift (docs/operations.md).
                        let seen = affected(&change, &self.index, self.stamper.filters(),
                            &self.namespaces, &self.settings, &self.unreported);
                        for (id, effect) in seen {
                            let current = self.index.get(&id).and_then(|w| self.current_stamp(&w));
                            witness.saw(id, &effect, current);
                        }
                        // Bounded by the index: workloads gone are forgotten (amortized).
                        if witness.len() > witness_limit {
                            witness.retain(|id| self.index.get(id).is_some());
                            witness_limit = 2 * witness.len() + 1024;
                        }
                        continue;
                    }
                    let now = Instant::now();
                    let effects = self.affected(&change);
                    if let Some(webhook) = &self.instead_of_rolling {
                        // Reloader's --webhook-url: one call per change that would roll
                        // something, and no roll ever.
                        if effects.iter().any(|(_, e)| matches!(e, Effect::Roll(_))) {
                            tracing::info!(namespace = %change.namespace, config = %change.id, "calling --webhook-url instead of rolling");
                            webhook.send(upgrade_webhook_payload());
                        }
                        continue;
                    }
                    for (id, effect) in effects {
                        match effect {
                            Effect::Roll(reasons) => match queue.push(id, reasons, now) {
                                Pushed::Merged => self.metrics.coalesced(),
                                Pushed::Deferred => self.metrics.deferred(),
                                _ => {}
                            },
                            Effect::Account => {
                                queue.push_account(id, now);
                            }
                        }
                    }
                }
                Some(rotation) = rotations.recv() => {
                    // Only the leader rolls for a rotation, and only for one it sees: a rotation
                    // while nobody led is not replayed (as Reloader). Followers keep the status
                    // bookkeeping (in the watch), so a takeover does not take old updates as new.
                    if !leading {
                        continue;
                    }
                    let rolls = self.csi_rolls(&rotation);
                    if let Some(webhook) = &self.instead_of_rolling {
                        if !rolls.is_empty() {
                            tracing::info!(namespace = %rotation.namespace, class = %rotation.class, "calling --webhook-url instead of rolling");
                            webhook.send(upgrade_webhook_payload());
                        }
                        continue;
                    }
                    let now = Instant::now();
                    for (id, roll) in rolls {
                        match queue.push_csi(id, roll, now) {
                            Pushed::Merged => self.metrics.coalesced(),
                            Pushed::Deferred => self.metrics.deferred(),
                            _ => {}
                        }
                    }
                }
                Some(news) = news.recv() => match news {
                    WorkloadNews::New(id) => {
                        // A workload the watch just found (created moments ago, or while a watch
                        // re-listed): a change it missed before it was indexed rolls it now.
                        let Some(w) = self.index.get(&id).filter(|w| self.acts_on(w) && self.drifted(w)) else {
                            continue;
                        };
                        if !leading {
                            // The leader rolls it; if it dies first, this replica will.
                            witness.found(id, self.baseline(&w).map(str::to_owned));
                        } else if self.instead_of_rolling.is_none() && !queue.contains(&id) {
                            tracing::info!(workload = %id, "its config changed before it was indexed; rolling it");
                            queue.push(id, Reasons::new(), Instant::now());
                        }
                    }
                    WorkloadNews::TemplateReplaced(id) => {
                        // Its controller rolls the new template out by itself: account for the
                        // new hash. (A follower's takeover plan accounts such drift already.)
                        if leading
                            && self.instead_of_rolling.is_none()
                            && self.index.get(&id).is_some_and(|w| self.acts_on(&w) && self.drifted(&w))
                        {
                            tracing::info!(workload = %id, "its referenced pod template consumes other configs now; accounting for the new hash");
                            queue.push_account(id, Instant::now());
                        }
                    }
                },
                _ = leader.changed() => {}
                () = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {
                    if leading {
                        self.roll_due(&mut queue, &mut pauses, &mut pacing, &leader).await;
                        self.resume_due(&mut pauses, &leader).await;
                    }
                    self.create_jobs_due().await;
                }
            }
        }
        // Shutting down: one last try for Jobs a roll deleted.
        self.create_jobs_due().await;
    }
}

#[cfg(test)]
mod tests;
