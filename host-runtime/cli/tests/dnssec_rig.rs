//! The DNSSEC rig itself: each kind of child zone gives what it says, through unbound (AD or
//! SERVFAIL), through NSD and through the front, over UDP and TCP.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use hickory_proto::dnssec::Proof;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tlsfallback_mta::clock::Stopwatch;
use tlsfallback_testkit::rig::dnssec::{
    ChildZone, DnssecRig, EDNS_PAYLOAD, RigError, RigSpec, SharedRig, Signing, Transport, ask,
    big_txt, unique_loopback_ip,
};
use tlsfallback_testkit::rig::resolv::with_resolv_conf;

const TLSA: &str = "_25._tcp.mx IN TLSA 3 1 1 \
                    8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d";

/// Every case of this module in one spec (one rig for the whole module).
fn spec() -> RigSpec {
    RigSpec::new()
        .child(
            ChildZone::new("secure", Signing::Signed)
                .record("@ IN MX 10 mx")
                .record("mx 300 IN A 127.0.0.10")
                .record(TLSA)
                .records(big_txt("big", 3000)),
        )
        .child(
            ChildZone::new("insecure", Signing::Unsigned)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.11"),
        )
        .merge(
            RigSpec::new()
                .child(
                    ChildZone::new("bogus", Signing::BrokenDs)
                        .record("@ IN MX 10 mx")
                        .record("mx IN A 127.0.0.12"),
                )
                .child(
                    ChildZone::new("expired", Signing::ExpiredSignatures)
                        .record("@ IN MX 10 mx")
                        .record("mx IN A 127.0.0.13"),
                )
                .child(ChildZone::new("servfail", Signing::Servfail))
                .child(
                    // The MX target is a CNAME into the signed zone.
                    ChildZone::new("cname", Signing::Signed)
                        .record("@ IN MX 10 mail")
                        .record("mail IN CNAME mx.secure.test."),
                ),
        )
        .resolver_on(unique_loopback_ip().expect("a loopback address with port 53 free"))
}

static RIG: SharedRig = SharedRig::new(spec);

fn rig() -> &'static DnssecRig {
    let rig = RIG.get().expect("the DNSSEC rig starts");
    // Measured, not asserted: the report quotes it.
    eprintln!("DNSSEC rig started in {:?}", rig.started_in());
    rig
}

