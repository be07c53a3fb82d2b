//! `kreload run`: all wiring in one place.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::admission::selfcert::{SelfManaged, SelfManagedConfig};
use crate::admission::server::{self, Limits, Readiness};
use crate::admission::tls::{self, CertFiles, CertResolver, GeneratedCerts};
use crate::admission::{Admission, webhooks};
use crate::cli::args::{LogFormat, NoticeLevel, OpenShift, RunArgs, notices};
use crate::cli::client::{self, client};
use crate::domain::alert::AlertSink;
use crate::domain::annotations::AnnotationNames;
use crate::domain::config::ConfigKind;
use crate::domain::csi;
use crate::domain::extra::{self, ExtraWorkload};
use crate::domain::stamper::Stamper;
use crate::domain::workload::WorkloadKind;
use crate::metrics::Metrics;
use crate::reload::alerts::{AlertTarget, Alerts};
use crate::reload::lease::{self, LeaseConfig};
use crate::reload::{ReloadSettings, Reloader};
use crate::state::csi::{CsiStatuses, CsiWorkloads};
use crate::state::index::WorkloadIndex;
use crate::state::store::DigestStore;
use crate::watch::config::{self as configwatch, ConfigMapKind, SecretKind};
use crate::watch::csi as csiwatch;
use crate::watch::namespace;
use crate::watch::sync::{SyncSet, watch_name};
use crate::watch::workload::{
    self as workloadwatch, CronJobKind, DaemonSetKind, DeploymentConfigKind, DeploymentKind,
    ExtraKind, JobKind, RolloutKind, StatefulSetKind, WorkloadKindMarker,
};
use tokio::sync::{mpsc, watch};

/// Reloader's (logrus) level names that tracing spells differently.
fn tracing_level(level: &str) -> &str {
    match level.to_ascii_lowercase().as_str() {
        "warning" => "warn",
        "fatal" | "panic" => "error",
        _ => level,
    }
}

pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(tracing_level(level))
        .with_context(|| format!("invalid --log-level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

async fn ensure_namespace(client: Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client);
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Resolves on SIGTERM or SIGINT (or, with `--exit-on-stdin-close`, when stdin closes); every
/// clone resolves together.
fn shutdown_signal(stdin: bool) -> impl std::future::Future<Output = ()> + Clone + Send + 'static {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let stdin_closed = async {
            if !stdin {
                return std::future::pending().await;
            }
            let mut buf = [0u8; 64];
            let mut input = tokio::io::stdin();
            while tokio::io::AsyncReadExt::read(&mut input, &mut buf)
                .await
                .is_ok_and(|n| n > 0)
            {}
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
            () = stdin_closed => {},
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    let mut rx = rx;
    futures::FutureExt::shared(Box::pin(async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }))
}

/// Whether the API server serves a workload kind (discovered once, at start): the optional
/// ones (the Argo Rollouts CRD, OpenShift's DeploymentConfigs) may be missing. `Err` says why
/// discovery could not tell.
/// The extra kinds (`--extra-workload`) the cluster serves, each with its kind name, as
/// discovery finds them at start; one log line for each, served or not. Never fails the start.
async fn served_extras(client: &Client, extras: &[ExtraWorkload]) -> Vec<(ExtraWorkload, String)> {
    let mut found = Vec::new();
    for e in extras {
        let api = e.api_version();
        let flag = e.to_string();
        match client.list_api_group_resources(&api).await {
            Ok(list) => match list.resources.iter().find(|r| r.name == e.resource) {
                Some(r) if r.namespaced => {
                    tracing::info!(%api, extra_workload = %flag, kind = %r.kind, "{} served: watched, stamped and rolled", e.resource);
                    found.push((e.clone(), r.kind.clone()));
                }
                Some(_) => {
                    tracing::warn!(%api, extra_workload = %flag, "{} is cluster-scoped: not watched (kreload rolls namespaced workloads)", e.resource)
                }
                None => {
                    tracing::warn!(%api, extra_workload = %flag, "{} not served: not watched (kreload looks for the API only at start)", e.resource)
                }
            },
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::warn!(%api, extra_workload = %flag, "{} not served: not watched (kreload looks for the API only at start)", e.resource)
            }
            Err(error) => {
                tracing::warn!(%api, extra_workload = %flag, %error, "{}: discovery failed, so they are not watched (kreload looks for the API only at start)", e.resource)
            }
        }
    }
    found
}

