/// The build setting took: a build without `.cargo/config.toml` (another working directory, say)
/// would silently run with jemalloc's default of four arenas per CPU.
#[test]
fn jemalloc_is_built_with_the_arena_count() {
    use tikv_jemalloc_ctl::{Access, AsName};
    let arenas: u32 = b"opt.narenas\0".name().read().unwrap();
    assert_eq!(arenas, super::ARENAS);
}
