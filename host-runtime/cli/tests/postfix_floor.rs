//! `tlsfallback postfix serve` resolving each next hop's floor through the DNSSEC rig and the
//! MTA-STS policy server: the answers that carry DANE and MTA-STS to Postfix, `TEMP` when the
//! floor cannot be known, the drop-in `policy-table` mode, and DNS or HTTPS going down.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tlsfallback_mta::dns::{DnsSettings, DnssecMode};
use tlsfallback_mta::mta_sts::FetchSettings;
use tlsfallback_mta::postfix::floor::{Floor, FloorLookup, FloorService, FloorSettings, Target};
use tlsfallback_mta::resolve::ResolveSettings;
use tlsfallback_testkit::rig::dnssec::{ChildZone, DnssecRig, RigSpec, Signing};
use tlsfallback_testkit::rig::https::{PolicyServer, Response};

use crate::attempts::{identity, tlsa_3_1_1};
use crate::postfix_daemon::{Daemon, netstring, reply};

const ENFORCE: &str =
    "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmx: *.backup.test\nmax_age: 86400\n";

struct World {
    rig: DnssecRig,
    policies: PolicyServer,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let matching = tlsa_3_1_1(&identity().certificate);
        let policies = PolicyServer::start().unwrap();
        policies.set("sts.test", Response::policy(ENFORCE));
        policies.set(
            "testing.test",
            Response::policy("version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 86400\n"),
        );
        policies.set("down.test", Response::status(500));
        let spec = RigSpec::new()
            .child(
                ChildZone::new("dane", Signing::Signed)
                    .record("@ IN MX 10 mx")
                    .record("@ IN MX 20 mx2")
                    .record("mx IN A 127.0.0.1")
                    .record("mx2 IN A 127.0.0.1")
                    .record(format!("_25._tcp.mx IN TLSA {matching}"))
                    .record(format!("_25._tcp.mx2 IN TLSA {matching}"))
                    .record(format!("_2525._tcp.mx IN TLSA {matching}"))
                    .record(format!("_2525._tcp.mx2 IN TLSA {matching}"))
                    // One MX with DANE, one without (securely no TLSA).
                    .record("some IN MX 10 mx")
                    .record("some IN MX 20 plain")
                    .record("plain IN A 127.0.0.1")
                    // DANE and an enforced MTA-STS policy (DANE takes precedence).
                    .record("both IN MX 10 mx")
                    .record("both IN MX 20 plain")
                    .record("_mta-sts.both IN TXT \"v=STSv1; id=1\"")
                    .record("mta-sts.both IN A 127.0.0.1")
                    // Only PKIX usages: TLS required, not authenticated.
                    .record("pkix IN MX 10 pkixmx")
                    .record("pkixmx IN A 127.0.0.1")
                    .record("_25._tcp.pkixmx IN TLSA 1 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d")
                    .record("null IN MX 0 .")
                    // Every MX host's TLSA lookup fails (a CNAME into the SERVFAIL zone).
                    .record("tlsafail IN MX 10 failmx")
                    .record("failmx IN A 127.0.0.1")
                    .record("_25._tcp.failmx IN CNAME _25._tcp.mx.servfail.test."),
            )
            .child(
                ChildZone::new("sts", Signing::Unsigned)
                    .record("@ IN MX 10 mx")
                    .record("mx IN A 127.0.0.1")
                    .record("_mta-sts IN TXT \"v=STSv1; id=20261202\"")
                    .record("mta-sts IN A 127.0.0.1"),
            )
            .child(
                ChildZone::new("testing", Signing::Unsigned)
                    .record("@ IN MX 10 mx")
                    .record("mx IN A 127.0.0.1")
                    .record("_mta-sts IN TXT \"v=STSv1; id=7\"")
                    .record("mta-sts IN A 127.0.0.1"),
            )
            .child(
                ChildZone::new("down", Signing::Unsigned)
                    .record("@ IN MX 10 mx")
                    .record("mx IN A 127.0.0.1")
                    .record("_mta-sts IN TXT \"v=STSv1; id=3\"")
                    .record("mta-sts IN A 127.0.0.1"),
            )
            .child(
                ChildZone::new("insecure", Signing::Unsigned)
                    .record("@ IN MX 10 mx")
                    .record("mx IN A 127.0.0.1"),
            )
            .child(ChildZone::new("servfail", Signing::Servfail));
        policies.set("both.dane.test", Response::policy(ENFORCE));
        let rig = DnssecRig::start(&spec).expect("the DNSSEC rig starts");
        World { rig, policies }
    })
}

