//! A real sending Postfix 3.7 doing DANE itself (`smtp_tls_security_level = dane`,
//! `smtp_dns_support_level = dnssec`), its libc resolver pointed at the DNSSEC rig's validating
//! unbound (a private `/etc/resolv.conf`, `rig::resolv::with_resolv_conf`): first without our map (what
//! plain Postfix does, which proves the rig), then with `tlsfallback postfix serve` as its
//! `smtp_tls_policy_maps`, which must never make a destination weaker than plain Postfix leaves
//! it, and must still dance where there is no floor.
//!
//! Each domain `D.test` has one MX host, `mx.D.test` at 127.0.0.1, and a local peer on a port of
//! its own; the sender's transport table routes `D.test` to `smtp:D.test:PORT`, so Postfix looks
//! the MX up, connects to PORT and looks TLSA up at `_PORT._tcp.mx.D.test` (RFC 7672). Ports
//! other than 25 also keep Postfix's "mail loops back to myself" check (an MX at one of its own
//! addresses) out of the way.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tlsfallback_mta::postfix::ListenAddress;
use tlsfallback_testkit::peers::{Identity, LocalPeer, PeerKind, Received, StrippingProxy};
use tlsfallback_testkit::rig::dnssec::{
    ChildZone, DnssecRig, RigSpec, Signing, unique_loopback_ip,
};
use tlsfallback_testkit::rig::https::{PolicyServer, Response};

use crate::attempts::{identity, tlsa_3_1_1};
use crate::postfix::Instance;
use crate::postfix_daemon::{Daemon, send};

/// The peers, the policy server and the rig whose names lead to them, shared by the module.
struct World {
    /// `dane.test`: signed, its TLSA record matches the peer's key.
    dane: LocalPeer,
    /// `mismatch.test`: signed, its TLSA record matches another key.
    mismatch: LocalPeer,
    /// `sts.test`: unsigned, MTA-STS enforce for `mx.sts.test`; the peer's certificate is for
    /// `other.example`, issued by a CA the sender trusts ([`World::sender_ca`]).
    sts_wrong_name: LocalPeer,
    /// `legacy.test`: unsigned, no MTA-STS, TLS 1.0 only.
    legacy: LocalPeer,
    /// `pinned.test`: unsigned, no MTA-STS, a modern peer behind a proxy that strips STARTTLS
    /// once told to.
    pinned: LocalPeer,
    stripper: StrippingProxy,
    /// The CA file of the sending Postfix (`smtp_tls_CAfile`): trusts the `sts.test` peer's
    /// certificate, so only its name is wrong.
    sender_ca: PathBuf,
    policies: PolicyServer,
    rig: DnssecRig,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let dane = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
        let mismatch = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
        let other = Identity::self_signed("other.example").unwrap();
        let sender_ca = dir.path().join("sender-ca.pem");
        std::fs::write(&sender_ca, other.certificate.to_pem().unwrap()).unwrap();
        let sts_wrong_name = LocalPeer::start(PeerKind::Modern, &other).unwrap();
        let legacy = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
        let pinned = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
        let stripper = StrippingProxy::start(pinned.address).unwrap();
        let policies = PolicyServer::start().unwrap();
        policies.set(
            "sts.test",
            Response::policy("version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n"),
        );
        let matching = tlsa_3_1_1(&identity().certificate);
        let wrong = "3 1 1 0000000000000000000000000000000000000000000000000000000000000000";
        // Each domain publishes a TLSRPT record: only the daemon started with --tlsrpt-socket
        // looks it up.
        let mx = |label: &str, signing: Signing| {
            ChildZone::new(label, signing)
                .record("@ IN MX 10 mx")
                .record("mx IN A 127.0.0.1")
                .record(format!(
                    "_smtp._tls IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@{label}.test\""
                ))
        };
        let tlsa = |peer: &LocalPeer, data: &str| {
            format!("_{}._tcp.mx IN TLSA {data}", peer.address.port())
        };
        let spec = RigSpec::new()
            .child(mx("dane", Signing::Signed).record(tlsa(&dane, &matching)))
            .child(mx("mismatch", Signing::Signed).record(tlsa(&mismatch, wrong)))
            .child(
                mx("sts", Signing::Unsigned)
                    .record("_mta-sts IN TXT \"v=STSv1; id=20261202\"")
                    .record("mta-sts IN A 127.0.0.1"),
            )
            .child(mx("legacy", Signing::Unsigned))
            .child(mx("pinned", Signing::Unsigned))
            .resolver_on(unique_loopback_ip().expect("a loopback address with port 53 free"));
        let rig = DnssecRig::start(&spec).expect("the DNSSEC rig starts");
        World {
            dane,
            mismatch,
            sts_wrong_name,
            legacy,
            pinned,
            stripper,
            sender_ca,
            policies,
            rig,
            _dir: dir,
        }
    })
}

