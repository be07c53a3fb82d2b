#![forbid(unsafe_code)]

use clap::Parser;
use kreload::cli::allocator::{self, ALLOCATOR, Allocator, configure};
use kreload::cli::{Cli, Command};

#[global_allocator]
static GLOBAL: Allocator = ALLOCATOR;

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads take arenas of their own.
    configure();
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if matches!(cli.command, Command::Run(_)) {
        // The initial lists run without jemalloc's thread caches (see `allocator`); the other
        // commands never finish such lists, so they keep the caches throughout.
        allocator::thread_cache_hooks(&mut runtime);
    }
    runtime.build()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            kreload::cli::run::init_logging(args.log_format, &args.log_level)?;
            // Either way, do not wait for a blocking read of stdin (`--exit-on-stdin-close`) to
            // return: on success everything has drained; on an error at start (missing RBAC,
            // say) the process must exit rather than hang with that read open.
            match kreload::cli::run::run(*args).await {
                Ok(()) => std::process::exit(0),
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("Error: {error:?}");
                    std::process::exit(1)
                }
            }
        }
        Command::Check(args) => {
            if !kreload::cli::commands::check(&args)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Explain(args) => kreload::cli::commands::explain(&args).await,
        Command::Status(args) => kreload::cli::commands::status(&args).await,
        Command::Migrate(args) => kreload::cli::migrate::command(&args),
    }
}
