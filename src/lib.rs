//! kreload: roll exactly the workloads whose consumed ConfigMaps and Secrets changed.
//!
//! The crate is built in layers; each folder is one, and imports only point down:
//!
//! ```text
//! cli/        arguments, wiring (run), API client, hash-key loading, check / explain / status
//!   │
//! admission/  watch/  reload/     the shells: HTTPS + reviews | watches into state | rolls on the leader
//!   │  (never import each other; a rule two of them need moves down into domain)
//! state/      digest store, workload index, namespace filter   (in memory, no I/O)
//!   │
//! domain/     annotations, policy, refs, decide, trigger set, Stamper, stamp/HMAC, patches, check rules
//!             (pure: no kube, tokio, HTTP, clock or I/O)
//! ```
//!
//! Data flows one way: watches fill the [state] (digests of configs, the workload index);
//! the [domain] decides from it (who rolls, which stamp); the shells turn decisions into patches
//! (the [reload] loop) and answers ([admission] reviews). [`metrics`] sits beside the shells and
//! is the only module they share besides the two layers below them.
//!
//! Import rules (checked by `.ci/run`):
//! 1. `domain` imports only `domain` (plus std and pure crates).
//! 2. `state` imports only `domain`.
//! 3. `admission`, `watch` and `reload` import `domain`, `state` and `metrics`, never each other.
//! 4. Only `main.rs` imports `cli`.

#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod domain;
pub mod metrics;
pub mod reload;
pub mod state;
pub mod watch;
