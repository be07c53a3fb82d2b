//! The no-op mutating webhook that pod creation is compared with: the scale benchmark's own
//! binary started again (`KRELOAD_SCALE_ROLE=noop-webhook`), in a process of its own as kreload
//! is, serving over kreload's TLS and HTTP stack (`serve_tls`: rustls, hyper, its connection limits) an
//! answer that allows every review without a patch. It reads only `request.uid`, the least a
//! webhook must read to answer, so kreload is compared with the cheapest webhook there can be.
//!
//! At `/admit-patch` it answers as a webhook that mutates does at the least: one annotation
//! added ([`NOOP_PATCH_ANNOTATION`], a value as long as kreload's stamp), nothing else read but
//! whether the object has annotations. Not part of the ratio the benchmark reports: it shows what
//! the API server spends on any patch (applying it, re-running the in-tree admission plugins).
//!
//! It prints `port <n>` and `ca <base64 of the CA's PEM>` on stdout, answers `GET /count` with
//! the number of reviews answered, and exits when its stdin closes.

use std::borrow::Cow;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use kreload::admission::server::{Limits, serve_tls};
use kreload::admission::tls::{CertResolver, GeneratedCerts, server_config};
use serde::Deserialize;

use crate::fixtures::noop_answer;

/// The annotation the patching no-op adds.
pub const NOOP_PATCH_ANNOTATION: &str = "bench.kreload.dev/noop-patch";

#[derive(Deserialize)]
struct PatchReview<'a> {
    #[serde(borrow)]
    request: PatchRequest<'a>,
}

#[derive(Deserialize)]
struct PatchRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    object: PatchObject,
}

#[derive(Deserialize)]
struct PatchObject {
    metadata: PatchMeta,
}

#[derive(Deserialize)]
struct PatchMeta {
    annotations: Option<serde::de::IgnoredAny>,
}

async fn admit_patch(State(served): State<Arc<AtomicU64>>, body: Bytes) -> impl IntoResponse {
    let Ok(review) = serde_json::from_slice::<PatchReview>(&body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    served.fetch_add(1, Ordering::Relaxed);
    // As long as a kreload stamp (`v2.<8 hex>.<64 hex>`).
    let value = format!("v2.00000000.{}", "0".repeat(64));
    let op = if review.request.object.metadata.annotations.is_some() {
        serde_json::json!({"op": "add", "path": format!("/metadata/annotations/{}", NOOP_PATCH_ANNOTATION.replace('/', "~1")), "value": value})
    } else {
        serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": {NOOP_PATCH_ANNOTATION: value}})
    };
    let patch = serde_json::to_vec(&serde_json::json!([op])).unwrap();
    noop_answer::allowed(&review.request.uid, Some(&patch))
}

async fn admit(State(served): State<Arc<AtomicU64>>, body: Bytes) -> impl IntoResponse {
    let Some(uid) = noop_answer::uid(&body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    served.fetch_add(1, Ordering::Relaxed);
    noop_answer::allowed(&uid, None)
}

pub fn main() {
    // Sized as `kreload run` is (a multi-threaded runtime, one worker per core).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let certs = GeneratedCerts::generate(
            &["127.0.0.1".into(), "localhost".into()],
            Duration::from_secs(24 * 3600),
        )
        .unwrap();
        let resolver = CertResolver::new(certs.certified_key().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let count = served.clone();
        let router = Router::new()
            .route("/admit", post(admit))
            .route("/admit-patch", post(admit_patch))
            .route(
                "/count",
                get(move || async move { count.load(Ordering::Relaxed).to_string() }),
            )
            .with_state(served);
        let mut out = std::io::stdout();
        writeln!(out, "port {}", listener.local_addr().unwrap().port()).unwrap();
        writeln!(
            out,
            "ca {}",
            base64::engine::general_purpose::STANDARD.encode(&certs.ca_pem)
        )
        .unwrap();
        out.flush().unwrap();
        let stdin_closed = tokio::task::spawn_blocking(|| {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() {
                    break;
                }
            }
        });
        serve_tls(
            listener,
            server_config(resolver),
            router,
            Limits::default(),
            async move {
                let _ = stdin_closed.await;
            },
        )
        .await;
    });
}
