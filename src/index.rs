//! The workload index: per opted-in workload only what the decision needs (policy, references,
//! current stamp), and the reverse map from a config to the workloads that may roll for it, so a
//! change costs work proportional to the workloads it can affect.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::admission::WorkloadPolicies;
use crate::model::{ConfigId, ConfigKind};
use crate::policy::{RolloutStrategy, WorkloadPolicy};
use crate::refs::References;
use crate::workload::WorkloadKind;

/// A workload, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Where a workload carries its stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampLocation {
    /// On the pod template: changing it rolls the workload.
    Template,
    /// On the object itself, for Argo Rollouts rolled by `spec.restartAt`, whose template must
    /// not change.
    Object,
}

impl StampLocation {
    pub fn of(kind: WorkloadKind, policy: &WorkloadPolicy) -> Self {
        if kind == WorkloadKind::Rollout && policy.rollout_strategy == RolloutStrategy::Restart {
            StampLocation::Object
        } else {
            StampLocation::Template
        }
    }
}

/// What the index keeps of one opted-in workload.
#[derive(Clone, Debug)]
pub struct WorkloadInfo {
    pub id: WorkloadId,
    pub uid: String,
    pub api_version: String,
    pub policy: Arc<WorkloadPolicy>,
    pub refs: References,
    /// The stamp it carries now (where [`StampLocation`] says).
    pub stamp: Option<String>,
    /// When kreload paused it after a reload (`pause-period`), as written in the annotation.
    pub paused_at: Option<String>,
}

impl WorkloadInfo {
    pub fn stamp_location(&self) -> StampLocation {
        StampLocation::of(self.id.kind, &self.policy)
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
        let a: crate::policy::Annotations = annotations
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
            policy: Arc::new(crate::policy::parse_workload(&a, None).value),
            refs,
            stamp: None,
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
    pub fn upsert(&self, info: WorkloadInfo) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = inner.workloads.remove(&info.id) {
            inner.unlink(&old);
        }
        inner.link(&info);
        inner.workloads.insert(info.id.clone(), Arc::new(info));
    }

    pub fn remove(&self, id: &WorkloadId) -> Option<Arc<WorkloadInfo>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = inner.workloads.remove(id)?;
        inner.unlink(&old);
        Some(old)
    }

    /// Replaces every workload of one kind (after a full re-list), in one namespace or all.
    pub fn replace_kind(&self, kind: WorkloadKind, scope: Option<&str>, fresh: Vec<WorkloadInfo>) {
        let stale: Vec<WorkloadId> = {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            inner
                .workloads
                .keys()
                .filter(|id| id.kind == kind && scope.is_none_or(|ns| ns == id.namespace))
                .cloned()
                .collect()
        };
        for id in &stale {
            self.remove(id);
        }
        for info in fresh {
            self.upsert(info);
        }
    }

    pub fn get(&self, id: &WorkloadId) -> Option<Arc<WorkloadInfo>> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .workloads
            .get(id)
            .cloned()
    }

    /// Records the stamp a workload now carries (after kreload patched it).
    pub fn set_stamp(&self, id: &WorkloadId, stamp: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(info) = inner.workloads.get_mut(id) {
            Arc::make_mut(info).stamp = Some(stamp.to_owned());
        }
    }

    /// The workloads that may roll for a change of `config` in `namespace`: those referencing it,
    /// and those whose reload list for its kind matches its name.
    pub fn candidates(&self, namespace: &str, config: &ConfigId) -> Vec<Arc<WorkloadInfo>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
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
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = inner.workloads.values().cloned().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .workloads
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Workloads by kind, for metrics.
    pub fn count_by_kind(&self) -> BTreeMap<WorkloadKind, usize> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for id in inner.workloads.keys() {
            *out.entry(id.kind).or_default() += 1;
        }
        out
    }
}

