//! The tools adapter: exports policy-core's engine and its simulator, peer presets, timeline
//! aggregation and history decoder as the `policy-tools` component (`tlsfallback:policy/engine`
//! and `tlsfallback:policy/tools`), so the browser playground runs the very Rust code
//! `tlsfallback simulate` runs and copies none of it.
//!
//! No logic lives here, only the mechanical mapping between the WIT types and policy-core's. It
//! must never depend on anything but policy-core, the shared WIT mapping and wit-bindgen. Built
//! `no_std` for `wasm32-unknown-unknown` and wrapped into a component by
//! `host-runtime/engine/build.rs`, like
//! `bindings/`; the result imports nothing at all. The allocator, the panic handler, the
//! `decider` resource and the WIT mapping are `bindings/`'s own files, included by path, so both
//! components carry one engine adapter.

#![cfg_attr(target_family = "wasm", no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use policy_core::sim;

#[path = "../../src/convert.rs"]
mod convert;

#[path = "../../src/decider.rs"]
mod decider;

/// What std would provide on wasm: an allocator and a panic handler.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
#[path = "../../src/wasm_runtime.rs"]
mod wasm_runtime;

/// The code wit-bindgen generates from `wit/policy.wit`, and the export shims.
#[allow(unsafe_code, missing_docs, unreachable_pub, unused_qualifications)]
mod generated {
    // The world lives here, not in wit/: a second world there would make every tool that reads
    // wit/ without naming a world (jco embed, componentize-js, wasm-tools) refuse it.
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package tlsfallback:tools;

            /// The engine and its tools in one zero-import component, for the playground.
            world policy-tools {
                export tlsfallback:policy/engine@0.2.0;
                export tlsfallback:policy/tools@0.2.0;
            }
        ",
        world: "tlsfallback:tools/policy-tools",
    });
    use super::PolicyTools;
    export!(PolicyTools);
}

use generated::exports::tlsfallback::policy::engine as wit_engine;
use generated::exports::tlsfallback::policy::tools as wit;

/// The component.
struct PolicyTools;

impl wit_engine::Guest for PolicyTools {
    type Decider = decider::Decider;
}

impl wit::Guest for PolicyTools {
    type Simulation = Simulation;
    type SimulatedRun = SimulatedRun;

    fn presets() -> Vec<wit::Preset> {
        sim::Preset::ALL
            .into_iter()
            .map(|preset| wit::Preset {
                name: preset.name().into(),
                description: preset.describe(),
                peer: peer_to_wit(&preset.peer()),
            })
            .collect()
    }

    fn describe_preset(name: String, change_day: u32) -> Option<String> {
        sim::Preset::from_name(&name).map(|preset| preset.describe_with_change_day(change_day))
    }

    fn custom_peer_description() -> String {
        sim::CUSTOM_PEER_DESCRIPTION.into()
    }

    fn default_backoff() -> wit::QueueBackoff {
        backoff_to_wit(sim::QueueBackoff::POSTFIX)
    }

    fn run(scenario: wit::Scenario) -> Result<wit::RunSummary, wit::SimError> {
        let t = sim::run_natively(&scenario_from_wit(scenario)).map_err(sim_error_to_wit)?;
        Ok(run_summary_to_wit(&t))
    }

    fn deliveries(
        scenario: wit::Scenario,
        first: u32,
        count: u32,
    ) -> Result<Vec<wit::Delivery>, wit::SimError> {
        let t = sim::run_natively(&scenario_from_wit(scenario)).map_err(sim_error_to_wit)?;
        Ok(deliveries_to_wit(&t.deliveries, first, count))
    }

    fn decode_history(blob: Vec<u8>) -> Result<wit::History, wit_engine::HistoryError> {
        let history = policy_core::History::decode(&blob).map_err(history_error_to_wit)?;
        let m = history.memory;
        Ok(wit::History {
            memory: wit::PeerMemory {
                start_tier: m.start_tier.map(wit_engine::Tier::from),
                last_success_tier: m.last_success_tier.map(wit_engine::Tier::from),
                last_success_at: m.last_success_at,
                seen_tls: m.seen_tls,
                pinned_until: m.pinned_until,
                last_probe_at: m.last_probe_at,
                transient_failures: m.transient_failures,
            },
            dance: history.dance.map(|d| wit::Dance {
                tier: wit_engine::Tier::from(d.tier),
                attempts: d.attempts,
                reached_top: d.reached_top,
            }),
        })
    }
}

/// The `simulation` resource: policy-core's stepper, until its timeline is taken.
struct Simulation(RefCell<Option<sim::Simulation>>);

impl wit::GuestSimulation for Simulation {
    fn start(scenario: wit::Scenario) -> Result<wit::Simulation, wit::SimError> {
        let simulation =
            sim::Simulation::new(&scenario_from_wit(scenario)).map_err(sim_error_to_wit)?;
        Ok(wit::Simulation::new(Self(RefCell::new(Some(simulation)))))
    }

