//! The HTTPS server around the admission functions, and the plain-HTTP health port.
//!
//! Limits (see [`Limits`]): a body size cap (413); one cap on requests in flight across both
//! webhooks, whose wait for a slot is bounded (503) and counted in the request timeout (408);
//! a TLS handshake timeout; per connection, a deadline for each request head and an idle timeout
//! between requests. Shutdown is passed in as a future: stop accepting, then drain open
//! connections.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::admission::{Admission, Answer, ReviewError};
use crate::domain::annotations::{MUTATE_PATH, VALIDATE_PATH};
use crate::metrics::Metrics;
use crate::state::store::DigestStore;

/// The server's limits. Defaults suit an admission webhook: the API server sends at most a few
/// MiB (an UPDATE carries the object twice) and gives up after the webhook's `timeoutSeconds`
/// (5 s in `webhook-config/`). Why each value: docs/operations.md, "Bad input".
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Requests being read or answered at once, across both webhooks. With `max_body_bytes`, it
    /// bounds the memory that request bodies can take.
    pub max_in_flight: usize,
    /// How long a request waits for a slot when all are taken before it is refused (503).
    pub slot_wait: Duration,
    /// From the request head to the answer, the wait for a slot and the body included (408).
    pub request_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A request head must arrive within this of its first byte, or the connection is dropped.
    pub header_read_timeout: Duration,
    /// A connection with no request for this long (since its last one, or since its handshake)
    /// is closed. Longer than the API server's own idle timeout for webhook connections (Go's
    /// 90 s), so that the API server closes them first and never sends a request on a
    /// connection kreload is closing.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 * 1024 * 1024,
            max_in_flight: 16,
            slot_wait: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
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

/// The one cap on requests in flight, shared by every route, and the request timeout around it.
#[derive(Clone)]
struct Gate {
    slots: Arc<Semaphore>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

fn webhook_of(path: &str) -> Option<&'static str> {
    match path {
        MUTATE_PATH => Some("mutate"),
        VALIDATE_PATH => Some("validate"),
        _ => None,
    }
}

/// Takes a slot (waiting at most `slot_wait`, 503 after that), then answers within what is left
/// of `request_timeout` (408 after that). The slot is held until the answer, so the body is read
/// while holding it: at most `max_in_flight` bodies are in memory.
async fn gated(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let deadline = started + gate.limits.request_timeout;
    let webhook = webhook_of(request.uri().path());
    let slot_deadline = deadline.min(started + gate.limits.slot_wait);
    let Ok(Ok(_slot)) = tokio::time::timeout_at(slot_deadline, gate.slots.acquire()).await else {
        if let Some(webhook) = webhook {
            gate.metrics
                .admission(webhook, "overloaded", started.elapsed());
        }
        tracing::warn!(
            path = request.uri().path(),
            in_flight = gate.limits.max_in_flight,
            "refused an admission request: every slot stayed taken"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "kreload: overloaded: {} admission requests in flight and none finished within \
                 {:?}; try again\n",
                gate.limits.max_in_flight, gate.limits.slot_wait
            ),
        )
            .into_response();
    };
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            if let Some(webhook) = webhook {
                gate.metrics
                    .admission(webhook, "timeout", started.elapsed());
            }
            (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "kreload: the request was not read and answered within {:?}\n",
                    gate.limits.request_timeout
                ),
            )
                .into_response()
        }
    }
}

/// The admission routes, with body limit, the in-flight cap and the request timeout.
pub fn admission_router(
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    limits: &Limits,
) -> Router {
    admission_router_with(admission, metrics, limits, Router::new())
}

/// [`admission_router`] with `extra` routes served behind the same limits (the admission
/// benchmark's reference endpoints).
#[doc(hidden)]
pub fn admission_router_with(
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    limits: &Limits,
    extra: Router,
) -> Router {
    let routes = Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route(VALIDATE_PATH, post(validate))
        .route("/noop", post(|| async { StatusCode::OK }))
        .with_state(AppState {
            admission,
            metrics: metrics.clone(),
        })
        .merge(extra);
    limited(routes, limits, metrics)
}

/// `routes` with the body limit, and one in-flight cap and request timeout for all of them.
fn limited(routes: Router, limits: &Limits, metrics: Arc<Metrics>) -> Router {
    let gate = Gate {
        slots: Arc::new(Semaphore::new(limits.max_in_flight)),
        limits: limits.clone(),
        metrics,
    };
    routes
        // Refuses an oversized Content-Length at once (413) without reading the body; a chunked
        // body is cut off at the limit with the same status.
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.max_body_bytes,
        ))
        // Outermost. Router::layer wraps each route on its own, but every copy shares `slots`.
        .layer(axum::middleware::from_fn_with_state(gate, gated))
}

/// What one connection is doing, for its head deadline and idle timeout: requests in flight,
/// since when it has had none, and since when the bytes of a next request head are arriving.
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when a request starts or ends, or a head starts to arrive.
    changed: Notify,
    /// HTTP/2 reads are not request heads (pings, window updates, settings).
    reads_start_heads: bool,
}

