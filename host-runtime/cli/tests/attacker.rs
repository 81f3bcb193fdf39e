//! The test attacker itself: each attack does to one real attempt what it says.

use policy_core::{Outcome, Tier, TlsAlert, Verification};
use tlsfallback_mta::smtp::{self, AttemptResult, Message, Timeouts};
use tlsfallback_mta::tls::TrustAnchors;
use tlsfallback_testkit::attacker::{
    Attack, AttackProxy, Delay, HandshakeStep, InjectTiming, Injection, Strip, alert,
};
use tlsfallback_testkit::peers::{LocalPeer, PeerKind};

use crate::attempts::identity;

/// One attempt at `tier` through a proxy carrying out `attack` in front of a `kind` peer.
fn through(attack: Attack, kind: PeerKind, tier: Tier) -> (AttemptResult, usize) {
    let peer = LocalPeer::start(kind, identity()).unwrap();
    let proxy = AttackProxy::start(peer.address, attack).unwrap();
    let to = vec!["b@example.test".to_owned()];
    let message = Message {
        from: "a@example.test",
        to: &to,
        data: b"Subject: attacked\n\nbody\n",
    };
    let result = smtp::attempt(
        proxy.address,
        "mx.test",
        "client.test",
        tier.parameters(Verification::None).as_ref(),
        &TrustAnchors::default(),
        Timeouts::default(),
        &message,
    );
    (result, proxy.fired())
}

fn outcome(attack: Attack) -> Outcome {
    let (result, fired) = through(attack, PeerKind::Modern, Tier::ModernTls);
    assert_eq!(fired, 1, "{attack:?} did not fire: {}", result.detail);
    result.outcome
}

#[test]
fn the_attacker_refuses_an_upstream_off_this_machine() {
    let error = AttackProxy::start("192.0.2.1:25".parse().unwrap(), Attack::PassThrough)
        .err()
        .expect("refused");
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
}

#[test]
fn passing_through_changes_nothing_and_the_attack_can_start_later() {
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let proxy = AttackProxy::start(peer.address, Attack::PassThrough).unwrap();
    let to = vec!["b@example.test".to_owned()];
    let message = Message {
        from: "a@example.test",
        to: &to,
        data: b"Subject: x\n\n.dot\n",
    };
    let attempt = || {
        smtp::attempt(
            proxy.address,
            "mx.test",
            "client.test",
            Tier::ModernTls.parameters(Verification::None).as_ref(),
            &TrustAnchors::default(),
            Timeouts::default(),
            &message,
        )
        .outcome
    };
    assert!(matches!(attempt(), Outcome::Success { .. }));
    assert_eq!(peer.messages()[0].data, b"Subject: x\r\n\r\n.dot\r\n");
    proxy.set_attack(Attack::StripStarttls(Strip::RemoveFromEhlo));
    assert_eq!(attempt(), Outcome::StarttlsNotOffered);
    assert_eq!((proxy.connections(), proxy.fired()), (2, 1));
}

#[test]
fn stripping_removes_starttls_or_answers_it_in_the_peers_place() {
    assert_eq!(
        outcome(Attack::StripStarttls(Strip::RemoveFromEhlo)),
        Outcome::StarttlsNotOffered
    );
    assert_eq!(
        outcome(Attack::StripStarttls(Strip::Answer454)),
        Outcome::StarttlsRejected { code: 454 }
    );
    assert_eq!(
        outcome(Attack::StripStarttls(Strip::Answer502)),
        Outcome::StarttlsRejected { code: 502 }
    );
}

#[test]
fn each_forged_alert_reaches_the_client_as_the_alert_it_is() {
    for (code, expected) in [
        (alert::PROTOCOL_VERSION, TlsAlert::ProtocolVersion),
        (alert::HANDSHAKE_FAILURE, TlsAlert::HandshakeFailure),
        (alert::INSUFFICIENT_SECURITY, TlsAlert::InsufficientSecurity),
        (
            alert::INAPPROPRIATE_FALLBACK,
            TlsAlert::InappropriateFallback,
        ),
        (alert::INTERNAL_ERROR, TlsAlert::Other),
    ] {
        assert_eq!(
            outcome(Attack::ForgeAlert(code)),
            Outcome::TlsAlert(expected),
            "alert {code}"
        );
    }
    // At the legacy tier too: the alert record follows the client's record version.
    let (result, _) = through(
        Attack::ForgeAlert(alert::PROTOCOL_VERSION),
        PeerKind::LegacyOnly,
        Tier::LegacyTls,
    );
    assert_eq!(
        result.outcome,
        Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        "{}",
        result.detail
    );
}

#[test]
fn bytes_with_the_220_are_seen_before_the_handshake() {
    let (result, fired) = through(
        Attack::InjectAfter220 {
            payload: Injection::Garbage,
            timing: InjectTiming::WithThe220,
        },
        PeerKind::Modern,
        Tier::ModernTls,
    );
    assert_eq!(fired, 1);
    assert!(
        result.detail.contains("data after the 220"),
        "{}",
        result.detail
    );
}

#[test]
fn resets_at_each_step_end_the_attempt_without_a_delivery() {
    for step in HandshakeStep::ALL {
        let outcome = outcome(Attack::ResetAt(step));
        assert!(!matches!(outcome, Outcome::Success { .. }), "{step:?}");
        if step == HandshakeStep::AfterFinished {
            assert_eq!(outcome, Outcome::PostHandshakeFailure, "{step:?}");
        }
    }
}

#[test]
fn delays_slow_the_handshake_but_it_succeeds_and_corruption_fails_it() {
    for delay in [
        Delay::Stall(std::time::Duration::from_millis(300)),
        Delay::Dribble {
            chunk: 64,
            pause: std::time::Duration::from_millis(1),
        },
    ] {
        assert!(matches!(
            outcome(Attack::Delay(delay)),
            Outcome::Success { .. }
        ));
    }
    assert!(!matches!(
        outcome(Attack::CorruptRecords),
        Outcome::Success { .. }
    ));
}
