//! `kreload migrate --reloader-values FILE`: kreload chart values for a Reloader Helm values file
//! (Reloader's chart, `reloader.*`, as of Reloader v1.4.21), and what has no equivalent, with why.
//!
//! [`migrate`] is pure: it reads the values as YAML and returns the kreload values and the notes.
//! A value left at Reloader's default needs nothing, except where Reloader's default behaviour
//! differs from kreload's (Argo Rollouts), so that the cluster behaves as it did.

use std::path::Path;

use anyhow::Context;
use serde_yaml::{Mapping, Value};

use crate::cli::args::MigrateArgs;
use crate::domain::selector::{Selector, from_reloader_flags};

/// What happened to one Reloader value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// Carried over, but kreload acts differently (or not yet); the note says how.
    Differs,
    /// Not carried over: kreload has no equivalent, or needs none.
    NoEquivalent,
}

/// A Reloader value that is not carried over as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The Reloader value's path, e.g. `reloader.reloadStrategy`.
    pub key: String,
    pub kind: NoteKind,
    pub why: String,
}

/// kreload chart values and the notes about what did not carry over.
#[derive(Debug, Default)]
pub struct Migration {
    /// Only the values that differ from the kreload chart's defaults, in the chart's order.
    pub values: Mapping,
    pub notes: Vec<Note>,
}

impl Migration {
    fn set(&mut self, path: &[&str], value: Value) {
        let mut map = &mut self.values;
        for key in &path[..path.len() - 1] {
            let entry = map
                .entry(Value::from(*key))
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            map = entry.as_mapping_mut().expect("a nested values mapping");
        }
        map.insert(Value::from(path[path.len() - 1]), value);
    }

    fn push_list(&mut self, key: &str, item: Value) {
        let k = Value::from(key);
        let list = self
            .values
            .entry(k)
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if let Value::Sequence(items) = list
            && !items.contains(&item)
        {
            items.push(item);
        }
    }

    fn differs(&mut self, key: &str, why: impl Into<String>) {
        self.notes.push(Note {
            key: key.to_owned(),
            kind: NoteKind::Differs,
            why: why.into(),
        });
    }

    fn no_equivalent(&mut self, key: &str, why: impl Into<String>) {
        self.notes.push(Note {
            key: key.to_owned(),
            kind: NoteKind::NoEquivalent,
            why: why.into(),
        });
    }
}

/// A bad Reloader values file: what is wrong, and where.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct MigrateError {
    pub key: String,
    pub why: String,
}

fn error(key: &str, why: impl Into<String>) -> MigrateError {
    MigrateError {
        key: key.to_owned(),
        why: why.into(),
    }
}

/// The values under one mapping, taken key by key; whatever is left at the end was not
/// recognized.
struct Section {
    path: String,
    map: Mapping,
}

impl Section {
    fn new(path: String, value: Option<Value>) -> Result<Self, MigrateError> {
        let map = match value {
            None | Some(Value::Null) => Mapping::new(),
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(error(&path, "expected a mapping")),
        };
        Ok(Section { path, map })
    }

    fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The value, unless absent or null.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn take_bool(&mut self, name: &str) -> Result<Option<bool>, MigrateError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            // Helm --set and hand-written files sometimes carry booleans as strings.
            Some(Value::String(s)) => match s.as_str() {
                "true" => Ok(Some(true)),
                "false" | "" => Ok(Some(false)),
                _ => Err(error(
                    &self.key(name),
                    format!("{s:?} is not true or false"),
                )),
            },
            Some(_) => Err(error(&self.key(name), "expected true or false")),
        }
    }

    fn take_string(&mut self, name: &str) -> Result<Option<String>, MigrateError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(error(&self.key(name), "expected a string")),
        }
    }

    /// A value that counts only when not empty (an empty mapping, list or string is unset).
    fn take_nonempty(&mut self, name: &str) -> Option<Value> {
        self.take(name).filter(|v| match v {
            Value::Mapping(m) => !m.is_empty(),
            Value::Sequence(s) => !s.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => true,
        })
    }

    fn section(&mut self, name: &str) -> Result<Section, MigrateError> {
        Section::new(self.key(name), self.take(name))
    }

    /// Notes every key left over as not a Reloader chart value.
    fn finish(self, m: &mut Migration) {
        for (k, _) in &self.map {
            let name = k
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{k:?}"));
            m.no_equivalent(
                &self.key(&name),
                "not a value of Reloader's chart (v1.4.21) that kreload knows; check it by hand",
            );
        }
    }
}