async fn served(client: &Client, kind: WorkloadKind) -> Result<bool, kube::Error> {
    let group_version = format!("{}/{}", kind.group(), kind.version());
    match client.list_api_group_resources(&group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == kind.plural())),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// What the workload watches share.
struct WorkloadFeeds {
    client: Client,
    index: Arc<WorkloadIndex>,
    names: Arc<AnnotationNames>,
    auto_reload_all: bool,
    metrics: Arc<Metrics>,
    sync: SyncSet,
    new_workloads: mpsc::UnboundedSender<crate::domain::workload::WorkloadNews>,
    csi: Option<Arc<CsiWorkloads>>,
}

impl WorkloadFeeds {
    fn spawn<K: WorkloadKindMarker>(&self, scope: &Option<String>) {
        tokio::spawn(workloadwatch::run::<K>(
            self.client.clone(),
            scope.clone(),
            self.index.clone(),
            self.names.clone(),
            self.auto_reload_all,
            self.metrics.clone(),
            self.sync.clone(),
            self.new_workloads.clone(),
            self.csi.clone(),
        ));
    }

    fn spawn_kind(&self, kind: WorkloadKind, scope: &Option<String>) {
        match kind {
            WorkloadKind::Deployment => self.spawn::<DeploymentKind>(scope),
            WorkloadKind::StatefulSet => self.spawn::<StatefulSetKind>(scope),
            WorkloadKind::DaemonSet => self.spawn::<DaemonSetKind>(scope),
            WorkloadKind::CronJob => self.spawn::<CronJobKind>(scope),
            WorkloadKind::Job => self.spawn::<JobKind>(scope),
            WorkloadKind::Rollout => self.spawn::<RolloutKind>(scope),
            WorkloadKind::DeploymentConfig => self.spawn::<DeploymentConfigKind>(scope),
            WorkloadKind::Extra(i) => match i {
                0 => self.spawn::<ExtraKind<0>>(scope),
                1 => self.spawn::<ExtraKind<1>>(scope),
                2 => self.spawn::<ExtraKind<2>>(scope),
                3 => self.spawn::<ExtraKind<3>>(scope),
                4 => self.spawn::<ExtraKind<4>>(scope),
                5 => self.spawn::<ExtraKind<5>>(scope),
                6 => self.spawn::<ExtraKind<6>>(scope),
                7 => self.spawn::<ExtraKind<7>>(scope),
                _ => tracing::error!(index = i, "no watch for this extra kind index"),
            },
        }
    }
}

