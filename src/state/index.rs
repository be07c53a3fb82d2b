//! The workload index: per opted-in workload only what the decision needs (policy, references,
//! current stamp), and the reverse map from a config to the workloads that may roll for it, so a
//! change costs work proportional to the workloads it can affect.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::domain::config::{ConfigId, ConfigKind};
use crate::domain::policy::WorkloadPolicy;
use crate::domain::refs::References;
use crate::domain::workload::{StampLocation, WorkloadId, WorkloadKind};

/// What the index keeps of one opted-in workload.
#[derive(Clone, Debug)]
pub struct WorkloadInfo {
    pub id: WorkloadId,
    pub uid: String,
    pub api_version: String,
    pub policy: Arc<WorkloadPolicy>,
    /// The references of its pod template (for a Rollout with `spec.workloadRef`, of the
    /// referenced Deployment's).
    pub refs: References,
    /// Where it carries its stamp.
    pub location: StampLocation,
    /// The stamp it carries now (where [`StampLocation`] says).
    pub stamp: Option<String>,
    /// The hash kreload accounted for after a change it skipped on purpose, when that differs
    /// from the stamp (`kreload.dev/accounted-hash` on the workload's metadata).
    pub accounted: Option<String>,
    /// Whether its rollout is paused (`spec.paused`), by anyone.
    pub paused: bool,
    /// Whether its controller has rolled out its current template.
    pub rolled_out: bool,
    /// When kreload paused it after a reload (`pause-period`), as written in the annotation.
    pub paused_at: Option<String>,
}

impl WorkloadInfo {
    pub fn stamp_location(&self) -> StampLocation {
        self.location
    }
}

#[cfg(test)]
impl WorkloadInfo {
    /// A Deployment with these annotations and references: the tests' fixture.
    pub(crate) fn deployment(
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
        refs: References,
    ) -> Self {
        let a: crate::domain::policy::Annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WorkloadInfo {
            id: WorkloadId {
                kind: WorkloadKind::Deployment,
                namespace: namespace.into(),
                name: name.into(),
            },
            uid: String::new(),
            api_version: "apps/v1".into(),
            policy: Arc::new(
                crate::domain::policy::parse_workload(&Default::default(), &a, None).value,
            ),
            refs,
            location: StampLocation::Template,
            stamp: None,
            accounted: None,
            paused: false,
            rolled_out: true,
            paused_at: None,
        }
    }
}

#[derive(Default)]
struct Inner {
    workloads: HashMap<WorkloadId, Arc<WorkloadInfo>>,
    /// (namespace, config) → workloads whose pod spec references it.
    by_ref: HashMap<(String, ConfigId), BTreeSet<WorkloadId>>,
    /// namespace → workloads with a reload list (they may roll for configs they do not reference).
    with_lists: HashMap<String, BTreeSet<WorkloadId>>,
}

impl Inner {
    fn unlink(&mut self, info: &WorkloadInfo) {
        for id in info.refs.keys() {
            let key = (info.id.namespace.clone(), id.clone());
            if let Some(set) = self.by_ref.get_mut(&key) {
                set.remove(&info.id);
                if set.is_empty() {
                    self.by_ref.remove(&key);
                }
            }
        }
        if let Some(set) = self.with_lists.get_mut(&info.id.namespace) {
            set.remove(&info.id);
            if set.is_empty() {
                self.with_lists.remove(&info.id.namespace);
            }
        }
    }

    fn link(&mut self, info: &WorkloadInfo) {
        for id in info.refs.keys() {
            self.by_ref
                .entry((info.id.namespace.clone(), id.clone()))
                .or_default()
                .insert(info.id.clone());
        }
        if ConfigKind::ALL
            .iter()
            .any(|k| !info.policy.reload_list(*k).is_empty())
        {
            self.with_lists
                .entry(info.id.namespace.clone())
                .or_default()
                .insert(info.id.clone());
        }
    }
}

/// Opted-in workloads and the reverse map. Readers take a short read lock; no I/O under it.
#[derive(Default)]
pub struct WorkloadIndex {
    inner: RwLock<Inner>,
}