/// Reloader's chart values file → kreload chart values. `reloader_namespace` is where Reloader
/// ran; it is needed only with `reloader.watchGlobally: false` and no `reloader.namespaces`.
pub fn migrate(
    reloader_values: &Value,
    reloader_namespace: Option<&str>,
) -> Result<Migration, MigrateError> {
    let mut m = Migration::default();
    let mut top = Section::new(String::new(), Some(reloader_values.clone()))?;
    let mut r = top.section("reloader")?;

    // Which namespaces: Reloader watches all (watchGlobally), its own only, or a list (scoped).
    let watch_globally = r.take_bool("watchGlobally")?.unwrap_or(true);
    let scoped: Vec<String> = match r.take("namespaces") {
        None => vec![],
        Some(Value::String(s)) => split_list(&s),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::trim).map(str::to_owned))
            .filter(|s| !s.is_empty())
            .collect(),
        Some(_) => {
            return Err(error(
                "reloader.namespaces",
                "expected a list of namespaces",
            ));
        }
    };
    let namespace_selector = r.take_string("namespaceSelector")?.unwrap_or_default();
    if !watch_globally {
        let watch = if scoped.is_empty() {
            let Some(ns) = reloader_namespace else {
                return Err(error(
                    "reloader.watchGlobally",
                    "false: Reloader watched only the namespace it ran in; pass --reloader-namespace NAMESPACE",
                ));
            };
            vec![ns.to_owned()]
        } else {
            scoped
        };
        m.set(
            &["watchNamespaces"],
            Value::Sequence(watch.into_iter().map(Value::from).collect()),
        );
        if !namespace_selector.is_empty() {
            m.no_equivalent(
                "reloader.namespaceSelector",
                "Reloader's chart ignores it unless reloader.watchGlobally is true",
            );
        }
    } else {
        if !scoped.is_empty() {
            return Err(error(
                "reloader.namespaces",
                "set, but reloader.watchGlobally is true: Reloader's chart refuses this too",
            ));
        }
        if !namespace_selector.is_empty() {
            m.set(
                &["namespaceSelector"],
                Value::from(selector("reloader.namespaceSelector", &namespace_selector)?),
            );
        }
    }
    if let Some(list) = r.take_string("ignoreNamespaces")? {
        let list = split_list(&list);
        if !list.is_empty() {
            m.set(
                &["namespacesToIgnore"],
                Value::Sequence(list.into_iter().map(Value::from).collect()),
            );
        }
    }
    if let Some(s) = r
        .take_string("resourceLabelSelector")?
        .filter(|s| !s.is_empty())
    {
        m.set(
            &["resourceLabelSelector"],
            Value::from(selector("reloader.resourceLabelSelector", &s)?),
        );
    }
    if r.take_bool("ignoreConfigMaps")? == Some(true) {
        m.push_list("resourcesToIgnore", Value::from("configMaps"));
    }
    if r.take_bool("ignoreSecrets")? == Some(true) {
        m.push_list("resourcesToIgnore", Value::from("secrets"));
    }
    if r.take_bool("ignoreJobs")? == Some(true) {
        m.push_list("ignoredWorkloadTypes", Value::from("jobs"));
    }
    if r.take_bool("ignoreCronJobs")? == Some(true) {
        m.push_list("ignoredWorkloadTypes", Value::from("cronjobs"));
    }
    if r.take_bool("isArgoRollouts")? != Some(true) {
        m.push_list("ignoredWorkloadTypes", Value::from("rollouts"));
        m.differs(
            "reloader.isArgoRollouts",
            "false (Reloader's default): Reloader did not roll Argo Rollouts, so neither will kreload (ignoredWorkloadTypes: rollouts); drop rollouts from that list to have opted-in Rollouts rolled",
        );
    }
    for (key, value) in [
        ("autoReloadAll", "autoReloadAll"),
        ("reloadOnCreate", "reloadOnCreate"),
        ("reloadOnDelete", "reloadOnDelete"),
    ] {
        if r.take_bool(key)? == Some(true) {
            m.set(&[value], Value::from(true));
        }
    }
    if r.take_bool("syncAfterRestart")? == Some(true) {
        m.no_equivalent(
            "reloader.syncAfterRestart",
            "kreload always compares every stamped workload with the current config after start-up and leader changes, and rolls the ones changed while it was down",
        );
    }
    match r.take_string("reloadStrategy")?.as_deref() {
        None | Some("default" | "") => {}
        Some(strategy @ ("env-vars" | "annotations")) => m.no_equivalent(
            "reloader.reloadStrategy",
            format!(
                "{strategy}: kreload always rolls by writing its keyed stamp on the pod template (no environment variables, so no drift for GitOps tools)"
            ),
        ),
        Some(other) => {
            return Err(error(
                "reloader.reloadStrategy",
                format!("{other:?} is not default, env-vars or annotations"),
            ));
        }
    }
    match r.take_string("logFormat")?.as_deref() {
        None | Some("") | Some("text") => {}
        Some("json") => m.set(&["logFormat"], Value::from("json")),
        Some(other) => {
            return Err(error(
                "reloader.logFormat",
                format!("{other:?} is not json or empty"),
            ));
        }
    }
    match r.take_string("logLevel")?.as_deref() {
        None | Some("" | "info") => {}
        Some(level) => {
            let mapped = match level {
                "trace" | "debug" | "error" => level,
                "warning" | "warn" => "warn",
                "fatal" | "panic" => "error",
                other => {
                    return Err(error(
                        "reloader.logLevel",
                        format!(
                            "{other:?} is not trace, debug, info, warning, error, fatal or panic"
                        ),
                    ));
                }
            };
            m.set(&["logLevel"], Value::from(mapped));
            if mapped != level {
                m.differs(
                    "reloader.logLevel",
                    format!("{level}: kreload's nearest level is {mapped}"),
                );
            }
        }
    }
    if r.take_bool("enableMetricsByNamespace")? == Some(true) {
        m.set(&["metricsCountByNamespace"], Value::from(true));
    }

    // High availability: kreload serves admission, so it runs two replicas with leader
    // election by default; Reloader's single replica is not carried over.
    let ha = r.take_bool("enableHA")?.unwrap_or(false);
    let mut deployment = r.section("deployment")?;
    let replicas = match deployment.take("replicas") {
        None => 1,
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| error("reloader.deployment.replicas", "expected a whole number"))?,
        Some(_) => return Err(error("reloader.deployment.replicas", "expected a number")),
    };
    if ha {
        if replicas > 2 {
            m.set(&["replicas"], Value::from(replicas));
        }
    } else {
        m.differs(
            "reloader.enableHA",
            "false (Reloader's default): kreload keeps its defaults, two replicas with leader election (ha.enabled), because its admission webhook should stay available while one restarts",
        );
    }

    // The pod.
    for (from, to) in [
        ("nodeSelector", "nodeSelector"),
        ("affinity", "affinity"),
        ("tolerations", "tolerations"),
        ("resources", "resources"),
        ("priorityClassName", "priorityClassName"),
    ] {
        if let Some(v) = deployment.take_nonempty(from) {
            m.set(&[to], v);
        }
    }
    if let Some(v) = r.take_nonempty("matchLabels") {
        m.set(&["podLabels"], v);
        m.differs(
            "reloader.matchLabels",
            "set as podLabels: kreload's selector labels are fixed, so these label the pods but do not select them",
        );
    }
    if let Some(secrets) = deployment.take_nonempty("imagePullSecrets") {
        pull_secrets(&mut m, "reloader.deployment.imagePullSecrets", secrets)?;
    }
    let mut pod = deployment.section("pod")?;
    if let Some(v) = pod.take_nonempty("annotations") {
        m.set(&["podAnnotations"], v);
    }
    pod.finish(&mut m);
    migrate_env(&mut deployment, &mut m)?;
    for (key, why) in [
        (
            "securityContext",
            "kreload's chart sets a hardened pod security context (non-root 65532, RuntimeDefault seccomp)",
        ),
        (
            "containerSecurityContext",
            "kreload's chart sets a hardened container security context (read-only root, no privilege escalation, no capabilities)",
        ),
        (
            "topologySpreadConstraints",
            "kreload's chart has no such value; by default it prefers spreading its replicas over nodes (affinity)",
        ),
        (
            "annotations",
            "kreload's chart has no value for annotations on the Deployment object",
        ),
        (
            "labels",
            "kreload's chart has no value for labels on the Deployment object (podLabels labels the pods)",
        ),
        (
            "livenessProbe",
            "kreload's probes are fixed (/livez, /readyz)",
        ),
        (
            "readinessProbe",
            "kreload's probes are fixed (/livez, /readyz)",
        ),
        (
            "revisionHistoryLimit",
            "kreload's chart keeps the Kubernetes default",
        ),
        ("dnsConfig", "kreload's chart has no such value"),
        ("volumes", "kreload needs no extra volumes"),
        ("volumeMounts", "kreload needs no extra volumes"),
        (
            "gomaxprocsOverride",
            "Go runtime settings; kreload is not a Go program",
        ),
        (
            "gomemlimitOverride",
            "Go runtime settings; kreload is not a Go program",
        ),
        (
            "image",
            "kreload's image is built from its Dockerfile: set image.repository and image.tag",
        ),
        ("runtimeClassName", "kreload's chart has no such value"),
        ("schedulerName", "kreload's chart has no such value"),
        (
            "automountServiceAccountToken",
            "kreload needs its ServiceAccount token to reach the API",
        ),
    ] {
        if deployment
            .take_nonempty(key)
            .is_some_and(|v| !is_default(&format!("deployment.{key}"), &v))
        {
            m.no_equivalent(&deployment.key(key), why);
        }
    }
    deployment.finish(&mut m);

    // Custom annotation names: the chart's annotationNames, which pass them as Reloader's flags
    // and widen the validating webhook's matchConditions to them.
    let mut custom = r.section("custom_annotations")?;
    for (key, value) in [
        ("auto", "auto"),
        ("configmap_auto", "configmapAuto"),
        ("secret_auto", "secretAuto"),
        ("search", "search"),
        ("match", "match"),
        ("configmap", "configmapReload"),
        ("secret", "secretReload"),
        ("pausePeriod", "pausePeriod"),
        ("pauseTime", "pausedAt"),
        ("ignore", "ignore"),
    ] {
        if let Some(name) = custom.take_string(key)?.filter(|s| !s.is_empty()) {
            crate::cli::args::annotation_key(&name).map_err(|e| error(&custom.key(key), e))?;
            m.set(&["annotationNames", value], Value::from(name));
        }
    }
    custom.finish(&mut m);

    // kreload's chart has no value for it: carried as a flag.
    if let Some(url) = r.take_string("webhookUrl")?.filter(|s| !s.is_empty()) {
        crate::cli::args::http_url(&url).map_err(|e| error("reloader.webhookUrl", e))?;
        m.push_list("extraArgs", Value::from(format!("--webhook-url={url}")));
        m.differs(
            "reloader.webhookUrl",
            "passed as --webhook-url in extraArgs (the chart has no value for it): as Reloader, a change calls the URL instead of rolling",
        );
    }
    // Accepted but not acted on yet: carried as a flag, so that it acts once kreload implements it.
    // The chart value passes --enable-csi-integration and grants reading the driver's
    // SecretProviderClassPodStatuses, as Reloader's chart does.
    if r.take_bool("enableCSIIntegration")? == Some(true) {
        m.set(&["enableCSIIntegration"], Value::from(true));
        m.differs(
            "reloader.enableCSIIntegration",
            "enableCSIIntegration: a rotation of a SecretProviderClass's versions rolls the workloads that mount it and are opted in for it, as with Reloader; the roll writes kreload.dev/csi-versions (many pods rotating to the same versions roll once), and Jobs are not rolled for it",
        );
    }
    // Reloader's chart grants access to DeploymentConfigs only with isOpenshift; without it,
    // Reloader could not roll them.
    if r.take_bool("isOpenshift")? == Some(true) {
        m.differs(
            "reloader.isOpenshift",
            "nothing to set: kreload rolls opted-in DeploymentConfigs whenever the cluster serves apps.openshift.io/v1",
        );
    } else {
        m.push_list("ignoredWorkloadTypes", Value::from("deploymentconfigs"));
        m.differs(
            "reloader.isOpenshift",
            "false (Reloader's default): Reloader's chart granted no access to OpenShift DeploymentConfigs, so Reloader did not roll them; neither will kreload (ignoredWorkloadTypes: deploymentconfigs); drop deploymentconfigs from that list to have opted-in DeploymentConfigs rolled",
        );
    }
    if r.take_bool("enablePProf")? == Some(true) {
        m.no_equivalent(
            "reloader.enablePProf",
            "Go's profiler; kreload is not a Go program (its /metrics shows its work)",
        );
    }
    if r.take_string("pprofAddr")?.is_some_and(|a| a != ":6060") {
        m.no_equivalent("reloader.pprofAddr", "kreload serves no pprof");
    }
    if r.take_bool("readOnlyRootFileSystem")? == Some(true) {
        m.differs(
            "reloader.readOnlyRootFileSystem",
            "nothing to set: kreload's root file system is always read-only",
        );
    }
    let mut legacy = r.section("legacy")?;
    if legacy.take_bool("rbac")? == Some(true) {
        m.no_equivalent(
            "reloader.legacy.rbac",
            "kreload's chart renders only current RBAC (rbac.authorization.k8s.io/v1)",
        );
    }
    legacy.finish(&mut m);
    let mut rbac = r.section("rbac")?;
    if rbac.take_bool("enabled")? == Some(false) {
        m.no_equivalent(
            "reloader.rbac.enabled",
            "kreload's chart always renders its least-privilege RBAC",
        );
    }
    if rbac.take_nonempty("labels").is_some() {
        m.no_equivalent("reloader.rbac.labels", "kreload's chart has no such value");
    }
    rbac.finish(&mut m);
    let mut sa = r.section("serviceAccount")?;
    let create = sa.take_bool("create")?;
    let name = sa.take_nonempty("name");
    if create == Some(false) || name.is_some() {
        m.no_equivalent(
            "reloader.serviceAccount",
            "kreload's chart always creates its ServiceAccount `kreload`, which its RBAC binds",
        );
    }
    for key in ["labels", "annotations"] {
        if sa.take_nonempty(key).is_some() {
            m.no_equivalent(&sa.key(key), "kreload's chart has no such value");
        }
    }
    sa.finish(&mut m);
    if r.take_nonempty("service").is_some() {
        m.no_equivalent(
            "reloader.service",
            "kreload's Service serves its webhooks; for metrics use serviceMonitor or podMonitor",
        );
    }
    for key in ["volumes", "volumeMounts"] {
        if r.take_nonempty(key).is_some() {
            m.no_equivalent(&r.key(key), "kreload needs no extra volumes");
        }
    }
    migrate_monitor(&mut r, "serviceMonitor", "targetLabels", &mut m)?;
    migrate_monitor(&mut r, "podMonitor", "podTargetLabels", &mut m)?;
    let mut pdb = r.section("podDisruptionBudget")?;
    let pdb_enabled = pdb.take_bool("enabled")?;
    let min = pdb.take("minAvailable");
    let max = pdb.take("maxUnavailable");
    if pdb_enabled == Some(true) {
        if let Some(max) = max {
            m.no_equivalent(
                "reloader.podDisruptionBudget.maxUnavailable",
                format!(
                    "{}: kreload's budget takes minAvailable only (default 1)",
                    scalar(&max)
                ),
            );
        } else if let Some(min) = min {
            m.set(&["podDisruptionBudget", "minAvailable"], min);
        }
    }
    pdb.finish(&mut m);
    let mut netpol = r.section("netpol")?;
    if netpol.take_bool("enabled")? == Some(true) {
        m.set(&["networkPolicy", "enabled"], Value::from(true));
        if let Some(from) = netpol.take_nonempty("from") {
            m.set(&["networkPolicy", "metricsFrom"], from);
        }
        if let Some(to) = netpol.take_nonempty("to") {
            let mut rule = Mapping::new();
            let mut port = Mapping::new();
            port.insert("port".into(), Value::from(443));
            rule.insert("ports".into(), Value::Sequence(vec![Value::Mapping(port)]));
            rule.insert("to".into(), to);
            m.set(
                &["networkPolicy", "egress"],
                Value::Sequence(vec![Value::Mapping(rule)]),
            );
        }
    } else {
        netpol.take("from");
        netpol.take("to");
    }
    netpol.finish(&mut m);
    let mut vpa = r.section("verticalPodAutoscaler")?;
    if vpa.take_bool("enabled")? == Some(true) {
        m.no_equivalent(
            "reloader.verticalPodAutoscaler",
            "kreload's chart renders no VerticalPodAutoscaler; its memory does not grow with the size of the configs",
        );
    }
    vpa.map.clear();
    r.finish(&mut m);

    // Outside `reloader:`.
    let mut global = top.section("global")?;
    if let Some(secrets) = global.take_nonempty("imagePullSecrets") {
        pull_secrets(&mut m, "global.imagePullSecrets", secrets)?;
    }
    if global.take_nonempty("imageRegistry").is_some() {
        m.no_equivalent(
            "global.imageRegistry",
            "kreload's image is built from its Dockerfile: set image.repository",
        );
    }
    global.finish(&mut m);
    let mut image = top.section("image")?;
    for key in ["name", "repository", "tag", "digest", "pullPolicy"] {
        if let Some(v) = image.take_nonempty(key)
            && !is_default(&format!("image.{key}"), &v)
        {
            m.no_equivalent(
                &image.key(key),
                "kreload's image is built from its Dockerfile: set image.repository and image.tag",
            );
        }
    }
    image.finish(&mut m);
    let mut kubernetes = top.section("kubernetes")?;
    if kubernetes
        .take_string("host")?
        .is_some_and(|h| h != "https://kubernetes.default")
    {
        m.no_equivalent(
            "kubernetes.host",
            "kreload uses the in-cluster configuration",
        );
    }
    kubernetes.finish(&mut m);
    for key in ["nameOverride", "fullnameOverride"] {
        if top.take_nonempty(key).is_some() {
            m.no_equivalent(
                key,
                "kreload's object names are fixed (kreload): one release per cluster",
            );
        }
    }
    if top.take_nonempty("namespace").is_some() {
        m.no_equivalent(
            "namespace",
            "kreload installs into the release namespace (helm -n)",
        );
    }
    top.finish(&mut m);

    sort_values(&mut m.values);
    Ok(m)
}