/// Alerts on reload (`ALERT_*`) and `--webhook-url`, when asked for.
fn with_alerts(
    mut reloader: Reloader,
    args: &RunArgs,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Reloader> {
    let a = &args.reloader.alerts;
    if a.alert_on_reload == Some(true)
        && let Some(url) = &a.alert_webhook_url
    {
        let target = AlertTarget {
            sink: a.alert_sink.as_ref().map_or(AlertSink::Webhook, |s| s.sink),
            url: url.expose().to_owned(),
            proxy: a
                .alert_webhook_proxy
                .as_ref()
                .map(|p| p.expose().to_owned()),
            additional_info: a.alert_additional_info.clone(),
        };
        let alerts = Alerts::start(target, metrics.clone())
            .map_err(|e| anyhow::anyhow!("cannot send alerts: {}", e.without_url()))?;
        reloader = reloader.with_alerts(alerts);
    }
    if let Some(url) = &args.reloader.webhook_url {
        let target = AlertTarget {
            sink: AlertSink::Webhook,
            url: url.expose().to_owned(),
            proxy: None,
            additional_info: None,
        };
        let webhook = Alerts::start(target, metrics.clone())
            .map_err(|e| anyhow::anyhow!("cannot call --webhook-url: {}", e.without_url()))?;
        reloader = reloader.instead_of_rolling(webhook);
    }
    Ok(reloader)
}

/// How often, and after how long a first wait (doubling), start-up retries a CSI discovery or
/// probe that failed with an error other than "not served" or "forbidden".
const CSI_ATTEMPTS: u32 = 4;
const CSI_RETRY_FIRST: Duration = Duration::from_secs(1);

/// Whether to act on Secrets Store CSI rotations: asked for (`--enable-csi-integration`, off by
/// default as in Reloader) and the driver's SecretProviderClassPodStatus API served (looked for
/// once, at start, and only when asked). A discovery that keeps failing, or a listing the RBAC
/// forbids, is logged as an error and kreload runs without CSI rolls: a replica that does not
/// start takes admission and every other roll down with it (a crash loop outlives a passing
/// API error, and an upgrade that carried the flag without the chart's RBAC would not start).
async fn csi_integration(
    client: &Client,
    asked: bool,
    scopes: &[Option<String>],
) -> anyhow::Result<bool> {
    if !asked {
        return Ok(false);
    }
    let api = format!("{}/{}", csi::GROUP, csi::VERSION);
    let plural = csi::STATUS_PLURAL;
    let mut wait = CSI_RETRY_FIRST;
    let mut attempt = 1;
    let served = loop {
        match client.list_api_group_resources(&api).await {
            Ok(list) => break list.resources.iter().any(|r| r.name == plural),
            Err(kube::Error::Api(s)) if s.code == 404 => break false,
            Err(error) if attempt < CSI_ATTEMPTS => {
                tracing::warn!(%api, %error, attempt, retry_in = ?wait, "{plural}: discovery failed; retrying");
            }
            Err(error) => {
                tracing::error!(%api, %error, "--enable-csi-integration: discovery of {plural} failed {CSI_ATTEMPTS} times: running without CSI rolls (kreload looks for the API only at start; restart it to try again)");
                return Ok(false);
            }
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
        attempt += 1;
    };
    if !served {
        tracing::warn!(%api, "{plural} not served (is the Secrets Store CSI driver installed?): --enable-csi-integration has no effect (kreload looks for the API only at start)");
        return Ok(false);
    }
    for scope in scopes {
        let where_ = scope
            .as_deref()
            .map_or("in all namespaces".to_owned(), |ns| {
                format!("in namespace {ns}")
            });
        let list = kube::api::ListParams::default().limit(1);
        let mut wait = CSI_RETRY_FIRST;
        let mut attempt = 1;
        loop {
            match csiwatch::api(client.clone(), scope.as_deref())
                .list_metadata(&list)
                .await
            {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    tracing::error!(%api, "--enable-csi-integration: listing {plural} {where_} is forbidden: running without CSI rolls; grant get, list and watch on {plural} (API group {}) to kreload's ServiceAccount (the chart does with enableCSIIntegration: true) and restart it", csi::GROUP);
                    return Ok(false);
                }
                Err(error) if attempt < CSI_ATTEMPTS => {
                    tracing::warn!(%api, %error, attempt, retry_in = ?wait, "{plural}: listing failed; retrying");
                }
                Err(error) => {
                    tracing::error!(%api, %error, "--enable-csi-integration: listing {plural} {where_} failed {CSI_ATTEMPTS} times: running without CSI rolls (restart kreload to try again)");
                    return Ok(false);
                }
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }
    tracing::info!(%api, "{plural} served: a rotation of a SecretProviderClass's versions rolls the workloads that mount it and are opted in for it");
    Ok(true)
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filters = args.filters.filters()?;
    extra::check_list(&args.extra_workloads).map_err(anyhow::Error::msg)?;
    let namespaces = Arc::new(args.filters.namespace_filter(&args.namespace)?);
    let ignored_workloads = args.filters.ignored_workload_types()?;
    // The one reading of the annotation-name flags, shared by everything below.
    let names = Arc::new(
        args.reloader
            .annotation_names
            .names()
            .map_err(anyhow::Error::msg)?,
    );
    for notice in notices(&args) {
        match notice.level {
            NoticeLevel::Info => tracing::info!(setting = notice.setting, "{}", notice.message),
            NoticeLevel::Warn => tracing::warn!(setting = notice.setting, "{}", notice.message),
        }
    }
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("kreload-{}", std::process::id()));
    let client = client(args.kubeconfig.as_deref()).await?;
    if args.local {
        ensure_namespace(client.clone(), &args.namespace).await?;
    }
    let key = client::load_or_create(client.clone(), &args.namespace).await?;
    tracing::info!(key_id = key.id(), "hash key loaded");
    let shutdown = shutdown_signal(args.exit_on_stdin_close);

    // Watches: configs into the store, workloads into the index, namespaces for the selector.
    // Labels are read only by --resource-label-selector.
    let store = Arc::new(if args.filters.resource_label_selector().is_some() {
        DigestStore::new()
    } else {
        DigestStore::without_labels()
    });
    let index = Arc::new(WorkloadIndex::new());
    let metrics = Arc::new(Metrics::default());
    metrics.set_count_by_namespace(args.reloader.count_by_namespace());
    let readiness = Arc::new(Readiness::default());
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    // With --namespaces, one watch per namespace and kind (so namespace-scoped RBAC suffices);
    // otherwise one cluster-wide watch per kind.
    let scopes: Vec<Option<String>> = if namespaces.only().is_empty() {
        vec![None]
    } else {
        namespaces.only().iter().cloned().map(Some).collect()
    };
    let csi_on = csi_integration(
        &client,
        args.reloader.enable_csi_integration == Some(true),
        &scopes,
    )
    .await?;
    let csi_workloads = csi_on.then(|| Arc::new(CsiWorkloads::new()));
    let (rotations_tx, rotations_rx) = mpsc::unbounded_channel();
    if csi_on {
        // Not part of readiness or of the sync the Lease waits for: a CSI watch that cannot
        // list never holds up ConfigMaps, Secrets and workloads (its first listing only learns).
        let statuses = Arc::new(CsiStatuses::new());
        let (csi_sync, _) = SyncSet::new(Vec::new());
        for scope in &scopes {
            tokio::spawn(csiwatch::run(
                client.clone(),
                scope.clone(),
                statuses.clone(),
                metrics.clone(),
                rotations_tx.clone(),
                csi_sync.clone(),
            ));
        }
    }
    drop(rotations_tx);
    let (config_sync, mut configs_synced) = SyncSet::new(ConfigKind::ALL.iter().flat_map(|k| {
        scopes
            .iter()
            .map(move |s| watch_name(k.as_str(), s.as_deref()))
    }));
    for scope in &scopes {
        let selector = args.filters.resource_label_selector();
        tokio::spawn(configwatch::run::<ConfigMapKind>(
            client.clone(),
            scope.clone(),
            store.clone(),
            names.clone(),
            metrics.clone(),
            selector.clone(),
            Some(changes_tx.clone()),
            config_sync.clone(),
        ));
        tokio::spawn(configwatch::run::<SecretKind>(
            client.clone(),
            scope.clone(),
            store.clone(),
            names.clone(),
            metrics.clone(),
            selector,
            Some(changes_tx.clone()),
            config_sync.clone(),
        ));
    }
    drop(changes_tx);
    let (ns_synced_tx, mut ns_synced) = watch::channel(false);
    tokio::spawn(namespace::watch_selected(
        client.clone(),
        namespaces.clone(),
        ns_synced_tx,
    ));

    let mut kinds: BTreeSet<WorkloadKind> = WorkloadKind::ALL
        .into_iter()
        .filter(|k| !ignored_workloads.contains(k))
        .collect();
    for kind in WorkloadKind::ALL.into_iter().filter(|k| k.optional()) {
        if !kinds.contains(&kind) {
            continue;
        }
        let api = format!("{}/{}", kind.group(), kind.version());
        // Asked for by name (Reloader's --is-Argo-Rollouts=true, --is-openshift=true): a
        // missing API is worth a warning.
        let asked = match kind {
            WorkloadKind::Rollout => args.filters.is_argo_rollouts == Some(true),
            WorkloadKind::DeploymentConfig => args.filters.is_openshift == Some(OpenShift::On),
            _ => false,
        };
        let found = served(&client, kind).await;
        match &found {
            Ok(true) => {
                tracing::info!(%api, "{} served: watched, stamped and rolled", kind.plural())
            }
            Ok(false) if asked => {
                tracing::warn!(%api, "{} not served: not watched (kreload looks for the API only at start)", kind.plural())
            }
            Ok(false) => {
                tracing::info!(%api, "{} not served: not watched (kreload looks for the API only at start)", kind.plural())
            }
            Err(error) => {
                tracing::warn!(%api, %error, "{}: discovery failed, so they are not watched (kreload looks for the API only at start)", kind.plural())
            }
        }
        if !matches!(found, Ok(true)) {
            kinds.remove(&kind);
        }
    }
    let extras = served_extras(&client, &args.extra_workloads).await;
    let extra_kinds =
        extra::register(&extras, &args.extra_workloads).map_err(anyhow::Error::msg)?;
    kinds.extend(extra_kinds.iter().copied());
    let (workload_sync, mut workloads_synced) = SyncSet::new(kinds.iter().flat_map(|k| {
        scopes
            .iter()
            .map(move |s| watch_name(k.as_str(), s.as_deref()))
    }));
    let (new_workloads_tx, new_workloads_rx) = mpsc::unbounded_channel();
    let feeds = WorkloadFeeds {
        client: client.clone(),
        index: index.clone(),
        names: names.clone(),
        auto_reload_all: args.filters.auto_reload_all,
        metrics: metrics.clone(),
        sync: workload_sync,
        new_workloads: new_workloads_tx,
        csi: csi_workloads.clone(),
    };
    for scope in &scopes {
        for kind in &kinds {
            feeds.spawn_kind(*kind, scope);
        }
    }

    let (resolver, local_ca) = if args.local {
        let certs = GeneratedCerts::generate(
            &["127.0.0.1".into(), "localhost".into()],
            Duration::from_secs(365 * 24 * 3600),
        )?;
        (
            CertResolver::new(certs.certified_key()?),
            Some(certs.ca_pem),
        )
    } else if args.self_managed_certs {
        let names = if args.cert_names.is_empty() {
            let ns = &args.namespace;
            vec![
                format!("kreload.{ns}.svc"),
                format!("kreload.{ns}.svc.cluster.local"),
            ]
        } else {
            args.cert_names.clone()
        };
        let certs = SelfManaged::new(
            client.clone(),
            SelfManagedConfig {
                namespace: args.namespace.clone(),
                secret: args.cert_secret.clone(),
                names,
                validity: args.cert_validity,
                renew_before: args.cert_renew_before,
                check_every: args.cert_check_interval,
                webhook_config: args.webhook_config_name.clone(),
            },
        );
        let resolver = certs.start().await.context("self-managed certificates")?;
        // The API server picks up a new caBundle within a few seconds; the new certificate is
        // served only after that.
        tokio::spawn(certs.run(resolver.clone(), Duration::from_secs(3)));
        (resolver, None)
    } else {
        let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) else {
            bail!("set --tls-cert-file and --tls-key-file, --self-managed-certs, or --local");
        };
        let files = CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        };
        let resolver = CertResolver::new(files.load()?);
        tokio::spawn(files.watch(resolver.clone(), Duration::from_secs(2)));
        (resolver, None)
    };
    readiness.tls_loaded.store(true, Ordering::Release);

    let listen = args.listen.unwrap_or(if args.local {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8443))
    });
    let listener = server::bind(listen).await?;
    let bound = listener.local_addr()?;
    let health = server::bind(args.health_listen).await?;
    tracing::info!(admission = %bound, health = %health.local_addr()?, "listening");

    let stamper = Stamper::new(key, filters);
    let own_user = client::own_user(&client).await;
    tracing::info!(user = own_user.as_deref().unwrap_or("?"), "kreload acts as");
    let admission = Arc::new(
        Admission::new(
            stamper.clone(),
            store.clone(),
            index.clone(),
            namespaces.clone(),
            ignored_workloads.clone(),
        )
        .with_own_user(own_user)
        .with_annotation_names(names.clone())
        .with_csi(csi_on),
    );
    let mut limits = Limits::default();
    if let Some(idle) = args.webhook_idle_timeout {
        limits.idle_timeout = idle;
    }
    let router = server::admission_router(admission.clone(), metrics.clone(), &limits);
    tokio::spawn(server::serve_plain(
        health,
        server::health_router(readiness.clone(), store.clone(), metrics.clone()),
        shutdown.clone(),
    ));

    // Decide nothing on partial data: every watch must have listed once.
    let all_synced = async {
        let _ = configs_synced.wait_for(|s| *s).await;
        for kind in ConfigKind::ALL {
            store.mark_synced(kind);
        }
        let _ = workloads_synced.wait_for(|s| *s).await;
        let _ = ns_synced.wait_for(|s| *s).await;
    };
    // A shutdown while waiting (e.g. the watches cannot list: missing RBAC) exits at once.
    tokio::select! {
        () = all_synced => {}
        () = shutdown.clone() => {
            tracing::warn!("shut down before every watch had synced");
            return Ok(());
        }
    }
    // Leadership: only the leader rolls; every replica serves admission. The Lease is contended
    // for only now that every watch has synced: a replica that cannot list never holds it, and
    // a restarted leader (same identity) does not renew it while it re-lists.
    let (leader, lease_task) = if args.enable_ha {
        let config = LeaseConfig {
            namespace: args.namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            lease_duration: args.lease_duration,
            renew_every: (args.lease_duration / 5).max(Duration::from_millis(200)),
        };
        let (leader, task) = lease::spawn(client.clone(), config, shutdown.clone());
        (leader, Some(task))
    } else {
        // Without HA this process always leads, until it shuts down: then it stops rolling at
        // once, before draining, so a successor never rolls alongside it.
        let (tx, rx) = watch::channel(true);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.await;
            let _ = tx.send(false);
        });
        (rx, None)
    };

    readiness.watches_synced.store(true, Ordering::Release);
    crate::cli::allocator::initial_lists_done();
    tracing::info!(workloads = index.len(), "every watch has synced");
    let reloader = Reloader::new(
        client.clone(),
        stamper,
        store.clone(),
        index.clone(),
        namespaces.clone(),
        metrics.clone(),
        ReloadSettings {
            coalesce_window: args.coalesce_window,
            min_roll_interval: args.min_roll_interval,
            reload_on_create: args.reload_on_create,
            reload_on_delete: args.reload_on_delete,
            ignored_workload_types: ignored_workloads,
            max_rolls_per_minute: Some(args.max_rolls_per_minute).filter(|n| *n > 0),
            max_concurrent_rolls: Some(args.max_concurrent_rolls).filter(|n| *n > 0),
            annotation_names: names.clone(),
        },
        identity,
    );
    let mut reloader = with_alerts(reloader, &args, &metrics)?;
    if let Some(csi) = &csi_workloads {
        reloader = reloader.with_csi(csi.clone());
    }
    tokio::spawn(reloader.run(changes_rx, new_workloads_rx, rotations_rx, leader));

    if let Some(ca) = &local_ca {
        let (mut m, mut v) = webhooks::local(
            &format!("https://{bound}"),
            ca,
            &args.webhook_config_name,
            namespaces.only(),
        );
        webhooks::select_annotation_names(&mut v, &names);
        webhooks::add_extra_kinds(&mut m, &mut v, &extra_kinds);
        webhooks::apply(client.clone(), &m, &v)
            .await
            .context("cannot register the webhook configurations")?;
        tracing::info!(url = %format!("https://{bound}"), name = args.webhook_config_name, "local mode: webhook configurations point here");
    }
    server::serve_tls(
        listener,
        tls::server_config(resolver),
        router,
        limits,
        shutdown,
    )
    .await;
    if local_ca.is_some() {
        webhooks::delete(client, &args.webhook_config_name).await;
    }
    // The lease is released on shutdown; let that finish so a successor need not wait it out.
    if let Some(task) = lease_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}
