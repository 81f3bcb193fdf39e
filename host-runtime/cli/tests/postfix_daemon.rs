use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tlsfallback_mta::postfix::ListenAddress;
use tlsfallback_testkit::peers::StrippingProxy;

use crate::postfix::{Instance, PrivatePostfix, received_header};

/// `tlsfallback postfix serve` as a child process on 127.0.0.1:0, its stderr collected.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub(crate) fn start(db: &Path, log: Option<&Path>, extra: &[&str]) -> Self {
        Self::start_under(&[], db, log, extra)
    }

    /// Started by the command `wrapper` (`prlimit …`), when not empty.
    ///
    /// Unless `extra` names a `--dns-server` (a rig's), the daemon is started with
    /// `--no-resolve`: these tests' next hops are IP literals or names no DNS here knows, and
    /// the machine's own resolver must not decide what they are answered.
    pub(crate) fn start_under(
        wrapper: &[&str],
        db: &Path,
        log: Option<&Path>,
        extra: &[&str],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_tlsfallback");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args([
                "postfix",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--poll-ms",
                "50",
            ])
            .arg("--db")
            .arg(db)
            .args(extra)
            .args((!extra.contains(&"--dns-server")).then_some("--no-resolve"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(log) = log {
            command.arg("--log").arg(log);
        }
        let mut child = command.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        // With --log-format json the line is an object whose message is the human line.
        let first = serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|record| record["message"].as_str().map(str::to_owned))
            .unwrap_or(first);
        let port = first
            .strip_prefix("listening on inet:127.0.0.1:")
            .and_then(|rest| rest.split(';').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the daemon did not start: {first}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, port, lines }
    }

    /// The daemon's pid, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub(crate) fn matching(&self, needles: &[&str]) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect()
    }

    /// Waits (30 s at most) for a line holding every needle.
    pub(crate) fn wait_for(&self, needles: &[&str]) -> String {
        for _ in 0..600 {
            if let Some(line) = self.matching(needles).pop() {
                return line;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the daemon never logged {needles:?}:\n{}",
            self.lines().join("\n")
        );
    }

    pub(crate) fn address(&self) -> ListenAddress {
        ListenAddress::Inet(format!("127.0.0.1:{}", self.port))
    }

    fn table(&self) -> String {
        self.address().postfix_table("tlsfallback")
    }

    /// One socketmap exchange on a new connection. The daemon may answer and close before the
    /// request is even read (`TEMP` when it is out of descriptors): whatever came back is the
    /// reply, and a connection closed under the request is not the test's failure.
    pub(crate) fn ask(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let _ = stream.write_all(request);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn netstring(text: &str) -> Vec<u8> {
    format!("{}:{text},", text.len()).into_bytes()
}

pub(crate) fn reply(text: &str) -> String {
    String::from_utf8(netstring(text)).unwrap()
}

pub(crate) const MODERN: &str = "OK encrypt protocols=>=TLSv1.2 ciphers=high";

/// A sending Postfix whose TLS policy comes from the daemon at `address` (with the lines
/// `postfix config` prints), routing each test domain to a receiving listener.
fn sender(address: &ListenAddress, routes: &[(&str, u16)]) -> Instance {
    let transport: String = routes
        .iter()
        .map(|(domain, port)| format!("{domain} smtp:[127.0.0.1]:{port}\n"))
        .collect();
    let config = tlsfallback_cli::commands::postfix::config_text(address, "tlsfallback", None);
    Instance::start(
        "sender.test",
        &|r| {
            std::fs::write(format!("{r}/transport"), &transport).unwrap();
            format!(
                "master_service_disable = inet
transport_maps = texthash:{r}/transport
{config}"
            )
        },
        &|_| String::new(),
    )
}

pub(crate) fn send(sender: &Instance, to: &str, subject: &str) {
    sender.command(
        "sendmail",
        &["-f", "sender@sender.test", to],
        &format!("Subject: {subject}\n\n.a line that starts with a dot\nand the rest\n"),
    );
}

const POLICY: &str = "[policy]\nstep_down_delay_secs = 0\n";

fn policy_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A sending Postfix whose TLS policy the daemon answers, the daemon following its log.
pub(crate) struct Scene {
    pub(crate) sender: Instance,
    pub(crate) daemon: Daemon,
    db: PathBuf,
    _state: tempfile::TempDir,
}

impl Scene {
    fn start(routes: &[(&str, u16)]) -> Self {
        Self::start_with_policy(routes, POLICY)
    }

    pub(crate) fn start_with_policy(routes: &[(&str, u16)], policy: &str) -> Self {
        let state = tempfile::tempdir().unwrap();
        let db = state.path().join("history.sqlite3");
        let policy = policy_file(state.path(), policy);
        // The sender needs the daemon's port and the daemon the sender's log: the daemon follows
        // a link that points at the log once the sender exists.
        let daemon_log = state.path().join("maillog-link");
        let daemon = Daemon::start(
            &db,
            Some(&daemon_log),
            &["--policy", policy.to_str().unwrap()],
        );
        let sender = sender(&daemon.address(), routes);
        std::os::unix::fs::symlink(sender.root().join("maillog"), &daemon_log).unwrap();
        Self {
            sender,
            daemon,
            db,
            _state: state,
        }
    }
}

#[test]
fn postfix_steps_a_legacy_peer_down_and_leaves_a_modern_peer_alone() {
    let receiver = PrivatePostfix::start();
    let Scene {
        sender, daemon, db, ..
    } = &Scene::start(&[
        ("legacy.test", receiver.legacy),
        ("modern.test", receiver.modern),
    ]);
    let legacy_key = format!("[127.0.0.1]:{}", receiver.legacy);
    let modern_key = format!("[127.0.0.1]:{}", receiver.modern);

    send(sender, "user@legacy.test", "legacy one");
    send(sender, "user@modern.test", "modern one");
    // The first attempt at modern TLS fails with the peer's protocol_version alert; Postfix defers
    // (it was told `encrypt`, so it does not fall back to cleartext on its own).
    daemon.wait_for(&[
        &format!("outcome={legacy_key}"),
        "tier=modern-tls",
        "result=\"tls-alert protocol-version\"",
        "next=\"attempt legacy-tls\"",
    ]);
    assert!(
        sender
            .log()
            .contains("status=deferred (Cannot start TLS: handshake failure)"),
        "{}",
        sender.log()
    );
    // Postfix's retry is the dance's next step: legacy TLS.
    sender.command("postqueue", &["-f"], "");
    let messages = receiver.mailbox(2);
    let legacy = messages
        .iter()
        .find(|m| m.contains("Subject: legacy one"))
        .expect("the legacy peer got its mail");
    assert!(
        received_header(legacy).contains("using TLSv1 with cipher"),
        "{}",
        received_header(legacy)
    );
    assert!(legacy.contains("\n.a line that starts with a dot\nand the rest\n"));
    daemon.wait_for(&[
        &format!("lookup={legacy_key}"),
        "tier=legacy-tls",
        "reason=dance-continues",
    ]);
    daemon.wait_for(&[
        &format!("outcome={legacy_key}"),
        "tier=legacy-tls",
        "result=success",
        "next=done",
    ]);
    sender.wait_for(
        || {
            sender.log().contains(&format!(
                "TLS connection established to 127.0.0.1[127.0.0.1]:{}: TLSv1 with cipher",
                receiver.legacy
            ))
        },
        "the legacy TLS line",
    );

    // Memory: the next message to the legacy peer goes at legacy TLS straight away.
    send(sender, "user@legacy.test", "legacy two");
    let messages = receiver.mailbox(3);
    assert!(messages.iter().any(|m| m.contains("Subject: legacy two")));
    let second = daemon.wait_for(&[&format!("lookup={legacy_key}"), "reason=remembered-tier"]);
    assert!(second.contains("tier=legacy-tls"), "{second}");
    assert!(
        second.contains("protocols=>=TLSv1:<=TLSv1.2 ciphers=low"),
        "{second}"
    );

    // The modern peer was never touched: every answer modern TLS, delivered over TLS 1.3.
    let modern = messages
        .iter()
        .find(|m| m.contains("Subject: modern one"))
        .expect("the modern peer got its mail");
    assert!(
        received_header(modern).contains("using TLSv1.3"),
        "{modern}"
    );
    let modern_lookups = daemon.matching(&[&format!("lookup={modern_key}")]);
    assert!(!modern_lookups.is_empty());
    assert!(
        modern_lookups.iter().all(|l| l.contains("tier=modern-tls")),
        "{modern_lookups:?}"
    );
    assert!(
        !sender
            .log()
            .lines()
            .any(|l| l.contains("to=<user@modern.test>") && l.contains("status=deferred")),
        "{}",
        sender.log()
    );
    // The history is in the same database `peers` reads, under the next-hop key.
    let shown = crate::util::stdout_of(
        &["peers", "show", &legacy_key, "--db", db.to_str().unwrap()],
        "",
    );
    assert!(shown.contains("legacy-tls"), "{shown}");
}

#[test]
fn forged_status_in_a_recipient_address_cannot_walk_another_destination_down() {
    // Anyone who can make this MTA send one message chooses its recipient: a quoted local part
    // holding another destination's relay and a "TLS not offered" status. Read by the first
    // `relay=` and `status=` of the line, it walked the unpinned bank destination to cleartext.
    let receiver = PrivatePostfix::start();
    let Scene {
        sender, daemon, db, ..
    } = &Scene::start_with_policy(
        &[
            ("bank.test", receiver.modern),
            ("evil.test", receiver.plain),
        ],
        "[policy]\nstep_down_delay_secs = 0\npin_duration_secs = 0\n",
    );
    let bank_key = format!("[127.0.0.1]:{}", receiver.modern);
    let evil_key = format!("[127.0.0.1]:{}", receiver.plain);
    send(sender, "user@bank.test", "bank");
    daemon.wait_for(&[&format!("outcome={bank_key}"), "result=success"]);
    let show = || {
        crate::util::stdout_of(
            &[
                "peers",
                "show",
                &bank_key,
                "--json",
                "--db",
                db.to_str().unwrap(),
            ],
            "",
        )
    };
    let before = show();

    let forged = format!(
        "\"x@bank.test>, relay=127.0.0.1[127.0.0.1]:{}, delay=1, delays=0/0/0/0, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]\"@evil.test",
        receiver.modern
    );
    send(sender, &forged, "forged");
    // Booked for the answer the Postfix process that made the attempt got (found through /proc).
    daemon.wait_for(&[
        &format!("outcome={evil_key}"),
        "result=starttls-not-offered",
        "attributed_by=process",
    ]);
    assert!(
        sender.log().contains("to=<\"x@bank.test>, relay="),
        "Postfix logged the address as the attack needs: {}",
        sender.log()
    );
    assert_eq!(
        daemon.matching(&[&format!("outcome={bank_key}")]).len(),
        1,
        "only the real delivery to the bank: {:?}",
        daemon.lines()
    );
    assert_eq!(show(), before, "the bank's history is untouched");
    assert_eq!(
        daemon.ask(&netstring(&format!("tlsfallback {bank_key}"))),
        reply(MODERN),
    );
}

#[test]
fn postfix_never_sends_a_pinned_peer_cleartext_behind_a_stripping_proxy() {
    let receiver = PrivatePostfix::start();
    let proxy =
        StrippingProxy::start(format!("127.0.0.1:{}", receiver.modern).parse().unwrap()).unwrap();
    let proxy_port = proxy.address.port();
    let Scene { sender, daemon, .. } = &Scene::start(&[("pinned.test", proxy_port)]);
    let key = format!("[127.0.0.1]:{proxy_port}");

    // First contact through the honest proxy: TLS works, the peer is pinned.
    send(sender, "user@pinned.test", "before the attack");
    receiver.mailbox(1);
    daemon.wait_for(&[&format!("outcome={key}"), "result=success", "next=done"]);

    // The attacker strips STARTTLS from now on.
    proxy.strip();
    send(sender, "user@pinned.test", "during the attack");
    daemon.wait_for(&[
        &format!("outcome={key}"),
        "result=starttls-not-offered",
        "next=defer",
    ]);
    // Postfix retries; the daemon still answers TLS, never `none`.
    sender.command("postqueue", &["-f"], "");
    sender.wait_for(
        || {
            sender
                .log()
                .matches("TLS is required, but was not offered by host")
                .count()
                >= 2
        },
        "a second deferral",
    );
    let lookups = daemon.matching(&[&format!("lookup={key}")]);
    assert!(lookups.len() >= 3, "{lookups:?}");
    assert!(
        lookups
            .iter()
            .all(|l| l.contains("tier=modern-tls") && l.contains("answer=\"OK encrypt")),
        "{lookups:?}"
    );
    // Nothing reached the receiver in cleartext: only the message from before the attack.
    std::thread::sleep(Duration::from_millis(500));
    let messages = receiver.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("Subject: before the attack"));
    let queue = sender.command("postqueue", &["-p"], "");
    assert!(
        queue.contains("user@pinned.test") && queue.contains("TLS is required"),
        "the message waits in Postfix's queue: {queue}"
    );
}

#[test]
fn postfix_own_lookup_client_gets_the_policy() {
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&state.path().join("h.sqlite3"), None, &[]);
    // postmap reads a main.cf; a minimal one will do.
    std::fs::write(state.path().join("main.cf"), "compatibility_level = 3.6\n").unwrap();
    let query = |key: &str| {
        let output = Command::new("postmap")
            .arg("-c")
            .arg(state.path())
            .args(["-q", key, &daemon.table()])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        )
    };
    assert_eq!(
        query("[192.0.2.1]:2525"),
        (
            Some(0),
            "encrypt protocols=>=TLSv1.2 ciphers=high".to_owned()
        )
    );
    // A parent-domain probe is not ours: postmap reports "not found" with exit status 1.
    assert_eq!(query(".example.com"), (Some(1), String::new()));
}

