//! The daemon's deciding half in process, fed lookups from given client PIDs and log lines as
//! Postfix writes them: which delivery an outcome belongs to, and when a dance goes on.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::NativeEngine;
use tlsfallback_mta::postfix::floor::{
    DestinationReport, Floor, FloorLookup, FloorSource, ResolvedFloor, Target,
};
use tlsfallback_mta::postfix::log::Tracker;
use tlsfallback_mta::postfix::socketmap::Reply;
use tlsfallback_mta::postfix::{Daemon, DaemonOptions};
use tlsfallback_mta::store::HistoryStore;

const START: u64 = 1_767_225_600;
const MODERN: &str = "encrypt protocols=>=TLSv1.2 ciphers=high";
const LEGACY: &str = "encrypt protocols=>=TLSv1:<=TLSv1.2 ciphers=low";

/// Runs `scene` against a daemon over the database at `db` with `policy`; returns the daemon's
/// log lines. `tlsrpt`: the daemon reports TLS-RPT, to this collectd socket if given.
fn with_daemon(
    db: &std::path::Path,
    policy: &str,
    time: &Rc<Cell<u64>>,
    scene: impl FnOnce(&mut Scene<'_>),
) -> Vec<String> {
    run_daemon(db, policy, time, None, None, scene)
}

/// As [`with_daemon`], with the next hops' floors from `floors` when given.
fn run_daemon(
    db: &std::path::Path,
    policy: &str,
    time: &Rc<Cell<u64>>,
    floors: Option<Arc<dyn FloorSource>>,
    tlsrpt: Option<Option<&std::path::Path>>,
    scene: impl FnOnce(&mut Scene<'_>),
) -> Vec<String> {
    let store = HistoryStore::open(db).unwrap();
    run_daemon_on(store, policy, time, floors, tlsrpt, scene)
}

/// As [`run_daemon`], over `store` as given (a fleet attached, say).
fn run_daemon_on(
    store: HistoryStore,
    policy: &str,
    time: &Rc<Cell<u64>>,
    floors: Option<Arc<dyn FloorSource>>,
    tlsrpt: Option<Option<&std::path::Path>>,
    scene: impl FnOnce(&mut Scene<'_>),
) -> Vec<String> {
    let policy = PolicyFile::parse(policy).unwrap();
    let mut lines = Vec::new();
    let mut log = |event: &tlsfallback_mta::postfix::events::Event| lines.push(event.to_string());
    let mut daemon = Daemon::new(
        Box::new(NativeEngine),
        store,
        policy,
        DaemonOptions::default(),
        &mut log,
    )
    .unwrap();
    if let Some(floors) = floors {
        daemon = daemon.with_floors(floors);
    }
    if let Some(socket) = tlsrpt {
        let client =
            socket.map(|path| tlsfallback_mta::tlsrpt::client::TlsRptClient::new(path).unwrap());
        daemon = daemon.with_tlsrpt(client);
    }
    scene(&mut Scene {
        daemon,
        tracker: Tracker::default(),
        time: Rc::clone(time),
    });
    lines
}

/// The service and the simulated time it is driven at (a field of the test, as in quinn-proto's).
struct Scene<'a> {
    daemon: Daemon<'a>,
    tracker: Tracker,
    time: Rc<Cell<u64>>,
}

impl Scene<'_> {
    /// The policy answered to process `pid` (`None`: unknown) for `key`.
    fn lookup(&mut self, key: &str, pid: Option<u32>) -> String {
        match self.daemon.answer(
            format!("tlsfallback {key}").as_bytes(),
            pid,
            self.time.get(),
        ) {
            Reply::Found(policy) => policy,
            other => format!("{other:?}"),
        }
    }

    fn log(&mut self, lines: &[String]) {
        self.daemon
            .observe("maillog", lines, None, &mut self.tracker, self.time.get())
            .unwrap();
    }
}

/// The lines Postfix logs for one attempt of process `pid` to 127.0.0.1:`port` for `domain`.
pub(crate) fn attempt(
    pid: u32,
    port: u16,
    queue_id: &str,
    rcpt: &str,
    success: bool,
) -> Vec<String> {
    let at = format!("Dec  1 12:00:00 sender postfix/smtp[{pid}]:");
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{port}, delay=1, delays=0/0/0/1");
    if success {
        vec![
            format!(
                "{at} Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:{port}: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
            ),
            format!("{at} {queue_id}: to=<{rcpt}>, {relay}, dsn=2.0.0, status=sent (250 2.0.0 Ok)"),
        ]
    } else {
        vec![
            format!("{at} SSL_connect error to 127.0.0.1[127.0.0.1]:{port}: -1"),
            format!(
                "{at} warning: TLS library problem: error:0A00042E:SSL routines::tlsv1 alert protocol version:../ssl/record/rec_layer_s3.c:1601:SSL alert number 70:"
            ),
            format!(
                "{at} {queue_id}: to=<{rcpt}>, {relay}, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)"
            ),
        ]
    }
}

fn outcome_line<'l>(lines: &'l [String], queue_id: &str) -> &'l str {
    lines
        .iter()
        .find(|l| l.starts_with("outcome=") && l.contains(&format!("queue_id={queue_id}")))
        .unwrap_or_else(|| panic!("no outcome for {queue_id}: {lines:#?}"))
}

