//! The soak test (issue 10): ordinary cluster operations with kreload installed never roll a
//! workload without a consumed-data change behind it, are never refused, never leave objects
//! stuck, and lose no roll.
//!
//! kreload runs in HA: two replicas (`--enable-ha`, a Lease of the soak's own), scoped with
//! `--namespaces` to the soak's three namespaces and `--namespace-selector` to those carrying the
//! soak's label, with `--auto-reload-all`. Each replica registers webhook configurations of its
//! own (named after its slot), so while one is down the other still serves admission, as two pods
//! behind one Service would. A seeded random driver applies, in rounds, a mix of ordinary
//! operations to eleven workloads of every kind in each namespace (Deployments, a StatefulSet, a
//! DaemonSet, a CronJob, two Argo Rollouts, an opted-in Job) and to their configs, and kills the
//! leader or restarts a replica at random points.
//!
//! The ledger: a model of the configs (data, `ignore`, `match`, whether they exist) and of each
//! workload's annotations and references says which writes are consumed-data changes that must
//! roll which workload (the decision rule, at key precision). After each round's operations the
//! test waits until every workload with such changes carries the current hash (a server-side
//! dry-run CREATE of a copy gives it) on a template that differs from the previous checkpoint's,
//! rolled out, its pods carrying it; then stays quiet long enough for any late roll to show
//! (coalescing window + storm guard + margin, counted from the last operation and from the last
//! leader takeover). A roll is counted by a new ReplicaSet / ControllerRevision (Deployment,
//! StatefulSet, DaemonSet), by a change of the template's stamp or content, or of a restart
//! Rollout's `restartAt`, as watched (CronJob, Rollout), and by a Job recreated. Per workload and
//! round, rolls beyond the changes that allow one (consumed-data changes, operations of the
//! driver that changed the template) are unexplained. A consumed-data change made while its
//! namespace is out of the selector is not expected; it may roll later (at a leader change),
//! until the template reaches the current hash. A round in which the driver recreated a workload
//! is checked for convergence only.
//!
//! `KRELOAD_SOAK_SECONDS` (default 120) bounds the rounds; `KRELOAD_SOAK_SEED` replays a run (the
//! seed is printed first; unset, one fixed seed; `random`, a new one). The last line printed is the summary the issue asks for.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::workloads::*;
use common::*;
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Label on the soak's namespaces that `--namespace-selector` selects (relabelled by the driver).
const SCOPE_LABEL: &str = "kreload-soak";
/// Label on every object the soak creates (workloads and their pod templates).
const RUN_LABEL: &str = "kreload-soak-run";
const ACCOUNTED: &str = "kreload.dev/accounted-hash";
/// The finalizer the driver holds objects with.
const HOLD: &str = "soak.kreload.dev/hold";
const LEASE_DURATION: &str = "5s";
/// Coalescing window (1 s) + storm guard (10 s, the defaults) + margin: a late roll shows within
/// this, counted from the last operation and from the last leader takeover.
const QUIET: Duration = Duration::from_secs(16);
/// How long an expected roll may take (storm guard, a takeover, a rollout on a loaded machine).
const CONVERGE: Duration = Duration::from_secs(150);
const SETTLE: Duration = Duration::from_secs(150);
/// An object still Terminating after this is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// What the soak runs: workloads, their references, their configs

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum WKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
    Rollout,
    Job,
}

impl WKind {
    const ALL: [WKind; 6] = [
        WKind::Deployment,
        WKind::StatefulSet,
        WKind::DaemonSet,
        WKind::CronJob,
        WKind::Rollout,
        WKind::Job,
    ];

    fn common(self) -> Option<Kind> {
        match self {
            WKind::Deployment => Some(Kind::Deployment),
            WKind::StatefulSet => Some(Kind::StatefulSet),
            WKind::DaemonSet => Some(Kind::DaemonSet),
            WKind::CronJob => Some(Kind::CronJob),
            WKind::Rollout => Some(Kind::Rollout),
            WKind::Job => None,
        }
    }

    fn resource(self) -> ApiResource {
        match self.common() {
            Some(k) => k.resource(),
            None => ApiResource::erase::<Job>(&()),
        }
    }

    fn template(self) -> &'static str {
        match self {
            WKind::CronJob => "/spec/jobTemplate/spec/template",
            _ => "/spec/template",
        }
    }

    fn has_revisions(self) -> bool {
        self.common().is_some_and(Kind::has_revisions)
    }

    /// The resource as kubectl names it.
    fn kubectl(self) -> &'static str {
        match self {
            WKind::Deployment => "deployment",
            WKind::StatefulSet => "statefulset",
            WKind::DaemonSet => "daemonset",
            WKind::CronJob => "cronjob",
            WKind::Rollout => "rollouts.argoproj.io",
            WKind::Job => "job",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auto {
    /// No `auto` annotation: opted in by `--auto-reload-all`.
    Unset,
    On,
    Off,
}

#[derive(Clone, Copy, Debug)]
enum Style {
    EnvFrom { optional: bool },
    KeyRef(&'static str),
    Items(&'static [&'static str]),
}

/// One reference of a pod spec to a config.
#[derive(Clone, Copy, Debug)]
struct Use {
    config: &'static str,
    secret: bool,
    style: Style,
}

impl Use {
    fn consumes(&self, key: &str) -> bool {
        match self.style {
            Style::EnvFrom { .. } => true,
            Style::KeyRef(k) => k == key,
            Style::Items(keys) => keys.contains(&key),
        }
    }
}

fn cm_from(config: &'static str) -> Use {
    Use {
        config,
        secret: false,
        style: Style::EnvFrom { optional: false },
    }
}

fn secret_from(config: &'static str) -> Use {
    Use {
        config,
        secret: true,
        style: Style::EnvFrom { optional: false },
    }
}

/// A workload of the soak (the same eleven in each namespace).
struct Spec {
    kind: WKind,
    name: &'static str,
    replicas: i32,
    auto: Auto,
    search: bool,
    reload_list: Option<&'static str>,
    restart_strategy: bool,
    uses: Vec<Use>,
}

fn spec(kind: WKind, name: &'static str, replicas: i32, auto: Auto, uses: Vec<Use>) -> Spec {
    Spec {
        kind,
        name,
        replicas,
        auto,
        search: false,
        reload_list: None,
        restart_strategy: false,
        uses,
    }
}

fn specs() -> Vec<Spec> {
    use WKind::{CronJob, DaemonSet, Deployment, Rollout, StatefulSet};
    vec![
        spec(
            Deployment,
            "web",
            2,
            Auto::Unset,
            vec![
                cm_from("app"),
                secret_from("creds"),
                Use {
                    config: "late",
                    secret: false,
                    style: Style::EnvFrom { optional: true },
                },
            ],
        ),
        spec(
            Deployment,
            "api",
            1,
            Auto::On,
            vec![Use {
                config: "app",
                secret: false,
                style: Style::KeyRef("a"),
            }],
        ),
        Spec {
            search: true,
            ..spec(
                Deployment,
                "search",
                1,
                Auto::Off,
                vec![cm_from("feature"), cm_from("app")],
            )
        },
        Spec {
            reload_list: Some("listed"),
            ..spec(Deployment, "lister", 1, Auto::Off, vec![cm_from("app")])
        },
        spec(Deployment, "optout", 1, Auto::Off, vec![cm_from("app")]),
        spec(
            StatefulSet,
            "db",
            2,
            Auto::Unset,
            vec![
                Use {
                    config: "app",
                    secret: false,
                    style: Style::Items(&["b"]),
                },
                Use {
                    config: "creds",
                    secret: true,
                    style: Style::KeyRef("user"),
                },
            ],
        ),
        spec(
            DaemonSet,
            "agent",
            1,
            Auto::On,
            vec![Use {
                config: "creds",
                secret: true,
                style: Style::KeyRef("pass"),
            }],
        ),
        spec(CronJob, "nightly", 1, Auto::Unset, vec![cm_from("app")]),
        spec(Rollout, "canary", 1, Auto::On, vec![secret_from("creds")]),
        Spec {
            restart_strategy: true,
            ..spec(Rollout, "restarter", 1, Auto::On, vec![cm_from("app")])
        },
        spec(WKind::Job, "migrate", 1, Auto::On, vec![cm_from("app")]),
    ]
}

impl Spec {
    fn annotations(&self) -> Value {
        let mut a = serde_json::Map::new();
        match self.auto {
            Auto::Unset => {}
            Auto::On => {
                a.insert("reloader.stakater.com/auto".into(), json!("true"));
            }
            Auto::Off => {
                a.insert("reloader.stakater.com/auto".into(), json!("false"));
            }
        }
        if self.search {
            a.insert("reloader.stakater.com/search".into(), json!("true"));
        }
        if let Some(list) = self.reload_list {
            a.insert("configmap.reloader.stakater.com/reload".into(), json!(list));
        }
        if self.restart_strategy {
            a.insert(
                "reloader.stakater.com/rollout-strategy".into(),
                json!("restart"),
            );
        }
        Value::Object(a)
    }

    fn opted_in(&self) -> bool {
        self.auto != Auto::Off || self.search || self.reload_list.is_some()
    }

    /// Pod template stamp, or (restart Rollouts) the object's.
    fn stamp_pointer(&self) -> String {
        if self.restart_strategy {
            "/metadata/annotations".into()
        } else {
            format!("{}/metadata/annotations", self.kind.template())
        }
    }

    fn pod_spec(&self, revision: Option<u64>) -> Value {
        let (mut env, mut env_from, mut volumes, mut mounts) = (vec![], vec![], vec![], vec![]);
        for u in &self.uses {
            match u.style {
                Style::EnvFrom { optional } => {
                    let r = if u.secret {
                        "secretRef"
                    } else {
                        "configMapRef"
                    };
                    env_from.push(json!({r: {"name": u.config, "optional": optional}}));
                }
                Style::KeyRef(key) => {
                    let r = if u.secret {
                        "secretKeyRef"
                    } else {
                        "configMapKeyRef"
                    };
                    env.push(json!({
                        "name": format!("{}_{}", u.config, key).to_uppercase(),
                        "valueFrom": {r: {"name": u.config, "key": key}}
                    }));
                }
                Style::Items(keys) => {
                    let items: Vec<Value> =
                        keys.iter().map(|k| json!({"key": k, "path": k})).collect();
                    volumes.push(if u.secret {
                        json!({"name": u.config, "secret": {"secretName": u.config, "items": items}})
                    } else {
                        json!({"name": u.config, "configMap": {"name": u.config, "items": items}})
                    });
                    mounts
                        .push(json!({"name": u.config, "mountPath": format!("/cfg/{}", u.config)}));
                }
            }
        }
        if let Some(r) = revision {
            env.push(json!({"name": "SOAK_REVISION", "value": r.to_string()}));
        }
        let mut container = json!({"name": "app", "image": IMAGE});
        for (k, v) in [
            ("env", env),
            ("envFrom", env_from),
            ("volumeMounts", mounts),
        ] {
            if !v.is_empty() {
                container[k] = Value::Array(v);
            }
        }
        let mut spec = json!({"containers": [container]});
        if !volumes.is_empty() {
            spec["volumes"] = Value::Array(volumes);
        }
        spec
    }

    /// The manifest as kept "in Git": `revision` adds an environment variable (a template change).
    fn manifest(&self, run: &str, revision: Option<u64>) -> Value {
        let pod_spec = self.pod_spec(revision);
        let mut m = match self.kind.common() {
            Some(kind) => workload(kind, self.name, self.replicas, self.annotations(), pod_spec),
            None => {
                let mut template =
                    json!({"metadata": {"labels": {"app": self.name}}, "spec": pod_spec});
                template["spec"]["restartPolicy"] = json!("Never");
                json!({
                    "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": self.name, "annotations": self.annotations()},
                    "spec": {"backoffLimit": 0, "template": template}
                })
            }
        };
        m["metadata"]["labels"] = json!({RUN_LABEL: run});
        m.pointer_mut(&format!("{}/metadata/labels", self.kind.template()))
            .expect("template labels")[RUN_LABEL] = json!(run);
        if self.kind.has_revisions() {
            // Every revision stays countable for the whole run.
            m["spec"]["revisionHistoryLimit"] = json!(1000);
        }
        m
    }
}

