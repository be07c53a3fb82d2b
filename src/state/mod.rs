//! What kreload holds in memory, filled by the watches and read by admission, the reloader and
//! the CLI: the digest store, the workload index and the namespace filter. No I/O; readers take
//! short locks.

pub mod csi;
pub mod index;
pub mod namespaces;
pub mod store;
