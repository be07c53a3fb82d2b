//! JSON patches that set kreload's annotations (`kreload.dev/config-hash`,
//! `kreload.dev/accounted-hash`) on an object's (or a template's) metadata.

use serde_json::{Value, json};

use crate::domain::annotations::{ACCOUNTED_HASH, AnnotationNames, CONFIG_HASH, CSI_VERSIONS};
use crate::domain::workload::StampLocation;

/// Escapes one JSON-pointer segment (RFC 6901): `~` as `~0`, `/` as `~1`.
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// What already exists on the path to the annotation, which decides the patch's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataShape {
    /// No `metadata` object at the base (possible for a pod template).
    NoMetadata,
    /// `metadata` exists without an `annotations` object.
    NoAnnotations,
    /// `metadata.annotations` exists.
    Annotations,
}

/// The JSON patch that makes `<base>/metadata/annotations/kreload.dev~1config-hash` equal to
/// `stamp`, creating `metadata` and `annotations` when absent and touching nothing else.
/// `base` is a JSON pointer to the object that owns the metadata ("" for the object itself,
/// "/spec/template" for a pod template).
pub fn stamp_patch(base: &str, shape: MetadataShape, stamp: &str) -> Value {
    annotations_patch(base, shape, &[(CONFIG_HASH, Some(stamp))])
}

/// The JSON patch that sets (`Some`) or removes (`None`) annotations at
/// `<base>/metadata/annotations`, creating `metadata` and `annotations` when absent and touching
/// nothing else. A removal is only asked for an annotation the object has.
pub fn annotations_patch(
    base: &str,
    shape: MetadataShape,
    changes: &[(&str, Option<&str>)],
) -> Value {
    let values = || {
        changes
            .iter()
            .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), json!(v))))
            .collect::<serde_json::Map<String, Value>>()
    };
    let ops = match shape {
        MetadataShape::NoMetadata => vec![json!({
            "op": "add",
            "path": format!("{base}/metadata"),
            "value": {"annotations": values()},
        })],
        MetadataShape::NoAnnotations => vec![json!({
            "op": "add",
            "path": format!("{base}/metadata/annotations"),
            "value": values(),
        })],
        // `add` on an existing member replaces it, so one op covers both cases.
        MetadataShape::Annotations => changes
            .iter()
            .map(|(k, v)| {
                let path = format!("{base}/metadata/annotations/{}", escape_pointer(k));
                match v {
                    Some(v) => json!({"op": "add", "path": path, "value": v}),
                    None => json!({"op": "remove", "path": path}),
                }
            })
            .collect(),
    };
    Value::Array(ops)
}

/// The shape of the metadata at `base` in a JSON document.
pub fn shape_of(doc: &Value, base: &str) -> MetadataShape {
    match doc.pointer(base).and_then(|b| b.get("metadata")) {
        Some(Value::Object(meta)) => match meta.get("annotations") {
            Some(Value::Object(_)) => MetadataShape::Annotations,
            _ => MetadataShape::NoAnnotations,
        },
        _ => MetadataShape::NoMetadata,
    }
}

/// A merge patch that sets the template annotation only.
pub fn template_merge_patch(template_path: &[&str], stamp: &str) -> Value {
    let mut value = json!({"metadata": {"annotations": {CONFIG_HASH: stamp}}});
    for segment in template_path.iter().rev() {
        value = json!({ *segment: value });
    }
    value
}

/// How the watcher rolls one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roll<'a> {
    /// Where the workload's template is (`["spec", "template"]`, or a CronJob's).
    pub template_path: &'a [&'a str],
    pub location: StampLocation,
    /// The stamp to write.
    pub stamp: &'a str,
    /// Whether the workload carries an accounted hash (the roll makes it moot: removed).
    pub drop_accounted: bool,
    /// Pause the rollout with this change (`pause-period`), noting when (RFC 3339).
    pub pause_at: Option<&'a str>,
    /// For a restart-strategy Argo Rollout: `spec.restartAt` (RFC 3339).
    pub now: &'a str,
}

