//! Command-line arguments. Flag names and defaults follow Reloader's where they exist.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::annotations::DEFAULT_NAMESPACE;

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
    Run(RunArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Path to a kubeconfig; otherwise KUBECONFIG, ~/.kube/config, or the in-cluster config.
    #[arg(long, env = "KUBECONFIG")]
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

    /// Roll on any referenced config change even without annotations (`auto: "false"` opts out).
    #[arg(long, default_value_t = false)]
    pub auto_reload_all: bool,

    /// Config kinds to ignore: configMaps or secrets.
    #[arg(long, value_delimiter = ',')]
    pub resources_to_ignore: Vec<String>,

    /// Only configs whose labels match this selector trigger anything.
    #[arg(long)]
    pub resource_label_selector: Option<String>,

    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log level (error, warn, info, debug, trace), or a tracing filter directive.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Exit when standard input closes: lets a test or a supervisor tie kreload's life to its own.
    #[arg(long, hide = true)]
    pub exit_on_stdin_close: bool,
}
