//! AdmissionReviews in and out: the parse (with the mutating webhook's one-pass fast path), the
//! verdicts, and the response bodies. No decision is made here.

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::policy::{self, Warning};
use crate::domain::workload::{
    LeanPod, LeanWorkload, WorkloadKind, WorkloadStamps, object_or_null,
};

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

#[derive(Deserialize)]
pub(super) struct Review<'a> {
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct GroupVersionKind {
    pub(super) group: String,
    pub(super) version: String,
    pub(super) kind: String,
}

impl GroupVersionKind {
    /// The workload kind this names, if kreload rolls it.
    pub(super) fn workload(&self) -> Option<WorkloadKind> {
        WorkloadKind::from_group_kind(&self.group, &self.kind)
    }

    /// Whether this names a built-in workload kind (not an extra one).
    pub(super) fn built_in_workload(&self) -> bool {
        self.workload().is_some_and(|k| !k.is_extra())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Request<'a> {
    #[serde(default)]
    pub(super) uid: String,
    #[serde(default)]
    pub(super) kind: GroupVersionKind,
    #[serde(default)]
    pub(super) namespace: String,
    #[serde(default)]
    pub(super) operation: String,
    #[serde(borrow, default)]
    pub(super) object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(super) old_object: Option<&'a RawValue>,
    /// The request's options (CreateOptions, UpdateOptions, ...): who writes, by field manager.
    #[serde(borrow, default)]
    pub(super) options: Option<RequestOptions<'a>>,
    /// Who sends the request.
    #[serde(borrow, default)]
    pub(super) user_info: Option<UserInfo<'a>>,
    /// The object, when the mutating webhook's one-pass parse already read it.
    #[serde(skip)]
    pub(super) parsed_object: Option<Preparsed>,
    /// The old object, when the one-pass parse already read it (`Some(None)`: it is null).
    #[serde(skip)]
    pub(super) parsed_old: Option<Option<Box<WorkloadStamps>>>,
}

/// The part of a request's options the webhooks read (borrowed from the body: no allocation
/// on the admission path unless the JSON string has escapes).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct RequestOptions<'a> {
    #[serde(borrow)]
    pub(super) field_manager: Cow<'a, str>,
}

/// The part of a request's user the webhooks read (borrowed, as the options).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct UserInfo<'a> {
    #[serde(borrow)]
    pub(super) username: Cow<'a, str>,
}

impl Request<'_> {
    /// Whether kreload itself sends this request: its field manager, and its own user (the
    /// field manager alone anyone can claim).
    pub(super) fn is_from(&self, own_user: Option<&str>) -> bool {
        let manager = self.options.as_ref().map(|o| o.field_manager.as_ref());
        let user = self.user_info.as_ref().map(|u| u.username.as_ref());
        manager == Some(crate::domain::annotations::FIELD_MANAGER)
            && own_user.is_some()
            && user == own_user
    }
}

/// An object read during the one-pass parse of a review (see [`parse_for_mutate`]).
pub(super) enum Preparsed {
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

pub(super) struct Verdict {
    pub(super) outcome: Outcome,
    pub(super) patch: Option<serde_json::Value>,
    pub(super) warnings: Vec<String>,
    pub(super) message: Option<String>,
}

impl Verdict {
    pub(super) fn allow() -> Self {
        Verdict {
            outcome: Outcome::Allowed,
            patch: None,
            warnings: Vec::new(),
            message: None,
        }
    }

    pub(super) fn deny(outcome: Outcome, message: String) -> Self {
        Verdict {
            outcome,
            patch: None,
            warnings: Vec::new(),
            message: Some(message),
        }
    }
}

pub(super) fn parse(body: &[u8]) -> Result<Request<'_>, ReviewError> {
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
pub(super) fn parse_for_mutate(body: &[u8]) -> Result<Request<'_>, ReviewError> {
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
    Options,
    UserInfo,
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
                    "options" => Field::Options,
                    "userInfo" => Field::UserInfo,
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
                    options: None,
                    user_info: None,
                    parsed_object: None,
                    parsed_old: None,
                };
                let mut seen = [false; 8];
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
                        // Extra kinds keep their template anywhere: read whole, later.
                        Field::Object if kind_known && req.kind.built_in_workload() => {
                            let w: Typed<LeanWorkload> = map.next_value()?;
                            req.parsed_object = w.0.map(|w| Preparsed::Workload(Box::new(w)));
                        }
                        Field::Object => req.object = map.next_value()?,
                        Field::OldObject
                            if kind_known
                                && seen[Field::Operation as usize]
                                && req.operation == "UPDATE"
                                && req.kind.built_in_workload() =>
                        {
                            let w: Typed<WorkloadStamps> = map.next_value()?;
                            req.parsed_old = Some(w.0.map(Box::new));
                        }
                        Field::OldObject => req.old_object = map.next_value()?,
                        Field::Options => req.options = map.next_value()?,
                        Field::UserInfo => req.user_info = map.next_value()?,
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

pub(super) fn is_pod(gvk: &GroupVersionKind) -> bool {
    gvk.group.is_empty() && gvk.kind == "Pod"
}

pub(super) fn answer(uid: &str, v: Verdict) -> Answer {
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

pub(super) fn unsupported(req: &Request) -> Verdict {
    Verdict::deny(
        Outcome::Unsupported,
        format!(
            "kreload does not handle {}/{} {} with operation {:?}; the webhook configuration's rules should not send it here",
            req.kind.group, req.kind.version, req.kind.kind, req.operation
        ),
    )
}

/// The request's object as a workload of `kind` ([`LeanWorkload::from_json`]).
pub(super) fn workload_object(req: &Request, kind: WorkloadKind) -> Result<LeanWorkload, Verdict> {
    if !kind.is_extra() {
        return object(req);
    }
    let raw = req.object.ok_or_else(|| {
        Verdict::deny(Outcome::Unsupported, "the request carries no object".into())
    })?;
    if !raw.get().starts_with('{') {
        return object(req);
    }
    LeanWorkload::from_json(kind, raw.get()).map_err(|e| {
        Verdict::deny(
            Outcome::Unsupported,
            format!(
                "the {} in the request could not be read: {e}",
                req.kind.kind
            ),
        )
    })
}

pub(super) fn object<'a, T: Deserialize<'a>>(req: &Request<'a>) -> Result<T, Verdict> {
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

/// One debug line per review: who and what, never the object.
pub(super) fn log(req: &Request, webhook: &str, verdict: &Verdict) {
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

pub(super) fn patched(patch: serde_json::Value) -> Verdict {
    Verdict {
        outcome: Outcome::Patched,
        patch: Some(patch),
        warnings: Vec::new(),
        message: None,
    }
}

pub(super) fn verdict(violations: Vec<policy::Violation>, warnings: Vec<Warning>) -> Verdict {
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
