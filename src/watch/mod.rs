//! The watches that fill the state: ConfigMaps and Secrets into the digest store, workloads into
//! the index, Namespace labels into the namespace filter; and knowing when each has listed once.

pub mod config;
pub mod csi;
pub mod namespace;
pub mod sync;
pub mod workload;
