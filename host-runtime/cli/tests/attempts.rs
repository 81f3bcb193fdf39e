use std::sync::OnceLock;

use policy_core::{CertificateError, Outcome, Tier, TlsAlert, TlsVersion, Verification};
use tlsfallback_mta::smtp::{self, AttemptResult, Message, Timeouts};
use tlsfallback_mta::tls::TrustAnchors;
use tlsfallback_testkit::peers::{Identity, LocalPeer, PeerKind};

pub(crate) fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| Identity::self_signed("mx.test").expect("a test certificate"))
}

fn attempt(
    peer: &LocalPeer,
    tier: Tier,
    verification: Verification,
    anchors: &TrustAnchors,
) -> AttemptResult {
    let to = vec!["rcpt@example.test".to_owned()];
    let message = Message {
        from: "sender@example.test",
        to: &to,
        data: b"Subject: hi\n\n.leading dot\nbody\n",
    };
    let tls = tier.parameters(verification);
    smtp::attempt(
        peer.address,
        "mx.test",
        "client.test",
        tls.as_ref(),
        anchors,
        Timeouts::default(),
        &message,
    )
}

fn plain(peer: &LocalPeer, tier: Tier) -> AttemptResult {
    attempt(peer, tier, Verification::None, &TrustAnchors::default())
}

#[test]
fn modern_tier_against_a_modern_peer_negotiates_tls_1_3_and_delivers_intact() {
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let result = plain(&peer, Tier::ModernTls);
    assert_eq!(
        result.outcome,
        Outcome::Success {
            version: Some(TlsVersion::Tls1_3)
        },
        "{}",
        result.detail
    );
    let messages = peer.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].tls.as_ref().unwrap().0, "TLSv1.3");
    assert_eq!(
        messages[0].data,
        b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"
    );
    assert_eq!(messages[0].to, ["rcpt@example.test"]);
}

#[test]
fn modern_tier_against_a_tls_1_0_peer_is_a_protocol_version_alert() {
    let peer = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let result = plain(&peer, Tier::ModernTls);
    assert_eq!(
        result.outcome,
        Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        "{}",
        result.detail
    );
    assert!(peer.messages().is_empty());
}

#[test]
fn legacy_tier_reaches_a_tls_1_0_peer_with_a_cbc_sha1_suite() {
    let peer = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let result = plain(&peer, Tier::LegacyTls);
    assert_eq!(
        result.outcome,
        Outcome::Success {
            version: Some(TlsVersion::Tls1_0)
        },
        "{}",
        result.detail
    );
    let (version, cipher) = peer.messages()[0].tls.clone().unwrap();
    assert_eq!(version, "TLSv1");
    assert!(
        cipher.contains("SHA") && !cipher.contains("GCM"),
        "{cipher}"
    );
}

#[test]
fn legacy_tier_against_a_modern_peer_is_refused_as_inappropriate_fallback() {
    // Our legacy offer caps at TLS 1.2 and carries the fallback SCSV (RFC 7507).
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let result = plain(&peer, Tier::LegacyTls);
    assert_eq!(
        result.outcome,
        Outcome::TlsAlert(TlsAlert::InappropriateFallback),
        "{}",
        result.detail
    );
}

#[test]
fn a_peer_without_starttls_and_one_answering_454_are_told_apart() {
    let none = LocalPeer::start(PeerKind::NoStarttls, identity()).unwrap();
    assert_eq!(
        plain(&none, Tier::ModernTls).outcome,
        Outcome::StarttlsNotOffered
    );
    let refusing = LocalPeer::start(PeerKind::Starttls454, identity()).unwrap();
    assert_eq!(
        plain(&refusing, Tier::ModernTls).outcome,
        Outcome::StarttlsRejected { code: 454 }
    );
    // Cleartext still works on both.
    assert_eq!(
        plain(&refusing, Tier::Cleartext).outcome,
        Outcome::Success { version: None }
    );
    assert_eq!(refusing.messages()[0].tls, None);
}

#[test]
fn a_reset_during_the_handshake_is_a_connection_reset() {
    let peer = LocalPeer::start(PeerKind::ResetInHandshake, identity()).unwrap();
    assert_eq!(
        plain(&peer, Tier::ModernTls).outcome,
        Outcome::ConnectionReset
    );
}

#[test]
fn a_closed_port_is_a_connect_failure() {
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let to = vec!["r@example.test".to_owned()];
    let message = Message {
        from: "s@example.test",
        to: &to,
        data: b"x\n",
    };
    let result = smtp::attempt(
        address,
        "mx.test",
        "c.test",
        None,
        &TrustAnchors::default(),
        Timeouts::default(),
        &message,
    );
    assert_eq!(result.outcome, Outcome::ConnectFailed);
}