/// The daemon's flags for the rig: validating against the rig's root through `server`.
fn rig_flags(server: SocketAddr, mode: &str, extra: &[&str]) -> Vec<String> {
    let world = world();
    let mut flags: Vec<String> = [
        "--dns-server",
        &server.to_string(),
        "--dnssec",
        "validate",
        "--trust-anchor",
        world.rig.trust_anchor_file().to_str().unwrap(),
        "--dns-timeout-secs",
        "2",
        "--mta-sts-ca-file",
        world.policies.ca_file().to_str().unwrap(),
        "--mta-sts-port",
        &world.policies.port().to_string(),
        "--mode",
        mode,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    if !extra.contains(&"--resolve-budget-ms") {
        // Generous: a cold resolution on a loaded 2-core machine must not turn into a TEMP
        // these tests did not ask for (they assert answers, not speed).
        flags.extend(["--resolve-budget-ms".to_owned(), "8000".to_owned()]);
    }
    flags.extend(extra.iter().map(ToString::to_string));
    flags
}

fn daemon(state: &tempfile::TempDir, server: SocketAddr, mode: &str, extra: &[&str]) -> Daemon {
    let flags = rig_flags(server, mode, extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Daemon::start(&state.path().join("history.sqlite3"), None, &flags)
}

fn ask(daemon: &Daemon, key: &str) -> String {
    daemon.ask(&netstring(&format!("tlsfallback {key}")))
}

fn ask_map(daemon: &Daemon, map: &str, key: &str) -> String {
    daemon.ask(&netstring(&format!("{map} {key}")))
}

#[test]
fn every_mx_with_usable_dane_is_answered_dane_only_never_encrypt() {
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(&state, world().rig.direct_addr(), "dance", &[]);
    assert_eq!(
        ask(&daemon, "dane.test"),
        reply("OK dane-only protocols=>=TLSv1.2 ciphers=high")
    );
    // `domain:port`: the TLSA records of that port.
    assert_eq!(
        ask(&daemon, "dane.test:2525"),
        reply("OK dane-only protocols=>=TLSv1.2 ciphers=high")
    );
    // `[host]`: the host's own DANE, no MX lookup.
    assert_eq!(
        ask(&daemon, "[mx.dane.test]"),
        reply("OK dane-only protocols=>=TLSv1.2 ciphers=high")
    );
    assert!(
        daemon
            .wait_for(&["lookup=dane.test ", "floor=dane-only"])
            .contains("tier=authenticated-tls")
    );
}

#[test]
fn some_mx_with_dane_is_answered_postfix_dane_or_dane_only_when_tls_is_required() {
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(&state, world().rig.direct_addr(), "dance", &[]);
    assert_eq!(ask(&daemon, "some.dane.test"), reply("OK dane"));
    // With DANE on one MX and an enforced MTA-STS policy, `dane` would leave the other MX
    // opportunistic: dane-only keeps both floors.
    assert_eq!(
        ask(&daemon, "both.dane.test"),
        reply("OK dane-only protocols=>=TLSv1.2 ciphers=high")
    );
    // Under a profile that refuses cleartext, `dane`'s opportunistic MX would be below it.
    let state = tempfile::tempdir().unwrap();
    let policy = state.path().join("policy.toml");
    std::fs::write(&policy, "[policy]\nprofile = \"mandatory\"\n").unwrap();
    let daemon_mandatory = self::daemon(
        &state,
        world().rig.direct_addr(),
        "dance",
        &["--policy", policy.to_str().unwrap()],
    );
    assert_eq!(
        ask(&daemon_mandatory, "some.dane.test"),
        reply("OK dane-only protocols=>=TLSv1.2 ciphers=high")
    );
}

#[test]
fn mta_sts_enforce_is_answered_secure_with_the_policy_patterns_as_postfix_writes_them() {
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(&state, world().rig.direct_addr(), "dance", &[]);
    assert_eq!(
        ask(&daemon, "sts.test"),
        reply(
            "OK secure protocols=>=TLSv1.2 ciphers=high match=mx.sts.test:.backup.test \
             servername=hostname"
        )
    );
    assert!(
        daemon
            .wait_for(&["lookup=sts.test ", "floor=sts-enforce"])
            .contains("policy_id=20261202")
    );
}

#[test]
fn insecure_and_testing_destinations_get_the_dance_and_pkix_only_tlsa_requires_tls() {
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(&state, world().rig.direct_addr(), "dance", &[]);
    let modern = reply("OK encrypt protocols=>=TLSv1.2 ciphers=high");
    assert_eq!(ask(&daemon, "insecure.test"), modern);
    assert_eq!(ask(&daemon, "testing.test"), modern);
    assert_eq!(ask(&daemon, "pkix.dane.test"), modern);
    assert!(
        daemon
            .wait_for(&["lookup=insecure.test ", "floor=none"])
            .contains("tier=modern-tls")
    );
}

#[test]
fn a_floor_that_cannot_be_known_is_answered_temp_never_guessed_low() {
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(&state, world().rig.direct_addr(), "dance", &[]);
    // The MX lookup fails (SERVFAIL), or every MX host's TLSA lookup does.
    for key in ["servfail.test", "tlsafail.dane.test"] {
        let answer = ask(&daemon, key);
        assert!(
            answer.contains("TEMP tlsfallback cannot know the TLS floor"),
            "{key}: {answer}"
        );
    }
    // A null MX: Postfix bounces by itself.
    assert_eq!(ask(&daemon, "null.dane.test"), reply("NOTFOUND "));
}

#[test]
fn policy_table_mode_answers_like_postfix_mta_sts_resolver_with_dane_first() {
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(
        &state,
        world().rig.direct_addr(),
        "policy-table",
        &["--map-name", "postfix"],
    );
    assert_eq!(
        ask_map(&daemon, "postfix", "sts.test"),
        reply("OK secure match=mx.sts.test:.backup.test servername=hostname")
    );
    assert_eq!(
        ask_map(&daemon, "postfix", "dane.test"),
        reply("OK dane-only")
    );
    assert_eq!(
        ask_map(&daemon, "postfix", "some.dane.test"),
        reply("OK dane")
    );
    for key in [
        "insecure.test",
        "testing.test",
        "[127.0.0.1]:25",
        ".sts.test",
        "null.dane.test",
    ] {
        assert_eq!(
            ask_map(&daemon, "postfix", key),
            reply("NOTFOUND "),
            "{key}"
        );
    }
}

#[test]
fn tlsrpt_attributes_describe_the_mta_sts_policy_for_postfix_3_10() {
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(&state, world().rig.direct_addr(), "dance", &["--tlsrpt"]);
    let answer = ask(&daemon, "sts.test");
    assert!(
        answer.contains(
            "servername=hostname policy_type=sts policy_domain=sts.test \
             mx_host_pattern=mx.sts.test mx_host_pattern=*.backup.test \
             { policy_string = version: STSv1 } { policy_string = mode: enforce }"
        ),
        "{answer}"
    );
    let answer = ask(&daemon, "insecure.test");
    assert!(
        answer.ends_with("ciphers=high policy_type=no-policy-found policy_domain=insecure.test,"),
        "{answer}"
    );
    // A policy server that fails: the dance, reported as a fetch error.
    let answer = ask(&daemon, "down.test");
    assert!(
        answer.contains(
            "policy_type=sts policy_domain=down.test policy_failure=sts-policy-fetch-error"
        ),
        "{answer}"
    );
}

/// A DNS relay in front of a server (UDP and TCP) that can delay its answers or stop answering.
struct DnsRelay {
    address: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

impl DnsRelay {
    fn start(target: SocketAddr) -> Self {
        // A free UDP port's TCP twin may be taken by another test: try another port then.
        let (udp, address, tcp) = (0..64)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let address = udp.local_addr().ok()?;
                let tcp = TcpListener::bind(address).ok()?;
                Some((udp, address, tcp))
            })
            .expect("a loopback port free for both UDP and TCP");
        let delay_ms = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicBool::new(false));
        {
            let (delay_ms, down) = (Arc::clone(&delay_ms), Arc::clone(&down));
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_535];
                while let Ok((len, from)) = udp.recv_from(&mut buf) {
                    let query = buf[..len].to_vec();
                    let (udp, delay_ms, down) = (
                        udp.try_clone().unwrap(),
                        Arc::clone(&delay_ms),
                        Arc::clone(&down),
                    );
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst)));
                        if down.load(Ordering::SeqCst) {
                            return;
                        }
                        let upstream = UdpSocket::bind("127.0.0.1:0").unwrap();
                        upstream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        upstream.send_to(&query, target).unwrap();
                        let mut answer = [0u8; 65_535];
                        if let Ok(len) = upstream.recv(&mut answer) {
                            let _ = udp.send_to(&answer[..len], from);
                        }
                    });
                }
            });
        }
        {
            let (delay_ms, down) = (Arc::clone(&delay_ms), Arc::clone(&down));
            std::thread::spawn(move || {
                for stream in tcp.incoming().flatten() {
                    let (delay_ms, down) = (Arc::clone(&delay_ms), Arc::clone(&down));
                    std::thread::spawn(move || relay_tcp(stream, target, &delay_ms, &down));
                }
            });
        }
        Self {
            address,
            delay_ms,
            down,
        }
    }
}