#[test]
fn malformed_requests_get_perm_and_the_server_keeps_serving() {
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&state.path().join("h.sqlite3"), None, &[]);
    assert_eq!(
        daemon.ask(b"hello"),
        reply("PERM a netstring must start with its length in decimal and a colon, not \"h\"")
    );
    assert!(daemon.ask(b"5:abcde;").contains("PERM "));
    assert!(daemon.ask(b"999999:").contains("PERM "));
    assert!(
        daemon
            .ask(&netstring("othermap example.com"))
            .contains("PERM this daemon serves the map \"tlsfallback\"")
    );
    assert!(daemon.ask(&netstring("nospace")).contains("PERM "));
    assert_eq!(
        daemon.ask(&netstring("tlsfallback .example.com")),
        reply("NOTFOUND ")
    );
    assert!(
        daemon
            .ask(&netstring("tlsfallback a\u{1}b"))
            .contains(":PERM ")
    );
    // Still serving, several requests on one connection.
    let both = [
        netstring("tlsfallback example.com"),
        netstring("tlsfallback [mx.example.net]:587"),
    ]
    .concat();
    let replies = daemon.ask(&both);
    assert_eq!(replies, reply(MODERN).repeat(2));
}

#[test]
fn many_concurrent_connections_each_get_their_answers() {
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&state.path().join("h.sqlite3"), None, &[]);
    let port = daemon.port;
    let threads: Vec<_> = (0..32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for i in 0..25 {
                    stream
                        .write_all(&netstring(&format!("tlsfallback dest{t}-{i}.example")))
                        .unwrap();
                    let mut answer = Vec::new();
                    reader.read_until(b',', &mut answer).unwrap();
                    assert_eq!(String::from_utf8(answer).unwrap(), reply(MODERN));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let peers = crate::util::stdout_of(
        &[
            "peers",
            "list",
            "--db",
            state.path().join("h.sqlite3").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(
        peers.lines().count(),
        32 * 25,
        "one history row per destination"
    );
}

/// Lines as Postfix 3.7 writes them for one attempt (`smtp_tls_loglevel = 1`).
fn attempt_lines(pid: u32, port: u16, queue_id: &str, success: bool) -> Vec<String> {
    let at = "Nov 30 17:55:57 sender postfix/smtp";
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{port}, delay=1, delays=0/0/0/0");
    if success {
        vec![
            format!(
                "{at}[{pid}]: Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:{port}: TLSv1 with cipher ECDHE-RSA-AES256-SHA (256/256 bits)"
            ),
            format!(
                "{at}[{pid}]: {queue_id}: to=<u@x.test>, {relay}, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
            ),
        ]
    } else {
        vec![
            format!("{at}[{pid}]: SSL_connect error to 127.0.0.1[127.0.0.1]:{port}: -1"),
            format!(
                "{at}[{pid}]: warning: TLS library problem: error:0A00042E:SSL routines::tlsv1 alert protocol version:../ssl/record/rec_layer_s3.c:1601:SSL alert number 70:"
            ),
            format!(
                "{at}[{pid}]: {queue_id}: to=<u@x.test>, {relay}, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)"
            ),
        ]
    }
}

fn append(path: &Path, lines: &[String]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

/// One lookup of `key` by a process of its own (postmap, with the minimal `main.cf` in `dir`), as
/// each Postfix delivery makes it: the answer, and the PID the daemon saw asking.
fn postmap_lookup(dir: &Path, daemon: &Daemon, key: &str) -> (String, u32) {
    let main_cf = dir.join("main.cf");
    if !main_cf.exists() {
        std::fs::write(&main_cf, "compatibility_level = 3.6\n").unwrap();
    }
    let child = Command::new("postmap")
        .arg("-c")
        .arg(dir)
        .args(["-q", key, &daemon.table()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        pid,
    )
}

#[test]
fn log_lines_count_once_across_crashes_restarts_and_rotation() {
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("history.sqlite3");
    let log = state.path().join("maillog");
    append(
        &log,
        &["Nov 30 17:55:55 sender postfix/master[1]: daemon started".to_owned()],
    );
    // Each lookup is made by a process of its own, as each Postfix delivery is: the daemon books
    // a logged attempt for the answer that very process got.
    let lookup = |daemon: &Daemon, port: u16| {
        postmap_lookup(state.path(), daemon, &format!("[127.0.0.1]:{port}"))
    };

    let first = Daemon::start(&db, Some(&log), &[]);
    let (answer, a) = lookup(&first, 2000);
    assert!(answer.contains("encrypt protocols=>=TLSv1.2"), "{answer}");
    append(&log, &attempt_lines(a, 2000, "AAA", false));
    first.wait_for(&["queue_id=AAA", "next=\"attempt legacy-tls\""]);
    drop(first); // killed, as by a crash

    let second = Daemon::start(&db, Some(&log), &[]);
    let (answer, b) = lookup(&second, 2000);
    assert!(
        answer.contains("encrypt protocols=>=TLSv1:<=TLSv1.2 ciphers=low"),
        "the dance goes on after a restart: {answer}"
    );
    let (answer, x) = lookup(&second, 3000);
    assert!(answer.contains("encrypt"), "{answer}");
    // A delivery that starts now and ends while the daemon is down.
    let (_, c) = lookup(&second, 2000);
    // Half of an attempt (its TLS line) is read, then the daemon dies before its status line.
    let success = attempt_lines(b, 2000, "BBB", true);
    append(&log, &success[..1]);
    append(&log, &attempt_lines(x, 3000, "XXX", false));
    second.wait_for(&["queue_id=XXX"]);
    drop(second);

    // While it is down: the status line, then the log is rotated and a new attempt written.
    append(&log, &success[1..]);
    std::fs::rename(&log, state.path().join("maillog.20261130-180000")).unwrap();
    append(&log, &attempt_lines(c, 2000, "CCC", true));

    let third = Daemon::start(&db, Some(&log), &[]);
    third.wait_for(&["queue_id=CCC"]);
    let outcomes = third.matching(&["outcome="]);
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes[0].contains("queue_id=BBB")
            && outcomes[0].contains("tier=legacy-tls")
            && outcomes[0].contains("result=success"),
        "the half-read attempt is finished from the rotated file: {outcomes:?}"
    );
    drop(third);

    let fourth = Daemon::start(&db, Some(&log), &[]);
    // The log is read before the first lookup is answered.
    assert!(
        lookup(&fourth, 2000).0.contains("ciphers=low"),
        "remembered"
    );
    assert!(
        fourth.matching(&["outcome="]).is_empty(),
        "nothing is counted twice: {:?}",
        fourth.lines()
    );
}

#[test]
fn postfix_config_prints_lines_postfix_accepts() {
    let text = crate::util::stdout_of(
        &[
            "postfix",
            "config",
            "--listen",
            "inet:127.0.0.1:10027",
            "--log",
            "/var/log/postfix.log",
        ],
        "",
    );
    assert!(
        text.contains("smtp_tls_policy_maps = socketmap:inet:127.0.0.1:10027:tlsfallback\n"),
        "{text}"
    );
    assert!(text.contains("smtp_tls_loglevel = 1\n"), "{text}");
    assert!(text.contains("@SECLEVEL=0"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.cf"),
        format!("compatibility_level = 3.6\n{text}"),
    )
    .unwrap();
    std::fs::copy("/etc/postfix/master.cf", dir.path().join("master.cf")).unwrap();
    let output = Command::new("postconf")
        .arg("-c")
        .arg(dir.path())
        .args([
            "-n",
            "smtp_tls_policy_maps",
            "tls_low_cipherlist",
            "maillog_file",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.contains("maillog_file = /var/log/postfix.log"),
        "{stdout}"
    );
}

/// Lines as Postfix writes them for an attempt whose connection was reset in the handshake.
fn reset_lines(pid: u32, port: u16, queue_id: &str) -> Vec<String> {
    let at = "Dec  1 12:00:00 sender postfix/smtp";
    vec![
        format!("{at}[{pid}]: SSL_connect error to 127.0.0.1[127.0.0.1]:{port}: lost connection"),
        format!(
            "{at}[{pid}]: {queue_id}: to=<u@x.test>, relay=127.0.0.1[127.0.0.1]:{port}, delay=1, delays=0/0/0/1, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)"
        ),
    ]
}

#[test]
fn kill_9_of_postfix_serve_loses_and_repeats_no_outcome() {
    // Every attempt is a connection reset at modern TLS, cheap evidence the engine only counts
    // (the threshold is out of reach): the count in the history is the number of outcomes
    // applied. The daemon is killed with SIGKILL at random moments while it reads them.
    const ATTEMPTS: u32 = 40;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("history.sqlite3");
    let log = state.path().join("maillog");
    let policy = policy_file(
        state.path(),
        "[policy]\ntransient_failure_threshold = 255\n",
    );
    append(
        &log,
        &["Dec  1 12:00:00 sender postfix/master[1]: daemon started".to_owned()],
    );
    let start = || Daemon::start(&db, Some(&log), &["--policy", policy.to_str().unwrap()]);
    let mut rng = 0x5eed_u64;
    let mut next = || {
        // SplitMix64: reproducible without a dependency.
        rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut daemon = start();
    let mut kills = 0;
    for attempt in 0..ATTEMPTS {
        let (answer, pid) = postmap_lookup(state.path(), &daemon, "[127.0.0.1]:2000");
        assert!(answer.contains("encrypt"), "attempt {attempt}: {answer}");
        append(&log, &reset_lines(pid, 2000, &format!("Q{attempt:04}")));
        if next() % 3 == 0 {
            // Somewhere in reading, booking, or saving the position.
            std::thread::sleep(Duration::from_millis(next() % 120));
            drop(daemon); // SIGKILL
            kills += 1;
            daemon = start();
        }
    }
    // Wait until the last daemon has read the log to its end.
    let size = std::fs::metadata(&log).unwrap().len();
    let read_to = || -> i64 {
        let connection = rusqlite::Connection::open(&db).unwrap();
        connection
            .query_row("SELECT offset FROM postfix_log", [], |row| row.get(0))
            .unwrap_or(0)
    };
    for _ in 0..600 {
        if u64::try_from(read_to()).unwrap() >= size {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(daemon);
    let connection = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let shown = crate::util::stdout_of(
        &[
            "peers",
            "show",
            "[127.0.0.1]:2000",
            "--json",
            "--db",
            db.to_str().unwrap(),
        ],
        "",
    );
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        shown["transient_failures"],
        serde_json::json!(ATTEMPTS),
        "{ATTEMPTS} outcomes, each applied once across {kills} kills: {shown}"
    );
    assert!(kills > 5, "the run killed the daemon {kills} times");
}

#[test]
fn a_locked_database_delays_postfix_serve_and_loses_nothing() {
    // Another process (a backup, `sqlite3` by hand) holds the database: lookups and the log's
    // outcomes wait for it, then go on; nothing is dropped or booked twice.
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("history.sqlite3");
    let log = state.path().join("maillog");
    append(
        &log,
        &["Dec  1 12:00:00 sender postfix/master[1]: daemon started".to_owned()],
    );
    let daemon = Daemon::start(&db, Some(&log), &[]);
    let lookup = |daemon: &Daemon| postmap_lookup(state.path(), daemon, "[127.0.0.1]:2000");
    let (answer, pid) = lookup(&daemon);
    assert!(answer.contains("TLSv1.2"), "{answer}");

    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    append(&log, &attempt_lines(pid, 2000, "LOCKED1", false));
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        holder.execute_batch("COMMIT").unwrap();
    });
    let (answer, _) = lookup(&daemon);
    release.join().unwrap();
    assert!(
        answer.starts_with("encrypt"),
        "answered once the lock went: {answer}"
    );
    daemon.wait_for(&["queue_id=LOCKED1", "tier=modern-tls"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        daemon.matching(&["queue_id=LOCKED1"]).len(),
        1,
        "{:?}",
        daemon.lines()
    );
}
