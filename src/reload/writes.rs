//! Helpers of the roll writes: the Job to create again, Event references and notes.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::DynamicObject;
use serde_json::json;

use crate::domain::annotations::CONFIG_HASH;
use crate::domain::workload::WorkloadKind;
use crate::state::index::WorkloadInfo;

use super::queue::Reasons;

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

/// The Job to create again: its spec without what the API server generated (selector and the
/// controller labels it derives from the old uid), its metadata without identity or status, and
/// the new stamp on the template.
pub(super) fn fresh_job(mut job: DynamicObject, stamp: &str) -> DynamicObject {
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
