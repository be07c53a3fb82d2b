/// The build setting took: a build without `.cargo/config.toml` (another working directory, say)
/// would silently run with jemalloc's default of four arenas per CPU.
#[test]
fn jemalloc_is_built_with_the_arena_count() {
    use tikv_jemalloc_ctl::{Access, AsName};
    let arenas: u32 = b"opt.narenas\0".name().read().unwrap();
    assert_eq!(arenas, super::ARENAS);
}

/// A runtime thread starts without its cache and takes it when it wakes after the initial lists,
/// not before.
#[test]
fn runtime_threads_take_their_cache_once_the_lists_are_done() {
    use tikv_jemalloc_ctl::{Access, AsName};
    fn cache_on() -> bool {
        b"thread.tcache.enabled\0".name().read().unwrap()
    }
    if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
        panic!("run without _RJEM_MALLOC_CONF: kreload then leaves the caches alone");
    }
    std::thread::spawn(|| {
        assert!(cache_on(), "jemalloc's default");
        super::runtime_thread_started();
        assert!(!cache_on());
        super::runtime_thread_woke();
        assert!(!cache_on(), "the lists are not done yet");
        super::initial_lists_done();
        super::runtime_thread_woke();
        assert!(cache_on());
    })
    .join()
    .unwrap();
    // A thread the runtime starts after the lists keeps its cache.
    std::thread::spawn(|| {
        super::runtime_thread_started();
        assert!(cache_on());
    })
    .join()
    .unwrap();
}
