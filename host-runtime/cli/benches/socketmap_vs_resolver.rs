//! `tlsfallback postfix serve` against postfix-mta-sts-resolver 1.5.1 (the pinned install
//! `scripts/setup` makes) on the same MTA-STS policies, in one run: lookups per second and p50 /
//! p99 latency over the socket for cached destinations, with 1 and with 8 client connections.
//!
//! One DNSSEC rig serves [`DOMAINS`] domains, each with an `enforce` policy on the rig's policy
//! server (port 443 of an address of its own, where both fetch it). Three daemons answer the same
//! next hops: theirs, ours in `--mode policy-table` (the drop-in) and ours in the default
//! `--mode dance` (the engine's decision under the floor, its SQLite history written per lookup).
//! Each daemon is warmed (every domain asked once, so its policy is cached) and checked to
//! answer `OK ...` for every domain, then timed: one connection asking one lookup at a time, as
//! one Postfix `proxymap` does, and [`CONNECTIONS`] such connections at once. A lookup's latency
//! is from writing the request to reading the whole answer.
//!
//! Prints one JSON object (scripts/bench writes it to target/bench/socketmap-vs-resolver.json and
//! the row of docs/benchmarks.md from it). `cargo bench -p tlsfallback-cli --bench
//! socketmap_vs_resolver` (under a minute; BENCH_QUICK=1 for a smoke run). Needs root (the rig's
//! port 53 and 443 and theirs' private mount namespace).

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tlsfallback_mta::clock::Stopwatch;
use tlsfallback_testkit::rig::dnssec::{
    ChildZone, DnssecRig, RigSpec, Signing, unique_loopback_ip,
};
use tlsfallback_testkit::rig::https::{PolicyServer, Response};
use tlsfallback_testkit::rig::mta_sts_resolver::{
    MtaStsResolverDaemon, ResolverOptions, SocketmapClient,
};

/// The domains asked about, each with its own `enforce` policy.
const DOMAINS: usize = 100;
/// The client connections of the concurrent run.
const CONNECTIONS: usize = 8;
/// The socketmap name both daemons answer.
const MAP: &str = "postfix";
/// How long a lookup may take before the run is called failed (a cold one fetches a policy).
const ASK_WITHIN: Duration = Duration::from_secs(30);

struct Sizes {
    lookups: usize,
}

impl Sizes {
    fn from_env() -> Self {
        let quick = std::env::var("BENCH_QUICK").as_deref() == Ok("1");
        Self {
            lookups: if quick { 2_000 } else { 40_000 },
        }
    }
}

/// `dK.bench.test`.
fn domain(k: usize) -> String {
    format!("d{k}.bench.test")
}

fn spec(policy_ip: Ipv4Addr) -> RigSpec {
    let mut zone = ChildZone::new("bench", Signing::Unsigned);
    for k in 0..DOMAINS {
        zone = zone.records([
            format!("d{k} IN MX 10 mx.d{k}"),
            format!("d{k} IN MX 20 backup.d{k}"),
            format!("mx.d{k} IN A 127.0.0.1"),
            format!("backup.d{k} IN A 127.0.0.1"),
            format!("_mta-sts.d{k} IN TXT \"v=STSv1; id=20261202\""),
            format!("mta-sts.d{k} IN A {policy_ip}"),
        ]);
    }
    RigSpec::new().child(zone)
}

fn policy(k: usize) -> String {
    format!(
        "version: STSv1\r\nmode: enforce\r\nmx: mx.d{k}.bench.test\r\nmx: *.d{k}.bench.test\r\n\
         max_age: 86400\r\n"
    )
}

/// Ours: `tlsfallback postfix serve` on a free port, its per-lookup log drained.
struct Ours {
    child: Child,
    addr: SocketAddr,
}

