//! A simulated peer and mail queue, stepped one decision at a time.
//!
//! [`Simulation`] is a stepper in the manner of quinn-proto: it holds no engine and no callback.
//! The caller asks it for the next question ([`Simulation::request`]: the policy, the delivery
//! context, the peer's history, the last attempt's outcome and the simulated `now`), decides it
//! with whatever engine it likes, and gives the decision back through the one entry point
//! [`Simulation::answer`]; the simulated peer acts on it and the queue moves on.
//!
//! The promise: the same scenario and the same decisions give the same timeline, byte for byte.
//! The clock is simulated; the peer's behaviour is a table per tier that can change on a given day
//! (an attacker appears, the peer upgrades); network flakiness comes from a seeded counter-based
//! generator; the queue spaces retries as Postfix's queue manager does ([`QueueBackoff`]). Used by
//! the scenario tests, `tlsfallback simulate` and (compiled into the tools component) the
//! browser playground, so all three tell the same story.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::{
    AttemptReport, Decision, DeliveryContext, Outcome, Policy, Tier, TlsAlert, TlsVersion,
    UnixSeconds,
};

/// Seconds in a simulated day.
pub const DAY: u64 = 86_400;

/// Seconds a simulated SMTP attempt takes, from connect to outcome.
pub const ATTEMPT_SECS: u64 = 1;

/// What the peer does when attempted at each tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierBehaviour {
    /// The outcome at `authenticated-tls`.
    pub authenticated: Outcome,
    /// The outcome at `modern-tls`.
    pub modern: Outcome,
    /// The outcome at `legacy-tls`.
    pub legacy: Outcome,
    /// The outcome at `cleartext`.
    pub cleartext: Outcome,
}

impl TierBehaviour {
    /// The outcome at `tier`.
    #[must_use]
    pub const fn at(&self, tier: Tier) -> Outcome {
        match tier {
            Tier::AuthenticatedTls => self.authenticated,
            Tier::ModernTls => self.modern,
            Tier::LegacyTls => self.legacy,
            Tier::Cleartext => self.cleartext,
        }
    }

    /// A current peer: TLS 1.3 with a valid certificate; our capped, SCSV-marked legacy offer
    /// gets `inappropriate_fallback`.
    pub const MODERN: Self = Self {
        authenticated: success(TlsVersion::Tls1_3),
        modern: success(TlsVersion::Tls1_3),
        legacy: Outcome::TlsAlert(TlsAlert::InappropriateFallback),
        cleartext: CLEAR,
    };

    /// A peer that only speaks TLS 1.0 with CBC-SHA1 suites.
    pub const LEGACY_ONLY: Self = Self {
        authenticated: Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        modern: Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        legacy: success(TlsVersion::Tls1_0),
        cleartext: CLEAR,
    };

    /// A peer without STARTTLS (or one behind a stripping attacker).
    pub const NO_STARTTLS: Self = Self {
        authenticated: Outcome::StarttlsNotOffered,
        modern: Outcome::StarttlsNotOffered,
        legacy: Outcome::StarttlsNotOffered,
        cleartext: CLEAR,
    };

    /// A peer that offers STARTTLS and answers it with 454.
    pub const BROKEN_STARTTLS: Self = Self {
        authenticated: Outcome::StarttlsRejected { code: 454 },
        modern: Outcome::StarttlsRejected { code: 454 },
        legacy: Outcome::StarttlsRejected { code: 454 },
        cleartext: CLEAR,
    };
}

const fn success(version: TlsVersion) -> Outcome {
    Outcome::Success {
        version: Some(version),
    }
}

const CLEAR: Outcome = Outcome::Success { version: None };

/// A simulated peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimPeer {
    /// How the peer behaves from day 0.
    pub behaviour: TierBehaviour,
    /// From this day on (counted from the scenario's start), the peer behaves like this instead.
    pub change: Option<(u32, TierBehaviour)>,
    /// Whether the change is an on-path attacker (its cleartext deliveries are counted as mail
    /// handed to the attacker).
    pub change_is_attacker: bool,
    /// Percentage (0 to 100) of attempts whose connection the network resets during STARTTLS.
    pub reset_percent: u8,
    /// The delivery context the host resolves for this peer.
    pub context: DeliveryContext,
}

