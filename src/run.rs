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

use crate::admission::{Admission, NoWorkloads};
use crate::cli::{LogFormat, RunArgs};
use crate::configwatch;
use crate::key;
use crate::metrics::Metrics;
use crate::model::ConfigKind;
use crate::selector::Selector;
use crate::server::{self, Limits, Readiness};
use crate::store::{ConfigMapKind, DigestStore, SecretKind};
use crate::tls::{self, CertFiles, CertResolver, GeneratedCerts};
use crate::trigger::Filters;
use crate::webhooks;

pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
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

async fn client(args: &RunArgs) -> anyhow::Result<Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig found and not running in a cluster")?,
    };
    Ok(Client::try_from(config)?)
}

fn filters(args: &RunArgs) -> anyhow::Result<Filters> {
    let mut ignored_kinds = BTreeSet::new();
    for r in &args.resources_to_ignore {
        match r.to_ascii_lowercase().as_str() {
            "configmaps" => ignored_kinds.insert(ConfigKind::ConfigMap),
            "secrets" => ignored_kinds.insert(ConfigKind::Secret),
            other => bail!("--resources-to-ignore takes configMaps or secrets, not {other:?}"),
        };
    }
    let resource_label_selector = args
        .resource_label_selector
        .as_deref()
        .map(str::parse::<Selector>)
        .transpose()?;
    Ok(Filters {
        ignored_kinds,
        resource_label_selector,
        auto_reload_all: args.auto_reload_all,
    })
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

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filters = filters(&args)?;
    let client = client(&args).await?;
    if args.local {
        ensure_namespace(client.clone(), &args.namespace).await?;
    }
    let key = key::load_or_create(client.clone(), &args.namespace).await?;
    tracing::info!(key_id = key.id(), "hash key loaded");

    let store = Arc::new(DigestStore::new());
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let label_selector = args.resource_label_selector.clone();
    tokio::spawn(configwatch::run::<ConfigMapKind>(
        client.clone(),
        store.clone(),
        metrics.clone(),
        label_selector.clone(),
        None,
    ));
    tokio::spawn(configwatch::run::<SecretKind>(
        client.clone(),
        store.clone(),
        metrics.clone(),
        label_selector,
        None,
    ));

    let (resolver, local_ca) = if args.local {
        let certs = GeneratedCerts::generate(
            &["127.0.0.1".into(), "localhost".into()],
            Duration::from_secs(365 * 24 * 3600),
        )?;
        (
            CertResolver::new(certs.certified_key()?),
            Some(certs.ca_pem),
        )
    } else {
        let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) else {
            bail!("--tls-cert-file and --tls-key-file are required unless --local is set");
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

    let admission = Arc::new(Admission {
        key,
        store: store.clone(),
        filters,
        workloads: Arc::new(NoWorkloads),
    });
    let limits = Limits::default();
    let router = server::admission_router(admission, metrics.clone(), &limits);
    let shutdown = shutdown_signal(args.exit_on_stdin_close);
    tokio::spawn(server::serve_plain(
        health,
        server::health_router(readiness, store.clone(), metrics),
        shutdown.clone(),
    ));

    if let Some(ca) = local_ca {
        // Register only once the store is synced: a pod stamped before would get a wrong stamp.
        while !store.is_synced() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (m, v) = webhooks::pointed_at(&format!("https://{bound}"), &ca);
        webhooks::apply(client.clone(), &m, &v)
            .await
            .context("cannot register the webhook configurations")?;
        tracing::info!(url = %format!("https://{bound}"), "local mode: webhook configurations point here");
    }
    server::serve_tls(
        listener,
        tls::server_config(resolver),
        router,
        limits,
        shutdown,
    )
    .await;
    Ok(())
}