fn query(server: SocketAddr, name: &str, record_type: RecordType) -> Message {
    ask(
        server,
        name,
        record_type,
        Transport::Udp,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{name} {record_type} from {server}: {e}"))
}

fn addresses(answer: &Message) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// `dig`'s answer, as text, for a cross-check with a tool that is not the rig's own code.
fn dig(server: SocketAddr, args: &[&str]) -> String {
    let output = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+dnssec",
            "+tries=1",
            "+time=5",
        ])
        .args(args)
        .output()
        .expect("dig runs (Debian package bind9-dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// That unbound's log has a validation failure for `zone` saying `why`.
fn assert_unbound_logged(rig: &DnssecRig, zone: &str, why: &str) {
    let log = std::fs::read_to_string(rig.dir().join("unbound.log")).unwrap();
    assert!(
        log.lines().any(|line| line.contains("validation failure")
            && line.contains(zone)
            && line.contains(why)),
        "no validation failure for {zone} saying {why:?} in:\n{log}"
    );
}

#[test]
fn signed_child_is_authenticated_by_unbound() {
    let rig = rig();
    let answer = query(rig.unbound_addr(), "mx.secure.test", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authentic_data, "no AD: {answer:?}");
    assert_eq!(addresses(&answer), ["127.0.0.10"]);
    let tlsa = query(
        rig.unbound_addr(),
        "_25._tcp.mx.secure.test",
        RecordType::TLSA,
    );
    assert!(tlsa.metadata.authentic_data);
    assert!(
        tlsa.answers
            .iter()
            .any(|r| r.record_type() == RecordType::TLSA)
    );
    // The same through dig: the `ad` flag and the signature.
    let text = dig(rig.unbound_addr(), &["mx.secure.test", "A"]);
    assert!(text.contains(" ad"), "{text}");
    assert!(text.contains("RRSIG"), "{text}");
}

#[test]
fn unsigned_child_is_answered_without_ad() {
    let rig = rig();
    let answer = query(rig.unbound_addr(), "mx.insecure.test", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(
        !answer.metadata.authentic_data,
        "AD on insecure: {answer:?}"
    );
    assert_eq!(addresses(&answer), ["127.0.0.11"]);
}

#[test]
fn broken_ds_is_servfail_from_unbound_and_served_by_nsd() {
    let rig = rig();
    let answer = query(rig.unbound_addr(), "mx.bogus.test", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    // Bogus for the right reason: unbound's Extended DNS Error says bogus, and its log why.
    let text = dig(rig.unbound_addr(), &["mx.bogus.test", "A"]);
    assert!(text.contains("EDE: 6 (DNSSEC Bogus)"), "{text}");
    assert_unbound_logged(rig, "bogus.test", "no keys have a DS");
    // NSD itself serves the data: a validating client sees it and judges it bogus.
    let raw = query(rig.direct_addr(), "mx.bogus.test", RecordType::A);
    assert_eq!(addresses(&raw), ["127.0.0.12"]);
}

#[test]
fn expired_signatures_are_servfail_from_unbound() {
    let rig = rig();
    let answer = query(rig.unbound_addr(), "mx.expired.test", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    let text = dig(rig.unbound_addr(), &["mx.expired.test", "A"]);
    assert!(text.contains("EDE: 6 (DNSSEC Bogus)"), "{text}");
    assert_unbound_logged(rig, "expired.test", "signature expired");
    let raw = query(rig.direct_addr(), "mx.expired.test", RecordType::A);
    assert_eq!(addresses(&raw), ["127.0.0.13"]);
}

#[test]
fn servfail_child_is_servfail_from_unbound_and_the_front() {
    let rig = rig();
    for server in [rig.unbound_addr(), rig.direct_addr()] {
        for (name, record_type) in [
            ("servfail.test", RecordType::MX),
            ("mx.servfail.test", RecordType::A),
        ] {
            let answer = query(server, name, record_type);
            assert_eq!(
                answer.metadata.response_code,
                ResponseCode::ServFail,
                "{name} {record_type} from {server}"
            );
        }
        let over_tcp = ask(
            server,
            "mx.servfail.test",
            RecordType::A,
            Transport::Tcp,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(over_tcp.metadata.response_code, ResponseCode::ServFail);
    }
}

#[test]
fn big_txt_is_truncated_over_udp_and_complete_over_tcp() {
    let rig = rig();
    for server in [rig.nsd_addr(), rig.direct_addr(), rig.unbound_addr()] {
        let udp = query(server, "big.secure.test", RecordType::TXT);
        assert!(udp.metadata.truncation, "no TC from {server}");
        assert!(udp.to_vec().unwrap().len() <= usize::from(EDNS_PAYLOAD));
        let tcp = ask(
            server,
            "big.secure.test",
            RecordType::TXT,
            Transport::Tcp,
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(!tcp.metadata.truncation);
        let txt: Vec<_> = tcp
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::TXT)
            .collect();
        assert_eq!(txt.len(), big_txt("big", 3000).len(), "from {server}");
        assert!(tcp.to_vec().unwrap().len() > usize::from(EDNS_PAYLOAD));
        if server == rig.unbound_addr() {
            assert!(tcp.metadata.authentic_data);
        }
    }
}

#[test]
fn cnamed_mx_target_resolves_through_unbound() {
    let rig = rig();
    let mx = query(rig.unbound_addr(), "cname.test", RecordType::MX);
    assert!(mx.metadata.authentic_data);
    let target = query(rig.unbound_addr(), "mail.cname.test", RecordType::A);
    assert_eq!(target.metadata.response_code, ResponseCode::NoError);
    assert!(target.metadata.authentic_data);
    assert!(
        target
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME)
    );
    assert_eq!(addresses(&target), ["127.0.0.10"]);
}

#[test]
fn trust_anchor_file_holds_the_root_dnskey_and_ds() {
    let rig = rig();
    let anchor = std::fs::read_to_string(rig.trust_anchor_file()).unwrap();
    assert!(anchor.starts_with(". IN DNSKEY 257 3 13 "), "{anchor}");
    let ds = std::fs::read_to_string(rig.root_ds_file()).unwrap();
    assert!(ds.trim_start().starts_with(". IN DS "), "{ds}");
    // The anchor is the key the root is signed with.
    let served = dig(rig.nsd_addr(), &["+short", ".", "DNSKEY"]);
    let key = anchor.split_whitespace().skip(7).collect::<String>();
    assert!(
        served
            .split_whitespace()
            .skip(3)
            .collect::<String>()
            .contains(&key),
        "{served} vs {anchor}"
    );
}

#[test]
fn rig_with_a_record_line_holding_a_directive_is_refused() {
    for line in [
        "$INCLUDE /etc/passwd",
        "a IN A 127.0.0.1\nb IN A 127.0.0.2",
        "",
    ] {
        let spec = RigSpec::new().child(ChildZone::new("x", Signing::Signed).record(line));
        let error = DnssecRig::start(&spec).unwrap_err();
        assert!(matches!(error, RigError::BadSpec(_)), "{line:?}: {error}");
    }
}

#[test]
fn rig_with_records_in_a_servfail_child_is_refused_not_silently_emptied() {
    let spec =
        RigSpec::new().child(ChildZone::new("sf", Signing::Servfail).record("mx IN A 127.0.0.1"));
    let error = DnssecRig::start(&spec).unwrap_err();
    assert!(error.to_string().contains("sf.test."), "{error}");
}

#[test]
fn rig_with_a_child_declared_twice_is_refused() {
    let spec = RigSpec::new()
        .child(ChildZone::new("twice", Signing::Signed))
        .merge(RigSpec::new().child(ChildZone::new("twice", Signing::Unsigned)));
    let error = DnssecRig::start(&spec).unwrap_err();
    assert!(error.to_string().contains("twice.test."), "{error}");
}

#[test]
fn rig_with_a_bad_record_names_the_zone_and_stops_cleanly() {
    let started = Stopwatch::start();
    let spec = RigSpec::new()
        .child(ChildZone::new("broken", Signing::Signed).record("mx IN A not-an-address"));
    let error = DnssecRig::start(&spec).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("broken.test"), "{text}");
    eprintln!("a failed start took {:?}", started.elapsed());
}

/// hickory-resolver validating itself against the rig's trust anchor, through the front.
fn hickory_lookup(
    rig: &DnssecRig,
    name: &str,
    record_type: RecordType,
) -> Result<Vec<(RecordType, Proof)>, String> {
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::proto::dnssec::TrustAnchors;

    let server = rig.direct_addr();
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
    let mut options = ResolverOpts::default();
    options.validate = true;
    options.cache_size = 0;
    let anchors = TrustAnchors::from_file(&rig.trust_anchor_file()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let resolver = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![name_server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .with_trust_anchor(std::sync::Arc::new(anchors))
        .build()
        .unwrap();
        resolver
            .lookup(name, record_type)
            .await
            .map(|lookup| {
                lookup
                    .answers()
                    .iter()
                    .map(|r| (r.record_type(), r.proof))
                    .collect()
            })
            .map_err(|e| e.to_string())
    })
}

#[test]
fn hickory_validating_through_the_front_tells_secure_insecure_bogus_and_servfail() {
    let rig = rig();
    let secure = hickory_lookup(rig, "_25._tcp.mx.secure.test.", RecordType::TLSA).unwrap();
    assert!(
        secure.contains(&(RecordType::TLSA, Proof::Secure)),
        "{secure:?}"
    );
    let insecure = hickory_lookup(rig, "mx.insecure.test.", RecordType::A).unwrap();
    assert_eq!(insecure, [(RecordType::A, Proof::Insecure)]);
    // The big RRset comes over TCP after the truncated UDP answer, and validates.
    let big = hickory_lookup(rig, "big.secure.test.", RecordType::TXT).unwrap();
    assert!(big.iter().all(|(_, proof)| *proof == Proof::Secure));
    assert!(big.len() >= big_txt("big", 3000).len());
    for bogus in ["mx.bogus.test.", "mx.expired.test."] {
        let error = hickory_lookup(rig, bogus, RecordType::A).unwrap_err();
        assert!(
            error.contains("DNSSEC validation failed"),
            "{bogus}: {error}"
        );
    }
    let servfail = hickory_lookup(rig, "mx.servfail.test.", RecordType::A).unwrap_err();
    assert!(servfail.contains("Server Failure"), "{servfail}");
}

#[test]
fn libc_resolver_under_a_private_resolv_conf_asks_the_rig_and_keeps_ad() {
    let rig = rig();
    let ip = rig
        .resolver_ip()
        .expect("the module's rig listens on IP:53");
    let machines = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |program: &str, args: &[&str]| {
        let output = with_resolv_conf(dir.path(), ip, program, args)
            .unwrap()
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // dig without `@server` takes its server from resolv.conf: the rig's, and the answer is
    // authenticated.
    let (ok, text, err) = run(
        "dig",
        &["+dnssec", "+tries=1", "+time=5", "mx.secure.test", "A"],
    );
    assert!(ok, "{err}");
    assert!(text.contains(&format!("SERVER: {ip}#53")), "{text}");
    assert!(text.contains(" ad"), "{text}");
    assert!(text.contains("127.0.0.10"), "{text}");
    // glibc's own stub resolver, the one Postfix uses: a secure name resolves, a bogus one does
    // not (unbound answers SERVFAIL).
    let (ok, text, err) = run("getent", &["ahostsv4", "mx.secure.test"]);
    assert!(ok && text.contains("127.0.0.10"), "{text}{err}");
    let (ok, text, _) = run("getent", &["ahostsv4", "mx.bogus.test"]);
    assert!(!ok && text.is_empty(), "{text}");
    // Outside the namespace nothing changed.
    assert_eq!(
        std::fs::read_to_string("/etc/resolv.conf").unwrap(),
        machines
    );
}

#[test]
fn dropped_rig_stops_its_servers_and_removes_its_directory() {
    let started = Stopwatch::start();
    let rig = DnssecRig::start(
        &RigSpec::new().child(ChildZone::new("own", Signing::Signed).record("a IN A 127.0.0.1")),
    )
    .unwrap();
    eprintln!(
        "a one-child rig started in {:?} (measured by the test: {:?})",
        rig.started_in(),
        started.elapsed()
    );
    let (dir, nsd, unbound) = (rig.dir().to_owned(), rig.nsd_addr(), rig.unbound_addr());
    assert_eq!(rig.resolver_ip(), None, "no port 53 unless the spec asks");
    assert!(
        query(unbound, "a.own.test", RecordType::A)
            .metadata
            .authentic_data
    );
    drop(rig);
    assert!(!dir.exists(), "{} left behind", dir.display());
    for server in [nsd, unbound] {
        let answer = ask(
            server,
            "a.own.test",
            RecordType::A,
            Transport::Udp,
            Duration::from_millis(300),
        );
        assert!(answer.is_err(), "{server} still answers: {answer:?}");
    }
}