/// The watcher's merge patch for a roll: the new stamp where the workload keeps it (on the
/// template; or on the object with `spec.restartAt` for a restart-strategy Rollout, whose
/// template must not change), the accounted hash removed, and the pause when asked (noted under
/// `names.paused_at`).
pub fn roll_patch(names: &AnnotationNames, r: &Roll) -> Value {
    let mut patch = match r.location {
        StampLocation::Template => template_merge_patch(r.template_path, r.stamp),
        StampLocation::Object => json!({
            "metadata": {"annotations": {CONFIG_HASH: r.stamp}},
            "spec": {"restartAt": r.now},
        }),
    };
    if r.drop_accounted {
        patch["metadata"]["annotations"][ACCOUNTED_HASH] = Value::Null;
    }
    if let Some(at) = r.pause_at {
        patch["spec"]["paused"] = json!(true);
        patch["metadata"]["annotations"][names.paused_at.as_str()] = json!(at);
    }
    patch
}

/// Adds a Secrets Store CSI roll to a merge patch (`patch`: a roll's, or `{}`): the value of
/// [`CSI_VERSIONS`] where the workload's stamp lives (on the template; on the object with
/// `spec.restartAt` for a Rollout kreload restarts, whose template must not change). Setting
/// the value the workload already carries is no change, so the same rotation rolls once.
pub fn add_csi_roll(
    mut patch: Value,
    template_path: &[&str],
    location: StampLocation,
    value: &str,
    now: &str,
) -> Value {
    if !patch.is_object() {
        patch = json!({});
    }
    match location {
        StampLocation::Template => {
            let mut at = &mut patch;
            for segment in template_path {
                if !at[*segment].is_object() {
                    at[*segment] = json!({});
                }
                at = &mut at[*segment];
            }
            at["metadata"]["annotations"][CSI_VERSIONS] = json!(value);
        }
        StampLocation::Object => {
            patch["metadata"]["annotations"][CSI_VERSIONS] = json!(value);
            patch["spec"]["restartAt"] = json!(now);
        }
    }
    patch
}

/// The merge patch that records the hash kreload accounted for, on the workload's own metadata
/// (never its template: it rolls nothing).
pub fn account_patch(hash: &str) -> Value {
    json!({"metadata": {"annotations": {ACCOUNTED_HASH: hash}}})
}

/// The JSON patch that resumes a Deployment kreload paused at `paused_at`, and forgets the
/// pause; it applies only while the annotation (`names.paused_at`) still says kreload's pause (a
/// user who removed or changed it took the pause over, and the patch then fails its test).
pub fn resume_patch(names: &AnnotationNames, paused_at: &str) -> Value {
    let path = format!("/metadata/annotations/{}", escape_pointer(&names.paused_at));
    json!([
        {"op": "test", "path": path, "value": paused_at},
        {"op": "replace", "path": "/spec/paused", "value": false},
        {"op": "remove", "path": path},
    ])
}

/// The Job to create again when a Job is rolled (its template is immutable): the old Job as
/// read, without what the API server generated (identity, status, and, unless the selector is
/// the user's own (`manualSelector: true`), the selector and the labels the Job controller
/// derives from the old uid), with the new stamp on its template and no accounted hash.
pub fn fresh_job(mut job: Value, stamp: &str) -> Value {
    /// Labels the Job controller adds from the Job's uid and name.
    fn generated(key: &str) -> bool {
        matches!(
            key,
            "controller-uid"
                | "job-name"
                | "batch.kubernetes.io/controller-uid"
                | "batch.kubernetes.io/job-name"
        )
    }
    let manual_selector = job.pointer("/spec/manualSelector") == Some(&json!(true));
    if let Some(meta) = job.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(ACCOUNTED_HASH);
        }
        if !manual_selector
            && let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut)
        {
            labels.retain(|k, _| !generated(k));
        }
    }
    if let Some(o) = job.as_object_mut() {
        o.remove("status");
    }
    if let Some(spec) = job.get_mut("spec").filter(|s| s.is_object()) {
        if !manual_selector {
            spec.as_object_mut().map(|s| s.remove("selector"));
            if let Some(labels) = spec
                .pointer_mut("/template/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                labels.retain(|k, _| !generated(k));
            }
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

#[cfg(test)]
mod tests;
