//! The host's resolver against the DNSSEC rig: validating itself (against the rig's root key,
//! through the rig's front to NSD) and trusting unbound's AD bit; MX, addresses, TLSA and TXT,
//! and the DANE state each MX host gets (RFC 7672).

use std::time::Duration;

use policy_core::Dane;
use tlsfallback_mta::dns::{DnsError, DnsSettings, DnssecMode, Resolver, Security};
use tlsfallback_mta::mta_sts::StsResult;
use tlsfallback_mta::resolve::{DaneResolution, MxList, resolve_domain};
use tlsfallback_testkit::rig::dnssec::{
    ChildZone, DnssecRig, RigSpec, SharedRig, Signing, big_txt,
};

use crate::attempts::{identity, tlsa_3_1_1};

/// A TLSA record that matches nothing (a digest of the right length).
const WRONG_TLSA: &str = "3 1 1 0000000000000000000000000000000000000000000000000000000000000000";

fn spec() -> RigSpec {
    let matching = tlsa_3_1_1(&identity().certificate);
    RigSpec::new()
        .child(
            ChildZone::new("secure", Signing::Signed)
                .record("@ IN MX 10 mx")
                .record("mx 300 IN A 127.0.0.1")
                .record(format!("_25._tcp.mx IN TLSA {matching}"))
                .record("absent IN MX 10 notlsa")
                .record("notlsa IN A 127.0.0.1")
                .record("pkix IN MX 10 pkixmx")
                .record("pkixmx IN A 127.0.0.1")
                .record("_25._tcp.pkixmx IN TLSA 1 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d")
                .record("wrong IN MX 10 wrongmx")
                .record("wrongmx IN A 127.0.0.1")
                .record(format!("_25._tcp.wrongmx IN TLSA {WRONG_TLSA}"))
                .record("ipmx IN MX 10 192.0.2.1.")
                .record("nomx IN A 127.0.0.1")
                .record("null IN MX 0 .")
                .record("short 1 IN A 127.0.0.1")
                .record("one IN A 127.0.0.1")
                .record("two IN A 127.0.0.1")
                .record("three IN A 127.0.0.1")
                .records(big_txt("big", 3000)),
        )
        .child(
            ChildZone::new("insecure", Signing::Unsigned)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1")
                .record(format!("_25._tcp.mx IN TLSA {matching}")),
        )
        .child(
            ChildZone::new("bogus", Signing::BrokenDs)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1"),
        )
        .child(
            ChildZone::new("expired", Signing::ExpiredSignatures)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1"),
        )
        .child(ChildZone::new("servfail", Signing::Servfail))
        .child(
            // Secure MX RRsets whose MX host cannot be looked up: its address (the host lives in
            // the SERVFAIL zone), or its TLSA RRset (a CNAME into that zone).
            ChildZone::new("tlsafail", Signing::Signed)
                .record("@ IN MX 10 mx.servfail.test.")
                .record("alias IN MX 10 mx")
                .record("mx IN A 127.0.0.1")
                .record("_25._tcp.mx IN CNAME _25._tcp.mx.servfail.test."),
        )
        .child(
            ChildZone::new("cname", Signing::Signed)
                .record("@ IN MX 10 mail")
                .record("mail IN CNAME mx.secure.test."),
        )
}

static RIG: SharedRig = SharedRig::new(spec);

fn rig() -> &'static DnssecRig {
    RIG.get().expect("the DNSSEC rig starts")
}

/// Validating itself against the rig's root key, asking the rig's front (NSD, and SERVFAIL for
/// the SERVFAIL zone).
fn validating() -> Resolver {
    Resolver::new(DnsSettings {
        server: Some(rig().direct_addr()),
        dnssec: DnssecMode::Validate,
        trust_anchor: Some(rig().trust_anchor_file()),
        timeout: Duration::from_secs(5),
        ..DnsSettings::default()
    })
    .unwrap()
}

/// Trusting the AD bit of the rig's unbound.
fn trusting_unbound() -> Resolver {
    Resolver::new(DnsSettings {
        server: Some(rig().unbound_addr()),
        dnssec: DnssecMode::TrustAd,
        timeout: Duration::from_secs(5),
        ..DnsSettings::default()
    })
    .unwrap()
}

/// No MTA-STS in these zones: what the resolver gives for a domain without a TXT record.
fn no_sts(domain: &str) -> StsResult {
    StsResult::none(domain)
}

fn dane_of(resolver: &Resolver, domain: &str) -> Vec<(String, DaneResolution)> {
    let resolution = resolve_domain(resolver, domain, 25, &mut no_sts);
    match resolution.mx {
        MxList::Hosts { hosts, .. } => hosts.into_iter().map(|mx| (mx.host, mx.dane)).collect(),
        other => panic!("{domain}: {other:?}"),
    }
}

