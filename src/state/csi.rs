//! Secrets Store CSI bookkeeping (`--enable-csi-integration`): what kreload knows of each
//! SecretProviderClassPodStatus (by uid: its class and the digest of its versions, never the
//! versions), and the workloads that mount a SecretProviderClass and may roll for it. Neither
//! is read by the stamps, the trigger sets or admission.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::domain::csi::{CsiPolicy, Mounted, Rotation, rolls_for, rotation};
use crate::domain::policy::WorkloadPolicy;
use crate::domain::workload::{StampLocation, WorkloadId, WorkloadKind};

/// The statuses kreload knows, by uid. Entries are dropped on delete, so memory follows the
/// pods that mount a class.
#[derive(Default)]
pub struct CsiStatuses {
    inner: Mutex<HashMap<String, Mounted>>,
}

impl CsiStatuses {
    pub fn new() -> Self {
        Self::default()
    }

    /// An add or update of one status: the rotation it is, if any. `None` for `mounted`: it
    /// names no class (forgotten, as if deleted).
    pub fn apply(&self, uid: &str, mounted: Option<Mounted>) -> Option<Rotation> {
        let mut inner = self.inner.lock();
        let Some(mounted) = mounted else {
            inner.remove(uid);
            return None;
        };
        let r = rotation(inner.get(uid), &mounted);
        inner.insert(uid.to_owned(), mounted);
        r
    }

    pub fn remove(&self, uid: &str) {
        self.inner.lock().remove(uid);
    }

    /// A listing of `scope` (a namespace, or all): each object is compared with what kreload had
    /// for the same uid (a rotation when its versions changed); objects kreload did not have are
    /// learnt, and those not listed any more are forgotten.
    pub fn relist(&self, scope: Option<&str>, fresh: Vec<(String, Mounted)>) -> Vec<Rotation> {
        let mut inner = self.inner.lock();
        let listed: BTreeSet<&str> = fresh.iter().map(|(uid, _)| uid.as_str()).collect();
        inner.retain(|uid, m| {
            listed.contains(uid.as_str()) || scope.is_some_and(|ns| m.namespace != ns)
        });
        let mut rotations = Vec::new();
        for (uid, mounted) in fresh {
            rotations.extend(rotation(inner.get(&uid), &mounted));
            inner.insert(uid, mounted);
        }
        rotations
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What kreload keeps of a workload that mounts a SecretProviderClass and may roll for one.
#[derive(Clone, Debug)]
pub struct CsiWorkload {
    pub id: WorkloadId,
    pub uid: String,
    pub api_version: String,
    pub classes: BTreeSet<String>,
    pub policy: Arc<WorkloadPolicy>,
    pub csi: Arc<CsiPolicy>,
    /// Where a CSI roll writes (as the stamp: the template, or the object for Rollouts kreload
    /// restarts).
    pub location: StampLocation,
    /// The `kreload.dev/csi-versions` value it carries now.
    pub current: Option<String>,
}

/// The workloads that mount a SecretProviderClass and may roll for it, by id, and by
/// (namespace, class).
#[derive(Default)]
pub struct CsiWorkloads {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<WorkloadId, CsiWorkload>,
    by_class: HashMap<(String, String), BTreeSet<WorkloadId>>,
}

impl Inner {
    fn insert(&mut self, w: CsiWorkload) {
        self.remove(&w.id);
        for class in &w.classes {
            self.by_class
                .entry((w.id.namespace.clone(), class.clone()))
                .or_default()
                .insert(w.id.clone());
        }
        self.by_id.insert(w.id.clone(), w);
    }

    fn remove(&mut self, id: &WorkloadId) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        for class in old.classes {
            let key = (id.namespace.clone(), class);
            if let Some(set) = self.by_class.get_mut(&key) {
                set.remove(id);
                if set.is_empty() {
                    self.by_class.remove(&key);
                }
            }
        }
    }
}

impl CsiWorkloads {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn upsert(&self, w: CsiWorkload) {
        self.inner.write().insert(w);
    }

    pub fn remove(&self, id: &WorkloadId) {
        self.inner.write().remove(id);
    }

    /// Replaces every workload of `kind` in `scope` (a namespace, or all) by a listing.
    pub fn replace_kind(&self, kind: WorkloadKind, scope: Option<&str>, fresh: Vec<CsiWorkload>) {
        let mut inner = self.inner.write();
        let gone: Vec<WorkloadId> = inner
            .by_id
            .keys()
            .filter(|id| id.kind == kind && scope.is_none_or(|ns| id.namespace == ns))
            .cloned()
            .collect();
        for id in gone {
            inner.remove(&id);
        }
        for w in fresh {
            inner.insert(w);
        }
    }

    pub fn get(&self, id: &WorkloadId) -> Option<CsiWorkload> {
        self.inner.read().by_id.get(id).cloned()
    }

    /// Notes the value a CSI roll wrote.
    pub fn set_current(&self, id: &WorkloadId, value: &str) {
        if let Some(w) = self.inner.write().by_id.get_mut(id) {
            w.current = Some(value.to_owned());
        }
    }

    /// The workloads in the rotation's namespace that mount its class and are opted in for it.
    pub fn rolled_by(&self, rotation: &Rotation, auto_reload_all: bool) -> Vec<WorkloadId> {
        let inner = self.inner.read();
        let key = (rotation.namespace.clone(), rotation.class.clone());
        inner
            .by_class
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|id| {
                inner.by_id.get(*id).is_some_and(|w| {
                    rolls_for(
                        w.id.kind,
                        &w.policy,
                        &w.csi,
                        &rotation.class,
                        auto_reload_all,
                    )
                })
            })
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