impl WorkloadIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records (or replaces) a workload.
    /// Records (or replaces) a workload; true when the index did not have it.
    pub fn upsert(&self, info: WorkloadInfo) -> bool {
        let mut inner = self.inner.write();
        let old = inner.workloads.remove(&info.id);
        if let Some(old) = &old {
            inner.unlink(old);
        }
        inner.link(&info);
        inner.workloads.insert(info.id.clone(), Arc::new(info));
        old.is_none()
    }

    pub fn remove(&self, id: &WorkloadId) -> Option<Arc<WorkloadInfo>> {
        let mut inner = self.inner.write();
        let old = inner.workloads.remove(id)?;
        inner.unlink(&old);
        Some(old)
    }

    /// Replaces every workload of one kind (after a full re-list), in one namespace or all, in
    /// one step: a reader never sees the kind half listed.
    /// Returns the workloads it did not have.
    pub fn replace_kind(
        &self,
        kind: WorkloadKind,
        scope: Option<&str>,
        fresh: Vec<WorkloadInfo>,
    ) -> Vec<WorkloadId> {
        let mut inner = self.inner.write();
        let stale: Vec<WorkloadId> = inner
            .workloads
            .keys()
            .filter(|id| id.kind == kind && scope.is_none_or(|ns| ns == id.namespace))
            .cloned()
            .collect();
        let mut known: std::collections::HashSet<WorkloadId> = std::collections::HashSet::new();
        for id in stale {
            if let Some(old) = inner.workloads.remove(&id) {
                inner.unlink(&old);
            }
            known.insert(id);
        }
        let mut new = Vec::new();
        for info in fresh {
            if !known.contains(&info.id) {
                new.push(info.id.clone());
            }
            if let Some(old) = inner.workloads.remove(&info.id) {
                inner.unlink(&old);
            }
            inner.link(&info);
            inner.workloads.insert(info.id.clone(), Arc::new(info));
        }
        new
    }

    pub fn get(&self, id: &WorkloadId) -> Option<Arc<WorkloadInfo>> {
        self.inner.read().workloads.get(id).cloned()
    }

    /// Records the stamp a workload now carries after kreload rolled it (its accounted hash is
    /// gone with the roll).
    pub fn set_stamp(&self, id: &WorkloadId, stamp: &str) {
        let mut inner = self.inner.write();
        if let Some(info) = inner.workloads.get_mut(id) {
            let info = Arc::make_mut(info);
            info.stamp = Some(stamp.to_owned());
            info.accounted = None;
        }
    }

    /// Records the hash kreload accounted for after a change it skipped on purpose.
    pub fn set_accounted(&self, id: &WorkloadId, accounted: &str) {
        let mut inner = self.inner.write();
        if let Some(info) = inner.workloads.get_mut(id) {
            Arc::make_mut(info).accounted = Some(accounted.to_owned());
        }
    }

    /// The workloads that may roll for a change of `config` in `namespace`: those referencing it,
    /// and those whose reload list for its kind matches its name.
    pub fn candidates(&self, namespace: &str, config: &ConfigId) -> Vec<Arc<WorkloadInfo>> {
        let inner = self.inner.read();
        let mut ids: HashSet<&WorkloadId> = HashSet::new();
        if let Some(set) = inner.by_ref.get(&(namespace.to_owned(), config.clone())) {
            ids.extend(set);
        }
        if let Some(set) = inner.with_lists.get(namespace) {
            for id in set {
                if inner.workloads[id]
                    .policy
                    .reload_list(config.kind)
                    .matches(&config.name)
                {
                    ids.insert(id);
                }
            }
        }
        let mut out: Vec<_> = ids
            .into_iter()
            .map(|id| inner.workloads[id].clone())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Every workload (for the start-up comparison).
    pub fn all(&self) -> Vec<Arc<WorkloadInfo>> {
        let inner = self.inner.read();
        let mut out: Vec<_> = inner.workloads.values().cloned().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn len(&self) -> usize {
        self.inner.read().workloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy of an indexed workload: pods find their owner's policy here.
    pub fn policy_of(
        &self,
        namespace: &str,
        kind: WorkloadKind,
        name: &str,
    ) -> Option<Arc<WorkloadPolicy>> {
        let id = WorkloadId {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.get(&id).map(|w| w.policy.clone())
    }

    /// Workloads by kind, for metrics.
    pub fn count_by_kind(&self) -> BTreeMap<WorkloadKind, usize> {
        let inner = self.inner.read();
        let mut out = BTreeMap::new();
        for id in inner.workloads.keys() {
            *out.entry(id.kind).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests;
