use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output};

use tlsfallback_testkit::peers::{LocalPeer, PeerKind};

use crate::attempts::identity;

const MESSAGE: &str =
    "From: a@example.test\nTo: b@example.test\nSubject: test\n\n.dot line\nbody\n";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // No step-down delay in tests: the dance, not the waiting, is under test.
        std::fs::write(
            dir.path().join("policy.toml"),
            "[policy]\nstep_down_delay_secs = 0\n",
        )
        .unwrap();
        Self { dir }
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_with_env(args, stdin, &[])
    }

    fn run_with_env(&self, args: &[&str], stdin: &str, env: &[(&str, String)]) -> Output {
        let db = self.dir.path().join("peers.sqlite3");
        let policy = self.dir.path().join("policy.toml");
        let mut full: Vec<&str> = args.to_vec();
        if args[0] == "deliver" {
            full.extend(["--policy", policy.to_str().unwrap()]);
        }
        full.extend(["--db", db.to_str().unwrap()]);
        crate::util::run_with_env(&full, stdin, env)
    }

    fn deliver(&self, mx: &str) -> (i32, String) {
        let output = self.run(&[&crate::util::DELIVER_TO_MX[..], &[mx]].concat(), MESSAGE);
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn peers(&self, args: &[&str]) -> String {
        let mut full = vec!["peers"];
        full.extend_from_slice(args);
        let output = self.run(&full, "");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

fn mx(peer: &LocalPeer) -> String {
    format!("127.0.0.1:{}", peer.address.port())
}

#[test]
fn a_modern_peer_gets_the_message_intact_over_tls_1_3_and_is_pinned() {
    let env = Env::new();
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let (code, log) = env.deliver(&mx(&peer));
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("tier=modern-tls outcome=success version=TLSv1.3"),
        "{log}"
    );
    let messages = peer.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].data, MESSAGE.replace('\n', "\r\n").into_bytes());
    let show: serde_json::Value =
        serde_json::from_str(&env.peers(&["show", &mx(&peer), "--json"])).unwrap();
    assert_eq!(show["last_success_tier"], "modern-tls");
    assert!(show["pinned_until"].as_u64().is_some(), "{show}");
}

#[test]
fn a_legacy_peer_is_danced_down_once_then_reached_directly() {
    let env = Env::new();
    let peer = LocalPeer::start(PeerKind::LegacyOnly, identity()).unwrap();
    let (code, first) = env.deliver(&mx(&peer));
    assert_eq!(code, 0, "{first}");
    assert!(
        first.contains("tier=modern-tls outcome=tls-alert protocol-version"),
        "{first}"
    );
    assert!(
        first.contains("tier=legacy-tls outcome=success version=TLSv1 "),
        "{first}"
    );
    let (code, second) = env.deliver(&mx(&peer));
    assert_eq!(code, 0, "{second}");
    assert!(!second.contains("tier=modern-tls"), "{second}");
    assert!(second.contains("reason=remembered-tier"), "{second}");
    assert!(env.peers(&["list"]).contains("starts-at=legacy-tls"));
    assert_eq!(peer.messages().len(), 2);
}

#[test]
fn an_unreachable_host_defers_with_exit_75() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = Env::new();
    let (code, log) = env.deliver(&format!("127.0.0.1:{}", closed.port()));
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("outcome=connect-failed"), "{log}");
}

#[test]
fn a_peer_that_sends_garbage_defers_and_keeps_the_message() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            let _ = stream.write_all(b"\x16\x03\x01garbage that is not SMTP\r\n");
        }
    });
    let env = Env::new();
    let (code, log) = env.deliver(&format!("127.0.0.1:{port}"));
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("not an SMTP reply"), "{log}");
}

#[test]
fn bad_input_gets_a_clear_error_and_the_right_exit_code() {
    let env = Env::new();
    let bad_address = env.run(
        &[
            "deliver",
            "--from",
            "a@example.test",
            "--to",
            "no at sign",
            "--mx",
            "127.0.0.1:9",
        ],
        MESSAGE,
    );
    assert_eq!(bad_address.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad_address.stderr).contains("--to"));
    let long_line = format!("Subject: x\n\n{}\n", "x".repeat(1200));
    let too_long = env.run(
        &[
            "deliver",
            "--from",
            "",
            "--to",
            "b@example.test",
            "--mx",
            "127.0.0.1:9",
        ],
        &long_line,
    );
    assert_eq!(too_long.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("line 3"));
    let two_domains = env.run(
        &[
            "deliver",
            "--from",
            "",
            "--to",
            "b@one.test",
            "--to",
            "c@two.test",
        ],
        MESSAGE,
    );
    assert_eq!(two_domains.status.code(), Some(64));
}