const KEY: &str = "[127.0.0.1]:2525";

/// Forgetting a pinned destination would hand a stripping attacker its next delivery in
/// cleartext, as to a peer never seen: the sweep forgets a destination whose memory nothing
/// changed for the retention only once its pin has run out too.
#[test]
fn forgetting_unused_destinations_waits_for_their_pin_to_run_out() {
    const DAY: u64 = 86_400;
    const LEGACY_KEY: &str = "[127.0.0.1]:2526";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite3");
    let time = Rc::new(Cell::new(START));
    let pin_for_a_year = "[policy]\npin_duration_secs = 31536000\n";
    let sweep =
        |scene: &mut Scene<'_>| while scene.daemon.housekeeping(scene.time.get()).unwrap() {};
    let lines = with_daemon(&db, pin_for_a_year, &time, |s| {
        assert_eq!(s.lookup(KEY, Some(10)), MODERN);
        s.log(&attempt(10, 2525, "4AA1", "u@x.test", true));
        assert_eq!(s.lookup(LEGACY_KEY, Some(11)), MODERN);
        s.log(&attempt(11, 2526, "4AA2", "u@y.test", false));
        // Half a year and a day later: the legacy peer is forgotten, the pinned one kept.
        s.time.set(START + 181 * DAY);
        sweep(s);
        let store = s.daemon.store();
        assert_eq!(store.get(LEGACY_KEY).unwrap(), None);
        assert!(store.get(KEY).unwrap().is_some());
        assert!(store.facts(KEY).unwrap().pinned_until > s.time.get());
        // Delivered to again: the pin is renewed for a year.
        assert_eq!(s.lookup(KEY, Some(12)), MODERN);
        s.log(&attempt(12, 2525, "4AA3", "u@x.test", true));
        // Its memory unchanged for more than half a year, but its pin stands: kept.
        s.time.set(START + 400 * DAY);
        sweep(s);
        assert!(s.daemon.store().get(KEY).unwrap().is_some());
        // The pin has run out too: forgotten, facts and all.
        s.time.set(START + (181 + 366) * DAY);
        sweep(s);
        assert_eq!(s.daemon.store().get(KEY).unwrap(), None);
        assert_eq!(s.daemon.store().facts(KEY).unwrap().pinned_until, 0);
    });
    let forgotten: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("forgotten "))
        .collect();
    assert_eq!(
        forgotten,
        [
            "forgotten destinations=1 unused-for-days=180",
            "forgotten destinations=1 unused-for-days=180"
        ],
        "{lines:#?}"
    );
}

