//! Scale benchmark: kreload against a control plane holding 10,000 ConfigMaps and Secrets
//! (about 200 MB of data) and 1,000 Deployments that consume them in every supported way.
//!
//! `cargo bench --bench scale` (see BENCHMARKS.md). It starts its OWN harness cluster (state in
//! `.state/bench-cluster`, ports 32379/32380/36443/37257/37259, so it never touches the test
//! cluster), fills it, runs `kreload run --local` twice (coalescing off, then the defaults), and
//! always brings its cluster down at the end, also after a failure, a panic, Ctrl-C or the
//! overall timeout. It reports:
//!
//! - time until ready (`/readyz` answers 200: every watch has listed once) and RSS after sync;
//! - reload latency: from the acknowledged config PATCH to a Deployment watch seeing the new
//!   stamp on the template, over distinct workloads (one affected workload per change);
//! - API requests per change, by verb and resource (deltas of the API server's
//!   `apiserver_request_total` over a batch of changes, nothing else writing meanwhile);
//! - the latency the mutating webhook adds to pod creation (server-side dry-run creates), against
//!   the latency a no-op webhook on the same TLS stack adds (`scale/noop_webhook.rs`, a process of
//!   its own), with kreload's, the no-op's and no webhook registered in interleaved rounds; for a
//!   pod without a stamp (patched) and for one made from a stamped template (not patched). A
//!   fourth condition, the same no-op answering with a one-annotation patch, shows what any patch
//!   costs the API server (a diagnostic: the reported ratio is against the no-op without one).
//!
//! Environment (all optional): KRELOAD_SCALE_CONFIGS (10000), KRELOAD_SCALE_WORKLOADS (1000),
//! KRELOAD_SCALE_NAMESPACES (10), KRELOAD_SCALE_MB (200), KRELOAD_SCALE_UPDATES (200),
//! KRELOAD_SCALE_PODS (200 per webhook and pod), KRELOAD_SCALE_REPLICAS (0),
//! KRELOAD_SCALE_TIMEOUT_S (2400: the whole run, set-up included), KRELOAD_SCALE_COMPARE (a comma
//! list of kreload binaries to start in turn before phase A, each reporting its ready time and
//! RSS: for comparing builds, e.g. allocators, A/B/A on the same data).

mod fixtures;
#[path = "scale/noop_webhook.rs"]
mod noop_webhook;
#[path = "fixtures/proc_status.rs"]
mod proc_status;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};

use fixtures::Rng;
use kreload::domain::annotations::CONFIG_HASH;