#[test]
fn a_signed_mx_is_secure_and_an_unsigned_one_insecure_in_both_modes() {
    for resolver in [validating(), trusting_unbound()] {
        let secure = resolver.mx("secure.test").unwrap();
        assert_eq!(
            secure.security,
            Security::Secure,
            "{:?}",
            resolver.settings()
        );
        assert_eq!(secure.records[0].exchange, "mx.secure.test");
        let insecure = resolver.mx("insecure.test").unwrap();
        assert_eq!(insecure.security, Security::Insecure);
        assert_eq!(insecure.records[0].exchange, "mx.insecure.test");
    }
}

#[test]
fn a_ds_for_a_key_that_signs_nothing_is_bogus_not_insecure() {
    let error = validating().mx("bogus.test").unwrap_err();
    assert!(matches!(error, DnsError::Bogus { .. }), "{error}");
    // Behind unbound, bogus is SERVFAIL: still an error, never an insecure answer.
    let error = trusting_unbound().mx("bogus.test").unwrap_err();
    assert!(matches!(error, DnsError::ServerFailure { .. }), "{error}");
}

#[test]
fn expired_signatures_are_bogus_not_insecure() {
    let error = validating().mx("expired.test").unwrap_err();
    assert!(matches!(error, DnsError::Bogus { .. }), "{error}");
    assert!(trusting_unbound().mx("expired.test").is_err());
}

#[test]
fn servfail_is_a_lookup_failure() {
    for resolver in [validating(), trusting_unbound()] {
        let error = resolver.mx("servfail.test").unwrap_err();
        assert!(
            matches!(
                error,
                DnsError::ServerFailure { .. } | DnsError::Bogus { .. }
            ),
            "{error}"
        );
    }
}

#[test]
fn a_matching_secure_tlsa_rrset_makes_dane_usable() {
    for resolver in [validating(), trusting_unbound()] {
        let dane = dane_of(&resolver, "secure.test");
        assert_eq!(dane.len(), 1);
        assert_eq!(dane[0].0, "mx.secure.test");
        assert_eq!(dane[0].1.state(), Dane::Usable, "{:?}", dane[0].1);
        // A record that matches nothing is still usable: the mismatch shows in the handshake.
        let dane = dane_of(&resolver, "wrong.secure.test");
        assert_eq!(dane[0].1.state(), Dane::Usable, "{:?}", dane[0].1);
    }
}

#[test]
fn securely_absent_tlsa_is_no_dane_and_insecure_tlsa_is_ignored() {
    let resolver = validating();
    let dane = dane_of(&resolver, "absent.secure.test");
    assert_eq!(dane[0].1, DaneResolution::SecureAbsent);
    // The insecure zone publishes a matching TLSA record: unsigned, it is not believed.
    let dane = dane_of(&resolver, "insecure.test");
    assert_eq!(dane[0].1.state(), Dane::None);
    assert!(
        matches!(dane[0].1, DaneResolution::NotApplicable { .. }),
        "{:?}",
        dane[0].1
    );
}

#[test]
fn only_pkix_usages_make_the_tlsa_rrset_unusable() {
    let dane = dane_of(&validating(), "pkix.secure.test");
    assert_eq!(dane[0].1.state(), Dane::Unusable, "{:?}", dane[0].1);
}

#[test]
fn a_failed_tlsa_lookup_under_a_secure_mx_defers_that_mx() {
    for domain in ["tlsafail.test", "alias.tlsafail.test"] {
        let dane = dane_of(&validating(), domain);
        assert_eq!(
            dane[0].1.state(),
            Dane::LookupFailed,
            "{domain}: {:?}",
            dane[0].1
        );
    }
}

