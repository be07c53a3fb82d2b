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
    if operator_settings() {
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

/// Whether the runtime's threads may use jemalloc's per-thread caches yet: not while the initial
/// lists run. Those pass hundreds of MB of JSON through the heap; with the caches, what a page of
/// the list frees is handed to the next allocation of its size on that thread, so the entries
/// that stay are spread over slabs that the page's transient allocations also hold, and about
/// 3 MiB more stays resident after the sync. Without them the arena fills its lowest slabs first.
/// Turned on once the lists are done: under admission load the caches save about a fifth of the
/// server's CPU per request (BENCHMARKS.md, "Memory").
static THREAD_CACHES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

std::thread_local! {
    /// Whether this thread's cache is on (as this module last set it).
    static THREAD_CACHE_ON: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// An operator's own jemalloc settings (jemalloc reads them from this variable at start): then
/// kreload changes none.
#[cfg(not(feature = "system-allocator"))]
fn operator_settings() -> bool {
    std::env::var_os("_RJEM_MALLOC_CONF").is_some()
}

/// `runtime` with the hooks that keep its threads without their caches until
/// [`initial_lists_done`] (for `kreload run` and the admission benchmark's server).
pub fn thread_cache_hooks(runtime: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    runtime
        .on_thread_start(runtime_thread_started)
        .on_thread_park(runtime_thread_woke)
        .on_thread_unpark(runtime_thread_woke)
}

/// For the runtime's `on_thread_start`: no per-thread cache until [`initial_lists_done`].
fn runtime_thread_started() {
    if !THREAD_CACHES.load(std::sync::atomic::Ordering::Relaxed) {
        set_thread_cache(false);
    }
}

/// For the runtime's `on_thread_park` and `on_thread_unpark`: the thread takes its cache once
/// the initial lists are done (each thread can only set its own).
fn runtime_thread_woke() {
    if !THREAD_CACHE_ON.get() && THREAD_CACHES.load(std::sync::atomic::Ordering::Relaxed) {
        set_thread_cache(true);
    }
}

/// Every watch has listed once: the runtime's threads take their caches when they next park or
/// wake.
pub fn initial_lists_done() {
    THREAD_CACHES.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn set_thread_cache(on: bool) {
    THREAD_CACHE_ON.set(on);
    #[cfg(not(feature = "system-allocator"))]
    {
        use tikv_jemalloc_ctl::{Access, AsName};
        if !operator_settings() {
            let _ = b"thread.tcache.enabled\0".name().write(on);
        }
    }
}

#[cfg(all(test, not(feature = "system-allocator")))]
mod tests;
