//! `tlsfallback plugin check`: what an operator wants to know before deploying a policy
//! component: does it load, what does it change against the built-in engine on the simulated
//! peers, does the guard refuse any of its decisions, and what does a decision cost.

use std::io::Write;
use std::time::Duration;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use policy_core::sim::Preset;
use policy_core::{AttemptReport, DeliveryContext, PeerFacts, Policy, UnixSeconds};

use crate::commands::simulate::{self, SimulateOptions};
use tlsfallback_engine::component::{ComponentConfig, EXPORTED_INTERFACE, PolicyComponent};
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::{DecideError, Decided, DecisionEngine, NativeEngine};
use tlsfallback_engine::plugin::{PluginConfig, PluginEngine};
use tlsfallback_mta::clock::Stopwatch;

/// An engine wrapper that adds up the time spent deciding and counts the decisions.
struct Timed<E> {
    engine: E,
    spent: Duration,
    decisions: u64,
}

impl<E: DecisionEngine> Timed<E> {
    const fn new(engine: E) -> Self {
        Self {
            engine,
            spent: Duration::ZERO,
            decisions: 0,
        }
    }

    /// Nanoseconds per decision so far.
    fn per_decision_ns(&self) -> f64 {
        self.spent.as_nanos() as f64 / self.decisions.max(1) as f64
    }
}

impl<E: DecisionEngine> DecisionEngine for Timed<E> {
    fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError> {
        let start = Stopwatch::start();
        let decision = self.engine.decide(policy, context, history, last, now);
        self.spent += start.elapsed();
        self.decisions += 1;
        decision
    }

    fn decide_with_facts(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        facts: &PeerFacts,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError> {
        let start = Stopwatch::start();
        let decision = self
            .engine
            .decide_with_facts(policy, context, history, facts, last, now);
        self.spent += start.elapsed();
        self.decisions += 1;
        decision
    }
}

/// Loads the plugin `config` names, runs every simulated peer preset for `days` with it and with
/// the built-in engine, and writes a report to `out`.
///
/// # Errors
///
/// When the plugin does not load (the message says why), or writing fails.
pub fn check(
    config: &PluginConfig,
    policy: &Policy,
    days: u32,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(&config.component)
        .with_context(|| format!("reading {}", config.component.display()))?;
    let uncached = PluginConfig {
        cache_dir: None,
        ..config.clone()
    };
    let start = Stopwatch::start();
    let loaded = PluginEngine::from_bytes(&bytes, &uncached)
        .with_context(|| format!("loading {}", config.component.display()))?;
    let compile = start.elapsed();
    drop(loaded);
    writeln!(
        out,
        "{}: {} bytes; exports a version of tlsfallback:policy/engine this host calls \
         ({EXPORTED_INTERFACE}); imports nothing",
        config.component.display(),
        bytes.len()
    )?;
    write!(
        out,
        "load: compiled in {:.1} ms",
        compile.as_secs_f64() * 1e3
    )?;
    if let Some(dir) = &config.cache_dir {
        // Once to write the artifact, once to time loading it.
        PluginEngine::from_bytes(&bytes, config)?;
        let start = Stopwatch::start();
        PluginEngine::from_bytes(&bytes, config)?;
        write!(
            out,
            "; from the precompiled cache in {:.2} ms ({})",
            start.elapsed().as_secs_f64() * 1e3,
            dir.display()
        )?;
    }
    writeln!(out)?;

    let options = SimulateOptions {
        days,
        messages_per_day: 4,
        backoff: policy_core::sim::QueueBackoff::POSTFIX,
    };
    let mut plugin = Timed::new(PluginEngine::from_bytes(&bytes, config)?);
    let mut builtin = Timed::new(PolicyComponent::builtin()?);
    let mut limited = Timed::new(PolicyComponent::builtin_with(
        ComponentConfig::with_limits(config.limits),
    )?);
    let mut native = Timed::new(NativeEngine);
    writeln!(
        out,
        "\n{days} days, 4 messages a day; delivered by tier (cleartext/legacy/modern/authenticated), \
         plugin vs built-in:"
    )?;
    writeln!(
        out,
        "{:<20} {:>15} {:>15} {:>10} {:>12} {:>8}",
        "preset", "plugin", "built-in", "deferrals", "to-attacker", "guarded"
    )?;
    for preset in Preset::ALL {
        let before = plugin.engine.stats();
        let ours = simulate::run(&mut plugin, policy, preset, options, &mut |_| {})?.summary;
        let after = plugin.engine.stats();
        let theirs = simulate::run(&mut native, policy, preset, options, &mut |_| {})?.summary;
        simulate::run(&mut builtin, policy, preset, options, &mut |_| {})?;
        simulate::run(&mut limited, policy, preset, options, &mut |_| {})?;
        let tiers = |s: &policy_core::sim::Summary| {
            s.delivered_by_tier
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/")
        };
        // Pairs are plugin/built-in; "guarded" counts the plugin's refused or failed calls.
        writeln!(
            out,
            "{:<20} {:>15} {:>15} {:>10} {:>12} {:>8}",
            preset.name(),
            tiers(&ours),
            tiers(&theirs),
            format!("{}/{}", ours.deferrals, theirs.deferrals),
            format!(
                "{}/{}",
                ours.cleartext_to_attacker, theirs.cleartext_to_attacker
            ),
            (after.refusals - before.refusals) + (after.call_failures - before.call_failures),
        )?;
    }
    let stats = plugin.engine.stats();
    writeln!(
        out,
        "\nguard: {} decisions, {} refused, {} failed calls",
        stats.calls, stats.refusals, stats.call_failures
    )?;
    writeln!(
        out,
        "cost per decision: plugin with limits and guard {:.2} µs; built-in component {:.2} µs \
         ({:.2} µs with the same limits); native policy-core {:.0} ns",
        plugin.per_decision_ns() / 1e3,
        builtin.per_decision_ns() / 1e3,
        limited.per_decision_ns() / 1e3,
        native.per_decision_ns()
    )?;
    Ok(())
}

/// `tlsfallback plugin`.
#[derive(Debug, Args)]
pub(crate) struct PluginCommand {
    #[command(subcommand)]
    pub(crate) action: PluginAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginAction {
    /// Load a policy component as the host would, run every simulated peer with it and with the
    /// built-in engine, and print the differences, the guard's refusals and the cost per decision.
    Check(PluginCheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PluginCheckArgs {
    /// The component to check.
    #[arg(value_name = "FILE.wasm")]
    pub(crate) component: PathBuf,
    /// A policy file: its [policy] and its [plugin] limits apply.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Days of simulated mail per peer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// Also time loading from a precompiled-artifact cache in this directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) component_cache: Option<PathBuf>,
}

impl PluginCommand {
    /// Runs the plugin action.
    ///
    /// # Errors
    ///
    /// The policy file, loading the component, or writing stdout.
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.action {
            PluginAction::Check(check) => {
                let policy_file = check
                    .policy
                    .as_deref()
                    .map_or_else(|| Ok(PolicyFile::default()), PolicyFile::load)?;
                let mut config = policy_file
                    .plugin_config()?
                    .unwrap_or_else(|| PluginConfig::new(check.component.clone()));
                config.component = check.component;
                config.cache_dir = check.component_cache;
                self::check(
                    &config,
                    &policy_file.default_policy(),
                    check.days,
                    &mut std::io::stdout().lock(),
                )
            }
        }
    }
}
