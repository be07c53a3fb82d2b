//! Admission load benchmark: the real server stack (rustls, hyper, axum routes with their
//! limits, the admission functions over a filled digest store) in this process, driven over
//! keep-alive HTTPS connections by a closed-loop generator in the same process.
//!
//! `cargo bench --bench admission_load` (see BENCHMARKS.md). For every concurrency level it runs
//! a Pod CREATE, a Deployment UPDATE and a 1:1 mix of both against `/mutate`, and the same bodies
//! against `/noop` (same TLS, HTTP and limit layers, a handler that does nothing): the ceiling
//! of this machine and stack. The last line is the summary for the mix at c=32.
//!
//! Environment: KRELOAD_BENCH_SECS (measured seconds per run, default 4),
//! KRELOAD_BENCH_LEVELS (comma list, default 1,8,32,128), KRELOAD_BENCH_WORKLOADS (comma list of
//! workload names, default all) and KRELOAD_BENCH_PATHS (`/mutate`, `/noop` or both, the
//! default): for profiling one run; KRELOAD_BENCH_GENERATOR_THREADS (default: one per core).

mod fixtures;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kreload::admission::server::{Limits, admission_router, serve_tls};
use kreload::admission::tls::{CertResolver, GeneratedCerts, server_config};
use kreload::metrics::Metrics;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WARMUP: Duration = Duration::from_millis(500);

/// Resident and peak memory of this process, in MiB (server and generator together).
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (ns) used so far by this process's threads, split into (server, generator) by
/// thread name. From /proc/self/task/*/schedstat: exact, unlike the tick-based utime.
fn cpu_ns() -> (u64, u64) {
    let (mut server, mut generator) = (0, 0);
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let ns: u64 = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if comm.starts_with("kreload-server") {
            server += ns;
        } else if comm.starts_with("load-generator") {
            generator += ns;
        }
    }
    (server, generator)
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn connect(addr: SocketAddr, tls: TlsConnector) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let stream = tls.connect(name, tcp).await.expect("TLS handshake");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

struct WorkerResult {
    latencies_ns: Vec<u64>,
    errors: u64,
    reconnects: u64,
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    mut sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    tls: TlsConnector,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    first: usize,
    measure_from: Instant,
    until: Instant,
) -> WorkerResult {
    let mut out = WorkerResult {
        latencies_ns: Vec::with_capacity(64 * 1024),
        errors: 0,
        reconnects: 0,
    };
    let mut i = first;
    loop {
        let started = Instant::now();
        if started >= until {
            break;
        }
        let body = bodies[i % bodies.len()].clone();
        i += 1;
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, "127.0.0.1")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .unwrap();
        let ok = async {
            sender.ready().await.ok()?;
            let response = sender.send_request(request).await.ok()?;
            let status = response.status();
            let body = response.into_body().collect().await.ok()?.to_bytes();
            (status == 200 && (path == "/noop" || body.starts_with(b"{"))).then_some(())
        }
        .await;
        let took = started.elapsed();
        match ok {
            Some(()) if started >= measure_from => out.latencies_ns.push(took.as_nanos() as u64),
            Some(()) => {}
            None => {
                out.errors += 1;
                if sender.is_closed() {
                    out.reconnects += 1;
                    sender = connect(addr, tls.clone()).await;
                }
            }
        }
    }
    out
}

struct RunResult {
    requests: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    reconnects: u64,
    /// CPU microseconds per request in the measured window: server threads, generator threads.
    server_us: f64,
    generator_us: f64,
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e6
}