impl World {
    fn resolver(&self) -> Ipv4Addr {
        self.rig.resolver_ip().expect("the rig listens on IP:53")
    }

    /// `D.test smtp:D.test:PORT` for each route, as the sender's transport table has it.
    fn transport(routes: &[(&str, u16)]) -> String {
        routes
            .iter()
            .map(|(domain, port)| format!("{domain} smtp:{domain}:{port}\n"))
            .collect()
    }
}

/// Where a sending Postfix's TLS policy comes from, besides its own DANE.
enum Policy<'a> {
    /// Nothing else: plain Postfix.
    Plain,
    /// A static policy table (`texthash`), one `NEXTHOP POLICY` line each.
    Table(&'a [&'a str]),
    /// Our map at this address, with the lines `postfix config` prints.
    Ours(&'a ListenAddress),
}

/// A sending Postfix that does DANE itself, resolving through the rig, its TLS policy table
/// `policy`.
fn dane_sender(routes: &[(&str, u16)], policy: &Policy<'_>) -> Instance {
    let world = world();
    let transport = World::transport(routes);
    let ca = world.sender_ca.display().to_string();
    Instance::start_with_resolver(
        "sender.test",
        Some(world.resolver()),
        &|r| {
            std::fs::write(format!("{r}/transport"), &transport).unwrap();
            let policy_lines = match policy {
                Policy::Plain => "smtp_tls_loglevel = 1\n".to_owned(),
                Policy::Table(lines) => {
                    let table: String = lines.iter().map(|l| format!("{l}\n")).collect();
                    std::fs::write(format!("{r}/tls_policy"), table).unwrap();
                    format!(
                        "smtp_tls_loglevel = 1\nsmtp_tls_policy_maps = texthash:{r}/tls_policy\n"
                    )
                }
                Policy::Ours(address) => {
                    tlsfallback_cli::commands::postfix::config_text(address, "tlsfallback", None)
                }
            };
            format!(
                "master_service_disable = inet
transport_maps = texthash:{r}/transport
smtp_dns_support_level = dnssec
smtp_tls_security_level = dane
smtp_tls_CAfile = {ca}
{policy_lines}"
            )
        },
        &|_| String::new(),
    )
}

/// A DANE-doing sender whose TLS policy comes from the daemon, which resolves through the rig's
/// unbound (`--dnssec trust-ad`) and follows the sender's log.
struct Scene {
    sender: Instance,
    daemon: Daemon,
    _state: tempfile::TempDir,
}

impl Scene {
    fn start(routes: &[(&str, u16)]) -> Self {
        Self::start_with(routes, &[])
    }

    /// As [`start`](Self::start), the daemon given `extra` flags too.
    fn start_with(routes: &[(&str, u16)], extra: &[&str]) -> Self {
        let world = world();
        let state = tempfile::tempdir().unwrap();
        let db = state.path().join("history.sqlite3");
        let policy = state.path().join("policy.toml");
        std::fs::write(&policy, "[policy]\nstep_down_delay_secs = 0\n").unwrap();
        // The sender needs the daemon's port and the daemon the sender's log: the daemon follows
        // a link that points at the log once the sender exists.
        let daemon_log = state.path().join("maillog-link");
        let unbound = world.rig.unbound_addr().to_string();
        let sts_port = world.policies.port().to_string();
        let mut args = vec![
            "--dns-server",
            &unbound,
            "--dnssec",
            "trust-ad",
            // Generous: a cold resolution on a loaded 2-core machine must not turn into a
            // TEMP these tests did not ask for (they assert answers, not speed).
            "--resolve-budget-ms",
            "8000",
            "--mta-sts-ca-file",
            world.policies.ca_file().to_str().unwrap(),
            "--mta-sts-port",
            &sts_port,
            "--policy",
            policy.to_str().unwrap(),
        ];
        args.extend(extra);
        let daemon = Daemon::start(&db, Some(&daemon_log), &args);
        let sender = dane_sender(routes, &Policy::Ours(&daemon.address()));
        std::os::unix::fs::symlink(sender.root().join("maillog"), &daemon_log).unwrap();
        Self {
            sender,
            daemon,
            _state: state,
        }
    }
}

