//! Secrets Store CSI (`--enable-csi-integration`): the rules for rolling workloads when the
//! versions a SecretProviderClass mounts rotate. Nothing here is part of a stamp, a trigger set
//! or an admission decision: a CSI roll is its own template change
//! ([`CSI_VERSIONS`](crate::domain::annotations::CSI_VERSIONS)).
//!
//! The driver writes one SecretProviderClassPodStatus per pod and class when the pod mounts the
//! volume, rewrites its `objects` (id and version of each secret) when it rotates them, and
//! deletes it with the pod. kreload keeps, per status object (by uid), only the class it names
//! and a digest of its (id, version) set. A **rotation** is an update of a status kreload knew
//! whose own non-empty set changed: adds (first mounts, new pods), deletes, and statuses first
//! seen in a listing never roll.

use std::collections::BTreeSet;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::annotations::{SPC_AUTO, SPC_EXCLUDE, SPC_RELOAD};
use crate::domain::policy::{
    Annotations, NameMatcher, PolicySource, Violation, WorkloadPolicy, read_bool, read_matcher,
    read_names,
};
use crate::domain::refs::null_default;
use crate::domain::stamp::HashKey;
use crate::domain::workload::WorkloadKind;

/// The driver's API group, version and resource of the statuses kreload reads.
pub const GROUP: &str = "secrets-store.csi.x-k8s.io";
pub const VERSION: &str = "v1";
pub const STATUS_KIND: &str = "SecretProviderClassPodStatus";
pub const STATUS_PLURAL: &str = "secretproviderclasspodstatuses";
/// The CSI driver name in a pod's `volumes[].csi.driver`.
pub const DRIVER: &str = "secrets-store.csi.k8s.io";
/// The volume attribute naming the SecretProviderClass.
pub const CLASS_ATTRIBUTE: &str = "secretProviderClass";

/// The `status` of a SecretProviderClassPodStatus: only what kreload reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    #[serde(deserialize_with = "null_default")]
    pub pod_name: String,
    #[serde(deserialize_with = "null_default")]
    pub secret_provider_class_name: String,
    #[serde(deserialize_with = "null_default")]
    pub objects: Vec<MountedObject>,
}

/// One object the driver mounted: its id and version (never its value).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct MountedObject {
    #[serde(deserialize_with = "null_default")]
    pub id: String,
    #[serde(deserialize_with = "null_default")]
    pub version: String,
}

/// SHA-256 of a status's (id, SHA-256 of version) set, canonically encoded.
pub type VersionsDigest = [u8; 32];

/// What kreload keeps of one status object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    pub namespace: String,
    /// The pod whose mount it records (its uid, else its name): the driver reuses a status of
    /// the same name for a new pod of the same name (a StatefulSet's), and that is a mount,
    /// not a rotation.
    pub pod: String,
    pub class: String,
    /// `None` when it lists no objects (nothing mounted yet).
    pub versions: Option<VersionsDigest>,
}

/// A rotation of `class` in `namespace` to the versions `versions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub namespace: String,
    pub class: String,
    pub versions: VersionsDigest,
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The digest of a set of mounted objects: sorted (id, digest of version) pairs, each field
/// length-prefixed and the set counted, so no two different sets encode alike. `None` for none.
pub fn versions_digest(objects: &[MountedObject]) -> Option<VersionsDigest> {
    if objects.is_empty() {
        return None;
    }
    let pairs: BTreeSet<(&str, [u8; 32])> = objects
        .iter()
        .map(|o| (o.id.as_str(), Sha256::digest(o.version.as_bytes()).into()))
        .collect();
    let mut h = Sha256::new();
    h.update((pairs.len() as u64).to_be_bytes());
    for (id, version) in &pairs {
        put(&mut h, id.as_bytes());
        put(&mut h, version);
    }
    Some(h.finalize().into())
}

impl PodStatus {
    /// What kreload keeps of it, or `None` when it names no class (nothing to roll for). `pod`:
    /// the uid of the pod that owns it, if it names one. The version strings are dropped here.
    pub fn mounted(self, namespace: String, pod: Option<String>) -> Option<Mounted> {
        if self.secret_provider_class_name.is_empty() {
            return None;
        }
        Some(Mounted {
            namespace,
            pod: pod.filter(|p| !p.is_empty()).unwrap_or(self.pod_name),
            versions: versions_digest(&self.objects),
            class: self.secret_provider_class_name,
        })
    }
}

