//! The admission webhooks as functions of a body: an AdmissionReview in, a response out.
//!
//! The HTTP shell ([`server`]) only enforces limits and maps [`ReviewError`] to a status code.
//! Everything here reads the digest store and the workload index (short read locks) and never
//! calls the API server.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::domain::annotations::AnnotationNames;
use crate::domain::policy::WorkloadPolicy;
use crate::domain::refs::References;
use crate::domain::stamper::Stamper;
use crate::domain::workload::{LeanPod, WorkloadKind};
use crate::state::index::WorkloadIndex;
use crate::state::namespaces::NamespaceFilter;
use crate::state::store::DigestStore;

mod mutate;
mod review;
pub mod selfcert;
pub mod server;
pub mod tls;
mod validate;
pub mod webhooks;

pub use review::{Answer, Outcome, ReviewError};

/// What the webhooks read: the stamp computation, the digest store, the workload index (pods
/// find their owner's policy there), and which namespaces and kinds kreload acts on.
pub struct Admission {
    stamper: Stamper,
    store: Arc<DigestStore>,
    index: Arc<WorkloadIndex>,
    /// Namespaces kreload acts in; elsewhere nothing is stamped.
    namespaces: Arc<NamespaceFilter>,
    /// Workload kinds never rolled (`--ignored-workload-types`), so never stamped either.
    ignored_workloads: BTreeSet<WorkloadKind>,
    /// The user kreload's own writes come as (its ServiceAccount), when known.
    own_user: Option<String>,
    /// The names of the annotations read (Reloader's `--*-annotation` flags).
    names: Arc<AnnotationNames>,
    /// `--enable-csi-integration` acts: bad values of the CSI keys get admission warnings.
    csi: bool,
}

impl Admission {
    pub fn new(
        stamper: Stamper,
        store: Arc<DigestStore>,
        index: Arc<WorkloadIndex>,
        namespaces: Arc<NamespaceFilter>,
        ignored_workloads: BTreeSet<WorkloadKind>,
    ) -> Self {
        Admission {
            stamper,
            store,
            index,
            namespaces,
            ignored_workloads,
            own_user: None,
            names: Arc::default(),
            csi: false,
        }
    }

    /// With CSI integration acting: warn (never deny) about bad values of the CSI keys.
    pub fn with_csi(mut self, csi: bool) -> Self {
        self.csi = csi;
        self
    }

    /// The names of the annotations read (default: Reloader's).
    pub fn with_annotation_names(mut self, names: Arc<AnnotationNames>) -> Self {
        self.names = names;
        self
    }

    /// The user kreload's own writes come as: only those (with its field manager) are its own.
    pub fn with_own_user(mut self, user: Option<String>) -> Self {
        self.own_user = user;
        self
    }

    pub fn stamper(&self) -> &Stamper {
        &self.stamper
    }

    /// The stamp a workload's template should carry now, or `None` when it is not opted in.
    pub fn workload_stamp(
        &self,
        namespace: &str,
        policy: &WorkloadPolicy,
        refs: &References,
    ) -> Option<String> {
        self.store.with_namespace(namespace, |view| {
            self.stamper.workload_stamp(namespace, view, policy, refs)
        })
    }

    /// The stamp a pod gets at creation; its owner's policy comes from the index.
    pub fn pod_stamp(&self, namespace: &str, pod: &LeanPod) -> String {
        let owner = pod
            .owner_candidates()
            .into_iter()
            .find_map(|(kind, name)| self.index.policy_of(namespace, kind, &name));
        self.store.with_namespace(namespace, |view| {
            self.stamper
                .pod_stamp(&self.names, namespace, view, pod, owner.as_deref())
        })
    }
}

#[cfg(test)]
mod tests;