#[test]
fn authenticated_tier_reports_certificate_errors_by_kind() {
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    // The system roots do not know our self-signed certificate.
    let untrusted = attempt(
        &peer,
        Tier::AuthenticatedTls,
        Verification::Webpki,
        &TrustAnchors::default(),
    );
    assert_eq!(
        untrusted.outcome,
        Outcome::CertificateError(CertificateError::Untrusted),
        "{}",
        untrusted.detail
    );
    // Trusted, but for another name.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, identity().certificate.to_pem().unwrap()).unwrap();
    let anchors = TrustAnchors {
        ca_file: Some(ca),
        ..TrustAnchors::default()
    };
    let to = vec!["r@example.test".to_owned()];
    let message = Message {
        from: "s@example.test",
        to: &to,
        data: b"x\n",
    };
    let params = Tier::AuthenticatedTls.parameters(Verification::Webpki);
    let wrong_name = smtp::attempt(
        peer.address,
        "other.test",
        "c.test",
        params.as_ref(),
        &anchors,
        Timeouts::default(),
        &message,
    );
    assert_eq!(
        wrong_name.outcome,
        Outcome::CertificateError(CertificateError::NameMismatch),
        "{}",
        wrong_name.detail
    );
    // Trusted and for the right name: delivered.
    let good = attempt(
        &peer,
        Tier::AuthenticatedTls,
        Verification::Webpki,
        &anchors,
    );
    assert!(
        matches!(good.outcome, Outcome::Success { .. }),
        "{}",
        good.detail
    );
}

/// A DANE-EE SPKI SHA-256 record ("3 1 1") for a certificate.
pub(crate) fn tlsa_3_1_1(certificate: &openssl::x509::X509) -> String {
    let spki = certificate
        .public_key()
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let digest: String = openssl::sha::sha256(&spki)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("3 1 1 {digest}")
}

#[test]
fn dane_ee_records_authenticate_a_self_signed_peer_and_a_mismatch_is_a_dane_error() {
    use tlsfallback_mta::tls::TlsaRecord;
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let good = TrustAnchors {
        tlsa: vec![TlsaRecord::parse(&tlsa_3_1_1(&identity().certificate)).unwrap()],
        ..TrustAnchors::default()
    };
    let result = attempt(&peer, Tier::AuthenticatedTls, Verification::Dane, &good);
    assert!(
        matches!(result.outcome, Outcome::Success { .. }),
        "{}",
        result.detail
    );
    let wrong = TrustAnchors {
        tlsa: vec![TlsaRecord::parse(&format!("3 1 1 {}", "ab".repeat(32))).unwrap()],
        ..TrustAnchors::default()
    };
    let result = attempt(&peer, Tier::AuthenticatedTls, Verification::Dane, &wrong);
    assert_eq!(
        result.outcome,
        Outcome::CertificateError(CertificateError::DaneMismatch),
        "{}",
        result.detail
    );
    // Without records there is nothing to verify with: a policy-input failure, not peer evidence.
    let none = attempt(
        &peer,
        Tier::AuthenticatedTls,
        Verification::Dane,
        &TrustAnchors::default(),
    );
    assert_eq!(none.outcome, Outcome::PolicyLookupFailed);
}

