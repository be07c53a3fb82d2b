//! Workload kinds, where each keeps its pod template, and lean views of the objects that
//! deserialize only what the rules need (annotations, owner, references, current stamp).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::domain::annotations::{CONFIG_HASH, CSI_VERSIONS};
use crate::domain::extra;
use crate::domain::patch::MetadataShape;
use crate::domain::policy::{Annotations, PolicySource, RolloutStrategy, WorkloadPolicy};
use crate::domain::refs::{PodSpecRefs, null_default};

/// The kinds whose pod templates kreload stamps and rolls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Job,
    Rollout,
    /// OpenShift's `apps.openshift.io/v1` DeploymentConfig: a template change triggers its
    /// ConfigChange rollout.
    DeploymentConfig,
    /// A kind named by `--extra-workload`, by its index in the registry of
    /// [`crate::domain::extra`] (filled at start with the kinds the cluster serves).
    Extra(u8),
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 7] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::CronJob,
        WorkloadKind::Job,
        WorkloadKind::Rollout,
        WorkloadKind::DeploymentConfig,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Job => "Job",
            WorkloadKind::Rollout => "Rollout",
            WorkloadKind::DeploymentConfig => "DeploymentConfig",
            WorkloadKind::Extra(i) => extra::registered(i).kind,
        }
    }

    /// The kind named by an admission request's `kind.kind` (group checked by the caller).
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind an API group and kind name denote, if kreload rolls it (extra kinds included).
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        Self::every().find(|k| k.as_str() == kind && k.group() == group)
    }

    /// The built-in kinds, then the registered extra kinds.
    pub fn every() -> impl Iterator<Item = WorkloadKind> {
        Self::ALL.into_iter().chain(extra::all())
    }

    /// Whether the kind is one of `--extra-workload`.
    pub fn is_extra(self) -> bool {
        matches!(self, WorkloadKind::Extra(_))
    }

    /// How many distinct [`WorkloadKind::slot`]s there are.
    pub const SLOTS: usize = Self::ALL.len() + extra::MAX_EXTRA;

    /// A dense index of the kind, below [`WorkloadKind::SLOTS`] (for per-kind counters).
    pub fn slot(self) -> usize {
        match self {
            WorkloadKind::Extra(i) => Self::ALL.len() + usize::from(i).min(extra::MAX_EXTRA - 1),
            k => Self::ALL
                .iter()
                .position(|a| *a == k)
                .expect("built-in kinds are in ALL"),
        }
    }

    /// API group of the kind.
    pub fn group(self) -> &'static str {
        match self {
            WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
                "apps"
            }
            WorkloadKind::CronJob | WorkloadKind::Job => "batch",
            WorkloadKind::Rollout => "argoproj.io",
            WorkloadKind::DeploymentConfig => "apps.openshift.io",
            WorkloadKind::Extra(i) => extra::registered(i).group,
        }
    }

    /// Whether the kind comes from an API that a cluster may not serve (a CRD, OpenShift's):
    /// kreload watches it only when discovery finds it at start.
    pub fn optional(self) -> bool {
        matches!(
            self,
            WorkloadKind::Rollout | WorkloadKind::DeploymentConfig | WorkloadKind::Extra(_)
        )
    }

    pub fn version(self) -> &'static str {
        match self {
            WorkloadKind::Rollout => "v1alpha1",
            WorkloadKind::Extra(i) => extra::registered(i).version,
            _ => "v1",
        }
    }

    /// Resource name, as in RBAC rules and `--ignored-workload-types`.
    pub fn plural(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployments",
            WorkloadKind::StatefulSet => "statefulsets",
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::CronJob => "cronjobs",
            WorkloadKind::Job => "jobs",
            WorkloadKind::Rollout => "rollouts",
            WorkloadKind::DeploymentConfig => "deploymentconfigs",
            WorkloadKind::Extra(i) => extra::registered(i).plural,
        }
    }

    pub fn template_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template"],
            WorkloadKind::Extra(i) => extra::registered(i).path,
            _ => &["spec", "template"],
        }
    }

    /// The same path as a JSON pointer.
    pub fn template_pointer(self) -> &'static str {
        match self {
            WorkloadKind::CronJob => "/spec/jobTemplate/spec/template",
            WorkloadKind::Extra(i) => extra::registered(i).pointer,
            _ => "/spec/template",
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workload, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// What a workload watch tells the reloader, beyond what it writes to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadNews {
    /// A workload new to the index once the first listing is done: a config may have changed
    /// between its creation and its arrival, and no change event can find a workload the index
    /// does not have yet.
    New(WorkloadId),
    /// A Rollout whose referenced pod template (`spec.workloadRef`) now consumes other configs:
    /// Argo Rollouts rolls the new template out by itself, so the new hash is accounted for,
    /// not rolled (as admission moves a stamp with a template change).
    TemplateReplaced(WorkloadId),
}

