//! Admission load benchmark: the real server stack (rustls, hyper, axum routes with their
//! limits, the admission functions over a filled digest store) in this process, driven over
//! keep-alive HTTPS connections by a closed-loop load generator in ANOTHER process (this
//! benchmark's own binary, started again as the generator: `admission_load/generator.rs`), so
//! the generator's threads and wake-ups are not the server runtime's.
//!
//! `cargo bench --bench admission_load` (see BENCHMARKS.md). For every concurrency level it runs
//! a Pod CREATE, a Deployment UPDATE and a 1:1 mix of both against `/mutate`, and the same bodies
//! over the same number of connections against `/noop` (same TLS, HTTP and limit layers, a
//! handler that does nothing): the ceiling of this machine and stack, which the summary compares
//! with. It also runs them against `/noop-review`, a webhook that only answers (the review read for
//! its uid, allowed; same layers), a diagnostic line that splits the gap into what answering a
//! review at all costs and what kreload's own work does. The last line is the summary for the
//! mix at c=32.
//!
//! Environment: KRELOAD_BENCH_SECS (measured seconds per run, default 4),
//! KRELOAD_BENCH_LEVELS (comma list, default 1,8,32,128), KRELOAD_BENCH_WORKLOADS (comma list of
//! workload names, default all), KRELOAD_BENCH_PATHS (a comma list of `/mutate`, `/noop`,
//! `/noop-review`; default all three) and KRELOAD_BENCH_ROUNDS (default 1; more interleave the
//! paths' runs and report the median of each): for profiling one run; KRELOAD_BENCH_GENERATOR_THREADS (default: one per
//! core); KRELOAD_BENCH_GENERATOR=wrk drives the same runs with `wrk` (if installed, e.g. Debian's
//! package) instead of the benchmark's own generator, as a cross-check of the generator.

mod fixtures;
#[path = "admission_load/generator.rs"]
mod generator;
#[path = "fixtures/proc_status.rs"]
mod proc_status;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use kreload::admission::server::{Limits, admission_router_with, serve_tls};
use kreload::admission::tls::{CertResolver, GeneratedCerts, server_config};
use kreload::cli::allocator::{ALLOCATOR, Allocator};
use kreload::metrics::Metrics;

/// The server runs on the allocator `kreload run` runs on.
#[global_allocator]
static GLOBAL: Allocator = ALLOCATOR;

const WARMUP: Duration = Duration::from_millis(500);
/// The no-op webhook's path (see [`fixtures::noop_answer`]).
const REVIEW_NOOP: &str = "/noop-review";
/// The environment variable that makes this binary the load generator.
const ROLE: &str = "KRELOAD_BENCH_ROLE";

/// Resident and peak memory of this process (the server and its store), in MiB.
fn memory_mb() -> (f64, f64) {
    (
        proc_status::status_mb("self", "VmRSS:"),
        proc_status::status_mb("self", "VmHWM:"),
    )
}

/// Context switches (voluntary and not) of the server's threads so far.
fn server_context_switches() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("kreload-server") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

struct RunResult {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    /// CPU microseconds per request in the measured window: the server's threads, the
    /// generator process's threads.
    server_us: f64,
    generator_us: f64,
    /// The server threads' context switches per request.
    server_cs: f64,
}

/// Which load generator drives the runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GeneratorKind {
    Own,
    Wrk,
}

/// wrk's script: the bodies from the files named after `--`, in turn (the same rotation as the
/// own generator's), each request formatted once per thread.
const WRK_SCRIPT: &str = r#"
local requests = {}
local n = 0
function init(args)
  for _, file in ipairs(args) do
    local f = assert(io.open(file, "rb"))
    local body = f:read("*a")
    f:close()
    table.insert(requests, wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body))
  end
