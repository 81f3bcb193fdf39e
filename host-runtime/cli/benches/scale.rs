//! How the history store's costs grow with the peers it holds: one SQLite database grown to
//! 10^3, 10^4, 10^5 and 10^6 peers, each peer's history made by the engine itself running its
//! first delivery's dance (70% modern peers, which end pinned; 20% legacy-only, stepped down
//! after a protocol-version alert; 10% without STARTTLS, delivered in cleartext). At each size:
//! - `bytes_per_peer`: the database file after a WAL checkpoint, divided by the peers;
//! - `known_us`/`new_us`: one decide-and-store (its own write transaction, as `deliver` and
//!   `postfix serve` make them) for a random known peer and for a peer never seen, p50 and p99;
//! - `list_ms`: `peers list` (every row read);
//! - `forget_us`: `peers forget` of one peer, p50 and p99.
//!
//! Then the same with the fleet on (`store` = `sqlite+redis`): the store attached to a real
//! redis-server on loopback, so that every decide-and-store also reads the shared copy and
//! merges its change up (`forget` is the local part); `redis_bytes_per_key` is Redis's
//! `used_memory` growth divided by its keys (the peers, and the 2,000 new peers each size
//! measures, forgotten locally but still shared). Also the daemon's setting for comparison
//! (`store` = `sqlite-normal`): `synchronous = NORMAL`, no fsync per commit, at the largest size.
//!
//! One JSON object per size and store on stdout, for scripts/bench-scale (which draws
//! docs/scale.md's curves). With `SCALE_KEEP=DIR`, a copy of the database at each size is left there
//! (`peers-N.sqlite3`) for the socketmap runs over the same peers. `cargo bench -p tlsfallback-cli --bench scale` (about 3 minutes on 2 cores);
//! BENCH_QUICK=1 stops at 10^4 peers.

mod common {
    pub(crate) mod percentiles;
}

use std::time::Duration;

use policy_core::{Action, AttemptReport, DeliveryContext, Outcome, Policy, TlsAlert};
use serde_json::json;
use tlsfallback_engine::decider::NativeEngine;
use tlsfallback_mta::clock::Stopwatch;
use tlsfallback_mta::deciding;
use tlsfallback_mta::fleet::{Fleet, FleetSettings};
use tlsfallback_mta::store::HistoryStore;
use tlsfallback_testkit::rig::redis::RedisServer;

use common::percentiles::{MICROSECONDS, p50_p99};

/// The start of the simulated clock (2027-01-15).
const T0: u64 = 1_800_000_000;
/// Decide-and-store samples at each size.
const SAMPLES: usize = 2_000;
/// Peers made in one write transaction while growing the database.
const GROWTH_BATCH: u64 = 5_000;
/// The same with the fleet on: a batch's merge-up runs to one budget (the fleet's), as a
/// delivery's does, so the batch stays as small as a few deliveries.
const FLEET_GROWTH_BATCH: u64 = 8;

fn peer(k: u64) -> String {
    format!("mx{k}.d{}.bench.test", k % 9973)
}

/// What peer `k` does when the engine tries a tier: the mix of the population.
fn outcome_of(k: u64, tier: policy_core::Tier) -> Outcome {
    use policy_core::Tier;
    match (k % 10, tier) {
        (0, Tier::Cleartext) => Outcome::Success { version: None },
        (0, _) => Outcome::StarttlsNotOffered,
        (1 | 2, Tier::ModernTls | Tier::AuthenticatedTls) => {
            Outcome::TlsAlert(TlsAlert::ProtocolVersion)
        }
        _ => Outcome::Success { version: None },
    }
}

/// Peer `k`'s first delivery, decided and stored step by step in `batch` until it is done.
fn first_delivery(
    batch: &mut tlsfallback_mta::store::Batch<'_>,
    k: u64,
    now: u64,
) -> Result<(), deciding::DecidingError> {
    let (policy, context) = (Policy::default(), DeliveryContext::default());
    let name = peer(k);
    let mut last = None;
    for step in 0..6 {
        let decided = deciding::decide_in(
            batch,
            &mut NativeEngine,
            &name,
            &policy,
            &context,
            last.as_ref(),
            now + step,
        )?;
        let Action::Attempt { tier, .. } = decided.decision.action else {
            return Ok(());
        };
        last = Some(AttemptReport {
            tier,
            outcome: outcome_of(k, tier),
        });
    }
    Ok(())
}

/// Grows the store from `from` to `to` peers, without an fsync per commit (growing is not what
/// is measured).
fn grow(store: &mut HistoryStore, from: u64, to: u64) {
    let per_batch = if store.fleet().is_some() {
        FLEET_GROWTH_BATCH
    } else {
        GROWTH_BATCH
    };
    let synchronous = |store: &HistoryStore, value: &str| {
        store
            .connection()
            .pragma_update(None, "synchronous", value)
            .expect("setting synchronous");
    };
    synchronous(store, "NORMAL");
    let mut k = from;
    while k < to {
        let end = (k + per_batch).min(to);
        store
            .batch(|batch| {
                for j in k..end {
                    first_delivery(batch, j, T0 + j)?;
                }
                Ok::<_, deciding::DecidingError>(())
            })
            .expect("the benchmark's store grows");
        k = end;
    }
    synchronous(store, "FULL");
}

