//! `postfix serve` as an operator runs it: its metrics scraped by a real Prometheus, its JSON
//! log read by a pipeline, its policy reloaded with SIGHUP while Postfix keeps asking.

use std::io::{BufReader, BufWriter, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tlsfallback_mta::postfix::socketmap::{read_netstring, write_netstring};
use tlsfallback_testkit::rig::prometheus::Prometheus;

use crate::postfix_attribution::attempt;
use crate::postfix_daemon::{Daemon, MODERN, netstring, reply};

/// The first answer under `profile = "authenticated-only"`.
const SECURE: &str = "OK secure protocols=>=TLSv1.2 ciphers=high";

/// The next hop the tests ask for: a port no peer listens on (nothing is delivered here).
const PORT: u16 = 2525;

fn lookup_of(port: u16) -> Vec<u8> {
    netstring(&format!("tlsfallback [127.0.0.1]:{port}"))
}

/// Appends the lines Postfix logs for a failed modern-TLS attempt (a protocol-version alert) by
/// this process, which made the lookup, to `log`.
fn log_failed_attempt(log: &Path, queue_id: &str, rcpt: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for line in attempt(std::process::id(), PORT, queue_id, rcpt, false) {
        writeln!(file, "{line}").unwrap();
    }
}

/// The address of the daemon's metrics, from its log.
fn metrics_address(daemon: &Daemon) -> SocketAddr {
    let line = daemon.wait_for(&["metrics on http://"]);
    let start = line.find("http://").unwrap() + "http://".len();
    let rest = &line[start..];
    rest[..rest.find("/metrics").unwrap()].parse().unwrap()
}

/// The single value of an instant query's vector result, once Prometheus has it equal to
/// `wanted` (60 s at most, each scrape a second apart).
fn wait_for_value(prometheus: &Prometheus, expression: &str, wanted: &str) {
    let mut last = String::new();
    for _ in 0..240 {
        last = prometheus.query(expression).unwrap();
        let data: serde_json::Value = serde_json::from_str(&last).unwrap();
        let value = data["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned);
        if value.as_deref() == Some(wanted) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "Prometheus never had {expression} = {wanted}; last answer {last}\n{}",
        prometheus.log()
    );
}

/// A daemon in `dir` following an empty log of its own, with `extra` flags; the log's path.
fn daemon_following_a_log(dir: &Path, extra: &[&str]) -> (Daemon, PathBuf) {
    let log = dir.join("maillog");
    std::fs::write(&log, "").unwrap();
    let daemon = Daemon::start(&dir.join("h.sqlite3"), Some(&log), extra);
    (daemon, log)
}

#[test]
fn a_real_prometheus_scrapes_the_decisions_and_outcomes_the_daemon_made() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, log) = daemon_following_a_log(dir.path(), &["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_address(&daemon);
    // Three new next hops: three decisions to start at the strongest tier.
    for port in [PORT, PORT + 1, PORT + 2] {
        assert_eq!(daemon.ask(&lookup_of(port)), reply(MODERN));
    }
    // The first one's attempt fails with a protocol-version alert; its retry steps down.
    log_failed_attempt(&log, "4AB1C2D3E4", "b@example.net");
    daemon.wait_for(&[
        "outcome=[127.0.0.1]:2525",
        "reason=stepped-down-after-alert",
    ]);
    let retry = daemon.ask(&lookup_of(PORT));
    assert!(retry.contains("TLSv1"), "{retry}");

    let prometheus = Prometheus::start(&[metrics]).unwrap();
    wait_for_value(&prometheus, "up{job=\"tlsfallback\"}", "1");
    wait_for_value(&prometheus, "sum(tlsfallback_decisions_total)", "4");
    wait_for_value(
        &prometheus,
        "tlsfallback_decisions_total{action=\"attempt\",tier=\"modern-tls\",reason=\"strongest-tier\"}",
        "3",
    );
    wait_for_value(
        &prometheus,
        "tlsfallback_decisions_total{tier=\"legacy-tls\",reason=\"dance-continues\"}",
        "1",
    );
    wait_for_value(
        &prometheus,
        "tlsfallback_outcomes_total{outcome=\"tls-alert\",tier=\"modern-tls\"}",
        "1",
    );
    wait_for_value(
        &prometheus,
        "tlsfallback_lookup_duration_seconds_count",
        "4",
    );
    wait_for_value(&prometheus, "tlsfallback_up", "1");
    wait_for_value(&prometheus, "count(tlsfallback_build_info)", "1");
    // No label carries a peer's name: the series are the fixed sets' alone.
    let series = prometheus
        .query("count({__name__=~\"tlsfallback_.*\",peer!=\"\"})")
        .unwrap();
    assert!(series.contains("\"result\":[]"), "{series}");
}

/// Every line of stderr, parsed as the JSON object it must be.
fn records(daemon: &Daemon) -> Vec<serde_json::Value> {
    daemon
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_with_each_decision_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, log) = daemon_following_a_log(dir.path(), &["--log-format", "json"]);
    assert_eq!(daemon.ask(&lookup_of(PORT)), reply(MODERN));
    // A stranger picks the recipient: quotes, spaces and a fake field in its local part.
    let rcpt = "\"x\\\" event=\\\"decision\"@example.net";
    log_failed_attempt(&log, "4AB1C2D3E4", rcpt);
    daemon.wait_for(&["\"event\":\"outcome\""]);
    let records = records(&daemon);
    for record in &records {
        for field in ["timestamp", "level", "message", "event"] {
            assert!(record[field].is_string(), "no {field}: {record}");
        }
    }
    let decision = records
        .iter()
        .find(|r| r["event"] == "decision")
        .unwrap_or_else(|| panic!("no decision: {records:#?}"));
    assert_eq!(decision["peer"], "[127.0.0.1]:2525");
    assert_eq!(decision["tier"], "modern-tls");
    assert_eq!(decision["action"], "attempt");
    assert_eq!(decision["reason"], "strongest-tier");
    assert_eq!(decision["floor"], "none");
    assert_eq!(decision["client"], std::process::id().to_string().as_str());
    assert_eq!(decision["answer"], MODERN);
    assert_eq!(decision["level"], "INFO");

    let outcomes: Vec<_> = records.iter().filter(|r| r["event"] == "outcome").collect();
    assert_eq!(outcomes.len(), 1, "{records:#?}");
    let outcome = outcomes[0];
    assert_eq!(outcome["peer"], "[127.0.0.1]:2525");
    assert_eq!(outcome["tier"], "modern-tls");
    assert_eq!(outcome["outcome"], "tls-alert");
    assert_eq!(outcome["result"], "tls-alert protocol-version");
    assert_eq!(outcome["reason"], "stepped-down-after-alert");
    assert_eq!(outcome["next"], "attempt legacy-tls");
    assert_eq!(outcome["queue_id"], "4AB1C2D3E4");
    assert_eq!(outcome["pid"], std::process::id());
    assert_eq!(outcome["attributed_by"], "process");
    assert!(
        outcome["postfix"].as_str().unwrap().contains("deferred"),
        "{outcome}"
    );
    // The stranger's address is inside one field, and forged none.
    assert_eq!(
        records.iter().filter(|r| r["event"] == "decision").count(),
        1,
        "{records:#?}"
    );
}

/// A client of the daemon on one connection, as a Postfix smtp process keeps one.
struct Client {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: BufWriter::new(stream),
        }
    }

    /// One lookup (`request` is the netstring's data): the reply's data, or what went wrong.
    fn ask(&mut self, request: &[u8]) -> Result<String, String> {
        write_netstring(&mut self.writer, request).map_err(|e| e.to_string())?;
        self.writer.flush().map_err(|e| e.to_string())?;
        match read_netstring(&mut self.reader, 100_000) {
            Ok(Some(data)) => Ok(String::from_utf8_lossy(&data).into_owned()),
            Ok(None) => Err("closed".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What one hammering client saw.
#[derive(Default)]
struct Hammered {
    asked: u64,
    answered: u64,
    modern: u64,
    secure: u64,
    other: Vec<String>,
}

#[test]
fn reload_under_load_answers_every_lookup_and_switches_with_the_good_files() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let write_policy = |text: &str| {
        // As an operator's deployment does: the new file whole, then renamed into place.
        let next = dir.path().join("policy.toml.new");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &policy).unwrap();
    };
    let opportunistic = "[policy]\nprofile = \"opportunistic\"\n";
    // It also changes a table read at start only: each reload says it waits for a restart.
    let authenticated =
        "[policy]\nprofile = \"authenticated-only\"\n[dns]\ndnssec = \"trust-ad\"\n";
    let broken = "[policy]\nprofile = \"paranoid\"\n";
    write_policy(opportunistic);
    let daemon = Daemon::start(
        &dir.path().join("h.sqlite3"),
        None,
        &["--policy", policy.to_str().unwrap()],
    );
    let request = format!("tlsfallback [127.0.0.1]:{PORT}").into_bytes();
    let mut own = Client::connect(daemon.port);
    assert_eq!(own.ask(&request).unwrap(), MODERN);

    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (0..4)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let request = request.clone();
            let port = daemon.port;
            std::thread::spawn(move || {
                let mut client = Client::connect(port);
                let mut seen = Hammered::default();
                // Bounded: the test stops it long before.
                while !stop.load(Ordering::Relaxed) && seen.asked < 1_000_000 {
                    seen.asked += 1;
                    match client.ask(&request) {
                        Ok(answer) => {
                            seen.answered += 1;
                            match answer.as_str() {
                                MODERN => seen.modern += 1,
                                SECURE => seen.secure += 1,
                                _ => seen.other.push(answer),
                            }
                        }
                        Err(error) => {
                            seen.other.push(error);
                            break;
                        }
                    }
                }
                seen
            })
        })
        .collect();

    let mut serving = MODERN;
    let mut good = 0;
    for round in 0..20 {
        if round % 2 == 0 {
            good += 1;
            let (text, answer) = if good % 2 == 1 {
                (authenticated, SECURE)
            } else {
                (opportunistic, MODERN)
            };
            write_policy(text);
            serving = answer;
        } else {
            write_policy(broken);
        }
        let status = Command::new("kill")
            .args(["-HUP", &daemon.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Each SIGHUP is one reload record; wait for this round's.
        for _ in 0..600 {
            if daemon.matching(&["reload="]).len() > round {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert_eq!(
            daemon.matching(&["reload="]).len(),
            round + 1,
            "{}",
            daemon.lines().join("\n")
        );
        // A lookup made after the reload is answered under the policy serving now.
        assert_eq!(own.ask(&request).unwrap(), serving, "round {round}");
    }
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Hammered> = hammers.into_iter().map(|h| h.join().unwrap()).collect();
    for client in &seen {
        assert!(client.other.is_empty(), "{:?}", client.other);
        assert_eq!(client.asked, client.answered);
        assert_eq!(client.modern + client.secure, client.answered);
    }
    let total: u64 = seen.iter().map(|c| c.answered).sum();
    eprintln!("{total} lookups answered on 4 connections across 20 reloads");
    assert!(seen.iter().map(|c| c.secure).sum::<u64>() > 0, "{total}");
    assert!(seen.iter().map(|c| c.modern).sum::<u64>() > 0, "{total}");
    assert_eq!(daemon.matching(&["reload=", "result=ok"]).len(), 10);
    let refused = daemon.matching(&["reload=", "result=\"refused"]);
    assert_eq!(refused.len(), 10, "{}", daemon.lines().join("\n"));
    for line in &refused {
        assert!(line.contains("unknown variant `paranoid`"), "{line}");
    }
    assert_eq!(
        daemon
            .matching(&["warning:", "the [dns] table changed", "next restart"])
            .len(),
        10,
        "{}",
        daemon.lines().join("\n")
    );
}

#[test]
fn stalled_and_garbage_clients_of_the_metrics_port_stop_neither_scrapes_nor_lookups() {
    use std::io::Read as _;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        &dir.path().join("h.sqlite3"),
        None,
        &["--metrics", "127.0.0.1:0"],
    );
    let metrics = metrics_address(&daemon);
    // A local client holds connections open, half a request on some, and sends garbage.
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    for stream in stalled.iter_mut().take(25) {
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
    }
    let mut garbage = TcpStream::connect(metrics).unwrap();
    garbage.write_all(b"\x00\xff\r\n\r\n").unwrap();

    assert_eq!(daemon.ask(&lookup_of(PORT)), reply(MODERN));
    let mut scrape = TcpStream::connect(metrics).unwrap();
    scrape
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    scrape.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    scrape.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(
        text.contains("tlsfallback_decisions_total{action=\"attempt\",tier=\"modern-tls\",reason=\"strongest-tier\"} 1"),
        "{text}"
    );
    drop(stalled);
}
