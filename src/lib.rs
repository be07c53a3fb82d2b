//! kreload: roll exactly the workloads whose consumed ConfigMaps and Secrets changed.
//!
//! The decision logic (annotations, references, trigger sets, hashes, patches) is pure code
//! with no I/O; the webhook server, the watcher and the CLI are thin shells around it.

pub mod admission;
pub mod annotations;
pub mod cli;
pub mod commands;
pub mod configwatch;
pub mod decide;
pub mod index;
pub mod key;
pub mod lease;
pub mod metrics;
pub mod model;
pub mod namespaces;
pub mod patch;
pub mod policy;
pub mod queue;
pub mod refs;
pub mod reloader;
pub mod run;
pub mod selector;
pub mod selfcert;
pub mod server;
pub mod stamp;
pub mod store;
pub mod sync;
pub mod tls;
pub mod trigger;
pub mod webhooks;
pub mod workload;
pub mod workloadwatch;