/// Whether kreload rolls (and so stamps) a workload of `kind` with `policy`. Jobs are rolled only
/// when opted in explicitly on the Job itself, never through `--auto-reload-all`, and never when
/// a controller (a CronJob) owns them: the CronJob's template is what changes.
pub fn rolls(
    kind: WorkloadKind,
    policy: &WorkloadPolicy,
    controlled: bool,
    auto_reload_all: bool,
) -> bool {
    if kind == WorkloadKind::Job {
        !controlled && policy.source == PolicySource::Workload && policy.opted_in(false)
    } else {
        policy.opted_in(auto_reload_all)
    }
}

/// Where a workload carries its stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampLocation {
    /// On the pod template: changing it rolls the workload.
    Template,
    /// On the object itself, for Argo Rollouts rolled by `spec.restartAt`, whose template must
    /// not change.
    Object,
}

impl StampLocation {
    /// Where a workload of `kind` with `policy` keeps its stamp; `references_template`: whether
    /// it takes its pod template from another object (an Argo Rollout's `spec.workloadRef`).
    pub fn of(kind: WorkloadKind, policy: &WorkloadPolicy, references_template: bool) -> Self {
        let restart = policy.rollout_strategy == RolloutStrategy::Restart || references_template;
        if kind == WorkloadKind::Rollout && restart {
            StampLocation::Object
        } else {
            StampLocation::Template
        }
    }
}

/// The annotation Argo Rollouts' controller sets on a Rollout to the generation of the workload
/// its `spec.workloadRef` names, whenever that workload changes.
pub const WORKLOAD_GENERATION: &str = "rollout.argoproj.io/workload-generation";

/// An Argo Rollout's `spec.workloadRef`: the object whose pod template the Rollout uses (its own
/// `spec.template` must then stay empty).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadRef {
    #[serde(deserialize_with = "null_default")]
    pub api_version: String,
    #[serde(deserialize_with = "null_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub name: String,
}

impl WorkloadRef {
    /// The referenced Deployment's name, when the reference is to an `apps` Deployment: the
    /// one kind whose template kreload reads for a Rollout (as Reloader's support for
    /// `workloadRef` does). Argo Rollouts also takes ReplicaSets and PodTemplates.
    pub fn deployment(&self) -> Option<&str> {
        let group = self.api_version.split_once('/').map_or("", |(g, _)| g);
        (self.kind == "Deployment" && group == "apps" && !self.name.is_empty())
            .then_some(self.name.as_str())
    }
}