/// What the model knows of one config.
#[derive(Clone, Debug)]
struct ConfigState {
    secret: bool,
    exists: bool,
    data: BTreeMap<String, String>,
    ignore: bool,
    matched: bool,
}

fn initial_configs() -> BTreeMap<&'static str, ConfigState> {
    let c = |secret: bool, exists: bool, data: &[(&str, &str)], matched: bool| ConfigState {
        secret,
        exists,
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ignore: false,
        matched,
    };
    BTreeMap::from([
        (
            "app",
            c(
                false,
                true,
                &[("a", "a0"), ("b", "b0"), ("unused", "u0")],
                false,
            ),
        ),
        (
            "creds",
            c(true, true, &[("user", "u0"), ("pass", "p0")], false),
        ),
        ("feature", c(false, true, &[("flag", "f0")], true)),
        ("listed", c(false, true, &[("x", "x0")], false)),
        ("late", c(false, false, &[("l", "l0")], false)),
        ("extra", c(true, false, &[("e", "e0")], false)),
    ])
}

/// The decision rule for the soak's layout, at key precision, with the config as it is after
/// the change (`--auto-reload-all` is on).
fn rolls_for(spec: &Spec, name: &str, cfg: &ConfigState, changed: &BTreeSet<String>) -> bool {
    if cfg.ignore || changed.is_empty() {
        return false;
    }
    if !cfg.secret && spec.reload_list == Some(name) {
        return true;
    }
    let Some(u) = spec
        .uses
        .iter()
        .find(|u| u.config == name && u.secret == cfg.secret)
    else {
        return false;
    };
    if !changed.iter().any(|k| u.consumes(k)) {
        return false;
    }
    if spec.search && cfg.matched {
        return true;
    }
    match spec.auto {
        Auto::On => true,
        Auto::Unset => spec.kind != WKind::Job,
        Auto::Off => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Watching the workloads: every stamp, template, restartAt and accounted hash they carried

#[derive(Clone, Debug, PartialEq)]
struct Look {
    uid: String,
    template_stamp: Option<String>,
    object_stamp: Option<String>,
    restart_at: Option<String>,
    /// The template without the stamp, hashed.
    template: u64,
    accounted: Option<String>,
}

fn look_of(kind: WKind, o: &Value) -> Look {
    let text = |p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let mut template = o.pointer(kind.template()).cloned().unwrap_or(Value::Null);
    if let Some(a) = template
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(STAMP);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut h);
    Look {
        uid: text("/metadata/uid").unwrap_or_default(),
        template_stamp: o
            .pointer(&format!("{}/metadata/annotations", kind.template()))
            .and_then(|a| a.get(STAMP))
            .and_then(Value::as_str)
            .map(str::to_owned),
        object_stamp: o
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(STAMP))
            .and_then(Value::as_str)
            .map(str::to_owned),
        restart_at: text("/spec/restartAt"),
        template: h.finish(),
        accounted: o
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ACCOUNTED))
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

struct Seen {
    at: Instant,
    look: Look,
}

type WorkloadKey = (WKind, String, String);

/// Every distinct look of every soak workload, in the order the watches delivered them.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<HashMap<WorkloadKey, Vec<Seen>>>>);

