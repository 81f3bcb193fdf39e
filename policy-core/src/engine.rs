//! The decision function: the fallback dance as a pure function of its inputs.

use crate::UnixSeconds;
use crate::context::{Dane, DeliveryContext, MtaSts};
use crate::decision::{Action, Decision, EnhancedStatus, Reason, TlsRptResult, TlsRptResults};
use crate::floor::{Bounds, floor, honours_sender_relaxation};
use crate::history::{Dance, History};
use crate::outcome::{AttemptReport, CertificateError, Outcome, TlsAlert};
use crate::policy::{Policy, Profile};
use crate::tier::Tier;

/// The most attempts one delivery can ask for. The dance itself needs at most four (the
/// remembered tier, a step up to the top, legacy TLS, cleartext); the limit also holds when a host
/// reports tiers it was not asked for.
pub const MAX_ATTEMPTS_PER_DELIVERY: u8 = 5;

/// Decides what the host does next for one peer.
///
/// - `policy`: the operator's policy for this destination (per-destination overrides already
///   applied by the host).
/// - `context`: what the host resolved for this delivery (DANE, MTA-STS, REQUIRETLS,
///   `TLS-Required: No`, SASL).
/// - `history`: the blob the previous decision for this peer returned, or `None` for a peer
///   without history.
/// - `last`: the outcome of the attempt the previous decision asked for, or `None` when a new
///   delivery starts.
/// - `now`: seconds since the Unix epoch, read by the host.
///
/// Deterministic, O(1), allocation-free, and total: any input gives a decision.
pub fn decide(
    policy: &Policy,
    context: &DeliveryContext,
    history: Option<&[u8]>,
    last: Option<&AttemptReport>,
    now: UnixSeconds,
) -> Decision {
    let (state, history_error) = match history.map(History::decode) {
        None => (History::default(), None),
        Some(Ok(state)) => (state, None),
        Some(Err(error)) => (History::default(), Some(error)),
    };
    let mut step = Step {
        policy,
        context,
        now,
        bounds: floor(policy, context, &state.memory, now),
        state,
        report: TlsRptResults::EMPTY,
    };
    let (action, reason) = match last {
        None => step.start_delivery(),
        Some(report) => step.after(report),
    };
    Decision {
        action,
        reason: if history_error.is_some() {
            Reason::HistoryUnreadable
        } else {
            reason
        },
        report: step.report,
        history: step.state.encode(),
        history_error,
    }
}

/// One decision in progress.
struct Step<'a> {
    policy: &'a Policy,
    context: &'a DeliveryContext,
    now: UnixSeconds,
    bounds: Bounds,
    state: History,
    report: TlsRptResults,
}

type Verdict = (Action, Reason);