/// Whether an update changes a workload's pod template other than kreload's stamp on it: such an
/// update rolls the workload by itself, so the stamp may move with it for free. `old` and `new` are
/// the whole objects.
pub fn template_changed(
    kind: WorkloadKind,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> bool {
    fn without_stamp(template: Option<&serde_json::Value>) -> Option<serde_json::Value> {
        let mut t = template?.clone();
        if let Some(meta) = t.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            if let Some(a) = meta.get_mut("annotations").and_then(|a| a.as_object_mut()) {
                a.remove(CONFIG_HASH);
                // kreload's own CSI roll: not a change by someone else.
                a.remove(CSI_VERSIONS);
                if a.is_empty() {
                    meta.remove("annotations");
                }
            }
            if meta.is_empty() {
                t.as_object_mut().map(|o| o.remove("metadata"));
            }
        }
        Some(t)
    }
    let pointer = kind.template_pointer();
    without_stamp(old.pointer(pointer)) != without_stamp(new.pointer(pointer))
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerReference {
    #[serde(deserialize_with = "null_default")]
    pub api_version: String,
    #[serde(deserialize_with = "null_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub controller: Option<bool>,
}

/// The parts of `metadata` the rules read.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LeanMeta {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub generate_name: String,
    #[serde(deserialize_with = "null_default")]
    pub namespace: String,
    /// `None` when the field is absent or null (decides the patch's shape).
    pub annotations: Option<Annotations>,
    #[serde(deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    pub owner_references: Vec<OwnerReference>,
    /// Set once the object is being deleted (it may wait on finalizers).
    pub deletion_timestamp: Option<String>,
}

impl LeanMeta {
    pub fn annotations(&self) -> &Annotations {
        static EMPTY: Annotations = Annotations::new();
        self.annotations.as_ref().unwrap_or(&EMPTY)
    }

    pub fn stamp(&self) -> Option<&str> {
        self.annotations().get(CONFIG_HASH).map(String::as_str)
    }

    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
    }
}

/// A pod template: its metadata (if any) and the references of its spec. `S` is what of the
/// spec is read: its references, or nothing ([`IgnoredAny`], see [`WorkloadStamps`]).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, bound(deserialize = "S: Deserialize<'de> + Default"))]
pub struct LeanTemplate<S = PodSpecRefs> {
    #[serde(deserialize_with = "object_or_null")]
    pub metadata: Option<LeanMeta>,
    #[serde(deserialize_with = "null_default")]
    pub spec: S,
}

impl<S> LeanTemplate<S> {
    pub fn shape(&self) -> MetadataShape {
        match &self.metadata {
            None => MetadataShape::NoMetadata,
            Some(m) if m.annotations.is_none() => MetadataShape::NoAnnotations,
            Some(_) => MetadataShape::Annotations,
        }
    }

    pub fn annotations(&self) -> Option<&Annotations> {
        self.metadata.as_ref().and_then(|m| m.annotations.as_ref())
    }