end
function request()
  n = n + 1
  return requests[(n % #requests) + 1]
end
"#;

/// A duration as wrk prints it (`812.00us`, `1.23ms`, `2.01s`), in ms.
fn wrk_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(v) = text.strip_suffix("us") {
        (v, 1e-3)
    } else if let Some(v) = text.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = text.strip_suffix('s') {
        (v, 1e3)
    } else {
        return None;
    };
    Some(number.parse::<f64>().ok()? * factor)
}

/// One run driven by wrk: same connections, threads, bodies and measured time (wrk has no
/// warm-up, so its window includes the first requests of every connection).
fn run_wrk(job: &generator::Job, script: &Path) -> RunResult {
    let cpu0 = generator::threads_cpu_ns("kreload-server");
    let cs0 = server_context_switches();
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", job.threads.min(job.connections)))
        .arg(format!("-c{}", job.connections))
        .arg(format!("-d{}s", job.measure.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("https://{}{}", job.addr, job.path))
        .arg("--")
        .args(&job.body_files);
    let out = cmd
        .output()
        .expect("run wrk (KRELOAD_BENCH_GENERATOR=wrk needs it installed)");
    let cpu1 = generator::threads_cpu_ns("kreload-server");
    let cs1 = server_context_switches();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let requests: u64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let errors: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + field("Socket errors:").map_or(0, |v| {
            v.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        });
    let secs = job.measure.as_secs().max(1) as f64;
    let per_request = |n: u64| n as f64 / requests.max(1) as f64;
    RunResult {
        requests,
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(requests as f64 / secs),
        p50_ms: field("50%").and_then(wrk_ms).unwrap_or(f64::NAN),
        p99_ms: field("99%").and_then(wrk_ms).unwrap_or(f64::NAN),
        p999_ms: f64::NAN,
        errors,
        server_us: per_request(cpu1 - cpu0) / 1e3,
        generator_us: f64::NAN,
        server_cs: per_request(cs1 - cs0),
    }
}

/// One run: a generator process with `job`, the server's CPU and context switches sampled when
/// the generator says its measured window starts and ends.
fn run(job: &generator::Job) -> RunResult {
    let mut child = Command::new(std::env::current_exe().expect("this benchmark's binary"))
        .env(ROLE, "generator")
        .args(job.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the load generator");
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut cpu, mut cs) = ((0, 0), (0, 0));
    let mut report = None;
    for line in stdout.lines() {
        let line = line.expect("the generator's output");
        match line.as_str() {
            "ready" => {}
            "measuring" => {
                cpu.0 = generator::threads_cpu_ns("kreload-server");
                cs.0 = server_context_switches();
            }
            "done" => {
                cpu.1 = generator::threads_cpu_ns("kreload-server");
                cs.1 = server_context_switches();
            }
            other => report = generator::Report::parse(other).or(report),
        }
    }
    let status = child.wait().expect("wait for the load generator");
    assert!(status.success(), "the load generator failed: {status}");
    let r = report.expect("the load generator reported no result");
    let per_request = |n: u64| n as f64 / r.requests.max(1) as f64;
    RunResult {
        requests: r.requests,
        rps: r.requests as f64 / job.measure.as_secs_f64(),
        p50_ms: r.p50_ns as f64 / 1e6,
        p99_ms: r.p99_ns as f64 / 1e6,
        p999_ms: r.p999_ns as f64 / 1e6,
        errors: r.errors + r.reconnects,
        server_us: per_request(cpu.1 - cpu.0) / 1e3,
        generator_us: per_request(r.cpu_ns) / 1e3,
        server_cs: per_request(cs.1 - cs.0),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a generator input file");
    path.to_string_lossy().into_owned()
}

fn median_by(mut runs: Vec<RunResult>, key: impl Fn(&RunResult) -> f64) -> RunResult {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("generator") {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return generator::main(&args);
    }
    kreload::cli::allocator::configure();
    // `cargo bench` passes `--bench` (and any filter); the harness itself takes no arguments.
    let measure = Duration::from_secs_f64(env_or("KRELOAD_BENCH_SECS", 4.0));
    let rounds: usize = env_or("KRELOAD_BENCH_ROUNDS", 1).max(1);
    let levels: Vec<usize> = std::env::var("KRELOAD_BENCH_LEVELS")
        .unwrap_or_else(|_| "1,8,32,128".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();

    let (rss_start, _) = memory_mb();
    let store = fixtures::filled_store();
    let (rss_store, _) = memory_mb();
    let admission = Arc::new(fixtures::admission(store.clone()));
    let pod = fixtures::pod_review();
    let deploy = fixtures::deployment_update_review(&admission);

    let certs = GeneratedCerts::generate(
        &["127.0.0.1".into(), "localhost".into()],
        Duration::from_secs(24 * 3600),
    )
    .unwrap();
    let resolver = CertResolver::new(certs.certified_key().unwrap());

    // The generator's inputs: the CA and the bodies, as files it reads once.
    let dir: PathBuf =
        std::env::temp_dir().join(format!("kreload-admission-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = write_file(&dir, "ca.pem", certs.ca_pem.as_bytes());
    let pod_file = write_file(&dir, "pod-create.json", &pod);
    let deploy_file = write_file(&dir, "deploy-update.json", &deploy);
    let workloads: [(&str, Vec<String>); 3] = [
        ("pod-create", vec![pod_file.clone()]),
        ("deploy-update", vec![deploy_file.clone()]),
        ("mix-1:1", vec![pod_file, deploy_file]),
    ];

    // The server gets a runtime sized as `kreload run` sizes it (one worker per core); the
    // generator process runs on the same cores.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // With the allocator's hooks `kreload run` has. The store above is filled as the initial
    // lists would have filled it, so the lists count as done: the threads keep their caches from
    // the start, as kreload's have them once it serves after its lists.
    kreload::cli::allocator::initial_lists_done();
    let server_rt = kreload::cli::allocator::thread_cache_hooks(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("kreload-server")
            .enable_all(),
    )
    .build()
    .unwrap();
    let generator_threads = env_or("KRELOAD_BENCH_GENERATOR_THREADS", cores);
    let generator_kind = match std::env::var("KRELOAD_BENCH_GENERATOR").as_deref() {
        Ok("wrk") => GeneratorKind::Wrk,
        _ => GeneratorKind::Own,
    };
    let wrk_script = dir.join("bodies.lua");
    std::fs::write(&wrk_script, WRK_SCRIPT).unwrap();
    let limits = Limits::default();
    let metrics = Arc::new(Metrics::default());
    // `/noop-review`: a webhook that does nothing but answer (the review read for its uid,
    // allowed), behind the same limits: what any webhook pays, apart from its own work.
    let router = admission_router_with(
        admission.clone(),
        metrics.clone(),
        &limits,
        axum::Router::new().route(REVIEW_NOOP, post(fixtures::noop_answer::noop_review)),
    );
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
        "admission load: server on https://{addr} ({cores} server threads), load generator in another process ({}, {generator_threads} threads), {cores} cores, {}s per run after {}ms warm-up, HTTP/1.1 keep-alive, one connection per concurrent client, {rounds} round(s)",
        if generator_kind == GeneratorKind::Wrk {
            "wrk"
        } else {
            "the benchmark's own"
        },
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
    println!(
        "server process RSS: {rss_start:.1} MiB at start, {rss_store:.1} MiB with the store filled"
    );
    println!(
        "{:<14} {:>5} {:<12} {:>9} {:>9} {:>8} {:>8} {:>9} {:>7} {:>8} {:>10} {:>10} {:>7}",
        "workload",
        "c",
        "path",
        "requests",
        "rps",
        "p50_ms",
        "p99_ms",
        "p99.9_ms",
        "errors",
        "rss_mb",
        "srv_cpu_us",
        "gen_cpu_us",
        "srv_cs"
    );
    let only: Option<Vec<String>> = std::env::var("KRELOAD_BENCH_WORKLOADS")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let paths: Vec<&str> = match std::env::var("KRELOAD_BENCH_PATHS") {
        Ok(v) => ["/mutate", "/noop", REVIEW_NOOP]
            .into_iter()
            .filter(|p| v.split(',').any(|x| x == *p))
            .collect(),
        Err(_) => vec!["/mutate", "/noop", REVIEW_NOOP],
    };
    // The runs of the mix at c=32, by path: the summary and the diagnostic line.
    let mut mix_32: Vec<(&str, RunResult)> = Vec::new();
    for &c in &levels {
        for (name, bodies) in &workloads {
            if only.as_ref().is_some_and(|o| !o.iter().any(|w| w == name)) {
                continue;
            }
            // Rounds interleave the paths (A/B/A/B...), so drift on a shared machine hits both.
            let mut by_path: Vec<Vec<RunResult>> = paths.iter().map(|_| Vec::new()).collect();
            for _ in 0..rounds {
                for (i, path) in paths.iter().enumerate() {
                    let job = generator::Job {
                        addr,
                        ca_file: ca_file.clone(),
                        path: path.to_string(),
                        body_files: bodies.clone(),
                        connections: c,
                        threads: generator_threads,
                        warmup: WARMUP,
                        measure,
                    };
                    by_path[i].push(match generator_kind {
                        GeneratorKind::Own => run(&job),
                        GeneratorKind::Wrk => run_wrk(&job, &wrk_script),
                    });
                }
            }
            let mut pair = Vec::new();
            for (path, runs) in paths.iter().zip(by_path) {
                let r = median_by(runs, |r| r.rps);
                let (rss, _) = memory_mb();
                println!(
                    "{:<14} {:>5} {:<12} {:>9} {:>9.0} {:>8.3} {:>8.3} {:>9.3} {:>7} {:>8.1} {:>10.1} {:>10.1} {:>7.2}",
                    name,
                    c,
                    path,
                    r.requests,
                    r.rps,
                    r.p50_ms,
                    r.p99_ms,
                    r.p999_ms,
                    r.errors,
                    rss,
                    r.server_us,
                    r.generator_us,
                    r.server_cs
                );
                pair.push((*path, r));
            }
            if *name == "mix-1:1" && c == 32 {
                mix_32 = pair;
            }
        }
    }
    let (rss, hwm) = memory_mb();
    println!("server process RSS at the end: {rss:.1} MiB (peak {hwm:.1} MiB)");
    let _ = stop.send(());
    let _ =
        server_rt.block_on(async { tokio::time::timeout(Duration::from_secs(25), server).await });
    let _ = std::fs::remove_dir_all(&dir);
    let at = |p: &str| mix_32.iter().find(|(path, _)| *path == p).map(|(_, r)| r);
    let (mutate, noop) = (at("/mutate"), at("/noop"));
    // A diagnostic, not the target: how the gap to `/noop` splits into what answering a review
    // at all costs and what kreload's work costs.
    if let Some(review) = at(REVIEW_NOOP) {
        let ratio = |a: Option<&RunResult>, b: Option<&RunResult>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}", a.rps / b.rps),
            _ => "-".into(),
        };
        println!(
            "admission review-noop c=32 review_noop_rps={:.0} review_noop_p99_ms={:.3} review_noop_vs_noop={} mutate_vs_review_noop={}",
            review.rps,
            review.p99_ms,
            ratio(Some(review), noop),
            ratio(mutate, Some(review)),
        );
    }
    match mutate.zip(noop) {
        Some((m, n)) => println!(
            "admission c=32 rps={:.0} p99_ms={:.3} noop_rps={:.0} noop_p99_ms={:.3} ratio={:.2}",
            m.rps,
            m.p99_ms,
            n.rps,
            n.p99_ms,
            m.rps / n.rps
        ),
        None => println!(
            "admission: no c=32 mix run for /mutate and /noop (KRELOAD_BENCH_LEVELS, _WORKLOADS, _PATHS)"
        ),
    }
}
