//! The pure core: every rule kreload follows, the stamp computation and the patches. Nothing
//! here does I/O, reads a clock, or knows about the API server's client types: the shells above
//! hand it plain values and act on what it returns, so every rule is tested here, fast.

pub mod alert;
pub mod annotations;
pub mod check;
pub mod config;
pub mod csi;
pub mod decide;
pub mod entry;
pub mod extra;
pub mod patch;
pub mod policy;
pub mod refs;
pub mod selector;
pub mod stamp;
pub mod stamper;
pub mod trigger;
pub mod workload;
