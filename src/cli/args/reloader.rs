//! Reloader's flags and environment variables that have no kreload flag of the same meaning.
//! Each is parsed and validated with Reloader's syntax, so a Reloader command line starts
//! kreload; [`notices`] gives the one start-up line for each that kreload implements
//! differently, ignores on purpose, or does not act on yet. The values that kreload does not act
//! on yet are kept in typed fields so that they can be wired in later.
//!
//! The reference for each flag and variable is docs/migrating-from-reloader.md.

use std::fmt;

use clap::{Args, ValueEnum};

use crate::cli::args::RunArgs;
pub use crate::domain::alert::AlertSink;
use crate::domain::annotations::{AnnotationNames, RELOADER_DOMAIN};
use crate::domain::policy::parse_bool;
use crate::domain::selector::from_reloader_flags;

/// A boolean as Reloader's flags take it: Go's `strconv.ParseBool` spellings (`true`, `false`,
/// `1`, `0`, `t`, `f`, `True`, `FALSE`, ...), and the empty string as false (Reloader's
/// string-typed booleans such as `--reload-on-create=` read it so).
pub fn go_bool(s: &str) -> Result<bool, String> {
    if s.is_empty() {
        return Ok(false);
    }
    parse_bool(s).ok_or_else(|| {
        format!("{s:?} is not a boolean (true or false; Go's spellings 1, 0, t, f, True, FALSE also work)")
    })
}

/// An http or https URL. Its `Debug` and `Display` show only the scheme and host: webhook URLs
/// (Slack's, for one) carry their credential in the path, and must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// The whole URL, for the one place that sends to it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]`: safe to log.
    pub fn redacted(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // Drop user:password@ if present.
        let host = authority.rsplit('@').next().unwrap_or_default();
        format!("{scheme}://{host}/…")
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({})", self.redacted())
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// clap's parser for [`HttpUrl`]: unlike a plain function, its error does not repeat the value.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpUrlParser;

impl clap::builder::TypedValueParser for HttpUrlParser {
    type Value = HttpUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<HttpUrl, clap::Error> {
        let name = arg.map_or_else(|| "a URL".to_owned(), |a| a.to_string());
        let invalid = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {name} (not repeated: it may hold a token): {why}\n"),
            )
        };
        let s = value.to_str().ok_or_else(|| invalid("not UTF-8".into()))?;
        http_url(s).map_err(invalid)
    }
}

/// Parses an http(s) URL with a host. The error never repeats the value: it may hold a token.
pub fn http_url(s: &str) -> Result<HttpUrl, String> {
    let s = s.trim();
    let uri: hyper::Uri = s
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected http://HOST/... or https://HOST/..."))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("expected an http:// or https:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(HttpUrl(s.to_owned()))
}

/// An annotation key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters (alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric).
pub fn annotation_key(s: &str) -> Result<String, String> {
    let bad =
        |why: &str| format!("{s:?} is not an annotation key: {why} (e.g. example.com/reload)");
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if name.is_empty() || name.len() > 63 {
        return Err(bad("the name must be 1 to 63 characters"));
    }
    if !name.starts_with(alnum)
        || !name.ends_with(alnum)
        || !name
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad(
            "the name takes letters, digits, '-', '_' and '.', and starts and ends with a letter or digit",
        ));
    }
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err(bad("the prefix must be a DNS subdomain (lower case)"));
        }
    }
    Ok(s.to_owned())
}

/// `--is-openshift` (`IS_OPENSHIFT`): Reloader's switch for OpenShift DeploymentConfigs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenShift {
    /// `auto` or empty: roll them when the cluster serves them (Reloader's discovery).
    Auto,
    On,
    Off,
}

/// Reloader's values for `--is-openshift`: a boolean (Go's spellings), or `auto` or the empty
/// string for discovery. Any other word is refused (Reloader reads it as `auto`).
pub fn openshift(s: &str) -> Result<OpenShift, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("auto") {
        return Ok(OpenShift::Auto);
    }
    match parse_bool(s) {
        Some(true) => Ok(OpenShift::On),
        Some(false) => Ok(OpenShift::Off),
        None => Err(format!(
            "{s:?} is not true, false or auto (Go's boolean spellings 1, 0, t, f, True, FALSE also work)"
        )),
    }
}