fn relay_tcp(mut client: TcpStream, target: SocketAddr, delay_ms: &AtomicU64, down: &AtomicBool) {
    let Ok(mut upstream) = TcpStream::connect(target) else {
        return;
    };
    loop {
        let mut len = [0u8; 2];
        if client.read_exact(&mut len).is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if client.read_exact(&mut query).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst)));
        if down.load(Ordering::SeqCst) {
            return;
        }
        let mut answer_len = [0u8; 2];
        if upstream.write_all(&len).is_err()
            || upstream.write_all(&query).is_err()
            || upstream.read_exact(&mut answer_len).is_err()
        {
            return;
        }
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(answer_len))];
        if upstream.read_exact(&mut answer).is_err()
            || client.write_all(&answer_len).is_err()
            || client.write_all(&answer).is_err()
        {
            return;
        }
    }
}

#[test]
fn dns_down_gets_temp_within_the_budget_and_slow_dns_within_it_gets_the_floor() {
    let relay = DnsRelay::start(world().rig.direct_addr());
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(
        &state,
        relay.address,
        "dance",
        &["--resolve-budget-ms", "8000"],
    );
    // Slow: every query waits 40 ms. A cold resolution validates from the root (DNSKEY and DS
    // of each zone, MX, A, AAAA, TLSA, the MTA-STS TXT: a few dozen queries), well within the
    // budget.
    relay.delay_ms.store(40, Ordering::SeqCst);
    assert_eq!(
        ask(&daemon, "dane.test"),
        reply("OK dane-only protocols=>=TLSv1.2 ciphers=high")
    );
    // Down: a domain never resolved before is TEMP, never answered from a guess.
    relay.down.store(true, Ordering::SeqCst);
    let answer = ask(&daemon, "sts.test");
    assert!(
        answer.contains("TEMP tlsfallback cannot know the TLS floor of sts.test"),
        "{answer}"
    );
    // The floor known before the outage still holds.
    assert_eq!(
        ask(&daemon, "dane.test"),
        reply("OK dane-only protocols=>=TLSv1.2 ciphers=high")
    );
}

