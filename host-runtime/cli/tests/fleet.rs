//! The fleet's shared histories on a real redis-server (Debian's, started on a free loopback
//! port): two nodes learning from each other, Redis killed, stalled and lying, and decisions
//! going on from local state meanwhile.

use std::time::Duration;

use policy_core::{
    Action, AttemptReport, DeliveryContext, History, Outcome, Policy, Reason, Tier, TlsAlert,
};
use tlsfallback_engine::decider::NativeEngine;
use tlsfallback_mta::deciding;
use tlsfallback_mta::fleet::{BreakerSettings, CircuitState, Fleet, FleetSettings};
use tlsfallback_mta::store::HistoryStore;
use tlsfallback_testkit::rig::redis::RedisServer;

const PEER: &str = "mx.fleet.test";

/// A node: its own SQLite history with the fleet attached, delivering to one peer.
pub(crate) struct Node {
    pub(crate) store: HistoryStore,
    peer: String,
    _dir: tempfile::TempDir,
}

fn settings(url: &str) -> FleetSettings {
    let mut settings = FleetSettings::new(url);
    // No cache between the nodes of one test: each read sees the other's last write.
    settings.cache_ttl = Duration::ZERO;
    settings.budget = Duration::from_millis(50);
    settings.breaker = BreakerSettings {
        errors_to_open: 3,
        cooldown: Duration::from_millis(200),
    };
    settings
}

fn node(url: &str) -> Node {
    Node::new(settings(url), PEER)
}

impl Node {
    /// A node with a fresh history, linked to the fleet by `settings`, delivering to `peer`.
    pub(crate) fn new(settings: FleetSettings, peer: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HistoryStore::open(&dir.path().join("peers.sqlite3")).unwrap();
        store.attach_fleet(Fleet::connect(settings).unwrap());
        Self {
            store,
            peer: peer.to_owned(),
            _dir: dir,
        }
    }

    /// One whole delivery: the engine's decisions, each attempt answered by `peer`, until the
    /// engine stops asking; the tiers attempted and the last action.
    pub(crate) fn deliver(
        &mut self,
        now: &mut u64,
        peer: impl Fn(Tier) -> Outcome,
    ) -> (Vec<Tier>, Action, Reason) {
        let (policy, context) = (Policy::default(), DeliveryContext::default());
        let mut last: Option<AttemptReport> = None;
        let mut own: Option<Vec<u8>> = None;
        let mut tiers = Vec::new();
        loop {
            *now += 1;
            let decided = match (&last, &own) {
                (Some(report), Some(own)) => deciding::decide_in_delivery(
                    &mut self.store,
                    &mut NativeEngine,
                    &self.peer,
                    &policy,
                    &context,
                    report,
                    own,
                    *now,
                ),
                _ => deciding::decide(
                    &mut self.store,
                    &mut NativeEngine,
                    &self.peer,
                    &policy,
                    &context,
                    None,
                    *now,
                ),
            }
            .unwrap()
            .decision;
            own = Some(decided.history.as_bytes().to_vec());
            match decided.action {
                Action::Attempt { tier, .. }
                    if !matches!(
                        last,
                        Some(AttemptReport {
                            outcome: Outcome::Success { .. },
                            ..
                        })
                    ) =>
                {
                    tiers.push(tier);
                    last = Some(AttemptReport {
                        tier,
                        outcome: peer(tier),
                    });
                }
                action => return (tiers, action, decided.reason),
            }
        }
    }

    fn memory(&self) -> policy_core::PeerMemory {
        History::decode(&self.store.get(&self.peer).unwrap().unwrap().history)
            .unwrap()
            .memory
    }

    fn fleet(&self) -> &Fleet {
        self.store.fleet().unwrap()
    }
}

/// A peer that speaks only legacy TLS: it refuses the modern tier with a protocol alert.
pub(crate) fn legacy_only(tier: Tier) -> Outcome {
    if tier > Tier::LegacyTls {
        Outcome::TlsAlert(TlsAlert::ProtocolVersion)
    } else {
        Outcome::Success { version: None }
    }
}

