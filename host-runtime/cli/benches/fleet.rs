//! The fleet's costs on a real redis-server on loopback (Debian's, started on a free port), printed
//! as one JSON object (scripts/bench writes it to target/bench/fleet.json and row 17 of
//! docs/benchmarks.md from it):
//! - `merge_cas`: `Fleet::publish` (the merge in Rust, then the compare-and-set script) with 1 and
//!   with 8 writers (threads, each its own link, as nodes have), each update changing the shared
//!   copy, over 1,000 keys and over one hot key: operations per second, lost rounds per operation.
//! - `decisions`: one node deciding through its SQLite store (the first decision of a delivery,
//!   then the one after a successful attempt) over 100 peers, with no fleet, with the fleet on, and
//!   with Redis paused (`CLIENT PAUSE 20000 ALL`: every call waits for the budget until the
//!   circuit opens): p50, p99 and the slowest decision.
//! - `convergence`: node A learns that a peer is legacy-only; how long until node B's next decision
//!   starts there, with the default read cache (5 s) and with none (B asking every 5 ms).
//!
//! `cargo bench -p tlsfallback-cli --bench fleet` (about a minute; BENCH_QUICK=1 for a smoke run).

use std::time::Duration;

use policy_core::{
    Action, AttemptReport, DeliveryContext, History, Outcome, PeerMemory, Policy, Tier, TlsAlert,
};
use serde_json::{Value, json};
use tlsfallback_engine::decider::NativeEngine;
use tlsfallback_mta::clock::{Deadline, Stopwatch};
use tlsfallback_mta::deciding;
use tlsfallback_mta::fleet::{Fleet, FleetSettings};
use tlsfallback_mta::store::HistoryStore;
use tlsfallback_testkit::rig::redis::RedisServer;

/// Peers of the decision run.
const PEERS: u64 = 100;

struct Sizes {
    updates_per_writer: u64,
    deliveries: u64,
}

impl Sizes {
    fn from_env() -> Self {
        if std::env::var("BENCH_QUICK").as_deref() == Ok("1") {
            Self {
                updates_per_writer: 500,
                deliveries: 500,
            }
        } else {
            Self {
                updates_per_writer: 5_000,
                deliveries: 5_000,
            }
        }
    }
}

fn peer(k: u64) -> String {
    format!("p{k}.bench.test")
}

/// Writers × updates through `Fleet::publish`, every update a newer success time.
fn merge_cas(url: &str, writers: u64, keys: u64, updates: u64) -> Value {
    let clock = Stopwatch::start();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                let mut fleet = Fleet::connect(FleetSettings::new(url)).expect("a link");
                for i in 0..updates {
                    let memory = PeerMemory {
                        last_success_at: 1_000 + i * writers + w,
                        last_success_tier: Some(Tier::ModernTls),
                        seen_tls: true,
                        ..PeerMemory::default()
                    };
                    let blob = History {
                        memory,
                        dance: None,
                    }
                    .encode();
                    // The hot key's losers retry, as the store does with a contended peer.
                    while fleet
                        .publish(
                            &peer(i % keys),
                            blob.as_bytes(),
                            Deadline::after(Duration::from_secs(10)),
                        )
                        .is_err()
                    {}
                }
                fleet.counters()
            })
        })
        .collect();
    let (mut writes, mut conflicts, mut unchanged) = (0, 0, 0);
    for thread in threads {
        let counters = thread.join().expect("a writer");
        writes += counters.writes;
        conflicts += counters.conflicts;
        unchanged += counters.unchanged;
    }
    let secs = clock.elapsed().as_secs_f64();
    let operations = writers * updates;
    json!({
        "writers": writers,
        "keys": keys,
        "operations": operations,
        "operations_per_second": (operations as f64 / secs).round(),
        "writes": writes,
        "unchanged": unchanged,
        "lost_rounds_per_operation": conflicts as f64 / operations as f64,
    })
}

