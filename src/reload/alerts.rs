//! Sends alerts on reload (Reloader's `ALERT_*`) and `--webhook-url` calls from a task of their
//! own: a roll only puts a message on a bounded queue and never waits for the network. Each
//! request has a timeout, follows no redirect (as Reloader), goes through `ALERT_WEBHOOK_PROXY`
//! when set, and is retried with backoff on a network error or a 5xx answer; what cannot be
//! delivered is counted (`kreload_alerts_failed_total`), never retried forever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::alert::{AlertSink, Payload, payload};
use crate::metrics::Metrics;

/// Messages waiting to be sent; more are dropped (and counted as failed), never waited for.
const QUEUE: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Where alerts go.
#[derive(Clone, Debug)]
pub struct AlertTarget {
    pub sink: AlertSink,
    pub url: String,
    pub proxy: Option<String>,
    pub additional_info: Option<String>,
}

/// The sending end of the alert queue.
#[derive(Clone)]
pub struct Alerts {
    tx: mpsc::Sender<Payload>,
    sink: AlertSink,
    additional_info: Option<String>,
    metrics: Arc<Metrics>,
}

impl Alerts {
    /// Starts the sender task for `target`. Errs when the URL or the proxy cannot be used.
    pub fn start(target: AlertTarget, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        builder = match target
            .proxy
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy)?),
            // Only the proxy the operator names: not one picked up from the environment.
            None => builder.no_proxy(),
        };
        let client = builder.build()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_all(
            client,
            target.url.trim().to_owned(),
            rx,
            metrics.clone(),
        ));
        Ok(Alerts {
            tx,
            sink: target.sink,
            additional_info: target.additional_info,
            metrics,
        })
    }

    pub fn additional_info(&self) -> Option<&str> {
        self.additional_info.as_deref()
    }

    /// Queues an alert with `message` in the sink's shape.
    pub fn alert(&self, message: &str) {
        self.send(payload(self.sink, message));
    }

    /// Queues a request with this body.
    pub fn send(&self, payload: Payload) {
        if self.tx.try_send(payload).is_err() {
            tracing::warn!("alert queue full: an alert is dropped");
            self.metrics.alert(false);
        }
    }
}

async fn send_all(
    client: reqwest::Client,
    url: String,
    mut rx: mpsc::Receiver<Payload>,
    metrics: Arc<Metrics>,
) {
    while let Some(p) = rx.recv().await {
        let mut wait = FIRST_RETRY;
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let result = client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, p.content_type)
                .body(p.body.clone())
                .send()
                .await;
            let retry = match result {
                Ok(r) if r.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), attempt, "alert not accepted");
                    r.status().is_server_error()
                }
                // The error names the URL: a webhook URL may hold a token, so it stays out.
                Err(e) => {
                    tracing::warn!(error = %e.without_url(), attempt, "alert not sent");
                    true
                }
            };
            if !retry || attempt == ATTEMPTS {
                break;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        metrics.alert(delivered);
    }
}