async fn run(
    addr: SocketAddr,
    tls: TlsConnector,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    concurrency: usize,
    measure: Duration,
) -> RunResult {
    // Every connection (and its TLS handshake) is made before the clock starts.
    let senders =
        futures::future::join_all((0..concurrency).map(|_| connect(addr, tls.clone()))).await;
    let measure_from = Instant::now() + WARMUP;
    let until = measure_from + measure;
    let cpu_at = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let start = cpu_ns();
        tokio::time::sleep_until(until.into()).await;
        let end = cpu_ns();
        (end.0 - start.0, end.1 - start.1)
    });
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(n, sender)| {
            tokio::spawn(worker(
                sender,
                addr,
                tls.clone(),
                path,
                bodies.clone(),
                n,
                measure_from,
                until,
            ))
        })
        .collect();
    let mut all = Vec::new();
    let (mut errors, mut reconnects) = (0, 0);
    for h in handles {
        let r = h.await.unwrap();
        all.extend(r.latencies_ns);
        errors += r.errors;
        reconnects += r.reconnects;
    }
    all.sort_unstable();
    let (server_ns, generator_ns) = cpu_at.await.unwrap();
    let per_request = |ns: u64| ns as f64 / 1e3 / all.len().max(1) as f64;
    RunResult {
        server_us: per_request(server_ns),
        generator_us: per_request(generator_ns),
        requests: all.len(),
        rps: all.len() as f64 / measure.as_secs_f64(),
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        p999_ms: percentile(&all, 0.999),
        errors,
        reconnects,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this harness takes no arguments.
    let measure = Duration::from_secs_f64(env_or("KRELOAD_BENCH_SECS", 4.0));
    let levels: Vec<usize> = std::env::var("KRELOAD_BENCH_LEVELS")
        .unwrap_or_else(|_| "1,8,32,128".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let (rss_start, _) = memory_mb();
    let store = fixtures::filled_store();
    let (rss_store, _) = memory_mb();
    let admission = Arc::new(fixtures::admission(store.clone()));
    let pod = Bytes::from(fixtures::pod_review());
    let deploy = Bytes::from(fixtures::deployment_update_review(&admission));
    let workloads: [(&str, Arc<Vec<Bytes>>); 3] = [
        ("pod-create", Arc::new(vec![pod.clone()])),
        ("deploy-update", Arc::new(vec![deploy.clone()])),
        ("mix-1:1", Arc::new(vec![pod.clone(), deploy.clone()])),
    ];

    let certs = GeneratedCerts::generate(
        &["127.0.0.1".into(), "localhost".into()],
        Duration::from_secs(24 * 3600),
    )
    .unwrap();
    let resolver = CertResolver::new(certs.certified_key().unwrap());
    let tls = TlsConnector::from(client_config(&certs.ca_pem));

    // The server gets a runtime of its own, sized as `kreload run` sizes it (one worker per
    // core); the generator gets another. Both share the machine's cores.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("kreload-server")
        .enable_all()
        .build()
        .unwrap();
    let generator_threads = env_or("KRELOAD_BENCH_GENERATOR_THREADS", cores);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(generator_threads)
        .thread_name("load-generator")
        .enable_all()
        .build()
        .unwrap();
    let limits = Limits::default();
    let metrics = Arc::new(Metrics::default());
    let router = admission_router(admission.clone(), metrics.clone(), &limits);
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(serve_tls(
        listener,
        server_config(resolver),
        router,
        limits,
        async move {
            let _ = stopped.await;
        },
    ));

    println!(
        "admission load: server on https://{addr}, {cores} cores ({cores} server threads, {generator_threads} generator threads), {}s per run after {}ms warm-up, HTTP/1.1 keep-alive, one connection per concurrent client",
        measure.as_secs_f64(),
        WARMUP.as_millis()
    );
    println!(
        "bodies: Pod CREATE review {} B (Pod {} B), Deployment UPDATE review {} B; store: {} ConfigMaps, {} Secrets",
        pod.len(),
        serde_json::to_vec(&fixtures::pod_object()).unwrap().len(),
        deploy.len(),
        store.len(kreload::domain::config::ConfigKind::ConfigMap),
        store.len(kreload::domain::config::ConfigKind::Secret),
    );
    println!("process RSS: {rss_start:.1} MiB at start, {rss_store:.1} MiB with the store filled");
    println!(
        "{:<14} {:>5} {:<8} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7} {:>8}",
        "workload",
        "c",
        "path",
        "requests",
        "rps",
        "p50_ms",
        "p99_ms",
        "p99.9_ms",
        "errors",
        "rss_mb"
    );
    let only: Option<Vec<String>> = std::env::var("KRELOAD_BENCH_WORKLOADS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let paths: Option<Vec<String>> = std::env::var("KRELOAD_BENCH_PATHS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let mut summary = None;
    for &c in &levels {
        for (name, bodies) in &workloads {
            if only.as_ref().is_some_and(|o| !o.iter().any(|w| w == name)) {
                continue;
            }
            let mut pair = Vec::new();
            for path in ["/mutate", "/noop"] {
                if paths.as_ref().is_some_and(|p| !p.iter().any(|x| x == path)) {
                    continue;
                }
                let r =
                    client_rt.block_on(run(addr, tls.clone(), path, bodies.clone(), c, measure));
                let (rss, _) = memory_mb();
                println!(
                    "{:<14} {:>5} {:<8} {:>9} {:>9.0} {:>8.3} {:>8.3} {:>9.3} {:>7} {:>8.1} {:>10.1} {:>10.1}",
                    name,
                    c,
                    path,
                    r.requests,
                    r.rps,
                    r.p50_ms,
                    r.p99_ms,
                    r.p999_ms,
                    r.errors + r.reconnects,
                    rss,
                    r.server_us,
                    r.generator_us
                );
                pair.push(r);
            }
            if *name == "mix-1:1" && c == 32 && pair.len() == 2 {
                summary = Some((pair[0].rps, pair[0].p99_ms, pair[1].rps));
            }
        }
    }
    let (rss, hwm) = memory_mb();
    println!(
        "process RSS at the end: {rss:.1} MiB (peak {hwm:.1} MiB; server and generator together)"
    );
    let _ = stop.send(());
    let _ =
        server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(25), server).await });
    match summary {
        Some((rps, p99, noop)) => println!(
            "admission c=32 rps={rps:.0} p99_ms={p99:.3} noop_rps={noop:.0} ratio={:.2}",
            rps / noop
        ),
        None => println!("admission: no c=32 level was run (KRELOAD_BENCH_LEVELS)"),
    }
}