/// The sender's status lines for `recipient` so far.
fn status_lines(sender: &Instance, recipient: &str) -> Vec<String> {
    let to = format!("to=<{recipient}>");
    sender
        .log()
        .lines()
        .filter(|l| l.contains(&to) && l.contains(" status="))
        .map(str::to_owned)
        .collect()
}

/// Waits for the `n`th status line for `recipient` and returns it.
fn nth_status(sender: &Instance, recipient: &str, n: usize) -> String {
    sender.wait_for(
        || status_lines(sender, recipient).len() >= n,
        &format!("status line {n} for {recipient}"),
    );
    status_lines(sender, recipient).swap_remove(n - 1)
}

/// The messages `peer` accepted with `subject`.
fn received_with_subject(peer: &LocalPeer, subject: &str) -> Vec<Received> {
    let header = format!("Subject: {subject}");
    peer.messages()
        .into_iter()
        .filter(|m| String::from_utf8_lossy(&m.data).contains(&header))
        .collect()
}

/// A subject no other test of the module uses (the peers are shared).
fn subject(test: &str) -> String {
    format!("{test} {}", std::process::id())
}

/// The line Postfix writes when a DANE-authenticated TLS session is up.
fn verified_line(host: &str, port: u16) -> String {
    format!("Verified TLS connection established to {host}[127.0.0.1]:{port}: ")
}

