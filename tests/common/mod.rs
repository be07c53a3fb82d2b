//! Helpers shared by the end-to-end tests: a client for the harness cluster, a throwaway
//! namespace per test, kreload as a child process, and waits on real cluster state.
//!
//! The tests need the harness control plane (`tests/cluster/up`). Without it they fail with a
//! message that says how to start it; they never skip.

#![allow(dead_code)]

pub mod observe;
pub mod policy;
pub mod workloads;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// Where `tests/cluster/up` writes the admin kubeconfig, unless KRELOAD_TEST_KUBECONFIG says.
pub fn kubeconfig_path() -> PathBuf {
    if let Ok(p) = std::env::var("KRELOAD_TEST_KUBECONFIG") {
        return PathBuf::from(p);
    }
    let state = std::env::var("KRELOAD_CLUSTER_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".state/cluster"));
    state.join("admin.kubeconfig")
}

fn no_cluster(detail: impl std::fmt::Display) -> ! {
    panic!(
        "no harness cluster reachable ({detail}).\n\
         Start one with `tests/cluster/up` (it prints the kubeconfig path), or point \
         KRELOAD_TEST_KUBECONFIG at an admin kubeconfig. End-to-end tests never skip."
    )
}

/// A client for the harness cluster; panics with instructions when there is none.
pub async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| no_cluster(format!("cannot read {}: {e}", path.display())));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| no_cluster(e));
    let client = Client::try_from(config).unwrap_or_else(|e| no_cluster(e));
    if let Err(e) = client.apiserver_version().await {
        no_cluster(format!("{} does not answer: {e}", path.display()));
    }
    client
}

/// A namespace for one test, deleted when dropped (best effort, in the background).
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        Self::with_labels(client, prefix, &[]).await
    }

    /// A test namespace carrying `labels` besides the usual `kreload-e2e: "true"` (for tests of
    /// namespace selectors).
    pub async fn with_labels(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        let suffix: u32 = rand_suffix();
        let name = format!("{prefix}-{suffix:08x}");
        let api: Api<Namespace> = Api::all(client.clone());
        let mut all_labels: std::collections::BTreeMap<String, String> =
            [("kreload-e2e".to_string(), "true".to_string())].into();
        for (k, v) in labels {
            all_labels.insert(k.to_string(), v.to_string());
        }
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all_labels),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        // Pods need the default ServiceAccount, which the controller manager creates.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_for(
            "the default ServiceAccount",
            Duration::from_secs(30),
            || async { sa.get_opt("default").await.ok().flatten().map(|_| ()) },
        )
        .await;
        TestNamespace {
            name,
            client: client.clone(),
        }
    }

    /// The client this namespace was created with.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    /// Deletes the namespace (its deletion finishes in the background). The test's runtime is
    /// ending, so the request runs on a runtime of its own.
    fn drop(&mut self) {
        let name = self.name.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let api: Api<Namespace> = Api::all(client().await);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join()
        .ok();
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}

/// Polls `check` until it returns `Some`, or panics naming what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Deployment of `replicas` pods (kwok fakes the containers) with the given template spec.
pub fn deployment(
    name: &str,
    replicas: i32,
    annotations: serde_json::Value,
    pod_spec: serde_json::Value,
) -> Deployment {
    let mut spec = pod_spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "registry.invalid/app:1"}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec}
        }
    }))
    .expect("valid Deployment")
}

/// The ReplicaSets a Deployment owns.
pub async fn replica_sets(ns: &TestNamespace, deployment: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = ns.api();
    let list = api
        .list(&ListParams::default().labels(&format!("app={deployment}")))
        .await
        .expect("list ReplicaSets");
    list.items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.kind == "Deployment" && o.name == deployment)
        })
        .collect()
}

