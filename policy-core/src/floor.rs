//! The floor: the weakest tier a delivery may use, from the policy, the context and the pin.

use crate::UnixSeconds;
use crate::context::{Dane, DeliveryContext, MtaSts};
use crate::history::PeerMemory;
use crate::policy::{Policy, Profile};
use crate::tier::{Tier, Verification};

/// The range of tiers one delivery may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The strongest tier to try: authenticated TLS when the floor demands it, modern TLS
    /// otherwise (opportunistic deliveries do not verify certificates, RFC 7435).
    pub top: Tier,
    /// The weakest tier allowed. No decision ever attempts a weaker one.
    pub floor: Tier,
    /// Whether the legacy tier may be attempted.
    pub legacy_allowed: bool,
    /// Whether the peer's pin raised the floor above where it would otherwise be.
    pub pinned: bool,
}

impl Bounds {
    /// Whether `tier` may be attempted.
    #[must_use]
    pub fn allows(&self, tier: Tier) -> bool {
        tier >= self.floor && tier <= self.top && (tier != Tier::LegacyTls || self.legacy_allowed)
    }

    /// The next weaker tier that may be attempted after `tier`, if any.
    #[must_use]
    pub fn next_below(&self, tier: Tier) -> Option<Tier> {
        let mut candidate = tier.weaker();
        while let Some(next) = candidate {
            if next < self.floor {
                return None;
            }
            if self.allows(next) {
                return Some(next);
            }
            candidate = next.weaker();
        }
        None
    }
}

/// Whether DANE and MTA-STS apply to this delivery (`TLS-Required: No` switches them off unless
/// the message also asked for REQUIRETLS, which wins: RFC 8689 section 5).
pub(crate) const fn honours_sender_relaxation(context: &DeliveryContext) -> bool {
    context.tls_required_no && !context.requiretls
}

/// How the authenticated tier verifies the peer: DANE when usable TLSA records apply, WebPKI
/// otherwise (MTA-STS, REQUIRETLS, the authenticated-only profile).
#[must_use]
pub const fn verification_for(context: &DeliveryContext) -> Verification {
    if matches!(context.dane, Dane::Usable) && !honours_sender_relaxation(context) {
        Verification::Dane
    } else {
        Verification::Webpki
    }
}

/// Computes the tiers one delivery may use.
///
/// The floor is the strongest of: the profile's floor; legacy TLS when cleartext is disallowed or
/// SASL credentials will be sent; authenticated TLS for usable DANE, MTA-STS `enforce` and
/// REQUIRETLS; legacy TLS ("TLS required") for DANE with only unusable records; modern TLS while
/// the peer is pinned. `TLS-Required: No` removes the DANE, MTA-STS and pin contributions.
#[must_use]
pub fn floor(
    policy: &Policy,
    context: &DeliveryContext,
    memory: &PeerMemory,
    now: UnixSeconds,
) -> Bounds {
    let relaxed = honours_sender_relaxation(context);
    let mut floor = match policy.profile {
        Profile::Opportunistic => Tier::Cleartext,
        Profile::Mandatory | Profile::BrowserStyle => Tier::LegacyTls,
        Profile::AuthenticatedOnly => Tier::AuthenticatedTls,
        // Raised to the top tier below, once the top is known.
        Profile::NoFallback => Tier::Cleartext,
    };
    if !policy.allow_cleartext || context.sasl {
        floor = floor.max(Tier::LegacyTls);
    }
    if context.requiretls {
        floor = Tier::AuthenticatedTls;
    }
    if !relaxed {
        match context.dane {
            Dane::Usable => floor = Tier::AuthenticatedTls,
            Dane::Unusable => floor = floor.max(Tier::LegacyTls),
            Dane::None | Dane::LookupFailed => {}
        }
        if matches!(context.mta_sts, MtaSts::Enforce) {
            floor = Tier::AuthenticatedTls;
        }
    }
    let top = if floor == Tier::AuthenticatedTls {
        Tier::AuthenticatedTls
    } else {
        Tier::ModernTls
    };
    if matches!(policy.profile, Profile::NoFallback) {
        floor = top;
    }
    let pinned = !relaxed && memory.pinned_until > now && floor < Tier::ModernTls;
    if pinned {
        floor = Tier::ModernTls;
    }
    Bounds {
        top,
        floor,
        legacy_allowed: policy.allow_legacy_tls,
        pinned,
    }
}