#[test]
fn a_corrupt_history_row_is_shown_as_unreadable_and_healed_by_the_next_delivery() {
    let env = Env::new();
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    {
        let mut store =
            tlsfallback_mta::store::HistoryStore::open(&env.dir.path().join("peers.sqlite3"))
                .unwrap();
        store
            .update(&mx(&peer), 1, |_| {
                Ok::<_, tlsfallback_mta::store::StoreError>(((), vec![9, 9, 9]))
            })
            .unwrap();
    }
    assert!(env.peers(&["list"]).contains("UNREADABLE HISTORY"));
    let (code, log) = env.deliver(&mx(&peer));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("reason=history-unreadable"), "{log}");
    assert!(!env.peers(&["list"]).contains("UNREADABLE"));
    assert!(env.peers(&["forget", &mx(&peer)]).contains("forgot"));
}

#[test]
fn the_demo_shows_the_dance_then_memory_and_refuses_the_stripped_peer() {
    let output = Command::new(env!("CARGO_BIN_EXE_tlsfallback"))
        .arg("demo")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = String::from_utf8(output.stdout).unwrap();
    let round2 = out.split("== round 2").nth(1).expect("two rounds");
    let section = |name: &str| -> String {
        round2
            .split("-- ")
            .find(|s| s.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        section("legacy.demo.test").contains("tier=legacy-tls outcome=success"),
        "{out}"
    );
    assert!(
        !section("legacy.demo.test").contains("tier=modern-tls"),
        "{out}"
    );
    assert!(
        section("modern.demo.test").contains("tier=modern-tls outcome=success"),
        "{out}"
    );
    assert!(section("stripped.demo.test").contains("deferred"), "{out}");
    assert!(
        !section("stripped.demo.test").contains("tier=cleartext"),
        "{out}"
    );
    assert!(out.contains("received in cleartext: 0"), "{out}");
}

/// A fake peer: on every connection, sends the first scripted reply, then answers each client line
/// with the next one, then hangs up.
fn scripted(replies: &[&str]) -> u16 {
    use std::io::{BufRead, BufReader};
    let replies: Vec<String> = replies.iter().map(|r| (*r).to_owned()).collect();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8).flatten() {
            let replies = replies.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut replies = replies.iter();
                if let Some(banner) = replies.next() {
                    let _ = writer.write_all(banner.as_bytes());
                }
                let mut line = String::new();
                for reply in replies {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let _ = writer.write_all(reply.as_bytes());
                }
            });
        }
    });
    port
}

#[test]
fn a_peer_that_closes_mid_data_defers_and_keeps_the_message() {
    // No STARTTLS, so the engine steps down to cleartext; there the peer drops the connection
    // after 354, before its verdict on the message.
    let port = scripted(&[
        "220 x ESMTP\r\n",
        "250 x\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
    ]);
    let env = Env::new();
    let (code, log) = env.deliver(&format!("127.0.0.1:{port}"));
    assert_eq!(code, 75, "{log}");
    assert!(
        log.contains("tier=cleartext outcome=connection-reset"),
        "{log}"
    );
}

#[test]
fn an_oversized_reply_line_is_refused_not_buffered() {
    let huge = format!("220 {}\r\n", "x".repeat(100_000));
    let port = scripted(&[&huge]);
    let env = Env::new();
    let (code, log) = env.deliver(&format!("127.0.0.1:{port}"));
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("reply line too long"), "{log}");
}

#[test]
fn a_permanent_rejection_of_the_recipient_bounces_with_exit_69() {
    let port = scripted(&[
        "220 x ESMTP\r\n",
        "250 x\r\n",
        "250 ok\r\n",
        "550 5.1.1 no such user\r\n",
        "221 bye\r\n",
    ]);
    let env = Env::new();
    let (code, log) = env.deliver(&format!("127.0.0.1:{port}"));
    assert_eq!(code, 69, "{log}");
    assert!(log.contains("no such user"), "{log}");
}

