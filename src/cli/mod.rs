//! The command line: arguments, the wiring of `kreload run`, the process's allocator, and the
//! read-only commands.

pub mod allocator;
pub mod args;
pub mod client;
pub mod commands;
pub mod run;

pub use args::{Cli, Command};
