//! The admission server's limits on a real kreload process: one cap on requests in flight
//! across both webhooks (extras refused in time, memory bounded by the chart's limit), and the
//! idle timeout of keep-alive connections.
//!
//! Each test runs its own kreload (scoped to its own namespace and webhook configurations) and
//! talks to its HTTPS port directly, so overloading it disturbs no other test.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::*;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kreload::admission::server::Limits;
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// kreload for one test: its own namespace, webhook configurations and process.
async fn own_kreload(prefix: &str, env: &[(&str, &str)]) -> (TestNamespace, Kreload, Vec<u8>) {
    let client = client().await;
    let ns = TestNamespace::new(&client, prefix).await;
    let config = format!("kreload-{}", ns.name);
    let kreload = Kreload::start_with_env(
        &["--namespaces", &ns.name, "--webhook-config-name", &config],
        env,
    );
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client);
    let ca = hooks.get(&config).await.unwrap().webhooks.unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("local mode publishes its CA")
        .0;
    (ns, kreload, ca)
}

/// A TLS connection to kreload's admission port, offering `alpn`.
async fn connect(addr: &str, ca: &[u8], alpn: &[u8]) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// A memory figure of process `pid` from /proc/PID/status, in bytes: `VmRSS` (resident now) or
/// `VmHWM` (the most it was ever resident, its high-water mark).
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib * 1024
}

/// The chart's memory limit for kreload (`resources.limits.memory` in its values), in bytes.
fn chart_memory_limit() -> u64 {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/helm/kreload/values.yaml"
    );
    let values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let limit = values["resources"]["limits"]["memory"]
        .as_str()
        .expect("the chart sets a memory limit");
    let (number, unit) = limit.split_at(limit.find(|c: char| !c.is_ascii_digit()).unwrap());
    let unit = match unit {
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("unexpected unit {other:?} in the chart's memory limit {limit}"),
    };
    number.parse::<u64>().unwrap() * unit
}

/// The status code and text of one HTTP/1.1 response read from `stream` (head, and a body of
/// its Content-Length); status 0 when the connection ends first.
async fn read_response(stream: &mut tokio::io::ReadHalf<Tls>) -> (u16, String) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
                return (status.unwrap_or(0), text);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (0, text),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request of the largest body kreload takes, sent but for its last byte: a slow client. Returns
/// the status it got and its body.
async fn slow_max_body(addr: String, ca: Vec<u8>, path: &str, body: Bytes) -> (u16, String) {
    let stream = connect(&addr, &ca, b"http/1.1").await;
    let (mut read, mut write) = tokio::io::split(stream);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: kreload\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await.unwrap();
    // The body goes out while the answer is awaited: a server that does not read it stops the
    // writes (full buffers), and the answer may come before the body is through.
    let writer = tokio::spawn(async move {
        for chunk in body[..body.len() - 1].chunks(64 * 1024) {
            if write.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = write.flush().await;
        // The last byte never comes; keep the connection open until the server answers.
        std::future::pending::<()>().await;
    });
    let (status, text) = read_response(&mut read).await;
    writer.abort();
    (status, text)
}

/// A small complete request; returns its status.
async fn probe(addr: &str, ca: &[u8]) -> u16 {
    let stream = connect(addr, ca, b"http/1.1").await;
    let (mut read, mut write) = tokio::io::split(stream);
    let body = b"{}";
    let request = format!(
        "POST /mutate HTTP/1.1\r\nHost: kreload\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    write.write_all(request.as_bytes()).await.unwrap();
    write.write_all(body).await.unwrap();
    read_response(&mut read).await.0
}

/// A Deployment CREATE review of exactly `size` bytes (a long annotation fills it): the largest
/// body kreload reads whole, parses and answers.
fn max_size_review(namespace: &str, size: usize) -> Bytes {
    let review = |filler: usize| {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-big", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "namespace": namespace, "operation": "CREATE",
                "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "big", "namespace": namespace, "annotations": {
                        "reloader.stakater.com/auto": "true", "filler": "x".repeat(filler)}},
                    "spec": {"selector": {"matchLabels": {"app": "big"}}, "template": {
                        "metadata": {"labels": {"app": "big"}},
                        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}}
        }))
        .unwrap()
    };
    let body = review(size - review(0).len());
    assert_eq!(body.len(), size);
    Bytes::from(body)
}

