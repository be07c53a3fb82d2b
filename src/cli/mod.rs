//! The command line: arguments, the wiring of `kreload run`, the read-only commands, and
//! `migrate` (Reloader's chart values to kreload's).

pub mod args;
pub mod client;
pub mod commands;
pub mod migrate;
pub mod run;

pub use args::{Cli, Command};
