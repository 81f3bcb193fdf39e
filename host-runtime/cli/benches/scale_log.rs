//! How fast `postfix serve` reads Postfix's log back into the histories: a generated log of
//! 10,000,000 lines in the shapes Postfix writes them (per message: `smtpd` connect, `client=`
//! and disconnect, `cleanup` `message-id=`, `qmgr` `from=` and `removed`, the `smtp` client's
//! TLS story and its status line; `anvil` statistics now and then), to 100,000 destinations
//! (70% modern peers, 20% legacy-only, 10% without STARTTLS), from 100 SMTP client processes
//! each replaced after 100 deliveries, as Postfix's `max_use` does.
//!
//! The daemon is the real one (the built-in component, its SQLite store, `synchronous =
//! NORMAL`), following a real file with [`LogFollower`]. Each delivery's lookup is answered
//! before its lines are appended (Postfix asks the map before it connects); only reading the log
//! is timed. Two runs:
//! - `catch_up`: the whole log appended in slices of 10,000 lines, each read to its end (what a
//!   restarted daemon does with a backlog, in chunks of at most 1 MiB): lines/s, and how many
//!   status lines became outcomes (each is one transaction per chunk with the log position);
//! - `steady`: 225-line slices, what 100 deliveries/s write between two polls 250 ms apart:
//!   the time from a slice appended to its outcomes committed, p50 and p99 (the delay from a
//!   status line to the updated history is this plus the wait for the next poll, at most
//!   `--poll-ms`).
//!
//! One JSON object on stdout, for scripts/bench-scale. `cargo bench -p tlsfallback-cli --bench
//! scale_log` (about 4 minutes on 2 cores); BENCH_QUICK=1 reads 200,000 lines.

mod common {
    pub(crate) mod percentiles;
    pub(crate) mod postfix_log;
}

use std::cell::Cell;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tlsfallback_engine::component::PolicyComponent;
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_mta::clock::Stopwatch;
use tlsfallback_mta::postfix::events::Event;
use tlsfallback_mta::postfix::follow::LogFollower;
use tlsfallback_mta::postfix::log::Tracker;
use tlsfallback_mta::postfix::{Daemon, DaemonOptions};
use tlsfallback_mta::store::HistoryStore;

use common::percentiles::{MILLISECONDS, p50_p99};
use common::postfix_log::{Generator, mix};

/// The start of the simulated clock (2027-01-15).
const T0: u64 = 1_800_000_000;
const DESTINATIONS: u64 = 100_000;
/// Deliveries per simulated second.
const RATE: u64 = 100;
const CATCH_UP_SLICE: usize = 10_000;
const STEADY_SLICE: usize = 225;
const STEADY_SLICES: usize = 2_000;

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the generated log");
    file.write_all(text.as_bytes())
        .expect("appending to the log");
}

/// Reads the log to its end; how long that took.
fn drain(
    daemon: &mut Daemon<'_>,
    follower: &mut LogFollower,
    tracker: &mut Tracker,
    now: u64,
) -> Duration {
    let clock = Stopwatch::start();
    while daemon
        .poll_log(follower, tracker, now)
        .expect("the log is read")
    {}
    clock.elapsed()
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").as_deref() == Ok("1");
    let total_lines: usize = if quick { 200_000 } else { 10_000_000 };
    let steady_slices = if quick { 200 } else { STEADY_SLICES };
    let dir = tempfile::tempdir().expect("a scratch directory");
    let log_path = dir.path().join("maillog");
    let store = HistoryStore::open(&dir.path().join("h.sqlite3")).expect("the store");
    let engine = Box::new(PolicyComponent::builtin().expect("the built-in component"));
    let (outcomes, ignored) = (Cell::new(0_u64), Cell::new(0_u64));
    let mut count = |event: &Event| match event {
        Event::Outcome(_) => outcomes.set(outcomes.get() + 1),
        Event::OutcomeIgnored { .. } => ignored.set(ignored.get() + 1),
        _ => {}
    };
    let mut daemon = Daemon::new(
        engine,
        store,
        PolicyFile::default(),
        DaemonOptions::default(),
        &mut count,
    )
    .expect("the daemon");
    let mut follower = LogFollower::new(&log_path, None, false);
    let mut tracker = Tracker::default();
    let mut generator = Generator::new();

    let mut lines = 0;
    let mut reading = Duration::ZERO;
    let mut log_bytes = 0;
    let now = |generator: &Generator| T0 + generator.message / RATE;
    let slice = |generator: &mut Generator, daemon: &mut Daemon<'_>, lines: usize| {
        while generator.lines_pending() < lines {
            let at = now(generator);
            generator.message(daemon, mix(generator.message) % DESTINATIONS, at);
        }
        generator.take()
    };
    while lines < total_lines {
        let (text, made) = slice(&mut generator, &mut daemon, CATCH_UP_SLICE);
        log_bytes += text.len();
        append(&log_path, &text);
        reading += drain(&mut daemon, &mut follower, &mut tracker, now(&generator));
        lines += made;
    }
    let (messages, attempts) = (generator.message, generator.attempts);
    let (catch_up_outcomes, catch_up_ignored) = (outcomes.get(), ignored.get());

    let mut steady = Vec::with_capacity(steady_slices);
    for _ in 0..steady_slices {
        let (text, _) = slice(&mut generator, &mut daemon, STEADY_SLICE);
        append(&log_path, &text);
        steady.push(drain(
            &mut daemon,
            &mut follower,
            &mut tracker,
            now(&generator),
        ));
    }
    drop(daemon);
    let row = json!({
        "lines": lines,
        "log_bytes": log_bytes,
        "messages": messages,
        "destinations": DESTINATIONS,
        "attempts": attempts,
        "outcomes": catch_up_outcomes,
        "ignored": catch_up_ignored,
        "catch_up_s": reading.as_secs_f64(),
        "lines_per_s": lines as f64 / reading.as_secs_f64(),
        "steady_slice_lines": STEADY_SLICE,
        "steady_ms": p50_p99(steady, MILLISECONDS),
    });
    println!("{row}");
}
