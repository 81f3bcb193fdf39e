//! What successful deliveries proved about a peer: the facts the pin and the proven tier rest on.
//!
//! One rule for both places these facts are kept: the engine's own history ([`PeerMemory`] holds
//! the same four fields) and the record a host keeps itself, beside whatever history a policy
//! plugin returns, so that no plugin's history can lower the floor the host holds it to.

use crate::UnixSeconds;
use crate::context::DeliveryContext;
use crate::floor::honours_sender_relaxation;
use crate::history::PeerMemory;
use crate::outcome::{AttemptReport, Outcome};
use crate::policy::Policy;
use crate::tier::Tier;

/// What successful deliveries proved about a peer.
///
/// Only successes change it ([`record_success`](Self::record_success)): a failure before the
/// handshake completes (an alert, a reset, a missing STARTTLS) is unauthenticated, anyone on the
/// path can produce it, so it proves nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerFacts {
    /// The tier of the last successful delivery. A delivery whose sender waived TLS
    /// (`TLS-Required: No`) and that went below the proven tier leaves it as it was: the sender's
    /// waiver says nothing about what the peer can do.
    pub last_success_tier: Option<Tier>,
    /// When the last successful delivery happened, in seconds since the Unix epoch (0: never).
    pub last_success_at: UnixSeconds,
    /// Whether the peer was ever seen completing a delivery over TLS.
    pub seen_tls: bool,
    /// Until when (seconds since the Unix epoch) cleartext and legacy TLS are refused for this
    /// peer (0: not pinned). Set by a success at modern TLS or better, for the policy's
    /// `pin_duration_secs`; never shortened.
    pub pinned_until: UnixSeconds,
}

impl PeerFacts {
    /// The tier this peer proved it can do: the tier of its last successful delivery, when that
    /// used TLS. Unauthenticated evidence does not take one delivery below it (`docs/policy.md`,
    /// section 4).
    #[must_use]
    pub fn proven_tier(&self) -> Option<Tier> {
        self.last_success_tier.filter(|tier| tier.uses_tls())
    }

    /// Whether a success at `tier` shows what the peer can do: not when the sender waived TLS
    /// for the message and the delivery went below the proven tier (the waiver, not the peer,
    /// took it there).
    #[must_use]
    pub fn is_proof(&self, context: &DeliveryContext, tier: Tier) -> bool {
        let waived_below = honours_sender_relaxation(context)
            && self.proven_tier().is_some_and(|proven| tier < proven);
        !waived_below
    }

    /// Records a successful delivery at `tier`: the last success, TLS seen, and at modern TLS or
    /// better the pin, renewed to `now + policy.pin_duration_secs` (0: no pin).
    pub fn record_success(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        tier: Tier,
        now: UnixSeconds,
    ) {
        if self.is_proof(context, tier) {
            self.last_success_tier = Some(tier);
        }
        self.last_success_at = now;
        if tier.uses_tls() {
            self.seen_tls = true;
        }
        if tier >= Tier::ModernTls && policy.pin_duration_secs > 0 {
            let until = now.saturating_add(u64::from(policy.pin_duration_secs));
            self.pinned_until = self.pinned_until.max(until);
        }
    }

    /// Records what `report` proves: a success as [`record_success`](Self::record_success);
    /// any other outcome proves nothing.
    pub fn observe(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        report: &AttemptReport,
        now: UnixSeconds,
    ) {
        if let Outcome::Success { .. } = report.outcome {
            self.record_success(policy, context, report.tier, now);
        }
    }
}

impl PeerMemory {
    /// The facts this memory holds.
    #[must_use]
    pub const fn facts(&self) -> PeerFacts {
        PeerFacts {
            last_success_tier: self.last_success_tier,
            last_success_at: self.last_success_at,
            seen_tls: self.seen_tls,
            pinned_until: self.pinned_until,
        }
    }

    /// Replaces the facts this memory holds.
    pub const fn set_facts(&mut self, facts: PeerFacts) {
        self.last_success_tier = facts.last_success_tier;
        self.last_success_at = facts.last_success_at;
        self.seen_tls = facts.seen_tls;
        self.pinned_until = facts.pinned_until;
    }
}