impl Recorder {
    fn spawn(&self, client: &kube::Client, kind: WKind, run: &str) -> tokio::task::JoinHandle<()> {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource());
        let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
        let me = self.clone();
        tokio::spawn(async move {
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                let Ok(obj) = item else { continue };
                let key = (kind, obj.namespace().unwrap_or_default(), obj.name_any());
                let look = look_of(kind, &serde_json::to_value(&obj).unwrap());
                let mut all = me.0.lock();
                let seen = all.entry(key).or_default();
                if seen.last().is_none_or(|s| s.look != look) {
                    seen.push(Seen {
                        at: Instant::now(),
                        look,
                    });
                }
            }
        })
    }

    /// Rolls seen in `(since, until]` of the object with `uid`: changes of its template (stamp
    /// or content), of its object stamp, or to a new `restartAt`. For a Job: recreations.
    fn rolls(&self, key: &WorkloadKey, since: Instant, until: Instant, kind: WKind) -> usize {
        let all = self.0.lock();
        let Some(seen) = all.get(key) else { return 0 };
        let mut rolls = 0;
        for pair in seen.windows(2) {
            let (before, after) = (&pair[0].look, &pair[1].look);
            if pair[1].at <= since || pair[1].at > until {
                continue;
            }
            let rolled = if kind == WKind::Job {
                before.uid != after.uid
            } else {
                before.uid == after.uid
                    && (before.template_stamp != after.template_stamp
                        || before.template != after.template
                        || before.object_stamp != after.object_stamp
                        || (after.restart_at.is_some() && before.restart_at != after.restart_at))
            };
            rolls += usize::from(rolled);
        }
        rolls
    }

    /// Whether kreload rolled the workload after `since`: its stamp moved (a restart Rollout:
    /// a new `restartAt`), or, for a Job, it was created again.
    fn rolled_since(
        &self,
        key: &WorkloadKey,
        since: Instant,
        kind: WKind,
        on_object: bool,
    ) -> bool {
        let all = self.0.lock();
        let Some(seen) = all.get(key) else {
            return false;
        };
        seen.windows(2).any(|pair| {
            let (before, after) = (&pair[0].look, &pair[1].look);
            pair[1].at > since
                && if kind == WKind::Job {
                    before.uid != after.uid
                } else if on_object {
                    before.uid == after.uid
                        && after.restart_at.is_some()
                        && before.restart_at != after.restart_at
                } else {
                    before.uid == after.uid && before.template_stamp != after.template_stamp
                }
        })
    }

    /// Every accounted hash the object with `uid` carried.
    fn accounted(&self, key: &WorkloadKey, uid: &str) -> BTreeSet<String> {
        let all = self.0.lock();
        all.get(key)
            .into_iter()
            .flatten()
            .filter(|s| s.look.uid == uid)
            .filter_map(|s| s.look.accounted.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// kreload in HA

struct Slot {
    name: char,
    identity: String,
    running: Option<Running>,
    starting: Option<tokio::task::JoinHandle<Running>>,
}

fn renewed_after(renewed: Option<String>, since: time::OffsetDateTime) -> bool {
    renewed
        .and_then(|r| {
            time::OffsetDateTime::parse(&r, &time::format_description::well_known::Rfc3339).ok()
        })
        .is_some_and(|r| r > since)
}

struct Ha {
    lease: String,
    namespaces: String,
    selector: String,
    webhook_prefix: String,
    slots: Vec<Slot>,
    starts: u32,
    logs: Vec<String>,
}

impl Ha {
    fn args(&self, slot: &Slot) -> Vec<String> {
        [
            "--namespaces",
            &self.namespaces,
            "--namespace-selector",
            &self.selector,
            "--webhook-config-name",
            &format!("{}-{}", self.webhook_prefix, slot.name),
            "--enable-ha",
            "--lease-name",
            &self.lease,
            "--lease-duration",
            LEASE_DURATION,
            "--identity",
            &slot.identity,
            "--auto-reload-all",
            "--log-level",
            "debug",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Starts slot `i` (again), in the background: the driver goes on meanwhile.
    fn spawn_start(&mut self, i: usize, new_identity: bool) {
        self.starts += 1;
        if new_identity {
            self.slots[i].identity =
                format!("{}-{}{}", self.lease, self.slots[i].name, self.starts);
        }
        let args = self.args(&self.slots[i]);
        self.slots[i].starting = Some(tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Running(Kreload::start(&args))
        }));
    }

    async fn join_starts(&mut self) {
        for slot in &mut self.slots {
            if let Some(h) = slot.starting.take() {
                let r = h.await.expect("kreload start");
                self.logs.push(r.log.display().to_string());
                slot.running = Some(r);
            }
        }
    }

    fn slot_of(&self, identity: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.identity == identity && s.running.is_some())
    }
}

async fn lease_of(client: &kube::Client, name: &str) -> Option<(String, Option<String>)> {
    let l = Api::<Lease>::namespaced(client.clone(), "kreload")
        .get_opt(name)
        .await
        .ok()??;
    let spec = l.spec?;
    let renewed = spec.renew_time.map(|t| {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap_or("")
            .to_owned()
    });
    Some((spec.holder_identity?, renewed))
}

// ---------------------------------------------------------------------------------------------
// The ledger and the driver

#[derive(Clone, Debug)]
struct Snap {
    stamp: Option<String>,
    accounted: Option<String>,
    revisions: usize,
    at: Instant,
}

/// One workload in one namespace and what the current round owes it.
struct Tracked {
    ns: usize,
    spec: usize,
    /// Consumed-data changes this round (each must be reflected by a roll).
    must: Vec<String>,
    /// When the last of them was made.
    last_must: Option<Instant>,
    /// When the driver last created it again.
    recreated_at: Option<Instant>,
    /// Operations of the driver this round that changed the template (each may roll it).
    user: u32,
    /// A consumed-data change made while the namespace was out of the selector, not yet
    /// reflected: it may roll the workload at any later point.
    optional: bool,
    /// The driver deleted and created it again this round.
    recreated: bool,
    /// Stuck in deletion: no longer tracked.
    lost: bool,
    last: Snap,
}

#[derive(Default, Debug)]
struct Counts {
    ops: u64,
    rolls_expected: u64,
    rolls_seen: u64,
    unexplained: u64,
    missed: u64,
    refused: u64,
    stuck: u64,
    stale_pods: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Data,
    ConfigAnnotate,
    ConfigLabel,
    ConfigCreateDelete,
    ConfigRecreate,
    Label,
    Annotate,
    Scale,
    Apply,
    ServerSideApply,
    Replace,
    RolloutRestart,
    TemplateApply,
    DeleteRecreate,
    Finalizer,
    TtlJob,
    KillLeader,
    RestartReplica,
}

const WEIGHTS: &[(Op, u32)] = &[
    (Op::Data, 22),
    (Op::ConfigAnnotate, 10),
    (Op::ConfigLabel, 3),
    (Op::ConfigCreateDelete, 6),
    (Op::ConfigRecreate, 2),
    (Op::Label, 7),
    (Op::Annotate, 7),
    (Op::Scale, 5),
    (Op::Apply, 6),
    (Op::ServerSideApply, 6),
    (Op::Replace, 3),
    (Op::RolloutRestart, 4),
    (Op::TemplateApply, 3),
    (Op::DeleteRecreate, 4),
    (Op::Finalizer, 3),
    (Op::TtlJob, 4),
    (Op::KillLeader, 3),
    (Op::RestartReplica, 2),
];

#[derive(Clone, Copy, Debug)]
enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    fn cascade(self) -> &'static str {
        match self {
            Propagation::Background => "background",
            Propagation::Foreground => "foreground",
            Propagation::Orphan => "orphan",
        }
    }
}

struct Soak {
    client: kube::Client,
    run: String,
    rng: StdRng,
    nss: Vec<TestNamespace>,
    in_scope: Vec<bool>,
    configs: Vec<BTreeMap<&'static str, ConfigState>>,
    specs: Vec<Spec>,
    tracked: Vec<Tracked>,
    recorder: Recorder,
    ha: Ha,
    counts: Counts,
    findings: Vec<String>,
    op_no: u64,
    last_op_end: Instant,
    /// When the driver last killed or restarted a replica (a takeover may follow).
    leader_event: Option<(Instant, time::OffsetDateTime)>,
    /// Objects already counted as stuck (by uid).
    stuck_uids: BTreeSet<String>,
}

fn transient_kubectl(err: &str) -> bool {
    [
        "Conflict",
        "the object has been modified",
        "TooManyRequests",
        "imeout",
        "connection refused",
        "ServiceUnavailable",
        "InternalError",
        "etcdserver",
        "EOF",
        "connection reset",
    ]
    .iter()
    .any(|t| err.contains(t))
}

fn transient_api(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 409 | 429 | 500 | 502 | 503 | 504),
        _ => true,
    }
}

impl Soak {
    fn key(&self, t: &Tracked) -> WorkloadKey {
        let s = &self.specs[t.spec];
        (s.kind, self.nss[t.ns].name.clone(), s.name.to_owned())
    }