/// `--reload-strategy`: how Reloader makes a workload roll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReloadStrategy {
    /// Reloader adds an environment variable to the containers.
    EnvVars,
    /// Reloader writes an annotation on the pod template.
    Annotations,
}

/// `ALERT_SINK` as given: Reloader reads any other value as its raw webhook, so kreload does
/// too, and says so at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSinkArg {
    pub sink: AlertSink,
    /// Whether the value named a sink (rather than falling back to the webhook).
    pub recognized: bool,
    pub given: String,
}

pub fn alert_sink(s: &str) -> Result<AlertSinkArg, String> {
    let (sink, recognized) = AlertSink::read(s);
    Ok(AlertSinkArg {
        sink,
        recognized,
        given: s.trim().to_ascii_lowercase(),
    })
}

/// Reloader's ten annotation-name flags: each gives the full key of one annotation, which
/// kreload then reads (and, for the pause time, writes) instead of Reloader's default name,
/// everywhere: the webhooks, the watcher, the rolls, `check`, `explain` and `status`.
#[derive(Args, Debug, Clone, Default)]
pub struct AnnotationNameArgs {
    /// The annotation that opts a workload in to rolls on any referenced ConfigMap or Secret
    /// (Reloader's default: reloader.stakater.com/auto).
    #[arg(long = "auto-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub auto: Option<String>,
    /// As --auto-annotation, for ConfigMaps only (default:
    /// configmap.reloader.stakater.com/auto).
    #[arg(long = "configmap-auto-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub configmap_auto: Option<String>,
    /// As --auto-annotation, for Secrets only (default: secret.reloader.stakater.com/auto).
    #[arg(long = "secret-auto-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub secret_auto: Option<String>,
    /// The annotation that rolls a workload on referenced configs carrying the match annotation
    /// (default: reloader.stakater.com/search).
    #[arg(long = "auto-search-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub search: Option<String>,
    /// The annotation on ConfigMaps and Secrets that search workloads roll for (default:
    /// reloader.stakater.com/match).
    #[arg(long = "search-match-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub search_match: Option<String>,
    /// The ConfigMap reload-list annotation (default: configmap.reloader.stakater.com/reload).
    #[arg(long = "configmap-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub configmap_reload: Option<String>,
    /// The Secret reload-list annotation (default: secret.reloader.stakater.com/reload).
    #[arg(long = "secret-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub secret_reload: Option<String>,
    /// The annotation on ConfigMaps and Secrets whose changes roll nothing (default:
    /// reloader.stakater.com/ignore).
    #[arg(long = "ignore-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub ignore: Option<String>,
    /// The Deployment pause-period annotation (default:
    /// deployment.reloader.stakater.com/pause-period).
    #[arg(long = "pause-deployment-annotation", value_parser = annotation_key, value_name = "KEY")]
    pub pause_period: Option<String>,
    /// The annotation kreload writes on a Deployment it paused, with the time (default:
    /// deployment.reloader.stakater.com/paused-at).
    #[arg(
        long = "pause-deployment-time-annotation",
        value_parser = annotation_key,
        value_name = "KEY"
    )]
    pub paused_at: Option<String>,
}

/// The annotation-name flags, in [`AnnotationNames::all`]'s order.
pub const ANNOTATION_NAME_FLAGS: [&str; 10] = [
    "--auto-annotation",
    "--configmap-auto-annotation",
    "--secret-auto-annotation",
    "--auto-search-annotation",
    "--search-match-annotation",
    "--configmap-annotation",
    "--secret-annotation",
    "--ignore-annotation",
    "--pause-deployment-annotation",
    "--pause-deployment-time-annotation",
];

impl AnnotationNameArgs {
    /// The names to read: each flag given, else Reloader's default. Errs when two annotations
    /// would share a name, or one would take a key kreload reads with another meaning.
    pub fn names(&self) -> Result<AnnotationNames, String> {
        let d = AnnotationNames::default();
        let or = |given: &Option<String>, default: String| given.clone().unwrap_or(default);
        let names = AnnotationNames {
            auto: or(&self.auto, d.auto),
            configmap_auto: or(&self.configmap_auto, d.configmap_auto),
            secret_auto: or(&self.secret_auto, d.secret_auto),
            search: or(&self.search, d.search),
            search_match: or(&self.search_match, d.search_match),
            configmap_reload: or(&self.configmap_reload, d.configmap_reload),
            secret_reload: or(&self.secret_reload, d.secret_reload),
            ignore: or(&self.ignore, d.ignore),
            pause_period: or(&self.pause_period, d.pause_period),
            paused_at: or(&self.paused_at, d.paused_at),
        };
        names.check(&ANNOTATION_NAME_FLAGS)?;
        Ok(names)
    }
}

