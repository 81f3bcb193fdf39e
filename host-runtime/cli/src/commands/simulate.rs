//! `tlsfallback simulate`: the dance over simulated time against the built-in peer presets.

use std::fmt::Write as _;
use std::io::Write as _;

use clap::Args;
use serde_json::{Value, json};

use policy_core::sim::{
    DAY, Delivery, Preset, QueueBackoff, Scenario, Simulation, Summary, Timeline, aggregate,
};
use policy_core::{Action, Outcome, Policy, Tier};

use tlsfallback_engine::decider::DecisionEngine;
use tlsfallback_engine::plugin::FailureEvent;

use crate::flags::EngineArgs;

/// What to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimulateOptions {
    /// Days of mail.
    pub days: u32,
    /// New messages per day.
    pub messages_per_day: u32,
    /// How the simulated queue spaces the tries of a deferred message.
    pub backoff: QueueBackoff,
}

/// Runs one preset, asking `engine` for every decision the simulation steps through.
///
/// # Errors
///
/// When the scenario is refused or the engine fails.
pub fn run(
    engine: &mut dyn DecisionEngine,
    policy: &Policy,
    preset: Preset,
    options: SimulateOptions,
    report: &mut dyn FnMut(&FailureEvent),
) -> anyhow::Result<Timeline> {
    let scenario = Scenario {
        days: options.days,
        messages_per_day: options.messages_per_day,
        backoff: options.backoff,
        ..Scenario::new(preset.peer(), *policy)
    };
    let mut simulation = Simulation::new(&scenario)?;
    while let Some(input) = simulation.request() {
        let decided = engine.decide(
            input.policy,
            input.context,
            input.history,
            input.last.as_ref(),
            input.now,
        )?;
        if let Some(failure) = &decided.plugin_failure {
            report(failure);
        }
        simulation.answer(decided.decision)?;
    }
    simulation.finish().map_err(|(error, _)| error.into())
}

/// The timeline as one JSON object: the queue's backoff, the totals, per delivery try when it
/// started, the tiers and every decision's reason, and the runs of tries that went the same way
/// (`blocks`, as the playground draws them). The browser playground prints the same object for
/// the same scenario (its tests compare the two).
#[must_use]
pub fn to_json(preset: Preset, options: SimulateOptions, timeline: &Timeline) -> Value {
    let s = &timeline.summary;
    let tiers = [
        Tier::Cleartext,
        Tier::LegacyTls,
        Tier::ModernTls,
        Tier::AuthenticatedTls,
    ];
    let by_tier: serde_json::Map<String, Value> = tiers
        .into_iter()
        .map(|tier| {
            (
                tier.name().to_owned(),
                json!(s.delivered_by_tier[tier as usize]),
            )
        })
        .collect();
    let deliveries: Vec<Value> = timeline
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "message": d.message,
                "started_at": d.started_at,
                "attacker_active": d.attacker_active,
                "expired": d.expired,
                "first_tier": d.first_tier().map(Tier::name),
                "delivered_tier": d.delivered_tier().map(Tier::name),
                "reasons": d.steps.iter().map(|step| step.decision.reason.name()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let blocks: Vec<Value> = aggregate(&timeline.deliveries)
        .iter()
        .map(|b| json!({"first": b.first, "count": b.count, "expired": b.expired}))
        .collect();
    json!({
        "preset": preset.name(),
        "days": options.days,
        "messages_per_day": options.messages_per_day,
        "backoff": {
            "minimal_secs": options.backoff.minimal_secs,
            "maximal_secs": options.backoff.maximal_secs,
        },
        "summary": {
            "messages": s.messages,
            "delivered_by_tier": by_tier,
            "deferrals": s.deferrals,
            "bounces": s.bounces,
            "expired": s.expired,
            "attempts": s.attempts,
            "failed_attempts": s.failed_attempts,
            "fallback_delay_secs": s.fallback_delay_secs,
            "cleartext_to_attacker": s.cleartext_to_attacker,
            "refused_to_attacker": s.refused_to_attacker,
            "still_queued": s.still_queued,
        },
        "deliveries": deliveries,
        "blocks": blocks,
    })
}

/// Renders a timeline for a terminal: one line per block of tries that went the same way
/// ([`aggregate`], the blocks `--json` prints and the playground draws), then the totals.
#[must_use]
pub fn render(preset: Preset, policy: &Policy, timeline: &Timeline, start: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {}: {} (profile {})",
        preset.name(),
        preset.describe(),
        policy.profile.name()
    );
    // The blocks the playground draws and `--json` prints: runs of tries that went the same way.
    for block in aggregate(&timeline.deliveries) {
        let delivery = &timeline.deliveries[block.first];
        let _ = writeln!(
            out,
            "  {}  #{:<3} {}",
            clock(delivery.started_at, start),
            delivery.message,
            describe_delivery(delivery)
        );
        let last = &timeline.deliveries[block.first + block.count - 1];
        flush_repeats(&mut out, block.count - 1, last.started_at, start);
    }
    let _ = writeln!(out, "  {}", summarize(&timeline.summary));
    out
}

fn flush_repeats(out: &mut String, repeats: usize, until: u64, start: u64) {
    if repeats > 0 {
        let plural = if repeats == 1 { "try" } else { "tries" };
        let _ = writeln!(
            out,
            "  {:>12}        … {repeats} more {plural} like this, until {}",
            "",
            clock(until, start)
        );
    }
}

