use policy_core::{
    Action, AttemptReport, Decision, DeliveryContext, HistoryBlob, Outcome, Policy, Tier,
    UnixSeconds, decide,
};

/// A peer under test: the engine's history for it, and a clock the test advances.
pub(crate) struct Peer {
    pub(crate) now: UnixSeconds,
    pub(crate) policy: Policy,
    pub(crate) context: DeliveryContext,
    pub(crate) history: Option<HistoryBlob>,
}

/// One delivery: every decision, and the outcome the peer gave for each attempt.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) decisions: Vec<Decision>,
    pub(crate) attempts: Vec<(Tier, u32, Outcome)>,
}

impl Delivery {
    pub(crate) fn last(&self) -> &Decision {
        self.decisions.last().expect("a delivery has decisions")
    }

    pub(crate) fn tiers(&self) -> Vec<Tier> {
        self.attempts.iter().map(|(tier, _, _)| *tier).collect()
    }

    pub(crate) fn reasons(&self) -> Vec<&'static str> {
        self.decisions.iter().map(|d| d.reason.name()).collect()
    }
}

pub(crate) const START: UnixSeconds = 1_767_225_600; // 2026-01-01
pub(crate) const DAY: u64 = 86_400;

impl Peer {
    pub(crate) fn new() -> Self {
        Self::with(Policy::default(), DeliveryContext::default())
    }

    pub(crate) fn with(policy: Policy, context: DeliveryContext) -> Self {
        Self {
            now: START,
            policy,
            context,
            history: None,
        }
    }

    pub(crate) fn advance(&mut self, secs: u64) -> &mut Self {
        self.now += secs;
        self
    }

    pub(crate) fn decide(&mut self, last: Option<AttemptReport>) -> Decision {
        let decision = decide(
            &self.policy,
            &self.context,
            self.history.as_ref().map(HistoryBlob::as_bytes),
            last.as_ref(),
            self.now,
        );
        self.history = Some(decision.history);
        decision
    }

    /// Runs one delivery to its end; `respond` gives the peer's outcome at a tier.
    pub(crate) fn deliver(&mut self, mut respond: impl FnMut(Tier) -> Outcome) -> Delivery {
        let mut delivery = Delivery {
            decisions: Vec::new(),
            attempts: Vec::new(),
        };
        let mut last = None;
        for _ in 0..=policy_core::MAX_ATTEMPTS_PER_DELIVERY {
            let decision = self.decide(last);
            delivery.decisions.push(decision);
            let Action::Attempt {
                tier, delay_secs, ..
            } = decision.action
            else {
                return delivery;
            };
            self.now += u64::from(delay_secs);
            let outcome = respond(tier);
            delivery.attempts.push((tier, delay_secs, outcome));
            self.now += 1;
            last = Some(AttemptReport { tier, outcome });
        }
        panic!("the delivery did not end within the attempt limit: {delivery:#?}");
    }
}

pub(crate) fn ok(version: policy_core::TlsVersion) -> Outcome {
    Outcome::Success {
        version: Some(version),
    }
}

pub(crate) const CLEAR_OK: Outcome = Outcome::Success { version: None };

/// A peer that does TLS 1.3 at every TLS tier (our capped legacy offer gets inappropriate_fallback).
pub(crate) fn modern(tier: Tier) -> Outcome {
    match tier {
        Tier::AuthenticatedTls | Tier::ModernTls => ok(policy_core::TlsVersion::Tls1_3),
        Tier::LegacyTls => Outcome::TlsAlert(policy_core::TlsAlert::InappropriateFallback),
        Tier::Cleartext => CLEAR_OK,
    }
}

/// A peer that only does TLS 1.0.
pub(crate) fn legacy_only(tier: Tier) -> Outcome {
    match tier {
        Tier::AuthenticatedTls | Tier::ModernTls => {
            Outcome::TlsAlert(policy_core::TlsAlert::ProtocolVersion)
        }
        Tier::LegacyTls => ok(policy_core::TlsVersion::Tls1_0),
        Tier::Cleartext => CLEAR_OK,
    }
}

/// A peer without STARTTLS (or behind a stripping attacker).
pub(crate) fn no_starttls(tier: Tier) -> Outcome {
    if tier.uses_tls() {
        Outcome::StarttlsNotOffered
    } else {
        CLEAR_OK
    }
}

pub(crate) fn is_defer(decision: &Decision) -> bool {
    matches!(decision.action, Action::Defer { .. })
}