    fn api(&self, ns: usize, kind: WKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.nss[ns].name, &kind.resource())
    }

    async fn get(&self, ns: usize, kind: WKind, name: &str) -> Option<Value> {
        for _ in 0..5 {
            match self.api(ns, kind).get_opt(name).await {
                Ok(o) => return o.map(|o| serde_json::to_value(o).unwrap()),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        None
    }

    fn log(&self, line: String) {
        eprintln!("[soak {:>4}] {line}", self.op_no);
    }

    fn refuse(&mut self, what: &str, why: &str) {
        self.counts.refused += 1;
        let line = format!("REFUSED op {}: {what}: {}", self.op_no, why.trim());
        eprintln!("{line}");
        self.findings.push(line);
    }

    /// An ordinary write through kubectl; transient failures are retried, anything else is a
    /// refusal.
    async fn kubectl_write(
        &mut self,
        what: &str,
        args: Vec<String>,
        stdin: Option<String>,
    ) -> bool {
        for attempt in 0..6 {
            let (a, s) = (args.clone(), stdin.clone());
            let (ok, _, err) = tokio::task::spawn_blocking(move || {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                kubectl(&a, s.as_deref())
            })
            .await
            .unwrap();
            if ok {
                return true;
            }
            if transient_kubectl(&err) && attempt < 5 {
                tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
                continue;
            }
            self.refuse(what, &err);
            return false;
        }
        false
    }

    /// An ordinary write through the API; transient failures are retried.
    async fn api_write<F, Fut, T>(&mut self, what: &str, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        for attempt in 0..6u64 {
            match f().await {
                Ok(v) => return Some(v),
                Err(e) if transient_api(&e) && attempt < 5 => {
                    tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
                }
                Err(e) => {
                    self.refuse(what, &e.to_string());
                    return None;
                }
            }
        }
        None
    }

    fn pick_ns(&mut self, in_scope_only: bool) -> Option<usize> {
        let choices: Vec<usize> = (0..self.nss.len())
            .filter(|&i| !in_scope_only || self.in_scope[i])
            .collect();
        (!choices.is_empty()).then(|| choices[self.rng.random_range(0..choices.len())])
    }

    /// A tracked workload (not lost), maybe of the given kinds, maybe only in namespaces in scope.
    fn pick_workload(&mut self, kinds: &[WKind], in_scope_only: bool) -> Option<usize> {
        let choices: Vec<usize> = (0..self.tracked.len())
            .filter(|&i| {
                let t = &self.tracked[i];
                !t.lost
                    && (!in_scope_only || self.in_scope[t.ns])
                    && (kinds.is_empty() || kinds.contains(&self.specs[t.spec].kind))
            })
            .collect();
        (!choices.is_empty()).then(|| choices[self.rng.random_range(0..choices.len())])
    }

    fn wname(&self, i: usize) -> String {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        format!("{}/{}/{}", self.nss[t.ns].name, s.kind.kubectl(), s.name)
    }

    // -----------------------------------------------------------------------------------------
    // Config operations

    /// A config's data changes: every workload whose trigger set consumes a changed key must roll
    /// (or may, when the namespace is out of the selector).
    async fn op_data(&mut self) -> Option<String> {
        let ns = self.pick_ns(false)?;
        let existing: Vec<&'static str> = self.configs[ns]
            .iter()
            .filter(|(_, c)| c.exists)
            .map(|(n, _)| *n)
            .collect();
        let name = existing[self.rng.random_range(0..existing.len())];
        let value = format!("v{}", self.op_no);
        let cfg = self.configs[ns][name].clone();
        let keys: Vec<String> = cfg.data.keys().cloned().collect();
        let roll = self.rng.random_range(0..100);
        let (key, patch_value) = if roll < 15 {
            (format!("k{}", self.op_no), Some(value.clone()))
        } else if roll < 27 && keys.len() > 1 {
            (keys[self.rng.random_range(0..keys.len())].clone(), None)
        } else {
            (
                keys[self.rng.random_range(0..keys.len())].clone(),
                Some(value.clone()),
            )
        };
        let secret = cfg.secret;
        let field = if secret { "stringData" } else { "data" };
        let patch = if patch_value.is_none() && secret {
            json!({"data": {&key: null}})
        } else {
            json!({field: {&key: patch_value}})
        };
        let nsname = self.nss[ns].name.clone();
        let client = self.client.clone();
        let what = format!("data {nsname}/{name} {key}={patch_value:?}");
        let ok = self
            .api_write(&what, || {
                let (client, nsname, patch) = (client.clone(), nsname.clone(), patch.clone());
                async move {
                    let pp = PatchParams::default();
                    if secret {
                        Api::<Secret>::namespaced(client, &nsname)
                            .patch(name, &pp, &Patch::Merge(&patch))
                            .await
                            .map(|_| ())
                    } else {
                        Api::<ConfigMap>::namespaced(client, &nsname)
                            .patch(name, &pp, &Patch::Merge(&patch))
                            .await
                            .map(|_| ())
                    }
                }
            })
            .await
            .is_some();
        if !ok {
            return Some(what);
        }
        let state = self.configs[ns].get_mut(name).unwrap();
        match &patch_value {
            Some(v) => {
                state.data.insert(key.clone(), v.clone());
            }
            None => {
                state.data.remove(&key);
            }
        }
        let changed = BTreeSet::from([key]);
        let state = self.configs[ns][name].clone();
        let mut affected = Vec::new();
        for i in 0..self.tracked.len() {
            let t = &self.tracked[i];
            if t.ns != ns || t.lost || !rolls_for(&self.specs[t.spec], name, &state, &changed) {
                continue;
            }
            affected.push(self.specs[t.spec].name);
            let in_scope = self.in_scope[ns];
            let t = &mut self.tracked[i];
            if in_scope {
                t.must.push(format!("op {} {what}", self.op_no));
                t.last_must = Some(Instant::now());
            } else {
                t.optional = true;
            }
        }
        let scope = if self.in_scope[ns] {
            "must roll"
        } else {
            "namespace out of scope, may roll"
        };
        Some(format!("{what}: {scope}: {affected:?}"))
    }

    async fn patch_config_meta(&mut self, ns: usize, name: &str, patch: Value, what: &str) -> bool {
        let secret = self.configs[ns][name].secret;
        let (client, nsname) = (self.client.clone(), self.nss[ns].name.clone());
        let name = name.to_owned();
        self.api_write(what, || {
            let (client, nsname, patch, name) =
                (client.clone(), nsname.clone(), patch.clone(), name.clone());
            async move {
                let pp = PatchParams::default();
                if secret {
                    Api::<Secret>::namespaced(client, &nsname)
                        .patch(&name, &pp, &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                } else {
                    Api::<ConfigMap>::namespaced(client, &nsname)
                        .patch(&name, &pp, &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
            }
        })
        .await
        .is_some()
    }

    /// `ignore` or `match` flipped, or an unrelated annotation: never a roll.
    async fn op_config_annotate(&mut self) -> Option<String> {
        let ns = self.pick_ns(false)?;
        let existing: Vec<&'static str> = self.configs[ns]
            .iter()
            .filter(|(_, c)| c.exists)
            .map(|(n, _)| *n)
            .collect();
        let name = existing[self.rng.random_range(0..existing.len())];
        let state = self.configs[ns][name].clone();
        let r = self.rng.random_range(0..10);
        let (patch, what) = if r < 4 {
            let v = !state.ignore;
            (
                json!({"metadata": {"annotations": {"reloader.stakater.com/ignore": if v { Some("true") } else { None }}}}),
                format!("ignore={v}"),
            )
        } else if r < 8 {
            let v = !state.matched;
            (
                json!({"metadata": {"annotations": {"reloader.stakater.com/match": if v { Some("true") } else { None }}}}),
                format!("match={v}"),
            )
        } else {
            (
                json!({"metadata": {"annotations": {"soak.kreload.dev/note": format!("n{}", self.op_no)}}}),
                "an unrelated annotation".to_owned(),
            )
        };
        let what = format!("annotate {}/{name}: {what}", self.nss[ns].name);
        if self.patch_config_meta(ns, name, patch, &what).await {
            let s = self.configs[ns].get_mut(name).unwrap();
            if r < 4 {
                s.ignore = !s.ignore;
            } else if r < 8 {
                s.matched = !s.matched;
            }
        }
        Some(what)
    }

    async fn op_config_label(&mut self) -> Option<String> {
        let ns = self.pick_ns(false)?;
        let existing: Vec<&'static str> = self.configs[ns]
            .iter()
            .filter(|(_, c)| c.exists)
            .map(|(n, _)| *n)
            .collect();
        let name = existing[self.rng.random_range(0..existing.len())];
        let what = format!("label {}/{name}", self.nss[ns].name);
        let patch = json!({"metadata": {"labels": {"soak.kreload.dev/touched": format!("t{}", self.op_no)}}});
        self.patch_config_meta(ns, name, patch, &what).await;
        Some(what)
    }

    fn config_object(&self, ns: usize, name: &str) -> Value {
        let s = &self.configs[ns][name];
        let mut annotations = serde_json::Map::new();
        if s.ignore {
            annotations.insert("reloader.stakater.com/ignore".into(), json!("true"));
        }
        if s.matched {
            annotations.insert("reloader.stakater.com/match".into(), json!("true"));
        }
        let meta =
            json!({"name": name, "namespace": self.nss[ns].name, "annotations": annotations});
        if s.secret {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": s.data})
        } else {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": s.data})
        }
    }

    async fn create_config(&mut self, ns: usize, name: &str, what: &str) -> bool {
        let obj = self.config_object(ns, name);
        let secret = self.configs[ns][name].secret;
        let (client, nsname) = (self.client.clone(), self.nss[ns].name.clone());
        self.api_write(what, || {
            let (client, nsname, obj) = (client.clone(), nsname.clone(), obj.clone());
            async move {
                let pp = PostParams::default();
                if secret {
                    Api::<Secret>::namespaced(client, &nsname)
                        .create(&pp, &serde_json::from_value(obj).unwrap())
                        .await
                        .map(|_| ())
                } else {
                    Api::<ConfigMap>::namespaced(client, &nsname)
                        .create(&pp, &serde_json::from_value(obj).unwrap())
                        .await
                        .map(|_| ())
                }
            }
        })
        .await
        .is_some()
    }

    async fn delete_config(&mut self, ns: usize, name: &str, what: &str) -> bool {
        let secret = self.configs[ns][name].secret;
        let (client, nsname) = (self.client.clone(), self.nss[ns].name.clone());
        let name = name.to_owned();
        let ok = self
            .api_write(what, || {
                let (client, nsname, name) = (client.clone(), nsname.clone(), name.clone());
                async move {
                    let dp = DeleteParams::default();
                    if secret {
                        Api::<Secret>::namespaced(client, &nsname)
                            .delete(&name, &dp)
                            .await
                            .map(|_| ())
                    } else {
                        Api::<ConfigMap>::namespaced(client, &nsname)
                            .delete(&name, &dp)
                            .await
                            .map(|_| ())
                    }
                }
            })
            .await
            .is_some();
        // Configs have no finalizers: gone at once. Wait for it so a create cannot race it.
        let (client, nsname) = (self.client.clone(), self.nss[ns].name.clone());
        let name2 = name.clone();
        try_wait_for(Duration::from_secs(30), || {
            let (client, nsname, name) = (client.clone(), nsname.clone(), name2.clone());
            async move {
                let gone = if secret {
                    Api::<Secret>::namespaced(client, &nsname)
                        .get_opt(&name)
                        .await
                        .ok()?
                        .is_none()
                } else {
                    Api::<ConfigMap>::namespaced(client, &nsname)
                        .get_opt(&name)
                        .await
                        .ok()?
                        .is_none()
                };
                gone.then_some(())
            }
        })
        .await;
        ok
    }

    /// Creates or deletes a config (without `--reload-on-create`/`--reload-on-delete`: no roll).
    async fn op_config_create_delete(&mut self) -> Option<String> {
        let ns = self.pick_ns(false)?;
        let names = ["late", "extra", "listed"];
        let name = names[self.rng.random_range(0..names.len())];
        let exists = self.configs[ns][name].exists;
        let what = format!(
            "{} {}/{name}",
            if exists { "delete" } else { "create" },
            self.nss[ns].name
        );
        if exists {
            if self.delete_config(ns, name, &what).await {
                self.configs[ns].get_mut(name).unwrap().exists = false;
            }
        } else {
            // A config comes back with new data (and its annotations as last seen).
            let v = format!("c{}", self.op_no);
            for value in self.configs[ns].get_mut(name).unwrap().data.values_mut() {
                *value = v.clone();
            }
            if self.create_config(ns, name, &what).await {
                self.configs[ns].get_mut(name).unwrap().exists = true;
            }
        }
        Some(what)
    }

    /// Deletes a consumed config and creates it again with the same content (a forced replace).
    async fn op_config_recreate(&mut self) -> Option<String> {
        let ns = self.pick_ns(false)?;
        let names = ["app", "creds"];
        let name = names[self.rng.random_range(0..names.len())];
        let what = format!("recreate {}/{name}", self.nss[ns].name);
        if self.delete_config(ns, name, &what).await {
            self.create_config(ns, name, &what).await;
        }
        Some(what)
    }

    // -----------------------------------------------------------------------------------------
    // Workload operations

    async fn template_digest(&self, i: usize) -> Option<(String, u64)> {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        let o = self.get(t.ns, s.kind, s.name).await?;
        let l = look_of(s.kind, &o);
        Some((l.uid, l.template))
    }

    /// Runs a write that may change the template; counts it when it did.
    async fn template_write(
        &mut self,
        i: usize,
        what: &str,
        args: Vec<String>,
        stdin: Option<String>,
    ) {
        let before = self.template_digest(i).await;
        if self.kubectl_write(what, args, stdin).await {
            let after = self.template_digest(i).await;
            if before.is_some() && after.is_some() && before != after {
                self.tracked[i].user += 1;
                self.log(format!("{what}: changed the template"));
            }
        }
    }

    fn ns_args(&self, i: usize) -> Vec<String> {
        vec!["-n".into(), self.nss[self.tracked[i].ns].name.clone()]
    }

    fn target(&self, i: usize) -> String {
        let s = &self.specs[self.tracked[i].spec];
        format!("{}/{}", s.kind.kubectl(), s.name)
    }

    async fn op_label(&mut self, annotate: bool) -> Option<String> {
        let i = self.pick_workload(&[], false)?;
        let verb = if annotate { "annotate" } else { "label" };
        let what = format!("{verb} {}", self.wname(i));
        let mut args = vec![verb.to_owned(), self.target(i), "--overwrite".into()];
        args.push(format!("soak.kreload.dev/touched=t{}", self.op_no));
        args.extend(self.ns_args(i));
        self.kubectl_write(&what, args, None).await;
        Some(what)
    }

    async fn op_scale(&mut self) -> Option<String> {
        let i = self.pick_workload(&[WKind::Deployment, WKind::StatefulSet], true)?;
        let n = self.rng.random_range(1..=3);
        let what = format!("scale {} to {n}", self.wname(i));
        let mut args = vec![
            "scale".to_owned(),
            self.target(i),
            format!("--replicas={n}"),
        ];
        args.extend(self.ns_args(i));
        self.kubectl_write(&what, args, None).await;
        Some(what)
    }

    fn manifest_text(&self, i: usize, revision: Option<u64>) -> Value {
        let t = &self.tracked[i];
        let mut m = self.specs[t.spec].manifest(&self.run, revision);
        m["metadata"]["namespace"] = json!(self.nss[t.ns].name);
        m
    }

    /// `kubectl apply` (client-side) of the original manifest, which has no stamp.
    async fn op_apply(&mut self) -> Option<String> {
        let i = self.pick_workload(&[], true)?;
        let what = format!("kubectl apply {}", self.wname(i));
        let m = self.manifest_text(i, None).to_string();
        self.template_write(
            i,
            &what,
            vec!["apply".into(), "-f".into(), "-".into()],
            Some(m),
        )
        .await;
        Some(what)
    }

    /// Server-side apply of the original manifest (forced, as GitOps controllers do), with or
    /// without the stamp it carries now (with it: guarded by the resourceVersion read).
    async fn op_server_side_apply(&mut self) -> Option<String> {
        let i = self.pick_workload(&[], true)?;
        let with_stamp = self.rng.random_bool(0.5) && self.specs[self.tracked[i].spec].opted_in();
        let what = format!(
            "server-side apply {} ({} the stamp)",
            self.wname(i),
            if with_stamp { "with" } else { "without" }
        );
        let args: Vec<String> = [
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=soak-gitops",
            "-f",
            "-",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut m = self.manifest_text(i, None);
        if with_stamp {
            let t = &self.tracked[i];
            let s = &self.specs[t.spec];
            let Some(live) = self.get(t.ns, s.kind, s.name).await else {
                return Some(what);
            };
            let pointer = s.stamp_pointer();
            let Some(stamp) = live.pointer(&pointer).and_then(|a| a.get(STAMP)).cloned() else {
                return Some(format!("{what}: skipped, no stamp"));
            };
            let annotations = m.pointer_mut(&pointer.replace("/annotations", "")).unwrap();
            if !annotations["annotations"].is_object() {
                annotations["annotations"] = json!({});
            }
            annotations["annotations"][STAMP] = stamp;
            m["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
        }
        self.template_write(i, &what, args, Some(m.to_string()))
            .await;
        Some(what)
    }

    /// `kubectl replace` of the original manifest (drops everything else: labels, the stamp,
    /// the accounted hash, a restart's annotation). Not for Jobs (their generated selector is
    /// immutable).
    async fn op_replace(&mut self) -> Option<String> {
        let kinds = [
            WKind::Deployment,
            WKind::StatefulSet,
            WKind::DaemonSet,
            WKind::CronJob,
            WKind::Rollout,
        ];
        let i = self.pick_workload(&kinds, true)?;
        let what = format!("kubectl replace {}", self.wname(i));
        let m = self.manifest_text(i, None).to_string();
        self.template_write(
            i,
            &what,
            vec!["replace".into(), "-f".into(), "-".into()],
            Some(m),
        )
        .await;
        Some(what)
    }

    async fn op_rollout_restart(&mut self) -> Option<String> {
        let kinds = [WKind::Deployment, WKind::StatefulSet, WKind::DaemonSet];
        let i = self.pick_workload(&kinds, true)?;
        let what = format!("kubectl rollout restart {}", self.wname(i));
        let mut args = vec!["rollout".to_owned(), "restart".into(), self.target(i)];
        args.extend(self.ns_args(i));
        self.template_write(i, &what, args, None).await;
        Some(what)
    }

    /// A manifest change in Git: a new environment variable in the template (a roll of the
    /// user's own). Not for Jobs (immutable template).
    async fn op_template_apply(&mut self) -> Option<String> {
        let kinds = [
            WKind::Deployment,
            WKind::StatefulSet,
            WKind::DaemonSet,
            WKind::CronJob,
            WKind::Rollout,
        ];
        let i = self.pick_workload(&kinds, true)?;
        let what = format!("kubectl apply {} with a template change", self.wname(i));
        let m = self.manifest_text(i, Some(self.op_no)).to_string();
        self.template_write(
            i,
            &what,
            vec!["apply".into(), "-f".into(), "-".into()],
            Some(m),
        )
        .await;
        Some(what)
    }

    /// Waits until the object with `uid` is gone; counts it stuck after [`STUCK_AFTER`].
    async fn wait_gone(&mut self, i: usize, uid: &str) -> bool {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        let (ns, kind, name) = (t.ns, s.kind, s.name);
        let gone = try_wait_for(STUCK_AFTER, || async {
            match self.api(ns, kind).get_opt(name).await {
                Ok(None) => Some(()),
                Ok(Some(o)) if o.uid().as_deref() != Some(uid) => Some(()),
                _ => None,
            }
        })
        .await
        .is_some();
        if !gone {
            self.counts.stuck += 1;
            self.stuck_uids.insert(uid.to_owned());
            let line = format!(
                "STUCK op {}: {} still Terminating after {STUCK_AFTER:?}",
                self.op_no,
                self.wname(i)
            );
            eprintln!("{line}");
            self.findings.push(line);
            self.tracked[i].lost = true;
        }
        gone
    }

    async fn recreate(&mut self, i: usize, what: &str) {
        let m = self.manifest_text(i, None).to_string();
        self.kubectl_write(what, vec!["apply".into(), "-f".into(), "-".into()], Some(m))
            .await;
        self.tracked[i].recreated = true;
        self.tracked[i].recreated_at = Some(Instant::now());
    }

    fn propagation(&mut self) -> Propagation {
        match self.rng.random_range(0..3) {
            0 => Propagation::Background,
            1 => Propagation::Foreground,
            _ => Propagation::Orphan,
        }
    }

    async fn delete(&mut self, i: usize, p: Propagation, what: &str) -> bool {
        let mut args = vec![
            "delete".to_owned(),
            self.target(i),
            format!("--cascade={}", p.cascade()),
            "--wait=false".into(),
        ];
        args.extend(self.ns_args(i));
        self.kubectl_write(what, args, None).await
    }

    /// Deletes a workload (background, foreground or orphan) and applies its manifest again.
    async fn op_delete_recreate(&mut self) -> Option<String> {
        let i = self.pick_workload(&[], true)?;
        let p = self.propagation();
        let what = format!("delete ({p:?}) and recreate {}", self.wname(i));
        let (uid, _) = self.template_digest(i).await?;
        if self.delete(i, p, &what).await && self.wait_gone(i, &uid).await {
            self.recreate(i, &what).await;
        }
        Some(what)
    }

    async fn set_finalizers(&mut self, i: usize, add: bool, what: &str) -> bool {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        let api = self.api(t.ns, s.kind);
        let name = s.name;
        // Read, change, replace with the resourceVersion read: never races the garbage
        // collector's own finalizer changes.
        self.api_write(what, || {
            let api = api.clone();
            async move {
                let mut o = match api.get_opt(name).await? {
                    Some(o) => o,
                    // Released already: an earlier attempt went through but its answer was
                    // lost, and the object, being deleted, is gone.
                    None if !add => return Ok(()),
                    None => api.get(name).await?,
                };
                let mut f = o.metadata.finalizers.take().unwrap_or_default();
                f.retain(|x| x != HOLD);
                if add {
                    f.push(HOLD.to_owned());
                }
                o.metadata.finalizers = Some(f);
                api.replace(name, &PostParams::default(), &o)
                    .await
                    .map(|_| ())
            }
        })
        .await
        .is_some()
    }

    /// Holds a workload with a finalizer; sometimes deletes it while held (it stays
    /// Terminating), then releases it (a write on an object being deleted) and, if deleted,
    /// applies it again.
    async fn op_finalizer(&mut self) -> Option<String> {
        let delete = self.rng.random_bool(0.6);
        let i = self.pick_workload(&[], delete)?;
        let p = self.propagation();
        let what = if delete {
            format!(
                "finalizer on, delete ({p:?}), finalizer off, recreate {}",
                self.wname(i)
            )
        } else {
            format!("finalizer on and off {}", self.wname(i))
        };
        let (uid, _) = self.template_digest(i).await?;
        if !self.set_finalizers(i, true, &what).await {
            return Some(what);
        }
        if delete && self.delete(i, p, &what).await {
            let t = &self.tracked[i];
            let s = &self.specs[t.spec];
            let (ns, kind, name) = (t.ns, s.kind, s.name);
            try_wait_for(Duration::from_secs(30), || async {
                let o = self.api(ns, kind).get_opt(name).await.ok()??;
                o.metadata.deletion_timestamp.map(|_| ())
            })
            .await;
        }
        if self.set_finalizers(i, false, &what).await && delete && self.wait_gone(i, &uid).await {
            self.recreate(i, &what).await;
        }
        Some(what)
    }

    /// A Job that cleans itself up (TTL after finished: the TTL controller deletes it in the
    /// foreground), sometimes opted in.
    async fn op_ttl_job(&mut self) -> Option<String> {
        let ns = self.pick_ns(true)?;
        let name = format!("ttl-{}", self.op_no);
        let opted = self.rng.random_bool(0.5);
        let annotations = if opted {
            json!({"reloader.stakater.com/auto": "true"})
        } else {
            json!({})
        };
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": self.nss[ns].name, "annotations": annotations,
                         "labels": {RUN_LABEL: self.run}},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 2,
                     "template": {"metadata": {"labels": {"app": name, RUN_LABEL: self.run}},
                                  "spec": {"restartPolicy": "Never", "containers": [
                                      {"name": "app", "image": IMAGE, "envFrom": [{"configMapRef": {"name": "app", "optional": true}}]}]}}}
        });
        let what = format!(
            "TTL Job {}/{name}{}",
            self.nss[ns].name,
            if opted { " (opted in)" } else { "" }
        );
        self.kubectl_write(
            &what,
            vec!["create".into(), "-f".into(), "-".into()],
            Some(job.to_string()),
        )
        .await;
        Some(what)
    }

    // -----------------------------------------------------------------------------------------
    // Replicas

    /// Slot `i` was stopped: a takeover may follow. Its replacement starts at once, with the
    /// same identity (a container restarted in its pod) or a new one (a new pod), and may race
    /// the survivor for the Lease.
    fn stopped(&mut self, i: usize, same_identity: bool) {
        self.leader_event = Some((Instant::now(), time::OffsetDateTime::now_utc()));
        self.ha.spawn_start(i, !same_identity);
    }

    async fn op_kill_leader(&mut self) -> Option<String> {
        if self.leader_event.is_some() {
            return None;
        }
        self.ha.join_starts().await;
        let (holder, _) = lease_of(&self.client, &self.ha.lease).await?;
        let i = self.ha.slot_of(&holder)?;
        let same_identity = self.rng.random_bool(0.5);
        self.ha.slots[i].running.take().unwrap().stop();
        self.stopped(i, same_identity);
        Some(format!(
            "SIGKILL the leader {holder}; start it again as {}",
            self.ha.slots[i].identity
        ))
    }

    async fn op_restart_replica(&mut self) -> Option<String> {
        if self.leader_event.is_some() {
            return None;
        }
        self.ha.join_starts().await;
        let i = self.rng.random_range(0..self.ha.slots.len());
        let old = self.ha.slots[i].identity.clone();
        let replica = self.ha.slots[i].running.take().unwrap();
        let status = tokio::task::spawn_blocking(move || replica.terminate())
            .await
            .unwrap();
        if status.is_none_or(|s| !s.success()) {
            self.findings.push(format!(
                "replica {old} did not exit cleanly on SIGTERM: {status:?}"
            ));
        }
        let same_identity = self.rng.random_bool(0.5);
        self.stopped(i, same_identity);
        Some(format!(
            "SIGTERM replica {old}; start it again as {}",
            self.ha.slots[i].identity
        ))
    }

    // -----------------------------------------------------------------------------------------
    // Namespaces

    async fn relabel(&mut self, ns: usize, in_scope: bool) {
        let value = in_scope.then(|| self.run.clone());
        let what = format!(
            "relabel namespace {} {}",
            self.nss[ns].name,
            if in_scope {
                "into the selector"
            } else {
                "out of the selector"
            }
        );
        let patch = json!({"metadata": {"labels": {SCOPE_LABEL: value}}});
        let (client, name) = (self.client.clone(), self.nss[ns].name.clone());
        self.op_no += 1;
        self.counts.ops += 1;
        if self
            .api_write(&what, || {
                let (client, name, patch) = (client.clone(), name.clone(), patch.clone());
                async move {
                    Api::<Namespace>::all(client)
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
            })
            .await
            .is_some()
        {
            self.in_scope[ns] = in_scope;
        }
        self.log(what);
    }

    async fn one_op(&mut self) {
        let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
        loop {
            let mut r = self.rng.random_range(0..total);
            let op = WEIGHTS
                .iter()
                .find(|(_, w)| {
                    if r < *w {
                        true
                    } else {
                        r -= w;
                        false
                    }
                })
                .unwrap()
                .0;
            self.op_no += 1;
            let done = match op {
                Op::Data => self.op_data().await,
                Op::ConfigAnnotate => self.op_config_annotate().await,
                Op::ConfigLabel => self.op_config_label().await,
                Op::ConfigCreateDelete => self.op_config_create_delete().await,
                Op::ConfigRecreate => self.op_config_recreate().await,
                Op::Label => self.op_label(false).await,
                Op::Annotate => self.op_label(true).await,
                Op::Scale => self.op_scale().await,
                Op::Apply => self.op_apply().await,
                Op::ServerSideApply => self.op_server_side_apply().await,
                Op::Replace => self.op_replace().await,
                Op::RolloutRestart => self.op_rollout_restart().await,
                Op::TemplateApply => self.op_template_apply().await,
                Op::DeleteRecreate => self.op_delete_recreate().await,
                Op::Finalizer => self.op_finalizer().await,
                Op::TtlJob => self.op_ttl_job().await,
                Op::KillLeader => self.op_kill_leader().await,
                Op::RestartReplica => self.op_restart_replica().await,
            };
            match done {
                Some(line) => {
                    self.counts.ops += 1;
                    self.log(line);
                    return;
                }
                None => self.op_no -= 1,
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Waiting and checking

    /// The hash kreload's webhook gives a fresh copy of the workload now (server-side dry-run
    /// CREATE without the stamp): the current hash. `None` when it is not opted in.
    async fn probe(&self, i: usize) -> Option<String> {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        let live = self.get(t.ns, s.kind, s.name).await?;
        let mut annotations = live
            .pointer("/metadata/annotations")
            .cloned()
            .unwrap_or(json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.remove(STAMP);
            a.remove(ACCOUNTED);
        }
        let mut spec = live["spec"].clone();
        let template = s.kind.template().trim_start_matches("/spec");
        if let Some(a) = spec
            .pointer_mut(&format!("{template}/metadata/annotations"))
            .and_then(Value::as_object_mut)
        {
            a.remove(STAMP);
        }
        if s.kind == WKind::Job {
            spec.as_object_mut().unwrap().remove("selector");
            if let Some(l) = spec
                .pointer_mut("/template/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                l.retain(|k, _| !k.contains("controller-uid") && !k.contains("job-name"));
            }
        }
        let copy = json!({
            "apiVersion": live["apiVersion"], "kind": live["kind"],
            "metadata": {"name": format!("{}-probe", s.name), "annotations": annotations},
            "spec": spec,
        });
        let obj: DynamicObject = serde_json::from_value(copy).unwrap();
        let pp = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let out = self.api(t.ns, s.kind).create(&pp, &obj).await.ok()?;
        let out = serde_json::to_value(out).unwrap();
        out.pointer(&s.stamp_pointer())?
            .get(STAMP)?
            .as_str()
            .map(str::to_owned)
    }

    async fn snap(&self, i: usize) -> Option<Snap> {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        let o = self.get(t.ns, s.kind, s.name).await?;
        let l = look_of(s.kind, &o);
        let revisions = match s.kind.common() {
            Some(k) => revisions(&self.nss[t.ns], k, s.name).await,
            None => 0,
        };
        Some(Snap {
            stamp: if s.restart_strategy {
                l.object_stamp
            } else {
                l.template_stamp
            },
            accounted: l.accounted,
            revisions,
            at: Instant::now(),
        })
    }

    async fn settled(&self, i: usize) -> bool {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        match s.kind.common() {
            Some(k) => settled(&self.nss[t.ns], k, s.name).await,
            None => self.get(t.ns, s.kind, s.name).await.is_some(),
        }
    }

    /// Whether the workload reflects every consumed-data change so far: it rolled after the
    /// last one (unless the driver created it again since: it was stamped current then), its
    /// baseline is the current hash (its stamp; or, when a change that rolls nothing came after
    /// the roll, the hash kreload accounted on it), the rollout is done and the pods carry the
    /// stamp.
    async fn converged(&self, i: usize) -> Result<(), String> {
        let t = &self.tracked[i];
        let s = &self.specs[t.spec];
        let now = self.snap(i).await.ok_or("gone")?;
        let current = self.probe(i).await.ok_or("no current hash")?;
        if now.stamp.as_deref() != Some(current.as_str())
            && now.accounted.as_deref() != Some(current.as_str())
        {
            return Err(format!(
                "stamp {:?}, accounted {:?}, current hash {current}",
                now.stamp, now.accounted
            ));
        }
        if let Some(last) = t.last_must
            && t.recreated_at.is_none_or(|r| r < last)
            && !self
                .recorder
                .rolled_since(&self.key(t), last, s.kind, s.restart_strategy)
        {
            return Err(format!(
                "no roll since the last consumed-data change (stamp {:?})",
                now.stamp
            ));
        }
        if let Some(k) = s.kind.common().filter(|k| k.has_revisions()) {
            if !settled(&self.nss[t.ns], k, s.name).await {
                return Err("rollout not complete".into());
            }
            let stamp = now.stamp.as_deref().unwrap_or_default();
            pods_carry(&self.nss[t.ns], k, s.name, stamp).await?;
        }
        Ok(())
    }

    /// After a kill or restart: a live replica holds the Lease, renewed since. Returns when.
    async fn wait_leader(&mut self) -> Instant {
        let Some((_, killed_wall)) = self.leader_event.take() else {
            return Instant::now();
        };
        self.ha.join_starts().await;
        let client = self.client.clone();
        let lease = self.ha.lease.clone();
        let live: Vec<String> = self
            .ha
            .slots
            .iter()
            .filter(|s| s.running.is_some())
            .map(|s| s.identity.clone())
            .collect();
        let took = try_wait_for(Duration::from_secs(90), || async {
            let (holder, renewed) = lease_of(&client, &lease).await?;
            (live.contains(&holder) && renewed_after(renewed, killed_wall)).then_some(holder)
        })
        .await;
        match took {
            Some(h) => self.log(format!("leader now {h}")),
            None => self
                .findings
                .push("no live replica took the Lease within 90s".to_owned()),
        }
        Instant::now()
    }

    async fn round(&mut self, n: usize) {
        for t in &mut self.tracked {
            t.must.clear();
            t.last_must = None;
            t.recreated_at = None;
            t.user = 0;
            t.recreated = false;
        }
        let out = self
            .rng
            .random_bool(0.3)
            .then(|| self.rng.random_range(0..self.nss.len()));
        if let Some(ns) = out {
            self.relabel(ns, false).await;
        }
        let ops = self.rng.random_range(6..=14);
        for _ in 0..ops {
            self.one_op().await;
        }
        if let Some(ns) = out {
            self.relabel(ns, true).await;
        }
        self.last_op_end = Instant::now();
        self.settle(n).await;
    }

    /// Waits for every owed roll and a quiet period, then checks the round.
    async fn settle(&mut self, n: usize) {
        let leader_at = self.wait_leader().await;
        let owed: Vec<usize> = (0..self.tracked.len())
            .filter(|&i| !self.tracked[i].lost && !self.tracked[i].must.is_empty())
            .collect();
        let this = &*self;
        let results = join_all(owed.iter().map(|&i| async move {
            let mut last = Err(String::new());
            let deadline = tokio::time::Instant::now() + CONVERGE;
            while tokio::time::Instant::now() < deadline {
                last = this.converged(i).await;
                if last.is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (i, last)
        }))
        .await;
        let mut missed = BTreeSet::new();
        for (i, r) in results {
            if let Err(e) = r {
                missed.insert(i);
                let t = &self.tracked[i];
                let line = format!(
                    "MISSED round {n}: {}: {e} after {CONVERGE:?}; owed for: {}",
                    self.wname(i),
                    t.must.join("; ")
                );
                eprintln!("{line}");
                self.findings.push(line);
            }
        }
        // Quiet: long enough after the last operation and the last takeover for any late roll.
        let quiet_until = self.last_op_end.max(leader_at) + QUIET;
        tokio::time::sleep_until(tokio::time::Instant::from_std(quiet_until)).await;
        let this = &*self;
        let unsettled: Vec<usize> = join_all((0..self.tracked.len()).map(|i| async move {
            if this.tracked[i].lost {
                return None;
            }
            try_wait_for(SETTLE, || async { this.settled(i).await.then_some(()) })
                .await
                .is_none()
                .then_some(i)
        }))
        .await
        .into_iter()
        .flatten()
        .collect();
        for i in unsettled {
            self.findings.push(format!(
                "round {n}: {} did not settle within {SETTLE:?}",
                self.wname(i)
            ));
        }
        self.checkpoint(n, &missed).await;
    }

    async fn checkpoint(&mut self, n: usize, missed: &BTreeSet<usize>) {
        let mut summary = Vec::new();
        for i in 0..self.tracked.len() {
            if self.tracked[i].lost {
                continue;
            }
            let Some(now) = self.snap(i).await else {
                self.findings
                    .push(format!("round {n}: {} is gone", self.wname(i)));
                self.tracked[i].lost = true;
                continue;
            };
            let key = self.key(&self.tracked[i]);
            let t = &self.tracked[i];
            let kind = self.specs[t.spec].kind;
            let seen = if t.recreated {
                0
            } else if kind.has_revisions() {
                now.revisions.saturating_sub(t.last.revisions)
            } else {
                self.recorder.rolls(&key, t.last.at, now.at, kind)
            };
            let must = t.must.len() as u64;
            let allowance = must + u64::from(t.user) + u64::from(t.optional);
            self.counts.rolls_seen += seen as u64;
            self.counts.rolls_expected += u64::from(must > 0) + u64::from(t.user);
            if missed.contains(&i) {
                self.counts.missed += 1;
            }
            if !t.recreated && seen as u64 > allowance {
                let extra = seen as u64 - allowance;
                self.counts.unexplained += extra;
                let line = format!(
                    "UNEXPLAINED round {n}: {}: {seen} roll(s), allowed {allowance} ({must} consumed-data change(s), {} template change(s) of the driver, out-of-scope change pending: {}); stamp {:?} -> {:?}, revisions {} -> {}",
                    self.wname(i),
                    t.user,
                    t.optional,
                    t.last.stamp,
                    now.stamp,
                    t.last.revisions,
                    now.revisions
                );
                eprintln!("{line}");
                self.findings.push(line);
            }
            if seen > 0 || must > 0 || t.user > 0 || t.recreated {
                summary.push(format!(
                    "{}{}:{seen}/{must}+{}{}",
                    ['a', 'b', 'c'][t.ns],
                    self.specs[t.spec].name,
                    t.user,
                    if t.recreated { "(new)" } else { "" }
                ));
            }
            let optional = t.optional;
            if optional
                && self.probe(i).await.is_some_and(|c| {
                    Some(&c) == now.stamp.as_ref() || Some(&c) == now.accounted.as_ref()
                })
            {
                self.tracked[i].optional = false;
            }
            self.tracked[i].last = now;
        }
        self.log(format!(
            "round {n} checked (workload:rolls seen/consumed-data changes+driver template changes): {}",
            summary.join(" ")
        ));
    }

    /// Objects of the soak still Terminating: (uid, what, how long).
    async fn terminating(&self) -> Vec<(String, String, Duration)> {
        let mut out = Vec::new();
        let now = time::OffsetDateTime::now_utc();
        let mut resources: Vec<ApiResource> = WKind::ALL.iter().map(|k| k.resource()).collect();
        resources.push(ApiResource::erase::<Pod>(&()));
        resources.push(ApiResource::erase::<ReplicaSet>(&()));
        resources.push(ApiResource::erase::<
            k8s_openapi::api::apps::v1::ControllerRevision,
        >(&()));
        for ns in &self.nss {
            for ar in &resources {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &ns.name, ar);
                let Ok(list) = api.list(&ListParams::default()).await else {
                    continue;
                };
                for o in list.items {
                    let Some(ts) = &o.metadata.deletion_timestamp else {
                        continue;
                    };
                    let ts = serde_json::to_value(ts).unwrap();
                    let since = ts
                        .as_str()
                        .and_then(|s| {
                            time::OffsetDateTime::parse(
                                s,
                                &time::format_description::well_known::Rfc3339,
                            )
                            .ok()
                        })
                        .map(|t| Duration::try_from(now - t).unwrap_or_default())
                        .unwrap_or_default();
                    out.push((
                        o.uid().unwrap_or_default(),
                        format!("{}/{} {}", ns.name, ar.kind, o.name_any()),
                        since,
                    ));
                }
            }
        }
        out
    }

    /// Waits until nothing is Terminating, or what is has been for [`STUCK_AFTER`]; counts those.
    async fn final_stuck(&mut self) {
        let deadline = Instant::now() + STUCK_AFTER + Duration::from_secs(30);
        let stuck = loop {
            let t = self.terminating().await;
            if t.iter().all(|(_, _, since)| *since > STUCK_AFTER) || Instant::now() > deadline {
                break t;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        for (uid, what, since) in stuck {
            if since > STUCK_AFTER && self.stuck_uids.insert(uid) {
                self.counts.stuck += 1;
                let line = format!("STUCK: {what} Terminating for {since:?}");
                eprintln!("{line}");
                self.findings.push(line);
            }
        }
    }

    /// Live pods whose stamp is neither their workload's template stamp nor a hash kreload
    /// accounted on it (a change that rolls nothing, such as an `ignore` added, moves the hash a
    /// new pod gets); unstamped pods of stamped workloads count too.
    async fn final_stale_pods(&mut self) {
        for i in 0..self.tracked.len() {
            let t = &self.tracked[i];
            let s = &self.specs[t.spec];
            if t.lost || !s.opted_in() || matches!(s.kind, WKind::CronJob | WKind::Rollout) {
                continue;
            }
            let ns = &self.nss[t.ns];
            let Some(o) = self.get(t.ns, s.kind, s.name).await else {
                continue;
            };
            let look = look_of(s.kind, &o);
            let Some(template) = look.template_stamp.clone() else {
                continue;
            };
            let mut fine = self.recorder.accounted(&self.key(t), &look.uid);
            fine.insert(template.clone());
            if t.optional
                && let Some(current) = self.probe(i).await
            {
                fine.insert(current);
            }
            // The owners whose pods are this workload's: itself, or its ReplicaSets.
            let mut owners = BTreeSet::from([look.uid.clone()]);
            if s.kind == WKind::Deployment {
                for rs in replica_sets(ns, s.name).await {
                    if rs.owner_references().iter().any(|o| o.uid == look.uid) {
                        owners.insert(rs.uid().unwrap_or_default());
                    }
                }
            }
            let mut stale = Vec::new();
            for p in pods(ns, s.name).await {
                if p.metadata.deletion_timestamp.is_some()
                    || !p.owner_references().iter().any(|o| owners.contains(&o.uid))
                {
                    continue;
                }
                let stamp = p.annotations().get(STAMP).cloned();
                if stamp.as_ref().is_none_or(|s| !fine.contains(s)) {
                    stale.push(format!("{} ({stamp:?})", p.name_any()));
                }
            }
            if !stale.is_empty() {
                self.counts.stale_pods += stale.len() as u64;
                let line = format!(
                    "STALE PODS: {}: template {template}, accounted {:?}: {}",
                    self.wname(i),
                    fine,
                    stale.join(", ")
                );
                eprintln!("{line}");
                self.findings.push(line);
            }
        }
    }
}

/// A seed that passed on three runs (docs/testing.md lists the seeds tried).
const DEFAULT_SEED: u64 = 11930893848254932200;

fn settings() -> (u64, u64) {
    // CI replays one seed, so that a red run is a regression and not the draw of a new
    // sequence of operations; `KRELOAD_SOAK_SEED=random` explores (docs/testing.md).
    let seed = match std::env::var("KRELOAD_SOAK_SEED").ok().as_deref() {
        None | Some("") => DEFAULT_SEED,
        Some("random") => rand::random(),
        Some(s) => s.parse().expect("KRELOAD_SOAK_SEED is a number, or random"),
    };
    let seconds = std::env::var("KRELOAD_SOAK_SECONDS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("KRELOAD_SOAK_SECONDS is a number of seconds")
        })
        .unwrap_or(120);
    (seed, seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_ordinary_operations_with_kreload_installed() {
    let (seed, seconds) = settings();
    eprintln!(
        "soak seed={seed} seconds={seconds} (replay: KRELOAD_SOAK_SEED={seed} KRELOAD_SOAK_SECONDS={seconds})"
    );
    let client = client().await;
    ensure_rollout_crd(&client).await;
    let run = format!("{:08x}", rand::random::<u32>());
    let mut nss = Vec::new();
    for _ in 0..3 {
        nss.push(TestNamespace::with_labels(&client, "e2e-soak", &[(SCOPE_LABEL, &run)]).await);
    }
    let mut configs = Vec::new();
    for ns in &nss {
        let model = initial_configs();
        for (name, c) in &model {
            if !c.exists {
                continue;
            }
            let cfg = if c.secret { secret(name) } else { cm(name) };
            let annotations = if c.matched {
                json!({"reloader.stakater.com/match": "true"})
            } else {
                json!({})
            };
            cfg.data(json!(c.data))
                .annotations(annotations)
                .create(ns)
                .await;
        }
        configs.push(model);
    }
    let lease = format!("kreload-soak-{run}");
    let mut ha = Ha {
        lease: lease.clone(),
        namespaces: nss
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
        selector: format!("{SCOPE_LABEL}={run}"),
        webhook_prefix: format!("kreload-soak-{run}"),
        slots: ['a', 'b']
            .into_iter()
            .map(|name| Slot {
                name,
                identity: format!("{lease}-{name}0"),
                running: None,
                starting: None,
            })
            .collect(),
        starts: 0,
        logs: Vec::new(),
    };
    ha.spawn_start(0, false);
    ha.spawn_start(1, false);
    ha.join_starts().await;

    let recorder = Recorder::default();
    let watches: Vec<_> = WKind::ALL
        .iter()
        .map(|k| recorder.spawn(&client, *k, &run))
        .collect();

    let specs = specs();
    for ns in &nss {
        let items: Vec<Value> = specs.iter().map(|s| s.manifest(&run, None)).collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
        let (ok, _, err) = kubectl(&["apply", "-n", &ns.name, "-f", "-"], Some(&list));
        assert!(ok, "apply the soak's workloads in {}: {err}", ns.name);
    }
    let mut tracked = Vec::new();
    for ns in 0..nss.len() {
        for spec in 0..specs.len() {
            tracked.push(Tracked {
                ns,
                spec,
                must: Vec::new(),
                last_must: None,
                recreated_at: None,
                user: 0,
                optional: false,
                // Round 0 checks creation on its own (one revision each).
                recreated: true,
                lost: false,
                last: Snap {
                    stamp: None,
                    accounted: None,
                    revisions: 0,
                    at: Instant::now(),
                },
            });
        }
    }
    let mut soak = Soak {
        client: client.clone(),
        run,
        rng: StdRng::seed_from_u64(seed),
        in_scope: vec![true; nss.len()],
        nss,
        configs,
        specs,
        tracked,
        recorder,
        ha,
        counts: Counts::default(),
        findings: Vec::new(),
        op_no: 0,
        last_op_end: Instant::now(),
        leader_event: None,
        stuck_uids: BTreeSet::new(),
    };
    // Round 0: everything created settles and is not rolled a second time.
    soak.settle(0).await;
    for i in 0..soak.tracked.len() {
        let t = &soak.tracked[i];
        let s = &soak.specs[t.spec];
        if s.kind.has_revisions() && t.last.revisions != 1 {
            soak.findings.push(format!(
                "{} has {} revisions right after creation",
                soak.wname(i),
                t.last.revisions
            ));
            soak.counts.unexplained += t.last.revisions.saturating_sub(1) as u64;
        }
        if s.opted_in() && t.last.stamp.is_none() {
            soak.findings
                .push(format!("{} was not stamped at creation", soak.wname(i)));
        }
    }

    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        n += 1;
        soak.round(n).await;
    }
    soak.final_stuck().await;
    soak.final_stale_pods().await;

    for w in watches {
        w.abort();
    }
    let logs = soak.ha.logs.join(", ");
    let c = &soak.counts;
    let zero = c.unexplained == 0
        && c.missed == 0
        && c.refused == 0
        && c.stuck == 0
        && c.stale_pods == 0
        && soak.findings.is_empty();
    if !soak.findings.is_empty() {
        eprintln!(
            "soak findings (seed {seed}):\n  {}\nkreload logs: {logs}",
            soak.findings.join("\n  ")
        );
    }
    let _ = Api::<Lease>::namespaced(client.clone(), "kreload")
        .delete(&lease, &DeleteParams::default())
        .await;
    let line = format!(
        "soak ops={} rolls_expected={} rolls_seen={} unexplained={} missed={} refused={} stuck={} stale_pods={}",
        c.ops,
        c.rolls_expected,
        c.rolls_seen,
        c.unexplained,
        c.missed,
        c.refused,
        c.stuck,
        c.stale_pods
    );
    // Replicas stop (and remove their webhook configurations) before the namespaces go.
    for slot in &mut soak.ha.slots {
        slot.running.take();
    }
    println!("{line}");
    assert!(zero, "{line} (seed {seed}; findings above)");
}