fn clock(at: u64, start: u64) -> String {
    let offset = at.saturating_sub(start);
    let (day, rest) = (offset / DAY, offset % DAY);
    format!(
        "day {day:>2} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One try as text, without its time or message number (so that identical tries compare equal).
fn describe_delivery(delivery: &Delivery) -> String {
    let mut parts = Vec::new();
    for step in &delivery.steps {
        match (step.decision.action, step.outcome) {
            (
                Action::Attempt {
                    tier, delay_secs, ..
                },
                Some(outcome),
            ) => {
                let wait = if delay_secs > 0 {
                    format!(" +{delay_secs}s")
                } else {
                    String::new()
                };
                parts.push(format!(
                    "{}{wait} {}",
                    tier.name(),
                    describe_outcome(tier, outcome)
                ));
            }
            (Action::Done, _) => parts.push("done".to_owned()),
            (Action::Defer { retry_after_secs }, _) => {
                parts.push(format!("DEFER {retry_after_secs}s"));
            }
            (Action::Bounce { status }, _) => parts.push(format!("BOUNCE {status}")),
            (Action::Attempt { .. }, None) => {}
        }
    }
    let first = delivery.steps.first().map(|s| s.decision.reason.name());
    let last = delivery.steps.last().map(|s| s.decision.reason.name());
    let mut line = parts.join(" → ");
    match (first, last) {
        (Some(first), Some(last)) if first != last => {
            let _ = write!(line, "  [{first} … {last}]");
        }
        (Some(only), _) => {
            let _ = write!(line, "  [{only}]");
        }
        _ => {}
    }
    if delivery.attacker_active {
        line.push_str("  (attacker on path)");
    }
    line
}

fn describe_outcome(tier: Tier, outcome: Outcome) -> String {
    match outcome {
        Outcome::Success { version: Some(v) } => format!("✓ {}", v.name()),
        Outcome::Success { version: None } if tier == Tier::Cleartext => "✓ (in clear)".to_owned(),
        Outcome::Success { version: None } => "✓".to_owned(),
        Outcome::StarttlsRejected { code } => format!("✗ STARTTLS rejected {code}"),
        Outcome::StarttlsNotOffered => "✗ no STARTTLS".to_owned(),
        Outcome::TlsAlert(alert) => format!("✗ alert {}", alert.name()),
        Outcome::CertificateError(error) => format!("✗ certificate {}", error.name()),
        other => format!("✗ {}", other.name()),
    }
}

fn summarize(summary: &Summary) -> String {
    let [clear, legacy, modern, authenticated] = summary.delivered_by_tier;
    let delivered = clear + legacy + modern + authenticated;
    let mut line = format!(
        "{} messages: {delivered} delivered (authenticated-tls {authenticated}, modern-tls {modern}, \
         legacy-tls {legacy}, cleartext {clear}), {} deferred tries, {} bounced, {} expired; \
         {} attempts, {} failed, {} s of step-down delay",
        summary.messages,
        summary.deferrals,
        summary.bounces,
        summary.expired,
        summary.attempts,
        summary.failed_attempts,
        summary.fallback_delay_secs
    );
    if summary.cleartext_to_attacker > 0 || summary.refused_to_attacker > 0 {
        let _ = write!(
            line,
            "; attacker: {} messages handed over in cleartext, {} tries refused",
            summary.cleartext_to_attacker, summary.refused_to_attacker
        );
    }
    line
}

/// `tlsfallback simulate`.
#[derive(Debug, Args)]
pub(crate) struct SimulateCommand {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Peer presets to simulate (repeatable); all of them when absent.
    #[arg(long = "preset", value_name = "NAME", value_parser = parse_preset)]
    pub(crate) presets: Vec<Preset>,
    /// Days of mail to simulate.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// New messages per day.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub(crate) messages_per_day: u32,
    /// The simulated queue's shortest gap between two tries of a deferred message, in seconds
    /// (Postfix `minimal_backoff_time`); the gap is the message's age in the queue, clamped
    /// between this and --maximal-backoff, and never shorter than the engine's retry-after.
    #[arg(long, value_name = "SECS", default_value_t = QueueBackoff::POSTFIX.minimal_secs,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub(crate) minimal_backoff: u64,
    /// The simulated queue's longest gap between two tries of a deferred message, in seconds
    /// (Postfix `maximal_backoff_time`).
    #[arg(long, value_name = "SECS", default_value_t = QueueBackoff::POSTFIX.maximal_secs,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub(crate) maximal_backoff: u64,
    /// Print one JSON object per preset (totals, and each delivery try's tiers and reasons)
    /// instead of the timeline.
    #[arg(long)]
    pub(crate) json: bool,
}

impl SimulateCommand {
    /// Simulates each preset and prints its timeline (or JSON).
    ///
    /// # Errors
    ///
    /// The policy file, the engine, or writing stdout.
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let (policy_file, mut engine) = self.engine.resolve()?;
        let policy = policy_file.default_policy();
        let presets = if self.presets.is_empty() {
            Preset::ALL.to_vec()
        } else {
            self.presets
        };
        let options = SimulateOptions {
            days: self.days,
            messages_per_day: self.messages_per_day,
            backoff: QueueBackoff {
                minimal_secs: self.minimal_backoff,
                maximal_secs: self.maximal_backoff,
            },
        };
        let mut stdout = std::io::stdout().lock();
        for preset in presets {
            let timeline = run(engine.as_mut(), &policy, preset, options, &mut |failure| {
                eprintln!("tlsfallback: {}: {failure}", preset.name());
            })?;
            if self.json {
                writeln!(stdout, "{}", to_json(preset, options, &timeline))?;
                continue;
            }
            let start = Scenario::new(preset.peer(), policy).start;
            writeln!(stdout, "{}", render(preset, &policy, &timeline, start))?;
        }
        Ok(())
    }
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::from_name(name).ok_or_else(|| {
        let known: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
        format!("unknown preset {name:?}; known: {}", known.join(", "))
    })
}
