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
//! One JSON object per size on stdout, for scripts/bench-scale (which draws docs/scale.md's
//! curves). With `SCALE_KEEP=DIR`, a copy of the database at each size is left there
//! (`peers-N.sqlite3`) for the socketmap runs over the same peers. `cargo bench -p tlsfallback-cli --bench scale` (about 3 minutes on 2 cores);
//! BENCH_QUICK=1 stops at 10^4 peers.

use std::time::Duration;

use policy_core::{Action, AttemptReport, DeliveryContext, Outcome, Policy, TlsAlert};
use serde_json::json;
use tlsfallback_engine::decider::NativeEngine;
use tlsfallback_mta::clock::Stopwatch;
use tlsfallback_mta::deciding;
use tlsfallback_mta::store::HistoryStore;

/// The start of the simulated clock (2027-01-15).
const T0: u64 = 1_800_000_000;
/// Decide-and-store samples at each size.
const SAMPLES: usize = 2_000;
/// Peers made in one write transaction while growing the database.
const GROWTH_BATCH: u64 = 5_000;

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

/// Grows the store from `from` to `to` peers.
fn grow(store: &mut HistoryStore, from: u64, to: u64) {
    let mut k = from;
    while k < to {
        let end = (k + GROWTH_BATCH).min(to);
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
}

/// p50 and p99 of `samples`, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let at = |p: f64| {
        let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[index].as_secs_f64() * 1e6
    };
    json!({ "p50": at(0.5), "p99": at(0.99) })
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
        "known_us": percentiles(known),
        "new_us": percentiles(new),
        "forget_us": percentiles(forget),
        "list_ms": list.as_secs_f64() * 1e3,
    })
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").as_deref() == Ok("1");
    let sizes: &[u64] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000, 1_000_000]
    };
    let dir = tempfile::tempdir().expect("a scratch directory");
    let mut store = HistoryStore::open(&dir.path().join("scale.sqlite3")).expect("the store");
    let mut have = 0;
    for &size in sizes {
        let clock = Stopwatch::start();
        grow(&mut store, have, size);
        let grow_s = clock.elapsed().as_secs_f64();
        have = size;
        let mut row = measure(&mut store, size, T0 + 2 * size);
        row["grow_s"] = json!(grow_s);
        println!("{row}");
        if let Some(keep) = std::env::var_os("SCALE_KEEP") {
            let copy = std::path::Path::new(&keep).join(format!("peers-{size}.sqlite3"));
            let _ = std::fs::remove_file(&copy);
            store
                .connection()
                .execute("VACUUM INTO ?1", [copy.to_string_lossy()])
                .expect("a copy of the database");
        }
    }
}