impl SimPeer {
    /// A peer that always behaves the same.
    #[must_use]
    pub const fn steady(behaviour: TierBehaviour) -> Self {
        Self {
            behaviour,
            change: None,
            change_is_attacker: false,
            reset_percent: 0,
            context: DeliveryContext {
                dane: crate::Dane::None,
                mta_sts: crate::MtaSts::None,
                requiretls: false,
                tls_required_no: false,
                sasl: false,
            },
        }
    }

    /// Whether the attacker is on path at `day`.
    #[must_use]
    pub fn attacker_active(&self, day: u64) -> bool {
        self.change_is_attacker && self.change.is_some_and(|(from, _)| day >= u64::from(from))
    }

    fn behaviour_on(&self, day: u64) -> TierBehaviour {
        match self.change {
            Some((from, behaviour)) if day >= u64::from(from) => behaviour,
            _ => self.behaviour,
        }
    }
}

/// The page's line about a peer the user built by hand instead of a preset.
pub const CUSTOM_PEER_DESCRIPTION: &str = "your own peer: choose what it does at each tier";

/// The built-in peer presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// TLS 1.3 with a valid certificate.
    Modern,
    /// TLS 1.0 only.
    LegacyOnly,
    /// No STARTTLS at all.
    NoStarttls,
    /// STARTTLS offered, answered with 454.
    BrokenStarttls,
    /// A modern peer behind a network that resets 30% of attempts.
    FlakyNetwork,
    /// A modern peer; from day 3 an on-path attacker strips STARTTLS.
    StrippingAttacker,
    /// A modern peer with usable DANE TLSA records; from day 3 an attacker strips STARTTLS.
    DaneProtected,
    /// A TLS 1.0-only peer that upgrades to TLS 1.3 on day 10.
    Upgrading,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Self; 8] = [
        Self::Modern,
        Self::LegacyOnly,
        Self::NoStarttls,
        Self::BrokenStarttls,
        Self::FlakyNetwork,
        Self::StrippingAttacker,
        Self::DaneProtected,
        Self::Upgrading,
    ];

    /// The preset's kebab-case name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Modern => "modern",
            Self::LegacyOnly => "legacy-only",
            Self::NoStarttls => "no-starttls",
            Self::BrokenStarttls => "broken-starttls",
            Self::FlakyNetwork => "flaky-network",
            Self::StrippingAttacker => "stripping-attacker",
            Self::DaneProtected => "dane-protected",
            Self::Upgrading => "upgrading",
        }
    }

    /// Parses a preset name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// One line about the preset (the CLI's timeline headers, the page's preset description),
    /// with the day of its change as the preset sets it.
    #[must_use]
    pub fn describe(self) -> String {
        self.describe_with_change_day(self.peer().change.map_or(0, |(day, _)| day))
    }

    /// One line about the preset, its change moved to `change_day` (the page lets the user move
    /// it); presets without a change ignore the day.
    #[must_use]
    pub fn describe_with_change_day(self, change_day: u32) -> String {
        match self {
            Self::Modern => "TLS 1.3 with a valid certificate".into(),
            Self::LegacyOnly => "speaks only TLS 1.0 with CBC-SHA1 suites".into(),
            Self::NoStarttls => "offers no STARTTLS at all".into(),
            Self::BrokenStarttls => "offers STARTTLS and answers it with 454".into(),
            Self::FlakyNetwork => {
                "a modern peer behind a network that resets 30% of attempts".into()
            }
            Self::StrippingAttacker => {
                format!("a modern peer; from day {change_day} an on-path attacker strips STARTTLS")
            }
            Self::DaneProtected => format!(
                "a modern peer with usable DANE TLSA records; from day {change_day} an attacker \
                 strips STARTTLS"
            ),
            Self::Upgrading => {
                format!("speaks only TLS 1.0 until day {change_day}, then TLS 1.3")
            }
        }
    }

    /// The simulated peer.
    #[must_use]
    pub const fn peer(self) -> SimPeer {
        match self {
            Self::Modern => SimPeer::steady(TierBehaviour::MODERN),
            Self::LegacyOnly => SimPeer::steady(TierBehaviour::LEGACY_ONLY),
            Self::NoStarttls => SimPeer::steady(TierBehaviour::NO_STARTTLS),
            Self::BrokenStarttls => SimPeer::steady(TierBehaviour::BROKEN_STARTTLS),
            Self::FlakyNetwork => SimPeer {
                reset_percent: 30,
                ..SimPeer::steady(TierBehaviour::MODERN)
            },
            Self::StrippingAttacker => SimPeer {
                change: Some((3, TierBehaviour::NO_STARTTLS)),
                change_is_attacker: true,
                ..SimPeer::steady(TierBehaviour::MODERN)
            },
            Self::DaneProtected => {
                let mut peer = SimPeer {
                    change: Some((3, TierBehaviour::NO_STARTTLS)),
                    change_is_attacker: true,
                    ..SimPeer::steady(TierBehaviour::MODERN)
                };
                peer.context.dane = crate::Dane::Usable;
                peer
            }
            Self::Upgrading => SimPeer {
                change: Some((10, TierBehaviour::MODERN)),
                ..SimPeer::steady(TierBehaviour::LEGACY_ONLY)
            },
        }
    }
}