const LABEL: &str = "kreload-bench";
/// The environment variable that makes this binary the no-op webhook (see `scale/noop_webhook.rs`).
const ROLE: &str = "KRELOAD_SCALE_ROLE";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Debug)]
struct Settings {
    configs: usize,
    workloads: usize,
    namespaces: usize,
    megabytes: f64,
    updates: usize,
    pods: usize,
    replicas: i32,
    timeout: Duration,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            configs: env_or("KRELOAD_SCALE_CONFIGS", 10_000),
            workloads: env_or("KRELOAD_SCALE_WORKLOADS", 1_000),
            namespaces: env_or("KRELOAD_SCALE_NAMESPACES", 10),
            megabytes: env_or("KRELOAD_SCALE_MB", 200.0),
            updates: env_or("KRELOAD_SCALE_UPDATES", 200),
            pods: env_or("KRELOAD_SCALE_PODS", 200),
            replicas: env_or("KRELOAD_SCALE_REPLICAS", 0),
            timeout: Duration::from_secs(env_or("KRELOAD_SCALE_TIMEOUT_S", 2400)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness cluster, on its own state dir and ports.

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cluster_command(script: &str) -> Command {
    let mut cmd = Command::new(repo().join("tests/cluster").join(script));
    cmd.env("KRELOAD_CLUSTER_STATE", repo().join(".state/bench-cluster"))
        .env("KRELOAD_CLUSTER_ETCD_PORT", "32379")
        .env("KRELOAD_CLUSTER_ETCD_PEER_PORT", "32380")
        .env("KRELOAD_CLUSTER_APISERVER_PORT", "36443")
        .env("KRELOAD_CLUSTER_KCM_PORT", "37257")
        .env("KRELOAD_CLUSTER_SCHEDULER_PORT", "37259")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// Brings the benchmark's cluster down when dropped: on success, error, panic or timeout.
struct Cluster {
    kubeconfig: PathBuf,
}

impl Cluster {
    fn up() -> anyhow::Result<Cluster> {
        // A cluster left over from an interrupted run holds old objects: start from nothing.
        let _ = cluster_command("down").stdout(Stdio::null()).status();
        let mut attempt = 1;
        loop {
            eprintln!(
                "scale: starting the benchmark cluster (tests/cluster/up on the bench ports)"
            );
            let out = cluster_command("up")
                .stdout(Stdio::piped())
                .output()
                .context("run tests/cluster/up")?;
            // A failed up leaves its state dir (with the logs) behind: always take it down.
            if !out.status.success() {
                let _ = cluster_command("down").stdout(Stdio::null()).status();
                // On a busy machine up sometimes sees a component that is still starting as
                // exited; one more try.
                ensure!(attempt < 2, "tests/cluster/up failed twice");
                attempt += 1;
                continue;
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let kubeconfig = stdout
                .lines()
                .last()
                .context("tests/cluster/up printed no kubeconfig path")?;
            return Ok(Cluster {
                kubeconfig: PathBuf::from(kubeconfig.trim()),
            });
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        eprintln!("scale: bringing the benchmark cluster down");
        match cluster_command("down").stdout(Stdio::null()).status() {
            Ok(s) if s.success() => {}
            other => eprintln!("scale: tests/cluster/down failed: {other:?}"),
        }
    }
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    // Creating 10,000 objects concurrently: the defaults' rate limits are not the subject here.
    config.read_timeout = Some(Duration::from_secs(120));
    Ok(Client::try_from(config)?)
}

// ---------------------------------------------------------------------------------------------
// The data: configs of varied size and key count, Deployments consuming them in varied ways.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ConfigMap,
    Secret,
}

#[derive(Clone, Debug)]
struct ConfigPlan {
    namespace: String,
    kind: Kind,
    name: String,
    keys: usize,
    /// Bytes per value.
    value_len: usize,
    matched: bool,
}

impl ConfigPlan {
    fn bytes(&self) -> usize {
        self.keys * self.value_len
    }
}

/// How a Deployment consumes one config.
#[derive(Clone, Copy, Debug)]
enum Way {
    EnvFrom,
    KeyRef,
    Volume,
    VolumeItems,
    Projected,
}

const WAYS: [Way; 5] = [
    Way::EnvFrom,
    Way::KeyRef,
    Way::Volume,
    Way::VolumeItems,
    Way::Projected,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Auto,
    Search,
    ReloadList,
    ConfigMapAuto,
}

#[derive(Clone, Debug)]
struct WorkloadPlan {
    namespace: String,
    name: String,
    policy: Policy,
    /// Its own configs (referenced by no other workload), with how it consumes each.
    own: Vec<(usize, Way)>,
}

struct Plan {
    configs: Vec<ConfigPlan>,
    workloads: Vec<WorkloadPlan>,
    namespaces: Vec<String>,
}

fn value(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 =_-\n";
    let mut rng = Rng(seed);
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let mut r = rng.next();
        for _ in 0..8 {
            if s.len() == len {
                break;
            }
            s.push(ALPHABET[(r as usize & 0xff) % ALPHABET.len()] as char);
            r >>= 8;
        }
    }
    s
}

/// Sizes from 100 B to 100 KB: mostly log-uniform (many small configs), a sixth uniform in
/// 10–100 KB (certificate bundles, rendered files), scaled so the total is `megabytes`.
fn plan(s: &Settings) -> Plan {
    let mut rng = Rng(20_251);
    let namespaces: Vec<String> = (0..s.namespaces).map(|n| format!("scale-{n}")).collect();
    let per_ns = s.configs / s.namespaces;
    let workloads_per_ns = s.workloads / s.namespaces;
    let mut configs = Vec::new();
    let mut raw_sizes = Vec::new();
    for ns in &namespaces {
        for i in 0..per_ns {
            let (kind, name) = match i {
                0 => (Kind::ConfigMap, "shared-cm".to_string()),
                1 => (Kind::Secret, "shared-secret".to_string()),
                _ if i % 2 == 0 => (Kind::ConfigMap, format!("cm-{:04}", (i - 2) / 2)),
                _ => (Kind::Secret, format!("secret-{:04}", (i - 2) / 2)),
            };
            let r = rng.below(100);
            let keys = match r {
                0..60 => 1 + rng.below(3) as usize,
                60..90 => 4 + rng.below(7) as usize,
                _ => 50,
            };
            let size = if rng.below(6) == 0 {
                10_000.0 + rng.below(90_000) as f64
            } else {
                // log-uniform in [100, 100000]
                100.0 * 1000f64.powf(rng.below(1_000_000) as f64 / 1e6)
            };
            raw_sizes.push(size);
            configs.push(ConfigPlan {
                namespace: ns.clone(),
                kind,
                name,
                keys,
                value_len: 0,
                matched: false,
            });
        }
    }
    let total: f64 = raw_sizes.iter().sum();
    let scale = s.megabytes * 1e6 / total;
    for (c, size) in configs.iter_mut().zip(raw_sizes) {
        let size = (size * scale).clamp(100.0, 100_000.0) as usize;
        c.value_len = size.div_ceil(c.keys);
    }
    // Own configs per workload and kind, from the numbered (not shared) configs.
    let own_per_kind = ((per_ns - 2) / 2 / workloads_per_ns.max(1)).clamp(1, 5);
    let mut workloads = Vec::new();
    for (n, ns) in namespaces.iter().enumerate() {
        let base = n * per_ns;
        for d in 0..workloads_per_ns {
            let policy = match d % 10 {
                0..=6 => Policy::Auto,
                7 => Policy::Search,
                8 => Policy::ReloadList,
                _ => Policy::ConfigMapAuto,
            };
            let mut own = Vec::new();
            for kind in [Kind::ConfigMap, Kind::Secret] {
                for j in 0..own_per_kind {
                    let number = d * own_per_kind + j;
                    let idx = base + 2 + 2 * number + usize::from(kind == Kind::Secret);
                    if j == 0 {
                        configs[idx].matched = true;
                    }
                    let way = WAYS[(d + own.len()) % WAYS.len()];
                    own.push((idx, way));
                }
            }
            workloads.push(WorkloadPlan {
                namespace: ns.clone(),
                name: format!("app-{d:03}"),
                policy,
                own,
            });
        }
    }
    Plan {
        configs,
        workloads,
        namespaces,
    }
}

fn config_data(c: &ConfigPlan, version: u64) -> BTreeMap<String, String> {
    (0..c.keys)
        .map(|k| {
            let seed =
                (c.name.len() as u64) << 40 ^ (k as u64) << 20 ^ version ^ c.value_len as u64;
            (format!("k{k}"), value(c.value_len, seed))
        })
        .collect()
}

fn config_meta(c: &ConfigPlan) -> ObjectMeta {
    ObjectMeta {
        name: Some(c.name.clone()),
        namespace: Some(c.namespace.clone()),
        labels: Some([(LABEL.to_string(), "true".to_string())].into()),
        annotations: c.matched.then(|| {
            [(
                "reloader.stakater.com/match".to_string(),
                "true".to_string(),
            )]
            .into()
        }),
        ..Default::default()
    }
}

async fn create_config(client: Client, c: ConfigPlan) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let data = config_data(&c, 0);
    match c.kind {
        Kind::ConfigMap => {
            let cm = ConfigMap {
                metadata: config_meta(&c),
                data: Some(data),
                ..Default::default()
            };
            Api::<ConfigMap>::namespaced(client, &c.namespace)
                .create(&pp, &cm)
                .await?;
        }
        Kind::Secret => {
            let secret = Secret {
                metadata: config_meta(&c),
                data: Some(
                    data.into_iter()
                        .map(|(k, v)| (k, ByteString(v.into_bytes())))
                        .collect(),
                ),
                ..Default::default()
            };
            Api::<Secret>::namespaced(client, &c.namespace)
                .create(&pp, &secret)
                .await?;
        }
    }
    Ok(())
}

fn reference_name(kind: Kind, name: &str) -> Value {
    match kind {
        Kind::ConfigMap => json!({"name": name}),
        Kind::Secret => json!({"name": name}),
    }
}

fn deployment(plan: &Plan, w: &WorkloadPlan, replicas: i32) -> anyhow::Result<Deployment> {
    let mut env_from = vec![
        json!({"configMapRef": {"name": "shared-cm"}}),
        json!({"secretRef": {"name": "shared-secret"}}),
    ];
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ];
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut projected = Vec::new();
    for (n, (idx, way)) in w.own.iter().enumerate() {
        let c = &plan.configs[*idx];
        let name = c.name.as_str();
        let (cm, vol_key) = (c.kind == Kind::ConfigMap, format!("v{n}"));
        match way {
            Way::EnvFrom => env_from.push(if cm {
                json!({"configMapRef": reference_name(c.kind, name)})
            } else {
                json!({"secretRef": reference_name(c.kind, name)})
            }),
            Way::KeyRef => env.push(if cm {
                json!({"name": format!("V{n}"), "valueFrom": {"configMapKeyRef": {"name": name, "key": "k0"}}})
            } else {
                json!({"name": format!("V{n}"), "valueFrom": {"secretKeyRef": {"name": name, "key": "k0"}}})
            }),
            Way::Volume | Way::VolumeItems => {
                let items = matches!(way, Way::VolumeItems)
                    .then(|| json!([{"key": "k0", "path": "k0"}]));
                let mut source = if cm {
                    json!({"configMap": {"name": name}})
                } else {
                    json!({"secret": {"secretName": name}})
                };
                if let Some(items) = items {
                    source[if cm { "configMap" } else { "secret" }]["items"] = items;
                }
                source["name"] = json!(vol_key);
                volumes.push(source);
                mounts.push(json!({"name": vol_key, "mountPath": format!("/etc/{vol_key}"), "readOnly": true}));
            }
            Way::Projected => projected.push(if cm {
                json!({"configMap": {"name": name}})
            } else {
                json!({"secret": {"name": name}})
            }),
        }
    }
    if !projected.is_empty() {
        volumes.push(json!({"name": "bundle", "projected": {"sources": projected}}));
        mounts.push(json!({"name": "bundle", "mountPath": "/etc/bundle", "readOnly": true}));
    }
    let own_names = |kind: Kind| -> Vec<String> {
        w.own
            .iter()
            .map(|(i, _)| &plan.configs[*i])
            .filter(|c| c.kind == kind)
            .map(|c| c.name.clone())
            .collect()
    };
    let annotations = match w.policy {
        Policy::Auto => json!({"reloader.stakater.com/auto": "true"}),
        Policy::Search => json!({"reloader.stakater.com/search": "true"}),
        Policy::ConfigMapAuto => json!({"configmap.reloader.stakater.com/auto": "true"}),
        Policy::ReloadList => {
            // Exact names and one regular expression, as real reload lists mix them.
            let mut cms = own_names(Kind::ConfigMap);
            if cms.len() >= 3 {
                let tail = cms.split_off(cms.len() - 2);
                cms.push(format!("({})", tail.join("|")));
            }
            json!({
                "configmap.reloader.stakater.com/reload": cms.join(","),
                "secret.reloader.stakater.com/reload": own_names(Kind::Secret).join(", "),
            })
        }
    };
    let value = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": {LABEL: "true"}, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": w.name}},
            "template": {
                "metadata": {"labels": {"app": w.name, LABEL: "true"}},
                "spec": {
                    "containers": [{"name": "app", "image": "registry.invalid/app:1", "env": env, "envFrom": env_from, "volumeMounts": mounts}],
                    "volumes": volumes
                }
            }
        }
    });
    Ok(serde_json::from_value(value)?)
}

