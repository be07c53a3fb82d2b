//! One stamp computation for the webhook, the watcher and the CLI: the keyed hash of a
//! workload's trigger set, or of what a pod consumes, over a read view of its namespace (whose
//! name is hashed too).

use crate::domain::annotations::AnnotationNames;
use crate::domain::entry::ConfigView;
use crate::domain::policy::{self, WorkloadPolicy};
use crate::domain::refs::References;
use crate::domain::stamp::HashKey;
use crate::domain::trigger::{Filters, encode_consumed_set, encode_trigger_set};
use crate::domain::workload::LeanPod;

/// Computes stamps with one key under one set of global filters.
#[derive(Clone, Debug)]
pub struct Stamper {
    key: HashKey,
    filters: Filters,
}

impl Stamper {
    pub fn new(key: HashKey, filters: Filters) -> Self {
        Stamper { key, filters }
    }

    pub fn key(&self) -> &HashKey {
        &self.key
    }

    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    /// Whether a stamp was made by this recipe and key (others are an unknown baseline).
    pub fn is_current(&self, stamp: &str) -> bool {
        self.key.is_current(stamp)
    }

    /// The stamp a workload's template should carry now, or `None` when it is not opted in.
    pub fn workload_stamp(
        &self,
        namespace: &str,
        view: &dyn ConfigView,
        policy: &WorkloadPolicy,
        refs: &References,
    ) -> Option<String> {
        if !policy.opted_in(self.filters.auto_reload_all) {
            return None;
        }
        Some(self.key.stamp_encoded(&encode_trigger_set(
            namespace,
            policy,
            refs,
            view,
            &self.filters,
        )))
    }

    /// The stamp a pod gets at creation: the trigger set of its owning workload (`owner`, its
    /// policy when the index knows it) if that is opted in, else what the pod's own annotations
    /// (under `names`) opt into, else everything it consumes.
    pub fn pod_stamp(
        &self,
        names: &AnnotationNames,
        namespace: &str,
        view: &dyn ConfigView,
        pod: &LeanPod,
        owner: Option<&WorkloadPolicy>,
    ) -> String {
        let refs = pod.spec.references();
        let own_policy;
        let policy = match owner {
            Some(p) => Some(p),
            None => {
                own_policy =
                    policy::parse_workload(names, pod.metadata().annotations(), None).value;
                Some(&own_policy)
            }
        }
        .filter(|p| p.opted_in(self.filters.auto_reload_all));
        let encoding = match policy {
            Some(p) => encode_trigger_set(namespace, p, &refs, view, &self.filters),
            None => encode_consumed_set(namespace, &refs, view),
        };
        self.key.stamp_encoded(&encoding)
    }
}
