//! The reloader's writes to the API server: merge and JSON patches under kreload's field
//! manager, Job deletion and creation, and one Event per roll. Every write is bounded in time,
//! so a replica that stops leading stops writing within [`WRITE_TIMEOUT`].

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{
    DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client};

use crate::domain::annotations::FIELD_MANAGER;
use crate::domain::workload::{WorkloadId, WorkloadKind};
use crate::state::index::WorkloadInfo;

use super::queue::Reasons;

/// How long one write may take before it is given up (and retried later).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API resource of a workload kind, for dynamic requests.
pub fn api_resource(kind: WorkloadKind) -> kube::discovery::ApiResource {
    let (group, version) = (kind.group(), kind.version());
    kube::discovery::ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.as_str().to_owned(),
        plural: kind.plural().to_owned(),
    }
}

/// Writes for the reloader, all under kreload's field manager.
#[derive(Clone)]
pub(super) struct Writer {
    client: Client,
    identity: String,
}

fn timed_out() -> kube::Error {
    kube::Error::Service(format!("no answer within {}s", WRITE_TIMEOUT.as_secs()).into())
}

async fn bounded<T>(f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, kube::Error> {
    tokio::time::timeout(WRITE_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

impl Writer {
    pub(super) fn new(client: Client, identity: String) -> Self {
        Writer { client, identity }
    }

    fn api(&self, id: &WorkloadId) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &id.namespace, &api_resource(id.kind))
    }

    fn patch_params() -> PatchParams {
        PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        }
    }

    /// One merge patch. No resourceVersion, so a concurrent writer does not make it conflict.
    pub(super) async fn merge(
        &self,
        id: &WorkloadId,
        patch: &serde_json::Value,
    ) -> Result<(), kube::Error> {
        let api = self.api(id);
        bounded(api.patch(&id.name, &Self::patch_params(), &Patch::Merge(patch)))
            .await
            .map(|_| ())
    }

    /// One JSON patch (used when a `test` op must guard the write).
    pub(super) async fn json_patch(
        &self,
        id: &WorkloadId,
        patch: serde_json::Value,
    ) -> Result<(), kube::Error> {
        let patch: json_patch::Patch =
            serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
        let api = self.api(id);
        bounded(api.patch(&id.name, &Self::patch_params(), &Patch::<()>::Json(patch)))
            .await
            .map(|_| ())
    }

    pub(super) async fn get(&self, id: &WorkloadId) -> Result<Option<DynamicObject>, kube::Error> {
        let api = self.api(id);
        bounded(api.get_opt(&id.name)).await
    }

    /// Deletes exactly the object with this uid (pods go in the background); `Ok(false)` when
    /// it is gone already or was replaced by another object of the same name.
    pub(super) async fn delete_uid(&self, id: &WorkloadId, uid: &str) -> Result<bool, kube::Error> {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let api = self.api(id);
        match bounded(api.delete(&id.name, &dp)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn create(
        &self,
        id: &WorkloadId,
        object: &DynamicObject,
    ) -> Result<(), kube::Error> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let api = self.api(id);
        bounded(api.create(&pp, object)).await.map(|_| ())
    }

    /// Records one Event on a workload. Each roll gets its own Event (a unique name), so each
    /// one names its own configs and keys; kube's Recorder would fold later ones into the first
    /// one's series, note and all.
    pub(super) async fn event(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("kreload"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Reload".into()),
            reason: Some(reason.to_owned()),
            note: Some(fit_note(note)),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            reporting_controller: Some(FIELD_MANAGER.to_owned()),
            reporting_instance: Some(self.identity.clone()),
            regarding: Some(regarding),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = bounded(api.create(&PostParams::default(), &event)).await {
            tracing::debug!(%error, "could not record an Event");
        }
    }
}

/// The API server refuses an Event whose note is longer than this many bytes.
const NOTE_LIMIT: usize = 1024;

/// `note`, cut at a character boundary to fit an Event: an error message can be longer than
/// an Event may carry, and the API server would refuse the whole Event.
pub(super) fn fit_note(mut note: String) -> String {
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut end = NOTE_LIMIT - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push('…');
    note
}

/// What the API server said, without kube's dump of the whole Status.
pub(super) fn short_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

pub(super) fn object_ref(w: &WorkloadInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some(w.api_version.clone()),
        kind: Some(w.id.kind.as_str().to_owned()),
        name: Some(w.id.name.clone()),
        namespace: Some(w.id.namespace.clone()),
        uid: Some(w.uid.clone()).filter(|u| !u.is_empty()),
        ..Default::default()
    }
}

/// "SecretProviderClass vault-db rotated": a CSI roll's reason, never a version.
pub(super) fn describe_csi(class: &str) -> String {
    format!("SecretProviderClass {class} rotated")
}

/// What a pending roll is for: its configs and keys, and its SecretProviderClass rotation.
pub(super) fn describe_pending(reasons: &Reasons, csi: Option<&str>) -> String {
    match csi {
        Some(class) if reasons.is_empty() => describe_csi(class),
        Some(class) => format!("{}; {}", describe(reasons), describe_csi(class)),
        None => describe(reasons),
    }
}

/// "ConfigMap app-config (keys: a, b); Secret db (keys: password)": names and keys, never values.
pub(super) fn describe(reasons: &Reasons) -> String {
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

pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