#[test]
fn dns_down_after_the_floor_was_known_keeps_it_through_refreshes() {
    let relay = DnsRelay::start(world().rig.direct_addr());
    let state = tempfile::tempdir().unwrap();
    let daemon = daemon(&state, relay.address, "dance", &["--refresh-secs", "1"]);
    let dane_only = reply("OK dane-only protocols=>=TLSv1.2 ciphers=high");
    assert_eq!(ask(&daemon, "dane.test"), dane_only);
    relay.down.store(true, Ordering::SeqCst);
    // Past the refresh time, the refresh fails in the background: the known floor is answered,
    // not a weaker one, and not TEMP.
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        assert_eq!(ask(&daemon, "dane.test"), dane_only);
        std::thread::sleep(Duration::from_millis(700));
    }
}

#[test]
fn an_mta_sts_policy_server_going_down_keeps_the_cached_enforce_floor() {
    let world = world();
    let state = tempfile::tempdir().unwrap();
    let secure = reply(
        "OK secure protocols=>=TLSv1.2 ciphers=high match=mx.sts.test:.backup.test \
         servername=hostname",
    );
    {
        let daemon = daemon(&state, world.rig.direct_addr(), "dance", &[]);
        assert_eq!(ask(&daemon, "sts.test"), secure);
    }
    // A new daemon on the same database (a restart) while the policy server is down: the
    // cached policy (RFC 8461 section 5.1) still applies.
    world.policies.set("sts.test", Response::status(503));
    let daemon = daemon(&state, world.rig.direct_addr(), "dance", &[]);
    let answer = ask(&daemon, "sts.test");
    world.policies.set("sts.test", Response::policy(ENFORCE));
    assert_eq!(answer, secure);
}

