//! The HTTPS server around the admission functions, and the plain-HTTP health port.
//!
//! Limits: a body size cap (413), a header-read timeout and a TLS handshake timeout (slow
//! clients cannot hold connections), a per-request timeout, and a cap on requests in flight.
//! Shutdown is passed in as a future: stop accepting, then drain open connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admission::{Admission, Answer, ReviewError};
use crate::domain::annotations::{MUTATE_PATH, VALIDATE_PATH};
use crate::metrics::Metrics;
use crate::state::store::DigestStore;

/// The server's limits. Defaults suit an admission webhook: the API server sends at most a few
/// MiB (an UPDATE carries the object twice) and expects an answer within its `timeoutSeconds`.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 512,
        }
    }
}

#[derive(Clone)]
struct AppState {
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
}

fn review_response(
    webhook: &'static str,
    state: &AppState,
    started: Instant,
    result: Result<Answer, ReviewError>,
) -> Response {
    match result {
        Ok(answer) => {
            state
                .metrics
                .admission(webhook, answer.outcome.as_str(), started.elapsed());
            ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
        }
        Err(error) => {
            state
                .metrics
                .admission(webhook, "bad_request", started.elapsed());
            tracing::warn!(webhook, %error, "rejected a request that is not a usable AdmissionReview");
            (StatusCode::BAD_REQUEST, format!("kreload: {error}\n")).into_response()
        }
    }
}

async fn mutate(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let result = state.admission.mutate(&body);
    review_response("mutate", &state, started, result)
}

async fn validate(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let result = state.admission.validate(&body);
    review_response("validate", &state, started, result)
}

/// The admission routes, with body limit, timeout and concurrency cap.
pub fn admission_router(
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    limits: &Limits,
) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route(VALIDATE_PATH, post(validate))
        .route("/noop", post(|| async { StatusCode::OK }))
        .with_state(AppState { admission, metrics })
        // Refuses an oversized Content-Length at once (413) without reading the body; a chunked
        // body is cut off at the limit with the same status.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.max_body_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            limits.max_in_flight,
        ))
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then drains open connections.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let conn = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(%peer, %error, "connection closed with an error");
            }
        });
    }
    tracing::info!("stopped accepting admission requests; draining open connections");
    if tokio::time::timeout(Duration::from_secs(20), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not drain within 20s");
    }
}

/// Readiness: TLS loaded and every watch synced.
#[derive(Default)]
pub struct Readiness {
    pub tls_loaded: AtomicBool,
    /// Configs, workloads and (with a selector) namespaces have all been listed once.
    pub watches_synced: AtomicBool,
}

#[derive(Clone)]
struct HealthState {
    readiness: Arc<Readiness>,
    store: Arc<DigestStore>,
    metrics: Arc<Metrics>,
}

/// `/livez`, `/readyz` and `/metrics` over plain HTTP.
pub fn health_router(
    readiness: Arc<Readiness>,
    store: Arc<DigestStore>,
    metrics: Arc<Metrics>,
) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<HealthState>| async move {
                let tls = s.readiness.tls_loaded.load(Ordering::Acquire);
                let synced =
                    s.store.is_synced() && s.readiness.watches_synced.load(Ordering::Acquire);
                if tls && synced {
                    (StatusCode::OK, "ok\n".to_owned())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: tls_loaded={tls} configs_synced={synced}\n"),
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<HealthState>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.metrics.render(&s.store),
                )
            }),
        )
        .with_state(HealthState {
            readiness,
            store,
            metrics,
        })
}

/// Serves plain HTTP until `shutdown` resolves.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%error, "health server failed");
    }
}

/// Binds a TCP listener with a clear error naming the address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
