//! JSON patches that set `kreload.dev/config-hash` on an object's (or a template's) metadata.

use serde_json::{Value, json};

use crate::domain::annotations::CONFIG_HASH;

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
    let op = match shape {
        MetadataShape::NoMetadata => json!({
            "op": "add",
            "path": format!("{base}/metadata"),
            "value": {"annotations": {CONFIG_HASH: stamp}},
        }),
        MetadataShape::NoAnnotations => json!({
            "op": "add",
            "path": format!("{base}/metadata/annotations"),
            "value": {CONFIG_HASH: stamp},
        }),
        // `add` on an existing member replaces it, so one op covers both cases.
        MetadataShape::Annotations => json!({
            "op": "add",
            "path": format!("{base}/metadata/annotations/{}", escape_pointer(CONFIG_HASH)),
            "value": stamp,
        }),
    };
    Value::Array(vec![op])
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

/// A strategic-merge-free merge patch for the watcher: sets the template annotation only.
pub fn template_merge_patch(template_path: &[&str], stamp: &str) -> Value {
    let mut value = json!({"metadata": {"annotations": {CONFIG_HASH: stamp}}});
    for segment in template_path.iter().rev() {
        value = json!({ *segment: value });
    }
    value
}

#[cfg(test)]
mod tests;