#[test]
fn plain_postfix_with_dane_verifies_a_dane_destination() {
    let world = world();
    let port = world.dane.address.port();
    let sender = dane_sender(&[("dane.test", port)], &Policy::Plain);
    let subject = subject("plain dane");
    send(&sender, "user@dane.test", &subject);
    let status = nth_status(&sender, "user@dane.test", 1);
    assert!(status.contains("status=sent"), "{}", sender.log());
    assert!(
        sender.log().contains(&verified_line("mx.dane.test", port)),
        "{}",
        sender.log()
    );
    let received = received_with_subject(&world.dane, &subject);
    assert_eq!(received.len(), 1);
    assert!(received[0].tls.is_some());

    // Started in a mount namespace of its own, Postfix is still stopped from outside (by the
    // pid file in its queue directory) when the instance is dropped.
    let pid_file = sender.root().join("queue/pid/master.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists(), "the master runs as {pid}");
    drop(sender);
    for _ in 0..100 {
        if !proc_dir.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !proc_dir.exists(),
        "Postfix's master {pid} outlived `postfix stop`"
    );
}

#[test]
fn plain_postfix_with_dane_defers_a_tlsa_mismatch() {
    let world = world();
    let port = world.mismatch.address.port();
    let sender = dane_sender(&[("mismatch.test", port)], &Policy::Plain);
    let subject = subject("plain mismatch");
    send(&sender, "user@mismatch.test", &subject);
    let status = nth_status(&sender, "user@mismatch.test", 1);
    assert!(status.contains("status=deferred"), "{}", sender.log());
    assert!(
        !sender.log().contains("Verified TLS connection"),
        "{}",
        sender.log()
    );
    assert!(received_with_subject(&world.mismatch, &subject).is_empty());
}

#[test]
fn plain_postfix_with_dane_sends_an_mta_sts_enforce_destination_to_a_wrong_name_certificate() {
    // What our map adds: plain Postfix knows nothing of MTA-STS, and an insecure zone leaves it
    // opportunistic, so the certificate for another name gets the mail.
    let world = world();
    let port = world.sts_wrong_name.address.port();
    let sender = dane_sender(&[("sts.test", port)], &Policy::Plain);
    let subject = subject("plain sts");
    send(&sender, "user@sts.test", &subject);
    let status = nth_status(&sender, "user@sts.test", 1);
    assert!(status.contains("status=sent"), "{}", sender.log());
    assert_eq!(
        received_with_subject(&world.sts_wrong_name, &subject).len(),
        1
    );
}

#[test]
fn plain_postfix_with_a_secure_policy_defers_a_wrong_name_certificate() {
    // The answer postfix-mta-sts-resolver gives for an MTA-STS enforce policy, from a static
    // table: what Postfix does and logs with it, ours or not.
    let world = world();
    let port = world.sts_wrong_name.address.port();
    let line = format!("sts.test:{port} secure match=mx.sts.test servername=hostname");
    let sender = dane_sender(&[("sts.test", port)], &Policy::Table(&[&line]));
    let subject = subject("table sts");
    send(&sender, "user@sts.test", &subject);
    let status = nth_status(&sender, "user@sts.test", 1);
    assert!(
        status.contains("status=deferred (Server certificate not verified)"),
        "{}",
        sender.log()
    );
    assert!(received_with_subject(&world.sts_wrong_name, &subject).is_empty());
}

/// How the daemon's line for an outcome of `key` starts (the tests also ask for
/// `attributed_by=process`: booked for the answer the very Postfix process that made the attempt
/// got).
fn outcome_of(key: &str) -> String {
    format!("outcome={key} ")
}

/// The daemon's lookup lines for the next hop `key`.
fn lookups(daemon: &Daemon, key: &str) -> Vec<String> {
    daemon.matching(&[&format!("lookup={key} ")])
}

/// That no answer for `key` let Postfix use `encrypt` or `none` (its own DANE replaced).
fn assert_never_encrypt_or_none(daemon: &Daemon, key: &str) {
    let lookups = lookups(daemon, key);
    assert!(!lookups.is_empty(), "{:?}", daemon.lines());
    assert!(
        lookups
            .iter()
            .all(|l| !l.contains("answer=\"OK encrypt") && !l.contains("answer=\"OK none")),
        "{lookups:?}"
    );
}

#[test]
fn dane_destination_is_verified_through_our_map_never_sent_with_encrypt_or_none() {
    let world = world();
    let port = world.dane.address.port();
    let Scene { sender, daemon, .. } = &Scene::start(&[("dane.test", port)]);
    let key = format!("dane.test:{port}");
    let subject = subject("mapped dane");
    send(sender, "user@dane.test", &subject);
    let status = nth_status(sender, "user@dane.test", 1);
    assert!(status.contains("status=sent"), "{}", sender.log());
    assert!(
        sender.log().contains(&verified_line("mx.dane.test", port)),
        "{}",
        sender.log()
    );
    assert_eq!(received_with_subject(&world.dane, &subject).len(), 1);
    let lookup = daemon.wait_for(&[&format!("lookup={key} ")]);
    assert!(lookup.contains("floor=dane-only"), "{lookup}");
    assert!(lookup.contains("answer=\"OK dane-only"), "{lookup}");
    assert_never_encrypt_or_none(daemon, &key);
    daemon.wait_for(&[
        &outcome_of(&key),
        "attributed_by=process",
        "result=success",
        "next=done",
    ]);
}

/// Sends a message to `domain` (routed to `port`) and checks what the floor makes of a
/// certificate that fails it: Postfix defers, the daemon books `result` for the very process that
/// tried, Postfix's retry is deferred again, and every lookup answered `floor` with each of
/// `answer_parts`, never `encrypt` or `none`. Returns the message's subject.
fn deferred_twice_under_the_floor(
    scene: &Scene,
    domain: &str,
    port: u16,
    result: &str,
    floor: &str,
    answer_parts: &[&str],
) -> String {
    let Scene { sender, daemon, .. } = scene;
    let key = format!("{domain}:{port}");
    let recipient = format!("user@{domain}");
    let subject = subject(&format!("mapped {domain}"));
    send(sender, &recipient, &subject);
    let first = nth_status(sender, &recipient, 1);
    assert!(first.contains("status=deferred"), "{}", sender.log());
    daemon.wait_for(&[&outcome_of(&key), "attributed_by=process", result]);
    // Postfix's retry: the floor holds, deferred again, never sent.
    sender.command("postqueue", &["-f"], "");
    let second = nth_status(sender, &recipient, 2);
    assert!(second.contains("status=deferred"), "{}", sender.log());
    let lookups = lookups(daemon, &key);
    assert!(lookups.len() >= 2, "{lookups:?}");
    assert!(
        lookups.iter().all(|l| l.contains(&format!("floor={floor}"))
            && answer_parts.iter().all(|part| l.contains(part))),
        "{lookups:?}"
    );
    assert_never_encrypt_or_none(daemon, &key);
    subject
}

#[test]
fn dane_mismatch_is_deferred_through_our_map() {
    let world = world();
    let port = world.mismatch.address.port();
    let scene = Scene::start(&[("mismatch.test", port)]);
    let subject = deferred_twice_under_the_floor(
        &scene,
        "mismatch.test",
        port,
        "result=\"certificate-error dane-mismatch\"",
        "dane-only",
        &["answer=\"OK dane-only"],
    );
    assert!(
        !scene.sender.log().contains("Verified TLS connection"),
        "{}",
        scene.sender.log()
    );
    assert!(received_with_subject(&world.mismatch, &subject).is_empty());
}

#[test]
fn mta_sts_enforce_wrong_name_certificate_is_deferred() {
    let world = world();
    let port = world.sts_wrong_name.address.port();
    let scene = Scene::start(&[("sts.test", port)]);
    let subject = deferred_twice_under_the_floor(
        &scene,
        "sts.test",
        port,
        "result=\"certificate-error name-mismatch\"",
        "sts-enforce",
        &[
            "answer=\"OK secure",
            "match=mx.sts.test",
            "servername=hostname",
        ],
    );
    assert!(received_with_subject(&world.sts_wrong_name, &subject).is_empty());
    assert!(world.policies.requests("sts.test") >= 1);
}

#[test]
fn insecure_tls10_only_destination_still_gets_the_legacy_dance() {
    let world = world();
    let port = world.legacy.address.port();
    let Scene { sender, daemon, .. } = &Scene::start(&[("legacy.test", port)]);
    let key = format!("legacy.test:{port}");
    let subject = subject("mapped legacy");
    send(sender, "user@legacy.test", &subject);
    // Modern TLS first: the peer's protocol_version alert, deferred (Postfix was told `encrypt`,
    // so it does not fall back on its own).
    let first = nth_status(sender, "user@legacy.test", 1);
    assert!(
        first.contains("status=deferred (Cannot start TLS: handshake failure)"),
        "{}",
        sender.log()
    );
    daemon.wait_for(&[
        &outcome_of(&key),
        "attributed_by=process",
        "tier=modern-tls",
        "result=\"tls-alert protocol-version\"",
        "next=\"attempt legacy-tls\"",
    ]);
    // Postfix's retry is the dance's next step: legacy TLS.
    sender.command("postqueue", &["-f"], "");
    let second = nth_status(sender, "user@legacy.test", 2);
    assert!(second.contains("status=sent"), "{}", sender.log());
    let received = received_with_subject(&world.legacy, &subject);
    assert_eq!(received.len(), 1);
    let (version, _) = received[0].tls.clone().expect("over TLS");
    assert_eq!(version, "TLSv1");
    let lookups = lookups(daemon, &key);
    assert!(
        lookups.iter().all(|l| l.contains("floor=none")),
        "{lookups:?}"
    );
    assert!(
        lookups
            .last()
            .is_some_and(|l| l.contains("tier=legacy-tls") && l.contains("ciphers=low")),
        "{lookups:?}"
    );
}

#[test]
fn stripping_proxy_in_front_of_a_pinned_destination_gets_zero_cleartext_messages() {
    let world = world();
    let port = world.stripper.address.port();
    let Scene { sender, daemon, .. } = &Scene::start(&[("pinned.test", port)]);
    let key = format!("pinned.test:{port}");

    // First contact through the honest proxy: TLS works, the destination is pinned.
    let before = subject("before the attack");
    send(sender, "user@pinned.test", &before);
    let first = nth_status(sender, "user@pinned.test", 1);
    assert!(first.contains("status=sent"), "{}", sender.log());
    daemon.wait_for(&[
        &outcome_of(&key),
        "attributed_by=process",
        "result=success",
        "next=done",
    ]);

    // The attacker strips STARTTLS from now on.
    world.stripper.strip();
    let during = subject("during the attack");
    send(sender, "user@pinned.test", &during);
    let second = nth_status(sender, "user@pinned.test", 2);
    assert!(
        second.contains("status=deferred (TLS is required, but was not offered by host"),
        "{}",
        sender.log()
    );
    daemon.wait_for(&[
        &outcome_of(&key),
        "attributed_by=process",
        "result=starttls-not-offered",
        "next=defer",
    ]);
    // Postfix retries; the daemon still answers TLS, never `none`.
    sender.command("postqueue", &["-f"], "");
    let third = nth_status(sender, "user@pinned.test", 3);
    assert!(third.contains("status=deferred"), "{}", sender.log());
    let lookups = lookups(daemon, &key);
    assert!(lookups.len() >= 3, "{lookups:?}");
    assert!(
        lookups
            .iter()
            .all(|l| l.contains("floor=none") && l.contains("answer=\"OK encrypt")),
        "{lookups:?}"
    );
    // Nothing reached the peer in cleartext: only the message from before the attack, over TLS.
    let received: Vec<Received> = world
        .pinned
        .messages()
        .into_iter()
        .filter(|m| {
            let data = String::from_utf8_lossy(&m.data);
            data.contains(&before) || data.contains(&during)
        })
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].tls.is_some());
    assert!(String::from_utf8_lossy(&received[0].data).contains(&before));
}