/// A busy destination: one process delivers to it twice (two lookups) before the daemon reads
/// the first delivery's status line. Both outcomes are booked (the second was left out); a
/// third status line of that process, with no lookup of its own, still is not.
#[test]
fn a_process_asking_again_before_its_outcome_is_read_has_both_booked_but_no_third() {
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let lines = with_daemon(&dir.path().join("h.sqlite3"), "", &time, |s| {
        assert_eq!(s.lookup(KEY, Some(10)), MODERN);
        assert_eq!(s.lookup(KEY, Some(10)), MODERN);
        let mut log = attempt(10, 2525, "4AB1", "u@x.test", true);
        log.extend(attempt(10, 2525, "4AB2", "v@x.test", true));
        // The same message to a second recipient: its answer again, not a new one.
        log.extend(attempt(10, 2525, "4AB2", "w@x.test", true));
        log.extend(attempt(10, 2525, "4AB3", "z@x.test", true));
        s.log(&log);
    });
    for queue_id in ["4AB1", "4AB2"] {
        assert!(
            outcome_line(&lines, queue_id).contains("tier=modern-tls"),
            "{lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("queue_id=4AB3")),
        "a status line without a lookup of its own was booked: {lines:#?}"
    );
}

#[test]
fn concurrent_deliveries_book_each_failure_for_its_own_tier() {
    // Two messages in flight both get modern TLS; the first fails, the dance goes on at legacy
    // for a third; then the second's modern failure arrives. Booked as a legacy failure (the last
    // answer for the destination), it walked the peer to cleartext with no attacker at all.
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let lines = with_daemon(
        &dir.path().join("h.sqlite3"),
        "[policy]\nstep_down_delay_secs = 0\n",
        &time,
        |s| {
            assert_eq!(s.lookup(KEY, Some(101)), MODERN);
            assert_eq!(s.lookup(KEY, Some(102)), MODERN);
            s.log(&attempt(101, 2525, "AAA", "u@x.test", false));
            assert_eq!(s.lookup(KEY, Some(103)), LEGACY);
            s.log(&attempt(102, 2525, "BBB", "u@x.test", false));
            assert_ne!(
                s.lookup(KEY, Some(104)),
                "none",
                "no cleartext from two modern failures"
            );
        },
    );
    assert!(
        outcome_line(&lines, "BBB").contains("tier=modern-tls"),
        "{lines:#?}"
    );
    assert!(outcome_line(&lines, "BBB").contains("attributed_by=process"));
}

#[test]
fn a_modern_success_of_one_delivery_is_not_booked_as_legacy() {
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let lines = with_daemon(
        &dir.path().join("h.sqlite3"),
        "[policy]\nstep_down_delay_secs = 0\n",
        &time,
        |s| {
            assert_eq!(s.lookup(KEY, Some(101)), MODERN);
            assert_eq!(s.lookup(KEY, Some(102)), MODERN);
            s.log(&attempt(101, 2525, "AAA", "u@x.test", false));
            assert_eq!(s.lookup(KEY, Some(103)), LEGACY);
            s.log(&attempt(102, 2525, "BBB", "u@x.test", true));
        },
    );
    let success = outcome_line(&lines, "BBB");
    assert!(
        success.contains("tier=modern-tls") && success.contains("result=success"),
        "{success}"
    );
}

#[test]
fn forged_outcome_for_a_destination_this_process_was_not_answered_is_ignored() {
    // Process 101 delivers to evil.example; a line of its naming bank.example (whatever the
    // address trick that put it there) is nobody's outcome: bank.example was never answered to it.
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let lines = with_daemon(&dir.path().join("h.sqlite3"), "", &time, |s| {
        assert_eq!(s.lookup("bank.example", Some(200)), MODERN);
        s.log(&attempt(200, 25, "OK1", "u@bank.example", true));
        assert_eq!(s.lookup("evil.example", Some(101)), MODERN);
        let forged = "Dec  1 12:00:00 sender postfix/smtp[101]: EVIL1: to=<u@bank.example>, relay=bank.example[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host bank.example[192.0.2.1])";
        s.log(&[forged.to_owned()]);
        assert_eq!(s.lookup("bank.example", Some(201)), MODERN);
    });
    assert!(!lines.iter().any(|l| l.contains("EVIL1")), "{lines:#?}");
}

#[test]
fn outcomes_of_unknown_processes_are_booked_only_when_unambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let lines = with_daemon(
        &dir.path().join("h.sqlite3"),
        "[policy]\nstep_down_delay_secs = 0\n",
        &time,
        |s| {
            // Two deliveries start at modern TLS; one fails (booked: only modern answers are out).
            assert_eq!(s.lookup(KEY, None), MODERN);
            assert_eq!(s.lookup(KEY, None), MODERN);
            s.log(&attempt(101, 2525, "AAA", "u@x.test", false));
            // The dance answers legacy while the other modern answer is still out: the next failure
            // could be either.
            assert_eq!(s.lookup(KEY, None), LEGACY);
            s.log(&attempt(102, 2525, "BBB", "u@x.test", false));
            assert_eq!(s.lookup(KEY, None), LEGACY, "nothing was booked for BBB");
        },
    );
    assert!(outcome_line(&lines, "AAA").contains("attributed_by=destination"));
    assert!(
        outcome_line(&lines, "BBB").contains("ignored="),
        "answers of one tier only are attributed: {lines:#?}"
    );
}

