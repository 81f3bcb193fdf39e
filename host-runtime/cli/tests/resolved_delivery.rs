//! `tlsfallback deliver --to user@domain` with no policy flag: the host resolves MX, DANE and
//! MTA-STS itself through the DNSSEC rig and the MTA-STS policy server, and the floor holds.
//!
//! Each domain has one MX host, `mx.<domain>` at 127.0.0.1, and a local SMTP peer on a port of
//! its own (`deliver --port`; the TLSA records are at `_<port>._tcp.mx.<domain>`, as RFC 6698
//! names them for that port).

use std::sync::OnceLock;

use tlsfallback_testkit::peers::{Identity, LocalPeer, PeerKind, StrippingProxy};
use tlsfallback_testkit::rig::dnssec::{ChildZone, DnssecRig, RigSpec, Signing};
use tlsfallback_testkit::rig::https::{PolicyServer, Response};

use crate::attempts::{identity, tlsa_3_1_1};

const MESSAGE: &str = "From: a@example.test\nTo: b@example.test\nSubject: resolved\n\nbody\n";

/// The peers, the servers and the names that lead to them.
struct World {
    /// DANE-protected, its certificate matches the TLSA record (`dane.test`).
    dane: LocalPeer,
    /// A DANE-protected peer behind an attacker who strips STARTTLS (`stripped.test`).
    behind_stripper: LocalPeer,
    stripper: StrippingProxy,
    /// DANE-protected, the TLSA record matches another key (`mismatch.test`).
    mismatch: LocalPeer,
    /// MTA-STS enforce, with a trusted certificate for another name (`sts.test`).
    sts_wrong_name: LocalPeer,
    /// A CA file that trusts that certificate.
    sts_ca: std::path::PathBuf,
    /// Insecure DNS, no MTA-STS, TLS 1.0 only: the normal dance (`plain.test`).
    plain: LocalPeer,
    policies: PolicyServer,
    rig: DnssecRig,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let dane = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
        let behind_stripper = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
        let stripper = StrippingProxy::start(behind_stripper.address).unwrap();
        stripper.strip();
        let mismatch = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
        let other = Identity::self_signed("other.example").unwrap();
        let sts_ca = dir.path().join("sts-peer-ca.pem");
        std::fs::write(&sts_ca, other.certificate.to_pem().unwrap()).unwrap();
        let sts_wrong_name = LocalPeer::start(PeerKind::Modern, &other).unwrap();
        let plain = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
        let policies = PolicyServer::start().unwrap();
        policies.set(
            "sts.test",
            Response::policy("version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n"),
        );
        let matching = tlsa_3_1_1(&identity().certificate);
        let wrong = "3 1 1 0000000000000000000000000000000000000000000000000000000000000000";
        let mx = |zone: ChildZone| zone.record("@ IN MX 10 mx").record("mx IN A 127.0.0.1");
        let spec = RigSpec::new()
            .child(mx(ChildZone::new("dane", Signing::Signed)).record(format!(
                "_{}._tcp.mx IN TLSA {matching}",
                dane.address.port()
            )))
            .child(
                mx(ChildZone::new("stripped", Signing::Signed)).record(format!(
                    "_{}._tcp.mx IN TLSA {matching}",
                    stripper.address.port()
                )),
            )
            .child(
                mx(ChildZone::new("mismatch", Signing::Signed)).record(format!(
                    "_{}._tcp.mx IN TLSA {wrong}",
                    mismatch.address.port()
                )),
            )
            .child(
                mx(ChildZone::new("sts", Signing::Unsigned))
                    .record("_mta-sts IN TXT \"v=STSv1; id=20261201\"")
                    .record("mta-sts IN A 127.0.0.1"),
            )
            .child(mx(ChildZone::new("plain", Signing::Unsigned)));
        let rig = DnssecRig::start(&spec).expect("the DNSSEC rig starts");
        World {
            dane,
            behind_stripper,
            stripper,
            mismatch,
            sts_wrong_name,
            sts_ca,
            plain,
            policies,
            rig,
            _dir: dir,
        }
    })
}