/// Waits until the Deployment's rollout is complete: the newest generation observed, every
/// replica updated and available, and no old ReplicaSet keeping pods.
pub async fn wait_rollout(ns: &TestNamespace, name: &str) -> Deployment {
    let api: Api<Deployment> = ns.api();
    wait_for(
        &format!("Deployment {}/{name} to finish rolling out", ns.name),
        Duration::from_secs(90),
        || async {
            let d = api.get(name).await.ok()?;
            let want = d.spec.as_ref()?.replicas.unwrap_or(1);
            let st = d.status.as_ref()?;
            let done = st.observed_generation >= d.metadata.generation
                && st.updated_replicas.unwrap_or(0) == want
                && st.ready_replicas.unwrap_or(0) == want
                && st.available_replicas.unwrap_or(0) == want
                && st.replicas.unwrap_or(0) == want;
            if !done {
                return None;
            }
            // Exactly one ReplicaSet keeps pods (the current one, all available); every old one is at 0.
            let sets = replica_sets(ns, name).await;
            let with_pods: Vec<_> = sets
                .iter()
                .filter(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0))
                .collect();
            let settled = with_pods.len() == 1
                && with_pods[0]
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0)
                    == want;
            settled.then_some(d)
        },
    )
    .await
}

/// The pods of a Deployment (by its app label), with their readiness.
pub async fn pods(ns: &TestNamespace, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = ns.api();
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A ServiceAccount `sa` in `home`, for a kreload run with only the rights a test grants it
/// ([`grant`]): returns a directory holding its token kubeconfig (`sa.kubeconfig`) and a
/// serving certificate for 127.0.0.1 (`tls.crt`, `tls.key`).
pub async fn limited_identity(home: &TestNamespace, sa: &str) -> PathBuf {
    let sa_object: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": sa}})).unwrap();
    home.api::<k8s_openapi::api::core::v1::ServiceAccount>()
        .create(&PostParams::default(), &sa_object)
        .await
        .unwrap();
    let (ok, token, err) = kubectl(
        &["create", "token", sa, "-n", &home.name, "--duration=1h"],
        None,
    );
    assert!(ok, "kubectl create token: {err}");
    let dir = std::env::temp_dir().join(format!("kreload-e2e-{sa}-{}", home.name));
    std::fs::create_dir_all(&dir).unwrap();
    token_kubeconfig(token.trim(), &dir.join("sa.kubeconfig"));
    let certs = kreload::admission::tls::GeneratedCerts::generate(
        &["127.0.0.1".into()],
        Duration::from_secs(3600),
    )
    .unwrap();
    std::fs::write(dir.join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &certs.key_pem).unwrap();
    dir
}

/// A Role in `ns` granting `rules`, bound to ServiceAccount `sa` of namespace `home`.
pub async fn grant(client: &Client, ns: &str, home: &str, sa: &str, rules: serde_json::Value) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let name = format!("{sa}-{home}");
    let role: Role =
        serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": home}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
}

/// A kubeconfig for the harness that authenticates with `token` instead of the admin certificate.
pub fn token_kubeconfig(token: &str, path: &std::path::Path) {
    let admin = kube::config::Kubeconfig::read_from(kubeconfig_path()).expect("admin kubeconfig");
    let cluster = admin.clusters[0].cluster.clone().expect("a cluster");
    let mut c = json!({"server": cluster.server});
    match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => c["certificate-authority-data"] = json!(data),
        (None, Some(file)) => c["certificate-authority"] = json!(file),
        (None, None) => {}
    }
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "harness", "cluster": c}],
        "users": [{"name": "kreload", "user": {"token": token}}],
        "contexts": [{"name": "kreload", "context": {"cluster": "harness", "user": "kreload"}}],
        "current-context": "kreload",
    });
    std::fs::write(path, config.to_string()).unwrap();
}

/// The kreload binary the tests run: this build, or the one `KRELOAD_TEST_BIN` names (e.g. an
/// older one, to show a test fails on it).
pub fn kreload_bin() -> String {
    std::env::var("KRELOAD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kreload").to_owned())
}

/// A running kreload (`kreload run --local`) as a child process, logging to a file. It exits
/// when stopped, or when the test process dies (its stdin closes).
pub struct Kreload {
    child: std::sync::Mutex<std::process::Child>,
    pub log: PathBuf,
    pub health: String,
    /// `host:port` of the HTTPS admission server.
    pub admission: String,
}

