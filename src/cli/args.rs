//! Command-line arguments. Flag names, syntax and defaults follow Reloader's where they exist;
//! Reloader's other flags and environment variables are in [`reloader`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::domain::annotations::DEFAULT_NAMESPACE;
use crate::domain::config::ConfigKind;
use crate::domain::extra::ExtraWorkload;
use crate::domain::selector::{Selector, from_reloader_flags};
use crate::domain::trigger::Filters;
use crate::domain::workload::WorkloadKind;
use crate::state::namespaces::NamespaceFilter;

mod reloader;
pub use reloader::*;

/// Durations in Go's notation, as Reloader's flags take them ("1s", "500ms", "1m30s").
fn duration(s: &str) -> Result<Duration, String> {
    crate::domain::policy::parse_go_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 1s, 500ms, 2m)"))
}

#[derive(Parser, Debug)]
#[command(
    name = "kreload",
    version,
    about = "Rolls exactly the workloads whose consumed ConfigMaps and Secrets changed"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the admission webhooks and watch configs.
    Run(Box<RunArgs>),
    /// Lint manifests offline with exactly the validating webhook's rules (exits 1 on a violation).
    Check(CheckArgs),
    /// Which configs can roll a workload, and which rule step lets each in or keeps it out.
    Explain(ExplainArgs),
    /// Per opted-in workload: its trigger set, template stamp vs current hash, pods and stale pods.
    Status(StatusArgs),
    /// Print kreload chart values for a Reloader Helm values file, and what has no equivalent.
    Migrate(MigrateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Reloader's Helm values file (YAML; `-` for stdin).
    #[arg(long = "reloader-values", required = true)]
    pub reloader_values: PathBuf,

    /// The namespace Reloader ran in: with `reloader.watchGlobally: false` it watched only that
    /// namespace, which kreload then watches.
    #[arg(long)]
    pub reloader_namespace: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Manifest files (YAML or JSON, multi-document; `-` for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,

    /// The annotation names kreload runs with (Reloader's --*-annotation flags).
    #[command(flatten)]
    pub annotation_names: AnnotationNameArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Path to a kubeconfig; otherwise KUBECONFIG, ~/.kube/config, or the in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace kreload runs in (holds its hash key Secret).
    #[arg(long = "kreload-namespace", env = "KRELOAD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub kreload_namespace: String,

    /// As kreload runs: `--auto-reload-all` and the global filters.
    #[command(flatten)]
    pub filters: FilterArgs,

    /// The annotation names kreload runs with (Reloader's --*-annotation flags).
    #[command(flatten)]
    pub annotation_names: AnnotationNameArgs,
}

/// The flags that decide step 1 of the decision rule (and `--auto-reload-all`), for `run`, and
/// for `explain` and `status` to match how kreload runs.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Roll on any referenced config change even without annotations (`auto: "false"` opts out).
    // A boolean in Reloader too (Go never gives a boolean flag the next argument), so
    // `explain --auto-reload-all deployment/web` keeps the workload.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub auto_reload_all: bool,

    /// Config kinds to ignore: configMaps or secrets.
    #[arg(long, value_delimiter = ',')]
    pub resources_to_ignore: Vec<String>,

    /// Workload kinds never rolled: deployments, statefulsets, daemonsets, cronjobs, jobs, rollouts,
    /// deploymentconfigs.
    #[arg(long, value_delimiter = ',')]
    pub ignored_workload_types: Vec<String>,

    /// Only act in these namespaces (default: all).
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Never act in these namespaces.
    #[arg(long, value_delimiter = ',')]
    pub namespaces_to_ignore: Vec<String>,

    /// Only act in namespaces whose labels match this selector. Repeatable; Reloader's forms
    /// `key:value` and `key:*` (or `key=*`, "has the label") are read too.
    #[arg(long, action = ArgAction::Append)]
    pub namespace_selector: Vec<String>,

    /// Only configs whose labels match this selector trigger anything. Repeatable; Reloader's
    /// forms `key:value` and `key:*` (or `key=*`) are read too.
    #[arg(long, action = ArgAction::Append)]
    pub resource_label_selector: Vec<String>,

    /// Reloader: roll Argo Rollouts. Unset: kreload rolls them whenever the Rollout CRD is
    /// served; false: never (as Reloader).
    #[arg(long = "is-Argo-Rollouts", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub is_argo_rollouts: Option<bool>,

    /// Reloader: roll OpenShift DeploymentConfigs: true, false, or auto (empty) to roll them when
    /// the cluster serves apps.openshift.io/v1, which is also what kreload does without the flag.
    #[arg(long = "is-openshift", env = "IS_OPENSHIFT", value_parser = openshift, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub is_openshift: Option<OpenShift>,

    /// Reloader's single-namespace mode: act only in this namespace (when --namespaces is not
    /// given).
    #[arg(long = "kubernetes-namespace", env = "KUBERNETES_NAMESPACE")]
    pub kubernetes_namespace: Option<String>,
}