#[test]
fn dane_needs_its_records_and_a_matching_record_delivers_at_authenticated_tls() {
    let env = Env::new();
    let output = env.run(
        &[
            "deliver",
            "--from",
            "",
            "--to",
            "b@example.test",
            "--mx",
            "127.0.0.1:9",
            "--dane",
            "usable",
        ],
        MESSAGE,
    );
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tlsa"));
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let record = crate::attempts::tlsa_3_1_1(&identity().certificate);
    let output = env.run(
        &[
            "deliver",
            "--from",
            "",
            "--to",
            "b@example.test",
            "--mx",
            &mx(&peer),
            "--tlsa",
            &record,
        ],
        MESSAGE,
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("tier=authenticated-tls outcome=success"),
        "{log}"
    );
}

#[test]
fn tlsa_records_openssl_rejects_make_dane_unusable_not_ca_verified() {
    // The peer's certificate is trusted by the default CA store (SSL_CERT_FILE), as a certificate
    // from a public CA would be; the only TLSA record has a digest of the wrong length.
    let env = Env::new();
    let ca = env.dir.path().join("roots.pem");
    std::fs::write(&ca, identity().certificate.to_pem().unwrap()).unwrap();
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let output = env.run_with_env(
        &[
            "deliver",
            "--from",
            "",
            "--to",
            "b@example.test",
            "--mx",
            &mx(&peer),
            "--tlsa",
            "3 1 1 abcd",
        ],
        MESSAGE,
        &[("SSL_CERT_FILE", ca.to_str().unwrap().to_owned())],
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("TLSA RRset is unusable"), "{log}");
    assert!(!log.contains("tier=authenticated-tls"), "{log}");
    // Unusable DANE still demands TLS (RFC 7672 section 2.2): delivered, unauthenticated.
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("tier=modern-tls outcome=success"), "{log}");
}

/// The response code and the (preference, exchange) pairs a fake DNS server answers.
type DnsAnswer = (hickory_proto::op::ResponseCode, Vec<(u16, &'static str)>);

/// A fake DNS server on 127.0.0.1 answering every MX query with `answer(domain)`, an A query
/// for `localhost` with 127.0.0.1, and any other query with no records.
fn dns_server(answer: fn(&str) -> DnsAnswer) -> String {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::rdata::MX;
    use hickory_proto::rr::{Name, RData, Record};
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        while let Ok((len, from)) = socket.recv_from(&mut buffer) {
            let Ok(query) = Message::from_vec(&buffer[..len]) else {
                continue;
            };
            let name = query.queries[0].name().clone();
            let mut response = Message::new(
                query.metadata.id,
                MessageType::Response,
                query.metadata.op_code,
            );
            response.add_query(query.queries[0].clone());
            let asked = query.queries[0].query_type();
            if asked != hickory_proto::rr::RecordType::MX {
                // Addresses: this machine for `localhost`, nothing else (TXT, TLSA: none).
                if asked == hickory_proto::rr::RecordType::A
                    && name.to_ascii().eq_ignore_ascii_case("localhost.")
                {
                    response.add_answer(Record::from_rdata(
                        name.clone(),
                        60,
                        RData::A(hickory_proto::rr::rdata::A::new(127, 0, 0, 1)),
                    ));
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), from);
                continue;
            }
            let (code, exchangers) = answer(name.to_ascii().trim_end_matches('.'));
            response.metadata.response_code = code;
            for (preference, host) in exchangers {
                let exchange = Name::from_ascii(host).unwrap();
                response.add_answer(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::MX(MX::new(preference, exchange)),
                ));
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), from);
        }
    });
    address.to_string()
}

fn deliver_by_dns(env: &Env, dns: String, to: &str, port: u16) -> (i32, String) {
    let port = port.to_string();
    let output = env.run_with_env(
        &[
            "deliver",
            "--from",
            "a@example.test",
            "--to",
            to,
            "--port",
            &port,
            // The fake server signs nothing: with validation every answer would be bogus.
            "--dnssec",
            "off",
        ],
        MESSAGE,
        &[("TLSFALLBACK_DNS_SERVER", dns)],
    );
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn without_mx_the_dns_mx_hosts_are_tried_in_preference_order() {
    use hickory_proto::op::ResponseCode;
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    // The preferred MX does not resolve; the next one is this machine.
    let dns = dns_server(|_| {
        (
            ResponseCode::NoError,
            vec![(20, "localhost."), (10, "mx1.invalid.")],
        )
    });
    let env = Env::new();
    let (code, log) = deliver_by_dns(&env, dns, "b@example.test", peer.address.port());
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("skipping MX mx1.invalid"), "{log}");
    assert!(log.contains("delivered to localhost:"), "{log}");
    assert_eq!(peer.messages().len(), 1);
}