/// A Postfix without libtlsrpt (Debian's 3.7) behind our map: the daemon reports what its log
/// shows to the real tlsrpt-collectd, one final result per dance, and the real fetcher sees the
/// day's counts per policy.
#[test]
fn the_daemon_reports_postfix_dances_to_the_real_tlsrpt_collectd() {
    use tlsfallback_testkit::rig::tlsrpt_reporter::{Collectd, fetch};
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let mut collectd = Collectd::start(dir.path()).expect("tlsrpt-collectd starts");
    let socket = collectd.socket().to_str().unwrap().to_owned();
    let legacy = world.legacy.address.port();
    let mismatch = world.mismatch.address.port();
    let Scene { sender, daemon, .. } = &Scene::start_with(
        &[("legacy.test", legacy), ("mismatch.test", mismatch)],
        &["--tlsrpt-socket", &socket],
    );
    // The legacy dance: modern refused, deferred; Postfix's retry at legacy TLS delivers. One
    // attempt, one success: the refused step was recovered from.
    send(sender, "user@legacy.test", &subject("reported legacy"));
    nth_status(sender, "user@legacy.test", 1);
    daemon.wait_for(&[
        &outcome_of(&format!("legacy.test:{legacy}")),
        "next=\"attempt legacy-tls\"",
    ]);
    sender.command("postqueue", &["-f"], "");
    assert!(nth_status(sender, "user@legacy.test", 2).contains("status=sent"));
    daemon.wait_for(&[
        &outcome_of(&format!("legacy.test:{legacy}")),
        "tier=legacy-tls",
        "next=done",
    ]);
    // The DANE mismatch: dane-only, the TLSA record matches nothing, deferred: a failure.
    send(sender, "user@mismatch.test", &subject("reported mismatch"));
    nth_status(sender, "user@mismatch.test", 1);
    daemon.wait_for(&[
        &outcome_of(&format!("mismatch.test:{mismatch}")),
        "next=defer",
    ]);
    collectd.wait_received(2).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(collectd.received(), 2, "{}", collectd.log());
    assert!(
        !daemon
            .lines()
            .iter()
            .any(|l| l.contains("TLS-RPT result dropped")),
        "{:#?}",
        daemon.lines()
    );
    collectd.roll_over().unwrap();
    let now = tlsfallback_mta::clock::Clock::now(&tlsfallback_mta::clock::SystemClock);
    let yesterday = tlsfallback_mta::tlsrpt::ledger::utc_day(now - 86_400);
    let counts = |domain: &str| -> (serde_json::Value, serde_json::Value) {
        let details: serde_json::Value =
            serde_json::from_str(&fetch(collectd.storage(), &yesterday, domain).unwrap()).unwrap();
        let record = format!("v=TLSRPTv1; rua=mailto:tlsrpt@{domain}");
        let policies = details["policies"][record.as_str()]
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(policies.len(), 1, "{details:#}");
        let (policy, counts) = policies.into_iter().next().unwrap();
        (serde_json::from_str(&policy).unwrap(), counts)
    };
    let (policy, tally) = counts("legacy.test");
    assert_eq!(policy["policy-type"], 9, "{policy}");
    assert_eq!(
        (tally["cntrtotal"].as_u64(), tally["cntrfailure"].as_u64()),
        (Some(1), Some(0))
    );
    let (policy, tally) = counts("mismatch.test");
    assert_eq!(policy["policy-type"], 1, "{policy}");
    assert_eq!(
        (tally["cntrtotal"].as_u64(), tally["cntrfailure"].as_u64()),
        (Some(1), Some(1))
    );
    let failures: Vec<serde_json::Value> = tally["failures"]
        .as_object()
        .unwrap()
        .keys()
        .map(|failure| serde_json::from_str(failure).unwrap())
        .collect();
    assert_eq!(failures.len(), 1, "{tally:#}");
    assert_eq!(failures[0]["c"], 205, "validation-failure: {tally:#}");
    assert_eq!(failures[0]["n"], "mx.mismatch.test", "{tally:#}");
    assert_eq!(failures[0]["r"], "127.0.0.1", "{tally:#}");
}