/// Reloader's alert settings: its environment variables, and the same as flags.
#[derive(Args, Debug, Clone, Default)]
pub struct AlertArgs {
    /// Send an alert on every roll (needs `--alert-webhook-url`), as Reloader does.
    #[arg(long, env = "ALERT_ON_RELOAD", value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub alert_on_reload: Option<bool>,
    /// slack, teams, gchat or webhook (any other value: webhook), as Reloader.
    #[arg(long, env = "ALERT_SINK", value_parser = alert_sink)]
    pub alert_sink: Option<AlertSinkArg>,
    /// Where alerts are posted. Never logged.
    #[arg(long, env = "ALERT_WEBHOOK_URL", value_parser = HttpUrlParser, hide_env_values = true)]
    pub alert_webhook_url: Option<HttpUrl>,
    /// An HTTP proxy for alerts.
    #[arg(long, env = "ALERT_WEBHOOK_PROXY", value_parser = HttpUrlParser, hide_env_values = true)]
    pub alert_webhook_proxy: Option<HttpUrl>,
    /// Text put before every alert (e.g. the cluster's name).
    #[arg(long, env = "ALERT_ADDITIONAL_INFO")]
    pub alert_additional_info: Option<String>,
}

/// Reloader's flags and variables without a kreload flag of the same meaning.
#[derive(Args, Debug, Clone, Default)]
pub struct ReloaderArgs {
    /// Reloader: env-vars or annotations. Accepted, no effect: kreload always writes its keyed
    /// stamp on the pod template.
    #[arg(long, value_enum)]
    pub reload_strategy: Option<ReloadStrategy>,

    /// Reloader: roll for changes made while it was down. Accepted, no effect: kreload always
    /// does (start-up comparison).
    #[arg(long, value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub sync_after_restart: Option<bool>,

    /// Reloader: serve Go's pprof. Accepted, no effect.
    #[arg(long, value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_pprof: Option<bool>,

    /// Reloader: the pprof address. Accepted, no effect.
    #[arg(long)]
    pub pprof_addr: Option<String>,

    /// Reloader: roll on Secrets Store CSI rotations (the versions in a
    /// SecretProviderClassPodStatus), when the cluster serves that API. Off by default, as in
    /// Reloader.
    #[arg(long, value_parser = go_bool, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_csi_integration: Option<bool>,

    /// Reloader: call this URL instead of rolling (no roll then), with Reloader's payload.
    #[arg(long, value_parser = HttpUrlParser)]
    pub webhook_url: Option<HttpUrl>,

    #[command(flatten)]
    pub annotation_names: AnnotationNameArgs,

    #[command(flatten)]
    pub alerts: AlertArgs,

    /// Reloader: `enabled` adds reloader_reload_executed_total_by_namespace to /metrics.
    #[arg(long, env = "METRICS_COUNT_BY_NAMESPACE")]
    pub metrics_count_by_namespace: Option<String>,
}

impl ReloaderArgs {
    /// Whether the per-namespace reload counter is served (Reloader turns it on with exactly
    /// `enabled`).
    pub fn count_by_namespace(&self) -> bool {
        self.metrics_count_by_namespace.as_deref() == Some("enabled")
    }
}

/// How much a start-up notice matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeLevel {
    /// kreload does the job another way, or the setting does not apply to it.
    Info,
    /// kreload does not do what the setting asks (yet): the cluster behaves differently.
    Warn,
}

/// One start-up line about a Reloader flag or variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The flag or variable, as the user wrote it (`--reload-strategy`, `ALERT_SINK`).
    pub setting: &'static str,
    pub level: NoticeLevel,
    /// What kreload does instead, and why. Never a URL or other secret value.
    pub message: String,
}