/// How the MTA's queue spaces the tries of a deferred message, as Postfix's queue manager does.
///
/// Postfix's `qmgr` (`qmgr_active_done_3_generic` in `src/qmgr/qmgr_active.c`) moves a deferred
/// message's next try into the future by the message's *age in the queue*, clamped between
/// `minimal_backoff_time` and `maximal_backoff_time`: so the gaps roughly double while the message
/// is young and stay at the maximum once it is old. The simulated queue does the same, and the
/// engine's `retry_after_secs` is a lower bound on top (the queue never retries sooner than the
/// engine asked). Postfix's deferred-queue scan interval (`queue_run_delay`) is not modelled: a
/// try starts at its due time, not at the next scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueBackoff {
    /// The shortest gap between two tries of one message (Postfix `minimal_backoff_time`).
    pub minimal_secs: u64,
    /// The longest gap between two tries of one message (Postfix `maximal_backoff_time`).
    pub maximal_secs: u64,
}

impl QueueBackoff {
    /// Postfix's defaults: `minimal_backoff_time = 300s`, `maximal_backoff_time = 4000s`.
    pub const POSTFIX: Self = Self {
        minimal_secs: 300,
        maximal_secs: 4000,
    };

    /// The gap before the next try of a message queued `age_secs` ago whose try the engine
    /// deferred with `retry_after_secs`.
    #[must_use]
    pub const fn delay_secs(&self, age_secs: u64, retry_after_secs: u32) -> u64 {
        let queue = if age_secs < self.minimal_secs {
            self.minimal_secs
        } else if age_secs > self.maximal_secs {
            self.maximal_secs
        } else {
            age_secs
        };
        let engine = retry_after_secs as u64;
        if engine > queue { engine } else { queue }
    }
}

impl Default for QueueBackoff {
    fn default() -> Self {
        Self::POSTFIX
    }
}

/// A simulation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The peer.
    pub peer: SimPeer,
    /// The operator's policy.
    pub policy: Policy,
    /// When the simulation starts, in seconds since the Unix epoch.
    pub start: UnixSeconds,
    /// How many days of mail to simulate.
    pub days: u32,
    /// New messages per day, evenly spaced.
    pub messages_per_day: u32,
    /// How long a message may stay queued before it expires (bounced by the queue), in seconds.
    pub queue_lifetime_secs: u64,
    /// How the queue spaces the tries of a deferred message.
    pub backoff: QueueBackoff,
    /// Seed for the network's resets.
    pub seed: u64,
}

impl Scenario {
    /// A scenario with the defaults: starting 2026-01-01, 30 days, 4 messages a day, 5-day queue
    /// lifetime, Postfix's backoff.
    #[must_use]
    pub const fn new(peer: SimPeer, policy: Policy) -> Self {
        Self {
            peer,
            policy,
            start: 1_767_225_600,
            days: 30,
            messages_per_day: 4,
            queue_lifetime_secs: 5 * DAY,
            backoff: QueueBackoff::POSTFIX,
            seed: 0x5eed,
        }
    }
}

