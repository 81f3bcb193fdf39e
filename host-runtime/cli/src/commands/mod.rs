//! The subcommands, one module each with its arguments and its `run` (as wasmtime's
//! `src/commands/*.rs`); [`Cli::run`] dispatches and turns an error into stderr and the exit
//! code. Flags several commands share are in [`flags`](crate::flags).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod decide;
pub mod deliver;
pub mod demo;
pub mod export_component;
pub mod generate;
pub mod peers;
pub mod playground;
pub mod plugin;
pub mod postfix;
pub mod resolve;
pub mod simulate;
pub mod tlsrpt;

/// A TLS fallback policy engine for mail transfer agents.
#[derive(Debug, Parser)]
#[command(name = "tlsfallback", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Answer JSON Lines decision requests from stdin on stdout (see README for the contract).
    Decide(decide::DecideCommand),
    /// Run the fallback dance over simulated time against built-in peer presets.
    Simulate(simulate::SimulateCommand),
    /// Deliver the message on stdin, with the dance, to the given MX hosts.
    Deliver(Box<deliver::DeliverCommand>),
    /// Show what the host resolves for a recipient domain (MX, DNSSEC, DANE, MTA-STS) and the
    /// floor that follows for each MX host.
    Resolve(resolve::ResolveCommand),
    /// Show or forget what is remembered about peers.
    Peers(peers::PeersCommand),
    /// Start local peers and deliver to them twice with real sockets and handshakes.
    Demo(demo::DemoCommand),
    /// Write the embedded policy component (.wasm) to a file, for jco, wasmtime-py or a C host
    /// (--tools: the playground's tools component).
    ExportComponent(export_component::ExportComponentCommand),
    /// Operators' own policy components.
    Plugin(plugin::PluginCommand),
    /// Postfix: the socketmap policy daemon for smtp_tls_policy_maps, and its main.cf lines.
    Postfix(postfix::PostfixCommand),
    /// TLS-RPT (RFC 8460): the reports the kept delivery results make.
    Tlsrpt(tlsrpt::TlsRptCommand),
    /// Serve the browser playground (built by scripts/playground) on 127.0.0.1 and print its URL.
    Playground(playground::PlaygroundCommand),
    /// Write the man pages, or print a shell's completion script (for packagers).
    Generate(generate::GenerateCommand),
}

impl Cli {
    /// Runs the subcommand. `deliver` returns the sendmail exit code its outcome calls for;
    /// every other command fails with 1 and its error on stderr.
    #[must_use]
    pub fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Deliver(command) => return command.run(),
            Command::Decide(command) => command.run(),
            Command::Simulate(command) => command.run(),
            Command::Resolve(command) => command.run(),
            Command::Peers(command) => command.run(),
            Command::Demo(command) => command.run(),
            Command::ExportComponent(command) => command.run(),
            Command::Plugin(command) => command.run(),
            Command::Postfix(command) => command.run(),
            Command::Playground(command) => command.run(),
            Command::Tlsrpt(command) => command.run(),
            Command::Generate(command) => command.run(),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tlsfallback: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}
