//! A breadth-first walk of every engine state reachable from an unknown peer, checking the floor
//! on every transition: the first part of "proven, not only tested" (issue 22), not yet run in
//! CI. `cargo run --release -p policy-core --example explore` (about 7 minutes).
//!
//! **Time.** `decide` reads `now` only in two comparisons: the pin (`pinned_until > now`, in
//! `floor`) and the re-probe (`now - last_probe_at >= reprobe_interval_secs`); it writes `now`
//! into `last_probe_at`, `last_success_at` (never compared) and `now + pin_duration_secs` into
//! `pinned_until`. So a state is its fields with the two clocks taken relative to `now`: the pin
//! time left (0: none) and the age of the last probe, clamped at the re-probe interval (older
//! behaves alike). With whole-second clocks and this walk's small durations (re-probe 3 s, pin
//! 5 s), stepping the time by every whole number of seconds up to one past the longer duration
//! reaches every such state: for these durations the walk is exact. That it stands for the
//! default durations (7 and 30 days) is not argued here yet.
//!
//! **Inputs.** At every state, after every time step: a new delivery in each of the 128
//! contexts (DANE, MTA-STS, REQUIRETLS, `TLS-Required: No`, SASL), which also abandons a
//! delivery under way; and, when an attempt is awaited, each of the 16 outcomes at its tier. One
//! policy: the defaults with the short durations above.
//!
//! **Checked on every transition:** no attempt below the floor of its context; no attempt below
//! modern TLS while the pin lasts, unless the sender waived TLS (`TLS-Required: No` without
//! REQUIRETLS); the new history decodes. Measured on 2026-12-04 (one core of 2): 3,253,836
//! states, 1,722,640,064 transitions, no violation, about 7 minutes.

use std::collections::{HashSet, VecDeque};

use policy_core::{
    Action, AttemptReport, CertificateError, Dance, Dane, DeliveryContext, History, MtaSts,
    Outcome, PeerMemory, Policy, Tier, TlsAlert, decide, floor,
};

/// The simulated `now` every state is decided at (its clocks are relative to it).
const NOW: u64 = 1_000_000;
const REPROBE_SECS: u32 = 3;
const PIN_SECS: u32 = 5;

/// An engine state with its clocks relative to `now`, and the attempt awaited, if any.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct State {
    start_tier: Option<Tier>,
    last_success_tier: Option<Tier>,
    succeeded: bool,
    seen_tls: bool,
    pin_left: u64,
    probe_age: u64,
    transient_failures: u8,
    dance: Option<(Tier, u8, bool)>,
    awaiting: Option<(Tier, DeliveryContext)>,
}

impl State {
    fn of(history: &History, awaiting: Option<(Tier, DeliveryContext)>) -> Self {
        let memory = &history.memory;
        Self {
            start_tier: memory.start_tier,
            last_success_tier: memory.last_success_tier,
            succeeded: memory.last_success_at > 0,
            seen_tls: memory.seen_tls,
            pin_left: memory.pinned_until.saturating_sub(NOW),
            probe_age: NOW
                .saturating_sub(memory.last_probe_at)
                .min(u64::from(REPROBE_SECS)),
            transient_failures: memory.transient_failures,
            dance: history
                .dance
                .map(|dance| (dance.tier, dance.attempts, dance.reached_top)),
            awaiting,
        }
    }

    fn history(&self) -> History {
        History {
            memory: PeerMemory {
                start_tier: self.start_tier,
                last_success_tier: self.last_success_tier,
                last_success_at: if self.succeeded { NOW - 1 } else { 0 },
                seen_tls: self.seen_tls,
                pinned_until: if self.pin_left > 0 {
                    NOW + self.pin_left
                } else {
                    0
                },
                last_probe_at: NOW - self.probe_age,
                transient_failures: self.transient_failures,
            },
            dance: self.dance.map(|(tier, attempts, reached_top)| Dance {
                tier,
                attempts,
                reached_top,
            }),
        }
    }

