use policy_core::{
    Action, Dane, DeliveryContext, EnhancedStatus, MtaSts, Outcome, Policy, Profile, Reason, Tier,
    TlsRptResult, Verification,
};

use crate::harness::{self, Peer, is_defer, legacy_only, modern, no_starttls};

fn context(edit: impl FnOnce(&mut DeliveryContext)) -> DeliveryContext {
    let mut context = DeliveryContext::default();
    edit(&mut context);
    context
}

fn profile(profile: Profile) -> Policy {
    Policy {
        profile,
        ..Policy::default()
    }
}

fn verification_of(decision: &policy_core::Decision) -> Option<Verification> {
    match decision.action {
        Action::Attempt { tls, .. } => tls.map(|t| t.verification),
        _ => None,
    }
}

#[test]
fn usable_dane_requires_authenticated_tls_verified_by_dane_and_never_lower() {
    let mut peer = Peer::with(Policy::default(), context(|c| c.dane = Dane::Usable));
    let delivery = peer.deliver(legacy_only);
    assert_eq!(delivery.tiers(), [Tier::AuthenticatedTls]);
    assert_eq!(
        verification_of(&delivery.decisions[0]),
        Some(Verification::Dane)
    );
    assert!(is_defer(delivery.last()));
    assert_eq!(delivery.last().reason, Reason::NoTierLeft);
}

#[test]
fn unusable_dane_requires_tls_but_allows_legacy_and_never_cleartext() {
    let mut peer = Peer::with(Policy::default(), context(|c| c.dane = Dane::Unusable));
    assert_eq!(
        peer.deliver(legacy_only).tiers(),
        [Tier::ModernTls, Tier::LegacyTls]
    );
    let mut peer = Peer::with(Policy::default(), context(|c| c.dane = Dane::Unusable));
    let delivery = peer.deliver(no_starttls);
    assert_eq!(delivery.tiers(), [Tier::ModernTls]);
    assert_eq!(delivery.last().reason, Reason::TlsRequiredNotOffered);
}

#[test]
fn failed_tlsa_lookup_defers_before_any_attempt() {
    let mut peer = Peer::with(Policy::default(), context(|c| c.dane = Dane::LookupFailed));
    let delivery = peer.deliver(modern);
    assert!(delivery.tiers().is_empty());
    assert_eq!(delivery.last().reason, Reason::DaneLookupFailed);
    assert!(delivery.last().report.contains(TlsRptResult::DnssecInvalid));
}

#[test]
fn mta_sts_enforce_requires_webpki_authenticated_tls_and_reports_the_mx_certificate_failure() {
    let mut peer = Peer::with(Policy::default(), context(|c| c.mta_sts = MtaSts::Enforce));
    let delivery =
        peer.deliver(|_| Outcome::CertificateError(policy_core::CertificateError::NameMismatch));
    assert_eq!(delivery.tiers(), [Tier::AuthenticatedTls]);
    assert_eq!(
        verification_of(&delivery.decisions[0]),
        Some(Verification::Webpki)
    );
    assert_eq!(delivery.last().reason, Reason::AuthenticationFailed);
    let report = delivery.last().report;
    assert!(report.contains(TlsRptResult::CertificateHostMismatch));
    // sts-webpki-invalid is about the policy's own HTTPS certificate (RFC 8460 4.3.2.2): an MX
    // certificate failure reported as both would blame the policy server.
    assert!(!report.contains(TlsRptResult::StsWebpkiInvalid));
}

#[test]
fn mta_sts_testing_only_reports_and_fetch_failure_reports_the_fetch_error() {
    let mut peer = Peer::with(Policy::default(), context(|c| c.mta_sts = MtaSts::Testing));
    assert_eq!(
        peer.deliver(no_starttls).tiers(),
        [Tier::ModernTls, Tier::Cleartext]
    );
    let mut peer = Peer::with(
        Policy::default(),
        context(|c| c.mta_sts = MtaSts::FetchFailed),
    );
    let delivery = peer.deliver(modern);
    assert_eq!(delivery.tiers(), [Tier::ModernTls]);
    assert!(
        delivery.decisions[0]
            .report
            .contains(TlsRptResult::StsPolicyFetchError)
    );
}

#[test]
fn requiretls_bounces_with_5_7_10_when_the_peer_cannot_authenticate() {
    let mut peer = Peer::with(Policy::default(), context(|c| c.requiretls = true));
    let delivery = peer.deliver(no_starttls);
    assert_eq!(delivery.tiers(), [Tier::AuthenticatedTls]);
    assert_eq!(
        delivery.last().action,
        Action::Bounce {
            status: EnhancedStatus::ENCRYPTION_NEEDED
        }
    );
    assert_eq!(EnhancedStatus::ENCRYPTION_NEEDED.to_string(), "5.7.10");
    assert_eq!(delivery.last().reason, Reason::RequiretlsUnsatisfiable);
    // A connection failure is not evidence either way: defer, do not bounce.
    let mut peer = Peer::with(Policy::default(), context(|c| c.requiretls = true));
    assert!(is_defer(peer.deliver(|_| Outcome::ConnectFailed).last()));
}