#[test]
fn a_null_mx_or_a_missing_domain_bounces_and_a_dns_failure_defers() {
    use hickory_proto::op::ResponseCode;
    let env = Env::new();
    let null = dns_server(|_| (ResponseCode::NoError, vec![(0, ".")]));
    let (code, log) = deliver_by_dns(&env, null, "b@example.test", 25);
    assert_eq!(code, 69, "{log}");
    assert!(log.contains("null MX"), "{log}");
    let missing = dns_server(|_| (ResponseCode::NXDomain, vec![]));
    assert_eq!(deliver_by_dns(&env, missing, "b@example.test", 25).0, 69);
    let broken = dns_server(|_| (ResponseCode::ServFail, vec![]));
    let (code, log) = deliver_by_dns(&env, broken, "b@example.test", 25);
    assert_eq!(code, 75, "{log}");
}

#[test]
fn a_domain_without_mx_records_is_its_own_mx() {
    use hickory_proto::op::ResponseCode;
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let dns = dns_server(|_| (ResponseCode::NoError, vec![]));
    let env = Env::new();
    let (code, log) = deliver_by_dns(&env, dns, "b@localhost", peer.address.port());
    assert_eq!(code, 0, "{log}");
}

/// A listener that counts the connections made to it (and says nothing).
fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count)
}

#[test]
fn helo_with_crlf_is_refused_not_sent() {
    let (port, connections) = counting_listener();
    let env = Env::new();
    for helo in [
        "client.test\r\nRCPT TO:<victim@example.test>",
        "client.test\nQUIT",
        "two words",
        "-dash.test",
        "[300.1.1.1]",
        "[IPv6:zz]",
        "",
    ] {
        let output = env.run(
            &[
                &crate::util::DELIVER_TO_MX[..],
                &[&format!("127.0.0.1:{port}"), &format!("--helo={helo}")],
            ]
            .concat(),
            MESSAGE,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{helo:?}: {stderr}");
        assert!(stderr.contains("--helo"), "{helo:?}: {stderr}");
    }
    for good in [
        "mail.example.org",
        "[192.0.2.1]",
        "[IPv6:2001:db8::1]",
        "localhost",
    ] {
        assert!(
            tlsfallback_cli::commands::deliver::check_helo_name(good).is_ok(),
            "{good}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection was made"
    );
}

#[test]
fn text_after_starttls_does_not_walk_a_tls_peer_to_cleartext() {
    // Before, the text read as a protocol-version alert at each TLS tier, and the same delivery
    // went on in cleartext.
    let env = Env::new();
    let peer = LocalPeer::start(PeerKind::TextAfterClientHello, identity()).unwrap();
    let (code, log) = env.deliver(&mx(&peer));
    assert_eq!(code, 75, "{log}");
    assert!(
        log.contains("tier=modern-tls outcome=tls-alert other"),
        "{log}"
    );
    assert!(!log.contains("tier=cleartext"), "{log}");
    assert!(peer.messages().is_empty());
}

#[test]
fn dribbling_peer_cannot_hold_an_attempt_past_its_deadline() {
    // One byte every 100 ms never trips a per-read timeout; the attempt's deadline ends it.
    let env = Env::new();
    let peer = LocalPeer::start(PeerKind::DribblingGreeting, identity()).unwrap();
    let output = env.run(
        &[
            &crate::util::DELIVER_TO_MX[..],
            &[&mx(&peer), "--attempt-timeout-secs", "1"],
        ]
        .concat(),
        MESSAGE,
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{log}");
    assert!(
        log.contains("the greeting stage ran past the attempt's deadline"),
        "{log}"
    );
    assert!(peer.messages().is_empty());
}

#[test]
fn trailing_dot_is_the_same_peer() {
    use tlsfallback_mta::postfix::daemon::destination_key;
    use tlsfallback_mta::store::peer_key;
    // One spelling everywhere: deliver, peers, and the Postfix daemon's lookup keys.
    assert_eq!(peer_key("MX.Example.org."), "mx.example.org");
    assert_eq!(peer_key("mx.example.org.:2525"), "mx.example.org:2525");
    assert_eq!(peer_key("[MX.example.org.]:2525"), "[mx.example.org]:2525");
    assert_eq!(peer_key("::1"), "::1");
    assert_eq!(destination_key("Example.COM.").unwrap(), "example.com");
    assert_eq!(
        destination_key("[mx.example.com.]:25").unwrap(),
        "[mx.example.com]:25"
    );
    let env = Env::new();
    let peer = LocalPeer::start(PeerKind::Modern, identity()).unwrap();
    let port = peer.address.port();
    for spelling in [format!("localhost.:{port}"), format!("LocalHost:{port}")] {
        let (code, log) = env.deliver(&spelling);
        assert_eq!(code, 0, "{spelling}: {log}");
    }
    let list = env.peers(&["list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.starts_with(&format!("localhost:{port} ")), "{list}");
    assert!(
        env.peers(&["show", &format!("LOCALHOST.:{port}")])
            .contains("localhost")
    );
    assert!(
        env.peers(&["forget", &format!("localhost.:{port}")])
            .contains("forgot")
    );
    assert!(env.peers(&["list"]).is_empty());
}

/// A cleartext-only SMTP peer that runs `on_message` once it has the whole message, before it
/// answers 250: the moment after which the message counts as delivered.
fn peer_with_hook(on_message: impl Fn() + Send + Sync + 'static) -> u16 {
    peer_with(|_| b"250 ok\r\n", on_message)
}

/// As [`peer_with_hook`], answering each RCPT TO line with `on_rcpt(line)`.
fn peer_with(
    on_rcpt: fn(&str) -> &'static [u8],
    on_message: impl Fn() + Send + Sync + 'static,
) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let on_message = std::sync::Arc::new(on_message);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8).flatten() {
            let on_message = on_message.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let _ = writer.write_all(b"220 hook.test ESMTP\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let upper = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250 hook.test\r\n"
                    } else if upper == "DATA" {
                        let _ = writer.write_all(b"354 go\r\n");
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == ".\r\n" {
                                break;
                            }
                        }
                        on_message();
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = writer.write_all(b"221 bye\r\n");
                        return;
                    } else if upper.starts_with("RCPT TO:") {
                        on_rcpt(&line)
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = writer.write_all(reply);
                    line.clear();
                }
            });
        }
    });
    port
}