    /// The same state `seconds` later.
    fn later(&self, seconds: u64) -> Self {
        Self {
            pin_left: self.pin_left.saturating_sub(seconds),
            probe_age: (self.probe_age + seconds).min(u64::from(REPROBE_SECS)),
            ..*self
        }
    }
}

fn contexts() -> Vec<DeliveryContext> {
    let mut all = Vec::new();
    for dane in Dane::ALL {
        for mta_sts in MtaSts::ALL {
            for flags in 0..8_u8 {
                all.push(DeliveryContext {
                    dane,
                    mta_sts,
                    requiretls: flags & 1 != 0,
                    tls_required_no: flags & 2 != 0,
                    sasl: flags & 4 != 0,
                });
            }
        }
    }
    all
}

fn outcomes() -> Vec<Outcome> {
    let mut all = vec![
        Outcome::Success { version: None },
        Outcome::ConnectFailed,
        Outcome::StarttlsNotOffered,
        Outcome::HandshakeTimeout,
        Outcome::ConnectionReset,
        Outcome::PostHandshakeFailure,
        Outcome::PolicyLookupFailed,
    ];
    all.extend(
        [
            TlsAlert::ProtocolVersion,
            TlsAlert::HandshakeFailure,
            TlsAlert::InsufficientSecurity,
            TlsAlert::InappropriateFallback,
            TlsAlert::Other,
        ]
        .map(Outcome::TlsAlert),
    );
    all.extend(
        [
            CertificateError::Expired,
            CertificateError::Untrusted,
            CertificateError::NameMismatch,
            CertificateError::DaneMismatch,
        ]
        .map(Outcome::CertificateError),
    );
    all
}

fn main() {
    let policy = Policy {
        reprobe_interval_secs: REPROBE_SECS,
        pin_duration_secs: PIN_SECS,
        ..Policy::DEFAULT
    };
    let (contexts, outcomes) = (contexts(), outcomes());
    let start = State::of(&History::default(), None);
    let mut seen = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    let (mut transitions, mut violations) = (0_u64, 0_u64);
    let longest = u64::from(PIN_SECS.max(REPROBE_SECS)) + 1;
    while let Some(state) = queue.pop_front() {
        let mut moments: Vec<State> = (0..=longest).map(|s| state.later(s)).collect();
        moments.dedup();
        for before in moments {
            let blob = before.history().encode();
            let mut steps: Vec<(DeliveryContext, Option<AttemptReport>)> =
                contexts.iter().map(|context| (*context, None)).collect();
            if let Some((tier, context)) = before.awaiting {
                steps.extend(outcomes.iter().map(|outcome| {
                    (
                        context,
                        Some(AttemptReport {
                            tier,
                            outcome: *outcome,
                        }),
                    )
                }));
            }
            for (context, report) in steps {
                transitions += 1;
                let decision = decide(
                    &policy,
                    &context,
                    Some(blob.as_bytes()),
                    report.as_ref(),
                    NOW,
                );
                let bounds = floor(&policy, &context, &before.history().memory, NOW);
                let waived = context.tls_required_no && !context.requiretls;
                let awaiting = match decision.action {
                    Action::Attempt { tier, .. } => {
                        if tier < bounds.floor {
                            violations += 1;
                            eprintln!("below the floor: {before:?} {context:?} {report:?}");
                        }
                        if before.pin_left > 0 && !waived && tier < Tier::ModernTls {
                            violations += 1;
                            eprintln!("pinned peer below modern: {before:?} {context:?}");
                        }
                        Some((tier, context))
                    }
                    _ => None,
                };
                let Ok(history) = History::decode(decision.history.as_bytes()) else {
                    violations += 1;
                    eprintln!("undecodable history after {before:?} {context:?} {report:?}");
                    continue;
                };
                let next = State::of(&history, awaiting);
                if seen.insert(next) {
                    queue.push_back(next);
                }
            }
        }
    }
    println!(
        "{} states, {transitions} transitions, {violations} violations",
        seen.len()
    );
    if violations > 0 {
        std::process::exit(1);
    }
}