/// A scenario the simulator refuses, or a call it cannot take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A scenario without mail (no day, or no message a day) would say nothing.
    #[error("the scenario simulates no mail ({days} days, {messages_per_day} messages a day)")]
    NoMail {
        /// The scenario's days.
        days: u32,
        /// The scenario's messages per day.
        messages_per_day: u32,
    },
    /// A minimal backoff of zero would let a deferred message be retried in the same second.
    #[error("the minimal backoff must be at least 1 s")]
    ZeroMinimalBackoff,
    /// The maximal backoff is below the minimal one.
    #[error("the maximal backoff ({maximal} s) is below the minimal backoff ({minimal} s)")]
    InvertedBackoff {
        /// The minimal backoff, in seconds.
        minimal: u64,
        /// The maximal backoff, in seconds.
        maximal: u64,
    },
    /// [`Simulation::answer`] was called with no request waiting (the run is over).
    #[error("the simulation is finished: no request is waiting for a decision")]
    NotWaiting,
    /// [`Simulation::finish`] was called while a request was still waiting for its decision.
    #[error("the simulation is not finished: a request is still waiting for a decision")]
    Unfinished,
}

/// One question the simulation asks of the engine: the inputs of [`crate::decide`].
#[derive(Clone, Copy, Debug)]
pub struct DecideInput<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// The delivery context.
    pub context: &'a DeliveryContext,
    /// The peer's history blob.
    pub history: Option<&'a [u8]>,
    /// The outcome of the last attempt in this delivery.
    pub last: Option<AttemptReport>,
    /// The simulated clock.
    pub now: UnixSeconds,
}
/// One decision and what the peer did with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// When the decision was asked for.
    pub at: UnixSeconds,
    /// The decision.
    pub decision: Decision,
    /// The outcome of the attempt it asked for (`None` for a final decision).
    pub outcome: Option<Outcome>,
}

/// One delivery try of one message: decisions until done, defer or bounce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The message's number, from 0.
    pub message: u32,
    /// When the message entered the queue.
    pub queued_at: UnixSeconds,
    /// When this try started.
    pub started_at: UnixSeconds,
    /// When this try ended (its final decision).
    pub ended_at: UnixSeconds,
    /// Whether the attacker was on path during this try.
    pub attacker_active: bool,
    /// The decisions.
    pub steps: Vec<Step>,
    /// Whether the message expired from the queue after this try.
    pub expired: bool,
}

impl Delivery {
    /// Whether `other` went the same way as this try: the same decisions (actions and reasons)
    /// met by the same outcomes, with the attacker on path or not. Times, message numbers,
    /// history bytes and whether the queue then gave up on the message may differ.
    #[must_use]
    pub fn same_course(&self, other: &Self) -> bool {
        self.attacker_active == other.attacker_active
            && self.steps.len() == other.steps.len()
            && self.steps.iter().zip(&other.steps).all(|(a, b)| {
                a.decision.action == b.decision.action
                    && a.decision.reason == b.decision.reason
                    && a.outcome == b.outcome
            })
    }

    /// The decision that ended this try.
    #[must_use]
    pub fn last_decision(&self) -> Option<&Decision> {
        self.steps.last().map(|s| &s.decision)
    }

    /// The tier the message was delivered at, if this try delivered it.
    #[must_use]
    pub fn delivered_tier(&self) -> Option<Tier> {
        let last = self.steps.len().checked_sub(2)?;
        match (&self.steps[last].decision.action, self.steps[last].outcome) {
            (crate::Action::Attempt { tier, .. }, Some(Outcome::Success { .. }))
                if self.steps[last + 1].decision.action == crate::Action::Done =>
            {
                Some(*tier)
            }
            _ => None,
        }
    }

    /// How long the message waited from being queued to being delivered, if this try delivered
    /// it: the time a sender's user waits, fallback delays and queue backoff included.
    #[must_use]
    pub fn delivery_latency_secs(&self) -> Option<u64> {
        self.delivered_tier()
            .map(|_| self.ended_at.saturating_sub(self.queued_at))
    }

    /// The first tier this try attempted.
    #[must_use]
    pub fn first_tier(&self) -> Option<Tier> {
        match self.steps.first()?.decision.action {
            crate::Action::Attempt { tier, .. } => Some(tier),
            _ => None,
        }
    }
}

