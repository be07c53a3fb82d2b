#![forbid(unsafe_code)]

use clap::Parser;
use kreload::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            kreload::cli::run::init_logging(args.log_format, &args.log_level)?;
            kreload::cli::run::run(*args).await?;
            // Everything has drained; do not wait for a blocking read of stdin to return.
            std::process::exit(0)
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