    fn request(&self) -> Option<wit::Request> {
        let simulation = self.0.borrow();
        let input = simulation.as_ref()?.request()?;
        Some(wit::Request {
            context: wit_engine::DeliveryContext::from(input.context),
            history: input.history.map(<[u8]>::to_vec),
            last: input.last.as_ref().map(wit_engine::AttemptReport::from),
            now: input.now,
        })
    }

    fn answer(&self, decision: wit_engine::Decision) -> Result<(), wit::SimError> {
        let decision = policy_core::Decision::try_from(decision)
            .map_err(|error| wit::SimError::DecisionHistory(history_error_to_wit(error)))?;
        let mut simulation = self.0.borrow_mut();
        let simulation = simulation.as_mut().ok_or(wit::SimError::NotWaiting)?;
        simulation.answer(decision).map_err(sim_error_to_wit)
    }

    fn finish(&self) -> Result<wit::Timeline, wit::SimError> {
        let mut slot = self.0.borrow_mut();
        let simulation = slot.take().ok_or(wit::SimError::NotWaiting)?;
        match simulation.finish() {
            Ok(timeline) => Ok(timeline_to_wit(&timeline)),
            Err((error, simulation)) => {
                *slot = Some(simulation);
                Err(sim_error_to_wit(error))
            }
        }
    }
}

/// The `simulated-run` resource: a finished run of policy-core's own engine.
struct SimulatedRun(sim::Timeline);

impl wit::GuestSimulatedRun for SimulatedRun {
    fn start(scenario: wit::Scenario) -> Result<wit::SimulatedRun, wit::SimError> {
        let timeline = sim::run_natively(&scenario_from_wit(scenario)).map_err(sim_error_to_wit)?;
        Ok(wit::SimulatedRun::new(Self(timeline)))
    }

    fn summary(&self) -> wit::RunSummary {
        run_summary_to_wit(&self.0)
    }

    fn deliveries(&self, first: u32, count: u32) -> Vec<wit::Delivery> {
        deliveries_to_wit(&self.0.deliveries, first, count)
    }

    fn tries_between(&self, since: u64, until: u64) -> (u32, u32) {
        // One SMTP client: each try starts after the one before ended, so both ends are sorted.
        let deliveries = &self.0.deliveries;
        let first = deliveries.partition_point(|d| d.ended_at < since);
        let end = deliveries.partition_point(|d| d.started_at < until);
        (to_u32(first), to_u32(end.saturating_sub(first)))
    }

    fn latencies(&self) -> Vec<u64> {
        self.0
            .deliveries
            .iter()
            .filter_map(sim::Delivery::delivery_latency_secs)
            .collect()
    }
}

fn run_summary_to_wit(t: &sim::Timeline) -> wit::RunSummary {
    wit::RunSummary {
        blocks: blocks_to_wit(&t.deliveries),
        summary: summary_to_wit(&t.summary),
        final_history: t.final_history.as_ref().map(|h| h.as_bytes().to_vec()),
        tries: to_u32(t.deliveries.len()),
        decisions: to_u32(t.deliveries.iter().map(|d| d.steps.len()).sum()),
    }
}

/// The tries from index `first`, at most `count` of them; a range past the end is clamped.
fn deliveries_to_wit(deliveries: &[sim::Delivery], first: u32, count: u32) -> Vec<wit::Delivery> {
    let first = usize::try_from(first).unwrap_or(usize::MAX);
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    deliveries
        .iter()
        .skip(first)
        .take(count)
        .map(delivery_to_wit)
        .collect()
}

fn sim_error_to_wit(error: sim::SimError) -> wit::SimError {
    match error {
        sim::SimError::NoMail { .. } => wit::SimError::NoMail,
        sim::SimError::ZeroMinimalBackoff => wit::SimError::ZeroMinimalBackoff,
        sim::SimError::InvertedBackoff { .. } => wit::SimError::InvertedBackoff,
        sim::SimError::Unfinished => wit::SimError::Unfinished,
        // `NotWaiting`, and any case a newer policy-core adds: the call could not be taken.
        _ => wit::SimError::NotWaiting,
    }
}

fn behaviour_to_wit(b: &sim::TierBehaviour) -> wit::TierBehaviour {
    wit::TierBehaviour {
        authenticated_tls: outcome_to_wit(b.authenticated),
        modern_tls: outcome_to_wit(b.modern),
        legacy_tls: outcome_to_wit(b.legacy),
        cleartext: outcome_to_wit(b.cleartext),
    }
}

fn behaviour_from_wit(b: wit::TierBehaviour) -> sim::TierBehaviour {
    sim::TierBehaviour {
        authenticated: outcome_from_wit(b.authenticated_tls),
        modern: outcome_from_wit(b.modern_tls),
        legacy: outcome_from_wit(b.legacy_tls),
        cleartext: outcome_from_wit(b.cleartext),
    }
}