/// What a simulation did, in totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages queued.
    pub messages: u32,
    /// Messages delivered, by tier (index: cleartext, legacy, modern, authenticated).
    pub delivered_by_tier: [u32; 4],
    /// Delivery tries that ended in `defer`.
    pub deferrals: u32,
    /// Messages bounced by the engine.
    pub bounces: u32,
    /// Messages that expired in the queue.
    pub expired: u32,
    /// Connection attempts made.
    pub attempts: u32,
    /// Attempts that failed.
    pub failed_attempts: u32,
    /// Seconds of step-down delay asked for.
    pub fallback_delay_secs: u64,
    /// Messages delivered in cleartext while the attacker was on path.
    pub cleartext_to_attacker: u32,
    /// Delivery tries refused (deferred or bounced) while the attacker was on path.
    pub refused_to_attacker: u32,
    /// Messages still queued when the simulation ended.
    pub still_queued: u32,
}

/// The full result of a simulation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    /// Every delivery try, in time order.
    pub deliveries: Vec<Delivery>,
    /// Totals.
    pub summary: Summary,
    /// The peer's history when the simulation ended.
    pub final_history: Option<crate::HistoryBlob>,
}

/// A queued message.
#[derive(Clone, Copy, Debug)]
struct Queued {
    message: u32,
    queued_at: UnixSeconds,
    next_try: UnixSeconds,
}

/// The delivery try whose next decision the simulation is waiting for.
#[derive(Debug)]
struct InFlight {
    item: Queued,
    delivery: Delivery,
    /// The simulated clock inside this try.
    now: UnixSeconds,
    last: Option<AttemptReport>,
}

/// A running simulation: a stepper that asks for one decision at a time.
///
/// Ask [`request`](Self::request) for the next question, decide it with any engine (the native
/// [`crate::decide`], a component, a plugin), give the decision back with
/// [`answer`](Self::answer), and repeat until `request` returns `None`; then
/// [`finish`](Self::finish) hands over the [`Timeline`]. The simulation holds no engine and no
/// callback, so the caller owns the engine's errors, timing and instances:
///
/// ```
/// use policy_core::sim::{Preset, Scenario, Simulation};
/// use policy_core::{Policy, decide};
///
/// let scenario = Scenario { days: 2, ..Scenario::new(Preset::LegacyOnly.peer(), Policy::default()) };
/// let mut simulation = Simulation::new(&scenario).expect("a valid scenario");
/// while let Some(input) = simulation.request() {
///     let decision = decide(input.policy, input.context, input.history, input.last.as_ref(), input.now);
///     simulation.answer(decision).expect("a request was waiting");
/// }
/// let timeline = simulation.finish().expect("no request is left");
/// assert_eq!(timeline.summary.delivered_by_tier[Tier::LegacyTls as usize], 8);
/// # use policy_core::Tier;
/// ```
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    end: UnixSeconds,
    spacing: u64,
    total: u32,
    queue: Vec<Queued>,
    next_message: u32,
    history: Option<crate::HistoryBlob>,
    deliveries: Vec<Delivery>,
    summary: Summary,
    attempt_counter: u64,
    /// The earliest time the next try may start: tries are sequential, like one SMTP client.
    clock: UnixSeconds,
    in_flight: Option<InFlight>,
}

impl Simulation {
    /// Starts a simulation of `scenario`.
    ///
    /// # Errors
    ///
    /// A scenario without mail, or with a backoff that is zero or inverted.
    pub fn new(scenario: &Scenario) -> Result<Self, SimError> {
        if scenario.days == 0 || scenario.messages_per_day == 0 {
            return Err(SimError::NoMail {
                days: scenario.days,
                messages_per_day: scenario.messages_per_day,
            });
        }
        let QueueBackoff {
            minimal_secs,
            maximal_secs,
        } = scenario.backoff;
        if minimal_secs == 0 {
            return Err(SimError::ZeroMinimalBackoff);
        }
        if maximal_secs < minimal_secs {
            return Err(SimError::InvertedBackoff {
                minimal: minimal_secs,
                maximal: maximal_secs,
            });
        }
        let total = scenario.days.saturating_mul(scenario.messages_per_day);
        let mut simulation = Self {
            scenario: *scenario,
            end: scenario
                .start
                .saturating_add(u64::from(scenario.days) * DAY),
            spacing: DAY / u64::from(scenario.messages_per_day),
            total,
            queue: Vec::new(),
            next_message: 0,
            history: None,
            deliveries: Vec::new(),
            summary: Summary {
                messages: total,
                ..Summary::default()
            },
            attempt_counter: 0,
            clock: scenario.start,
            in_flight: None,
        };
        simulation.start_next_try();
        Ok(simulation)
    }