#[test]
fn a_dance_decided_under_another_policy_does_not_go_on() {
    // A plain peer: the dance reaches cleartext. The operator then makes the destination
    // mandatory and restarts the daemon: the saved next step ("none") must not be answered.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite3");
    let time = Rc::new(Cell::new(START));
    with_daemon(&db, "[policy]\nstep_down_delay_secs = 0\n", &time, |s| {
        assert_eq!(s.lookup(KEY, Some(101)), MODERN);
        let line = "Dec  1 12:00:00 sender postfix/smtp[101]: AAA: to=<u@x.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=1, delays=0/0/0/1, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])".to_owned();
        s.log(&[line]);
        assert_eq!(
            s.lookup(KEY, Some(102)),
            "none",
            "the dance goes on in cleartext"
        );
    });
    with_daemon(
        &db,
        "[policy]\nstep_down_delay_secs = 0\nprofile = \"mandatory\"\n",
        &time,
        |s| {
            assert_eq!(
                s.lookup(KEY, Some(103)),
                MODERN,
                "mandatory: never cleartext"
            )
        },
    );
}

#[test]
fn a_clock_stepping_backwards_ends_the_dance() {
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let lines = with_daemon(
        &dir.path().join("h.sqlite3"),
        "[policy]\nstep_down_delay_secs = 0\n",
        &time,
        |s| {
            assert_eq!(s.lookup(KEY, Some(101)), MODERN);
            s.log(&attempt(101, 2525, "AAA", "u@x.test", false));
            time.set(START - 86_400);
            s.lookup(KEY, Some(102));
        },
    );
    let last = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("lookup="))
        .unwrap();
    assert!(!last.contains("reason=dance-continues"), "{last}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Hostile recipients (quotes, `>`, `relay=`, `status=`, Postfix's own sentences, very long,
    /// bytes that are not UTF-8 as the follower reads them), logged quoted as Postfix does and
    /// unquoted as `info_log_address_format = internal` would, for deliveries a process made to
    /// evil.example: bank.example's history never changes.
    #[test]
    fn hostile_log_lines_never_change_another_destinations_history(
        pieces in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("\"".to_owned()),
                proptest::strategy::Just("\\".to_owned()),
                proptest::strategy::Just(">".to_owned()),
                proptest::strategy::Just(", ".to_owned()),
                proptest::strategy::Just("x@bank.example".to_owned()),
                proptest::strategy::Just("relay=bank.example[192.0.2.1]:25".to_owned()),
                proptest::strategy::Just("delay=1, delays=0/0/0/0, dsn=4.7.4".to_owned()),
                proptest::strategy::Just("status=deferred (".to_owned()),
                proptest::strategy::Just("TLS is required, but was not offered by host bank.example[192.0.2.1]".to_owned()),
                proptest::strategy::Just("Cannot start TLS: handshake failure".to_owned()),
                proptest::strategy::Just(")".to_owned()),
                proptest::strategy::Just("\u{fffd}".to_owned()),
                "[ -~]{0,30}",
            ],
            1..20,
        ),
        long in 0..2usize,
        quoted in proptest::bool::ANY,
        status in proptest::sample::select(vec![
            "sent (250 2.0.0 Ok)",
            "deferred (TLS is required, but was not offered by host evil.example[198.51.100.1])",
            "deferred (Cannot start TLS: handshake failure)",
            "deferred (lost connection with evil.example[198.51.100.1] while receiving the initial server greeting)",
        ]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.sqlite3");
        let time = Rc::new(Cell::new(START));
        let mut local: String = pieces.concat();
        local.push_str(&"y".repeat(long * 3000));
        let local = if quoted { tlsfallback_mta::postfix::log::logged_local_part(&local) } else { local };
        let mut before = None;
        let mut after = None;
        with_daemon(&db, "[policy]\npin_duration_secs = 0\n", &time, |s| {
            assert_eq!(s.lookup("bank.example", Some(200)), MODERN);
            s.log(&attempt(200, 25, "BANK1", "u@bank.example", true).iter()
                .map(|l| l.replace("127.0.0.1[127.0.0.1]:25", "bank.example[192.0.2.1]:25"))
                .collect::<Vec<_>>());
            before = Some(HistoryStore::open(&db).unwrap().get("bank.example").unwrap());
            for (pid, queue) in [(101, "EVIL1"), (102, "EVIL2")] {
                s.lookup("evil.example", Some(pid));
                let line = format!(
                    "Dec  1 12:00:00 sender postfix/smtp[{pid}]: {queue}: to=<{local}@evil.example>, relay=evil.example[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=4.0.0, status={status}"
                );
                s.log(&[line]);
            }
            after = Some(HistoryStore::open(&db).unwrap().get("bank.example").unwrap());
        });
        proptest::prop_assert!(before.as_ref().unwrap().is_some());
        proptest::prop_assert_eq!(before, after);
    }
}

