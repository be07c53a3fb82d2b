//! kreload: roll exactly the workloads whose consumed ConfigMaps and Secrets changed.
//!
//! The decision logic (annotations, references, trigger sets, hashes, patches) is pure code
//! with no I/O; the webhook server, the watcher and the CLI are thin shells around it.

pub mod annotations;
pub mod model;
pub mod policy;