/// Reloader's chart turns `reloader.deployment.env` into the container's environment; kreload's
/// `extraEnv` takes the same entries.
fn migrate_env(deployment: &mut Section, m: &mut Migration) -> Result<(), MigrateError> {
    let mut env = deployment.section("env")?;
    let mut entries = Vec::new();
    let entry = |name: &str, value: Value| {
        let mut e = Mapping::new();
        e.insert("name".into(), Value::from(name));
        match value {
            Value::Mapping(from) => {
                e.insert("valueFrom".into(), Value::Mapping(from));
            }
            v => {
                e.insert("value".into(), v);
            }
        }
        Value::Mapping(e)
    };
    let pairs = |section: &mut Section, name: &str| -> Result<Vec<(String, Value)>, MigrateError> {
        match section.take(name) {
            None => Ok(vec![]),
            Some(Value::Mapping(map)) => Ok(map
                .into_iter()
                .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v)))
                .collect()),
            Some(_) => Err(error(&section.key(name), "expected a mapping")),
        }
    };
    for (name, value) in pairs(&mut env, "open")? {
        entries.push(entry(&name, Value::from(scalar(&value))));
    }
    for (name, field) in pairs(&mut env, "field")? {
        let mut from = Mapping::new();
        let mut field_ref = Mapping::new();
        field_ref.insert("fieldPath".into(), Value::from(scalar(&field)));
        from.insert("fieldRef".into(), Value::Mapping(field_ref));
        entries.push(entry(&name, Value::Mapping(from)));
    }
    match env.take("existing") {
        None => {}
        Some(Value::Mapping(secrets)) => {
            for (secret, keys) in secrets {
                let Some(secret) = secret.as_str() else {
                    continue;
                };
                let Value::Mapping(keys) = keys else {
                    return Err(error(
                        &format!("reloader.deployment.env.existing.{secret}"),
                        "expected a mapping of variable to Secret key",
                    ));
                };
                for (name, key) in keys {
                    let Some(name) = name.as_str() else { continue };
                    let mut from = Mapping::new();
                    let mut secret_ref = Mapping::new();
                    secret_ref.insert("name".into(), Value::from(secret));
                    secret_ref.insert("key".into(), Value::from(scalar(&key)));
                    from.insert("secretKeyRef".into(), Value::Mapping(secret_ref));
                    entries.push(entry(name, Value::Mapping(from)));
                }
                m.differs(
                    &format!("reloader.deployment.env.existing.{secret}"),
                    "read from the Secret of that name in kreload's namespace: copy the Secret there",
                );
            }
        }
        Some(_) => {
            return Err(error(
                "reloader.deployment.env.existing",
                "expected a mapping",
            ));
        }
    }
    let secret = pairs(&mut env, "secret")?;
    if !secret.is_empty() {
        let names: Vec<&str> = secret.iter().map(|(n, _)| n.as_str()).collect();
        m.no_equivalent(
            "reloader.deployment.env.secret",
            format!(
                "{}: Reloader's chart created a Secret for these; create one in kreload's namespace and reference it in extraEnv (secretKeyRef)",
                names.join(", ")
            ),
        );
    }
    env.finish(m);
    if !entries.is_empty() {
        m.set(&["extraEnv"], Value::Sequence(entries));
    }
    Ok(())
}