/// Floors a test sets per next hop, in place of the resolver.
#[derive(Default)]
struct FixedFloors(std::sync::Mutex<std::collections::HashMap<Target, Arc<ResolvedFloor>>>);

impl FixedFloors {
    fn set(&self, key: &str, floor: Floor) {
        self.0.lock().unwrap().insert(
            Target::of(key),
            Arc::new(ResolvedFloor {
                floor,
                tlsrpt: None,
                policy_id: None,
                report: None,
            }),
        );
    }

    fn set_with_report(&self, key: &str, floor: Floor, report: DestinationReport) {
        self.0.lock().unwrap().insert(
            Target::of(key),
            Arc::new(ResolvedFloor {
                floor,
                tlsrpt: None,
                policy_id: None,
                report: Some(report),
            }),
        );
    }
}

impl FloorSource for FixedFloors {
    fn lookup(&self, target: &Target) -> FloorLookup {
        match self.peek(target) {
            Some(floor) => FloorLookup::Known(floor),
            None => FloorLookup::NotYet {
                why: "not set by the test".to_owned(),
            },
        }
    }

    fn peek(&self, target: &Target) -> Option<Arc<ResolvedFloor>> {
        self.0.lock().unwrap().get(target).cloned()
    }
}

/// As [`with_daemon`], the floors coming from `floors`.
fn with_floors(
    db: &std::path::Path,
    policy: &str,
    time: &Rc<Cell<u64>>,
    floors: &Arc<FixedFloors>,
    scene: impl FnOnce(&mut Scene<'_>),
) -> Vec<String> {
    run_daemon(
        db,
        policy,
        time,
        Some(Arc::clone(floors) as Arc<dyn FloorSource>),
        None,
        scene,
    )
}

const DOMAIN: &str = "some.example";
const DANE_ONLY: &str = "dane-only protocols=>=TLSv1.2 ciphers=high";

/// An attempt to `some.example`'s MX host.
fn domain_attempt(pid: u32, queue_id: &str, success: bool) -> Vec<String> {
    attempt(pid, 25, queue_id, "u@some.example", success)
        .iter()
        .map(|l| l.replace("127.0.0.1[127.0.0.1]:25", "mx.some.example[192.0.2.1]:25"))
        .collect()
}

fn open_floor() -> Floor {
    Floor::Open {
        context: policy_core::DeliveryContext::default(),
    }
}

#[test]
fn a_pinned_peer_with_dane_on_some_mx_hosts_gets_dane_only_never_postfix_dane() {
    // Postfix's `dane` treats the MX hosts without TLSA records opportunistically, and retries
    // them in cleartext after a failed handshake: below the pin of a peer seen doing TLS.
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let floors = Arc::new(FixedFloors::default());
    floors.set(DOMAIN, Floor::DaneSome { sts_enforce: false });
    with_floors(&dir.path().join("h.sqlite3"), "", &time, &floors, |s| {
        assert_eq!(
            s.lookup(DOMAIN, Some(100)),
            "dane",
            "unpinned: as plain Postfix"
        );
        floors.set(DOMAIN, open_floor());
        assert_eq!(s.lookup(DOMAIN, Some(101)), MODERN);
        s.log(&domain_attempt(101, "AAA", true));
        floors.set(DOMAIN, Floor::DaneSome { sts_enforce: false });
        assert_eq!(
            s.lookup(DOMAIN, Some(102)),
            DANE_ONLY,
            "pinned: no `may` anywhere"
        );
    });
}

#[test]
fn a_dance_step_decided_before_the_domain_published_dane_does_not_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let floors = Arc::new(FixedFloors::default());
    floors.set(DOMAIN, open_floor());
    with_floors(
        &dir.path().join("h.sqlite3"),
        "[policy]\nstep_down_delay_secs = 0\n",
        &time,
        &floors,
        |s| {
            assert_eq!(s.lookup(DOMAIN, Some(101)), MODERN);
            s.log(&domain_attempt(101, "AAA", false));
            assert_eq!(s.lookup(DOMAIN, Some(102)), LEGACY, "the dance goes on");
            floors.set(DOMAIN, Floor::DaneEvery);
            assert_eq!(
                s.lookup(DOMAIN, Some(103)),
                DANE_ONLY,
                "not the legacy step"
            );
        },
    );
}