impl FilterArgs {
    /// The filters that depend on the config.
    pub fn filters(&self) -> anyhow::Result<Filters> {
        let mut ignored_kinds = BTreeSet::new();
        for r in &self.resources_to_ignore {
            match r.to_ascii_lowercase().as_str() {
                "configmaps" => ignored_kinds.insert(ConfigKind::ConfigMap),
                "secrets" => ignored_kinds.insert(ConfigKind::Secret),
                other => bail!("--resources-to-ignore takes configMaps or secrets, not {other:?}"),
            };
        }
        let resource_label_selector = self
            .resource_label_selector()
            .as_deref()
            .map(str::parse::<Selector>)
            .transpose()?;
        Ok(Filters {
            ignored_kinds,
            resource_label_selector,
            auto_reload_all: self.auto_reload_all,
        })
    }

    /// `--namespace-selector` in Kubernetes syntax (Reloader's list and legacy forms read).
    pub fn namespace_selector(&self) -> Option<String> {
        Some(from_reloader_flags(&self.namespace_selector)).filter(|s| !s.is_empty())
    }

    /// `--resource-label-selector` in Kubernetes syntax (Reloader's list and legacy forms read).
    pub fn resource_label_selector(&self) -> Option<String> {
        Some(from_reloader_flags(&self.resource_label_selector)).filter(|s| !s.is_empty())
    }

    /// The namespaces to act in: `--namespaces`, else Reloader's `KUBERNETES_NAMESPACE`, else
    /// none (all namespaces).
    pub fn watch_namespaces(&self) -> Vec<String> {
        let given: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if !given.is_empty() {
            return given;
        }
        self.kubernetes_namespace
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| vec![n.to_owned()])
            .unwrap_or_default()
    }

    /// The namespaces acted in, by a kreload running in `own_namespace`.
    pub fn namespace_filter(&self, own_namespace: &str) -> anyhow::Result<NamespaceFilter> {
        let selector = self
            .namespace_selector()
            .as_deref()
            .map(str::parse::<Selector>)
            .transpose()?;
        let set = |v: &[String]| v.iter().filter(|s| !s.is_empty()).cloned().collect();
        Ok(NamespaceFilter::excluding_system(
            set(&self.watch_namespaces()),
            set(&self.namespaces_to_ignore),
            selector,
            own_namespace,
        ))
    }

    /// `--ignored-workload-types`, plus `rollouts` under Reloader's `--is-Argo-Rollouts=false`
    /// and `deploymentconfigs` under its `--is-openshift=false`.
    pub fn ignored_workload_types(&self) -> anyhow::Result<BTreeSet<WorkloadKind>> {
        let mut kinds = workload_kinds(&self.ignored_workload_types)?;
        if self.is_argo_rollouts == Some(false) {
            kinds.insert(WorkloadKind::Rollout);
        }
        if self.is_openshift == Some(OpenShift::Off) {
            kinds.insert(WorkloadKind::DeploymentConfig);
        }
        Ok(kinds)
    }
}