/// Sends `body` whole to `path` on a connection of its own; returns the status.
async fn whole_body(addr: String, ca: Vec<u8>, path: &str, body: Bytes) -> u16 {
    let stream = connect(&addr, &ca, b"http/1.1").await;
    let (mut read, mut write) = tokio::io::split(stream);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: kreload\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        write.write_all(&body).await?;
        write.flush().await?;
        std::future::pending::<std::io::Result<()>>().await
    });
    let (status, _) = read_response(&mut read).await;
    writer.abort();
    status
}

#[tokio::test]
async fn one_in_flight_cap_across_webhooks_refuses_extras_and_bounds_memory() {
    let limits = Limits::default();
    let (ns, kreload, ca) = own_kreload("e2e-server-cap", &[]).await;
    let addr = kreload.admission.clone();
    let pid = kreload.pid();
    let limit = chart_memory_limit();
    let before = memory(pid, "VmRSS");
    let path = |i: usize| {
        if i.is_multiple_of(2) {
            "/mutate"
        } else {
            "/validate"
        }
    };

    // As many slow maximum-size bodies as there are slots, on both webhooks.
    let filler = Bytes::from(vec![b' '; limits.max_body_bytes]);
    let holders: Vec<_> = (0..limits.max_in_flight)
        .map(|i| {
            tokio::spawn(slow_max_body(
                addr.clone(),
                ca.clone(),
                path(i),
                filler.clone(),
            ))
        })
        .collect();
    // Every slot is taken when a small request on either webhook is refused.
    wait_for(
        "kreload to refuse a request while slow bodies hold every slot",
        // Leaves the extras time to be refused before the holders' request timeout.
        limits.request_timeout - 2 * limits.slot_wait - Duration::from_secs(1),
        || async { (probe(&addr, &ca).await == 503).then_some(()) },
    )
    .await;
    // Three times as many more, on both webhooks: each is refused, before the request timeout.
    let extras: Vec<_> = (0..3 * limits.max_in_flight)
        .map(|i| {
            tokio::spawn(slow_max_body(
                addr.clone(),
                ca.clone(),
                path(i),
                filler.clone(),
            ))
        })
        .collect();
    // Refused for want of a slot (503), not left waiting until the request timeout (408).
    for extra in extras {
        let (status, text) = extra.await.unwrap();
        assert_eq!(status, 503, "an extra request was not refused: {text}");
        assert!(text.contains("kreload: overloaded"), "{text}");
    }
    // The slow bodies hold their slots until the request timeout answers them.
    for holder in holders {
        let (status, text) = holder.await.unwrap();
        assert_eq!(status, 408, "{text}");
    }
    let after_slow = memory(pid, "VmHWM");

    // A burst of twice as many whole maximum-size reviews as slots: each is read, parsed and
    // answered (the extras wait for a slot).
    let review = max_size_review(&ns.name, limits.max_body_bytes);
    let burst: Vec<_> = (0..2 * limits.max_in_flight)
        .map(|i| {
            tokio::spawn(whole_body(
                addr.clone(),
                ca.clone(),
                path(i),
                review.clone(),
            ))
        })
        .collect();
    for answered in burst {
        assert_eq!(answered.await.unwrap(), 200);
    }

    let peak = memory(pid, "VmHWM");
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "server limits: {} slots x {} MiB bodies; RSS {:.1} MiB before; peak {:.1} MiB with slow \
         bodies in every slot, {:.1} MiB after a burst of whole ones; chart limit {:.0} MiB",
        limits.max_in_flight,
        limits.max_body_bytes >> 20,
        mib(before),
        mib(after_slow),
        mib(peak),
        mib(limit)
    );
    assert!(
        peak < limit,
        "kreload's RSS reached {:.1} MiB, over the chart's limit of {:.0} MiB",
        mib(peak),
        mib(limit)
    );
    // Still serving.
    assert_eq!(probe(&addr, &ca).await, 400);
}