fn shared_copy(url: &str) -> Option<policy_core::PeerMemory> {
    let mut reader = Fleet::connect(settings(url)).unwrap();
    let copy = reader
        .read(
            PEER,
            tlsfallback_mta::clock::Deadline::after(Duration::from_secs(2)),
        )
        .unwrap()?;
    Some(History::decode(&copy.blob).unwrap().memory)
}

#[test]
fn a_legacy_only_peer_learned_by_node_a_costs_node_b_nothing() {
    let redis = RedisServer::start().unwrap();
    let (mut a, mut b) = (node(&redis.url()), node(&redis.url()));
    let mut now = 1_800_000_000;
    let (tiers, _, _) = a.deliver(&mut now, legacy_only);
    assert_eq!(
        tiers,
        [Tier::ModernTls, Tier::LegacyTls],
        "node A pays the dance once"
    );
    let (tiers, _, _) = b.deliver(&mut now, legacy_only);
    assert_eq!(
        tiers,
        [Tier::LegacyTls],
        "node B starts where node A learned to"
    );
    assert_eq!(b.memory().start_tier, Some(Tier::LegacyTls));
    assert_eq!(
        shared_copy(&redis.url()).unwrap().last_success_tier,
        Some(Tier::LegacyTls)
    );
}

#[test]
fn a_pin_set_by_node_a_stops_a_stripping_attack_on_node_b() {
    let redis = RedisServer::start().unwrap();
    let (mut a, mut b) = (node(&redis.url()), node(&redis.url()));
    let mut now = 1_800_000_000;
    let (tiers, _, _) = a.deliver(&mut now, |_| Outcome::Success { version: None });
    assert_eq!(tiers, [Tier::ModernTls]);
    assert!(a.memory().pinned_until > now);
    // Node B has never met the peer; an attacker strips STARTTLS on its path.
    let (tiers, action, _) = b.deliver(&mut now, |_| Outcome::StarttlsNotOffered);
    assert!(
        tiers.iter().all(|tier| *tier >= Tier::ModernTls),
        "node B stepped down behind the stripper: {tiers:?}"
    );
    assert!(matches!(action, Action::Defer { .. }), "{action:?}");
    assert!(
        b.memory().pinned_until > now,
        "node B keeps the fleet's pin"
    );
}

#[test]
fn a_forged_failure_on_node_b_cannot_undo_the_proof_of_node_a() {
    let redis = RedisServer::start().unwrap();
    let (mut a, mut b) = (node(&redis.url()), node(&redis.url()));
    let mut now = 1_800_000_000;
    a.deliver(&mut now, |_| Outcome::Success { version: None });
    // An attacker on node B's path forges a protocol alert at every tier.
    b.deliver(&mut now, |_| Outcome::TlsAlert(TlsAlert::ProtocolVersion));
    let shared = shared_copy(&redis.url()).unwrap();
    assert_eq!(shared.last_success_tier, Some(Tier::ModernTls));
    assert_eq!(
        shared.start_tier, None,
        "the fleet still starts at the top tier"
    );
    let (tiers, _, _) = a.deliver(&mut now, |_| Outcome::Success { version: None });
    assert_eq!(tiers, [Tier::ModernTls]);
}

#[test]
fn redis_killed_and_restarted_empty_decisions_go_on_and_the_state_is_seeded_again() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let mut a = node(&url);
    let mut now = 1_800_000_000;
    a.deliver(&mut now, legacy_only);
    let port = redis.kill();
    // Redis is gone: every delivery still decides, from local state, and the circuit opens.
    for _ in 0..6 {
        let (tiers, _, _) = a.deliver(&mut now, legacy_only);
        assert_eq!(tiers, [Tier::LegacyTls]);
    }
    assert!(
        matches!(a.fleet().circuit(), CircuitState::Open { .. }),
        "{:?}",
        a.fleet()
    );
    assert!(a.fleet().counters().skipped > 0, "{:?}", a.fleet());
    let warnings = a.store.take_fleet_warnings().join("\n");
    assert!(
        warnings.contains("the circuit to the fleet's Redis opened"),
        "{warnings}"
    );
    // Restarted without persistence: it knows nothing until the node merges its state up.
    let redis = RedisServer::start_on(port).unwrap();
    assert_eq!(shared_copy(&url), None);
    std::thread::sleep(Duration::from_millis(250));
    a.deliver(&mut now, legacy_only);
    assert_eq!(a.fleet().circuit(), CircuitState::Closed);
    assert_eq!(a.fleet().circuit_transitions(), (1, 1));
    let shared = shared_copy(&url).expect("the node seeded the wiped server again");
    assert_eq!(shared.start_tier, Some(Tier::LegacyTls));
    assert!(a.store.unpublished().unwrap().is_empty());
    drop(redis);
}

