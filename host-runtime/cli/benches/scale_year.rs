//! A simulated year of `postfix serve` at 100 deliveries/s: does the database stay the size it
//! started at, and do lookups stay as fast?
//!
//! The daemon is the real one (the built-in component, its SQLite store), its clock simulated.
//! 100,000 destinations are active at any time (70% modern, 20% legacy-only, 10% without
//! STARTTLS); each day 300 of them go quiet for good and 300 new ones appear (110,000 new
//! destinations over the year, as domains come and go). Each delivery is a lookup answered by
//! the daemon and the attempt's lines read back from Postfix's log (`observe`, 100 deliveries a
//! transaction as the log follower makes them).
//!
//! 100 deliveries/s is 8.64 million a day, 3.15 billion a year: too many to run. What makes the
//! database grow is not how often a destination is used (a delivery rewrites its rows in place,
//! the same size) but how many destinations there are and how long each is kept. So each
//! simulated day runs its new destinations' first deliveries and 1,700 more to destinations
//! picked among the active ones, spread over the day's 86,400 simulated seconds: one delivery in
//! 4,320 of the real rate, with every destination the day's traffic reaches new still reached.
//!
//! Every 30 days (and at the end): the database's size after a checkpoint, its rows per table,
//! and 1,000 lookups of active destinations (each its own transaction, as served), p50 and p99.
//! Run twice: with the default retention of `--forget-after` and with it off, so that both
//! curves are drawn. One JSON object per checkpoint on stdout, for scripts/bench-scale.
//! `cargo bench -p tlsfallback-cli --bench scale_year` (about 5 minutes on 2 cores);
//! BENCH_QUICK=1 simulates 61 days of 10,000 destinations.

mod common {
    pub(crate) mod percentiles;
    pub(crate) mod postfix_log;
}

use std::time::Duration;

use serde_json::json;
use tlsfallback_engine::component::PolicyComponent;
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_mta::clock::Stopwatch;
use tlsfallback_mta::postfix::log::Tracker;
use tlsfallback_mta::postfix::{Daemon, DaemonOptions};
use tlsfallback_mta::store::HistoryStore;

use common::percentiles::{MICROSECONDS, p50_p99};
use common::postfix_log::{Generator, mix};

/// The start of the simulated clock (2027-01-15).
const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
/// Deliveries read back from the log in one transaction.
const OBSERVE_BATCH: usize = 100;
const LOOKUP_SAMPLES: u64 = 1_000;

struct Shape {
    days: u64,
    active: u64,
    churn_per_day: u64,
    deliveries_per_day: u64,
}

fn rows(daemon: &Daemon<'_>, table: &str) -> i64 {
    daemon
        .store()
        .connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("a row count")
}

/// The database's size and rows, and lookups of `first..first + active` at `now`.
fn checkpoint(
    daemon: &mut Daemon<'_>,
    day: u64,
    first: u64,
    shape: &Shape,
    now: u64,
) -> serde_json::Value {
    let lookups = (0..LOOKUP_SAMPLES)
        .map(|i| {
            let destination = first + mix(i ^ (day << 20)) % shape.active;
            let request = format!("tlsfallback d{destination}.bench.test");
            let clock = Stopwatch::start();
            let _ = daemon.answer(request.as_bytes(), Some(1), now);
            clock.elapsed()
        })
        .collect();
    let connection = daemon.store().connection();
    connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("a checkpoint");
    let pragma = |name: &str| -> i64 {
        connection
            .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .expect("a pragma")
    };
    let bytes = std::fs::metadata(daemon.store().path())
        .expect("the database file")
        .len();
    let tables = [
        "peers",
        "peer_facts",
        "postfix_answers",
        "postfix_dances",
        "postfix_tlsrpt_dances",
    ];
    let table_rows: serde_json::Map<_, _> = tables
        .iter()
        .map(|t| ((*t).to_owned(), json!(rows(daemon, t))))
        .collect();
    json!({
        "day": day,
        "db_bytes": bytes,
        "free_pages": pragma("freelist_count"),
        "page_size": pragma("page_size"),
        "rows": table_rows,
        "lookup_us": p50_p99(lookups, MICROSECONDS),
    })
}

fn simulate(shape: &Shape, forget_after_days: Option<u64>) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let store = HistoryStore::open(&dir.path().join("h.sqlite3")).expect("the store");
    let engine = Box::new(PolicyComponent::builtin().expect("the built-in component"));
    let mut log = |_: &tlsfallback_mta::postfix::events::Event| {};
    let options = DaemonOptions {
        forget_after: forget_after_days.map(|days| Duration::from_secs(days * DAY)),
        ..DaemonOptions::default()
    };
    let mut daemon =
        Daemon::new(engine, store, PolicyFile::default(), options, &mut log).expect("the daemon");
    let mut tracker = Tracker::default();
    let mut generator = Generator::new();
    let mut deliver = |daemon: &mut Daemon<'_>,
                       destinations: &mut dyn Iterator<Item = u64>,
                       start: u64,
                       spacing: u64| {
        let mut at = start;
        let mut in_batch = 0;
        for destination in destinations {
            generator.message(daemon, destination, at);
            in_batch += 1;
            if in_batch == OBSERVE_BATCH {
                let (text, _) = generator.take();
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                daemon
                    .observe("maillog", &lines, None, &mut tracker, at)
                    .expect("the log is read");
                daemon.housekeeping(at).expect("housekeeping");
                in_batch = 0;
            }
            at += spacing;
        }
        let (text, _) = generator.take();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        daemon
            .observe("maillog", &lines, None, &mut tracker, at)
            .expect("the log is read");
    };
    // Day 0: every active destination's first delivery, over the day before the year starts.
    let growth_clock = Stopwatch::start();
    deliver(
        &mut daemon,
        &mut (0..shape.active),
        T0 - DAY,
        DAY / shape.active,
    );
    let grown_s = growth_clock.elapsed().as_secs_f64();
    let label = forget_after_days.map_or_else(|| "never".to_owned(), |d| format!("{d} days"));
    let mut row = checkpoint(&mut daemon, 0, 0, shape, T0);
    row["forget_after"] = json!(label);
    row["grown_s"] = json!(grown_s);
    println!("{row}");
    for day in 1..=shape.days {
        let start = T0 + (day - 1) * DAY;
        // The oldest destinations go quiet; as many new ones appear.
        let first = day * shape.churn_per_day;
        let newcomers = first + shape.active - shape.churn_per_day..first + shape.active;
        let others = (0..shape.deliveries_per_day - shape.churn_per_day)
            .map(|i| first + mix(i ^ (day << 24)) % shape.active);
        let mut today = newcomers.chain(others);
        let clock = Stopwatch::start();
        deliver(
            &mut daemon,
            &mut today,
            start,
            DAY / shape.deliveries_per_day,
        );
        if day.is_multiple_of(30) || day == shape.days {
            let mut row = checkpoint(&mut daemon, day, first, shape, start + DAY);
            row["forget_after"] = json!(label);
            row["day_s"] = json!(clock.elapsed().as_secs_f64());
            println!("{row}");
        }
    }
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").as_deref() == Ok("1");
    let shape = if quick {
        Shape {
            days: 61,
            active: 10_000,
            churn_per_day: 30,
            deliveries_per_day: 300,
        }
    } else {
        Shape {
            days: 365,
            active: 100_000,
            churn_per_day: 300,
            deliveries_per_day: 2_000,
        }
    };
    simulate(
        &shape,
        Some(tlsfallback_mta::postfix::daemon::DEFAULT_FORGET_AFTER_DAYS),
    );
    simulate(&shape, None);
}