#[test]
fn requiretls_wins_over_tls_required_no() {
    let both = context(|c| {
        c.requiretls = true;
        c.tls_required_no = true;
        c.dane = Dane::Usable;
    });
    let mut peer = Peer::with(Policy::default(), both);
    let delivery = peer.deliver(modern);
    assert_eq!(delivery.tiers(), [Tier::AuthenticatedTls]);
    assert_eq!(
        verification_of(&delivery.decisions[0]),
        Some(Verification::Dane)
    );
}

#[test]
fn tls_required_no_ignores_dane_mta_sts_and_the_pin() {
    let relaxed = context(|c| {
        c.tls_required_no = true;
        c.dane = Dane::Usable;
        c.mta_sts = MtaSts::Enforce;
    });
    let mut peer = Peer::with(Policy::default(), relaxed);
    assert_eq!(peer.deliver(modern).tiers(), [Tier::ModernTls]);
    peer.advance(3600);
    // Pinned by that success, yet the sender asked for delivery over anything.
    assert_eq!(
        peer.deliver(no_starttls).tiers(),
        [Tier::ModernTls, Tier::Cleartext]
    );
}

#[test]
fn tls_required_no_does_not_override_the_operator_profile() {
    let relaxed = context(|c| c.tls_required_no = true);
    let mut peer = Peer::with(profile(Profile::Mandatory), relaxed);
    let delivery = peer.deliver(no_starttls);
    assert_eq!(delivery.tiers(), [Tier::ModernTls]);
    assert!(is_defer(delivery.last()));
}

#[test]
fn sasl_credentials_are_never_sent_in_cleartext() {
    let mut peer = Peer::with(Policy::default(), context(|c| c.sasl = true));
    let delivery = peer.deliver(no_starttls);
    assert_eq!(delivery.tiers(), [Tier::ModernTls]);
    assert_eq!(delivery.last().reason, Reason::TlsRequiredNotOffered);
    let mut peer = Peer::with(Policy::default(), context(|c| c.sasl = true));
    assert_eq!(
        peer.deliver(legacy_only).tiers(),
        [Tier::ModernTls, Tier::LegacyTls]
    );
}

#[test]
fn mandatory_profile_dances_through_tls_but_never_to_cleartext() {
    let mut peer = Peer::with(profile(Profile::Mandatory), DeliveryContext::default());
    assert_eq!(
        peer.deliver(legacy_only).tiers(),
        [Tier::ModernTls, Tier::LegacyTls]
    );
    peer.advance(3600);
    assert_eq!(
        peer.deliver(legacy_only).tiers(),
        [Tier::LegacyTls],
        "with memory"
    );
    let mut peer = Peer::with(profile(Profile::Mandatory), DeliveryContext::default());
    let delivery = peer.deliver(|tier| match tier {
        Tier::Cleartext => harness::CLEAR_OK,
        _ => Outcome::TlsAlert(policy_core::TlsAlert::HandshakeFailure),
    });
    assert_eq!(delivery.tiers(), [Tier::ModernTls, Tier::LegacyTls]);
    assert_eq!(delivery.last().reason, Reason::NoTierLeft);
}

#[test]
fn authenticated_only_profile_verifies_with_webpki_and_never_falls_back() {
    let mut peer = Peer::with(
        profile(Profile::AuthenticatedOnly),
        DeliveryContext::default(),
    );
    let delivery = peer.deliver(legacy_only);
    assert_eq!(delivery.tiers(), [Tier::AuthenticatedTls]);
    assert_eq!(
        verification_of(&delivery.decisions[0]),
        Some(Verification::Webpki)
    );
    assert!(is_defer(delivery.last()));
}

#[test]
fn no_fallback_profile_tries_one_tier_only() {
    let mut peer = Peer::with(profile(Profile::NoFallback), DeliveryContext::default());
    let delivery = peer.deliver(legacy_only);
    assert_eq!(delivery.tiers(), [Tier::ModernTls]);
    assert_eq!(delivery.last().reason, Reason::NoFallbackProfile);
    let delivery = peer.deliver(no_starttls);
    assert_eq!(delivery.last().reason, Reason::NoFallbackProfile);
}

#[test]
fn browser_style_falls_back_versions_within_a_delivery_but_remembers_nothing() {
    let mut peer = Peer::with(profile(Profile::BrowserStyle), DeliveryContext::default());
    for _ in 0..3 {
        assert_eq!(
            peer.deliver(legacy_only).tiers(),
            [Tier::ModernTls, Tier::LegacyTls]
        );
        peer.advance(3600);
    }
    let delivery = peer.deliver(no_starttls);
    assert!(is_defer(delivery.last()), "never cleartext");
}

#[test]
fn legacy_tier_can_be_switched_off() {
    let policy = Policy {
        allow_legacy_tls: false,
        ..Policy::default()
    };
    let mut peer = Peer::with(policy, DeliveryContext::default());
    assert_eq!(
        peer.deliver(legacy_only).tiers(),
        [Tier::ModernTls, Tier::Cleartext]
    );
}

#[test]
fn cleartext_can_be_switched_off() {
    let policy = Policy {
        allow_cleartext: false,
        ..Policy::default()
    };
    let mut peer = Peer::with(policy, DeliveryContext::default());
    assert!(is_defer(peer.deliver(no_starttls).last()));
}