/// A delivery whose history write finds the database locked by another connection (held until
/// the returned guard is dropped).
fn deliver_while_the_database_gets_locked(
    env: &Env,
) -> (
    Output,
    u16,
    std::sync::Arc<std::sync::Mutex<Option<rusqlite::Connection>>>,
) {
    let db = env.dir.path().join("peers.sqlite3");
    tlsfallback_mta::store::HistoryStore::open(&db).unwrap();
    let holder = std::sync::Arc::new(std::sync::Mutex::new(None));
    let held = holder.clone();
    let port = peer_with_hook(move || {
        let connection = rusqlite::Connection::open(&db).unwrap();
        connection.execute_batch("BEGIN EXCLUSIVE").unwrap();
        *held.lock().unwrap() = Some(connection);
    });
    let output = env.run(
        &[
            &crate::util::DELIVER_TO_MX[..],
            &[&format!("127.0.0.1:{port}"), "--db-busy-timeout-ms", "200"],
        ]
        .concat(),
        MESSAGE,
    );
    (output, port, holder)
}

#[test]
fn delivered_message_exits_0_when_the_database_is_locked() {
    let env = Env::new();
    let (output, _, lock) = deliver_while_the_database_gets_locked(&env);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(lock.lock().unwrap().is_some(), "the peer took the lock");
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("warning: the history update for 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("peers.sqlite3.pending"), "{log}");
    assert!(log.contains("delivered to 127.0.0.1:"), "{log}");
}

#[test]
fn pending_update_is_applied_once_on_next_run() {
    let env = Env::new();
    let (output, port, lock) = deliver_while_the_database_gets_locked(&env);
    assert_eq!(output.status.code(), Some(0));
    drop(lock.lock().unwrap().take());
    let peer = format!("127.0.0.1:{port}");
    let show = |env: &Env| -> serde_json::Value {
        serde_json::from_str(&env.peers(&["show", &peer, "--json"])).unwrap()
    };
    assert_eq!(show(&env)["last_success_tier"], serde_json::Value::Null);
    // The next delivery, to another (unreachable) host, applies the update first.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, log) = env.deliver(&closed.to_string());
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("applied 1 pending history update(s)"), "{log}");
    assert_eq!(show(&env)["last_success_tier"], "cleartext");
    let (_, log) = env.deliver(&closed.to_string());
    assert!(!log.contains("pending history"), "applied once: {log}");
}

