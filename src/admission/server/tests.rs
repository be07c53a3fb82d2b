use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use tower::ServiceExt;

use super::*;

/// Short limits in real time (tokio's paused clock needs a feature the build does not enable).
fn limits() -> Limits {
    Limits {
        max_in_flight: 2,
        slot_wait: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

/// Two routes whose handlers say when they start, then wait until `release` is notified.
fn held_routes(
    entered: tokio::sync::mpsc::UnboundedSender<()>,
    release: Arc<tokio::sync::Notify>,
) -> Router {
    let held = move || {
        let (entered, release) = (entered.clone(), release.clone());
        async move {
            let _ = entered.send(());
            release.notified().await;
            StatusCode::OK
        }
    };
    Router::new()
        .route(MUTATE_PATH, post(held.clone()))
        .route(VALIDATE_PATH, post(held))
}

async fn send(router: &Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::post(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn spawn_send(
    router: &Router,
    path: &'static str,
) -> tokio::task::JoinHandle<(StatusCode, String)> {
    let router = router.clone();
    tokio::spawn(async move { send(&router, path).await })
}

#[tokio::test]
async fn one_cap_for_both_webhooks_and_a_bounded_wait_for_a_slot() {
    let (entered, mut entries) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let metrics = Arc::new(Metrics::default());
    let router = limited(
        held_routes(entered, release.clone()),
        &limits(),
        metrics.clone(),
    );
    // One request on each route takes both slots.
    let first = spawn_send(&router, MUTATE_PATH);
    let second = spawn_send(&router, VALIDATE_PATH);
    entries.recv().await;
    entries.recv().await;
    // A third, on either route, waits `slot_wait` and is refused.
    let started = Instant::now();
    let (status, body) = send(&router, MUTATE_PATH).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("overloaded"), "{body}");
    let waited = started.elapsed();
    assert!(waited >= limits().slot_wait, "{waited:?}");
    let text = metrics.render(&crate::state::store::DigestStore::new());
    assert!(
        text.contains(
            "kreload_admission_requests_seconds_count{webhook=\"mutate\",result=\"overloaded\"} 1"
        ),
        "{text}"
    );
    // A slot freed while a request waits is its.
    let mut third = spawn_send(&router, VALIDATE_PATH);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut third)
            .await
            .is_err()
    );
    release.notify_one();
    entries.recv().await;
    release.notify_waiters();
    for task in [first, second, third] {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_wait_for_a_slot_counts_in_the_request_timeout() {
    let (entered, mut entries) = tokio::sync::mpsc::unbounded_channel();
    let limits = Limits {
        max_in_flight: 1,
        slot_wait: Duration::from_secs(10),
        request_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let router = limited(
        held_routes(entered, Arc::new(tokio::sync::Notify::new())),
        &limits,
        Arc::new(Metrics::default()),
    );
    let holder = spawn_send(&router, MUTATE_PATH);
    entries.recv().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Waits about 1 s for the slot (until the holder times out), then has only what is left of
    // its own request timeout: it ends 2 s after it started, not 3 s.
    let started = Instant::now();
    let (status, body) = send(&router, MUTATE_PATH).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{body}");
    let took = started.elapsed();
    assert!(
        took >= limits.request_timeout
            && took < limits.request_timeout + Duration::from_millis(900),
        "{took:?}"
    );
    assert_eq!(holder.await.unwrap().0, StatusCode::REQUEST_TIMEOUT);
}

#[test]
fn a_connection_gets_an_idle_timeout_and_a_deadline_for_each_head() {
    let limits = Limits::default();
    let t0 = Instant::now();
    let s = |secs: u64| t0 + Duration::from_secs(secs);
    let activity = Activity::new(t0, true);
    // A new connection is idle: a client may keep it in its pool for later.
    assert_eq!(
        activity.verdict(s(5), &limits),
        Verdict::WaitUntil(t0 + limits.idle_timeout)
    );
    activity.read(s(5));
    assert_eq!(activity.verdict(s(10), &limits), Verdict::SlowHead);
    activity.request_started();
    assert!(matches!(
        activity.verdict(s(6), &limits),
        Verdict::WaitUntil(_)
    ));
    activity.request_ended(s(6));
    // Idle: no deadline but the idle timeout, however long a keep-alive connection waits.
    assert_eq!(
        activity.verdict(s(60), &limits),
        Verdict::WaitUntil(s(6) + limits.idle_timeout)
    );
    // The first byte of a next head starts its deadline.
    activity.read(s(100));
    assert_eq!(
        activity.verdict(s(101), &limits),
        Verdict::WaitUntil(s(100) + limits.header_read_timeout)
    );
    assert_eq!(activity.verdict(s(105), &limits), Verdict::SlowHead);
    activity.request_started();
    activity.request_ended(s(106));
    assert_eq!(activity.verdict(s(226), &limits), Verdict::Idle);
}

#[test]
fn http2_reads_are_not_request_heads() {
    let limits = Limits::default();
    let t0 = Instant::now();
    let activity = Activity::new(t0, false);
    activity.request_started();
    activity.request_ended(t0);
    // Pings and window updates arrive; the connection is still idle, not reading a head.
    activity.read(t0 + Duration::from_secs(30));
    assert_eq!(
        activity.verdict(t0 + Duration::from_secs(40), &limits),
        Verdict::WaitUntil(t0 + limits.idle_timeout)
    );
}

#[test]
fn idle_connections_outlive_the_api_servers_own_idle_timeout() {
    // Go's http.Transport (the API server's webhook client) closes idle connections after 90 s;
    // closing first would race with a request sent on the closing connection.
    assert!(Limits::default().idle_timeout > Duration::from_secs(90));
    // Every request waits for a slot for less than the webhook's timeoutSeconds (5 s).
    assert!(Limits::default().slot_wait < Duration::from_secs(5));
}