/// A cheap deterministic sequence for picking peers (no randomness crate needed here).
fn pick(i: usize, peers: u64) -> u64 {
    (i as u64).wrapping_mul(2_654_435_761) % peers
}

fn measure(store: &mut HistoryStore, peers: u64, now: u64) -> serde_json::Value {
    let (policy, context) = (Policy::default(), DeliveryContext::default());
    let known: Vec<Duration> = (0..SAMPLES)
        .map(|i| {
            let name = peer(pick(i, peers));
            let clock = Stopwatch::start();
            let _ = deciding::decide(
                store,
                &mut NativeEngine,
                &name,
                &policy,
                &context,
                None,
                now,
            )
            .expect("a known peer's decision");
            clock.elapsed()
        })
        .collect();
    // Peers never seen (forgotten again below, so that the next size starts where it says).
    let fresh: Vec<String> = (0..SAMPLES).map(|i| format!("new{i}.bench.test")).collect();
    let new: Vec<Duration> = fresh
        .iter()
        .map(|name| {
            let clock = Stopwatch::start();
            let _ = deciding::decide(store, &mut NativeEngine, name, &policy, &context, None, now)
                .expect("a new peer's decision");
            clock.elapsed()
        })
        .collect();
    let forget: Vec<Duration> = fresh
        .iter()
        .map(|name| {
            let clock = Stopwatch::start();
            assert!(store.forget(name).expect("forgetting a peer"));
            clock.elapsed()
        })
        .collect();
    let clock = Stopwatch::start();
    let rows = store.list().expect("listing the peers").len();
    let list = clock.elapsed();
    assert_eq!(rows as u64, peers);
    store
        .connection()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("a checkpoint");
    let bytes = std::fs::metadata(store.path())
        .expect("the database file")
        .len();
    json!({
        "peers": peers,
        "db_bytes": bytes,
        "bytes_per_peer": bytes as f64 / peers as f64,
        "known_us": p50_p99(known, MICROSECONDS),
        "new_us": p50_p99(new, MICROSECONDS),
        "forget_us": p50_p99(forget, MICROSECONDS),
        "list_ms": list.as_secs_f64() * 1e3,
    })
}

/// Redis's `used_memory`, in bytes.
fn redis_memory(redis: &RedisServer) -> u64 {
    let info = redis.cli(&["INFO", "memory"]).expect("INFO memory");
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory in INFO")
}

/// Grows one store through `sizes`, printing a row at each; `keep` leaves copies there.
fn run(label: &str, sizes: &[u64], redis: Option<&RedisServer>, keep: Option<&std::path::Path>) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut store = HistoryStore::open(&dir.path().join("scale.sqlite3")).expect("the store");
    if let Some(redis) = redis {
        redis.cli(&["FLUSHALL"]).expect("an empty Redis");
        store.attach_fleet(
            Fleet::connect(FleetSettings::new(redis.url())).expect("a link to Redis"),
        );
    }
    let redis_before = redis.map(redis_memory);
    let mut have = 0;
    for &size in sizes {
        let clock = Stopwatch::start();
        grow(&mut store, have, size);
        let grow_s = clock.elapsed().as_secs_f64();
        have = size;
        let mut row = measure(&mut store, size, T0 + 2 * size);
        row["grow_s"] = json!(grow_s);
        row["store"] = json!(label);
        if let (Some(redis), Some(before)) = (redis, redis_before) {
            let grown = redis_memory(redis).saturating_sub(before);
            let keys: u64 = redis
                .cli(&["DBSIZE"])
                .expect("DBSIZE")
                .trim()
                .parse()
                .expect("a key count");
            row["redis_keys"] = json!(keys);
            row["redis_bytes_per_key"] = json!(grown as f64 / keys as f64);
            let unpublished: i64 = store
                .connection()
                .query_row("SELECT count(*) FROM fleet_unpublished", [], |r| r.get(0))
                .expect("the unpublished peers");
            row["unpublished"] = json!(unpublished);
            row["fleet_warnings"] = json!(store.take_fleet_warnings().len());
        }
        println!("{row}");
        if let Some(keep) = keep {
            let copy = keep.join(format!("peers-{size}.sqlite3"));
            let _ = std::fs::remove_file(&copy);
            store
                .connection()
                .execute("VACUUM INTO ?1", [copy.to_string_lossy()])
                .expect("a copy of the database");
        }
    }
    if label == "sqlite" {
        // The daemon's setting on the largest store: no fsync per commit (see Daemon::new).
        store
            .connection()
            .pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous = NORMAL");
        let mut row = measure(&mut store, have, T0 + 3 * have);
        row["store"] = json!("sqlite-normal");
        println!("{row}");
    }
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").as_deref() == Ok("1");
    let sizes: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    let keep = std::env::var_os("SCALE_KEEP").map(std::path::PathBuf::from);
    run("sqlite", sizes, None, keep.as_deref());
    let redis = RedisServer::start().expect("redis-server starts (scripts/setup installs it)");
    run("sqlite+redis", sizes, Some(&redis), None);
}
