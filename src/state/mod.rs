//! What kreload holds in memory, filled by the watches and read by admission, the reloader and
//! the CLI: the digest store, the CSI mounts, the workload index and the namespace filter. No I/O; readers take
//! short locks.

pub mod index;
pub mod mounts;
pub mod namespaces;
pub mod store;
