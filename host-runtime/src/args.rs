//! Command-line arguments: parsing and validation only, no effects.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tlsfallback_host::engine::EngineKind;

/// A TLS fallback policy engine for mail transfer agents.
#[derive(Debug, Parser)]
#[command(name = "tlsfallback", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Answer JSON Lines decision requests from stdin on stdout (see README for the contract).
    Decide(EngineArgs),
    /// Run the fallback dance over simulated time against built-in peer presets.
    Simulate(SimulateArgs),
}

/// Options shared by every command that decides.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Which engine decides.
    #[arg(long, value_enum, default_value_t = EngineKind::Component)]
    pub(crate) engine: EngineKind,
    /// The operator's policy file (TOML: a [policy] table and [[destination]] overrides).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Peer presets to simulate (repeatable); all of them when absent.
    #[arg(long = "preset", value_name = "NAME", value_parser = parse_preset)]
    pub(crate) presets: Vec<policy_core::sim::Preset>,
    /// Days of mail to simulate.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// New messages per day.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub(crate) messages_per_day: u32,
}

fn parse_preset(name: &str) -> Result<policy_core::sim::Preset, String> {
    policy_core::sim::Preset::from_name(name).ok_or_else(|| {
        let known: Vec<_> = policy_core::sim::Preset::ALL
            .iter()
            .map(|p| p.name())
            .collect();
        format!("unknown preset {name:?}; known: {}", known.join(", "))
    })
}