fn floor_settings(server: SocketAddr, db: std::path::PathBuf) -> FloorSettings {
    let world = world();
    let mut settings = FloorSettings::new(
        ResolveSettings {
            dns: DnsSettings {
                server: Some(server),
                dnssec: DnssecMode::Validate,
                trust_anchor: Some(world.rig.trust_anchor_file()),
                timeout: Duration::from_secs(2),
                ..DnsSettings::default()
            },
            fetch: FetchSettings {
                port: world.policies.port(),
                ca_file: Some(world.policies.ca_file().to_owned()),
                ..FetchSettings::default()
            },
            port: 25,
        },
        db,
    );
    settings.budget = Duration::from_millis(50);
    settings
}

#[test]
fn a_flood_of_lookups_for_unknown_domains_is_bounded_in_memory_and_concurrency() {
    let relay = DnsRelay::start(world().rig.direct_addr());
    relay.down.store(true, Ordering::SeqCst);
    let state = tempfile::tempdir().unwrap();
    let mut settings = floor_settings(relay.address, state.path().join("h.sqlite3"));
    settings.max_entries = 500;
    settings.max_queued = 64;
    settings.workers = 2;
    let floors = FloorService::start(settings).unwrap();
    let mut refused = 0;
    for i in 0..5_000 {
        let target = Target::of(&format!("flood{i}.example"));
        match floors.lookup(&target) {
            FloorLookup::NotYet { why } if why.contains("waiting to be resolved") => refused += 1,
            FloorLookup::NotYet { .. } => {}
            other => panic!("an unknown domain with DNS down got {other:?}"),
        }
        let (entries, queued) = floors.sizes();
        assert!(
            entries <= 500 && queued <= 64,
            "{entries} entries, {queued} queued"
        );
    }
    assert!(refused > 0, "the queue limit was never reached");
    // With DNS back, a known destination is resolved again.
    relay.down.store(false, Ordering::SeqCst);
    drop(floors);
    let mut settings = floor_settings(relay.address, state.path().join("h.sqlite3"));
    settings.budget = Duration::from_secs(5);
    let floors = FloorService::start(settings).unwrap();
    match floors.lookup(&Target::of("dane.test")) {
        FloorLookup::Known(resolved) => assert_eq!(resolved.floor, Floor::DaneEvery),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_floor_in_use_is_refreshed_before_it_goes_stale_without_a_lookup_waiting() {
    let state = tempfile::tempdir().unwrap();
    let mut settings = floor_settings(world().rig.direct_addr(), state.path().join("h.sqlite3"));
    settings.budget = Duration::from_secs(5);
    settings.refresh_after = Duration::from_millis(100);
    settings.sweep_every = Duration::from_millis(50);
    let floors = FloorService::start(settings).unwrap();
    match floors.lookup(&Target::of("dane.test")) {
        FloorLookup::Known(resolved) => assert_eq!(resolved.floor, Floor::DaneEvery),
        other => panic!("{other:?}"),
    }
    assert_eq!(floors.resolutions(), 1);
    // No lookup asks: the idle workers refresh it when it is due (bounded wait, 10 s).
    for _ in 0..200 {
        if floors.resolutions() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        floors.resolutions() >= 3,
        "{} resolutions",
        floors.resolutions()
    );
}
