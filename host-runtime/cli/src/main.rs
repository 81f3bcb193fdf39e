//! The `tlsfallback` binary: parses the arguments and dispatches (see `tlsfallback_cli`).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    tlsfallback_cli::Cli::parse().run()
}