/// Workload kinds by name, as `--ignored-workload-types` takes them.
pub fn workload_kinds(names: &[String]) -> anyhow::Result<BTreeSet<WorkloadKind>> {
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| {
            WorkloadKind::ALL
                .into_iter()
                .find(|k| k.plural().eq_ignore_ascii_case(n) || k.as_str().eq_ignore_ascii_case(n))
                .with_context(|| {
                    let known: Vec<&str> = WorkloadKind::ALL.iter().map(|k| k.plural()).collect();
                    format!(
                        "--ignored-workload-types: unknown kind {n:?} ({})",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

#[derive(Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The workload, as KIND/NAME (e.g. deployment/web).
    pub workload: String,

    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[arg(
        short = 'n',
        long,
        default_value = "default",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: String,

    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn log_format(s: &str) -> Result<LogFormat, String> {
    match s.to_ascii_lowercase().as_str() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not a log format (text or json)")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Path to a kubeconfig; otherwise KUBECONFIG, ~/.kube/config, or the in-cluster config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// Namespace kreload runs in (holds its hash key Secret).
    #[arg(long, env = "KRELOAD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,

    /// Local development mode: generate a CA and a serving certificate for 127.0.0.1, serve on a
    /// loopback port, and point the webhook configurations at it (clientConfig.url + caBundle).
    #[arg(long)]
    pub local: bool,

    /// Address the HTTPS admission server listens on (local mode: 127.0.0.1:0, a free port).
    #[arg(long)]
    pub listen: Option<SocketAddr>,

    /// Address of the plain-HTTP health and metrics server (/livez, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub health_listen: SocketAddr,

    /// Serving certificate (PEM), reloaded when it changes. Required unless --local.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key of the serving certificate (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// The global filters (step 1 of the decision rule) and `--auto-reload-all`.
    #[command(flatten)]
    pub filters: FilterArgs,

    /// Roll when a config that a workload uses is created.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub reload_on_create: bool,

    /// Roll when a config that a workload uses is deleted.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub reload_on_delete: bool,

    /// Changes for one workload within this window become one roll ("0s" disables).
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub coalesce_window: Duration,

    /// Storm guard: a workload rolls at most once per interval; later changes are deferred and
    /// merged into the next roll, never dropped ("0s" disables).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub min_roll_interval: Duration,

    /// Cluster-wide pacing: at most this many rolls start in any minute, across all workloads;
    /// the others wait their turn, never dropped (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_rolls_per_minute: u32,

    /// Cluster-wide pacing: at most this many rollouts started by kreload are in progress at
    /// once (a rollout counts until its controller has rolled it out, at most 10 minutes; 0: no
    /// limit).
    #[arg(long, default_value_t = 0)]
    pub max_concurrent_rolls: u32,

    /// Also roll this kind, with its pod template at this JSON pointer, when the cluster serves
    /// it (looked for at start): GROUP/VERSION/RESOURCE:JSONPOINTER, e.g.
    /// serving.knative.dev/v1/services:/spec/template. Repeatable, up to 8.
    #[arg(
        long = "extra-workload",
        value_name = "GROUP/VERSION/RESOURCE:JSONPOINTER"
    )]
    pub extra_workloads: Vec<ExtraWorkload>,

    /// Several replicas: elect one, through a Lease in kreload's namespace, to roll workloads
    /// (all serve admission).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub enable_ha: bool,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "kreload")]
    pub lease_name: String,

    /// How long a leader's lease lasts without renewal.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub lease_duration: Duration,

    /// This replica's identity in the Lease and in Events (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Name of the webhook configurations kreload registers (local mode) or keeps the CA bundle
    /// of (self-managed certificates).
    #[arg(long, default_value = "kreload")]
    pub webhook_config_name: String,

    /// Self-managed certificates: kreload creates a CA and a serving certificate, keeps them in
    /// the Secret --cert-secret, writes the CA bundle into its webhook configurations, and
    /// rotates before expiry.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set, conflicts_with_all = ["local", "tls_cert_file"])]
    pub self_managed_certs: bool,

    /// Self-managed: DNS names and IPs of the serving certificate (default: the kreload Service's
    /// names in --namespace).
    #[arg(long, value_delimiter = ',')]
    pub cert_names: Vec<String>,

    /// Self-managed: the Secret holding the certificate.
    #[arg(long, default_value = "kreload-webhook-tls")]
    pub cert_secret: String,

    /// Self-managed: how long a certificate (and its CA) is valid.
    #[arg(long, default_value = "8760h", value_parser = duration)]
    pub cert_validity: Duration,

    /// Self-managed: rotate when less than this is left.
    #[arg(long, default_value = "720h", value_parser = duration)]
    pub cert_renew_before: Duration,

    /// Self-managed: how often to check the certificate (and follow other replicas' rotations).
    #[arg(long, default_value = "1m", value_parser = duration)]
    pub cert_check_interval: Duration,

    /// Log format: text or json (Reloader's empty value means text).
    #[arg(long, default_value = "text", value_parser = log_format)]
    pub log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace; Reloader's warning, fatal and panic too), or a
    /// tracing filter directive.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    #[command(flatten)]
    pub reloader: ReloaderArgs,

    /// Close keep-alive webhook connections with no request for this long (default: the server's
    /// limit, longer than the API server's own). For tests.
    #[arg(long, hide = true, env = "KRELOAD_WEBHOOK_IDLE_TIMEOUT", value_parser = duration)]
    pub webhook_idle_timeout: Option<Duration>,

    /// Exit when standard input closes: lets a test or a supervisor tie kreload's life to its own.
    #[arg(long, hide = true)]
    pub exit_on_stdin_close: bool,
}