fn node(fleet: Option<FleetSettings>) -> (HistoryStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a directory");
    let mut store = HistoryStore::open(&dir.path().join("peers.sqlite3")).expect("a store");
    if let Some(settings) = fleet {
        store.attach_fleet(Fleet::connect(settings).expect("a link"));
    }
    (store, dir)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

/// Deliveries to `PEERS` peers, each two decisions (start; after a success); their latencies.
fn decisions(store: &mut HistoryStore, deliveries: u64) -> Value {
    let (policy, context) = (Policy::default(), DeliveryContext::default());
    let mut latencies = Vec::with_capacity(2 * deliveries as usize);
    for d in 0..deliveries {
        let peer = peer(d % PEERS);
        let now = 1_800_000_000 + d;
        let clock = Stopwatch::start();
        let first = deciding::decide(
            store,
            &mut NativeEngine,
            &peer,
            &policy,
            &context,
            None,
            now,
        )
        .expect("a decision");
        latencies.push(clock.elapsed());
        let Action::Attempt { tier, .. } = first.decision.action else {
            panic!("{first:?}")
        };
        let report = AttemptReport {
            tier,
            outcome: Outcome::Success { version: None },
        };
        let clock = Stopwatch::start();
        let _ = deciding::decide_in_delivery(
            store,
            &mut NativeEngine,
            &peer,
            &policy,
            &context,
            &report,
            first.decision.history.as_bytes(),
            now,
        )
        .expect("a decision");
        latencies.push(clock.elapsed());
    }
    latencies.sort();
    json!({
        "decisions": latencies.len(),
        "p50_us": percentile(&latencies, 0.5),
        "p99_us": percentile(&latencies, 0.99),
        "max_us": latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
    })
}

/// Node A learns `peer` is legacy-only; the time until node B's decision starts at legacy.
fn convergence(url: &str, cache_ttl: Duration, peer: &str) -> Value {
    let settings = || {
        let mut settings = FleetSettings::new(url);
        settings.cache_ttl = cache_ttl;
        settings
    };
    let (mut a, _a) = node(Some(settings()));
    let (mut b, _b) = node(Some(settings()));
    let (policy, context) = (Policy::default(), DeliveryContext::default());
    let mut now = 1_800_000_000;
    let start_tier = |store: &mut HistoryStore, now: u64| {
        let decided =
            deciding::decide(store, &mut NativeEngine, peer, &policy, &context, None, now)
                .expect("a decision");
        match decided.decision.action {
            Action::Attempt { tier, .. } => (tier, decided),
            other => panic!("{other:?}"),
        }
    };
    // Node B has met the peer (its cache holds "no copy"), then node A dances down to legacy.
    assert_eq!(start_tier(&mut b, now).0, Tier::ModernTls);
    now += 1;
    let (tier, first) = start_tier(&mut a, now);
    assert_eq!(tier, Tier::ModernTls);
    let alert = AttemptReport {
        tier,
        outcome: Outcome::TlsAlert(TlsAlert::ProtocolVersion),
    };
    let step = deciding::decide_in_delivery(
        &mut a,
        &mut NativeEngine,
        peer,
        &policy,
        &context,
        &alert,
        first.decision.history.as_bytes(),
        now,
    )
    .expect("a decision");
    let success = AttemptReport {
        tier: Tier::LegacyTls,
        outcome: Outcome::Success { version: None },
    };
    let _ = deciding::decide_in_delivery(
        &mut a,
        &mut NativeEngine,
        peer,
        &policy,
        &context,
        &success,
        step.decision.history.as_bytes(),
        now,
    )
    .expect("a decision");
    let clock = Stopwatch::start();
    let mut asked = 0;
    loop {
        asked += 1;
        if start_tier(&mut b, now).0 == Tier::LegacyTls {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    json!({
        "cache_ttl_secs": cache_ttl.as_secs_f64(),
        "node_b_acts_after_ms": clock.elapsed().as_secs_f64() * 1e3,
        "decisions_of_node_b": asked,
    })
}

fn main() {
    let sizes = Sizes::from_env();
    let redis = RedisServer::start().expect("redis-server starts (scripts/setup installs it)");
    let url = redis.url();
    let mut runs = Vec::new();
    for (writers, keys) in [(1, 1_000), (8, 1_000), (1, 1), (8, 1)] {
        redis.cli(&["FLUSHALL"]).expect("FLUSHALL");
        runs.push(merge_cas(&url, writers, keys, sizes.updates_per_writer));
    }
    redis.cli(&["FLUSHALL"]).expect("FLUSHALL");
    let off = decisions(&mut node(None).0, sizes.deliveries);
    let on = decisions(
        &mut node(Some(FleetSettings::new(url.clone()))).0,
        sizes.deliveries,
    );
    let mut paused_node = node(Some(FleetSettings::new(url.clone())));
    // A pause of ALL holds every command, CLIENT UNPAUSE too: it ends by itself, well after the
    // run (a second or two once the circuit is open); the PING after the run waits for that.
    redis
        .cli(&["CLIENT", "PAUSE", "20000", "ALL"])
        .expect("CLIENT PAUSE");
    let paused = decisions(&mut paused_node.0, sizes.deliveries);
    let circuit = paused_node
        .0
        .fleet()
        .map(|fleet| format!("{:?}", fleet.circuit()));
    redis.cli(&["PING"]).expect("the pause ends");
    let cached = convergence(&url, Duration::from_secs(5), "cached.converge.test");
    let uncached = convergence(&url, Duration::ZERO, "uncached.converge.test");
    let redis_version = redis.cli(&["INFO", "server"]).unwrap_or_default();
    let redis_version = redis_version
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let result = json!({
        "quick": std::env::var("BENCH_QUICK").as_deref() == Ok("1"),
        "redis_version": redis_version,
        "budget_ms": 50,
        "merge_cas": runs,
        "decisions": {"peers": PEERS, "fleet_off": off, "fleet_on": on, "redis_paused": paused,
                      "circuit_after_pause": circuit},
        "convergence": [cached, uncached],
    });
    println!("{}", serde_json::to_string_pretty(&result).expect("JSON"));
}
