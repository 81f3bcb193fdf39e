//! The `tlsfallback` command: parse, resolve flags + policy file + environment once into the
//! libraries' settings, then act (as ripgrep's flags and wasmtime's commands do).
//!
//! The one crate of the workspace that uses clap and anyhow: the libraries it drives
//! (`tlsfallback-engine`, `tlsfallback-mta`, `tlsfallback-testkit` for `demo`) never see either.
#![forbid(unsafe_code)]

pub mod commands;
mod flags;
mod logging;

pub use commands::Cli;