#[test]
fn a_stalled_server_costs_each_decision_at_most_the_budget_and_opens_the_circuit() {
    let redis = RedisServer::start().unwrap();
    let mut a = node(&redis.url());
    let mut now = 1_800_000_000;
    a.deliver(&mut now, legacy_only);
    redis.signal("STOP").unwrap();
    for _ in 0..4 {
        let (tiers, _, _) = a.deliver(&mut now, legacy_only);
        assert_eq!(tiers, [Tier::LegacyTls]);
    }
    assert!(a.fleet().counters().timeouts >= 3, "{:?}", a.fleet());
    assert!(matches!(a.fleet().circuit(), CircuitState::Open { .. }));
    redis.signal("CONT").unwrap();
    std::thread::sleep(Duration::from_millis(250));
    a.deliver(&mut now, legacy_only);
    assert_eq!(a.fleet().circuit(), CircuitState::Closed, "{:?}", a.fleet());
}

#[test]
fn paused_writes_and_a_killed_client_connection_lose_nothing_acknowledged() {
    let redis = RedisServer::start().unwrap();
    let mut a = node(&redis.url());
    let mut now = 1_800_000_000;
    a.deliver(&mut now, |_| Outcome::Success { version: None });
    redis.cli(&["CLIENT", "PAUSE", "1000", "WRITE"]).unwrap();
    // A new fact (legacy only now) while writes are paused: kept locally as unpublished.
    a.store.forget(PEER).unwrap();
    a.deliver(&mut now, legacy_only);
    std::thread::sleep(Duration::from_millis(1100));
    redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]).unwrap();
    // The next deliveries reconnect and merge the change up.
    for _ in 0..3 {
        a.deliver(&mut now, legacy_only);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.store.unpublished().unwrap().is_empty(), "{:?}", a.fleet());
    let shared = shared_copy(&redis.url()).unwrap();
    assert!(
        a.memory().is_covered_by(&shared),
        "{shared:?} lacks {:?}",
        a.memory()
    );
}

#[test]
fn a_full_server_refusing_writes_leaves_decisions_to_local_state() {
    let redis = RedisServer::start().unwrap();
    redis
        .cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .unwrap();
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]).unwrap();
    let mut a = node(&redis.url());
    let mut now = 1_800_000_000;
    let (tiers, _, _) = a.deliver(&mut now, legacy_only);
    assert_eq!(tiers, [Tier::ModernTls, Tier::LegacyTls]);
    let warnings = a.store.take_fleet_warnings().join("\n");
    assert!(warnings.contains("OOM"), "{warnings}");
    assert_eq!(a.store.unpublished().unwrap(), [PEER]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]).unwrap();
    a.deliver(&mut now, legacy_only);
    assert!(a.store.unpublished().unwrap().is_empty());
}

#[test]
fn a_lying_shared_copy_is_never_trusted_and_gets_replaced() {
    let redis = RedisServer::start().unwrap();
    let key = tlsfallback_mta::fleet::key_of(PEER);
    redis
        .cli(&[
            "HSET",
            &key,
            "v",
            "7",
            "b",
            "\u{1}garbage-that-is-no-history",
        ])
        .unwrap();
    let mut a = node(&redis.url());
    let mut now = 1_800_000_000;
    let (tiers, _, _) = a.deliver(&mut now, |_| Outcome::Success { version: None });
    assert_eq!(tiers, [Tier::ModernTls]);
    let warnings = a.store.take_fleet_warnings().join("\n");
    assert!(warnings.contains("unreadable"), "{warnings}");
    let shared = shared_copy(&redis.url()).expect("replaced by the node's memory");
    assert_eq!(shared.last_success_tier, Some(Tier::ModernTls));
}

