//! The admission webhooks as pure functions: an AdmissionReview body in, a response out.
//!
//! The HTTP shell only enforces limits and maps [`ReviewError`] to a status code. Everything
//! here reads the digest store (a short read lock) and never calls the API server.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::decide::decide;
use crate::index::StampLocation;
use crate::model::{ConfigId, ConfigKind};
use crate::namespaces::NamespaceFilter;
use crate::patch::stamp_patch;
use crate::policy::ConfigPolicy;
use crate::policy::{self, Warning, WorkloadPolicy};
use crate::refs::{Consumption, References};
use crate::stamp::{Encoder, HashKey};
use crate::store::{ConfigEntry, ConfigView, DigestStore};
use crate::trigger::Filters;
use crate::workload::{LeanPod, LeanWorkload, WorkloadKind, object_or_null};

/// Why a body could not be answered with an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("request body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    NotAReview(#[source] serde_json::Error),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has no uid")]
    NoUid,
}

/// Looks up the policy of a workload by namespace, kind and name (the watcher's index). Pods use
/// it to find the policy of the workload that owns them.
pub trait WorkloadPolicies: Send + Sync {
    fn policy(
        &self,
        namespace: &str,
        kind: WorkloadKind,
        name: &str,
    ) -> Option<Arc<WorkloadPolicy>>;
}

/// No index: pods fall back to their own annotations.
pub struct NoWorkloads;

impl WorkloadPolicies for NoWorkloads {
    fn policy(&self, _: &str, _: WorkloadKind, _: &str) -> Option<Arc<WorkloadPolicy>> {
        None
    }
}

/// What the admission functions read.
pub struct Admission {
    pub key: HashKey,
    pub store: Arc<DigestStore>,
    pub filters: Filters,
    pub workloads: Arc<dyn WorkloadPolicies>,
    /// Namespaces kreload acts in; elsewhere nothing is stamped.
    pub namespaces: Arc<NamespaceFilter>,
    /// Workload kinds never rolled (`--ignored-workload-types`), so never stamped either.
    pub ignored_workloads: BTreeSet<WorkloadKind>,
}

#[derive(Deserialize)]
struct Review<'a> {
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct GroupVersionKind {
    group: String,
    version: String,
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operation: String,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
    /// The object, when the mutating webhook's one-pass parse already read it.
    #[serde(skip)]
    parsed_object: Option<Preparsed>,
    /// The old object, when the one-pass parse already read it (`Some(None)`: it is null).
    #[serde(skip)]
    parsed_old: Option<Option<Box<LeanWorkload>>>,
}

/// An object read during the one-pass parse of a review (see [`parse_for_mutate`]).
enum Preparsed {
    Pod(Box<LeanPod>),
    Workload(Box<LeanWorkload>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
struct Status {
    code: u16,
    message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

/// How a review was answered, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Patched,
    Denied,
    Unsupported,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Patched => "patched",
            Outcome::Denied => "denied",
            Outcome::Unsupported => "unsupported",
        }
    }
}

/// An answered review: the JSON body and what it said.
pub struct Answer {
    pub body: Vec<u8>,
    pub outcome: Outcome,
}

struct Verdict {
    outcome: Outcome,
    patch: Option<serde_json::Value>,
    warnings: Vec<String>,
    message: Option<String>,
}

impl Verdict {
    fn allow() -> Self {
        Verdict {
            outcome: Outcome::Allowed,
            patch: None,
            warnings: Vec::new(),
            message: None,
        }
    }

    fn deny(outcome: Outcome, message: String) -> Self {
        Verdict {
            outcome,
            patch: None,
            warnings: Vec::new(),
            message: Some(message),
        }
    }
}

fn parse(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    let review: Review = serde_json::from_slice(body).map_err(ReviewError::NotAReview)?;
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    if request.uid.is_empty() {
        return Err(ReviewError::NoUid);
    }
    Ok(request)
}

/// The mutating webhook's parse: one pass over the body. The API server writes `kind` and
/// `operation` before `object` and `oldObject`, so the objects can be read straight into the
/// lean type the request needs instead of being scanned once as raw JSON and parsed again.
/// Anything unusual (another field order, an object that is not a JSON object, a field of the
/// wrong type, a duplicate field) makes it give up and fall back to [`parse`], which then
/// decides exactly as it always does: the fast path only ever yields what [`parse`] followed by
/// parsing the raw objects would.
fn parse_for_mutate(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    #[derive(Deserialize)]
    struct FastReview<'a> {
        #[serde(borrow)]
        request: Option<FastRequest<'a>>,
    }
    // Checking UTF-8 once, up front, is cheaper than serde_json checking every string it reads.
    let Ok(text) = std::str::from_utf8(body) else {
        return parse(body);
    };
    match serde_json::from_str::<FastReview>(text) {
        Ok(FastReview {
            request: Some(FastRequest(request)),
        }) if !request.uid.is_empty() => Ok(request),
        _ => parse(body),
    }
}

struct FastRequest<'a>(Request<'a>);