/// Sends `POST /noop` on a client connection; true when it was answered 200.
async fn noop_h1(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
) -> bool {
    let request = hyper::Request::post("/noop")
        .header("host", "kreload")
        .body(http_body_util::Empty::new())
        .unwrap();
    matches!(sender.send_request(request).await, Ok(r) if r.status() == 200)
}

async fn noop_h2(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
) -> bool {
    let request = hyper::Request::post("https://kreload/noop")
        .body(http_body_util::Empty::new())
        .unwrap();
    matches!(sender.send_request(request).await, Ok(r) if r.status() == 200)
}

/// A keep-alive connection of either protocol: a request sender, and its connection's end.
enum Client {
    H1(hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>),
}

impl Client {
    async fn noop(&mut self) -> bool {
        match self {
            Client::H1(s) => noop_h1(s).await,
            Client::H2(s) => noop_h2(s).await,
        }
    }
}

/// Opens a keep-alive connection; the returned task ends when the server closes it.
async fn open(addr: &str, ca: &[u8], h2: bool) -> (Client, tokio::task::JoinHandle<()>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let io = TokioIo::new(connect(addr, ca, alpn).await);
    if h2 {
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        (
            Client::H2(sender),
            tokio::spawn(async move {
                let _ = conn.await;
            }),
        )
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        (
            Client::H1(sender),
            tokio::spawn(async move {
                let _ = conn.await;
            }),
        )
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_and_active_ones_are_not() {
    // A short idle timeout for the test (the default outlasts the API server's own, 90 s); it is
    // longer than the request-head deadline, so that deadline cannot be what closes them.
    let idle = Duration::from_secs(8);
    let head_deadline = Limits::default().header_read_timeout;
    assert!(idle > head_deadline + Duration::from_secs(2));
    let (_ns, kreload, ca) =
        own_kreload("e2e-server-idle", &[("KRELOAD_WEBHOOK_IDLE_TIMEOUT", "8s")]).await;
    let addr = kreload.admission.clone();

    let mut checks = Vec::new();
    for h2 in [false, true] {
        let protocol = if h2 { "HTTP/2" } else { "HTTP/1.1" };
        // Idle, after one request or from the start (an HTTP client may dial a connection and
        // pool it unused): closed once the idle timeout has passed, not before.
        for first_request in [true, false] {
            let (mut client, closed) = open(&addr, &ca, h2).await;
            let what = if first_request {
                "an idle keep-alive connection"
            } else {
                "a connection that never carried a request"
            };
            checks.push(tokio::spawn(async move {
                if first_request {
                    assert!(client.noop().await, "{protocol}: the first request failed");
                }
                let mut closed = closed;
                // Open through most of the idle timeout, closed once it has passed.
                assert!(
                    tokio::time::timeout(idle - Duration::from_secs(1), &mut closed)
                        .await
                        .is_err(),
                    "{protocol}: {what} was closed before the idle timeout of {idle:?}"
                );
                assert!(
                    tokio::time::timeout(Duration::from_secs(6), closed)
                        .await
                        .is_ok(),
                    "{protocol}: {what} was still open after the idle timeout of {idle:?}"
                );
                drop(client);
            }));
        }
        // Active: a request every quarter of the idle timeout, for twice the idle timeout, all on
        // the one connection.
        let (mut client, closed) = open(&addr, &ca, h2).await;
        let active_check = async move {
            let until = Instant::now() + 2 * idle;
            let mut requests = 0;
            while Instant::now() < until {
                assert!(
                    !closed.is_finished() && client.noop().await,
                    "{protocol}: an active connection was closed after {requests} requests"
                );
                requests += 1;
                tokio::time::sleep(idle / 4).await;
            }
            assert!(
                !closed.is_finished(),
                "{protocol}: an active connection was closed"
            );
        };
        checks.push(tokio::spawn(active_check));
    }
    // Every check's failure, not only the first.
    let mut failures = Vec::new();
    for check in checks {
        if let Err(failed) = check.await {
            let panic = failed.into_panic();
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(message);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
