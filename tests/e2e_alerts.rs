//! Alerts on reload (Reloader's `ALERT_*`, issue 11) and `--webhook-url`, against local HTTP
//! receivers: each sink's payload shape, the proxy, retries and the failure metric, and that
//! neither a value nor the webhook URL's token shows anywhere.

mod common;

use std::time::Duration;

use common::workloads::*;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as a receiver saw it.
#[derive(Debug)]
struct Received {
    /// `POST /path HTTP/1.1` (or the absolute form through a proxy).
    request_line: String,
    content_type: String,
    body: Vec<u8>,
}

/// An HTTP/1.1 receiver on 127.0.0.1 answering every request with `status`; returns its
/// address and the requests it got.
async fn receiver(status: u16) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then as much body as Content-Length says.
                let (head_end, length) = loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let content_type = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-type")
                            .then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                let _ = tx.send(Received {
                    request_line: head.lines().next().unwrap_or_default().to_owned(),
                    content_type,
                    body: buf[head_end..].to_vec(),
                });
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>, what: &str) -> Received {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within 60s"))
        .expect("receiver open")
}

const TOKEN: &str = "T0K3N-in-the-path";
const VALUE: &str = "s3cr3t-value-never-sent";

/// A namespace with an opted-in Deployment consuming ConfigMap `app`.
async fn workload(prefix: &str) -> TestNamespace {
    let client = client().await;
    let ns = TestNamespace::new(&client, prefix).await;
    cm("app").data(json!({"k": VALUE})).create(&ns).await;
    create(
        &ns,
        deploy(
            "web",
            json!({"reloader.stakater.com/auto": "true"}),
            env_from(&["app"], &[]),
        ),
    )
    .await;
    ns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sink_gets_its_payload_and_never_a_value_or_the_token() {
    for (sink, prefix) in [
        ("slack", "alert-slack"),
        ("teams", "alert-teams"),
        ("gchat", "alert-gchat"),
        ("webhook", "alert-hook"),
    ] {
        let (addr, mut rx) = receiver(200).await;
        let ns = workload(prefix).await;
        let url = format!("http://{addr}/services/{TOKEN}");
        let kreload = kreload_with_env(
            &[&ns],
            &[],
            &[
                ("ALERT_ON_RELOAD", "true"),
                ("ALERT_SINK", sink),
                ("ALERT_WEBHOOK_URL", &url),
                ("ALERT_ADDITIONAL_INFO", "e2e-cluster"),
            ],
        );
        let cases = [rolls(Kind::Deployment, "web", "consumes app")];
        let bases = baselines(&ns, &cases).await;
        set_cm(&ns, "app", "k", "v2-also-secret").await;
        let got = next(&mut rx, &format!("{sink} alert")).await;
        assert_eq!(got.request_line, format!("POST /services/{TOKEN} HTTP/1.1"));
        let text = match sink {
            "webhook" => {
                assert!(
                    got.content_type.starts_with("text/plain"),
                    "{sink}: {}",
                    got.content_type
                );
                String::from_utf8(got.body).unwrap()
            }
            _ => {
                assert!(
                    got.content_type.starts_with("application/json"),
                    "{sink}: {}",
                    got.content_type
                );
                let v: Value = serde_json::from_slice(&got.body).unwrap();
                let t = if sink == "slack" {
                    &v["attachments"][0]["text"]
                } else {
                    &v["text"]
                };
                t.as_str()
                    .unwrap_or_else(|| panic!("{sink}: {v}"))
                    .to_owned()
            }
        };
        assert!(
            text.starts_with("e2e-cluster : kreload detected changes"),
            "{sink}: {text}"
        );
        assert!(
            text.contains("web") && text.contains("ConfigMap app"),
            "{sink}: {text}"
        );
        assert!(
            !text.contains(VALUE) && !text.contains("v2-also-secret"),
            "{sink}: a value in {text}"
        );
        assert_eq!(sink == "webhook", !text.contains('*'), "{sink}: {text}");
        check(verify(&ns, &cases, &bases).await, &[&kreload]);
        let log = kreload.log_text();
        assert!(
            !log.contains(TOKEN),
            "the webhook URL's token is in kreload's log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_go_through_the_proxy_and_failures_are_retried_then_counted() {
    // Through the proxy: the proxy sees the absolute URL.
    let (proxy, mut via_proxy) = receiver(200).await;
    let ns = workload("alert-proxy").await;
    let kreload = kreload_with_env(
        &[&ns],
        &[],
        &[
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_SINK", "teams"),
            ("ALERT_WEBHOOK_URL", "http://alerts.invalid/hook"),
            ("ALERT_WEBHOOK_PROXY", &format!("http://{proxy}")),
        ],
    );
    let cases = [rolls(Kind::Deployment, "web", "consumes app")];
    let bases = baselines(&ns, &cases).await;
    set_cm(&ns, "app", "k", "v2").await;
    let got = next(&mut via_proxy, "proxied alert").await;
    assert_eq!(got.request_line, "POST http://alerts.invalid/hook HTTP/1.1");
    check(verify(&ns, &cases, &bases).await, &[&kreload]);
    drop(kreload);

    // A receiver that fails: 3 attempts, then the failure is counted; the roll is not held up.
    let (addr, mut failing) = receiver(500).await;
    let ns = workload("alert-fail").await;
    let kreload = kreload_with_env(
        &[&ns],
        &[],
        &[
            ("ALERT_ON_RELOAD", "true"),
            ("ALERT_WEBHOOK_URL", &format!("http://{addr}/hook")),
        ],
    );
    let bases = baselines(&ns, &cases).await;
    set_cm(&ns, "app", "k", "v2").await;
    for attempt in 1..=3 {
        next(&mut failing, &format!("attempt {attempt}")).await;
    }
    wait_for(
        "kreload_alerts_failed_total 1",
        Duration::from_secs(30),
        || async {
            let text = reqwest::get(format!("{}/metrics", kreload.health))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines()
                .any(|l| l == "kreload_alerts_failed_total{} 1")
                .then_some(())
        },
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), failing.recv())
            .await
            .is_err(),
        "a fourth attempt: retries must stop"
    );
    check(verify(&ns, &cases, &bases).await, &[&kreload]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_url_is_called_instead_of_rolling() {
    let (addr, mut rx) = receiver(200).await;
    let ns = workload("alert-instead").await;
    let kreload = kreload_for(
        &[&ns],
        &["--webhook-url", &format!("http://{addr}/reloader/{TOKEN}")],
    );
    let cases = [keeps(
        Kind::Deployment,
        "web",
        "--webhook-url: called instead of rolling",
    )];
    let bases = baselines(&ns, &cases).await;
    set_cm(&ns, "app", "k", "v2").await;
    let got = next(&mut rx, "--webhook-url call").await;
    assert_eq!(got.request_line, format!("POST /reloader/{TOKEN} HTTP/1.1"));
    let v: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v, json!({"webhook": "update successful"}));
    check(verify(&ns, &cases, &bases).await, &[&kreload]);
    assert!(!kreload.log_text().contains(TOKEN));
}
