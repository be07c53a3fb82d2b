//! The load generator: the admission_load benchmark's own binary, started again as a child
//! process (`KRELOAD_BENCH_ROLE=generator`), so that its threads, wake-ups and allocations are
//! not the server's. A closed loop of `c` keep-alive HTTP/1.1 connections over TLS, each on its
//! own task; the connections are split over `threads` single-threaded runtimes (one epoll loop
//! per thread, as wrk does it). Every request is one pre-built buffer (head and body) written at
//! once; the answer is read by its Content-Length. No HTTP client library: the generator's own
//! cost per request is part of what the two cores spend, and it is the same code for every path.
//!
//! Protocol with the parent: the arguments name the address, CA file, path, body files,
//! connections, threads and timings; the child prints `ready` once every connection is made,
//! `measuring` when the measured window starts, `done` when it ends, then one `result` line.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// What the parent asks for.
pub struct Job {
    pub addr: SocketAddr,
    pub ca_file: String,
    pub path: String,
    pub body_files: Vec<String>,
    pub connections: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

impl Job {
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--addr".into(),
            self.addr.to_string(),
            "--ca".into(),
            self.ca_file.clone(),
            "--path".into(),
            self.path.clone(),
            "--connections".into(),
            self.connections.to_string(),
            "--threads".into(),
            self.threads.to_string(),
            "--warmup-ms".into(),
            self.warmup.as_millis().to_string(),
            "--measure-ms".into(),
            self.measure.as_millis().to_string(),
        ];
        for f in &self.body_files {
            args.push("--body".into());
            args.push(f.clone());
        }
        args
    }

    fn from_args(args: &[String]) -> Job {
        let mut job = Job {
            addr: "127.0.0.1:0".parse().unwrap(),
            ca_file: String::new(),
            path: String::new(),
            body_files: Vec::new(),
            connections: 1,
            threads: 1,
            warmup: Duration::ZERO,
            measure: Duration::from_secs(1),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().expect("every flag has a value");
            match flag.as_str() {
                "--addr" => job.addr = value.parse().expect("--addr"),
                "--ca" => job.ca_file = value.clone(),
                "--path" => job.path = value.clone(),
                "--body" => job.body_files.push(value.clone()),
                "--connections" => job.connections = value.parse().expect("--connections"),
                "--threads" => job.threads = value.parse().expect("--threads"),
                "--warmup-ms" => job.warmup = Duration::from_millis(value.parse().unwrap()),
                "--measure-ms" => job.measure = Duration::from_millis(value.parse().unwrap()),
                other => panic!("unknown generator flag {other}"),
            }
        }
        job
    }
}

/// What the child reports: counts and latency percentiles of the measured window, and the CPU
/// time of all its threads over that window.
#[derive(Debug, Default)]
pub struct Report {
    pub requests: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub cpu_ns: u64,
}

impl Report {
    fn line(&self) -> String {
        format!(
            "result requests={} errors={} reconnects={} p50_ns={} p99_ns={} p999_ns={} cpu_ns={}",
            self.requests,
            self.errors,
            self.reconnects,
            self.p50_ns,
            self.p99_ns,
            self.p999_ns,
            self.cpu_ns
        )
    }

    /// Parses the child's `result` line.
    pub fn parse(line: &str) -> Option<Report> {
        let rest = line.strip_prefix("result ")?;
        let mut r = Report::default();
        for pair in rest.split_whitespace() {
            let (k, v) = pair.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "requests" => r.requests = v,
                "errors" => r.errors = v,
                "reconnects" => r.reconnects = v,
                "p50_ns" => r.p50_ns = v,
                "p99_ns" => r.p99_ns = v,
                "p999_ns" => r.p999_ns = v,
                "cpu_ns" => r.cpu_ns = v,
                _ => {}
            }
        }
        Some(r)
    }
}

/// CPU time (ns) of this whole process so far, threads that have exited included: user and
/// system time from /proc/self/stat, in clock ticks (100 per second on Linux).
pub fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name may hold spaces; the fields after it are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) * 10_000_000
}