fn peer_to_wit(peer: &sim::SimPeer) -> wit::Peer {
    wit::Peer {
        behaviour: behaviour_to_wit(&peer.behaviour),
        change: peer.change.map(|(day, behaviour)| wit::PeerChange {
            day,
            behaviour: behaviour_to_wit(&behaviour),
            attacker: peer.change_is_attacker,
        }),
        reset_percent: peer.reset_percent,
        context: wit_engine::DeliveryContext::from(&peer.context),
    }
}

fn peer_from_wit(peer: wit::Peer) -> sim::SimPeer {
    let change_is_attacker = peer.change.as_ref().is_some_and(|c| c.attacker);
    sim::SimPeer {
        behaviour: behaviour_from_wit(peer.behaviour),
        change: peer
            .change
            .map(|c| (c.day, behaviour_from_wit(c.behaviour))),
        change_is_attacker,
        // A percentage above 100 resets every attempt, as 100 does.
        reset_percent: peer.reset_percent.min(100),
        context: policy_core::DeliveryContext::from(peer.context),
    }
}

const fn backoff_to_wit(b: sim::QueueBackoff) -> wit::QueueBackoff {
    wit::QueueBackoff {
        minimal_secs: b.minimal_secs,
        maximal_secs: b.maximal_secs,
    }
}

fn scenario_from_wit(s: wit::Scenario) -> sim::Scenario {
    sim::Scenario {
        peer: peer_from_wit(s.peer),
        policy: policy_core::Policy::from(s.policy),
        start: s.start,
        days: s.days,
        messages_per_day: s.messages_per_day,
        queue_lifetime_secs: s.queue_lifetime_secs,
        backoff: sim::QueueBackoff {
            minimal_secs: s.backoff.minimal_secs,
            maximal_secs: s.backoff.maximal_secs,
        },
        seed: s.seed,
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn delivery_to_wit(d: &sim::Delivery) -> wit::Delivery {
    wit::Delivery {
        message: d.message,
        queued_at: d.queued_at,
        started_at: d.started_at,
        ended_at: d.ended_at,
        attacker_active: d.attacker_active,
        expired: d.expired,
        first_tier: d.first_tier().map(wit_engine::Tier::from),
        delivered_tier: d.delivered_tier().map(wit_engine::Tier::from),
        steps: d
            .steps
            .iter()
            .map(|step| wit::Step {
                at: step.at,
                decision: wit_engine::Decision::from(&step.decision),
                outcome: step.outcome.map(outcome_to_wit),
            })
            .collect(),
    }
}

fn blocks_to_wit(deliveries: &[sim::Delivery]) -> Vec<wit::Block> {
    sim::aggregate(deliveries)
        .iter()
        .map(|b| wit::Block {
            first: to_u32(b.first),
            count: to_u32(b.count),
            started_at: b.started_at,
            ended_at: b.ended_at,
            expired: to_u32(b.expired),
        })
        .collect()
}

fn summary_to_wit(s: &sim::Summary) -> wit::Summary {
    wit::Summary {
        messages: s.messages,
        delivered_by_tier: s.delivered_by_tier.to_vec(),
        deferrals: s.deferrals,
        bounces: s.bounces,
        expired: s.expired,
        attempts: s.attempts,
        failed_attempts: s.failed_attempts,
        fallback_delay_secs: s.fallback_delay_secs,
        cleartext_to_attacker: s.cleartext_to_attacker,
        refused_to_attacker: s.refused_to_attacker,
        still_queued: s.still_queued,
    }
}

fn timeline_to_wit(t: &sim::Timeline) -> wit::Timeline {
    wit::Timeline {
        deliveries: t.deliveries.iter().map(delivery_to_wit).collect(),
        blocks: blocks_to_wit(&t.deliveries),
        summary: summary_to_wit(&t.summary),
        final_history: t.final_history.as_ref().map(|h| h.as_bytes().to_vec()),
    }
}

fn outcome_to_wit(outcome: policy_core::Outcome) -> wit_engine::Outcome {
    outcome.into()
}

fn outcome_from_wit(outcome: wit_engine::Outcome) -> policy_core::Outcome {
    outcome.into()
}

fn history_error_to_wit(error: policy_core::HistoryError) -> wit_engine::HistoryError {
    use policy_core::HistoryError as E;
    match error {
        E::Empty => wit_engine::HistoryError::Empty,
        E::TooLong(n) => wit_engine::HistoryError::TooLong(to_u32(n)),
        E::UnsupportedVersion(v) => wit_engine::HistoryError::UnsupportedVersion(v),
        E::Truncated => wit_engine::HistoryError::Truncated,
        E::Malformed => wit_engine::HistoryError::Malformed,
        E::TrailingBytes(n) => wit_engine::HistoryError::TrailingBytes(to_u32(n)),
        // A kind a newer policy-core adds reads, to a host, as a value no engine writes.
        _ => wit_engine::HistoryError::Malformed,
    }
}