/// Reloader's `serviceMonitor` / `podMonitor` → kreload's of the same name.
fn migrate_monitor(
    r: &mut Section,
    name: &str,
    target_labels: &str,
    m: &mut Migration,
) -> Result<(), MigrateError> {
    let mut mon = r.section(name)?;
    let enabled = mon.take_bool("enabled")?;
    if enabled == Some(true) {
        m.set(&[name, "enabled"], Value::from(true));
        for (from, to) in [
            ("namespace", "namespace"),
            ("interval", "interval"),
            ("timeout", "scrapeTimeout"),
            ("labels", "labels"),
            ("annotations", "annotations"),
            ("relabelings", "relabelings"),
            ("metricRelabelings", "metricRelabelings"),
        ] {
            if let Some(v) = mon.take_nonempty(from) {
                m.set(&[name, to], v);
            }
        }
        if mon.take_bool("honorLabels")? == Some(false) {
            m.set(&[name, "honorLabels"], Value::from(false));
        }
        for key in [
            "scheme",
            "tlsConfig",
            "bearerTokenFile",
            "bearerTokenSecret",
            target_labels,
        ] {
            if mon.take_nonempty(key).is_some() {
                m.no_equivalent(
                    &mon.key(key),
                    "kreload's metrics are plain HTTP on its health port; the chart has no such value",
                );
            }
        }
    }
    mon.map.clear();
    Ok(())
}