struct ActivityState {
    in_flight: usize,
    idle_since: Instant,
    head_since: Option<Instant>,
}

/// What a connection's watchdog does next.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing to do before this instant (or before activity changes).
    WaitUntil(Instant),
    /// No request for `idle_timeout`: close gracefully.
    Idle,
    /// A request head took longer than `header_read_timeout`: drop the connection.
    SlowHead,
}

impl Activity {
    /// A connection that has just finished its TLS handshake. It is idle, not late with a head:
    /// Go's HTTP client pools a connection it dialed for a request that another connection
    /// served first, and sends a request on it later.
    fn new(now: Instant, reads_start_heads: bool) -> Self {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: now,
                head_since: None,
            }),
            changed: Notify::new(),
            reads_start_heads,
        }
    }

    fn read(&self, now: Instant) {
        if !self.reads_start_heads {
            return;
        }
        let mut s = self.state.lock();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
            drop(s);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        let mut s = self.state.lock();
        s.in_flight += 1;
        s.head_since = None;
        drop(s);
        self.changed.notify_one();
    }

    fn request_ended(&self, now: Instant) {
        let mut s = self.state.lock();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = now;
            s.head_since = None;
        }
        drop(s);
        self.changed.notify_one();
    }

    fn verdict(&self, now: Instant, limits: &Limits) -> Verdict {
        let s = self.state.lock();
        let (deadline, verdict) = if s.in_flight > 0 {
            // A request in flight is bounded by the request timeout; look again after it.
            return Verdict::WaitUntil(now + limits.request_timeout);
        } else if let Some(head) = s.head_since {
            (head + limits.header_read_timeout, Verdict::SlowHead)
        } else {
            (s.idle_since + limits.idle_timeout, Verdict::Idle)
        };
        if now >= deadline {
            verdict
        } else {
            Verdict::WaitUntil(deadline)
        }
    }
}

/// Ends the request in [`Activity`] when dropped: answered, timed out or cancelled alike.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended(Instant::now());
    }
}

/// The connection's stream, reporting reads to its [`Activity`].
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read(Instant::now());
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header-read timeout also runs while a keep-alive connection waits for its next
    // request, which would close idle connections after 5 s, before the API server's idle
    // timeout; each connection's watchdog enforces both limits instead.
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    // The protocol is the one TLS negotiated (ALPN): h2, or else HTTP/1.1.
    let http1 = builder.clone().http1_only();
    let http2 = builder.http2_only();
    // Every connection holds a receiver; `closed` resolves once all have ended.
    let (stop, stopped) = watch::channel(false);
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
        let router = router.clone();
        let (http1, http2) = (http1.clone(), http2.clone());
        let limits = limits.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let activity = Arc::new(Activity::new(Instant::now(), !h2));
            let io = TokioIo::new(Watched {
                inner: tls,
                activity: activity.clone(),
            });
            let service = Counted {
                service: TowerToHyperService::new(router),
                activity: activity.clone(),
            };
            let builder = if h2 { &http2 } else { &http1 };
            let conn = builder.serve_connection(io, service);
            drive(conn, &activity, &limits, stopped, peer).await;
        });
    }
    drop(stopped);
    tracing::info!("stopped accepting admission requests; draining open connections");
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(20), stop.closed())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not drain within 20s");
    }
}

/// A connection's service: the router, with its requests counted in the connection's
/// [`Activity`].
struct Counted {
    service: TowerToHyperService<Router>,
    activity: Arc<Activity>,
}

type HttpAnswer = <TowerToHyperService<Router> as hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
>>::Response;

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Counted {
    type Response = HttpAnswer;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<HttpAnswer, Self::Error>> + Send>>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.activity.request_started();
        let in_flight = InFlight(self.activity.clone());
        let answer = self.service.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(in_flight);
            answer
        })
    }
}

type Conn<'a> = auto::Connection<
    'a,
    TokioIo<Watched<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>,
    Counted,
    TokioExecutor,
>;

/// Runs one connection to its end: closes it gracefully when it has been idle too long or the
/// server stops, and drops it when a request head is too slow or a graceful close is not done
/// within the request timeout.
async fn drive(
    conn: Conn<'_>,
    activity: &Activity,
    limits: &Limits,
    mut stopped: watch::Receiver<bool>,
    peer: SocketAddr,
) {
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = match closing {
            Some(since) => since + limits.request_timeout,
            None => match activity.verdict(now, limits) {
                Verdict::WaitUntil(at) => at,
                Verdict::Idle => {
                    tracing::debug!(%peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(now);
                    continue;
                }
                Verdict::SlowHead => {
                    return tracing::debug!(%peer, "request head not received in time");
                }
            },
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection closed with an error");
                }
                return;
            }
            () = activity.changed.notified(), if closing.is_none() => {}
            _ = stopped.wait_for(|stop| *stop), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if closing.is_some() {
                    return tracing::debug!(%peer, "connection not closed in time; dropped");
                }
            }
        }
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

#[cfg(test)]
mod tests;