/// CPU time (ns) of this process's threads whose name starts with `prefix`, from
/// /proc/self/task/*/schedstat (exact, but only for threads still running).
pub fn threads_cpu_ns(prefix: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        total += std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

fn client_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
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

async fn connect(addr: SocketAddr, tls: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tls.connect(name, tcp).await
}

/// One request written and its answer read; whether it was a 200 with the expected body.
async fn exchange(
    stream: &mut TlsStream<TcpStream>,
    request: &[u8],
    buf: &mut Vec<u8>,
    expect_json: bool,
) -> std::io::Result<bool> {
    stream.write_all(request).await?;
    stream.flush().await?;
    buf.clear();
    // The head, then as much of the body as Content-Length says.
    let (head_len, status, content_length) = loop {
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let content_length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<usize>()
                            .ok()
                    })
                    .ok_or(std::io::ErrorKind::InvalidData)?;
                break (len, response.code.unwrap_or(0), content_length);
            }
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Err(std::io::ErrorKind::InvalidData.into()),
        }
    };
    let total: usize = head_len + content_length;
    while buf.len() < total {
        if buf.len() == buf.capacity() {
            buf.reserve(total - buf.len());
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    let body = &buf[head_len..total];
    Ok(status == 200 && (!expect_json || body.first() == Some(&b'{')))
}

struct ConnectionResult {
    latencies_ns: Vec<u64>,
    errors: u64,
    reconnects: u64,
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    mut stream: TlsStream<TcpStream>,
    addr: SocketAddr,
    tls: TlsConnector,
    requests: Arc<Vec<Vec<u8>>>,
    first: usize,
    expect_json: bool,
    measure_from: Instant,
    until: Instant,
) -> ConnectionResult {
    let mut out = ConnectionResult {
        latencies_ns: Vec::with_capacity(64 * 1024),
        errors: 0,
        reconnects: 0,
    };
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut i = first;
    loop {
        let started = Instant::now();
        if started >= until {
            break;
        }
        let request = &requests[i % requests.len()];
        i += 1;
        match exchange(&mut stream, request, &mut buf, expect_json).await {
            Ok(true) if started >= measure_from => {
                out.latencies_ns.push(started.elapsed().as_nanos() as u64)
            }
            Ok(true) => {}
            Ok(false) => out.errors += 1,
            Err(_) => {
                out.errors += 1;
                out.reconnects += 1;
                match connect(addr, &tls).await {
                    Ok(s) => stream = s,
                    Err(_) => break,
                }
            }
        }
    }
    out
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The child's main: runs the job and prints the protocol lines on stdout.
pub fn main(args: &[String]) {
    let job = Job::from_args(args);
    let ca = std::fs::read(&job.ca_file).expect("read the CA file");
    let tls = TlsConnector::from(client_config(&ca));
    let host = job.addr.ip().to_string();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        job.body_files
            .iter()
            .map(|f| {
                let body = std::fs::read(f).expect("read a body file");
                let mut r = format!(
                    "POST {} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    job.path,
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            })
            .collect(),
    );
    let expect_json = job.path != "/noop";
    let threads = job.threads.clamp(1, job.connections.max(1));

    // Connections are made (TLS handshakes included) on their own thread's runtime before the
    // clock starts; each thread then waits for the common start.
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let (start_tx, start_rx) = std::sync::mpsc::channel::<(Instant, Instant)>();
    let start_rx = Arc::new(std::sync::Mutex::new(start_rx));
    let mut handles = Vec::new();
    for t in 0..threads {
        let mine: Vec<usize> = (0..job.connections).filter(|n| n % threads == t).collect();
        let (barrier, start_rx, tls, requests) = (
            barrier.clone(),
            start_rx.clone(),
            tls.clone(),
            requests.clone(),
        );
        let addr = job.addr;
        let handle = std::thread::Builder::new()
            .name(format!("load-generator-{t}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut streams = Vec::new();
                    for &n in &mine {
                        streams.push((n, connect(addr, &tls).await.expect("connect")));
                    }
                    barrier.wait();
                    let (measure_from, until) = start_rx.lock().unwrap().recv().unwrap();
                    let tasks: Vec<_> = streams
                        .into_iter()
                        .map(|(n, stream)| {
                            tokio::spawn(connection(
                                stream,
                                addr,
                                tls.clone(),
                                requests.clone(),
                                n,
                                expect_json,
                                measure_from,
                                until,
                            ))
                        })
                        .collect();
                    let mut results = Vec::new();
                    for task in tasks {
                        results.push(task.await.unwrap());
                    }
                    results
                })
            })
            .unwrap();
        handles.push(handle);
    }
    barrier.wait();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready").unwrap();
    stdout.flush().unwrap();
    let measure_from = Instant::now() + job.warmup;
    let until = measure_from + job.measure;
    for _ in 0..threads {
        start_tx.send((measure_from, until)).unwrap();
    }
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let cpu_start = process_cpu_ns();
    writeln!(stdout, "measuring").unwrap();
    stdout.flush().unwrap();
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let cpu_end = process_cpu_ns();
    writeln!(stdout, "done").unwrap();
    stdout.flush().unwrap();

    let mut all = Vec::new();
    let mut report = Report {
        cpu_ns: cpu_end - cpu_start,
        ..Default::default()
    };
    for h in handles {
        for r in h.join().unwrap() {
            all.extend(r.latencies_ns);
            report.errors += r.errors;
            report.reconnects += r.reconnects;
        }
    }
    all.sort_unstable();
    report.requests = all.len() as u64;
    report.p50_ns = percentile(&all, 0.50);
    report.p99_ns = percentile(&all, 0.99);
    report.p999_ns = percentile(&all, 0.999);
    writeln!(stdout, "{}", report.line()).unwrap();
    stdout.flush().unwrap();
}
