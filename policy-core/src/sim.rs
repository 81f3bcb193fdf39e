//! A simulated peer and mail queue that drive any decide function over simulated time.
//!
//! The clock is a field the driver advances; the peer's behaviour is a table per tier that can
//! change on a given day (an attacker appears, the peer upgrades); network flakiness comes from a
//! seeded counter-based generator. Everything is deterministic: the same scenario gives the same
//! timeline. Used by the scenario tests, the `tlsfallback simulate` command and the playground's
//! reference checks.

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
    /// Seed for the network's resets.
    pub seed: u64,
}

impl Scenario {
    /// A scenario with the defaults: starting 2026-01-01, 30 days, 4 messages a day, 5-day queue
    /// lifetime.
    #[must_use]
    pub const fn new(peer: SimPeer, policy: Policy) -> Self {
        Self {
            peer,
            policy,
            start: 1_767_225_600,
            days: 30,
            messages_per_day: 4,
            queue_lifetime_secs: 5 * DAY,
            seed: 0x5eed,
        }
    }
}

/// One question asked of the decide function.
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
    /// Whether the attacker was on path during this try.
    pub attacker_active: bool,
    /// The decisions.
    pub steps: Vec<Step>,
    /// Whether the message expired from the queue after this try.
    pub expired: bool,
}

impl Delivery {
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
#[derive(Clone, Copy)]
struct Queued {
    message: u32,
    queued_at: UnixSeconds,
    next_try: UnixSeconds,
    tries: u32,
}

/// The queue's backoff after `tries` deferred tries, Postfix-style: the engine's retry-after at
/// least, doubling from 300 s up to 4000 s (`minimal_backoff_time`, `maximal_backoff_time`).
fn backoff_secs(retry_after_secs: u32, tries: u32) -> u64 {
    let doubling = 300u64 << tries.min(4);
    u64::from(retry_after_secs.max(1)).max(doubling.min(4000))
}

/// Runs a scenario, asking `decide` for every decision.
///
/// # Errors
///
/// The first error `decide` returns (the simulation stops there).
pub fn run<E>(
    scenario: &Scenario,
    mut decide: impl FnMut(DecideInput<'_>) -> Result<Decision, E>,
) -> Result<Timeline, E> {
    let peer = &scenario.peer;
    let end = scenario
        .start
        .saturating_add(u64::from(scenario.days) * DAY);
    let spacing = DAY / u64::from(scenario.messages_per_day.max(1));
    let total = scenario.days.saturating_mul(scenario.messages_per_day);
    let mut queue: Vec<Queued> = Vec::new();
    let mut next_message = 0u32;
    let mut history: Option<crate::HistoryBlob> = None;
    let mut deliveries = Vec::new();
    let mut summary = Summary {
        messages: total,
        ..Summary::default()
    };
    let mut attempt_counter = 0u64;
    // The earliest time the next try may start: tries are sequential, like one SMTP client.
    let mut clock = scenario.start;

    loop {
        let arrival = scenario.start + u64::from(next_message) * spacing;
        let due = queue
            .iter()
            .enumerate()
            .min_by_key(|(_, q)| (q.next_try, q.message))
            .map(|(i, q)| (i, q.next_try));
        let take_arrival = next_message < total && due.is_none_or(|(_, t)| arrival <= t);
        let item = if take_arrival {
            next_message += 1;
            Queued {
                message: next_message - 1,
                queued_at: arrival,
                next_try: arrival,
                tries: 0,
            }
        } else if let Some((index, _)) = due {
            queue.swap_remove(index)
        } else {
            break;
        };
        if item.next_try >= end {
            summary.still_queued += 1 + u32::try_from(queue.len()).unwrap_or(u32::MAX);
            break;
        }
        let mut now = clock.max(item.next_try);
        let day = (now - scenario.start) / DAY;
        let attacker = peer.attacker_active(day);
        let mut delivery = Delivery {
            message: item.message,
            queued_at: item.queued_at,
            started_at: now,
            attacker_active: attacker,
            steps: Vec::new(),
            expired: false,
        };
        let mut last = None;
        loop {
            let decision = decide(DecideInput {
                policy: &scenario.policy,
                context: &peer.context,
                history: history.as_ref().map(crate::HistoryBlob::as_bytes),
                last,
                now,
            })?;
            history = Some(decision.history);
            match decision.action {
                crate::Action::Attempt {
                    tier, delay_secs, ..
                } => {
                    summary.attempts += 1;
                    summary.fallback_delay_secs += u64::from(delay_secs);
                    now += u64::from(delay_secs);
                    attempt_counter += 1;
                    let day = (now - scenario.start) / DAY;
                    let reset = percent_roll(scenario.seed, attempt_counter) < peer.reset_percent;
                    let outcome = if reset && tier.uses_tls() {
                        Outcome::ConnectionReset
                    } else {
                        peer.behaviour_on(day).at(tier)
                    };
                    if !matches!(outcome, Outcome::Success { .. }) {
                        summary.failed_attempts += 1;
                    }
                    delivery.steps.push(Step {
                        at: now - u64::from(delay_secs),
                        decision,
                        outcome: Some(outcome),
                    });
                    now += ATTEMPT_SECS;
                    last = Some(AttemptReport { tier, outcome });
                }
                action => {
                    delivery.steps.push(Step {
                        at: now,
                        decision,
                        outcome: None,
                    });
                    match action {
                        crate::Action::Defer { retry_after_secs } => {
                            summary.deferrals += 1;
                            if attacker {
                                summary.refused_to_attacker += 1;
                            }
                            let next_try = now + backoff_secs(retry_after_secs, item.tries);
                            if next_try - item.queued_at > scenario.queue_lifetime_secs {
                                summary.expired += 1;
                                delivery.expired = true;
                            } else {
                                queue.push(Queued {
                                    next_try,
                                    tries: item.tries + 1,
                                    ..item
                                });
                            }
                        }
                        crate::Action::Bounce { .. } => {
                            summary.bounces += 1;
                            if attacker {
                                summary.refused_to_attacker += 1;
                            }
                        }
                        _ => {}
                    }
                    break;
                }
            }
        }
        if let Some(tier) = delivery.delivered_tier() {
            summary.delivered_by_tier[tier as usize] += 1;
            if tier == Tier::Cleartext && attacker {
                summary.cleartext_to_attacker += 1;
            }
        }
        clock = now;
        deliveries.push(delivery);
    }
    Ok(Timeline {
        deliveries,
        summary,
        final_history: history,
    })
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
