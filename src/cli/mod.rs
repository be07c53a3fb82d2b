//! The command line: arguments, the wiring of `kreload run`, the process's allocator, the
//! read-only commands, and `migrate` (Reloader's chart values to kreload's).

pub mod allocator;
pub mod args;
pub mod client;
pub mod commands;
pub mod migrate;
pub mod run;

pub use args::{Cli, Command};