    pub fn stamp(&self) -> Option<&str> {
        self.annotations()
            .and_then(|a| a.get(CONFIG_HASH))
            .map(String::as_str)
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(
    rename_all = "camelCase",
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub(crate) struct LeanJobTemplate<S = PodSpecRefs> {
    #[serde(deserialize_with = "object_or_null")]
    spec: Option<LeanJobSpec<S>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, bound(deserialize = "S: Deserialize<'de> + Default"))]
pub(crate) struct LeanJobSpec<S = PodSpecRefs> {
    #[serde(deserialize_with = "object_or_null")]
    template: Option<LeanTemplate<S>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(
    rename_all = "camelCase",
    default,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub(crate) struct LeanWorkloadSpec<S = PodSpecRefs> {
    #[serde(deserialize_with = "object_or_null")]
    template: Option<LeanTemplate<S>>,
    /// Deployments and Rollouts: whether the rollout is paused.
    #[serde(deserialize_with = "null_default")]
    pub(crate) paused: bool,
    /// Deployments, StatefulSets, Rollouts: the replicas wanted (1 when unset).
    pub(crate) replicas: Option<i64>,
    #[serde(deserialize_with = "object_or_null")]
    job_template: Option<LeanJobTemplate<S>>,
    /// Argo Rollouts: the object whose pod template the Rollout uses.
    #[serde(deserialize_with = "object_or_null")]
    workload_ref: Option<WorkloadRef>,
    /// Extra kinds: the pod template read at the kind's JSON pointer
    /// ([`LeanWorkloadSpec::read_extra_template`]).
    #[serde(skip)]
    extra_template: Option<LeanTemplate<S>>,
}

/// Any workload kind, read leanly: the template is found where the kind keeps it. `S` is what
/// of the template's spec is read (see [`LeanTemplate`]).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, bound(deserialize = "S: Deserialize<'de> + Default"))]
pub struct LeanWorkload<S = PodSpecRefs> {
    #[serde(deserialize_with = "object_or_default")]
    pub metadata: LeanMeta,
    #[serde(deserialize_with = "object_or_null")]
    spec: Option<LeanWorkloadSpec<S>>,
}

/// A workload read only for its annotations and its template's (stamp, accounted hash,
/// `csi-versions`), its pod spec skipped: what the mutating webhook needs of an UPDATE's old
/// object.
pub type WorkloadStamps = LeanWorkload<IgnoredAny>;

static NO_TEMPLATE: LeanTemplate = LeanTemplate {
    metadata: None,
    spec: PodSpecRefs {
        containers: Vec::new(),
        init_containers: Vec::new(),
        volumes: Vec::new(),
    },
};

impl<S: for<'de> Deserialize<'de> + Default> LeanWorkload<S> {
    /// Reads a workload of `kind` from JSON text. The same as deserializing it, except that an
    /// extra kind's template is found at its JSON pointer.
    pub fn read_json(kind: WorkloadKind, text: &str) -> serde_json::Result<Self> {
        if !kind.is_extra() {
            return serde_json::from_str(text);
        }
        let whole: serde_json::Value = serde_json::from_str(text)?;
        /// An extra kind's metadata; its `spec` is its own, not a built-in workload's.
        #[derive(Deserialize)]
        struct Metadata {
            #[serde(default, deserialize_with = "object_or_default")]
            metadata: LeanMeta,
        }
        let Metadata { metadata } = Metadata::deserialize(&whole)?;
        Ok(LeanWorkload {
            metadata,
            spec: Some(LeanWorkloadSpec::of_extra(kind, &whole)),
        })
    }
}

impl LeanWorkload {
    /// [`LeanWorkload::read_json`] with the pod spec's references read.
    pub fn from_json(kind: WorkloadKind, text: &str) -> serde_json::Result<Self> {
        Self::read_json(kind, text)
    }

    /// The pod template (an empty one when the object has none).
    pub fn template(&self, kind: WorkloadKind) -> &LeanTemplate {
        self.template_opt(kind).unwrap_or(&NO_TEMPLATE)
    }
}

impl<S> LeanWorkload<S> {
    /// The pod template, if the object has one where its kind keeps it.
    pub fn template_opt(&self, kind: WorkloadKind) -> Option<&LeanTemplate<S>> {
        self.spec.as_ref()?.template_opt(kind)
    }

    /// For a Rollout, the object whose pod template it uses (`spec.workloadRef`), if any.
    pub fn workload_ref(&self, kind: WorkloadKind) -> Option<&WorkloadRef> {
        self.spec.as_ref()?.workload_ref(kind)
    }
}

impl<S> LeanWorkloadSpec<S> {
    pub(crate) fn template_opt(&self, kind: WorkloadKind) -> Option<&LeanTemplate<S>> {
        match kind {
            WorkloadKind::CronJob => self.job_template.as_ref()?.spec.as_ref()?.template.as_ref(),
            WorkloadKind::Extra(_) => self.extra_template.as_ref(),
            _ => self.template.as_ref(),
        }
    }

    /// An extra kind's spec, read from the whole object `whole`: only the pod template at the
    /// kind's JSON pointer (a template that is not a JSON object, or unreadable, counts as none).
    /// The built-in kinds' fields (`template`, `jobTemplate`, `replicas`, `paused`, ...) mean
    /// something else in another API, or nothing, and an API server that does not validate them
    /// must not make the object unreadable: that would deny its every write (a finalizer's
    /// removal too) or stop the watch.
    pub(crate) fn of_extra(kind: WorkloadKind, whole: &serde_json::Value) -> Self
    where
        S: for<'de> Deserialize<'de> + Default,
    {
        LeanWorkloadSpec {
            template: None,
            paused: false,
            replicas: None,
            job_template: None,
            workload_ref: None,
            extra_template: whole
                .pointer(kind.template_pointer())
                .filter(|t| t.is_object())
                .and_then(|t| LeanTemplate::<S>::deserialize(t).ok()),
        }
    }
}

impl LeanWorkloadSpec {
    pub(crate) fn template(&self, kind: WorkloadKind) -> &LeanTemplate {
        self.template_opt(kind).unwrap_or(&NO_TEMPLATE)
    }
}

impl<S> LeanWorkloadSpec<S> {
    /// For a Rollout, the object whose pod template it uses (`spec.workloadRef`), if any.
    pub(crate) fn workload_ref(&self, kind: WorkloadKind) -> Option<&WorkloadRef> {
        (kind == WorkloadKind::Rollout)
            .then_some(self.workload_ref.as_ref())
            .flatten()
    }
}

/// What a workload's status says of its rollout (the fields kreload reads; absent ones are
/// `None`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LeanStatus {
    pub observed_generation: Option<i64>,
    pub replicas: Option<i64>,
    pub updated_replicas: Option<i64>,
    pub available_replicas: Option<i64>,
    pub current_revision: Option<String>,
    pub update_revision: Option<String>,
    pub desired_number_scheduled: Option<i64>,
    pub updated_number_scheduled: Option<i64>,
    pub number_available: Option<i64>,
}

impl LeanWorkloadSpec {
    /// Whether the workload's controller has rolled out its current template (what
    /// `kubectl rollout status` waits for), for the cluster-wide pacing of rolls. Kinds without
    /// a rollout (CronJobs, Jobs) are always done.
    pub(crate) fn rolled_out(
        &self,
        kind: WorkloadKind,
        generation: Option<i64>,
        status: &LeanStatus,
    ) -> bool {
        let observed = status.observed_generation >= generation;
        let want = self.replicas.unwrap_or(1);
        match kind {
            WorkloadKind::Deployment | WorkloadKind::Rollout | WorkloadKind::DeploymentConfig => {
                observed
                    && status.updated_replicas.unwrap_or(0) >= want
                    && status.replicas.unwrap_or(0) <= want
                    && status.available_replicas.unwrap_or(0) >= want
            }
            WorkloadKind::StatefulSet => {
                observed
                    && status.updated_replicas.unwrap_or(0) >= want
                    && status.current_revision == status.update_revision
            }
            WorkloadKind::DaemonSet => {
                let desired = status.desired_number_scheduled.unwrap_or(0);
                observed
                    && status.updated_number_scheduled.unwrap_or(0) >= desired
                    && status.number_available.unwrap_or(0) >= desired
            }
            WorkloadKind::CronJob | WorkloadKind::Job => true,
            // An extra kind's status is its own: done once its controller has seen the
            // generation, when it reports one.
            WorkloadKind::Extra(_) => {
                status.observed_generation.is_none() || status.observed_generation >= generation
            }
        }
    }
}

/// Accepts only a JSON object (or null / absent, as `None`): serde would otherwise read an array
/// into a struct field by field, and a patch made for an object would not apply to it.
pub(crate) fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(ObjectVisitor(std::marker::PhantomData))
}

/// As [`object_or_null`], with null read as the default.
pub(crate) fn object_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(object_or_null(d)?.unwrap_or_default())
}

/// A pod, read leanly.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LeanPod {
    #[serde(deserialize_with = "object_or_null")]
    metadata: Option<LeanMeta>,
    #[serde(deserialize_with = "null_default")]
    pub spec: PodSpecRefs,
}