impl Kreload {
    pub fn start(extra: &[&str]) -> Kreload {
        Self::start_with_env(extra, &[])
    }

    /// As [`Kreload::start`], with `env` set for the child (an older build ignores a variable
    /// it does not know, where it would refuse an unknown flag). Its log may be text or JSON
    /// (`--log-format json`).
    // The child is kept in the returned handle and waited for in `stop` (or exits with the test
    // process when its stdin closes), which the lint cannot see.
    #[allow(clippy::zombie_processes)]
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Kreload {
        let log = std::env::temp_dir().join(format!(
            "kreload-e2e-{}-{:08x}.log",
            std::process::id(),
            rand_suffix()
        ));
        // Port 0: the child picks its own ports and logs them (a port picked here and bound
        // later by the child can be taken in between by any outgoing connection).
        let mut child = std::process::Command::new(kreload_bin())
            .args(["run", "--local", "--exit-on-stdin-close", "--health-listen"])
            .arg("127.0.0.1:0")
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(extra)
            .envs(env.iter().copied())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create kreload log"))
            .spawn()
            .expect("start kreload");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("webhook configurations point here") {
                let admission =
                    logged_addr(&text, "admission").expect("kreload logs its admission address");
                let health = logged_addr(&text, "health").expect("kreload logs its health address");
                return Kreload {
                    child: std::sync::Mutex::new(child),
                    log,
                    health: format!("http://{health}"),
                    admission,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "kreload exited ({status}) before registering its webhooks; log (last lines):\n{}",
                    tail(&text, 80)
                );
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kreload did not register its webhooks within 60s; log (last lines):\n{}",
                    tail(&text, 80)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The process id of the kreload child.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Asks kreload to shut down gracefully (SIGTERM) and waits up to 20 s for it to exit; kills
    /// it after that. Returns the exit status when it exited on its own (or had already exited).
    pub fn terminate(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap();
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One kreload shared by every test of a test binary (tests run in parallel; kreload's webhook
/// configurations are cluster-wide, so one instance serves them all).
pub fn shared_kreload() -> &'static Kreload {
    static KRELOAD: std::sync::OnceLock<Kreload> = std::sync::OnceLock::new();
    KRELOAD.get_or_init(|| Kreload::start(&["--log-level", "debug"]))
}

/// Runs a program with `stdin` as its input; returns (success, stdout, stderr).
pub fn run_with_stdin(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    use std::io::Write;
    let program = program.as_ref();
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.to_string_lossy()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the harness kubectl; returns (success, stdout, stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_with_stdin(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/kubectl"),
        args,
        stdin,
    )
}

/// helm, built from its Go module by tests/helm/build (cached after the first build).
pub fn helm() -> &'static std::path::Path {
    static HELM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        let build = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/helm/build");
        let (ok, out, err) = run_with_stdin(&build, &[], None);
        assert!(ok, "tests/helm/build failed:\n{err}");
        PathBuf::from(
            out.lines()
                .last()
                .expect("build prints the helm path")
                .trim(),
        )
    })
}

/// The stamp on a Deployment's pod template.
pub fn template_stamp(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("kreload.dev/config-hash")
        .cloned()
}

/// An API error in one short line (the API server's message, cut at 200 characters), for
/// failure lists.
pub fn short(e: &kube::Error) -> String {
    let text = match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    };
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// The address kreload logged for `field` in its "listening" line, text (`field=ADDR`) or JSON
/// (`"field":"ADDR"`).
fn logged_addr(log: &str, field: &str) -> Option<String> {
    let text = format!("{field}=");
    let json = format!("\"{field}\":\"");
    log.lines().find_map(|l| {
        l.split(text.as_str())
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .or_else(|| {
                l.split(json.as_str())
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
            })
            .map(str::to_owned)
    })
}

/// The last `n` lines of `text`: where a failed start says why.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