#[test]
fn a_pending_update_recorded_twice_is_applied_once() {
    use policy_core::{AttemptReport, DeliveryContext, Outcome, Policy, Tier};
    use tlsfallback_mta::deciding;
    use tlsfallback_mta::store::{HistoryStore, PendingUpdate};
    let dir = tempfile::tempdir().unwrap();
    let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
    let mut engine =
        tlsfallback_engine::select::open(tlsfallback_engine::select::EngineKind::Native, None)
            .unwrap();
    let last = AttemptReport {
        tier: Tier::ModernTls,
        outcome: Outcome::Success { version: None },
    };
    let update = PendingUpdate::new(
        "mx.test",
        Policy::default(),
        DeliveryContext::default(),
        last,
        100,
    )
    .unwrap();
    // As if the journal could not be emptied after it was applied once.
    store.record_pending(&update).unwrap();
    store.record_pending(&update).unwrap();
    let applied = deciding::apply_pending(&mut store, engine.as_mut(), &mut |_| {}).unwrap();
    assert_eq!((applied.applied, applied.skipped), (1, 1));
    assert_eq!(
        deciding::apply_pending(&mut store, engine.as_mut(), &mut |_| {})
            .unwrap()
            .applied,
        0
    );
    let row = store.get("mx.test").unwrap().unwrap();
    let history = policy_core::History::decode(&row.history).unwrap();
    assert_eq!(history.memory.last_success_tier, Some(Tier::ModernTls));
}

#[test]
fn delivered_message_exits_0_when_the_disk_fills_up() {
    let disk = match crate::util::SmallDisk::mount("2m") {
        Ok(disk) => disk,
        Err(reason) => {
            println!("skipped: no tmpfs to fill ({reason})");
            return;
        }
    };
    let db = disk.path().join("peers.sqlite3");
    let filler = disk.path().join("filler");
    let fill = filler.clone();
    // The disk fills up while the peer takes the message.
    let port = peer_with_hook(move || {
        let mut file = std::fs::File::create(&fill).unwrap();
        let block = vec![0x5a; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    });
    let env = Env::new();
    let policy = env.dir.path().join("policy.toml");
    let deliver =
        |mx: &str| crate::util::run(&crate::util::deliver_args(mx, &policy, &db), MESSAGE);
    let output = deliver(&format!("127.0.0.1:{port}"));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(filler.exists(), "the peer filled the disk");
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("is kept in"), "{log}");
    // Room again: the next delivery applies the update.
    std::fs::remove_file(&filler).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = deliver(&closed.to_string());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("applied 1 pending history update(s)"), "{log}");
}

#[test]
fn one_refused_recipient_does_not_bounce_the_others() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let received = std::sync::Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let port = peer_with(
        |line| {
            if line.contains("nobody@") {
                b"550 5.1.1 no such user\r\n"
            } else if line.contains("full@") {
                b"452 4.2.2 mailbox full\r\n"
            } else {
                b"250 2.1.5 ok\r\n"
            }
        },
        move || {
            count.fetch_add(1, Ordering::SeqCst);
        },
    );
    let env = Env::new();
    let deliver = |to: &[&str]| {
        let mut args = vec!["deliver", "--from", "a@example.test"];
        for rcpt in to {
            args.extend(["--to", rcpt]);
        }
        let mx = format!("127.0.0.1:{port}");
        args.extend(["--mx", &mx]);
        let output = env.run(&args, MESSAGE);
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // A permanent refusal: the others get the message; the refused one bounces (69).
    let (code, log) = deliver(&["b@example.test", "nobody@example.test"]);
    assert_eq!(received.load(Ordering::SeqCst), 1, "{log}");
    assert_eq!(code, 69, "{log}");
    assert!(
        log.contains("recipient <nobody@example.test> bounced: 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("550 5.1.1 no such user"), "{log}");
    assert!(log.contains("for all but 1 recipient(s)"), "{log}");
    // A temporary refusal among them: that one is deferred (75), the message still went.
    let (code, log) = deliver(&["b@example.test", "nobody@example.test", "full@example.test"]);
    assert_eq!(received.load(Ordering::SeqCst), 2, "{log}");
    assert_eq!(code, 75, "{log}");
    assert!(
        log.contains("recipient <full@example.test> deferred"),
        "{log}"
    );
    assert!(
        log.contains("recipient <nobody@example.test> bounced"),
        "{log}"
    );
    // Everyone accepted: 0, no recipient lines.
    let (code, log) = deliver(&["b@example.test", "c@example.test"]);
    assert_eq!((code, received.load(Ordering::SeqCst)), (0, 3), "{log}");
    assert!(!log.contains("recipient <"), "{log}");
}
