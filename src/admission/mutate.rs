//! The mutating webhook: stamps pods at creation and opted-in workloads' templates.
//!
//! At CREATE a workload gets the current hash. At UPDATE admission never advances a stamp by
//! itself: it keeps the stamp (and accounted hash) the old object had, or the one the request
//! writes, and moves it to the current hash only when the update changes the template anyway.
//! Only the watcher advances stamps, so coalescing, the storm guard, pause-period and leadership
//! govern every roll.

use crate::domain::annotations::{ACCOUNTED_HASH, CONFIG_HASH, CSI_VERSIONS};
use crate::domain::extra;
use crate::domain::patch::{MetadataShape, annotations_patch, stamp_patch};
use crate::domain::policy;
use crate::domain::workload::{
    LeanPod, LeanWorkload, StampLocation, WorkloadKind, WorkloadStamps, rolls, template_changed,
};

use super::Admission;
use super::review::{
    Answer, Preparsed, Request, ReviewError, Verdict, answer, log, object, parse, parse_for_mutate,
    patched, unsupported, workload_object,
};

impl Admission {
    /// The mutating webhook.
    pub fn mutate(&self, body: &[u8]) -> Result<Answer, ReviewError> {
        self.mutate_parsed(body, parse_for_mutate(body)?)
    }

    pub(super) fn mutate_parsed(
        &self,
        body: &[u8],
        mut req: Request,
    ) -> Result<Answer, ReviewError> {
        let verdict = self.mutate_request(body, &mut req).unwrap_or_else(|v| v);
        log(&req, "mutate", &verdict);
        Ok(answer(&req.uid, verdict))
    }