/// Whether the change of one status object from `before` (what kreload had for the same uid,
/// if anything) to `after` is a rotation: the same pod and class, and its own non-empty versions
/// changed to other non-empty ones. An object kreload did not have, or one now recording another
/// pod's mount, is only learnt.
pub fn rotation(before: Option<&Mounted>, after: &Mounted) -> Option<Rotation> {
    let before = before?;
    let (Some(old), Some(new)) = (before.versions, after.versions) else {
        return None;
    };
    let same_mount = before.namespace == after.namespace
        && before.pod == after.pod
        && before.class == after.class;
    (same_mount && old != new).then(|| Rotation {
        namespace: after.namespace.clone(),
        class: after.class.clone(),
        versions: new,
    })
}

/// The value of [`CSI_VERSIONS`](crate::domain::annotations::CSI_VERSIONS) for a rotation:
/// keyed with the hash key and bound to the namespace, like a stamp, so it reveals nothing of
/// the versions. The same rotation always gives the same value.
pub fn versions_annotation(key: &HashKey, rotation: &Rotation) -> String {
    let mut e = Vec::with_capacity(64 + rotation.namespace.len() + rotation.class.len());
    let mut field = |b: &[u8]| {
        e.extend_from_slice(&(b.len() as u64).to_be_bytes());
        e.extend_from_slice(b);
    };
    field(b"kreload.dev/csi-versions");
    field(rotation.namespace.as_bytes());
    field(rotation.class.as_bytes());
    field(&rotation.versions);
    key.stamp_encoded(&e)
}

/// A workload's CSI annotations, read (only with `--enable-csi-integration`) from the place its
/// other keys are read from ([`PolicySource`], decided by the six reload keys alone).
#[derive(Clone, Debug, Default)]
pub struct CsiPolicy {
    pub auto: Option<bool>,
    pub reload: NameMatcher,
    pub exclude: BTreeSet<String>,
}

/// Reads the CSI keys from where `source` says. Bad values are returned as problems (to be
/// warned about, never denied); a bad boolean counts as absent, a bad list entry costs only
/// itself.
pub fn parse_policy(
    source: PolicySource,
    workload: &Annotations,
    template: Option<&Annotations>,
) -> (CsiPolicy, Vec<Violation>) {
    let get = |key: &str| match source {
        PolicySource::Workload => workload.get(key),
        PolicySource::Template => template.and_then(|t| t.get(key)),
        PolicySource::None => workload.get(key).or_else(|| template?.get(key)),
    };
    let mut v = Vec::new();
    let auto = read_bool(&mut v, SPC_AUTO, get(SPC_AUTO));
    let reload = read_matcher(&mut v, SPC_RELOAD, get(SPC_RELOAD));
    let exclude = read_names(get(SPC_EXCLUDE));
    (
        CsiPolicy {
            auto,
            reload,
            exclude,
        },
        v,
    )
}

impl CsiPolicy {
    /// Whether any CSI key is set (with `--auto-reload-all` or Reloader's generic `auto`, a
    /// workload may be opted in without one).
    pub fn is_empty(&self) -> bool {
        self.auto.is_none() && self.reload.is_empty() && self.exclude.is_empty()
    }
}

/// Whether a rotation of `class` rolls a workload of `kind` that mounts it, with its generic
/// `policy` and its `csi` policy: not excluded, and opted in by the class's name in the reload
/// list, `secretproviderclass…/auto: "true"`, Reloader's generic `auto: "true"`, or
/// `--auto-reload-all` (unless an `auto` says `false`). Jobs are never rolled for CSI.
pub fn rolls_for(
    kind: WorkloadKind,
    policy: &WorkloadPolicy,
    csi: &CsiPolicy,
    class: &str,
    auto_reload_all: bool,
) -> bool {
    if kind == WorkloadKind::Job || csi.exclude.contains(class) {
        return false;
    }
    csi.reload.matches(class)
        || csi.auto == Some(true)
        || policy.auto == Some(true)
        || (auto_reload_all && policy.auto.is_none() && csi.auto.is_none())
}

/// Whether a rotation could roll this workload at all (for keeping it in the CSI index).
pub fn may_roll(
    kind: WorkloadKind,
    policy: &WorkloadPolicy,
    csi: &CsiPolicy,
    auto_reload_all: bool,
) -> bool {
    kind != WorkloadKind::Job
        && (!csi.reload.is_empty()
            || csi.auto == Some(true)
            || policy.auto == Some(true)
            || (auto_reload_all && policy.auto.is_none() && csi.auto.is_none()))
}

#[cfg(test)]
mod tests;
