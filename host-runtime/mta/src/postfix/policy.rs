//! The engine's decision, written as the Postfix TLS policy (`smtp_tls_policy_maps` result) that
//! carries it out.
//!
//! Every TLS tier is answered with a *mandatory* level (`encrypt`, `secure`, `dane-only`), never
//! `may`: with `may`, "when opportunistic TLS handshakes fail, Postfix retries the connection
//! with TLS disabled" (postconf(5)), which would send in cleartext below the engine's floor and
//! out of its sight. A failed attempt is deferred by Postfix instead, the daemon learns the
//! outcome from the log, and Postfix's retry gets the engine's next tier.

use policy_core::{Action, CipherPolicy, Decision, TlsParameters, TlsVersion, Verification};

use super::socketmap::Reply;

/// The `main.cf` grade `ciphers=low` stands for, lowered to OpenSSL security level 0 so that
/// TLS 1.0 and SHA-1 suites are possible at all with OpenSSL 3 (`postfix config` prints it).
pub const LOW_CIPHERLIST: &str = "aNULL:-aNULL:HIGH:MEDIUM:LOW:@STRENGTH:@SECLEVEL=0";

/// The TLS policy text for an attempt with `tls` (`None`: cleartext).
#[must_use]
pub fn tls_policy(tls: Option<&TlsParameters>) -> String {
    let Some(tls) = tls else {
        return "none".to_owned();
    };
    let level = match tls.verification {
        Verification::Dane => "dane-only",
        Verification::Webpki => "secure",
        Verification::None => "encrypt",
    };
    let grade = match tls.ciphers {
        CipherPolicy::Strong => "high",
        CipherPolicy::LegacyCompatible => "low",
    };
    // Attribute values may not hold spaces or commas: ranges are joined with a colon.
    let protocols = if tls.max_version == TlsVersion::Tls1_3 {
        format!(">={}", tls.min_version.name())
    } else {
        format!(">={}:<={}", tls.min_version.name(), tls.max_version.name())
    };
    format!("{level} protocols={protocols} ciphers={grade}")
}

/// The reply to a lookup, for a decision taken when a delivery starts (or continues).
#[must_use]
pub fn reply_for(decision: &Decision) -> Reply {
    match decision.action {
        Action::Attempt { tls, .. } => Reply::Found(tls_policy(tls.as_ref())),
        // Postfix has no "defer" policy; a temporary lookup failure makes it defer the delivery.
        Action::Defer { retry_after_secs } => Reply::Temp(format!(
            "tlsfallback defers this destination ({}); retry in {retry_after_secs} s",
            decision.reason.name()
        )),
        // A policy table cannot bounce: defer, and say why in Postfix's log.
        Action::Bounce { status } => Reply::Temp(format!(
            "tlsfallback would bounce ({status}, {})",
            decision.reason.name()
        )),
        Action::Done => Reply::Temp("tlsfallback: no attempt to make".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy_core::Tier;

    #[test]
    fn each_tier_maps_to_a_mandatory_level() {
        let context = policy_core::DeliveryContext::default();
        let none = policy_core::verification_for(&context);
        let line = |tier: Tier, v| tls_policy(tier.parameters(v).as_ref());
        assert_eq!(
            line(Tier::ModernTls, none),
            "encrypt protocols=>=TLSv1.2 ciphers=high"
        );
        assert_eq!(
            line(Tier::LegacyTls, none),
            "encrypt protocols=>=TLSv1:<=TLSv1.2 ciphers=low"
        );
        assert_eq!(line(Tier::Cleartext, none), "none");
        assert!(line(Tier::AuthenticatedTls, Verification::Webpki).starts_with("secure "));
        assert!(line(Tier::AuthenticatedTls, Verification::Dane).starts_with("dane-only "));
    }
}
