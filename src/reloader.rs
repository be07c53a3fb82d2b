//! The watcher's acting half: turns config changes into rolls of exactly the affected
//! workloads, through the reload queue, on the leader only.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::admission::Admission;
use crate::annotations::{CONFIG_HASH, FIELD_MANAGER, PAUSED_AT};
use crate::configwatch::ConfigChange;
use crate::index::{StampLocation, WorkloadId, WorkloadIndex, WorkloadInfo};
use crate::metrics::Metrics;
use crate::namespaces::NamespaceFilter;
use crate::patch::template_merge_patch;
use crate::queue::{Pending, Pushed, Reasons, ReloadQueue};
use crate::trigger::{Filters, contribution};
use crate::workload::WorkloadKind;

/// The watcher's settings (from flags).
#[derive(Clone, Debug)]
pub struct ReloadSettings {
    pub coalesce_window: Duration,
    pub min_roll_interval: Duration,
    pub reload_on_create: bool,
    pub reload_on_delete: bool,
    pub ignored_workload_types: BTreeSet<WorkloadKind>,
}

pub struct Reloader {
    pub client: Client,
    pub admission: Arc<Admission>,
    pub index: Arc<WorkloadIndex>,
    pub namespaces: Arc<NamespaceFilter>,
    pub metrics: Arc<Metrics>,
    pub settings: ReloadSettings,
    pub identity: String,
}

/// What a roll did.
enum Rolled {
    Nothing,
    Rolled { pause_for: Option<Duration> },
}

/// Why a change did not lead to a roll, for the skipped-changes metric.
fn skipped(metrics: &Metrics, reason: &'static str) {
    metrics.count("kreload_changes_skipped_total", &[("reason", reason)], 1);
}

impl Reloader {
    pub fn affected(&self, change: &ConfigChange) -> Vec<(WorkloadId, Reasons)> {
        affected(
            change,
            &self.index,
            &self.admission.filters,
            &self.namespaces,
            &self.settings,
            &self.metrics,
        )
    }