impl Ours {
    fn start(db: &Path, mode: &str, rig: &DnssecRig, ca_file: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tlsfallback"))
            .args([
                "postfix",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--mode",
                mode,
            ])
            .args([
                "--map-name",
                MAP,
                "--dnssec",
                "trust-ad",
                "--mta-sts-port",
                "443",
            ])
            .arg("--dns-server")
            .arg(rig.unbound_addr().to_string())
            .arg("--mta-sts-ca-file")
            .arg(ca_file)
            .arg("--db")
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tlsfallback starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut first = String::new();
        stderr
            .read_line(&mut first)
            .expect("the daemon's first line");
        let port: u16 = first
            .strip_prefix("listening on inet:127.0.0.1:")
            .and_then(|rest| rest.split(';').next())
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("postfix serve did not start: {first}"));
        // It logs a line per lookup: read them all, so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines().map_while(Result::ok) {});
        Self {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

/// Asks every domain once (each daemon resolves and caches its policy) until none is TEMP, and
/// checks the answers are policies: a benchmark of failures would time nothing worth knowing.
fn warm(name: &str, addr: SocketAddr) -> String {
    let mut client = SocketmapClient::connect(addr, ASK_WITHIN).expect("a connection");
    let mut example = String::new();
    for k in 0..DOMAINS {
        let mut answer = String::new();
        for _ in 0..20 {
            answer = client.ask(MAP, &domain(k)).expect("an answer");
            if !answer.starts_with("TEMP ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            answer.starts_with("OK ") && answer.contains(&format!("d{k}.bench.test")),
            "{name} answered {answer:?} for {}",
            domain(k)
        );
        if k == 0 {
            example = answer;
        }
    }
    example
}

/// `lookups` lookups over `connections` connections at once (each asks the domains in turn);
/// the throughput and the latency percentiles over every lookup.
fn run(addr: SocketAddr, connections: usize, lookups: usize) -> Value {
    let per_connection = lookups / connections;
    let mut clients: Vec<SocketmapClient> = (0..connections)
        .map(|_| SocketmapClient::connect(addr, ASK_WITHIN).expect("a connection"))
        .collect();
    let barrier = std::sync::Barrier::new(connections + 1);
    let (latencies, elapsed) = std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(c, client)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut samples = Vec::with_capacity(per_connection);
                    barrier.wait();
                    for i in 0..per_connection {
                        let key = domain((c + i * connections) % DOMAINS);
                        let watch = Stopwatch::start();
                        let answer = client.ask(MAP, &key).expect("an answer");
                        samples.push(watch.elapsed());
                        assert!(answer.starts_with("OK "), "{answer:?} for {key}");
                    }
                    samples
                })
            })
            .collect();
        barrier.wait();
        let watch = Stopwatch::start();
        let mut all = Vec::new();
        for thread in threads {
            all.extend(thread.join().expect("a client thread"));
        }
        (all, watch.elapsed())
    });
    let mut latencies = latencies;
    latencies.sort();
    let at = |q: f64| {
        let index = ((q * latencies.len() as f64) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).copied().map_or(0.0, micros)
    };
    json!({
        "connections": connections,
        "lookups": latencies.len(),
        "lookups_per_second": (latencies.len() as f64 / elapsed.as_secs_f64()).round(),
        "p50_us": at(0.5),
        "p99_us": at(0.99),
        "max_us": at(1.0),
    })
}

fn measure(name: &str, addr: SocketAddr, sizes: &Sizes) -> Value {
    // The warm-up is every domain's first lookup: a cold resolution each (TXT, policy fetch).
    let watch = Stopwatch::start();
    let example = warm(name, addr);
    let cold = watch.elapsed();
    eprintln!("{name}: warmed in {cold:?}: {example:?}");
    // A short run first, so that both sides' code paths and caches are hot.
    let _ = run(addr, 1, sizes.lookups / 20);
    json!({
        "answer": example,
        "cold_first_lookups_secs": (cold.as_secs_f64() * 1000.0).round() / 1000.0,
        "one_connection": run(addr, 1, sizes.lookups),
        "connections": run(addr, CONNECTIONS, sizes.lookups),
    })
}