impl WorkloadPolicies for WorkloadIndex {
    fn policy(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refs::Consumption;

    fn info(
        ns: &str,
        name: &str,
        annotations: &[(&str, &str)],
        refs: &[(ConfigKind, &str)],
    ) -> WorkloadInfo {
        let refs = refs
            .iter()
            .map(|(k, n)| (ConfigId::new(*k, *n), Consumption::All))
            .collect();
        WorkloadInfo::deployment(ns, name, annotations, refs)
    }

    fn names(v: Vec<Arc<WorkloadInfo>>) -> Vec<String> {
        v.iter().map(|w| w.id.name.clone()).collect()
    }

    const CM: ConfigKind = ConfigKind::ConfigMap;

    #[test]
    fn candidates_are_referencing_and_list_matching_workloads_of_the_namespace() {
        let index = WorkloadIndex::new();
        index.upsert(info(
            "a",
            "uses-app",
            &[("reloader.stakater.com/auto", "true")],
            &[(CM, "app")],
        ));
        index.upsert(info(
            "a",
            "lists-app",
            &[("configmap.reloader.stakater.com/reload", "app-.*,other")],
            &[],
        ));
        index.upsert(info(
            "b",
            "other-ns",
            &[("reloader.stakater.com/auto", "true")],
            &[(CM, "app")],
        ));
        assert_eq!(
            names(index.candidates("a", &ConfigId::new(CM, "app"))),
            vec!["uses-app"]
        );
        assert_eq!(
            names(index.candidates("a", &ConfigId::new(CM, "app-1"))),
            vec!["lists-app"]
        );
        assert_eq!(
            names(index.candidates("a", &ConfigId::new(CM, "other"))),
            vec!["lists-app"]
        );
        assert!(
            index
                .candidates("a", &ConfigId::new(ConfigKind::Secret, "app"))
                .is_empty()
        );
        assert_eq!(
            names(index.candidates("b", &ConfigId::new(CM, "app"))),
            vec!["other-ns"]
        );
    }

    #[test]
    fn updates_relink_and_removal_unlinks() {
        let index = WorkloadIndex::new();
        index.upsert(info(
            "a",
            "w",
            &[("reloader.stakater.com/auto", "true")],
            &[(CM, "old")],
        ));
        index.upsert(info(
            "a",
            "w",
            &[("reloader.stakater.com/auto", "true")],
            &[(CM, "new")],
        ));
        assert!(index.candidates("a", &ConfigId::new(CM, "old")).is_empty());
        assert_eq!(index.candidates("a", &ConfigId::new(CM, "new")).len(), 1);
        let id = index.all()[0].id.clone();
        index.set_stamp(&id, "v1.k.x");
        assert_eq!(index.get(&id).unwrap().stamp.as_deref(), Some("v1.k.x"));
        assert!(index.remove(&id).is_some());
        assert!(index.candidates("a", &ConfigId::new(CM, "new")).is_empty());
        assert!(index.is_empty());
    }

    #[test]
    fn replace_kind_drops_workloads_that_disappeared() {
        let index = WorkloadIndex::new();
        index.upsert(info(
            "a",
            "gone",
            &[("configmap.reloader.stakater.com/reload", "x")],
            &[],
        ));
        index.replace_kind(
            WorkloadKind::Deployment,
            None,
            vec![info("a", "kept", &[], &[(CM, "x")])],
        );
        assert_eq!(names(index.all()), vec!["kept"]);
        assert_eq!(
            names(index.candidates("a", &ConfigId::new(CM, "x"))),
            vec!["kept"]
        );
    }

    #[test]
    fn pod_owners_are_found_by_kind_and_name() {
        let index = WorkloadIndex::new();
        index.upsert(info(
            "a",
            "web",
            &[("reloader.stakater.com/search", "true")],
            &[],
        ));
        assert!(
            index
                .policy("a", WorkloadKind::Deployment, "web")
                .unwrap()
                .search
        );
        assert!(
            index
                .policy("a", WorkloadKind::StatefulSet, "web")
                .is_none()
        );
    }
}