    /// The question waiting for a decision, or `None` when the run is over.
    #[must_use]
    pub fn request(&self) -> Option<DecideInput<'_>> {
        let in_flight = self.in_flight.as_ref()?;
        Some(DecideInput {
            policy: &self.scenario.policy,
            context: &self.scenario.peer.context,
            history: self.history.as_ref().map(crate::HistoryBlob::as_bytes),
            last: in_flight.last,
            now: in_flight.now,
        })
    }

    /// Gives the decision for the waiting [`request`](Self::request): the peer acts on it and the
    /// simulation moves on to the next question (or ends).
    ///
    /// # Errors
    ///
    /// [`SimError::NotWaiting`] when no request is waiting; the simulation is unchanged.
    pub fn answer(&mut self, decision: Decision) -> Result<(), SimError> {
        let Some(mut in_flight) = self.in_flight.take() else {
            return Err(SimError::NotWaiting);
        };
        self.history = Some(decision.history);
        let peer = &self.scenario.peer;
        let summary = &mut self.summary;
        match decision.action {
            crate::Action::Attempt {
                tier, delay_secs, ..
            } => {
                summary.attempts += 1;
                summary.fallback_delay_secs += u64::from(delay_secs);
                let at = in_flight.now;
                in_flight.now += u64::from(delay_secs);
                self.attempt_counter += 1;
                let day = (in_flight.now - self.scenario.start) / DAY;
                let reset =
                    percent_roll(self.scenario.seed, self.attempt_counter) < peer.reset_percent;
                let outcome = if reset && tier.uses_tls() {
                    Outcome::ConnectionReset
                } else {
                    peer.behaviour_on(day).at(tier)
                };
                if !matches!(outcome, Outcome::Success { .. }) {
                    summary.failed_attempts += 1;
                }
                in_flight.delivery.steps.push(Step {
                    at,
                    decision,
                    outcome: Some(outcome),
                });
                in_flight.now += ATTEMPT_SECS;
                in_flight.last = Some(AttemptReport { tier, outcome });
                self.in_flight = Some(in_flight);
                return Ok(());
            }
            crate::Action::Defer { retry_after_secs } => {
                summary.deferrals += 1;
                if in_flight.delivery.attacker_active {
                    summary.refused_to_attacker += 1;
                }
                let item = in_flight.item;
                let age = in_flight.now - item.queued_at;
                let next_try = in_flight.now
                    + self
                        .scenario
                        .backoff
                        .delay_secs(age, retry_after_secs.max(1));
                if next_try - item.queued_at > self.scenario.queue_lifetime_secs {
                    summary.expired += 1;
                    in_flight.delivery.expired = true;
                } else {
                    self.queue.push(Queued { next_try, ..item });
                }
            }
            crate::Action::Bounce { .. } => {
                summary.bounces += 1;
                if in_flight.delivery.attacker_active {
                    summary.refused_to_attacker += 1;
                }
            }
            crate::Action::Done => {}
        }
        in_flight.delivery.steps.push(Step {
            at: in_flight.now,
            decision,
            outcome: None,
        });
        in_flight.delivery.ended_at = in_flight.now;
        if let Some(tier) = in_flight.delivery.delivered_tier() {
            summary.delivered_by_tier[tier as usize] += 1;
            if tier == Tier::Cleartext && in_flight.delivery.attacker_active {
                summary.cleartext_to_attacker += 1;
            }
        }
        self.clock = in_flight.now;
        self.deliveries.push(in_flight.delivery);
        self.start_next_try();
        Ok(())
    }

    /// Whether the run is over (no request is waiting).
    #[must_use]
    pub const fn is_finished(&self) -> bool {
        self.in_flight.is_none()
    }

    /// The timeline of a finished run.
    ///
    /// # Errors
    ///
    /// [`SimError::Unfinished`] while a request is still waiting (nothing is lost: the
    /// simulation is handed back inside the error's pair).
    // Called once per run: moving the simulation back through the error costs nothing that
    // matters, and a box would only hide the same bytes behind an allocation.
    #[allow(clippy::result_large_err)]
    pub fn finish(self) -> Result<Timeline, (SimError, Self)> {
        if self.in_flight.is_some() {
            return Err((SimError::Unfinished, self));
        }
        Ok(Timeline {
            deliveries: self.deliveries,
            summary: self.summary,
            final_history: self.history,
        })
    }

    /// Picks the next try (a new message or the earliest due retry) and waits for its first
    /// decision; ends the run when nothing is left before the scenario's end.
    fn start_next_try(&mut self) {
        let scenario = &self.scenario;
        let arrival = scenario.start + u64::from(self.next_message) * self.spacing;
        let due = self
            .queue
            .iter()
            .enumerate()
            .min_by_key(|(_, q)| (q.next_try, q.message))
            .map(|(i, q)| (i, q.next_try));
        let take_arrival = self.next_message < self.total && due.is_none_or(|(_, t)| arrival <= t);
        let item = if take_arrival {
            self.next_message += 1;
            Queued {
                message: self.next_message - 1,
                queued_at: arrival,
                next_try: arrival,
            }
        } else if let Some((index, _)) = due {
            self.queue.swap_remove(index)
        } else {
            return;
        };
        if item.next_try >= self.end {
            self.summary.still_queued += 1 + u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
            return;
        }
        let now = self.clock.max(item.next_try);
        let day = (now - scenario.start) / DAY;
        self.in_flight = Some(InFlight {
            item,
            delivery: Delivery {
                message: item.message,
                queued_at: item.queued_at,
                started_at: now,
                ended_at: now,
                attacker_active: scenario.peer.attacker_active(day),
                steps: Vec::new(),
                expired: false,
            },
            now,
            last: None,
        });
    }
}

