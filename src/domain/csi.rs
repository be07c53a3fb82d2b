//! Secrets Store CSI (`--enable-csi-integration`): what the versions a SecretProviderClass
//! mounts are, read from the driver's SecretProviderClassPodStatus objects.
//!
//! The driver writes one status per pod and SecretProviderClass when the pod mounts the volume,
//! rewrites its `objects` (id and version of each secret mounted) when it rotates them, and
//! deletes it with the pod. kreload treats "SecretProviderClass X in namespace N" as a config
//! ([`ConfigKind::SecretProviderClass`](crate::domain::config::ConfigKind)) whose keys are the
//! object ids, each with the digest of its version, so the trigger set, the keyed and
//! namespace-bound stamp, the decision rule and the start-up comparison treat it as they treat
//! a ConfigMap. What those versions are is decided here:
//!
//! - **Last writer wins.** A status added, or updated with versions other than it had before,
//!   sets the class's versions when they differ from the class's current ones. New pods mount
//!   what the class has now, so their statuses change nothing; an update that leaves a status's
//!   own versions as they were (labels, owner references) changes nothing, even if another pod
//!   moved the class on meanwhile (it is not a newer write).
//! - **Appearing and disappearing roll nothing.** The class exists while some status names it:
//!   the first mount makes it appear, the last status going makes it disappear, and neither is a
//!   reason to roll ([`ConfigKind::create_delete_can_roll`](crate::domain::config::ConfigKind::create_delete_can_roll)),
//!   whatever `--reload-on-create` / `--reload-on-delete` say. So a roll's old pods going away
//!   roll nothing, and a workload scaled to zero is not rolled when kreload restarts.
//! - **A listing** (at start, or after a watch re-lists) applies the statuses that are new or
//!   changed since the last one oldest first (by creation time, then name), so when statuses
//!   disagree the newest one wins: a pod mounts the versions current when it starts.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::config::ValueDigest;
use crate::domain::entry::{ConfigEntry, KeyDigests};
use crate::domain::refs::null_default;

/// The driver's API group, version and resource of the statuses kreload reads.
pub const GROUP: &str = "secrets-store.csi.x-k8s.io";
pub const VERSION: &str = "v1";
pub const STATUS_KIND: &str = "SecretProviderClassPodStatus";
pub const STATUS_PLURAL: &str = "secretproviderclasspodstatuses";
/// The CSI driver name in a pod's `volumes[].csi.driver`.
pub const DRIVER: &str = "secrets-store.csi.k8s.io";

/// The `status` of a SecretProviderClassPodStatus: only what kreload reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
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

/// What kreload keeps of one status: the class it names, when it was created (RFC 3339, as the
/// API server writes it), and the digest of each object's version by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub class: String,
    pub created: String,
    pub versions: KeyDigests,
}

impl PodStatus {
    /// The mount it records, or `None` when it names no class (nothing to roll for).
    pub fn mount(self, created: String) -> Option<Mount> {
        if self.secret_provider_class_name.is_empty() {
            return None;
        }
        Some(Mount {
            class: self.secret_provider_class_name,
            created,
            versions: self
                .objects
                .into_iter()
                .map(|o| (o.id, ValueDigest::of(o.version.as_bytes())))
                .collect(),
        })
    }
}

/// The store entry of a class with these versions.
pub fn entry(versions: &KeyDigests) -> ConfigEntry {
    ConfigEntry {
        keys: versions.clone(),
        ..ConfigEntry::default()
    }
}

/// An add (`before` `None`) or update of one status, given the versions its class has now
/// (`None`: it has none yet): the versions the class has after it, when they change.
pub fn after_apply<'a>(
    before: Option<&Mount>,
    after: &'a Mount,
    current: Option<&KeyDigests>,
) -> Option<&'a KeyDigests> {
    if before.is_some_and(|b| b.class == after.class && b.versions == after.versions) {
        return None;
    }
    (current != Some(&after.versions)).then_some(&after.versions)
}

/// The order a listing applies statuses in: oldest first (by creation time, then name), so the
/// newest is the last writer.
pub fn listing_order(mounts: &mut [(String, Mount)]) {
    mounts.sort_by(|(a_name, a), (b_name, b)| (&a.created, a_name).cmp(&(&b.created, b_name)));
}

/// A listing of one namespace's statuses (`fresh`, by name) after `known` (what kreload had,
/// by name), given each class's versions now: each class whose versions differ afterwards, with
/// its versions after the listing (`None`: no status names it any more).
pub fn after_listing(
    known: &BTreeMap<String, Mount>,
    fresh: &BTreeMap<String, Mount>,
    current: &BTreeMap<String, KeyDigests>,
) -> BTreeMap<String, Option<KeyDigests>> {
    let mut changed: Vec<(String, Mount)> = fresh
        .iter()
        .filter(|(name, m)| known.get(*name) != Some(*m))
        .map(|(name, m)| (name.clone(), m.clone()))
        .collect();
    listing_order(&mut changed);
    let mut versions: BTreeMap<&str, Option<&KeyDigests>> = current
        .iter()
        .map(|(class, v)| (class.as_str(), Some(v)))
        .collect();
    for (name, m) in &changed {
        let now = versions.get(m.class.as_str()).copied().flatten();
        if let Some(v) = after_apply(known.get(name), m, now) {
            versions.insert(m.class.as_str(), Some(v));
        }
    }
    // A class no status names any more is gone.
    for (class, v) in versions.iter_mut() {
        if !fresh.values().any(|m| m.class == *class) {
            *v = None;
        }
    }
    versions
        .into_iter()
        .filter(|(class, v)| current.get(*class) != *v)
        .map(|(class, v)| (class.to_owned(), v.cloned()))
        .collect()
}

#[cfg(test)]
mod tests;
