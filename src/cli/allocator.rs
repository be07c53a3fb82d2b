//! The process's memory allocator: jemalloc, with background threads that hand memory freed for
//! a second back to the system. The initial list of every ConfigMap and Secret passes hundreds of
//! MB of JSON through the heap in pages and keeps a few MB of digests; glibc's malloc keeps most
//! of the freed pages resident, and its per-request malloc/free under admission load costs more.
//! Measured on both (BENCHMARKS.md, "Memory" and "Allocator").

/// The global allocator type; `main` (and the benchmarks that measure the server) declare it.
#[cfg(not(feature = "system-allocator"))]
pub type Allocator = tikv_jemallocator::Jemalloc;
#[cfg(not(feature = "system-allocator"))]
pub const ALLOCATOR: Allocator = tikv_jemallocator::Jemalloc;
/// With the `system-allocator` feature: the C library's malloc (for comparisons).
#[cfg(feature = "system-allocator")]
pub type Allocator = std::alloc::System;
#[cfg(feature = "system-allocator")]
pub const ALLOCATOR: Allocator = std::alloc::System;

/// jemalloc's arena count, set when jemalloc is built (`.cargo/config.toml`): two, whatever the
/// number of CPUs (jemalloc's default is four per CPU). Measured: about 1 MiB less resident after
/// the initial sync at the scale benchmark, the same admission throughput (BENCHMARKS.md).
pub const ARENAS: u32 = 2;

/// How long freed memory stays resident before it is returned: long enough that a burst of
/// admission requests reuses it, short enough that what the initial sync freed is gone within
/// seconds. (jemalloc's default is 10 s, and purges only when the arena is used again.)
pub const DIRTY_DECAY_MS: isize = 1_000;

/// Turns on the background purging threads and sets the decay time, for the arenas that exist
/// and those made later. Call first thing in `main`; failures only cost memory, so they are
/// ignored (e.g. a jemalloc built without background threads).
pub fn configure() {
    #[cfg(not(feature = "system-allocator"))]
    configure_jemalloc();
}

#[cfg(not(feature = "system-allocator"))]
fn configure_jemalloc() {
    use tikv_jemalloc_ctl::{Access, AsName};
    // An operator's own settings (jemalloc reads them from this variable at start) win.
    if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
        return;
    }
    let _ = b"arenas.dirty_decay_ms\0".name().write(DIRTY_DECAY_MS);
    let _ = b"arenas.muzzy_decay_ms\0".name().write(0isize);
    let arenas: u32 = b"arenas.narenas\0".name().read().unwrap_or(0);
    for i in 0..arenas {
        // Arenas not initialised yet answer with an error and take the defaults above when made.
        let _ = format!("arena.{i}.dirty_decay_ms\0")
            .as_str()
            .name()
            .write(DIRTY_DECAY_MS);
        let _ = format!("arena.{i}.muzzy_decay_ms\0")
            .as_str()
            .name()
            .write(0isize);
    }
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
}

#[cfg(all(test, not(feature = "system-allocator")))]
mod tests;
