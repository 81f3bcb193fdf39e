//! Lost updates under load: 8 processes, each publishing 5,000 updates through the fleet's
//! merge-then-compare-and-set, to one hot key and spread over 1,000 keys, on one redis-server and
//! on a Redis Cluster of 3 primaries. An update is lost when the final shared copy does not cover
//! it. The same load through a naive GET-merge-SET must lose some: that control shows the count
//! can see the bug it rules out.
//!
//! The processes are this test binary again, running [`lost_update_worker`] with the job in the
//! environment; they start together on a line from the parent, so their writes interleave.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use policy_core::{History, PeerMemory, Tier};
use tlsfallback_mta::clock::Deadline;
use tlsfallback_mta::fleet::{Fleet, FleetSettings, Unavailable};
use tlsfallback_testkit::rig::redis::{RedisCluster, RedisServer};

use crate::fleet::{Node, legacy_only};

const PROCESSES: u64 = 8;
const UPDATES: u64 = 5_000;
const JOB: &str = "TLSFB_LOST_UPDATE_JOB";

/// How a worker writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    /// `Fleet::publish`: the merge in Rust, then the compare-and-set script.
    Fleet,
    /// HGET, merge, HSET: what a store without compare-and-set does.
    NaiveGetSet,
}

fn peer(key: u64) -> String {
    format!("p{key}.lost-update.test")
}

/// The `n`th update of `process` to one key. Processes 0, 3, 6 raise `last_success_at`, 1, 4, 7
/// `pinned_until`, 2 and 5 `last_probe_at`, each with values no other process writes, so the
/// final copy covers an update only if no write based on an older copy replaced it.
fn update(process: u64, n: u64) -> PeerMemory {
    let value = 1_000 + n * 3 + process / 3;
    let mut memory = PeerMemory {
        last_success_tier: Some(Tier::ModernTls),
        seen_tls: true,
        ..PeerMemory::default()
    };
    match process % 3 {
        0 => memory.last_success_at = value,
        1 => memory.pinned_until = value,
        _ => memory.last_probe_at = value,
    }
    memory
}

fn blob(memory: PeerMemory) -> Vec<u8> {
    History {
        memory,
        dance: None,
    }
    .encode()
    .as_bytes()
    .to_vec()
}

fn settings(url: &str, cluster: bool) -> FleetSettings {
    let mut settings = FleetSettings::new(url);
    settings.cluster = cluster;
    // The load is the test, not the budget: a loaded 2-core machine may take a while.
    settings.budget = Duration::from_secs(10);
    settings
}

/// One worker process's part: started by [`run_load`], does nothing when run on its own.
#[test]
#[ignore = "a worker process of the lost-update tests, which start it themselves"]
fn lost_update_worker() {
    let Ok(job) = std::env::var(JOB) else { return };
    let fields: Vec<&str> = job.split(' ').collect();
    let [writer, url, cluster, process, keys] = fields[..] else {
        panic!("a bad job: {job}")
    };
    let (cluster, process, keys): (bool, u64, u64) = (
        cluster.parse().unwrap(),
        process.parse().unwrap(),
        keys.parse().unwrap(),
    );
    let mut fleet = Fleet::connect(settings(url, cluster)).unwrap();
    let mut naive = redis::Client::open(url).unwrap().get_connection().unwrap();
    println!("ready");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let mut contended = 0u64;
    for i in 0..UPDATES {
        let (key, n) = (peer(i % keys), i / keys);
        let update = update(process, n);
        if writer == "fleet" {
            loop {
                match fleet.publish(
                    &key,
                    &blob(update),
                    Deadline::after(Duration::from_secs(10)),
                ) {
                    Ok(_) => break,
                    // Every round lost to the other writers: the store keeps such a peer
                    // unpublished and tries again, as this does.
                    Err(Unavailable::Contended(_)) => contended += 1,
                    Err(other) => panic!("process {process}, update {i}: {other}"),
                }
            }
        } else {
            let redis_key = tlsfallback_mta::fleet::key_of(&key);
            let stored: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&redis_key)
                .arg("b")
                .query(&mut naive)
                .unwrap();
            let shared = stored
                .and_then(|b| History::decode(&b).ok())
                .map_or_else(PeerMemory::default, |h| h.memory);
            let () = redis::cmd("HSET")
                .arg(&redis_key)
                .arg("v")
                .arg("naive")
                .arg("b")
                .arg(blob(shared.merge(&update)))
                .query(&mut naive)
                .unwrap();
        }
    }
    let counters = fleet.counters();
    println!(
        "done writes={} conflicts={} contended={contended}",
        counters.writes, counters.conflicts
    );
}

/// What one load did.
#[derive(Debug, Default)]
struct Load {
    lost: u64,
    writes: u64,
    conflicts: u64,
    contended: u64,
}