/// Whether a value under `reloader.` (or `image.`) is the Reloader chart's default.
fn is_default(path: &str, v: &Value) -> bool {
    match path {
        "deployment.revisionHistoryLimit" => v.as_u64() == Some(2),
        "deployment.securityContext" => {
            // runAsNonRoot, runAsUser 65534, seccompProfile RuntimeDefault.
            let m = v.as_mapping();
            m.is_some_and(|m| {
                m.len() == 3
                    && m.get("runAsNonRoot").and_then(Value::as_bool) == Some(true)
                    && m.get("runAsUser").and_then(Value::as_u64) == Some(65534)
                    && m.get("seccompProfile")
                        .and_then(|s| s.get("type"))
                        .and_then(Value::as_str)
                        == Some("RuntimeDefault")
            })
        }
        "deployment.labels" => v.as_mapping().is_some_and(|m| {
            m.get("provider").and_then(Value::as_str) == Some("stakater")
                && m.get("group").and_then(Value::as_str) == Some("com.stakater.platform")
        }),
        "image.name" => v.as_str() == Some("stakater/reloader"),
        "image.repository" => v.as_str() == Some("ghcr.io/stakater/reloader"),
        "image.pullPolicy" => v.as_str() == Some("IfNotPresent"),
        // Any tag: the default moves with every Reloader release.
        "image.tag" => true,
        _ => false,
    }
}