/// The fields of a request the webhooks read, by position in [`FastRequest`]'s `seen`.
#[derive(Clone, Copy)]
enum Field {
    Uid,
    Kind,
    Namespace,
    Operation,
    Object,
    OldObject,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Field, E> {
                Ok(match s {
                    "uid" => Field::Uid,
                    "kind" => Field::Kind,
                    "namespace" => Field::Namespace,
                    "operation" => Field::Operation,
                    "object" => Field::Object,
                    "oldObject" => Field::OldObject,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FastRequest<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = FastRequest<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an admission request")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let mut req = Request {
                    uid: String::new(),
                    kind: GroupVersionKind::default(),
                    namespace: String::new(),
                    operation: String::new(),
                    object: None,
                    old_object: None,
                    parsed_object: None,
                    parsed_old: None,
                };
                let mut seen = [false; 6];
                while let Some(field) = map.next_key::<Field>()? {
                    if let Field::Other = field {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    }
                    if std::mem::replace(&mut seen[field as usize], true) {
                        return Err(A::Error::custom("duplicate field"));
                    }
                    let kind_known = seen[Field::Kind as usize];
                    match field {
                        Field::Uid => req.uid = map.next_value()?,
                        Field::Kind => req.kind = map.next_value()?,
                        Field::Namespace => req.namespace = map.next_value()?,
                        Field::Operation => req.operation = map.next_value()?,
                        Field::Object if kind_known && is_pod(&req.kind) => {
                            let pod: Typed<LeanPod> = map.next_value()?;
                            req.parsed_object = pod.0.map(|p| Preparsed::Pod(Box::new(p)));
                        }
                        Field::Object if kind_known && workload_kind(&req.kind).is_some() => {
                            let w: Typed<LeanWorkload> = map.next_value()?;
                            req.parsed_object = w.0.map(|w| Preparsed::Workload(Box::new(w)));
                        }
                        Field::Object => req.object = map.next_value()?,
                        Field::OldObject
                            if kind_known
                                && seen[Field::Operation as usize]
                                && req.operation == "UPDATE"
                                && workload_kind(&req.kind).is_some() =>
                        {
                            let w: Typed<LeanWorkload> = map.next_value()?;
                            req.parsed_old = Some(w.0.map(Box::new));
                        }
                        Field::OldObject => req.old_object = map.next_value()?,
                        Field::Other => unreachable!("skipped above"),
                    }
                }
                Ok(FastRequest(req))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON object read as `T`, or null; anything else is an error (the fast path gives up).
struct Typed<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Typed<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object_or_null(d).map(Typed)
    }
}

fn is_pod(gvk: &GroupVersionKind) -> bool {
    gvk.group.is_empty() && gvk.kind == "Pod"
}

fn answer(uid: &str, v: Verdict) -> Answer {
    let response = Response {
        uid,
        allowed: v.message.is_none(),
        patch_type: v.patch.as_ref().map(|_| "JSONPatch"),
        patch: v
            .patch
            .map(|p| base64::engine::general_purpose::STANDARD.encode(p.to_string())),
        warnings: v.warnings,
        status: v.message.map(|message| Status {
            code: if v.outcome == Outcome::Unsupported {
                400
            } else {
                403
            },
            message,
        }),
    };
    let review = ResponseReview {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response,
    };
    Answer {
        body: serde_json::to_vec(&review).expect("a response always serializes"),
        outcome: v.outcome,
    }
}

fn unsupported(req: &Request) -> Verdict {
    Verdict::deny(
        Outcome::Unsupported,
        format!(
            "kreload does not handle {}/{} {} with operation {:?}; the webhook configuration's rules should not send it here",
            req.kind.group, req.kind.version, req.kind.kind, req.operation
        ),
    )
}

fn object<'a, T: Deserialize<'a>>(req: &Request<'a>) -> Result<T, Verdict> {
    let unreadable = |why: String| {
        Verdict::deny(
            Outcome::Unsupported,
            format!(
                "the {} in the request could not be read: {why}",
                req.kind.kind
            ),
        )
    };
    let raw = req.object.ok_or_else(|| {
        Verdict::deny(Outcome::Unsupported, "the request carries no object".into())
    })?;
    if !raw.get().starts_with('{') {
        return Err(unreadable("it is not a JSON object".into()));
    }
    serde_json::from_str(raw.get()).map_err(|e| unreadable(e.to_string()))
}

/// What the annotation rules say of one object.
#[derive(Debug)]
pub struct Checked {
    /// The workload's policy (for workloads).
    pub policy: Option<WorkloadPolicy>,
    pub violations: Vec<policy::Violation>,
    pub warnings: Vec<Warning>,
}

/// The validating webhook's rules for one object given as JSON, without the store (so without
/// the warnings that need it): shared with `kreload check`. `None` for kinds the rules do not
/// cover; an error when the object cannot be read.
pub fn check_rules(group: &str, kind: &str, object: &str) -> Option<Result<Checked, String>> {
    let gvk = GroupVersionKind {
        group: group.to_owned(),
        version: String::new(),
        kind: kind.to_owned(),
    };
    let read = || -> Result<(), String> {
        if object.trim_start().starts_with('{') {
            Ok(())
        } else {
            Err("it is not a JSON object".into())
        }
    };
    if config_kind(&gvk).is_some() {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Meta {
            #[serde(deserialize_with = "crate::workload::object_or_default")]
            metadata: crate::workload::LeanMeta,
        }
        return Some(
            read()
                .and_then(|()| serde_json::from_str::<Meta>(object).map_err(|e| e.to_string()))
                .map(|m| {
                    let parsed = policy::parse_config(m.metadata.annotations());
                    Checked {
                        policy: None,
                        violations: parsed.violations,
                        warnings: parsed.warnings,
                    }
                }),
        );
    }
    let kind = workload_kind(&gvk)?;
    Some(
        read()
            .and_then(|()| serde_json::from_str::<LeanWorkload>(object).map_err(|e| e.to_string()))
            .map(|w| {
                let parsed = policy::parse_workload(
                    w.metadata.annotations(),
                    w.template(kind).annotations(),
                );
                Checked {
                    policy: Some(parsed.value),
                    violations: parsed.violations,
                    warnings: parsed.warnings,
                }
            }),
    )
}

fn workload_kind(gvk: &GroupVersionKind) -> Option<WorkloadKind> {
    WorkloadKind::from_kind(&gvk.kind).filter(|k| k.group() == gvk.group)
}

fn config_kind(gvk: &GroupVersionKind) -> Option<ConfigKind> {
    if !gvk.group.is_empty() {
        return None;
    }
    ConfigKind::ALL.into_iter().find(|k| k.as_str() == gvk.kind)
}

impl Admission {
    /// The stamp a workload's template should carry now, or `None` when it is not opted in.
    pub fn workload_stamp(
        &self,
        namespace: &str,
        policy: &WorkloadPolicy,
        refs: &References,
    ) -> Option<String> {
        if !policy.opted_in(self.filters.auto_reload_all) {
            return None;
        }
        let encoding = self.store.with_namespace(namespace, |view| {
            encode_trigger_set(policy, refs, view, &self.filters)
        });
        Some(self.key.stamp_encoded(&encoding))
    }