/// The start-up notices for the Reloader flags and variables set on this command line: one per
/// setting that kreload implements differently, ignores on purpose, or does not act on yet, and
/// one per renamed annotation (which name is read). Other settings kreload implements with
/// Reloader's meaning, and settings left at their defaults, get none.
pub fn notices(args: &RunArgs) -> Vec<Notice> {
    use NoticeLevel::{Info, Warn};
    let r = &args.reloader;
    let mut out = Vec::new();
    let mut say = |setting, level, message: String| {
        out.push(Notice {
            setting,
            level,
            message,
        })
    };

    if let Some(strategy) = r.reload_strategy {
        let name = strategy
            .to_possible_value()
            .map(|v| v.get_name().to_owned());
        say(
            "--reload-strategy",
            Info,
            format!(
                "--reload-strategy={}: no effect: kreload always rolls a workload by writing its keyed stamp (kreload.dev/config-hash) on the pod template, and never adds environment variables, so GitOps tools see no drift in the containers",
                name.unwrap_or_default()
            ),
        );
    }
    if r.sync_after_restart == Some(true) {
        say(
            "--sync-after-restart",
            Info,
            "--sync-after-restart: no effect: kreload always compares every stamped workload with the current config after start-up and leader changes, rolls the ones changed while it was down, and rolls nothing else".into(),
        );
    }
    if r.enable_pprof == Some(true) {
        say(
            "--enable-pprof",
            Info,
            "--enable-pprof: no effect: kreload is not a Go program and serves no pprof; /metrics on --health-listen shows its work".into(),
        );
    }
    if r.pprof_addr.is_some() {
        say(
            "--pprof-addr",
            Info,
            "--pprof-addr: no effect: kreload serves no pprof, so opens no port for it".into(),
        );
    }
    match args.filters.is_argo_rollouts {
        Some(false) => say(
            "--is-Argo-Rollouts",
            Info,
            "--is-Argo-Rollouts=false: Argo Rollouts are neither stamped nor rolled, as with Reloader (without the flag kreload rolls opted-in Rollouts whenever their CRD is served)".into(),
        ),
        Some(true) if args.filters.ignored_workload_types.iter().any(|k| k.eq_ignore_ascii_case("rollouts")) => say(
            "--is-Argo-Rollouts",
            Info,
            "--is-Argo-Rollouts=true: no effect: --ignored-workload-types lists rollouts".into(),
        ),
        _ => {}
    }
    let ignores = |kind: &str| {
        args.filters
            .ignored_workload_types
            .iter()
            .any(|k| k.trim().eq_ignore_ascii_case(kind))
    };
    match args.filters.is_openshift {
        Some(OpenShift::Off) => say(
            "--is-openshift",
            Info,
            "--is-openshift=false: OpenShift DeploymentConfigs are neither stamped nor rolled, as with Reloader".into(),
        ),
        Some(OpenShift::On) if ignores("deploymentconfigs") => say(
            "--is-openshift",
            Info,
            "--is-openshift=true: no effect: --ignored-workload-types lists deploymentconfigs".into(),
        ),
        _ => {}
    }
    if r.enable_csi_integration == Some(true) {
        say(
            "--enable-csi-integration",
            Info,
            "--enable-csi-integration: a rotation (a SecretProviderClassPodStatus update whose versions changed) rolls the workloads that mount the class and are opted in for it, as Reloader; unlike Reloader, the roll is one write of kreload.dev/csi-versions (many pods rotating to the same versions roll once), Jobs are not rolled for it, and the rotation's versions are never part of a stamp".into(),
        );
    }
    if let Some(url) = &r.webhook_url {
        say(
            "--webhook-url",
            Warn,
            format!(
                "--webhook-url ({url}): as Reloader: each config change that would roll something calls the URL instead, and nothing is rolled"
            ),
        );
    }
    // Renamed annotations: said once each, so that the log tells which names are read, and
    // that a name outside Reloader's domain reaches the validating webhook only when its
    // matchConditions name it.
    if let Ok(names) = r.annotation_names.names() {
        let defaults = AnnotationNames::default();
        let renamed = ANNOTATION_NAME_FLAGS
            .into_iter()
            .zip(names.all().into_iter().zip(defaults.all()))
            .filter(|(_, (name, default))| name != default);
        for (flag, (name, default)) in renamed {
            let mut message = if name == names.paused_at {
                format!(
                    "{flag}={name}: kreload notes its pauses under {name} instead of {default}, as Reloader does"
                )
            } else {
                format!(
                    "{flag}={name}: kreload reads {name} instead of {default}, as Reloader does"
                )
            };
            if name != names.paused_at && !name.contains(RELOADER_DOMAIN) {
                message.push_str("; the validating webhook sees it only where its matchConditions name it (the chart's annotationNames values do; extraArgs alone do not)");
            }
            say(flag, Info, message);
        }
    }
    let a = &r.alerts;
    let alerting = a.alert_on_reload == Some(true);
    if let Some(on) = a.alert_on_reload {
        let message = match (on, &a.alert_webhook_url) {
            (true, Some(url)) => format!(
                "ALERT_ON_RELOAD=true: each roll sends an alert to {url} (names and keys, never values)"
            ),
            (true, None) => {
                "ALERT_ON_RELOAD=true but no ALERT_WEBHOOK_URL: no alert can be sent".into()
            }
            (false, _) => "ALERT_ON_RELOAD=false: no alerts, as with Reloader".into(),
        };
        say(
            "ALERT_ON_RELOAD",
            if on && a.alert_webhook_url.is_none() {
                Warn
            } else {
                Info
            },
            message,
        );
    }
    if let Some(sink) = &a.alert_sink {
        let mut message = format!(
            "ALERT_SINK={}: alerts are sent as {}",
            sink.given, sink.sink
        );
        if !sink.recognized {
            message.push_str(
                " (not slack, teams, gchat or webhook: read as webhook, as Reloader does)",
            );
        }
        if !alerting {
            message.push_str("; no effect without ALERT_ON_RELOAD=true");
        }
        say(
            "ALERT_SINK",
            if sink.recognized { Info } else { Warn },
            message,
        );
    }
    if a.alert_webhook_url.is_some() && !alerting {
        say(
            "ALERT_WEBHOOK_URL",
            Info,
            "ALERT_WEBHOOK_URL: no effect without ALERT_ON_RELOAD=true".into(),
        );
    }
    if let Some(url) = &a.alert_webhook_proxy {
        say(
            "ALERT_WEBHOOK_PROXY",
            Info,
            format!("ALERT_WEBHOOK_PROXY: alerts go through {url}"),
        );
    }
    if let Some(ns) = args
        .filters
        .kubernetes_namespace
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    {
        let given = args.filters.namespaces.iter().any(|n| !n.trim().is_empty());
        say(
            "KUBERNETES_NAMESPACE",
            Info,
            if given {
                format!("KUBERNETES_NAMESPACE={ns}: not used: --namespaces says where kreload acts")
            } else {
                format!(
                    "KUBERNETES_NAMESPACE={ns}: acting only in namespace {ns} (Reloader's single-namespace mode)"
                )
            },
        );
    }
    if let Some(v) = &r.metrics_count_by_namespace {
        say(
            "METRICS_COUNT_BY_NAMESPACE",
            Info,
            if r.count_by_namespace() {
                "METRICS_COUNT_BY_NAMESPACE=enabled: /metrics also serves reloader_reload_executed_total_by_namespace".into()
            } else {
                format!(
                    "METRICS_COUNT_BY_NAMESPACE={v}: off: like Reloader, only the value enabled turns the per-namespace counter on"
                )
            },
        );
    }
    for (flag, values) in [
        ("--namespace-selector", &args.filters.namespace_selector),
        (
            "--resource-label-selector",
            &args.filters.resource_label_selector,
        ),
    ] {
        let joined = values.join(",");
        let read = from_reloader_flags(values);
        if read != joined {
            say(
                flag,
                Info,
                format!("{flag}: Reloader's form {joined:?} read as the selector {read:?}"),
            );
        }
    }
    let ignored: Vec<String> = args
        .filters
        .resources_to_ignore
        .iter()
        .map(|r| r.to_ascii_lowercase())
        .collect();
    if ignored.iter().any(|r| r == "configmaps") && ignored.iter().any(|r| r == "secrets") {
        say(
            "--resources-to-ignore",
            Warn,
            "--resources-to-ignore lists both configMaps and secrets: no config change rolls anything (Reloader refuses this)".into(),
        );
    }
    out
}

#[cfg(test)]
mod tests;