#[test]
fn a_cnamed_mx_host_finds_the_tlsa_records_of_the_expanded_name() {
    let resolver = validating();
    let addresses = resolver.addresses("mail.cname.test").unwrap();
    assert_eq!(addresses.canonical_name, "mx.secure.test");
    assert_eq!(addresses.security, Security::Secure);
    let dane = dane_of(&resolver, "cname.test");
    match &dane[0].1 {
        DaneResolution::Usable { base_domain, .. } => assert_eq!(base_domain, "mx.secure.test"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_mx_that_names_an_ip_address_is_not_used() {
    let resolution = resolve_domain(&validating(), "ipmx.secure.test", 25, &mut no_sts);
    let MxList::Hosts { hosts, .. } = resolution.mx else {
        panic!("{:?}", resolution.mx);
    };
    assert!(
        hosts[0]
            .unusable
            .as_deref()
            .is_some_and(|why| why.contains("IP address")),
        "{:?}",
        hosts[0]
    );
}

#[test]
fn a_domain_without_mx_is_its_own_secure_mx_and_a_null_mx_has_none() {
    let resolution = resolve_domain(&validating(), "nomx.secure.test", 25, &mut no_sts);
    match resolution.mx {
        MxList::Hosts {
            security,
            implicit,
            hosts,
        } => {
            assert!(implicit);
            assert_eq!(security, Security::Secure);
            assert_eq!(hosts[0].host, "nomx.secure.test");
        }
        other => panic!("{other:?}"),
    }
    let resolution = resolve_domain(&validating(), "null.secure.test", 25, &mut no_sts);
    assert!(
        matches!(resolution.mx, MxList::NullMx),
        "{:?}",
        resolution.mx
    );
    let resolution = resolve_domain(&validating(), "missing.secure.test", 25, &mut no_sts);
    assert!(
        matches!(resolution.mx, MxList::NoSuchDomain),
        "{:?}",
        resolution.mx
    );
}

#[test]
fn a_txt_rrset_too_big_for_udp_arrives_whole_over_tcp() {
    let resolver = validating();
    let answer = resolver.txt("big.secure.test").unwrap();
    let total: usize = answer.records.iter().map(Vec::len).sum();
    assert!(
        total >= 3000,
        "{total} bytes in {} records",
        answer.records.len()
    );
    assert_eq!(answer.security, Security::Secure);
}

#[test]
fn the_cache_answers_a_repeated_lookup() {
    let resolver = validating();
    resolver.mx("secure.test").unwrap();
    let before = resolver.cache_stats();
    resolver.mx("secure.test").unwrap();
    let after = resolver.cache_stats();
    assert_eq!(after.hits, before.hits + 1);
    assert_eq!(after.misses, before.misses);
}

#[test]
fn a_cached_answer_is_not_used_past_its_ttl() {
    let resolver = validating();
    resolver.addresses("short.secure.test").unwrap();
    let before = resolver.cache_stats();
    // The record's TTL is one second: after it, the cache must ask again.
    std::thread::sleep(Duration::from_millis(2100));
    resolver.addresses("short.secure.test").unwrap();
    let after = resolver.cache_stats();
    assert!(after.misses > before.misses, "{before:?} -> {after:?}");
}

#[test]
fn the_cache_keeps_at_most_its_bound() {
    let resolver = Resolver::new(DnsSettings {
        server: Some(rig().direct_addr()),
        trust_anchor: Some(rig().trust_anchor_file()),
        timeout: Duration::from_secs(5),
        cache_entries: 2,
        ..DnsSettings::default()
    })
    .unwrap();
    for name in ["one", "two", "three"] {
        resolver.mx(&format!("{name}.secure.test")).unwrap();
    }
    assert_eq!(resolver.cache_stats().entries, 2);
    // The oldest was evicted: asking for it again is a miss.
    let before = resolver.cache_stats();
    resolver.mx("one.secure.test").unwrap();
    assert_eq!(resolver.cache_stats().misses, before.misses + 1);
}

#[test]
fn a_bad_trust_anchor_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anchor.txt");
    std::fs::write(&path, "this is not a DNSKEY\n").unwrap();
    let error = Resolver::new(DnsSettings {
        trust_anchor: Some(path),
        ..DnsSettings::default()
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("anchor.txt"), "{error}");
}

#[test]
fn tlsfallback_resolve_prints_the_floor_of_each_mx() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.sqlite3");
    let server = rig().direct_addr().to_string();
    let anchor = rig().trust_anchor_file();
    let output = crate::util::run(
        &[
            "resolve",
            "secure.test",
            "--json",
            "--dns-server",
            &server,
            "--trust-anchor",
            anchor.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        "",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["mx"]["dnssec"], "secure", "{json}");
    assert_eq!(json["mx"]["hosts"][0]["tlsa"]["state"], "usable", "{json}");
    assert_eq!(
        json["mx"]["hosts"][0]["floor"]["tier"], "authenticated-tls",
        "{json}"
    );
    assert_eq!(json["mta_sts"]["state"], "none", "{json}");
    let text = crate::util::run(
        &[
            "resolve",
            "insecure.test",
            "--dns-server",
            &server,
            "--trust-anchor",
            anchor.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        "",
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("mx 1 (insecure)"), "{text}");
    assert!(
        text.contains("floor cleartext (dane=none mta_sts=none)"),
        "{text}"
    );
}

#[test]
fn a_name_server_that_never_answers_defers_the_delivery() {
    // Bound and silent: every query times out (and TCP is refused).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap();
    let resolver = Resolver::new(DnsSettings {
        server: Some(server),
        timeout: Duration::from_secs(1),
        ..DnsSettings::default()
    })
    .unwrap();
    let error = resolver.mx("secure.test").unwrap_err();
    assert!(
        matches!(error, DnsError::Timeout { .. } | DnsError::Failed { .. }),
        "{error}"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.sqlite3");
    let server = server.to_string();
    let output = crate::util::run(
        &[
            "deliver",
            "--from",
            "a@example.test",
            "--to",
            "b@secure.test",
            "--dns-server",
            &server,
            "--dns-timeout-secs",
            "1",
            "--db",
            db.to_str().unwrap(),
        ],
        "Subject: x\n\nbody\n",
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{log}");
    assert!(log.contains("looking up the MX of secure.test"), "{log}");
    drop(silent);
}