#[test]
fn an_untrusted_certificate_under_dane_only_is_booked_as_a_dane_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let time = Rc::new(Cell::new(START));
    let floors = Arc::new(FixedFloors::default());
    floors.set(DOMAIN, Floor::DaneEvery);
    let lines = with_floors(&dir.path().join("h.sqlite3"), "", &time, &floors, |s| {
        assert_eq!(s.lookup(DOMAIN, Some(101)), DANE_ONLY);
        let at = "Dec  1 12:00:00 sender postfix/smtp[101]:";
        s.log(&[
            format!("{at} Untrusted TLS connection established to mx.some.example[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"),
            format!("{at} DDD: to=<u@some.example>, relay=mx.some.example[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=4.7.5, status=deferred (Server certificate not verified)"),
        ]);
        assert!(
            !s.lookup(DOMAIN, Some(102)).contains("encrypt"),
            "never below DANE after a mismatch"
        );
    });
    let outcome = outcome_line(&lines, "DDD");
    assert!(
        outcome.contains("result=\"certificate-error dane-mismatch\""),
        "{outcome}"
    );
}

#[test]
fn an_unknown_floor_is_answered_temp_and_nothing_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite3");
    let time = Rc::new(Cell::new(START));
    let floors = Arc::new(FixedFloors::default());
    floors.set(
        DOMAIN,
        Floor::Unknown {
            why: "the MX lookup failed: SERVFAIL".to_owned(),
        },
    );
    with_floors(&db, "", &time, &floors, |s| {
        let answer = s.lookup(DOMAIN, Some(101));
        assert!(
            answer.starts_with("Temp(\"tlsfallback cannot know the TLS floor of some.example"),
            "{answer}"
        );
        // A next hop the source has not resolved yet: TEMP too.
        assert!(s.lookup("other.example", Some(102)).starts_with("Temp("));
    });
    assert!(
        HistoryStore::open(&db)
            .unwrap()
            .get(DOMAIN)
            .unwrap()
            .is_none()
    );
}