/// Image pull secrets, as names or `{name: ...}` (Reloader's chart takes both), into kreload's
/// `imagePullSecrets` (`{name: ...}` only).
fn pull_secrets(m: &mut Migration, key: &str, secrets: Value) -> Result<(), MigrateError> {
    let Value::Sequence(secrets) = secrets else {
        return Err(error(key, "expected a list"));
    };
    for s in secrets {
        let item = match s {
            Value::String(name) => {
                let mut entry = Mapping::new();
                entry.insert("name".into(), Value::from(name));
                Value::Mapping(entry)
            }
            Value::Mapping(entry) if entry.contains_key("name") => Value::Mapping(entry),
            _ => return Err(error(key, "expected secret names or {name: ...}")),
        };
        m.push_list("imagePullSecrets", item);
    }
    Ok(())
}

/// Reloader's comma lists, trimmed, empty entries dropped.
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A Reloader selector value in Kubernetes syntax, checked.
fn selector(key: &str, value: &str) -> Result<String, MigrateError> {
    let read = from_reloader_flags(&[value.to_owned()]);
    read.parse::<Selector>()
        .map_err(|e| error(key, e.to_string()))?;
    Ok(read)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => serde_yaml::to_string(v)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// The kreload chart's order of values (as in its values.yaml), so the output reads like it.
const ORDER: [&str; 28] = [
    "replicas",
    "imagePullSecrets",
    "watchNamespaces",
    "namespacesToIgnore",
    "namespaceSelector",
    "resourceLabelSelector",
    "resourcesToIgnore",
    "ignoredWorkloadTypes",
    "autoReloadAll",
    "reloadOnCreate",
    "reloadOnDelete",
    "enableCSIIntegration",
    "ha",
    "logFormat",
    "logLevel",
    "metricsCountByNamespace",
    "extraArgs",
    "extraEnv",
    "resources",
    "podDisruptionBudget",
    "serviceMonitor",
    "podMonitor",
    "networkPolicy",
    "podAnnotations",
    "podLabels",
    "priorityClassName",
    "nodeSelector",
    "tolerations",
];

fn sort_values(values: &mut Mapping) {
    let rank = |k: &Value| {
        k.as_str()
            .and_then(|k| ORDER.iter().position(|o| *o == k))
            .unwrap_or(ORDER.len())
    };
    let mut entries: Vec<(Value, Value)> = std::mem::take(values).into_iter().collect();
    entries.sort_by_key(|(k, _)| rank(k));
    values.extend(entries);
}

/// The values as a YAML document, with the notes as comments above them.
pub fn render(m: &Migration, source: &str) -> String {
    let mut out = format!(
        "# kreload chart values for Reloader's Helm values {source}, made by `kreload migrate`.\n\
         # Install with: helm install kreload deploy/helm/kreload -n kreload --create-namespace -f THIS_FILE\n"
    );
    for (kind, title) in [
        (NoteKind::Differs, "Carried over, but kreload differs:"),
        (
            NoteKind::NoEquivalent,
            "Not carried over (no equivalent in kreload, or none needed):",
        ),
    ] {
        let notes: Vec<&Note> = m.notes.iter().filter(|n| n.kind == kind).collect();
        if notes.is_empty() {
            continue;
        }
        out.push_str("#\n# ");
        out.push_str(title);
        out.push('\n');
        for n in notes {
            out.push_str(&format!("#   {}: {}\n", n.key, n.why));
        }
    }
    if m.values.is_empty() {
        out.push_str("#\n# Nothing differs from kreload's defaults.\n{}\n");
    } else {
        out.push_str(&serde_yaml::to_string(&m.values).unwrap_or_default());
    }
    out
}

/// `kreload migrate`: prints the values (with the notes as comments) on standard output.
pub fn command(args: &MigrateArgs) -> anyhow::Result<()> {
    let path = &args.reloader_values;
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read standard input")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let values: Value =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    let migration = migrate(&values, args.reloader_namespace.as_deref())
        .with_context(|| format!("{}", path.display()))?;
    print!("{}", render(&migration, &path.display().to_string()));
    Ok(())
}

#[cfg(test)]
mod tests;