    /// The stamp a workload should carry now, if it is still opted in.
    fn current_stamp(&self, w: &WorkloadInfo) -> Option<String> {
        self.admission
            .workload_stamp(&w.id.namespace, &w.policy, &w.refs)
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
                (Some(stamp), Some(current)) => {
                    self.admission.key.is_current(stamp) && *stamp != current
                }
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
            skipped(&self.metrics, "already_current");
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
            Api::namespaced_with(self.client.clone(), &id.namespace, &id.kind.api_resource());
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
            Api::namespaced_with(self.client.clone(), &id.namespace, &id.kind.api_resource());
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
            let kind = id.kind.as_str();
            match result {
                Ok(Rolled::Rolled { pause_for }) => {
                    queue.rolled(&id, now);
                    self.metrics.count(
                        "kreload_reloads_total",
                        &[("kind", kind), ("result", "success")],
                        1,
                    );
                    if let Some(p) = pause_for {
                        pauses.insert(id, now + p);
                    }
                }
                Ok(Rolled::Nothing) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(error) => {
                    self.metrics.count(
                        "kreload_reloads_total",
                        &[("kind", kind), ("result", "error")],
                        1,
                    );
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
                self.metrics.set_gauge("kreload_leader", i64::from(leading));
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
                            Pushed::Merged => self.metrics.count("kreload_changes_coalesced_total", &[], 1),
                            Pushed::Deferred => self.metrics.count("kreload_changes_deferred_total", &[], 1),
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

/// The workloads a change rolls, each with the keys that matter to it.
pub fn affected(
    change: &ConfigChange,
    index: &WorkloadIndex,
    filters: &Filters,
    namespaces: &NamespaceFilter,
    settings: &ReloadSettings,
    metrics: &Metrics,
) -> Vec<(WorkloadId, Reasons)> {
    if !namespaces.is_watched(&change.namespace) {
        skipped(metrics, "namespace");
        return Vec::new();
    }
    if change.old.is_none() && !settings.reload_on_create {
        skipped(metrics, "created");
        return Vec::new();
    }
    if change.new.is_none() && !settings.reload_on_delete {
        skipped(metrics, "deleted");
        return Vec::new();
    }
    let changed_keys: BTreeSet<String> = match (&change.old, &change.new) {
        (Some(old), Some(new)) => old
            .changed_keys(new)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        (Some(e), None) | (None, Some(e)) => e.keys.keys().cloned().collect(),
        (None, None) => BTreeSet::new(),
    };
    let mut out = Vec::new();
    for w in index.candidates(&change.namespace, &change.id) {
        if settings.ignored_workload_types.contains(&w.id.kind) {
            skipped(metrics, "workload_type");
            continue;
        }
        let before = contribution(
            &w.policy,
            &w.refs,
            &change.id,
            change.old.as_deref(),
            filters,
        );
        let after = contribution(
            &w.policy,
            &w.refs,
            &change.id,
            change.new.as_deref(),
            filters,
        );
        if before == after {
            skipped(metrics, "not_consumed");
            continue;
        }
        let keys = match &w.refs.get(&change.id) {
            Some(consumption) => changed_keys
                .iter()
                .filter(|k| consumption.consumes(k))
                .cloned()
                .collect(),
            None => changed_keys.clone(),
        };
        out.push((w.id.clone(), Reasons::from([(change.id.clone(), keys)])));
    }
    out
}

/// The Job to create again: its spec without what the API server generated (selector and the
/// controller labels it derives from the old uid), its metadata without identity or status, and
/// the new stamp on the template.
fn fresh_job(mut job: DynamicObject, stamp: &str) -> DynamicObject {
    let meta = &mut job.metadata;
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.managed_fields = None;
    meta.generation = None;
    meta.deletion_timestamp = None;
    meta.deletion_grace_period_seconds = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| !generated_job_label(k));
    }
    if let Some(data) = job.data.as_object_mut() {
        data.remove("status");
    }
    if let Some(spec) = job.data.get_mut("spec").filter(|s| s.is_object()) {
        spec.as_object_mut().map(|s| s.remove("selector"));
        if let Some(labels) = spec
            .pointer_mut("/template/metadata/labels")
            .and_then(|l| l.as_object_mut())
        {
            labels.retain(|k, _| !generated_job_label(k));
        }
        if !spec["template"].is_object() {
            spec["template"] = json!({});
        }
        let template = &mut spec["template"];
        if !template["metadata"].is_object() {
            template["metadata"] = json!({});
        }
        if !template["metadata"]["annotations"].is_object() {
            template["metadata"]["annotations"] = json!({});
        }
        template["metadata"]["annotations"][CONFIG_HASH] = json!(stamp);
    }
    job
}

/// Labels the Job controller adds from the Job's uid and name.
fn generated_job_label(key: &str) -> bool {
    matches!(
        key,
        "controller-uid"
            | "job-name"
            | "batch.kubernetes.io/controller-uid"
            | "batch.kubernetes.io/job-name"
    )
}

fn object_ref(w: &WorkloadInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some(w.api_version.clone()),
        kind: Some(w.id.kind.as_str().to_owned()),
        name: Some(w.id.name.clone()),
        namespace: Some(w.id.namespace.clone()),
        uid: Some(w.uid.clone()).filter(|u| !u.is_empty()),
        ..Default::default()
    }
}

/// "ConfigMap app-config (keys: a, b); Secret db (keys: password)": names and keys, never values.
fn describe(reasons: &Reasons) -> String {
    if reasons.is_empty() {
        return "config changed while kreload was not rolling".into();
    }
    let parts: Vec<String> = reasons
        .iter()
        .map(|(id, keys)| {
            if keys.is_empty() {
                format!("{} {} changed", id.kind, id.name)
            } else {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                format!(
                    "{} {} changed (keys: {})",
                    id.kind,
                    id.name,
                    keys.join(", ")
                )
            }
        })
        .collect();
    parts.join("; ")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::WorkloadInfo;
    use crate::model::{ConfigId, ConfigKind, ValueDigest};
    use crate::refs::Consumption;
    use crate::store::ConfigEntry;
    use std::collections::BTreeMap;

    fn settings() -> ReloadSettings {
        ReloadSettings {
            coalesce_window: Duration::from_secs(1),
            min_roll_interval: Duration::from_secs(10),
            reload_on_create: false,
            reload_on_delete: false,
            ignored_workload_types: BTreeSet::new(),
        }
    }

    fn workload(
        name: &str,
        annotations: &[(&str, &str)],
        refs: &[(&str, Consumption)],
    ) -> WorkloadInfo {
        let refs = refs
            .iter()
            .map(|(n, c)| (ConfigId::new(ConfigKind::ConfigMap, *n), c.clone()))
            .collect();
        WorkloadInfo::deployment("ns", name, annotations, refs)
    }

    fn entry(keys: &[(&str, &str)], labels: &[(&str, &str)]) -> Arc<ConfigEntry> {
        Arc::new(ConfigEntry {
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
                .collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Default::default()
        })
    }

    fn change(old: Option<Arc<ConfigEntry>>, new: Option<Arc<ConfigEntry>>) -> ConfigChange {
        ConfigChange {
            namespace: "ns".into(),
            id: ConfigId::new(ConfigKind::ConfigMap, "app"),
            old,
            new,
        }
    }

    fn names(
        index: &WorkloadIndex,
        c: &ConfigChange,
        s: &ReloadSettings,
    ) -> Vec<(String, Vec<String>)> {
        affected(
            c,
            index,
            &Filters::default(),
            &NamespaceFilter::default(),
            s,
            &Metrics::default(),
        )
        .into_iter()
        .map(|(id, reasons)| (id.name, reasons.values().flatten().cloned().collect()))
        .collect()
    }

    fn index() -> WorkloadIndex {
        let index = WorkloadIndex::new();
        let keys = Consumption::Keys(["a".to_string()].into());
        index.upsert(workload(
            "uses-a",
            &[("reloader.stakater.com/auto", "true")],
            &[("app", keys)],
        ));
        index.upsert(workload(
            "uses-all",
            &[("reloader.stakater.com/auto", "true")],
            &[("app", Consumption::All)],
        ));
        index.upsert(workload(
            "lists-it",
            &[("configmap.reloader.stakater.com/reload", "app")],
            &[],
        ));
        index
    }

    #[test]
    fn only_workloads_consuming_a_changed_key_roll_with_those_keys() {
        let index = index();
        let c = change(
            Some(entry(&[("a", "1"), ("b", "1")], &[])),
            Some(entry(&[("a", "1"), ("b", "2")], &[])),
        );
        assert_eq!(
            names(&index, &c, &settings()),
            vec![
                ("lists-it".into(), vec!["b".into()]),
                ("uses-all".into(), vec!["b".into()])
            ]
        );
        let c = change(
            Some(entry(&[("a", "1")], &[])),
            Some(entry(&[("a", "2")], &[])),
        );
        assert_eq!(names(&index, &c, &settings()).len(), 3);
    }

    #[test]
    fn metadata_only_changes_roll_nothing() {
        let c = change(
            Some(entry(&[("a", "1")], &[])),
            Some(entry(&[("a", "1")], &[("team", "x")])),
        );
        assert!(names(&index(), &c, &settings()).is_empty());
    }

    #[test]
    fn creation_and_deletion_roll_only_when_asked() {
        let index = index();
        let created = change(None, Some(entry(&[("a", "1")], &[])));
        let deleted = change(Some(entry(&[("a", "1")], &[])), None);
        assert!(names(&index, &created, &settings()).is_empty());
        assert!(names(&index, &deleted, &settings()).is_empty());
        let s = ReloadSettings {
            reload_on_create: true,
            reload_on_delete: true,
            ..settings()
        };
        assert_eq!(names(&index, &created, &s).len(), 3);
        assert_eq!(names(&index, &deleted, &s).len(), 3);
    }

    #[test]
    fn ignored_workload_types_never_roll() {
        let s = ReloadSettings {
            ignored_workload_types: BTreeSet::from([WorkloadKind::Deployment]),
            ..settings()
        };
        let c = change(
            Some(entry(&[("a", "1")], &[])),
            Some(entry(&[("a", "2")], &[])),
        );
        assert!(names(&index(), &c, &s).is_empty());
    }

    #[test]
    fn recreated_jobs_drop_generated_fields_and_carry_the_stamp() {
        let job: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                         "labels": {"team": "a", "batch.kubernetes.io/controller-uid": "u", "job-name": "j"}},
            "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"metadata": {"labels": {"app": "x", "controller-uid": "u", "batch.kubernetes.io/job-name": "j"}},
                                  "spec": {"restartPolicy": "Never"}}},
            "status": {"succeeded": 1}
        }))
        .unwrap();
        let fresh = serde_json::to_value(fresh_job(job, "v1.k.s")).unwrap();
        assert_eq!(fresh["metadata"]["labels"], json!({"team": "a"}));
        assert!(
            fresh["metadata"].get("uid").is_none()
                && fresh["metadata"].get("resourceVersion").is_none()
        );
        assert!(fresh.get("status").is_none() && fresh["spec"].get("selector").is_none());
        assert_eq!(
            fresh["spec"]["template"]["metadata"]["labels"],
            json!({"app": "x"})
        );
        assert_eq!(
            fresh["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH],
            "v1.k.s"
        );
    }

    #[test]
    fn reasons_name_configs_and_keys_never_values() {
        let reasons = Reasons::from([(
            ConfigId::new(ConfigKind::Secret, "db"),
            BTreeSet::from(["password".to_string()]),
        )]);
        assert_eq!(describe(&reasons), "Secret db changed (keys: password)");
        assert_eq!(
            describe(&Reasons::new()),
            "config changed while kreload was not rolling"
        );
    }
}
