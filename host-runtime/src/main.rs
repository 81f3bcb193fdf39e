//! The `tlsfallback` command: parses arguments, then hands over to `tlsfallback_host::commands`.

mod args;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser as _;
use tlsfallback_host::commands::{decide, simulate};
use tlsfallback_host::config::PolicyFile;
use tlsfallback_host::engine;

use args::{Cli, Command, EngineArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tlsfallback: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_policy(args: &EngineArgs) -> anyhow::Result<PolicyFile> {
    args.policy
        .as_deref()
        .map_or_else(|| Ok(PolicyFile::default()), PolicyFile::load)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Decide(args) => {
            let policy_file = load_policy(&args)?;
            let mut engine = engine::open(args.engine)?;
            let stdin = io::stdin().lock();
            let stdout = io::BufWriter::new(io::stdout().lock());
            decide::run(engine.as_mut(), &policy_file, stdin, stdout)?;
            Ok(())
        }
        Command::Simulate(args) => {
            let policy_file = load_policy(&args.engine)?;
            let policy = policy_file.default_policy();
            let mut engine = engine::open(args.engine.engine)?;
            let presets = if args.presets.is_empty() {
                policy_core::sim::Preset::ALL.to_vec()
            } else {
                args.presets
            };
            let options = simulate::SimulateOptions {
                days: args.days,
                messages_per_day: args.messages_per_day,
            };
            let mut stdout = io::stdout().lock();
            for preset in presets {
                let timeline = simulate::run(engine.as_mut(), &policy, preset, options)?;
                let start = policy_core::sim::Scenario::new(preset.peer(), policy).start;
                writeln!(
                    stdout,
                    "{}",
                    simulate::render(preset, &policy, &timeline, start)
                )?;
            }
            Ok(())
        }
    }
}