    /// The stamp a pod gets at creation: its owning workload's trigger set if that workload is
    /// opted in, else what its own (template) annotations opt into, else everything it consumes.
    pub fn pod_stamp(&self, namespace: &str, pod: &LeanPod) -> String {
        let refs = pod.spec.references();
        let owner_policy = pod
            .owner_workload()
            .and_then(|(kind, name)| self.workloads.policy(namespace, kind, &name));
        let own_policy;
        let policy = match &owner_policy {
            Some(p) => Some(p.as_ref()),
            None => {
                own_policy = policy::parse_workload(pod.metadata().annotations(), None).value;
                Some(&own_policy)
            }
        }
        .filter(|p| p.opted_in(self.filters.auto_reload_all));
        let encoding = self.store.with_namespace(namespace, |view| match policy {
            Some(p) => encode_trigger_set(p, &refs, view, &self.filters),
            None => encode_consumed_set(&refs, view),
        });
        self.key.stamp_encoded(&encoding)
    }

    /// The mutating webhook.
    pub fn mutate(&self, body: &[u8]) -> Result<Answer, ReviewError> {
        self.mutate_parsed(parse_for_mutate(body)?)
    }

    fn mutate_parsed(&self, mut req: Request) -> Result<Answer, ReviewError> {
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
        let Some(kind) = workload_kind(&req.kind) else {
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
            if !self.key.is_current(current) {
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

    /// The validating webhook.
    pub fn validate(&self, body: &[u8]) -> Result<Answer, ReviewError> {
        let req = parse(body)?;
        let verdict = self.validate_request(&req).unwrap_or_else(|v| v);
        log(&req, "validate", &verdict);
        Ok(answer(&req.uid, verdict))
    }

    fn validate_request(&self, req: &Request) -> Result<Verdict, Verdict> {
        if !matches!(req.operation.as_str(), "CREATE" | "UPDATE") {
            return Ok(Verdict::allow());
        }
        let raw = req.object.map(RawValue::get).unwrap_or("null");
        let Some(checked) = check_rules(&req.kind.group, &req.kind.kind, raw) else {
            return Err(unsupported(req));
        };
        let mut checked = checked.map_err(|why| {
            Verdict::deny(
                Outcome::Unsupported,
                format!(
                    "the {} in the request could not be read: {why}",
                    req.kind.kind
                ),
            )
        })?;
        if let Some(policy) = &checked.policy {
            self.missing_config_warnings(&req.namespace, policy, &mut checked.warnings);
        }
        Ok(verdict(checked.violations, checked.warnings))
    }

    /// A reload-list name that no config in the namespace has is likely a typo.
    fn missing_config_warnings(
        &self,
        namespace: &str,
        policy: &WorkloadPolicy,
        warnings: &mut Vec<Warning>,
    ) {
        if !self.store.is_synced() {
            return;
        }
        self.store
            .with_namespace(namespace, |view: &dyn ConfigView| {
                for kind in ConfigKind::ALL {
                    for name in policy.reload_list(kind).literal_names() {
                        if view.get(&ConfigId::new(kind, name)).is_none() {
                            warnings.push(Warning::NoSuchConfig {
                                key: policy::reload_key(kind).to_owned(),
                                kind,
                                name: name.to_owned(),
                            });
                        }
                    }
                }
            });
    }
}

/// What [`consumed_set`](crate::trigger::consumed_set) gives, encoded as
/// [`encode`](crate::stamp::encode) would, without building the set (no key or name is copied).
fn encode_consumed_set(refs: &References, view: &dyn ConfigView) -> Vec<u8> {
    let mut e = Encoder::new(refs.len(), refs.len() * 48);
    for (id, consumption) in refs {
        encode_consumed(&mut e, id.kind, &id.name, view.get(id), consumption);
    }
    e.finish()
}

/// One config of a trigger set: what `consumption` covers of `entry` (as `trigger::consumed`).
fn encode_consumed(
    e: &mut Encoder,
    kind: ConfigKind,
    name: &str,
    entry: Option<&ConfigEntry>,
    consumption: &Consumption,
) {
    let Some(entry) = entry else {
        return e.absent(kind, name);
    };
    match consumption {
        Consumption::All => {
            e.present(kind, name, entry.keys.len());
            for (key, digest) in &entry.keys {
                e.key(key, Some(digest));
            }
        }
        Consumption::Keys(keys) => {
            e.present(kind, name, keys.len());
            for key in keys {
                e.key(key, entry.keys.get(key));
            }
        }
    }
}

/// What [`trigger_set`](crate::trigger::trigger_set) gives, encoded as
/// [`encode`](crate::stamp::encode) would, without building the set. Each config is let in or
/// kept out by the same calls as `trigger::contribution` makes (the global filters, then
/// `decide`); a property test checks that the stamps agree.
fn encode_trigger_set(
    policy: &WorkloadPolicy,
    refs: &References,
    view: &dyn ConfigView,
    filters: &Filters,
) -> Vec<u8> {
    static ALL: Consumption = Consumption::All;
    let absent = ConfigPolicy::default();
    let mut members: Vec<(ConfigKind, &str, Option<&ConfigEntry>, &Consumption)> =
        Vec::with_capacity(refs.len());
    for (id, consumption) in refs {
        let entry = view.get(id);
        if filters.admits(id.kind, entry)
            && decide(
                policy,
                id.kind,
                &id.name,
                entry.map_or(&absent, |e| &e.policy),
                true,
                filters.auto_reload_all,
            )
            .roll
        {
            members.push((id.kind, &id.name, entry, consumption));
        }
    }
    // Reload lists name configs whether or not the pod spec references them: all keys count.
    let mut unreferenced = false;
    let mut referenced_names: Vec<(ConfigKind, &str)> = Vec::new();
    for kind in ConfigKind::ALL {
        if policy.reload_list(kind).is_empty() {
            continue;
        }
        if referenced_names.is_empty() {
            // In `refs`' order, so a binary search answers without building a `ConfigId`.
            referenced_names = refs.keys().map(|id| (id.kind, id.name.as_str())).collect();
        }
        for (name, entry) in view.of_kind(kind) {
            let referenced = referenced_names.binary_search(&(kind, name)).is_ok();
            if !referenced
                && filters.admits(kind, Some(entry))
                && decide(
                    policy,
                    kind,
                    name,
                    &entry.policy,
                    false,
                    filters.auto_reload_all,
                )
                .roll
            {
                members.push((kind, name, Some(entry), &ALL));
                unreferenced = true;
            }
        }
    }
    if unreferenced {
        // The set's order: by kind, then name (`ConfigId`'s order).
        members.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    }
    let mut e = Encoder::new(members.len(), members.len() * 48);
    for (kind, name, entry, consumption) in members {
        encode_consumed(&mut e, kind, name, entry, consumption);
    }
    e.finish()
}

/// One debug line per review: who and what, never the object.
fn log(req: &Request, webhook: &str, verdict: &Verdict) {
    tracing::debug!(
        webhook,
        uid = req.uid,
        kind = req.kind.kind,
        namespace = req.namespace,
        operation = req.operation,
        outcome = verdict.outcome.as_str(),
        "admission review answered"
    );
}

fn workload_shape(w: &LeanWorkload) -> crate::patch::MetadataShape {
    if w.metadata.annotations.is_some() {
        crate::patch::MetadataShape::Annotations
    } else {
        crate::patch::MetadataShape::NoAnnotations
    }
}

fn patched(patch: serde_json::Value) -> Verdict {
    Verdict {
        outcome: Outcome::Patched,
        patch: Some(patch),
        warnings: Vec::new(),
        message: None,
    }
}

fn verdict(violations: Vec<policy::Violation>, warnings: Vec<Warning>) -> Verdict {
    let warnings = warnings.iter().map(|w| format!("kreload: {w}")).collect();
    if violations.is_empty() {
        return Verdict {
            warnings,
            ..Verdict::allow()
        };
    }
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Verdict {
        warnings,
        ..Verdict::deny(Outcome::Denied, format!("kreload: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::CONFIG_HASH;
    use crate::model::ValueDigest;
    use crate::policy::Annotations;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use serde_json::{Value, json};

    fn admission() -> Admission {
        let store = Arc::new(DigestStore::new());
        let keys = [("app.conf", "v1"), ("unused", "x")];
        let entry = ConfigEntry {
            keys: keys
                .iter()
                .map(|(k, v)| (k.to_string(), ValueDigest::of(v.as_bytes())))
                .collect(),
            ..Default::default()
        };
        store.upsert(
            "ns",
            ConfigId::new(ConfigKind::ConfigMap, "app"),
            Arc::new(entry),
        );
        store.mark_synced(ConfigKind::ConfigMap);
        store.mark_synced(ConfigKind::Secret);
        Admission {
            key: HashKey::new(vec![1; 32]).unwrap(),
            store,
            filters: Filters::default(),
            workloads: Arc::new(NoWorkloads),
            namespaces: Arc::default(),
            ignored_workloads: BTreeSet::new(),
        }
    }

    fn review(group: &str, kind: &str, operation: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": group, "version": "v1", "kind": kind},
                        "namespace": "ns", "operation": operation, "object": object}
        }))
        .unwrap()
    }

    fn response(a: &Answer) -> Value {
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["response"]["uid"], "u-1");
        v["response"].clone()
    }

    fn apply_patch(object: &Value, resp: &Value) -> Value {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        let mut out = object.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        out
    }

    fn deployment(annotations: Value, template_annotations: Option<Value>) -> Value {
        let mut template = json!({"spec": {"containers": [{"name": "c", "volumeMounts": [],
            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "app.conf"}}}]}]}});
        if let Some(t) = template_annotations {
            template["metadata"] = json!({"annotations": t});
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": annotations},
               "spec": {"replicas": 1, "template": template}})
    }

    #[test]
    fn pods_are_stamped_with_what_they_consume() {
        let a = admission();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}});
        let answer = a.mutate(&review("", "Pod", "CREATE", pod.clone())).unwrap();
        assert_eq!(answer.outcome, Outcome::Patched);
        let resp = response(&answer);
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        let stamped = apply_patch(&pod, &resp);
        let stamp = stamped["metadata"]["annotations"][CONFIG_HASH]
            .as_str()
            .unwrap();
        assert!(a.key.is_current(stamp));
    }

    #[test]
    fn opted_in_templates_are_stamped_and_match_their_pods() {
        let a = admission();
        let d = deployment(json!({"reloader.stakater.com/auto": "true"}), None);
        let resp = response(
            &a.mutate(&review("apps", "Deployment", "CREATE", d.clone()))
                .unwrap(),
        );
        let stamped = apply_patch(&d, &resp);
        let template_stamp =
            stamped["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH].clone();
        // A pod made from the stamped template gets the same stamp: its trigger set is the same.
        let pod = json!({"metadata": stamped["spec"]["template"]["metadata"].clone(), "spec": stamped["spec"]["template"]["spec"].clone()});
        let answer = a.mutate(&review("", "Pod", "CREATE", pod)).unwrap();
        assert_eq!(
            answer.outcome,
            Outcome::Allowed,
            "the inherited stamp is already right"
        );
        // Idempotent: the stamped object needs no further patch (reinvocation).
        let again = a
            .mutate(&review("apps", "Deployment", "UPDATE", stamped))
            .unwrap();
        assert_eq!(again.outcome, Outcome::Allowed);
        assert!(template_stamp.is_string());
    }

    #[test]
    fn workloads_not_opted_in_are_left_alone() {
        let a = admission();
        let d = deployment(json!({}), None);
        let answer = a
            .mutate(&review("apps", "Deployment", "CREATE", d))
            .unwrap();
        assert_eq!(answer.outcome, Outcome::Allowed);
        assert!(response(&answer).get("patch").is_none());
    }

    #[test]
    fn foreign_stamps_on_update_are_an_unknown_baseline() {
        let a = admission();
        let d = deployment(
            json!({"reloader.stakater.com/auto": "true"}),
            Some(json!({CONFIG_HASH: "v1.00000000.aa"})),
        );
        assert_eq!(
            a.mutate(&review("apps", "Deployment", "UPDATE", d.clone()))
                .unwrap()
                .outcome,
            Outcome::Allowed
        );
        assert_eq!(
            a.mutate(&review("apps", "Deployment", "CREATE", d))
                .unwrap()
                .outcome,
            Outcome::Patched
        );
    }

    fn review_update(object: Value, old: Value) -> Vec<u8> {
        let mut v: Value =
            serde_json::from_slice(&review("apps", "Deployment", "UPDATE", object)).unwrap();
        v["request"]["oldObject"] = old;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_stamp_written_by_the_update_itself_is_kept() {
        let a = admission();
        let current = a.key.stamp(&Default::default());
        let other = format!("{}.{}.{}", "v1", a.key.id(), "0".repeat(64));
        let old = deployment(
            json!({"reloader.stakater.com/auto": "true"}),
            Some(json!({CONFIG_HASH: current})),
        );
        // The watcher (maybe on a replica whose store differs) writes a new stamp: kept.
        let new = deployment(
            json!({"reloader.stakater.com/auto": "true"}),
            Some(json!({CONFIG_HASH: other})),
        );
        assert_eq!(
            a.mutate(&review_update(new.clone(), old)).unwrap().outcome,
            Outcome::Allowed
        );
        // An update that leaves a stale stamp as it was gets the current one.
        assert_eq!(
            a.mutate(&review_update(new.clone(), new)).unwrap().outcome,
            Outcome::Patched
        );
    }

    #[test]
    fn restart_rollouts_are_stamped_on_the_object_not_the_template() {
        let a = admission();
        let r = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r", "annotations": {"reloader.stakater.com/auto": "true", "reloader.stakater.com/rollout-strategy": "restart"}},
            "spec": {"template": {"spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}}}});
        let mut body: Value =
            serde_json::from_slice(&review("argoproj.io", "Rollout", "CREATE", r.clone())).unwrap();
        body["request"]["kind"]["version"] = json!("v1alpha1");
        let resp = response(&a.mutate(&serde_json::to_vec(&body).unwrap()).unwrap());
        let out = apply_patch(&r, &resp);
        assert!(out["metadata"]["annotations"][CONFIG_HASH].is_string());
        assert!(out["spec"]["template"].get("metadata").is_none());
    }

    #[test]
    fn unwatched_namespaces_and_ignored_kinds_are_not_stamped() {
        let mut a = admission();
        a.namespaces = Arc::new(NamespaceFilter::new(
            ["other".to_string()].into(),
            Default::default(),
            None,
        ));
        let d = deployment(json!({"reloader.stakater.com/auto": "true"}), None);
        assert_eq!(
            a.mutate(&review("apps", "Deployment", "CREATE", d.clone()))
                .unwrap()
                .outcome,
            Outcome::Allowed
        );
        let pod = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(
            a.mutate(&review("", "Pod", "CREATE", pod)).unwrap().outcome,
            Outcome::Allowed
        );
        let mut a = admission();
        a.ignored_workloads = BTreeSet::from([WorkloadKind::Deployment]);
        assert_eq!(
            a.mutate(&review("apps", "Deployment", "CREATE", d))
                .unwrap()
                .outcome,
            Outcome::Allowed
        );
    }

    #[test]
    fn cronjob_job_templates_are_stamped() {
        let a = admission();
        let cj = json!({"metadata": {"name": "c", "annotations": {"reloader.stakater.com/auto": "true"}},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}}}}}});
        let resp = response(
            &a.mutate(&review("batch", "CronJob", "CREATE", cj.clone()))
                .unwrap(),
        );
        let out = apply_patch(&cj, &resp);
        assert!(
            out["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
                .is_string()
        );
    }

    #[test]
    fn auto_with_search_is_denied_naming_both() {
        let a = admission();
        let d = deployment(
            json!({"reloader.stakater.com/auto": "true", "reloader.stakater.com/search": "true"}),
            None,
        );
        let answer = a
            .validate(&review("apps", "Deployment", "CREATE", d))
            .unwrap();
        assert_eq!(answer.outcome, Outcome::Denied);
        let resp = response(&answer);
        assert_eq!(resp["allowed"], false);
        let msg = resp["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("reloader.stakater.com/auto")
                && msg.contains("reloader.stakater.com/search"),
            "{msg}"
        );
        assert_eq!(resp["status"]["code"], 403);
    }

    #[test]
    fn missing_reload_list_names_are_warned_about() {
        let a = admission();
        let d = deployment(
            json!({"configmap.reloader.stakater.com/reload": "app,nope"}),
            None,
        );
        let resp = response(
            &a.validate(&review("apps", "Deployment", "CREATE", d))
                .unwrap(),
        );
        assert_eq!(resp["allowed"], true);
        let warnings = resp["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].as_str().unwrap().contains("nope"));
    }

    #[test]
    fn configs_with_bad_booleans_are_denied() {
        let a = admission();
        let cm = json!({"metadata": {"name": "c", "annotations": {"reloader.stakater.com/match": "yes"}}});
        assert_eq!(
            a.validate(&review("", "ConfigMap", "CREATE", cm))
                .unwrap()
                .outcome,
            Outcome::Denied
        );
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        let a = admission();
        assert!(matches!(
            a.mutate(b"not json"),
            Err(ReviewError::NotAReview(_))
        ));
        assert!(matches!(a.mutate(b"{}"), Err(ReviewError::NoRequest)));
        assert!(matches!(
            a.mutate(br#"{"request": {"kind": {"kind": "Pod"}}}"#),
            Err(ReviewError::NoUid)
        ));
        let unknown = a
            .mutate(&review("", "Service", "CREATE", json!({})))
            .unwrap();
        assert_eq!(unknown.outcome, Outcome::Unsupported);
        assert_eq!(response(&unknown)["status"]["code"], 400);
        let garbage = a
            .mutate(&review(
                "",
                "Pod",
                "CREATE",
                json!({"spec": {"containers": "x"}}),
            ))
            .unwrap();
        assert_eq!(garbage.outcome, Outcome::Unsupported);
        assert_eq!(
            a.validate(&review("apps", "Deployment", "DELETE", Value::Null))
                .unwrap()
                .outcome,
            Outcome::Allowed
        );
    }

    /// JSON shaped like the objects the handler reads, with every field free to be anything.
    fn arb_object() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z0-9./~\\-]{0,12}".prop_map(Value::String),
            Just(json!("reloader.stakater.com/auto")),
            Just(json!("true")),
        ];
        let keys = prop_oneof![
            Just("metadata".to_string()),
            Just("annotations".to_string()),
            Just("spec".to_string()),
            Just("template".to_string()),
            Just("jobTemplate".to_string()),
            Just("containers".to_string()),
            Just("initContainers".to_string()),
            Just("volumes".to_string()),
            Just("env".to_string()),
            Just("envFrom".to_string()),
            Just("valueFrom".to_string()),
            Just("configMapKeyRef".to_string()),
            Just("secretKeyRef".to_string()),
            Just("configMap".to_string()),
            Just("secret".to_string()),
            Just("projected".to_string()),
            Just("sources".to_string()),
            Just("items".to_string()),
            Just("name".to_string()),
            Just("key".to_string()),
            Just("secretName".to_string()),
            Just("ownerReferences".to_string()),
            Just("labels".to_string()),
            Just(CONFIG_HASH.to_string()),
            Just("reloader.stakater.com/search".to_string()),
            Just("configmap.reloader.stakater.com/reload".to_string()),
            Just("deployment.reloader.stakater.com/pause-period".to_string()),
            "[a-z]{1,6}",
        ];
        leaf.prop_recursive(6, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A review with the request's fields in the order the API server writes them (`kind` and
    /// `operation` before the objects), which the one-pass parse reads directly.
    fn review_in_api_server_order(
        group: &str,
        kind: &str,
        operation: &str,
        object: &Value,
        old: &Value,
    ) -> Vec<u8> {
        format!(
            r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"u-1","kind":{},"name":"x","namespace":"ns","operation":"{operation}","userInfo":{{"username":"u"}},"object":{},"oldObject":{},"dryRun":false}}}}"#,
            json!({"group": group, "version": "v1", "kind": kind}),
            object,
            old
        )
        .into_bytes()
    }

    /// The mutating webhook as it was before the one-pass parse: the reference it must match.
    fn mutate_slow(a: &Admission, body: &[u8]) -> Result<Answer, ReviewError> {
        a.mutate_parsed(parse(body)?)
    }

    fn same_answer(
        fast: Result<Answer, ReviewError>,
        slow: Result<Answer, ReviewError>,
    ) -> Result<(), TestCaseError> {
        match (fast, slow) {
            (Ok(f), Ok(s)) => {
                prop_assert_eq!(f.outcome, s.outcome);
                prop_assert_eq!(
                    String::from_utf8_lossy(&f.body),
                    String::from_utf8_lossy(&s.body)
                );
            }
            (Err(f), Err(s)) => prop_assert_eq!(format!("{f:?}"), format!("{s:?}")),
            (f, s) => prop_assert!(
                false,
                "fast {:?} vs slow {:?}",
                f.map(|a| a.body),
                s.map(|a| a.body)
            ),
        }
        Ok(())
    }

    #[test]
    fn the_one_pass_parse_reads_objects_directly_and_falls_back() {
        let a = admission();
        let d = deployment(json!({"reloader.stakater.com/auto": "true"}), None);
        let body = review_in_api_server_order("apps", "Deployment", "UPDATE", &d, &d);
        let req = parse_for_mutate(&body).unwrap();
        assert!(matches!(req.parsed_object, Some(Preparsed::Workload(_))));
        assert!(matches!(req.parsed_old, Some(Some(_))));
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"envFrom": [{"configMapRef": {"name": "app"}}]}]}});
        let body = review_in_api_server_order("", "Pod", "CREATE", &pod, &Value::Null);
        let req = parse_for_mutate(&body).unwrap();
        assert!(matches!(req.parsed_object, Some(Preparsed::Pod(_))));
        assert!(req.parsed_old.is_none() && req.old_object.is_none());
        // Objects the lean types cannot read: the raw path answers, as it always did.
        let garbage = json!({"spec": {"containers": "x"}});
        let body = review_in_api_server_order("", "Pod", "CREATE", &garbage, &Value::Null);
        assert!(parse_for_mutate(&body).unwrap().parsed_object.is_none());
        assert_eq!(a.mutate(&body).unwrap().outcome, Outcome::Unsupported);
        let body = review_in_api_server_order("", "Pod", "CREATE", &json!([1]), &Value::Null);
        assert_eq!(a.mutate(&body).unwrap().outcome, Outcome::Unsupported);
        // A duplicate field is refused as before.
        let dup = br#"{"request": {"uid": "u-1", "uid": "u-2", "kind": {"kind": "Pod"}}}"#;
        assert!(matches!(a.mutate(dup), Err(ReviewError::NotAReview(_))));
    }

    fn arb_policy() -> impl Strategy<Value = Annotations> {
        let bool_value = prop_oneof![Just("true"), Just("false"), Just("yes")];
        let list = prop_oneof![
            Just("a"),
            Just("a, b"),
            Just("x.*"),
            Just("(a|c)"),
            Just("[")
        ];
        (
            proptest::option::of(bool_value.clone()),
            proptest::option::of(bool_value.clone()),
            proptest::option::of(bool_value.clone()),
            proptest::option::of(bool_value),
            proptest::option::of(list.clone()),
            proptest::option::of(list.clone()),
            proptest::option::of(list),
        )
            .prop_map(
                |(auto, cm_auto, search, secret_auto, cm_list, s_list, excl)| {
                    let mut a = Annotations::new();
                    let mut put = |k: &str, v: Option<&str>| {
                        if let Some(v) = v {
                            a.insert(k.to_string(), v.to_string());
                        }
                    };
                    put("reloader.stakater.com/auto", auto);
                    put("configmap.reloader.stakater.com/auto", cm_auto);
                    put("secret.reloader.stakater.com/auto", secret_auto);
                    put("reloader.stakater.com/search", search);
                    put("configmap.reloader.stakater.com/reload", cm_list);
                    put("secret.reloader.stakater.com/reload", s_list);
                    put("configmaps.exclude.reloader.stakater.com/reload", excl);
                    a
                },
            )
    }

    fn arb_kind() -> impl Strategy<Value = ConfigKind> {
        prop_oneof![Just(ConfigKind::ConfigMap), Just(ConfigKind::Secret)]
    }

    fn arb_refs() -> impl Strategy<Value = References> {
        let consumption = prop_oneof![
            Just(Consumption::All),
            proptest::collection::btree_set("[k-m]{1,2}", 0..3).prop_map(Consumption::Keys),
        ];
        proptest::collection::btree_map(
            (arb_kind(), "[a-d]{1,2}").prop_map(|(k, n)| ConfigId::new(k, n)),
            consumption,
            0..5,
        )
    }

    fn arb_store() -> impl Strategy<Value = Vec<(ConfigKind, String, ConfigEntry)>> {
        let entry = (
            proptest::collection::btree_map("[k-m]{1,2}", any::<u8>(), 0..4),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(keys, matched, ignore, team_a)| ConfigEntry {
                labels: if team_a {
                    [("team".to_string(), "a".to_string())].into()
                } else {
                    Default::default()
                },
                policy: ConfigPolicy { matched, ignore },
                keys: keys
                    .into_iter()
                    .map(|(k, v)| (k, ValueDigest::of(&[v])))
                    .collect(),
            });
        proptest::collection::vec((arb_kind(), "[a-d]{1,2}", entry), 0..8)
    }

    proptest! {
        /// The stamps built without a trigger set equal the stamps of the trigger set.
        #[test]
        fn encoded_stamps_equal_trigger_set_stamps(
            annotations in arb_policy(),
            refs in arb_refs(),
            configs in arb_store(),
            ignore_secrets in any::<bool>(),
            selector in any::<bool>(),
            auto_reload_all in any::<bool>(),
        ) {
            let store = Arc::new(DigestStore::new());
            for (kind, name, entry) in configs {
                store.upsert("ns", ConfigId::new(kind, name), Arc::new(entry));
            }
            let filters = Filters {
                ignored_kinds: if ignore_secrets { BTreeSet::from([ConfigKind::Secret]) } else { BTreeSet::new() },
                resource_label_selector: selector.then(|| "team=a".parse().unwrap()),
                auto_reload_all,
            };
            let a = Admission { filters: filters.clone(), store: store.clone(), ..admission() };
            let policy = policy::parse_workload(&annotations, None).value;
            let expected = store.with_namespace("ns", |view| {
                a.key.stamp(&crate::trigger::trigger_set(&policy, &refs, view, &filters))
            });
            let encoded = store.with_namespace("ns", |view| {
                a.key.stamp_encoded(&encode_trigger_set(&policy, &refs, view, &filters))
            });
            prop_assert_eq!(&encoded, &expected);
            if policy.opted_in(auto_reload_all) {
                prop_assert_eq!(a.workload_stamp("ns", &policy, &refs), Some(expected));
            }
            let expected = store.with_namespace("ns", |view| {
                a.key.stamp(&crate::trigger::consumed_set(&refs, view))
            });
            let encoded = store.with_namespace("ns", |view| {
                a.key.stamp_encoded(&encode_consumed_set(&refs, view))
            });
            prop_assert_eq!(encoded, expected);
        }

        /// The one-pass parse answers exactly as parsing the raw objects does, in the API
        /// server's field order and in any other.
        #[test]
        fn one_pass_parse_answers_like_the_raw_parse(
            object in arb_object(),
            old in arb_object(),
            kind in prop_oneof![Just(("", "Pod")), Just(("apps", "Deployment")), Just(("batch", "CronJob")), Just(("argoproj.io", "Rollout")), Just(("x", "Y"))],
            operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE")],
            api_server_order in any::<bool>(),
        ) {
            let a = admission();
            let body = if api_server_order {
                review_in_api_server_order(kind.0, kind.1, operation, &object, &old)
            } else {
                serde_json::to_vec(&json!({"request": {"uid": "u-1", "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
                    "namespace": "ns", "operation": operation, "object": object, "oldObject": old}})).unwrap()
            };
            same_answer(a.mutate(&body), mutate_slow(&a, &body))?;
        }

        #[test]
        fn one_pass_parse_of_stamped_workloads_answers_like_the_raw_parse(
            new_stamp in prop_oneof![Just(None), Just(Some("current")), Just(Some("other")), Just(Some("foreign"))],
            old_stamp in prop_oneof![Just(None), Just(Some("current")), Just(Some("other"))],
            operation in prop_oneof![Just("CREATE"), Just("UPDATE")],
        ) {
            let a = admission();
            let stamp = |s: Option<&str>| s.map(|s| match s {
                "current" => a.workload_stamp("ns", &policy::parse_workload(&[("reloader.stakater.com/auto".to_string(), "true".to_string())].into(), None).value, &[(ConfigId::new(ConfigKind::ConfigMap, "app"), Consumption::Keys(["app.conf".to_string()].into()))].into()).unwrap(),
                "other" => format!("v1.{}.{}", a.key.id(), "0".repeat(64)),
                _ => "v1.00000000.aa".to_string(),
            });
            let d = |s: Option<String>| deployment(json!({"reloader.stakater.com/auto": "true"}), s.map(|s| json!({CONFIG_HASH: s})));
            let body = review_in_api_server_order("apps", "Deployment", operation, &d(stamp(new_stamp)), &d(stamp(old_stamp)));
            same_answer(a.mutate(&body), mutate_slow(&a, &body))?;
        }
    }

    proptest! {
        /// The fuzz target: structured reviews with arbitrary objects, kinds and operations. Run
        /// long with e.g. `PROPTEST_CASES=200000 cargo test --release --lib fuzz_review`.
        #[test]
        fn fuzz_review_handler(
            object in arb_object(),
            old in arb_object(),
            kind in prop_oneof![Just(("", "Pod")), Just(("apps", "Deployment")), Just(("batch", "CronJob")), Just(("argoproj.io", "Rollout")), Just(("", "ConfigMap")), Just(("", "Secret")), Just(("x", "Y"))],
            operation in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE"), Just("CONNECT")],
        ) {
            let a = admission();
            let body = serde_json::to_vec(&json!({"request": {"uid": "u-1", "kind": {"group": kind.0, "version": "v1", "kind": kind.1},
                "namespace": "ns", "operation": operation, "object": object, "oldObject": old}})).unwrap();
            for answer in [a.mutate(&body).unwrap(), a.validate(&body).unwrap()] {
                let v: Value = serde_json::from_slice(&answer.body).unwrap();
                prop_assert_eq!(&v["response"]["uid"], "u-1");
                if let Some(p) = v["response"]["patch"].as_str() {
                    // Every patch applies to the object it was made for.
                    let bytes = base64::engine::general_purpose::STANDARD.decode(p).unwrap();
                    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
                    let mut doc = object.clone();
                    prop_assert!(json_patch::patch(&mut doc, &patch).is_ok(), "patch {} does not apply", String::from_utf8_lossy(&bytes));
                }
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let a = admission();
            let _ = a.mutate(&body);
            let _ = a.validate(&body);
        }

        #[test]
        fn arbitrary_annotations_never_panic(k in "[a-z./]{0,40}", v in ".{0,20}") {
            let a = admission();
            let d = deployment(json!({k.clone(): v.clone()}), Some(json!({k: v})));
            for kind in ["Deployment", "StatefulSet"] {
                let _ = a.mutate(&review("apps", kind, "CREATE", d.clone())).unwrap();
                let _ = a.validate(&review("apps", kind, "UPDATE", d.clone())).unwrap();
            }
        }
    }
}