/// The datagrams a collectd at `socket` has received so far, parsed.
fn received(socket: &std::os::unix::net::UnixDatagram) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut buffer = vec![0u8; 65_536];
    while let Ok(n) = socket.recv(&mut buffer) {
        out.push(serde_json::from_slice(&buffer[..n]).unwrap());
    }
    out
}

#[test]
fn postfix_dances_read_from_the_log_are_reported_once_each_when_they_end() {
    use tlsfallback_mta::tlsrpt::datagram::{PolicyType, ReportPolicy};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite3");
    let socket_path = dir.path().join("collectd.sock");
    let collectd = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    collectd.set_nonblocking(true).unwrap();
    let time = Rc::new(Cell::new(START));
    let floors = Arc::new(FixedFloors::default());
    let record = "v=TLSRPTv1; rua=mailto:tlsrpt@some.example";
    let sts = ReportPolicy {
        policy_type: PolicyType::Sts,
        policy_domain: Some(DOMAIN.to_owned()),
        policy_strings: vec!["version: STSv1".to_owned(), "mode: testing".to_owned()],
        mx_host_patterns: vec!["mx.some.example".to_owned()],
    };
    floors.set_with_report(
        DOMAIN,
        open_floor(),
        DestinationReport {
            domain: DOMAIN.to_owned(),
            record: Ok(record.to_owned()),
            policies: vec![("mx.some.example".to_owned(), sts.clone())],
        },
    );
    // A domain without a TLSRPT record: its dances are not reported.
    floors.set_with_report(
        "quiet.example",
        open_floor(),
        DestinationReport {
            domain: "quiet.example".to_owned(),
            record: Err("no TLSRPT record (v=TLSRPTv1)".to_owned()),
            policies: Vec::new(),
        },
    );
    let mut after_first_failure = Vec::new();
    run_daemon(
        &db,
        "[policy]\nstep_down_delay_secs = 0\n",
        &time,
        Some(Arc::clone(&floors) as Arc<dyn FloorSource>),
        Some(Some(&socket_path)),
        |s| {
            // A legacy-only MX: modern refused, legacy delivered. One attempt, one success.
            assert_eq!(s.lookup(DOMAIN, Some(101)), MODERN);
            s.log(&domain_attempt(101, "AAA", false));
            after_first_failure = received(&collectd);
            assert_eq!(s.lookup(DOMAIN, Some(102)), LEGACY);
            s.log(&domain_attempt(102, "BBB", true));
            // The quiet domain's dance ends too, unreported.
            assert_eq!(s.lookup("quiet.example", Some(103)), MODERN);
            s.log(&attempt(103, 25, "CCC", "u@quiet.example", true));
        },
    );
    assert!(
        after_first_failure.is_empty(),
        "a step the dance recovers from is not reported: {after_first_failure:?}"
    );
    let datagrams = received(&collectd);
    assert_eq!(datagrams.len(), 1, "{datagrams:#?}");
    let datagram = &datagrams[0];
    assert_eq!(datagram["d"], DOMAIN);
    assert_eq!(datagram["pr"], record);
    assert_eq!(datagram["policies"][0]["policy-type"], 2);
    assert_eq!(datagram["policies"][0]["mx-host"][0], "mx.some.example");
    assert_eq!(datagram["policies"][0]["f"], 0);
    // The ledger has the same result, for `tlsrpt preview`.
    let ledger =
        tlsfallback_mta::tlsrpt::ledger::ResultLedger::open(&db, std::time::Duration::from_secs(5))
            .unwrap();
    let kept = ledger
        .day(&tlsfallback_mta::tlsrpt::ledger::utc_day(START), None)
        .unwrap();
    assert_eq!(kept.len(), 1, "{kept:#?}");
    assert_eq!(kept[0].policies[0].policy, sts);
    assert!(!kept[0].policies[0].failed);
}