#[test]
fn tlsa_records_parse_strictly() {
    use tlsfallback_mta::tls::TlsaRecord;
    let record = TlsaRecord::parse("3 1 1 0A0b").unwrap();
    assert_eq!(
        (
            record.usage,
            record.selector,
            record.matching_type,
            record.data
        ),
        (3, 1, 1, vec![10, 11])
    );
    assert!(!TlsaRecord::parse("1 1 1 00").unwrap().usable_for_smtp());
    for bad in [
        "", "3 1 1", "4 1 1 00", "3 2 1 00", "3 1 3 00", "3 1 1 0", "3 1 1 zz",
    ] {
        assert!(TlsaRecord::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_smtp_client_refuses_a_command_with_crlf_before_connecting() {
    // The CLI refuses such names; the client holds the line for any other caller.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let to = vec!["r@example.test".to_owned()];
    let message = Message {
        from: "s@example.test",
        to: &to,
        data: b"x\n",
    };
    let result = smtp::attempt(
        address,
        "mx.test",
        "c.test\r\nMAIL FROM:<forged@example.test>",
        None,
        &TrustAnchors::default(),
        Timeouts::default(),
        &message,
    );
    assert_eq!(result.outcome, Outcome::ConnectFailed, "{}", result.detail);
    assert!(result.detail.contains("CR or LF"), "{}", result.detail);
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing connected"
    );
}

#[test]
fn tlsa_records_openssl_rejects_are_unusable_not_ca_verified() {
    use tlsfallback_mta::tls::{TlsaRecord, usable_tlsa_records};
    // DANE-EE SPKI SHA-256 with a 2-byte digest: the usage is fine, OpenSSL rejects the record.
    let rejected = TlsaRecord::parse("3 1 1 abcd").unwrap();
    let good = TlsaRecord::parse(&tlsa_3_1_1(&identity().certificate)).unwrap();
    let pkix =
        TlsaRecord::parse(&tlsa_3_1_1(&identity().certificate).replacen('3', "1", 1)).unwrap();
    assert_eq!(
        usable_tlsa_records(std::slice::from_ref(&rejected)).unwrap(),
        []
    );
    assert_eq!(
        usable_tlsa_records(&[pkix]).unwrap(),
        [],
        "PKIX-EE is not for SMTP"
    );
    assert_eq!(
        usable_tlsa_records(&[rejected.clone(), good.clone()]).unwrap(),
        [good]
    );
    // Asked to verify with DANE and handed only records OpenSSL cannot use, the handshake must
    // not fall to OpenSSL's CA verification (which would say `untrusted` here, or succeed for a
    // certificate from a public CA): it is a policy-input failure.
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let anchors = TrustAnchors {
        tlsa: vec![rejected],
        ..TrustAnchors::default()
    };
    let result = attempt(&peer, Tier::AuthenticatedTls, Verification::Dane, &anchors);
    assert_eq!(
        result.outcome,
        Outcome::PolicyLookupFailed,
        "{}",
        result.detail
    );
    assert!(peer.messages().is_empty());
}

/// Whether an outcome is one the engine takes as definitive about the peer's TLS.
fn definitive(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::TlsAlert(TlsAlert::ProtocolVersion | TlsAlert::HandshakeFailure)
    )
}

#[test]
fn bytes_after_starttls_220_are_not_a_protocol_version_alert() {
    let peer = LocalPeer::start(PeerKind::GarbageAfterStarttls, identity()).unwrap();
    for tier in [Tier::ModernTls, Tier::LegacyTls] {
        let result = plain(&peer, tier);
        // Seen in the 220's read it is an injection attempt (a reset); read by OpenSSL it is not
        // TLS (`other`): cheap either way, never a protocol-version alert.
        assert!(
            matches!(
                result.outcome,
                Outcome::ConnectionReset | Outcome::TlsAlert(TlsAlert::Other)
            ),
            "{tier:?}: {:?} {}",
            result.outcome,
            result.detail
        );
        assert!(!definitive(result.outcome));
    }
}

#[test]
fn text_in_a_later_read_than_the_220_is_not_a_protocol_version_alert() {
    // The bytes come only once the ClientHello is out: OpenSSL reads them as a record and says
    // "wrong version number", which must not stand for the peer's protocol_version alert.
    let peer = LocalPeer::start(PeerKind::TextAfterClientHello, identity()).unwrap();
    for tier in [Tier::ModernTls, Tier::LegacyTls] {
        let result = plain(&peer, tier);
        assert_eq!(
            result.outcome,
            Outcome::TlsAlert(TlsAlert::Other),
            "{tier:?}: {}",
            result.detail
        );
        assert!(
            result.detail.contains("wrong version number"),
            "{}",
            result.detail
        );
    }
}

#[test]
fn only_alerts_the_peer_sent_are_definitive_in_openssl_reason_codes() {
    use tlsfallback_mta::tls::outcome_for_reasons;
    // Received alerts: 1000 + the alert number.
    assert_eq!(
        outcome_for_reasons(&[1070]),
        Some(Outcome::TlsAlert(TlsAlert::ProtocolVersion))
    );
    assert_eq!(
        outcome_for_reasons(&[1040]),
        Some(Outcome::TlsAlert(TlsAlert::HandshakeFailure))
    );
    // Record-layer complaints about bytes that are not TLS, and local failures: not alerts.
    // wrong version number, packet length too long, record layer failure, http request,
    // unexpected record, no protocols available.
    for reason in [267, 198, 313, 156, 245, 191] {
        assert_eq!(outcome_for_reasons(&[reason]), None, "reason {reason}");
    }
}

#[test]
fn a_dribbled_banner_is_cut_off_by_the_stage_limit_too() {
    let peer = LocalPeer::start(PeerKind::DribblingGreeting, identity()).unwrap();
    let to = vec!["r@example.test".to_owned()];
    let message = Message {
        from: "s@example.test",
        to: &to,
        data: b"x\n",
    };
    let timeouts = Timeouts {
        greeting: std::time::Duration::from_millis(500),
        ..Timeouts::default()
    };
    let result = smtp::attempt(
        peer.address,
        "mx.test",
        "c.test",
        None,
        &TrustAnchors::default(),
        timeouts,
        &message,
    );
    assert_eq!(
        result.outcome,
        Outcome::HandshakeTimeout,
        "{}",
        result.detail
    );
    assert!(
        result
            .detail
            .contains("the greeting stage ran past its 500ms limit"),
        "{}",
        result.detail
    );
}