/// A config change that rolls exactly `w` (its own config, key `k0`, consumed by every way).
fn trigger(plan: &Plan, w: &WorkloadPlan, salt: usize) -> usize {
    let candidates: Vec<usize> = w
        .own
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| {
            let c = &plan.configs[*i];
            match w.policy {
                Policy::Auto | Policy::ReloadList => true,
                Policy::Search => c.matched,
                Policy::ConfigMapAuto => c.kind == Kind::ConfigMap,
            }
        })
        .collect();
    candidates[salt % candidates.len()]
}

async fn change_config(client: &Client, c: &ConfigPlan, version: u64) -> anyhow::Result<()> {
    let new = value(c.value_len, 0xC0FFEE ^ version << 8 ^ c.name.len() as u64);
    let pp = PatchParams::default();
    match c.kind {
        Kind::ConfigMap => {
            let patch = json!({"data": {"k0": new}});
            Api::<ConfigMap>::namespaced(client.clone(), &c.namespace)
                .patch(&c.name, &pp, &Patch::Merge(&patch))
                .await?;
        }
        Kind::Secret => {
            use base64::Engine;
            let patch =
                json!({"data": {"k0": base64::engine::general_purpose::STANDARD.encode(new)}});
            Api::<Secret>::namespaced(client.clone(), &c.namespace)
                .patch(&c.name, &pp, &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A watch on the benchmark's Deployments: the template stamp of each, and when it last changed.

#[derive(Clone, Debug, Default)]
struct Seen {
    stamp: Option<String>,
    changed_at: Option<Instant>,
    changes: u32,
}

#[derive(Clone)]
struct Stamps {
    seen: Arc<Mutex<HashMap<(String, String), Seen>>>,
    tick: tokio::sync::watch::Receiver<u64>,
}

impl Stamps {
    fn start(client: Client) -> Stamps {
        let seen: Arc<Mutex<HashMap<(String, String), Seen>>> = Default::default();
        let (tx, tick) = tokio::sync::watch::channel(0u64);
        let state = seen.clone();
        tokio::spawn(async move {
            let api: Api<Deployment> = Api::all(client);
            let stream = watcher(
                api,
                watcher::Config::default().labels(&format!("{LABEL}=true")),
            )
            .default_backoff()
            .applied_objects();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let Ok(d) = event else { continue };
                let now = Instant::now();
                let key = (
                    d.metadata.namespace.clone().unwrap_or_default(),
                    d.metadata.name.clone().unwrap_or_default(),
                );
                let stamp = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.annotations.as_ref())
                    .and_then(|a| a.get(CONFIG_HASH))
                    .cloned();
                let mut seen = state.lock().unwrap();
                let entry = seen.entry(key).or_default();
                if entry.stamp != stamp {
                    if entry.stamp.is_some() || entry.changed_at.is_some() || stamp.is_some() {
                        entry.changes += 1;
                    }
                    entry.stamp = stamp;
                    entry.changed_at = Some(now);
                }
                drop(seen);
                tx.send_modify(|n| *n += 1);
            }
        });
        Stamps { seen, tick }
    }

    fn get(&self, ns: &str, name: &str) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn total_changes(&self) -> u64 {
        self.seen
            .lock()
            .unwrap()
            .values()
            .map(|s| u64::from(s.changes))
            .sum()
    }

    /// Waits until the stamp of ns/name differs from `before`; returns when the watch saw it.
    async fn changed(
        &self,
        ns: &str,
        name: &str,
        before: &Option<String>,
        timeout: Duration,
    ) -> Option<Instant> {
        let mut tick = self.tick.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.get(ns, name);
            if seen.stamp != *before {
                return seen.changed_at;
            }
            if tokio::time::timeout_at(deadline, tick.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kreload as a child process.

struct Kreload {
    child: Child,
    pid: u32,
    health: String,
    started: Instant,
    webhooks_at: Arc<Mutex<Option<Instant>>>,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Kreload {
    fn start(kubeconfig: &Path, extra: &[&str], log: PathBuf) -> anyhow::Result<Kreload> {
        Kreload::start_binary(
            Path::new(env!("CARGO_BIN_EXE_kreload")),
            kubeconfig,
            extra,
            log,
        )
    }

    fn start_binary(
        binary: &Path,
        kubeconfig: &Path,
        extra: &[&str],
        log: PathBuf,
    ) -> anyhow::Result<Kreload> {
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["run", "--local", "--exit-on-stdin-close", "--health-listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start kreload")?;
        let pid = child.id();
        let stderr = child.stderr.take().unwrap();
        let webhooks_at = Arc::new(Mutex::new(None));
        let seen = webhooks_at.clone();
        let mut file = std::fs::File::create(&log)?;
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("webhook configurations point here") {
                    *seen.lock().unwrap() = Some(Instant::now());
                }
                let _ = writeln!(file, "{line}");
            }
        });
        Ok(Kreload {
            child,
            pid,
            health: format!("http://127.0.0.1:{port}"),
            started,
            webhooks_at,
            log,
        })
    }

    /// Seconds from start until `/readyz` answers 200, and until the webhooks are registered.
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<(f64, f64)> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = Instant::now() + timeout;
        let ready = loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.health)).send().await
                && r.status() == 200
            {
                break self.started.elapsed();
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "kreload exited with {status} before it was ready (log {})",
                    self.log.display()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "kreload not ready within {timeout:?} (log {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let webhooks = loop {
            if let Some(at) = *self.webhooks_at.lock().unwrap() {
                break at - self.started;
            }
            ensure!(
                Instant::now() < deadline,
                "kreload did not register its webhooks (log {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok((ready.as_secs_f64(), webhooks.as_secs_f64()))
    }

    /// (VmRSS, VmHWM) in MiB.
    fn memory_mb(&self) -> (f64, f64) {
        (self.status_mb("VmRSS:"), self.status_mb("VmHWM:"))
    }

    /// What the RSS is made of: "anon X MiB, file Y MiB" (heap and stacks; the binary's and
    /// libraries' pages).
    fn rss_split(&self) -> String {
        format!(
            "anon {:.1} MiB, file {:.1} MiB",
            self.status_mb("RssAnon:"),
            self.status_mb("RssFile:")
        )
    }

    /// A field of `/proc/<pid>/status` in MiB.
    fn status_mb(&self, name: &str) -> f64 {
        proc_status::status_mb(&self.pid.to_string(), name)
    }

    /// Graceful stop: closing stdin makes kreload delete its webhook configurations and exit.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("scale: kreload did not stop within 30s; killing it");
    }
}

impl Drop for Kreload {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The API server's request counters.

type Counts = BTreeMap<(String, String), f64>;

/// `apiserver_request_total` summed by (verb, resource[/subresource]).
async fn request_counts(client: &Client) -> anyhow::Result<Counts> {
    let req = axum::http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| -> String {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let mut resource = label("resource");
        let sub = label("subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        *counts.entry((label("verb"), resource)).or_default() +=
            value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(counts)
}

fn delta(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

fn print_delta(title: &str, d: &Counts, changes: usize) {
    println!("{title}: API server requests during the batch, per change ({changes} changes)");
    for ((verb, resource), n) in d {
        if resource.is_empty() {
            continue;
        }
        println!(
            "  {verb:<8} {resource:<32} {n:>7.0} total {:>8.2} per change",
            n / changes as f64
        );
    }
}

const KRELOAD_RESOURCES: [&str; 7] = [
    "configmaps",
    "secrets",
    "deployments",
    "statefulsets",
    "daemonsets",
    "cronjobs",
    "jobs",
];

fn sum(d: &Counts, verb: &str, resources: &[&str]) -> f64 {
    d.iter()
        .filter(|((v, r), _)| v == verb && resources.contains(&r.as_str()))
        .map(|(_, n)| n)
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

/// Sum of the samples of `metric` whose labels contain every one of `labels` (`k="v"`), from
/// Prometheus text.
fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(metric))
        .filter(|rest| rest.starts_with('{') || rest.starts_with(' '))
        .filter(|rest| labels.iter().all(|l| rest.contains(l)))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0
}

/// (sum in seconds, count) pairs: [0] kreload's mutating webhook as the API server times it
/// (call, TLS and network included), [1] kreload's handler as it times itself, [2] the no-op
/// webhook as the API server times it, [3] and [4] kreload's mutating answers with a patch and
/// without one, [5] the patching no-op as the API server times it.
async fn webhook_timings(client: &Client, kreload_health: &str) -> anyhow::Result<[(f64, f64); 6]> {
    let text = client
        .request_text(axum::http::Request::get("/metrics").body(Vec::new())?)
        .await?;
    let api = |name: &str| {
        let label = format!("name=\"{name}\"");
        (
            metric_sum(
                &text,
                "apiserver_admission_webhook_admission_duration_seconds_sum",
                &[&label],
            ),
            metric_sum(
                &text,
                "apiserver_admission_webhook_admission_duration_seconds_count",
                &[&label],
            ),
        )
    };
    let (kreload_api, noop_api, noop_patch_api) = (
        api("mutate.kreload.dev"),
        api(NOOP_WEBHOOK),
        api(NOOP_PATCH_WEBHOOK),
    );
    let own = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{kreload_health}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let handler = |labels: &[&str]| {
        (
            metric_sum(&own, "kreload_admission_requests_seconds_sum", labels),
            metric_sum(&own, "kreload_admission_requests_seconds_count", labels),
        )
    };
    Ok([
        kreload_api,
        handler(&["webhook=\"mutate\""]),
        noop_api,
        handler(&["webhook=\"mutate\"", "result=\"patched\""]),
        handler(&["webhook=\"mutate\"", "result=\"allowed\""]),
        noop_patch_api,
    ])
}

// ---------------------------------------------------------------------------------------------
// Measurements.

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Latencies {
    ms: Vec<f64>,
    missed: usize,
}

/// One config change per workload in `order`, `parallel` at a time; the latency of each.
async fn reload_latencies(
    client: &Client,
    plan: &Plan,
    stamps: &Stamps,
    order: &[usize],
    parallel: usize,
    version: u64,
    timeout: Duration,
) -> Latencies {
    let results: Vec<Option<f64>> = futures::stream::iter(order.iter().enumerate())
        .map(|(n, &w)| async move {
            let workload = &plan.workloads[w];
            let config = &plan.configs[trigger(plan, workload, n)];
            let before = stamps.get(&workload.namespace, &workload.name).stamp;
            if let Err(e) = change_config(client, config, version + n as u64).await {
                eprintln!(
                    "scale: changing {}/{} failed: {e}",
                    config.namespace, config.name
                );
                return None;
            }
            let acknowledged = Instant::now();
            let seen = stamps
                .changed(&workload.namespace, &workload.name, &before, timeout)
                .await?;
            Some(seen.saturating_duration_since(acknowledged).as_secs_f64() * 1e3)
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let missed = results.iter().filter(|r| r.is_none()).count();
    let mut ms: Vec<f64> = results.into_iter().flatten().collect();
    ms.sort_by(f64::total_cmp);
    Latencies { ms, missed }
}

/// A pod made from `w`'s template, as a controller would create it; with `stamp`, as the
/// ReplicaSet controller creates a pod of an opted-in Deployment whose template carries that
/// stamp (owner reference, `pod-template-hash`, the template's annotations).
fn bench_pod(plan: &Plan, w: &WorkloadPlan, stamp: Option<&str>) -> Pod {
    let d = deployment(plan, w, 0).unwrap();
    let template = d.spec.unwrap().template;
    let mut labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
    let mut metadata = ObjectMeta {
        generate_name: Some("bench-pod-".into()),
        namespace: Some(w.namespace.clone()),
        ..Default::default()
    };
    if let Some(stamp) = stamp {
        const HASH: &str = "5d8f7b9c6";
        labels.insert("pod-template-hash".into(), HASH.into());
        metadata.annotations = Some([(CONFIG_HASH.to_string(), stamp.to_string())].into());
        metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: format!("{}-{HASH}", w.name),
                uid: "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
    }
    metadata.labels = Some(labels);
    Pod {
        metadata,
        spec: template.spec,
        ..Default::default()
    }
}

/// One dry-run pod creation: milliseconds, and the stamp the created pod carries.
/// Creates `pod` (server-side dry run): how long it took (ms), the stamp it got, and whether the
/// patching no-op marked it.
async fn create_pod(api: &Api<Pod>, pod: &Pod) -> anyhow::Result<(f64, Option<String>, bool)> {
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let t = Instant::now();
    let created = api.create(&pp, pod).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mut annotations = created.metadata.annotations.unwrap_or_default();
    let marked = annotations.contains_key(noop_webhook::NOOP_PATCH_ANNOTATION);
    Ok((ms, annotations.remove(CONFIG_HASH), marked))
}

/// Which mutating webhook the API server calls on pod creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hook {
    Kreload,
    Noop,
    /// The no-op process answering with a one-annotation patch: a diagnostic of what any patch
    /// costs the API server, not part of the reported ratio.
    PatchingNoop,
    Neither,
}

impl Hook {
    const ALL: [Hook; 4] = [Hook::Kreload, Hook::Noop, Hook::PatchingNoop, Hook::Neither];
}

/// The no-op webhook's process (see `scale/noop_webhook.rs`); stops when dropped.
struct NoopWebhook {
    child: Child,
    url: String,
    ca_pem: String,
    http: reqwest::Client,
}

impl NoopWebhook {
    fn start() -> anyhow::Result<NoopWebhook> {
        use base64::Engine;
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE, "noop-webhook")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start the no-op webhook")?;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |prefix: &str| -> anyhow::Result<String> {
            let line = lines.next().context("the no-op webhook exited")??;
            line.strip_prefix(prefix)
                .map(str::to_owned)
                .with_context(|| format!("the no-op webhook said {line:?}"))
        };
        let port = next("port ")?;
        let ca_pem =
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(next("ca ")?)?)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
            .build()?;
        Ok(NoopWebhook {
            child,
            url: format!("https://127.0.0.1:{port}"),
            ca_pem,
            http,
        })
    }

    /// Reviews answered so far.
    async fn served(&self) -> anyhow::Result<u64> {
        let text = self
            .http
            .get(format!("{}/count", self.url))
            .send()
            .await?
            .text()
            .await?;
        Ok(text.trim().parse()?)
    }

    /// kreload's mutating webhook configuration, renamed and pointed at the no-op (`patching`:
    /// at its patching route): the same rules, selectors, failure policy and timeout.
    fn configuration(
        &self,
        kreload: &MutatingWebhookConfiguration,
        patching: bool,
    ) -> MutatingWebhookConfiguration {
        use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
        let mut c = kreload.clone();
        let (config, webhook, path) = if patching {
            (NOOP_PATCH_WEBHOOK_CONFIG, NOOP_PATCH_WEBHOOK, "admit-patch")
        } else {
            (NOOP_WEBHOOK_CONFIG, NOOP_WEBHOOK, "admit")
        };
        c.metadata = ObjectMeta {
            name: Some(config.into()),
            ..Default::default()
        };
        for w in c.webhooks.iter_mut().flatten() {
            w.name = webhook.into();
            w.client_config = WebhookClientConfig {
                url: Some(format!("{}/{path}", self.url)),
                ca_bundle: Some(ByteString(self.ca_pem.clone().into_bytes())),
                service: None,
            };
        }
        c
    }
}

impl Drop for NoopWebhook {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const NOOP_WEBHOOK_CONFIG: &str = "kreload-bench-noop";
const NOOP_WEBHOOK: &str = "noop.kreload.dev";
const NOOP_PATCH_WEBHOOK_CONFIG: &str = "kreload-bench-noop-patch";
const NOOP_PATCH_WEBHOOK: &str = "noop-patch.kreload.dev";

/// Registers exactly the webhook `hook` names (kreload's, the no-op's or neither) and waits until
/// the API server calls exactly that one: kreload's stamps the probe pod, the no-op's counts it.
async fn use_hook(
    configs: &Api<MutatingWebhookConfiguration>,
    kreload_config: &MutatingWebhookConfiguration,
    noop: &NoopWebhook,
    pods: &Api<Pod>,
    probe: &Pod,
    hook: Hook,
) -> anyhow::Result<()> {
    let present: Vec<String> = configs
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let has = |name: &str| present.iter().any(|n| n == name);
    for (name, wanted, config) in [
        ("kreload", hook == Hook::Kreload, kreload_config.clone()),
        (
            NOOP_WEBHOOK_CONFIG,
            hook == Hook::Noop,
            noop.configuration(kreload_config, false),
        ),
        (
            NOOP_PATCH_WEBHOOK_CONFIG,
            hook == Hook::PatchingNoop,
            noop.configuration(kreload_config, true),
        ),
    ] {
        if wanted && !has(name) {
            configs.create(&PostParams::default(), &config).await?;
        } else if !wanted && has(name) {
            configs.delete(name, &DeleteParams::default()).await?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = noop.served().await?;
        let (_, stamp, marked) = create_pod(pods, probe).await?;
        let noop_called = noop.served().await? > before;
        if stamp.is_some() == (hook == Hook::Kreload)
            && noop_called == matches!(hook, Hook::Noop | Hook::PatchingNoop)
            && marked == (hook == Hook::PatchingNoop)
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the API server did not switch to {hook:?} within 60s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pod creation times (ms, sorted) by webhook and pod: `plain` has no stamp (kreload answers with
/// a patch), `stamped` is a pod of an opted-in Deployment made from its stamped template
/// (kreload answers without one).
struct PodTimes {
    plain: BTreeMap<Hook, Vec<f64>>,
    stamped: BTreeMap<Hook, Vec<f64>>,
    /// Mutating reviews kreload answered with a patch and without, while it was registered.
    kreload_patched: f64,
    kreload_allowed: f64,
    /// (sum s, count) of the webhook calls as the API server times them: kreload's, the no-op's;
    /// and kreload's handler as it times itself.
    api_kreload: (f64, f64),
    api_noop: (f64, f64),
    api_noop_patch: (f64, f64),
    handler: (f64, f64),
}

impl PodTimes {
    fn p50(&self, stamped: bool, hook: Hook) -> f64 {
        let by = if stamped { &self.stamped } else { &self.plain };
        percentile(&by[&hook], 0.5)
    }

    /// Median added by `hook`: its median minus the median with no webhook.
    fn added(&self, stamped: bool, hook: Hook) -> f64 {
        self.p50(stamped, hook) - self.p50(stamped, Hook::Neither)
    }
}

/// Pod creation with kreload's mutating webhook, with the no-op webhook, and with neither, in
/// `rounds` interleaved rounds (the order rotates each round), `per_condition` pods of each kind
/// per webhook in all. Leaves kreload's webhook registered, and the no-op's deleted.
async fn pod_overhead(
    client: &Client,
    plan: &Plan,
    stamps: &Stamps,
    kreload_health: &str,
    per_condition: usize,
) -> anyhow::Result<PodTimes> {
    let w = &plan.workloads[0];
    let stamped_from = plan
        .workloads
        .iter()
        .filter(|o| o.namespace == w.namespace && o.policy == Policy::Auto)
        .find_map(|o| Some((o, stamps.get(&o.namespace, &o.name).stamp?)))
        .context("no stamped opted-in Deployment in the first namespace")?;
    let plain = bench_pod(plan, w, None);
    let stamped = bench_pod(plan, stamped_from.0, Some(&stamped_from.1));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &w.namespace);
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut saved = configs
        .get("kreload")
        .await
        .context("kreload's mutating webhook configuration")?;
    saved.metadata = ObjectMeta {
        name: saved.metadata.name.clone(),
        labels: saved.metadata.labels.clone(),
        annotations: saved.metadata.annotations.clone(),
        ..Default::default()
    };
    let noop = NoopWebhook::start()?;
    let rounds = 4;
    let per_round = per_condition.div_ceil(rounds);
    let mut times = PodTimes {
        plain: Hook::ALL.iter().map(|h| (*h, Vec::new())).collect(),
        stamped: Hook::ALL.iter().map(|h| (*h, Vec::new())).collect(),
        kreload_patched: 0.0,
        kreload_allowed: 0.0,
        api_kreload: (0.0, 0.0),
        api_noop: (0.0, 0.0),
        api_noop_patch: (0.0, 0.0),
        handler: (0.0, 0.0),
    };
    for round in 0..=rounds {
        for n in 0..Hook::ALL.len() {
            let hook = Hook::ALL[(n + round) % Hook::ALL.len()];
            use_hook(&configs, &saved, &noop, &pods, &plain, hook).await?;
            // Round 0 is the warm-up of each webhook and connection.
            let count = if round == 0 { 10 } else { per_round };
            let before = webhook_timings(client, kreload_health).await?;
            for _ in 0..count {
                let (ms, stamp, _) = create_pod(&pods, &plain).await?;
                ensure!(
                    stamp.is_some() == (hook == Hook::Kreload),
                    "a pod created with {hook:?} is stamped: {}",
                    stamp.is_some()
                );
                if round > 0 {
                    times.plain.get_mut(&hook).unwrap().push(ms);
                }
                let (ms, stamp, _) = create_pod(&pods, &stamped).await?;
                ensure!(
                    stamp.as_deref() == Some(stamped_from.1.as_str()),
                    "kreload changed the stamp of a pod made from a stamped template"
                );
                if round > 0 {
                    times.stamped.get_mut(&hook).unwrap().push(ms);
                }
            }
            let after = webhook_timings(client, kreload_health).await?;
            if round > 0 {
                let d = |i: usize| (after[i].0 - before[i].0, after[i].1 - before[i].1);
                let add = |acc: &mut (f64, f64), x: (f64, f64)| {
                    acc.0 += x.0;
                    acc.1 += x.1;
                };
                match hook {
                    Hook::Kreload => {
                        add(&mut times.api_kreload, d(0));
                        add(&mut times.handler, d(1));
                        times.kreload_patched += after[3].1 - before[3].1;
                        times.kreload_allowed += after[4].1 - before[4].1;
                    }
                    Hook::Noop => add(&mut times.api_noop, d(2)),
                    Hook::PatchingNoop => add(&mut times.api_noop_patch, d(5)),
                    Hook::Neither => {}
                }
            }
        }
    }
    use_hook(&configs, &saved, &noop, &pods, &plain, Hook::Kreload).await?;
    for v in times.plain.values_mut().chain(times.stamped.values_mut()) {
        v.sort_by(f64::total_cmp);
    }
    Ok(times)
}

// ---------------------------------------------------------------------------------------------

struct Summary {
    configs: usize,
    workloads: usize,
    ready_s: f64,
    rss_mb: f64,
    p50: f64,
    p99: f64,
    lists: f64,
    patches: f64,
    pod_overhead_ms: f64,
    noop_overhead_ms: f64,
}

async fn wait_for_service_account(client: &Client, ns: &str) -> anyhow::Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt("default").await?.is_none() {
        ensure!(
            Instant::now() < deadline,
            "no default ServiceAccount in {ns}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn body(s: &Settings, kubeconfig: &Path) -> anyhow::Result<Summary> {
    let client = client(kubeconfig).await?;
    let plan = plan(s);
    let out_dir = repo().join("target/scale-bench");
    std::fs::create_dir_all(&out_dir)?;
    let total_bytes: usize = plan.configs.iter().map(ConfigPlan::bytes).sum();
    println!(
        "scale: {} namespaces, {} ConfigMaps + {} Secrets ({:.1} MB of values, {} B to {} B per config), {} Deployments (replicas {})",
        plan.namespaces.len(),
        plan.configs
            .iter()
            .filter(|c| c.kind == Kind::ConfigMap)
            .count(),
        plan.configs
            .iter()
            .filter(|c| c.kind == Kind::Secret)
            .count(),
        total_bytes as f64 / 1e6,
        plan.configs
            .iter()
            .map(ConfigPlan::bytes)
            .min()
            .unwrap_or(0),
        plan.configs
            .iter()
            .map(ConfigPlan::bytes)
            .max()
            .unwrap_or(0),
        plan.workloads.len(),
        s.replicas,
    );

    // --- Fill the cluster ----------------------------------------------------------------
    let t = Instant::now();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in &plan.namespaces {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        ns_api.create(&PostParams::default(), &namespace).await?;
    }
    let created = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(plan.configs.iter().cloned())
        .map(|c| {
            let client = client.clone();
            let created = &created;
            async move {
                let name = format!("{}/{}", c.namespace, c.name);
                create_config(client, c)
                    .await
                    .with_context(|| format!("create {name}"))?;
                let n = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if n.is_multiple_of(2000) {
                    eprintln!("scale: {n} configs created");
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let configs_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    futures::stream::iter(plan.workloads.iter())
        .map(|w| {
            let client = client.clone();
            let plan = &plan;
            async move {
                let d = deployment(plan, w, s.replicas)?;
                Api::<Deployment>::namespaced(client, &w.namespace)
                    .create(&PostParams::default(), &d)
                    .await
                    .with_context(|| format!("create {}/{}", w.namespace, w.name))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    println!(
        "scale: created {} configs in {configs_s:.1}s and {} Deployments in {:.1}s",
        plan.configs.len(),
        plan.workloads.len(),
        t.elapsed().as_secs_f64()
    );
    wait_for_service_account(&client, &plan.workloads[0].namespace).await?;

    let stamps = Stamps::start(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    while stamps.len() < plan.workloads.len() {
        ensure!(
            Instant::now() < deadline,
            "the Deployment watch did not list every Deployment"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Distinct workloads for the two latency runs, every policy and way represented.
    let mut order: Vec<usize> = (0..plan.workloads.len()).collect();
    let mut rng = Rng(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let updates = s.updates.min(order.len() / 2);
    let (run_a, run_b) = (&order[..updates], &order[updates..2 * updates]);

    // --- Optional: memory of other kreload builds, started in turn (A/B/A) ------------------
    if let Ok(list) = std::env::var("KRELOAD_SCALE_COMPARE") {
        for (n, binary) in list.split(',').filter(|b| !b.is_empty()).enumerate() {
            let mut k = Kreload::start_binary(
                Path::new(binary),
                kubeconfig,
                &["--coalesce-window", "0s", "--min-roll-interval", "0s"],
                out_dir.join(format!("kreload-compare-{n}.log")),
            )?;
            let (ready, _) = k.wait_ready(Duration::from_secs(600)).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (rss, hwm) = k.memory_mb();
            let split = k.rss_split();
            tokio::time::sleep(Duration::from_secs(8)).await;
            let (rss_10, _) = k.memory_mb();
            println!(
                "scale: compare: {binary}: ready after {ready:.2}s; RSS {rss:.1} MiB 2 s after ({split}; peak {hwm:.1} MiB), {rss_10:.1} MiB 10 s after"
            );
            k.stop();
        }
    }

    // --- Phase A: coalescing and storm guard off -----------------------------------------
    println!("scale: phase A: kreload run --local --coalesce-window 0s --min-roll-interval 0s");
    let mut kreload = Kreload::start(
        kubeconfig,
        &["--coalesce-window", "0s", "--min-roll-interval", "0s"],
        out_dir.join("kreload-phase-a.log"),
    )?;
    let (ready_s, webhooks_s) = kreload.wait_ready(Duration::from_secs(600)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_mb, hwm_mb) = kreload.memory_mb();
    println!(
        "scale: phase A: ready (/readyz 200) after {ready_s:.2}s, webhooks registered after {webhooks_s:.2}s; RSS {rss_mb:.1} MiB ({}; peak {hwm_mb:.1} MiB) after sync",
        kreload.rss_split()
    );
    // Nothing changed while kreload was down: starting must roll nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let startup_rolls = stamps.total_changes();

    let before = request_counts(&client).await?;
    let changes_before = stamps.total_changes();
    let lat_a = reload_latencies(
        &client,
        &plan,
        &stamps,
        run_a,
        1,
        1_000,
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = request_counts(&client).await?;
    let rolls_a = stamps.total_changes() - changes_before;
    let d = delta(&before, &after);
    print_delta("scale: phase A", &d, run_a.len());
    let lists = sum(&d, "LIST", &KRELOAD_RESOURCES) / run_a.len() as f64;
    let patches = sum(&d, "PATCH", &["deployments"]) / run_a.len() as f64;
    println!(
        "scale: phase A: {} changes, {} rolls seen, {} missed; reload latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; rolls at start-up {startup_rolls}",
        run_a.len(),
        rolls_a,
        lat_a.missed,
        percentile(&lat_a.ms, 0.5),
        percentile(&lat_a.ms, 0.9),
        percentile(&lat_a.ms, 0.99),
        lat_a.ms.last().copied().unwrap_or(f64::NAN),
    );

    // A change to a config that every Deployment of a namespace consumes (envFrom): one PATCH
    // per affected workload (auto and configmap-auto ones; search ones need `match`).
    let shared = plan
        .configs
        .iter()
        .position(|c| c.name == "shared-cm")
        .unwrap();
    let affected: Vec<&WorkloadPlan> = plan
        .workloads
        .iter()
        .filter(|w| w.namespace == plan.configs[shared].namespace)
        .filter(|w| matches!(w.policy, Policy::Auto | Policy::ConfigMapAuto))
        .collect();
    let befores: Vec<Option<String>> = affected
        .iter()
        .map(|w| stamps.get(&w.namespace, &w.name).stamp)
        .collect();
    let before = request_counts(&client).await?;
    let t = Instant::now();
    change_config(&client, &plan.configs[shared], 77).await?;
    let mut fanout_ms = Vec::new();
    for (w, b) in affected.iter().zip(&befores) {
        if let Some(at) = stamps
            .changed(&w.namespace, &w.name, b, Duration::from_secs(30))
            .await
        {
            fanout_ms.push(at.saturating_duration_since(t).as_secs_f64() * 1e3);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = request_counts(&client).await?;
    let d = delta(&before, &after);
    fanout_ms.sort_by(f64::total_cmp);
    println!(
        "scale: fan-out: one change to {}/shared-cm affecting {} Deployments: {} rolled, first after {:.0} ms, p50 {:.0} ms, last after {:.0} ms; PATCH deployments {:.0}, LIST {:.0}",
        plan.configs[shared].namespace,
        affected.len(),
        fanout_ms.len(),
        fanout_ms.first().copied().unwrap_or(f64::NAN),
        percentile(&fanout_ms, 0.5),
        fanout_ms.last().copied().unwrap_or(f64::NAN),
        sum(&d, "PATCH", &["deployments"]),
        sum(&d, "LIST", &KRELOAD_RESOURCES),
    );

    let t = pod_overhead(&client, &plan, &stamps, &kreload.health, s.pods).await?;
    let mean_ms = |(sum, count): (f64, f64)| sum / count.max(1.0) * 1e3;
    println!(
        "scale: pod creation (server-side dry-run, {} of each pod per webhook, 4 interleaved rounds of kreload / a no-op webhook / a no-op that patches / no webhook):",
        t.plain[&Hook::Neither].len()
    );
    for (stamped, what) in [
        (
            false,
            "a pod without a stamp (kreload answers with a patch)",
        ),
        (
            true,
            "a pod of an opted-in Deployment from its stamped template (kreload answers without a patch)",
        ),
    ] {
        let by = if stamped { &t.stamped } else { &t.plain };
        println!(
            "  {what}: p50 kreload {:.2} ms, no-op {:.2} ms, none {:.2} ms (p90 {:.2} / {:.2} / {:.2}); added by kreload {:.2} ms, by the no-op {:.2} ms, ratio {:.2}",
            t.p50(stamped, Hook::Kreload),
            t.p50(stamped, Hook::Noop),
            t.p50(stamped, Hook::Neither),
            percentile(&by[&Hook::Kreload], 0.9),
            percentile(&by[&Hook::Noop], 0.9),
            percentile(&by[&Hook::Neither], 0.9),
            t.added(stamped, Hook::Kreload),
            t.added(stamped, Hook::Noop),
            t.added(stamped, Hook::Kreload) / t.added(stamped, Hook::Noop),
        );
    }
    println!(
        "  the same pods with a no-op that answers with a one-annotation patch (what any patch costs the API server): p50 {:.2} / {:.2} ms, added {:.2} / {:.2} ms (without a stamp / stamped template); kreload's added latency for the pod without a stamp against it: ratio {:.2}",
        t.p50(false, Hook::PatchingNoop),
        t.p50(true, Hook::PatchingNoop),
        t.added(false, Hook::PatchingNoop),
        t.added(true, Hook::PatchingNoop),
        t.added(false, Hook::Kreload) / t.added(false, Hook::PatchingNoop),
    );
    println!(
        "scale: the webhook call as the API server times it (the patch applied included): kreload mean {:.2} ms, no-op mean {:.2} ms, patching no-op mean {:.2} ms; kreload's handler: mean {:.3} ms; kreload answered {:.0} reviews with a patch and {:.0} without",
        mean_ms(t.api_kreload),
        mean_ms(t.api_noop),
        mean_ms(t.api_noop_patch),
        mean_ms(t.handler),
        t.kreload_patched,
        t.kreload_allowed,
    );
    let (rss_end, hwm_end) = kreload.memory_mb();
    println!("scale: phase A: RSS at the end {rss_end:.1} MiB (peak {hwm_end:.1} MiB)");
    kreload.stop();

    // --- Phase B: the defaults (1s coalescing window, 10s storm guard) ---------------------
    println!(
        "scale: phase B: kreload run --local (default --coalesce-window 1s, --min-roll-interval 10s)"
    );
    let mut kreload = Kreload::start(kubeconfig, &[], out_dir.join("kreload-phase-b.log"))?;
    let changes_before = stamps.total_changes();
    let (ready_b, _) = kreload.wait_ready(Duration::from_secs(600)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_b, _) = kreload.memory_mb();
    let restart_rolls = stamps.total_changes() - changes_before;
    println!(
        "scale: phase B: ready after {ready_b:.2}s (restart with {} stamped workloads), RSS {rss_b:.1} MiB; rolls at start-up {restart_rolls}",
        run_a.len() + fanout_ms.len()
    );
    let before = request_counts(&client).await?;
    let changes_before = stamps.total_changes();
    let lat_b = reload_latencies(
        &client,
        &plan,
        &stamps,
        run_b,
        8,
        9_000,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = request_counts(&client).await?;
    let rolls_b = stamps.total_changes() - changes_before;
    print_delta("scale: phase B", &delta(&before, &after), run_b.len());
    println!(
        "scale: phase B: {} changes (8 at a time, distinct workloads), {} rolls seen, {} missed; reload latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        run_b.len(),
        rolls_b,
        lat_b.missed,
        percentile(&lat_b.ms, 0.5),
        percentile(&lat_b.ms, 0.9),
        percentile(&lat_b.ms, 0.99),
        lat_b.ms.last().copied().unwrap_or(f64::NAN),
    );
    kreload.stop();
    ensure!(
        lat_a.missed == 0 && lat_b.missed == 0,
        "some changes were not rolled within the timeout"
    );

    Ok(Summary {
        configs: plan.configs.len(),
        workloads: plan.workloads.len(),
        ready_s,
        rss_mb,
        p50: percentile(&lat_a.ms, 0.5),
        p99: percentile(&lat_a.ms, 0.99),
        lists,
        patches,
        pod_overhead_ms: t.added(false, Hook::Kreload),
        noop_overhead_ms: t.added(false, Hook::Noop),
    })
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("noop-webhook") {
        return noop_webhook::main();
    }
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let settings = Settings::from_env();
    let started = Instant::now();
    let result = (|| -> anyhow::Result<Summary> {
        let cluster = Cluster::up()?;
        eprintln!(
            "scale: cluster up in {:.0}s",
            started.elapsed().as_secs_f64()
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let outcome = rt.block_on(async {
            tokio::select! {
                r = tokio::time::timeout(settings.timeout, body(&settings, &cluster.kubeconfig)) => {
                    r.unwrap_or_else(|_| Err(anyhow::anyhow!("the benchmark did not finish within {:?}", settings.timeout)))
                }
                _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            }
        });
        // Background tasks (the Deployment watch) end with the runtime, before the cluster.
        rt.shutdown_timeout(Duration::from_secs(5));
        drop(cluster);
        outcome
    })();
    match result {
        Ok(s) => println!(
            "scale configs={} workloads={} ready_s={:.2} rss_mb={:.1} reload_p50_ms={:.1} reload_p99_ms={:.1} lists_per_change={:.2} patches_per_change={:.2} pod_create_overhead_ms={:.2} noop_webhook_overhead_ms={:.2} overhead_ratio={:.2}",
            s.configs,
            s.workloads,
            s.ready_s,
            s.rss_mb,
            s.p50,
            s.p99,
            s.lists,
            s.patches,
            s.pod_overhead_ms,
            s.noop_overhead_ms,
            s.pod_overhead_ms / s.noop_overhead_ms,
        ),
        Err(e) => {
            eprintln!(
                "scale: failed after {:.0}s: {e:#}",
                started.elapsed().as_secs_f64()
            );
            std::process::exit(1);
        }
    }
}
