//! The command line: arguments, the wiring of `kreload run`, and the read-only commands.

pub mod args;
pub mod client;
pub mod commands;
pub mod run;

pub use args::{Cli, Command};
