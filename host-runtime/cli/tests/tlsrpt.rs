//! TLS-RPT end to end: `tlsfallback deliver --tlsrpt-socket` reports each delivery attempt to
//! sys4's real tlsrpt-collectd (the pinned `tlsrpt-reporter` that `scripts/setup` installs),
//! whose fetcher and tlsrpt-reportd then build the day's RFC 8460 reports; `tlsrpt preview`
//! must say the same of the same attempts.
//!
//! One domain per case, each with one MX `mx.<domain>` at 127.0.0.1 served by a local peer on a
//! port of its own, and a TLSRPT record at `_smtp._tls.<domain>`; DANE domains are signed in
//! the DNSSEC rig, the MTA-STS policy comes from the rig's policy server.

use serde_json::Value;
use tlsfallback_testkit::peers::{Identity, LocalPeer, PeerKind};
use tlsfallback_testkit::rig::dnssec::{ChildZone, DnssecRig, RigSpec, Signing};
use tlsfallback_testkit::rig::https::{PolicyServer, Response};
use tlsfallback_testkit::rig::tlsrpt_reporter::{Collectd, Reportd, WrittenReport};

use crate::attempts::{identity, tlsa_3_1_1};

const MESSAGE: &str = "From: a@example.test\nTo: b@example.test\nSubject: reported\n\nbody\n";

/// The peers and the servers, and a database all deliveries share.
struct World {
    /// DANE, the certificate matches (`dane.test`).
    dane: LocalPeer,
    /// DANE, the TLSA record matches another key (`mismatch.test`).
    mismatch: LocalPeer,
    /// MTA-STS enforce, a trusted certificate for another name (`sts.test`).
    sts_wrong_name: LocalPeer,
    sts_ca: std::path::PathBuf,
    /// No STARTTLS (`plain.test`).
    no_starttls: LocalPeer,
    /// TLS 1.0 only (`legacy.test`).
    legacy: LocalPeer,
    /// TLS 1.3 (`modern.test`).
    modern: LocalPeer,
    policies: PolicyServer,
    rig: DnssecRig,
    db: std::path::PathBuf,
    policy: std::path::PathBuf,
    dir: tempfile::TempDir,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let other = Identity::self_signed("other.example").unwrap();
    let sts_ca = dir.path().join("sts-peer-ca.pem");
    std::fs::write(&sts_ca, other.certificate.to_pem().unwrap()).unwrap();
    let dane = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let mismatch = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let sts_wrong_name = LocalPeer::start(PeerKind::Modern, &other).unwrap();
    let no_starttls = LocalPeer::start(PeerKind::NoStarttls, identity()).unwrap();
    let legacy = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let modern = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let policies = PolicyServer::start().unwrap();
    policies.set(
        "sts.test",
        Response::policy("version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n"),
    );
    let matching = tlsa_3_1_1(&identity().certificate);
    let wrong = "3 1 1 0000000000000000000000000000000000000000000000000000000000000000";
    let zone = |name: &str, signing: Signing| {
        ChildZone::new(name, signing)
            .record("@ IN MX 10 mx")
            .record("mx IN A 127.0.0.1")
            .record(format!(
                "_smtp._tls IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@{name}.test\""
            ))
    };
    let spec = RigSpec::new()
        .child(zone("dane", Signing::Signed).record(format!(
            "_{}._tcp.mx IN TLSA {matching}",
            dane.address.port()
        )))
        .child(zone("mismatch", Signing::Signed).record(format!(
            "_{}._tcp.mx IN TLSA {wrong}",
            mismatch.address.port()
        )))
        .child(
            zone("sts", Signing::Unsigned)
                .record("_mta-sts IN TXT \"v=STSv1; id=20261201\"")
                .record("mta-sts IN A 127.0.0.1"),
        )
        .child(zone("plain", Signing::Unsigned))
        .child(zone("legacy", Signing::Unsigned))
        .child(zone("modern", Signing::Unsigned));
    let rig = DnssecRig::start(&spec).expect("the DNSSEC rig starts");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[policy]\nstep_down_delay_secs = 0\n").unwrap();
    World {
        dane,
        mismatch,
        sts_wrong_name,
        sts_ca,
        no_starttls,
        legacy,
        modern,
        policies,
        rig,
        db: dir.path().join("peers.sqlite3"),
        policy,
        dir,
    }
}