/// Delivers to `user@domain` through the peer on `port`, with only the resolver's settings:
/// `--dnssec validate` against the rig's root key, or `trust-ad` through its unbound.
fn deliver(domain: &str, port: u16, mode: &str, extra: &[&str]) -> (i32, String) {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[policy]\nstep_down_delay_secs = 0\n").unwrap();
    let db = dir.path().join("peers.sqlite3");
    let (server, anchor) = match mode {
        "trust-ad" => (world.rig.unbound_addr(), None),
        _ => (world.rig.direct_addr(), Some(world.rig.trust_anchor_file())),
    };
    let to = format!("user@{domain}");
    let port = port.to_string();
    let server = server.to_string();
    let sts_port = world.policies.port().to_string();
    let mut args = vec![
        "deliver",
        "--from",
        "a@example.test",
        "--to",
        &to,
        "--port",
        &port,
        "--dnssec",
        mode,
        "--dns-server",
        &server,
        "--mta-sts-port",
        &sts_port,
        "--mta-sts-ca-file",
        world.policies.ca_file().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ];
    let anchor = anchor.map(|path| path.to_str().unwrap().to_owned());
    if let Some(anchor) = &anchor {
        args.extend(["--trust-anchor", anchor]);
    }
    args.extend(extra);
    let output = crate::util::run(&args, MESSAGE);
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dane_peer_with_a_matching_certificate_gets_authenticated_tls_with_no_flag() {
    let world = world();
    for mode in ["validate", "trust-ad"] {
        let before = world.dane.messages().len();
        let (code, log) = deliver("dane.test", world.dane.address.port(), mode, &[]);
        assert_eq!(code, 0, "{mode}: {log}");
        assert!(
            log.contains("tier=authenticated-tls outcome=success")
                && log.contains("dane=usable mta_sts=none"),
            "{mode}: {log}"
        );
        assert_eq!(world.dane.messages().len(), before + 1);
        assert!(world.dane.messages().last().unwrap().tls.is_some());
    }
}

#[test]
fn stripping_starttls_from_a_dane_peer_defers_and_sends_nothing_in_cleartext() {
    let world = world();
    let (code, log) = deliver(
        "stripped.test",
        world.stripper.address.port(),
        "validate",
        &[],
    );
    assert_eq!(code, 75, "deferred: {log}");
    assert!(!log.contains("tier=cleartext"), "{log}");
    assert!(!log.contains("tier=modern-tls"), "{log}");
    assert!(world.behind_stripper.messages().is_empty());
}

#[test]
fn a_dane_mismatch_defers_and_never_falls_back() {
    let world = world();
    let (code, log) = deliver(
        "mismatch.test",
        world.mismatch.address.port(),
        "validate",
        &[],
    );
    assert_eq!(code, 75, "{log}");
    assert!(
        log.contains("tier=authenticated-tls outcome=certificate-error dane-mismatch"),
        "{log}"
    );
    assert!(
        !log.contains("tier=modern-tls") && !log.contains("tier=cleartext"),
        "{log}"
    );
    assert!(world.mismatch.messages().is_empty());
}

#[test]
fn mta_sts_enforce_with_a_wrong_name_certificate_defers_and_is_never_downgraded() {
    let world = world();
    let ca = world.sts_ca.to_str().unwrap();
    let (code, log) = deliver(
        "sts.test",
        world.sts_wrong_name.address.port(),
        "validate",
        &["--ca-file", ca],
    );
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("mta_sts=enforce policy_id=20261201"), "{log}");
    assert!(
        log.contains("tier=authenticated-tls outcome=certificate-error name-mismatch"),
        "{log}"
    );
    assert!(
        !log.contains("tier=modern-tls") && !log.contains("tier=cleartext"),
        "{log}"
    );
    assert!(world.sts_wrong_name.messages().is_empty());
    assert!(world.policies.requests("sts.test") >= 1);
}

#[test]
fn an_insecure_domain_without_policies_gets_the_normal_dance() {
    let world = world();
    let (code, log) = deliver("plain.test", world.plain.address.port(), "validate", &[]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("dane=none mta_sts=none"), "{log}");
    assert!(log.contains("tier=legacy-tls outcome=success"), "{log}");
    assert_eq!(world.plain.messages().len(), 1);
}