/// Runs a whole scenario with policy-core's own [`crate::decide`], in this process: what the
/// `native` engine of `tlsfallback simulate` and the tools component's whole-run export do.
///
/// # Errors
///
/// The scenario's, as [`Simulation::new`].
pub fn run_natively(scenario: &Scenario) -> Result<Timeline, SimError> {
    let mut simulation = Simulation::new(scenario)?;
    while let Some(input) = simulation.request() {
        let decision = crate::decide(
            input.policy,
            input.context,
            input.history,
            input.last.as_ref(),
            input.now,
        );
        simulation.answer(decision)?;
    }
    simulation.finish().map_err(|(error, _)| error)
}

/// A run of consecutive delivery tries that went the same way, drawn as one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// The index of the run's first try in [`Timeline::deliveries`].
    pub first: usize,
    /// How many tries the run holds (at least 1).
    pub count: usize,
    /// When the run's first try started.
    pub started_at: UnixSeconds,
    /// When the run's last try ended.
    pub ended_at: UnixSeconds,
    /// How many of the run's tries were the last of their message (it expired in the queue).
    pub expired: usize,
}

/// Groups consecutive tries that went the same way ([`Delivery::same_course`]) into blocks, so
/// a month of identical refusals reads as one block with a count.
#[must_use]
pub fn aggregate(deliveries: &[Delivery]) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for (index, delivery) in deliveries.iter().enumerate() {
        if let Some(block) = blocks.last_mut()
            && deliveries[block.first].same_course(delivery)
        {
            block.count += 1;
            block.ended_at = delivery.ended_at;
            block.expired += usize::from(delivery.expired);
            continue;
        }
        blocks.push(Block {
            first: index,
            count: 1,
            started_at: delivery.started_at,
            ended_at: delivery.ended_at,
            expired: usize::from(delivery.expired),
        });
    }
    blocks
}

/// A counter-based pseudo-random percentage (SplitMix64): the same seed and counter always give
/// the same roll, so flaky networks are reproducible.
fn percent_roll(seed: u64, counter: u64) -> u8 {
    let mut z = seed.wrapping_add(counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % 100) as u8
}