#[test]
fn concurrent_writers_on_one_hot_key_converge_on_everything_each_learned() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    // Eight nodes, each learning one fact the others do not: its own success time. With a
    // last-writer-wins store most would be lost; merged with compare-and-set, the shared copy
    // ends with the latest, and each node's write was applied or merged over.
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut fleet = Fleet::connect({
                    let mut s = settings(&url);
                    s.budget = Duration::from_secs(5);
                    s
                })
                .unwrap();
                let mut written = 0;
                for round in 0..200u64 {
                    let memory = policy_core::PeerMemory {
                        last_success_at: round * 8 + w,
                        last_success_tier: Some(Tier::ModernTls),
                        seen_tls: true,
                        pinned_until: 1_000 + w,
                        ..policy_core::PeerMemory::default()
                    };
                    let blob = History {
                        memory,
                        dance: None,
                    }
                    .encode();
                    let deadline = tlsfallback_mta::clock::Deadline::after(Duration::from_secs(5));
                    if matches!(
                        fleet.publish(PEER, blob.as_bytes(), deadline).unwrap(),
                        tlsfallback_mta::fleet::Published::Written { .. }
                    ) {
                        written += 1;
                    }
                }
                written
            })
        })
        .collect();
    let written: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written > 0);
    let shared = shared_copy(&url).unwrap();
    assert_eq!(shared.last_success_at, 199 * 8 + 7);
    assert_eq!(
        shared.pinned_until, 1_007,
        "the longest pin any node set survives"
    );
}

/// What a hostile server in front of the fleet's address answers to every command.
#[derive(Clone, Copy, Debug)]
enum HostileReply {
    /// `+OK` where an array is expected.
    WrongType,
    /// Bytes that are no RESP at all.
    Junk,
    /// A bulk string said to be 1 GiB long, then a trickle that never ends it.
    EndlessBulk,
    /// An array of a million elements, none of which comes.
    EndlessArray,
}

/// A fake Redis on loopback answering every read with `reply`; its address.
fn hostile_redis(reply: HostileReply) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {
                    let answer: &[u8] = match reply {
                        HostileReply::WrongType => b"+OK\r\n",
                        HostileReply::Junk => b"\x00\xff\xfe garbage \x07\r\n\r\n",
                        HostileReply::EndlessBulk => b"$1073741824\r\nabc",
                        HostileReply::EndlessArray => b"*1000000\r\n:1\r\n",
                    };
                    if stream.write_all(answer).is_err() {
                        return;
                    }
                    if matches!(
                        reply,
                        HostileReply::EndlessBulk | HostileReply::EndlessArray
                    ) {
                        // Keep the reply open: a byte now and then, never the end.
                        for _ in 0..600 {
                            std::thread::sleep(Duration::from_millis(100));
                            if stream.write_all(b"x").is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    format!("redis://{address}")
}

#[test]
fn a_hostile_server_answering_garbage_cannot_crash_stall_or_steer_a_decision() {
    for reply in [
        HostileReply::WrongType,
        HostileReply::Junk,
        HostileReply::EndlessBulk,
        HostileReply::EndlessArray,
    ] {
        let mut a = node(&hostile_redis(reply));
        let mut now = 1_800_000_000;
        for delivery in 0..6 {
            let (tiers, action, _) = a.deliver(&mut now, legacy_only);
            let expected: &[Tier] = if delivery == 0 {
                &[Tier::ModernTls, Tier::LegacyTls]
            } else {
                &[Tier::LegacyTls]
            };
            assert_eq!(tiers, expected, "{reply:?}: decided from the local history");
            assert!(matches!(action, Action::Done), "{reply:?}: {action:?}");
        }
        let warnings = a.store.take_fleet_warnings().join("\n");
        assert!(
            warnings.contains("circuit"),
            "{reply:?}: the circuit never opened: {warnings}"
        );
        assert_eq!(a.store.unpublished().unwrap(), [PEER], "{reply:?}");
    }
}