static NO_META: LeanMeta = LeanMeta {
    name: String::new(),
    generate_name: String::new(),
    namespace: String::new(),
    annotations: None,
    labels: BTreeMap::new(),
    owner_references: Vec::new(),
    deletion_timestamp: None,
};

impl LeanPod {
    pub fn metadata(&self) -> &LeanMeta {
        self.metadata.as_ref().unwrap_or(&NO_META)
    }

    pub fn shape(&self) -> MetadataShape {
        match &self.metadata {
            None => MetadataShape::NoMetadata,
            Some(m) if m.annotations.is_none() => MetadataShape::NoAnnotations,
            Some(_) => MetadataShape::Annotations,
        }
    }

    /// The workloads that may own this pod, most likely first, derived from its controller
    /// reference and labels without an API call: a ReplicaSet is named `<deployment>-<hash>`
    /// (`pod-template-hash`) or `<rollout>-<hash>` (`rollouts-pod-template-hash`); a CronJob's
    /// Job is named `<cronjob>-<scheduled time in minutes>`, so a Job's pod may belong to that
    /// CronJob, else to the Job itself; a DeploymentConfig's ReplicationController is named
    /// `<dc>-<version>`, and OpenShift labels its pods with the DeploymentConfig's name.
    pub fn owner_candidates(&self) -> Vec<(WorkloadKind, String)> {
        let meta = self.metadata();
        let Some(owner) = meta.controller() else {
            return Vec::new();
        };
        let strip_hash = |label: &str| {
            let hash = meta.labels.get(label)?;
            let name = owner.name.strip_suffix(hash.as_str())?.strip_suffix('-')?;
            Some(name.to_owned())
        };
        match owner.kind.as_str() {
            "ReplicaSet" => {
                if let Some(name) = strip_hash("rollouts-pod-template-hash") {
                    return vec![(WorkloadKind::Rollout, name)];
                }
                strip_hash("pod-template-hash")
                    .map(|name| vec![(WorkloadKind::Deployment, name)])
                    .unwrap_or_default()
            }
            "ReplicationController" => deployment_config_of(meta, &owner.name)
                .map(|name| vec![(WorkloadKind::DeploymentConfig, name)])
                .unwrap_or_default(),
            "StatefulSet" => vec![(WorkloadKind::StatefulSet, owner.name.clone())],
            "DaemonSet" => vec![(WorkloadKind::DaemonSet, owner.name.clone())],
            "Job" => {
                let mut out = Vec::with_capacity(2);
                if let Some((cron, time)) = owner.name.rsplit_once('-')
                    && !cron.is_empty()
                    && !time.is_empty()
                    && time.bytes().all(|b| b.is_ascii_digit())
                {
                    out.push((WorkloadKind::CronJob, cron.to_owned()));
                }
                out.push((WorkloadKind::Job, owner.name.clone()));
                out
            }
            _ => Vec::new(),
        }
    }
}

/// Labels (and annotation) with which OpenShift names a pod's DeploymentConfig.
const DEPLOYMENT_CONFIG_LABELS: [&str; 2] =
    ["deploymentconfig", "openshift.io/deployment-config.name"];

/// The DeploymentConfig whose ReplicationController `rc` (named `<dc>-<version>`) made a pod
/// with this metadata: the name its labels (or annotation) give, when `rc` is that name's.
fn deployment_config_of(meta: &LeanMeta, rc: &str) -> Option<String> {
    let version_of = |dc: &str| {
        rc.strip_prefix(dc)?
            .strip_prefix('-')
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    };
    DEPLOYMENT_CONFIG_LABELS
        .iter()
        .flat_map(|key| [meta.labels.get(*key), meta.annotations().get(*key)])
        .flatten()
        .find(|dc| !dc.is_empty() && version_of(dc).is_some())
        .cloned()
}

#[cfg(test)]
mod tests;
