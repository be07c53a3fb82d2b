//! kreload: roll exactly the workloads whose consumed ConfigMaps and Secrets changed.
//!
//! The decision logic (annotations, references, trigger sets, hashes, patches) is pure code
//! with no I/O; the webhook server, the watcher and the CLI are thin shells around it.

pub mod admission;
pub mod annotations;
pub mod decide;
pub mod model;
pub mod patch;
pub mod policy;
pub mod refs;
pub mod selector;
pub mod stamp;
pub mod store;
pub mod trigger;
pub mod workload;
