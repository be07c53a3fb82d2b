//! The mutating webhook: stamps pods at creation and opted-in workloads' templates.

use crate::domain::patch::{MetadataShape, stamp_patch};
use crate::domain::policy;
use crate::domain::workload::{LeanPod, LeanWorkload, StampLocation};

use super::Admission;
use super::review::{
    Answer, Preparsed, Request, ReviewError, Verdict, answer, log, object, parse_for_mutate,
    patched, unsupported,
};

impl Admission {
    /// The mutating webhook.
    pub fn mutate(&self, body: &[u8]) -> Result<Answer, ReviewError> {
        self.mutate_parsed(parse_for_mutate(body)?)
    }

    pub(super) fn mutate_parsed(&self, mut req: Request) -> Result<Answer, ReviewError> {
        let verdict = self.mutate_request(&mut req).unwrap_or_else(|v| v);
        log(&req, "mutate", &verdict);
        Ok(answer(&req.uid, verdict))
    }

    fn mutate_request(&self, req: &mut Request) -> Result<Verdict, Verdict> {
        if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
            return Ok(Verdict::allow());
        }
        if req.kind.group.is_empty() && req.kind.kind == "Pod" {
            if req.operation != "CREATE" {
                return Ok(Verdict::allow());
            }
            let pod: LeanPod = match req.parsed_object.take() {
                Some(Preparsed::Pod(pod)) => *pod,
                _ => object(req)?,
            };
            let namespace = if req.namespace.is_empty() {
                &pod.metadata().namespace
            } else {
                &req.namespace
            };
            if !self.namespaces.is_watched(namespace) {
                return Ok(Verdict::allow());
            }
            let stamp = self.pod_stamp(namespace, &pod);
            if pod.metadata().stamp() == Some(stamp.as_str()) {
                return Ok(Verdict::allow());
            }
            return Ok(patched(stamp_patch("", pod.shape(), &stamp)));
        }
        let Some(kind) = req.kind.workload() else {
            return Err(unsupported(req));
        };
        if self.ignored_workloads.contains(&kind) || !self.namespaces.is_watched(&req.namespace) {
            return Ok(Verdict::allow());
        }
        let workload: LeanWorkload = match req.parsed_object.take() {
            Some(Preparsed::Workload(w)) => *w,
            _ => object(req)?,
        };
        let template = workload.template(kind);
        let parsed =
            policy::parse_workload(workload.metadata.annotations(), template.annotations());
        let refs = template.spec.references();
        let Some(stamp) = self.workload_stamp(&req.namespace, &parsed.value, &refs) else {
            return Ok(Verdict::allow());
        };
        let location = StampLocation::of(kind, &parsed.value);
        if location == StampLocation::Template && workload.template_opt(kind).is_none() {
            return Ok(Verdict::allow());
        }
        let stamp_of = |w: &LeanWorkload| -> Option<String> {
            match location {
                StampLocation::Template => w.template(kind).stamp().map(str::to_owned),
                StampLocation::Object => w.metadata.stamp().map(str::to_owned),
            }
        };
        let current = stamp_of(&workload);
        if let (Some(current), "UPDATE") = (&current, req.operation.as_str()) {
            // A stamp from another recipe or key is an unknown baseline: re-stamping it here
            // would roll the workload for no change, so it is left until a real change.
            if !self.stamper.is_current(current) {
                return Ok(Verdict::allow());
            }
            // A stamp this very request writes (the watcher's roll) is kept: a replica whose
            // store lags must not undo it.
            let old = match req.parsed_old.take() {
                Some(old) => old.map(|w| *w),
                None => req
                    .old_object
                    .and_then(|raw| serde_json::from_str::<LeanWorkload>(raw.get()).ok()),
            };
            if old.as_ref().and_then(stamp_of).as_ref() != Some(current) {
                return Ok(Verdict::allow());
            }
        }
        if current.as_deref() == Some(stamp.as_str()) {
            return Ok(Verdict::allow());
        }
        Ok(patched(match location {
            StampLocation::Template => {
                stamp_patch(kind.template_pointer(), template.shape(), &stamp)
            }
            StampLocation::Object => stamp_patch("", workload_shape(&workload), &stamp),
        }))
    }
}

fn workload_shape(w: &LeanWorkload) -> MetadataShape {
    if w.metadata.annotations.is_some() {
        MetadataShape::Annotations
    } else {
        MetadataShape::NoAnnotations
    }
}