/// Runs the load: `PROCESSES` workers × `UPDATES` updates over `keys` keys, then counts the
/// updates the final shared copies do not cover.
fn run_load(writer: Writer, url: &str, cluster: bool, keys: u64) -> Load {
    let name = if writer == Writer::Fleet {
        "fleet"
    } else {
        "naive"
    };
    let mut workers: Vec<_> = (0..PROCESSES)
        .map(|process| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "fleet_lost_updates::lost_update_worker",
                    "--exact",
                    "--ignored",
                ])
                .args(["--nocapture", "--test-threads", "1", "-q"])
                .env(JOB, format!("{name} {url} {cluster} {process} {keys}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = workers
        .iter_mut()
        .map(|worker| BufReader::new(worker.stdout.take().unwrap()))
        .collect();
    for output in &mut outputs {
        let mut line = String::new();
        while !line.starts_with("ready") {
            line.clear();
            assert!(output.read_line(&mut line).unwrap() > 0, "a worker died");
        }
    }
    for worker in &mut workers {
        worker.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let mut load = Load::default();
    for (worker, output) in workers.iter_mut().zip(outputs) {
        for line in output.lines() {
            let line = line.unwrap();
            if let Some(done) = line.strip_prefix("done ") {
                for field in done.split(' ') {
                    let (name, value) = field.split_once('=').unwrap();
                    let value: u64 = value.parse().unwrap();
                    match name {
                        "writes" => load.writes += value,
                        "conflicts" => load.conflicts += value,
                        _ => load.contended += value,
                    }
                }
            }
        }
        assert!(worker.wait().unwrap().success(), "a worker failed");
    }
    let mut reader = Fleet::connect(settings(url, cluster)).unwrap();
    for key in 0..keys {
        let copy = reader
            .read(&peer(key), Deadline::after(Duration::from_secs(10)))
            .unwrap()
            .expect("every key was written");
        let shared = History::decode(&copy.blob).unwrap().memory;
        let updates_per_process = UPDATES / keys + u64::from(key < UPDATES % keys);
        for process in 0..PROCESSES {
            for n in 0..updates_per_process {
                if !update(process, n).is_covered_by(&shared) {
                    load.lost += 1;
                }
            }
        }
    }
    eprintln!(
        "{writer:?} on {keys} key(s){}: {load:?}",
        if cluster { " (cluster)" } else { "" }
    );
    load
}

#[test]
fn merge_then_compare_and_set_loses_no_update_where_a_naive_get_set_does() {
    let redis = RedisServer::start().unwrap();
    let url = redis.url();
    let hot = run_load(Writer::Fleet, &url, false, 1);
    assert_eq!(hot.lost, 0, "{hot:?}");
    assert!(hot.conflicts > 0, "the processes never raced: {hot:?}");
    redis.cli(&["FLUSHALL"]).unwrap();
    let spread = run_load(Writer::Fleet, &url, false, 1_000);
    assert_eq!(spread.lost, 0, "{spread:?}");
    redis.cli(&["FLUSHALL"]).unwrap();
    // The control: a stale overwrite shows only when it replaces a process's last updates, so
    // on a loaded machine, with the processes barely overlapping, one load may lose nothing.
    // Three tries of both loads; in quiet runs the first already loses (2 to 5 of 40,000 on the
    // hot key, 6 to 90 on 1,000 keys).
    let mut naive_lost = Vec::new();
    for _ in 0..3 {
        redis.cli(&["FLUSHALL"]).unwrap();
        let hot = run_load(Writer::NaiveGetSet, &url, false, 1).lost;
        redis.cli(&["FLUSHALL"]).unwrap();
        let spread = run_load(Writer::NaiveGetSet, &url, false, 1_000).lost;
        naive_lost.push((hot, spread));
        if hot + spread > 0 {
            break;
        }
    }
    eprintln!("the naive GET/SET lost (hot key, 1,000 keys), per try: {naive_lost:?}");
    assert!(
        naive_lost.iter().any(|(hot, spread)| hot + spread > 0),
        "the control lost nothing: the count cannot see a lost update"
    );
}

#[test]
fn a_cluster_of_three_primaries_loses_no_update_and_a_killed_primary_leaves_decisions_local() {
    let mut cluster = RedisCluster::start(3).unwrap();
    let url = cluster.url();
    let hot = run_load(Writer::Fleet, &url, true, 1);
    assert_eq!(hot.lost, 0, "{hot:?}");
    let spread = run_load(Writer::Fleet, &url, true, 1_000);
    assert_eq!(spread.lost, 0, "{spread:?}");

    // A node learns a legacy-only peer whose slot one primary serves; that primary dies.
    let learned = "mx.cluster-kill.test";
    let victim = cluster
        .primary_of(&tlsfallback_mta::fleet::key_of(learned))
        .unwrap();
    let mut node_settings = FleetSettings::new(cluster.url());
    node_settings.cluster = true;
    let mut node = Node::new(node_settings, learned);
    let mut now = 1_800_000_000;
    let (tiers, _, _) = node.deliver(&mut now, legacy_only);
    assert_eq!(tiers, [Tier::ModernTls, Tier::LegacyTls]);
    cluster.kill(victim);
    for _ in 0..6 {
        let (tiers, _, _) = node.deliver(&mut now, legacy_only);
        assert_eq!(tiers, [Tier::LegacyTls], "decided from the local history");
    }
    let warnings = node.store.take_fleet_warnings().join("\n");
    assert!(
        warnings.contains("circuit"),
        "nothing said the fleet is unavailable: {warnings}"
    );
    assert_eq!(node.store.unpublished().unwrap(), [learned]);
}