impl World {
    /// `deliver --to user@domain` through the peer on `port`, resolving everything through
    /// the rig, with `extra` flags; the exit code and stderr.
    fn deliver(&self, domain: &str, port: u16, message: &str, extra: &[&str]) -> (i32, String) {
        let to = format!("tlsrpt@{domain}");
        let port = port.to_string();
        let server = self.rig.direct_addr().to_string();
        let sts_port = self.policies.port().to_string();
        let anchor = self.rig.trust_anchor_file();
        let mut args = vec![
            "deliver",
            "--from",
            "a@example.test",
            "--to",
            &to,
            "--port",
            &port,
            "--dnssec",
            "validate",
            "--trust-anchor",
            anchor.to_str().unwrap(),
            "--dns-server",
            &server,
            "--mta-sts-port",
            &sts_port,
            "--mta-sts-ca-file",
            self.policies.ca_file().to_str().unwrap(),
            "--policy",
            self.policy.to_str().unwrap(),
            "--db",
            self.db.to_str().unwrap(),
        ];
        args.extend(extra);
        let output = crate::util::run(&args, message);
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `tlsrpt preview` of today for `domain`, parsed.
    fn preview(&self, domain: &str) -> Vec<Value> {
        let output = crate::util::run(
            &[
                "tlsrpt",
                "preview",
                "--db",
                self.db.to_str().unwrap(),
                "--domain",
                domain,
            ],
            "",
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
    }
}

/// A report's policies, each as (policy, summary, failure details sorted), sorted: the part of
/// a report that says what happened, without its dates and ids.
fn outcome(report: &Value) -> Vec<String> {
    let mut policies: Vec<String> = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|policy| {
            let mut failures: Vec<String> = policy["failure-details"]
                .as_array()
                .unwrap()
                .iter()
                .map(Value::to_string)
                .collect();
            failures.sort();
            format!(
                "{} {} {}",
                policy["policy"],
                policy["summary"],
                failures.join(",")
            )
        })
        .collect();
    policies.sort();
    policies
}

fn only_policy(report: &Value) -> &Value {
    let policies = report["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{report:#}");
    &policies[0]
}

fn counts(policy: &Value) -> (u64, u64) {
    (
        policy["summary"]["total-successful-session-count"]
            .as_u64()
            .unwrap(),
        policy["summary"]["total-failure-session-count"]
            .as_u64()
            .unwrap(),
    )
}

fn result_types(policy: &Value) -> Vec<(String, u64)> {
    policy["failure-details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failure| {
            assert_eq!(failure["receiving-ip"], "127.0.0.1", "{failure}");
            (
                failure["result-type"].as_str().unwrap().to_owned(),
                failure["failed-session-count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn each_attempt_reaches_the_real_reporter_and_its_report_matches_the_preview() {
    let world = world();
    let mut collectd = Collectd::start(world.dir.path()).expect("tlsrpt-collectd starts");
    let socket = collectd.socket().to_str().unwrap().to_owned();
    let reported = ["--tlsrpt-socket", socket.as_str()];
    let ca = world.sts_ca.to_str().unwrap().to_owned();
    let with_ca = ["--tlsrpt-socket", socket.as_str(), "--ca-file", ca.as_str()];
    let cases: [(&str, u16, &[&str], i32); 7] = [
        ("dane.test", world.dane.address.port(), &reported, 0),
        (
            "mismatch.test",
            world.mismatch.address.port(),
            &reported,
            75,
        ),
        (
            "sts.test",
            world.sts_wrong_name.address.port(),
            &with_ca,
            75,
        ),
        ("plain.test", world.no_starttls.address.port(), &reported, 0),
        ("legacy.test", world.legacy.address.port(), &reported, 0),
        ("modern.test", world.modern.address.port(), &reported, 0),
        ("modern.test", world.modern.address.port(), &reported, 0),
    ];
    for (domain, port, extra, expected) in cases {
        let (code, log) = world.deliver(domain, port, MESSAGE, extra);
        assert_eq!(code, expected, "{domain}: {log}");
        assert!(!log.contains("TLS-RPT result dropped"), "{domain}: {log}");
        assert!(!log.contains("not reported"), "{domain}: {log}");
    }
    // One datagram per delivery attempt, never one per try (legacy.test tried twice).
    collectd.wait_received(cases.len()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(collectd.received(), cases.len(), "{}", collectd.log());
    collectd.roll_over().unwrap();

    let domains = [
        "dane.test",
        "mismatch.test",
        "sts.test",
        "plain.test",
        "legacy.test",
        "modern.test",
    ];
    let reports = Reportd::run(
        world.dir.path(),
        collectd.storage(),
        &domains,
        "tlsfallback-test",
        "postmaster@example.test",
    )
    .expect("tlsrpt-reportd writes the reports");
    let report_of = |domain: &str| -> (Value, &WrittenReport) {
        let written: Vec<&WrittenReport> = reports.iter().filter(|r| r.domain == domain).collect();
        assert_eq!(written.len(), 1, "{domain}: {reports:#?}");
        assert_eq!(written[0].destination, format!("mailto:tlsrpt@{domain}"));
        (serde_json::from_str(&written[0].json).unwrap(), written[0])
    };

    let (dane, _) = report_of("dane.test");
    let policy = only_policy(&dane);
    assert_eq!(policy["policy"]["policy-type"], "tlsa", "{dane:#}");
    assert_eq!(
        policy["policy"]["policy-string"][0],
        tlsa_3_1_1(&identity().certificate),
        "{dane:#}"
    );
    assert_eq!(counts(policy), (1, 0), "{dane:#}");

    let (mismatch, _) = report_of("mismatch.test");
    let policy = only_policy(&mismatch);
    assert_eq!(policy["policy"]["policy-type"], "tlsa", "{mismatch:#}");
    assert_eq!(counts(policy), (0, 1), "{mismatch:#}");
    assert_eq!(
        result_types(policy),
        [("validation-failure".to_owned(), 1)],
        "{mismatch:#}"
    );
    assert_eq!(
        policy["failure-details"][0]["receiving-mx-hostname"],
        "mx.mismatch.test"
    );

    let (sts, _) = report_of("sts.test");
    let policy = only_policy(&sts);
    assert_eq!(policy["policy"]["policy-type"], "sts", "{sts:#}");
    assert_eq!(policy["policy"]["policy-domain"], "sts.test", "{sts:#}");
    assert_eq!(policy["policy"]["mx-host"][0], "mx.sts.test", "{sts:#}");
    assert!(
        policy["policy"]["policy-string"]
            .as_array()
            .unwrap()
            .contains(&Value::from("mode: enforce")),
        "{sts:#}"
    );
    assert_eq!(counts(policy), (0, 1), "{sts:#}");
    assert_eq!(
        result_types(policy),
        [("certificate-host-mismatch".to_owned(), 1)],
        "{sts:#}"
    );
    assert_eq!(
        policy["failure-details"][0]["receiving-mx-hostname"],
        "mx.sts.test"
    );

    let (plain, _) = report_of("plain.test");
    let policy = only_policy(&plain);
    assert_eq!(
        policy["policy"]["policy-type"], "no-policy-found",
        "{plain:#}"
    );
    assert_eq!(policy["policy"]["policy-domain"], "plain.test", "{plain:#}");
    assert_eq!(counts(policy), (0, 1), "{plain:#}");
    assert_eq!(
        result_types(policy),
        [("starttls-not-supported".to_owned(), 1)],
        "{plain:#}"
    );

    // The dance stepped down from a refused modern handshake to legacy TLS and delivered: a
    // recoverable failure inside the attempt, not reported.
    let (legacy, _) = report_of("legacy.test");
    let policy = only_policy(&legacy);
    assert_eq!(counts(policy), (1, 0), "{legacy:#}");
    assert!(result_types(policy).is_empty(), "{legacy:#}");

    let (modern, modern_report) = report_of("modern.test");
    assert_eq!(counts(only_policy(&modern)), (2, 0), "{modern:#}");
    assert_eq!(modern["organization-name"], "tlsfallback-test");
    assert_eq!(modern["contact-info"], "postmaster@example.test");

    // The preview says the same of the same attempts, in the same schema.
    for domain in domains {
        let (real, _) = report_of(domain);
        let preview = world.preview(domain);
        assert_eq!(preview.len(), 1, "{domain}: {preview:#?}");
        assert_eq!(outcome(&preview[0]), outcome(&real), "{domain}");
        for key in [
            "organization-name",
            "date-range",
            "contact-info",
            "report-id",
        ] {
            assert!(preview[0].get(key).is_some(), "{domain}: no {key}");
        }
        assert!(
            preview[0]["report-id"]
                .as_str()
                .unwrap()
                .ends_with(&format!("T00:00:00Z_idx1_{domain}")),
            "{domain}: {:#}",
            preview[0]
        );
    }

    // Reports about reports: the reporter's own mail to a DANE domain whose TLSA record no
    // longer matches goes out with TLS-Required: No, and its attempt is not reported.
    let mail = modern_report
        .mail
        .clone()
        .expect("reportd wrote the report's mail");
    assert!(mail.contains("TLS-Required: No"), "{mail}");
    let mail = mail.replace('\r', "");
    let before = outcome(&world.preview("mismatch.test")[0]);
    let (code, log) = world.deliver(
        "mismatch.test",
        world.mismatch.address.port(),
        &mail,
        &reported,
    );
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("the message is a TLS-RPT report"), "{log}");
    assert_eq!(outcome(&world.preview("mismatch.test")[0]), before);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(collectd.received(), cases.len(), "{}", collectd.log());
}

/// `deliver --mx` to a modern local peer, reporting to `socket` under `record`; the exit code,
/// stderr and the preview of the day for `tlsrpt.test`.
fn deliver_reporting_to(socket: &std::path::Path, record: &str) -> (i32, String, Vec<Value>) {
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("peers.sqlite3");
    let mx = format!("127.0.0.1:{}", peer.address.port());
    let output = crate::util::run(
        &[
            "deliver",
            "--from",
            "a@example.test",
            "--to",
            "postmaster@tlsrpt.test",
            "--mx",
            &mx,
            "--db",
            db.to_str().unwrap(),
            "--tlsrpt-socket",
            socket.to_str().unwrap(),
            "--tlsrpt-record",
            record,
        ],
        MESSAGE,
    );
    assert_eq!(peer.messages().len(), 1, "the message was delivered");
    let preview = crate::util::run(&["tlsrpt", "preview", "--db", db.to_str().unwrap()], "");
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        serde_json::from_slice(&preview.stdout).unwrap(),
    )
}

const RECORD: &str = "v=TLSRPTv1; rua=mailto:tlsrpt@tlsrpt.test";

#[test]
fn an_absent_collectd_costs_the_delivery_nothing_and_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let (code, log, preview) = deliver_reporting_to(&dir.path().join("no-collectd.sock"), RECORD);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("TLS-RPT result dropped: no tlsrpt-collectd listens at"),
        "{log}"
    );
    // Not lost: the ledger still has it.
    assert_eq!(counts(only_policy(&preview[0])), (1, 0), "{preview:#?}");
}

#[test]
fn a_collectd_that_stopped_reading_never_holds_up_a_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stuck.sock");
    let stuck = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    // Fill its queue to the brim: the next datagram would have to wait.
    let filler = std::os::unix::net::UnixDatagram::unbound().unwrap();
    filler.set_nonblocking(true).unwrap();
    while filler.send_to(&[0u8; 2048], &path).is_ok() {}
    let (code, log, preview) = deliver_reporting_to(&path, RECORD);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("is not keeping up"), "{log}");
    assert_eq!(counts(only_policy(&preview[0])), (1, 0), "{preview:#?}");
    drop(stuck);
}

#[test]
fn a_datagram_over_the_collectd_limit_is_dropped_not_truncated() {
    let collectd = tempfile::tempdir().unwrap();
    let path = collectd.path().join("collectd.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    // A record as a hostile domain could publish it: far over libtlsrpt's 65,000-byte buffer.
    let record = format!("{RECORD}; x={}", "a".repeat(70_000));
    let (code, log, _) = deliver_reporting_to(&path, &record);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("over the limit of 65000"), "{log}");
    let mut buffer = [0u8; 1024];
    assert!(listener.recv(&mut buffer).is_err(), "nothing was sent");
}