impl Step<'_> {
    fn start_delivery(&mut self) -> Verdict {
        self.state.dance = None;
        let relaxed = honours_sender_relaxation(self.context);
        if !relaxed && matches!(self.context.mta_sts, MtaSts::FetchFailed) {
            self.report.insert(TlsRptResult::StsPolicyFetchError);
        }
        if !relaxed && matches!(self.context.dane, Dane::LookupFailed) {
            self.report.insert(TlsRptResult::DnssecInvalid);
            return self.end_defer(Reason::DaneLookupFailed);
        }
        let top = self.bounds.top;
        let memory = &self.state.memory;
        let (tier, reason) = match memory.start_tier {
            Some(remembered)
                if self.policy.profile.remembers_tiers()
                    && remembered < top
                    && self.bounds.allows(remembered) =>
            {
                let since_probe = self.now.saturating_sub(memory.last_probe_at);
                if since_probe >= u64::from(self.policy.reprobe_interval_secs) {
                    (top, Reason::ReprobeUpward)
                } else {
                    (remembered, Reason::RememberedTier)
                }
            }
            _ => (top, Reason::StrongestTier),
        };
        if tier == top {
            self.state.memory.last_probe_at = self.now;
        }
        self.state.dance = Some(Dance {
            tier,
            attempts: 1,
            reached_top: tier == top,
        });
        (Action::attempt(tier, 0, self.context), reason)
    }

    fn after(&mut self, report: &AttemptReport) -> Verdict {
        let tier = report.tier;
        let dance = self.state.dance.get_or_insert(Dance {
            tier,
            attempts: 1,
            reached_top: tier == self.bounds.top,
        });
        dance.tier = tier;
        match report.outcome {
            Outcome::Success { .. } => self.delivered(tier),
            Outcome::ConnectFailed => self.end_defer(Reason::ConnectFailed),
            Outcome::PolicyLookupFailed => self.end_defer(Reason::PolicyLookupFailed),
            Outcome::StarttlsNotOffered | Outcome::StarttlsRejected { .. } => {
                self.starttls_missing(tier)
            }
            Outcome::TlsAlert(TlsAlert::ProtocolVersion | TlsAlert::HandshakeFailure) => {
                self.definitive_refusal(tier, tier)
            }
            Outcome::TlsAlert(
                alert @ (TlsAlert::InsufficientSecurity | TlsAlert::InappropriateFallback),
            ) if tier == Tier::LegacyTls => self.peer_wants_stronger(alert),
            // The peer wants stronger suites than our strongest: legacy TLS cannot help, so skip it.
            Outcome::TlsAlert(TlsAlert::InsufficientSecurity) => {
                self.definitive_refusal(tier, Tier::LegacyTls)
            }
            Outcome::CertificateError(error) => self.certificate_error(tier, error),
            Outcome::TlsAlert(TlsAlert::InappropriateFallback | TlsAlert::Other)
            | Outcome::HandshakeTimeout
            | Outcome::ConnectionReset
            | Outcome::PostHandshakeFailure => self.transient(tier),
        }
    }

    fn delivered(&mut self, tier: Tier) -> Verdict {
        let memory = &mut self.state.memory;
        let mut facts = memory.facts();
        // A message whose sender waived TLS may have gone below what the peer proved: that
        // teaches the memory nothing about where the peer's next delivery starts.
        let teaches = facts.is_proof(self.context, tier);
        facts.record_success(self.policy, self.context, tier, self.now);
        memory.set_facts(facts);
        memory.transient_failures = 0;
        if tier >= Tier::ModernTls {
            // A peer that works at modern TLS or better needs no accommodation.
            memory.start_tier = None;
        } else if teaches && self.policy.profile.remembers_tiers() {
            memory.start_tier = Some(tier);
        }
        self.state.dance = None;
        (Action::Done, Reason::Delivered)
    }

    /// STARTTLS absent or refused. From a peer never seen doing TLS this is how the peer is (every
    /// MTA then continues in cleartext); from a peer seen doing TLS it is what a stripping attacker
    /// produces, so it counts only as transient evidence.
    fn starttls_missing(&mut self, tier: Tier) -> Verdict {
        if !tier.uses_tls() {
            return self.end_defer(Reason::InconsistentOutcome);
        }
        self.report.insert(TlsRptResult::StarttlsNotSupported);
        let cleartext_allowed = self.bounds.allows(Tier::Cleartext);
        let suspicious = self.state.memory.seen_tls && !honours_sender_relaxation(self.context);
        if suspicious {
            // Legacy TLS cannot help a peer without STARTTLS: the only step is to cleartext.
            let next = cleartext_allowed.then_some(Tier::Cleartext);
            return self.transient_towards(next, Reason::StarttlsMissingAfterTls);
        }
        if cleartext_allowed && self.state.memory.seen_tls {
            // The sender asked for delivery over anything (`TLS-Required: No`): go to cleartext
            // now, but do not let this one message teach the peer's memory to skip TLS.
            let delay = self.policy.step_down_delay_secs;
            return self.next_attempt(Tier::Cleartext, delay, Reason::SteppedDownNoStarttls);
        }
        if cleartext_allowed {
            return self.step_down(Tier::Cleartext, Reason::SteppedDownNoStarttls);
        }
        self.cannot_continue(Reason::TlsRequiredNotOffered)
    }

    /// A protocol or cipher alert: the peer says it cannot do `tier`, so step to the next tier
    /// below `below` (the refused tier itself, or legacy TLS when stepping to legacy cannot
    /// help). The alert comes before the handshake completes, unauthenticated: an on-path
    /// attacker forges it as easily as a reset. So it is definitive only down to the tier the
    /// peer proved by its last delivery; below that it is cheap evidence, counted across
    /// deliveries like a reset, and this delivery defers.
    fn definitive_refusal(&mut self, tier: Tier, below: Tier) -> Verdict {
        if !tier.uses_tls() {
            return self.end_defer(Reason::InconsistentOutcome);
        }
        self.report.insert(TlsRptResult::ValidationFailure);
        let Some(next) = self.bounds.next_below(below) else {
            return self.cannot_continue(Reason::NoTierLeft);
        };
        if !self.below_proven(next) {
            return self.step_down(next, Reason::SteppedDownAfterAlert);
        }
        if honours_sender_relaxation(self.context) {
            // The sender waived TLS for this message (as for the pin): step down for it, but
            // leave the memory as it was, so the next message starts where the peer proved.
            let delay = self.policy.step_down_delay_secs;
            return self.next_attempt(next, delay, Reason::SteppedDownAfterAlert);
        }
        self.transient_towards(Some(next), Reason::DowngradeAttackSuspected)
    }

    /// Whether `tier` is below what the peer proved by its last successful delivery.
    fn below_proven(&self, tier: Tier) -> bool {
        let proven = self.state.memory.facts().proven_tier();
        proven.is_some_and(|proven| tier < proven)
    }

    /// An `inappropriate_fallback` or `insufficient_security` alert at the legacy tier: the peer
    /// can do better than we offered, so try the top tier. If this delivery already tried it, an
    /// `inappropriate_fallback` means the failure that brought us down was most likely forged; an
    /// `insufficient_security` means no TLS we have suits the peer.
    fn peer_wants_stronger(&mut self, alert: TlsAlert) -> Verdict {
        self.state.memory.start_tier = None;
        self.state.memory.transient_failures = 0;
        if self.state.dance.is_some_and(|d| d.reached_top) {
            if alert == TlsAlert::InsufficientSecurity {
                return self.definitive_refusal(Tier::LegacyTls, Tier::LegacyTls);
            }
            self.report.insert(TlsRptResult::ValidationFailure);
            return self.end_defer(Reason::DowngradeAttackSuspected);
        }
        self.report.insert(TlsRptResult::ValidationFailure);
        self.state.memory.last_probe_at = self.now;
        self.next_attempt(self.bounds.top, 0, Reason::SteppedUpPeerWantsStronger)
    }

    fn certificate_error(&mut self, tier: Tier, error: CertificateError) -> Verdict {
        if tier != Tier::AuthenticatedTls {
            return self.end_defer(Reason::InconsistentOutcome);
        }
        self.report.insert(match error {
            CertificateError::Expired => TlsRptResult::CertificateExpired,
            CertificateError::Untrusted => TlsRptResult::CertificateNotTrusted,
            CertificateError::NameMismatch => TlsRptResult::CertificateHostMismatch,
            CertificateError::DaneMismatch => TlsRptResult::ValidationFailure,
        });
        // Not `sts-webpki-invalid` as well: RFC 8460 section 4.3.2.2 gives it to a policy
        // that could not be authenticated (the host's policy fetch reports it), not to an MX
        // certificate; a report counting both would tell the domain its policy server is broken.
        // Authenticated TLS is only attempted when the floor demands it: nothing to step down to.
        if self.context.requiretls {
            return self.end_bounce(Reason::RequiretlsUnsatisfiable);
        }
        self.end_defer(Reason::AuthenticationFailed)
    }

    /// A reset, timeout, post-handshake failure or an unclassified alert: an on-path attacker
    /// produces these for free, so they only step an unpinned peer down once repeated across
    /// attempts.
    fn transient(&mut self, tier: Tier) -> Verdict {
        if !tier.uses_tls() {
            return self.end_defer(Reason::TransientFailure);
        }
        self.report.insert(TlsRptResult::ValidationFailure);
        let next = self.bounds.next_below(tier);
        self.transient_towards(next, Reason::TransientFailure)
    }

    /// Counts one piece of cheap evidence against the current tier; once the policy's threshold
    /// is reached, steps down to `next`, or, when the floor forbids that, defers (saying so when
    /// it is the pin that forbids it).
    fn transient_towards(&mut self, next: Option<Tier>, waiting: Reason) -> Verdict {
        let memory = &mut self.state.memory;
        memory.transient_failures = memory.transient_failures.saturating_add(1);
        if memory.transient_failures < self.policy.transient_failure_threshold.max(1) {
            return self.end_defer(waiting);
        }
        match next {
            Some(next) => self.step_down(next, Reason::SteppedDownRepeatedFailures),
            None if self.bounds.pinned => self.end_defer(Reason::DowngradeRefusedPinned),
            None => self.end_defer(waiting),
        }
    }

    /// The floor stops the dance. REQUIRETLS bounces; a pin or the profile says why we defer.
    fn cannot_continue(&mut self, otherwise: Reason) -> Verdict {
        if self.context.requiretls {
            return self.end_bounce(Reason::RequiretlsUnsatisfiable);
        }
        if self.bounds.pinned {
            return self.end_defer(Reason::DowngradeRefusedPinned);
        }
        if matches!(self.policy.profile, Profile::NoFallback) {
            return self.end_defer(Reason::NoFallbackProfile);
        }
        self.end_defer(otherwise)
    }

    /// Steps down to `tier` after the policy's delay and remembers it for the next delivery.
    fn step_down(&mut self, tier: Tier, reason: Reason) -> Verdict {
        self.state.memory.transient_failures = 0;
        if self.policy.profile.remembers_tiers() {
            self.state.memory.start_tier = Some(tier);
        }
        self.next_attempt(tier, self.policy.step_down_delay_secs, reason)
    }

    fn next_attempt(&mut self, tier: Tier, delay_secs: u32, reason: Reason) -> Verdict {
        let top = self.bounds.top;
        let dance = self.state.dance.get_or_insert(Dance {
            tier,
            attempts: 0,
            reached_top: false,
        });
        if dance.attempts >= MAX_ATTEMPTS_PER_DELIVERY {
            return self.end_defer(Reason::AttemptLimit);
        }
        dance.attempts += 1;
        dance.tier = tier;
        dance.reached_top |= tier == top;
        (Action::attempt(tier, delay_secs, self.context), reason)
    }

    fn end_defer(&mut self, reason: Reason) -> Verdict {
        self.state.dance = None;
        let action = Action::Defer {
            retry_after_secs: self.policy.retry_after_secs,
        };
        (action, reason)
    }

    fn end_bounce(&mut self, reason: Reason) -> Verdict {
        self.state.dance = None;
        let action = Action::Bounce {
            status: EnhancedStatus::ENCRYPTION_NEEDED,
        };
        (action, reason)
    }
}
