//! config-echo: reads, once at start, the file named by `CONFIG_ECHO_FILE` (default
//! `/data/cfg/index.html`) and the environment variable named by `CONFIG_ECHO_ENV` (default
//! `APP_SECRET`), then serves them on `0.0.0.0:$CONFIG_ECHO_PORT` (default 8080):
//!
//! - `GET /` answers a JSON object: `{"pod": HOSTNAME, "file": CONTENT, "env": VALUE}` (`null`
//!   for a file that cannot be read or a variable that is not set);
//! - `GET /healthz` answers `ok` (for probes).
//!
//! It exits 0 on SIGTERM: as PID 1 in its container it would otherwise ignore the signal and make
//! every rollout wait out the pod's grace period.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// A JSON string literal, or `null`.
fn json_str(v: Option<&str>) -> String {
    let Some(s) = v else { return "null".to_owned() };
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn answer(mut stream: TcpStream, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers (no request here has a body).
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim_end() != "" {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, content_type, body) = match path {
        "/" => ("200 OK", "application/json", body),
        "/healthz" => ("200 OK", "text/plain", "ok"),
        _ => ("404 Not Found", "text/plain", "not found"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn _exit(status: i32) -> !;
}

extern "C" fn exit_now(_: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

fn main() {
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    // SAFETY: the handler only calls _exit.
    unsafe {
        signal(SIGTERM, exit_now);
        signal(SIGINT, exit_now);
    }
    let file = env_or("CONFIG_ECHO_FILE", "/data/cfg/index.html");
    let var = env_or("CONFIG_ECHO_ENV", "APP_SECRET");
    let port = env_or("CONFIG_ECHO_PORT", "8080");
    // Read once, at start: what this container started with is what it serves until it ends.
    let content = std::fs::read_to_string(&file).ok();
    let value = std::env::var(&var).ok();
    let pod = std::env::var("HOSTNAME").ok();
    let body = format!(
        "{{\"pod\":{},\"file\":{},\"env\":{}}}\n",
        json_str(pod.as_deref()),
        json_str(content.as_deref()),
        json_str(value.as_deref())
    );
    let listener = TcpListener::bind(format!("0.0.0.0:{port}"))
        .unwrap_or_else(|e| panic!("config-echo: cannot listen on port {port}: {e}"));
    eprintln!("config-echo: serving {file} and ${var} on port {port}");
    for stream in listener.incoming().flatten() {
        std::thread::spawn({
            let body = body.clone();
            move || answer(stream, &body)
        });
    }
}