/// The loopback floor: a socketmap server that does nothing but read a request and write a
/// fixed answer (a thread per connection, as ours), on free port of 127.0.0.1. No daemon can
/// answer faster over this socket on this machine: the rest of a lookup is the two threads'
/// wake-ups and the kernel's round trip.
fn loopback_floor() -> SocketAddr {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(&stream);
                let mut writer = &stream;
                loop {
                    let mut length = Vec::new();
                    if reader.read_until(b':', &mut length).unwrap_or(0) == 0 {
                        return;
                    }
                    let Some(len) = std::str::from_utf8(&length[..length.len() - 1])
                        .ok()
                        .and_then(|l| l.parse::<usize>().ok())
                    else {
                        return;
                    };
                    let mut body = vec![0; len + 1];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    // `NAME KEY,` in; `OK secure match=mx.KEY` out (what the warm-up checks).
                    let request = String::from_utf8_lossy(&body[..len]);
                    let key = request.split_once(' ').map_or("", |(_, key)| key);
                    let text = format!("OK secure match=mx.{key}");
                    if writer
                        .write_all(format!("{}:{text},", text.len()).as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn main() {
    let sizes = Sizes::from_env();
    let resolver_ip = unique_loopback_ip().expect("a loopback address with port 53 free (root)");
    let policy_ip = unique_loopback_ip().expect("a second loopback address");
    let rig =
        DnssecRig::start(&spec(policy_ip).resolver_on(resolver_ip)).expect("the DNSSEC rig starts");
    let server = PolicyServer::start_on((policy_ip, 443).into())
        .expect("the policy server binds port 443 (as root)");
    for k in 0..DOMAINS {
        server.set(&domain(k), Response::policy(&policy(k)));
    }
    let dir = tempfile::tempdir().expect("a temporary directory");

    let mut results = serde_json::Map::new();
    {
        let theirs = MtaStsResolverDaemon::start(
            dir.path(),
            resolver_ip,
            server.ca_file(),
            &ResolverOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut measured = measure("postfix-mta-sts-resolver", theirs.addr(), &sizes);
        measured["uvloop"] = json!(theirs.log().contains("uvloop enabled"));
        results.insert("postfix_mta_sts_resolver".into(), measured);
    }
    for (key, mode) in [
        ("ours_policy_table", "policy-table"),
        ("ours_dance", "dance"),
    ] {
        let ours = Ours::start(
            &dir.path().join(format!("{mode}.sqlite3")),
            mode,
            &rig,
            server.ca_file(),
        );
        results.insert(key.into(), measure(mode, ours.addr, &sizes));
    }
    results.insert(
        "loopback_floor".into(),
        measure("loopback floor", loopback_floor(), &sizes),
    );
    let theirs_rate = |run: &str| {
        results["postfix_mta_sts_resolver"][run]["lookups_per_second"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let ratios = json!({
        "policy_table_one_connection": results["ours_policy_table"]["one_connection"]["lookups_per_second"].as_f64().unwrap_or(f64::NAN) / theirs_rate("one_connection"),
        "policy_table_connections": results["ours_policy_table"]["connections"]["lookups_per_second"].as_f64().unwrap_or(f64::NAN) / theirs_rate("connections"),
        "dance_one_connection": results["ours_dance"]["one_connection"]["lookups_per_second"].as_f64().unwrap_or(f64::NAN) / theirs_rate("one_connection"),
        "dance_connections": results["ours_dance"]["connections"]["lookups_per_second"].as_f64().unwrap_or(f64::NAN) / theirs_rate("connections"),
    });
    // The machine is shared with other work: its load says how far to trust the numbers.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{}",
        json!({
            "load_average": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            "domains": DOMAINS,
            "lookups_per_run": sizes.lookups,
            "connections": CONNECTIONS,
            "quick": std::env::var("BENCH_QUICK").as_deref() == Ok("1"),
            "their_version": "postfix-mta-sts-resolver 1.5.1",
            "daemons": results,
            "throughput_ratio_over_theirs": ratios,
        })
    );
}