    fn mutate_request(&self, body: &[u8], req: &mut Request) -> Result<Verdict, Verdict> {
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
            if extra::requested_group(&req.kind.group) {
                // An extra kind whose API was not served at start: not rolled, never refused.
                return Ok(Verdict::allow());
            }
            return Err(unsupported(req));
        };
        // Immutable templates (Jobs) are never patched on UPDATE: the API server would refuse
        // the whole request (and with it, e.g., the garbage collector's finalizer removal).
        let update = req.operation == "UPDATE";
        if (update && kind == WorkloadKind::Job)
            || self.ignored_workloads.contains(&kind)
            || !self.namespaces.is_watched(&req.namespace)
        {
            return Ok(Verdict::allow());
        }
        let workload: LeanWorkload = match req.parsed_object.take() {
            Some(Preparsed::Workload(w)) => *w,
            _ => workload_object(req, kind)?,
        };
        let template = workload.template(kind);
        let parsed = policy::parse_workload(
            &self.names,
            workload.metadata.annotations(),
            template.annotations(),
        );
        // A Rollout that takes its pod template from a Deployment (`spec.workloadRef`) must
        // keep its own template empty: its stamp is on its metadata, and what it consumes is
        // in the Deployment's template, which admission does not read (no API call here).
        let references_template = workload.workload_ref(kind).is_some();
        let location = StampLocation::of(kind, &parsed.value, references_template);
        // kreload's `csi-versions` is kept as the old object had it when someone else's UPDATE
        // (a replace of the manifest, say) drops or changes it, so that it never rolls the
        // workload by itself and the next rotation stays idempotent. Also without CSI
        // integration (turned off since, or its API not served at this start): the old value
        // stays, as a stamp does. Without the integration the old object is read only when its
        // text names the annotation.
        let mut early_old: Option<Option<WorkloadStamps>> = None;
        let mut csi_restore: Option<String> = None;
        let old_may_carry = self.csi
            || req.parsed_old.is_some()
            || req
                .old_object
                .is_some_and(|raw| raw.get().contains(CSI_VERSIONS));
        if old_may_carry && update && !req.is_from(self.own_user.as_deref()) {
            let old = old_workload(req.parsed_old.take(), req.old_object, kind);
            let new_csi = annotation_at(&workload, kind, location, CSI_VERSIONS);
            csi_restore = old
                .as_ref()
                .and_then(|old| annotation_at(old, kind, location, CSI_VERSIONS))
                .filter(|o| Some(o) != new_csi.as_ref());
            early_old = Some(old);
        }
        let controlled = workload.metadata.controller().is_some();
        if !rolls(
            kind,
            &parsed.value,
            controlled,
            self.stamper.filters().auto_reload_all,
        ) {
            return Ok(match &csi_restore {
                Some(value) => patched(self.csi_restore_patch(kind, location, &workload, value)),
                None => Verdict::allow(),
            });
        }
        if location == StampLocation::Template && workload.template_opt(kind).is_none() {
            return Ok(Verdict::allow());
        }
        let refs = template.spec.references();
        let current = || {
            self.workload_stamp(&req.namespace, &parsed.value, &refs)
                .expect("opted in: checked above")
        };
        let new_stamp = annotation_at(&workload, kind, location, CONFIG_HASH);
        let new_accounted = workload.metadata.annotations().get(ACCOUNTED_HASH).cloned();
        // What the stamp and the accounted hash should be after this request.
        let (stamp, accounted) = if !update {
            if references_template {
                // Unstamped until its first roll, which the watcher stamps.
                return Ok(Verdict::allow());
            }
            // A new workload starts stamped, so the watcher never rolls it a second time.
            (Some(current()), None)
        } else {
            let old = match early_old {
                Some(old) => old,
                None => old_workload(req.parsed_old.take(), req.old_object, kind),
            };
            let old_stamp = old
                .as_ref()
                .and_then(|old| annotation_at(old, kind, location, CONFIG_HASH));
            let old_accounted = old
                .as_ref()
                .and_then(|old| old.metadata.annotations().get(ACCOUNTED_HASH).cloned());
            if new_stamp.is_some()
                && new_stamp != old_stamp
                && req.is_from(self.own_user.as_deref())
            {
                // kreload's own write (the watcher's roll, maybe from a replica whose store
                // differs from this one's): it stands. A stamp anyone else writes (a manifest
                // carrying an exported one, say) is not taken: the old one is kept. (A CSI
                // restore is only for others' writes, so there is none here.)
                return Ok(Verdict::allow());
            }
            // Admission never advances a stamp by itself: only when the update changes the
            // template anyway (it rolls regardless) does the stamp move to the current hash.
            let target = old_stamp.clone().filter(|s| self.stamper.is_current(s));
            let needs_current =
                || target.is_none() || target.as_deref() != Some(current().as_str());
            if !references_template && needs_current() && self.template_changed(body, kind) {
                (Some(current()), None)
            } else {
                // Kept as the old object had them: a re-apply that drops them gets them back.
                let accounted = if new_accounted.is_some()
                    && new_accounted != old_accounted
                    && req.is_from(self.own_user.as_deref())
                {
                    new_accounted.clone()
                } else {
                    old_accounted
                };
                (old_stamp, accounted)
            }
        };
        let mut object_changes: Vec<(&str, Option<&str>)> = Vec::new();
        let mut template_changes: Vec<(&str, Option<&str>)> = Vec::new();
        if let Some(stamp) = stamp
            .as_deref()
            .filter(|s| new_stamp.as_deref() != Some(*s))
        {
            match location {
                StampLocation::Template => template_changes.push((CONFIG_HASH, Some(stamp))),
                StampLocation::Object => object_changes.push((CONFIG_HASH, Some(stamp))),
            }
        }
        if accounted != new_accounted {
            object_changes.push((ACCOUNTED_HASH, accounted.as_deref()));
        }
        if let Some(value) = csi_restore.as_deref() {
            match location {
                StampLocation::Template => template_changes.push((CSI_VERSIONS, Some(value))),
                StampLocation::Object => object_changes.push((CSI_VERSIONS, Some(value))),
            }
        }
        if object_changes.is_empty() && template_changes.is_empty() {
            return Ok(Verdict::allow());
        }
        let mut ops = Vec::new();
        if !object_changes.is_empty() {
            ops.extend(ops_of(annotations_patch(
                "",
                workload_shape(&workload),
                &object_changes,
            )));
        }
        if !template_changes.is_empty() {
            ops.extend(ops_of(annotations_patch(
                kind.template_pointer(),
                template.shape(),
                &template_changes,
            )));
        }
        Ok(patched(serde_json::Value::Array(ops)))
    }

    /// The patch that puts kreload's `csi-versions` back where a workload keeps it.
    fn csi_restore_patch(
        &self,
        kind: WorkloadKind,
        location: StampLocation,
        workload: &LeanWorkload,
        value: &str,
    ) -> serde_json::Value {
        let changes = [(CSI_VERSIONS, Some(value))];
        match location {
            StampLocation::Template => annotations_patch(
                kind.template_pointer(),
                workload.template(kind).shape(),
                &changes,
            ),
            StampLocation::Object => annotations_patch("", workload_shape(workload), &changes),
        }
    }

    /// Whether an UPDATE changes the pod template beyond kreload's stamp. Rare (only when the
    /// stamp would otherwise move), so it reads the whole objects from the raw body.
    fn template_changed(&self, body: &[u8], kind: WorkloadKind) -> bool {
        let Ok(req) = parse(body) else {
            return false;
        };
        let read = |raw: Option<&serde_json::value::RawValue>| {
            raw.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
        };
        match (read(req.old_object), read(req.object)) {
            (Some(old), Some(new)) => template_changed(kind, &old, &new),
            _ => false,
        }
    }
}

/// An UPDATE's old object, read only for its annotations and its template's (`None` when it is
/// null or unreadable).
fn old_workload(
    parsed: Option<Option<Box<WorkloadStamps>>>,
    raw: Option<&serde_json::value::RawValue>,
    kind: WorkloadKind,
) -> Option<WorkloadStamps> {
    match parsed {
        Some(old) => old.map(|w| *w),
        None => raw.and_then(|raw| WorkloadStamps::read_json(kind, raw.get()).ok()),
    }
}

/// The annotation `name` where a workload of `kind` keeps its stamp (`location`).
fn annotation_at<S>(
    w: &LeanWorkload<S>,
    kind: WorkloadKind,
    location: StampLocation,
    name: &str,
) -> Option<String> {
    match location {
        StampLocation::Template => w
            .template_opt(kind)
            .and_then(|t| t.annotations())
            .and_then(|a| a.get(name))
            .cloned(),
        StampLocation::Object => w.metadata.annotations().get(name).cloned(),
    }
}

fn ops_of(patch: serde_json::Value) -> Vec<serde_json::Value> {
    match patch {
        serde_json::Value::Array(ops) => ops,
        other => vec![other],
    }
}

fn workload_shape(w: &LeanWorkload) -> MetadataShape {
    if w.metadata.annotations.is_some() {
        MetadataShape::Annotations
    } else {
        MetadataShape::NoAnnotations
    }
}