#[test]
fn a_postfix_dance_that_ends_deferred_is_one_failure_with_the_mx_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite3");
    let time = Rc::new(Cell::new(START));
    let floors = Arc::new(FixedFloors::default());
    floors.set_with_report(
        DOMAIN,
        Floor::StsEnforce {
            patterns: vec!["mx.some.example".to_owned()],
        },
        DestinationReport {
            domain: DOMAIN.to_owned(),
            record: Ok("v=TLSRPTv1; rua=mailto:tlsrpt@some.example".to_owned()),
            policies: Vec::new(),
        },
    );
    run_daemon(
        &db,
        "",
        &time,
        Some(Arc::clone(&floors) as Arc<dyn FloorSource>),
        Some(None),
        |s| {
            s.lookup(DOMAIN, Some(101));
            let at = "Dec  1 12:00:00 sender postfix/smtp[101]:";
            s.log(&[
                format!("{at} server certificate verification failed for mx.some.example[192.0.2.1]:25: num=62:hostname mismatch"),
                format!("{at} Untrusted TLS connection established to mx.some.example[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"),
                format!("{at} AAA: to=<u@some.example>, relay=mx.some.example[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=4.7.5, status=deferred (Server certificate not verified)"),
            ]);
        },
    );
    let ledger =
        tlsfallback_mta::tlsrpt::ledger::ResultLedger::open(&db, std::time::Duration::from_secs(5))
            .unwrap();
    let kept = ledger
        .day(&tlsfallback_mta::tlsrpt::ledger::utc_day(START), None)
        .unwrap();
    assert_eq!(kept.len(), 1, "{kept:#?}");
    let result = &kept[0].policies[0];
    assert!(result.failed);
    let failure = &result.failures[0];
    assert_eq!(
        failure.receiving_mx_hostname.as_deref(),
        Some("mx.some.example")
    );
    assert_eq!(failure.receiving_ip.as_deref(), Some("192.0.2.1"));
}

/// Two daemons (two nodes' Postfix) sharing a real redis-server: what node A's daemon learned
/// from its Postfix's log, node B's daemon answers at its first lookup.
#[test]
fn a_legacy_only_peer_one_daemon_learned_is_answered_legacy_by_the_other_daemon_of_the_fleet() {
    let redis = tlsfallback_testkit::rig::redis::RedisServer::start().unwrap();
    let time = Rc::new(Cell::new(START));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let node = |dir: &tempfile::TempDir| {
        let mut store = HistoryStore::open(&dir.path().join("h.sqlite3")).unwrap();
        let mut settings = tlsfallback_mta::fleet::FleetSettings::new(redis.url());
        settings.cache_ttl = std::time::Duration::ZERO;
        store.attach_fleet(tlsfallback_mta::fleet::Fleet::connect(settings).unwrap());
        store
    };
    let legacy_success = |pid: u32, queue_id: &str| {
        let at = format!("Dec  1 12:00:00 sender postfix/smtp[{pid}]:");
        vec![
            format!(
                "{at} Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:2525: TLSv1 with cipher ECDHE-RSA-AES256-SHA (256/256 bits)"
            ),
            format!(
                "{at} {queue_id}: to=<u@x.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
            ),
        ]
    };
    let policy = "[policy]\nstep_down_delay_secs = 0\n";
    let lines = run_daemon_on(node(&dirs[0]), policy, &time, None, None, |a| {
        assert_eq!(a.lookup(KEY, Some(101)), MODERN);
        a.log(&attempt(101, 2525, "AAA", "u@x.test", false));
        assert_eq!(a.lookup(KEY, Some(102)), LEGACY);
        a.log(&legacy_success(102, "BBB"));
    });
    assert!(
        outcome_line(&lines, "BBB").contains("result=success"),
        "{lines:#?}"
    );
    time.set(START + 60);
    run_daemon_on(node(&dirs[1]), policy, &time, None, None, |b| {
        assert_eq!(
            b.lookup(KEY, Some(201)),
            LEGACY,
            "node B's daemon starts where node A's learned"
        );
    });
}
