//! Entry points for fuzzing every parser of outside input: each takes any bytes, runs one
//! parser on them the way the host does, and panics only when an invariant breaks (a panic in
//! the parser itself counts as one too).
//!
//! The fuzz targets in `fuzz/` are one call each to these, and the test suite replays the kept
//! corpus (`fuzz/corpus/<target>/`) through the same functions, so what a fuzzer once found stays
//! found. [`TARGETS`] names them all.

use std::io::BufReader;
use std::net::{Shutdown, TcpListener};
use std::time::Duration;

use policy_core::{History, MAX_HISTORY_LEN, Tier, Verification};

use crate::mta_sts::{self, MAX_MAX_AGE, Mode, MxPattern, Policy};
use crate::postfix::daemon::destination_key;
use crate::postfix::log::Tracker;
use crate::postfix::socketmap::{self, MAX_REQUEST_LEN, Request};
use crate::smtp::{self, Message, Timeouts};
use crate::tls::TrustAnchors;
use tlsfallback_engine::answer;
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::{EngineKind, open};

/// A fuzz target.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Its name: the fuzz target's (`fuzz/fuzz_targets/<name>.rs`) and its corpus directory's.
    pub name: &'static str,
    /// Its entry point.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: [Target; 11] = [
    Target {
        name: "history",
        run: history,
    },
    Target {
        name: "fleet_merge",
        run: fleet_merge,
    },
    Target {
        name: "decide",
        run: decide_lines,
    },
    Target {
        name: "socketmap",
        run: socketmap_requests,
    },
    Target {
        name: "smtp_replies",
        run: smtp_replies,
    },
    Target {
        name: "policy_file",
        run: policy_file,
    },
    Target {
        name: "postfix_log",
        run: postfix_log,
    },
    Target {
        name: "mta_sts_policy",
        run: mta_sts_policy,
    },
    Target {
        name: "mta_sts_txt",
        run: mta_sts_txt,
    },
    Target {
        name: "tlsrpt_record",
        run: tlsrpt_record,
    },
    Target {
        name: "tlsrpt_datagram",
        run: tlsrpt_datagram,
    },
];

/// A history blob (`policy_core::History::decode`): a blob that decodes re-encodes within the
/// size bound and decodes to the same history.
pub fn history(data: &[u8]) {
    let Ok(history) = History::decode(data) else {
        return;
    };
    let blob = history.encode();
    assert!(blob.as_bytes().len() <= MAX_HISTORY_LEN);
    assert_eq!(History::decode(blob.as_bytes()), Ok(history));
}

/// A node's history and a fleet's shared copy, the copy being anything Redis held (the first
/// byte is the local blob's length, the rest after it the copy): the merge never panics, and
/// what it gives decodes within the size bound, knows everything both sides know, keeps the
/// local dance before a decision and carries no dance to share.
pub fn fleet_merge(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (local, shared) = rest.split_at(usize::from(split).min(rest.len()));
    let (local_history, shared_history) = (History::decode(local), History::decode(shared));
    match policy_core::adopt_shared(Some(local), shared) {
        Ok(adopted) => {
            let adopted = History::decode(adopted.as_bytes()).expect("the merge decodes");
            let (local, shared) = (local_history.expect("ok"), shared_history.expect("ok"));
            assert!(local.memory.is_covered_by(&adopted.memory));
            assert!(shared.memory.is_covered_by(&adopted.memory));
            assert_eq!(adopted.dance, local.dance);
        }
        Err(_) => assert!(local_history.is_err() || shared_history.is_err()),
    }
    match policy_core::blob_to_share(local, Some(shared)) {
        Ok(written) => {
            assert!(written.as_bytes().len() <= MAX_HISTORY_LEN);
            let written = History::decode(written.as_bytes()).expect("the copy decodes");
            assert_eq!(written.dance, None);
            let local = History::decode(local).expect("ok");
            assert!(local.memory.is_covered_by(&written.memory));
        }
        Err(_) => assert!(local_history.is_err()),
    }
}

/// `tlsfallback decide`'s input (JSON Lines, with the native engine and a policy file with
/// destinations, so each request's peer is matched against them): one JSON object out per line
/// that is not blank, and nothing else.
pub fn decide_lines(data: &[u8]) {
    let policy_file = PolicyFile::parse(
        "[[destination]]\npeer = \".example.net\"\nprofile = \"mandatory\"\n\n\
         [[destination]]\npeer = \"mx.bank.example\"\nallow_cleartext = false\n",
    )
    .expect("the fixed policy file parses");
    let mut engine = open(EngineKind::Native, None).expect("the native engine opens");
    let mut output = Vec::new();
    let stats = answer::run(
        engine.as_mut(),
        &policy_file,
        data,
        &mut output,
        &mut |_| {},
    )
    .expect("reading a slice and writing a Vec do not fail");
    let lines: Vec<&[u8]> = output.split(|b| *b == b'\n').collect();
    let (last, answers) = lines.split_last().expect("split yields one piece at least");
    assert!(last.is_empty(), "every answer ends in a newline");
    assert_eq!(answers.len() as u64, stats.answered + stats.rejected);
    for answer in answers {
        let value: serde_json::Value = serde_json::from_slice(answer).expect("answers are JSON");
        assert!(value.is_object());
    }
    let requests = data
        .split(|b| *b == b'\n')
        .filter(|line| line.len() > answer::MAX_LINE_LEN || !line.trim_ascii().is_empty())
        .count();
    assert_eq!(answers.len(), requests, "one answer per request line");
}

/// What Postfix (or any local user) sends the socketmap daemon: netstrings framed within the
/// limit, each parsed as a request, its key as a destination and the next hop to resolve.
pub fn socketmap_requests(data: &[u8]) {
    let mut input = data;
    loop {
        match socketmap::read_netstring(&mut input, MAX_REQUEST_LEN) {
            Ok(Some(request)) => {
                assert!(request.len() <= MAX_REQUEST_LEN);
                if let Ok(request) = Request::parse(&request)
                    && let Some(key) = destination_key(request.key)
                {
                    assert_eq!(destination_key(&key).as_deref(), Some(key.as_str()));
                    // The next hop whose floor is resolved: a name in lower case, or nothing
                    // to resolve for an address.
                    match crate::postfix::floor::Target::of(&key) {
                        crate::postfix::floor::Target::Domain { domain: name, .. }
                        | crate::postfix::floor::Target::Host { host: name, .. } => {
                            assert!(!name.is_empty() && name == name.to_ascii_lowercase());
                            assert!(name.parse::<std::net::IpAddr>().is_err());
                        }
                        crate::postfix::floor::Target::Literal => {}
                    }
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// An SMTP server's replies to one cleartext delivery attempt ([`smtp::attempt`]; the reply
/// parser is private to it), served from a loopback listener that sends `data` and closes. The
/// first byte, when odd, asks for STARTTLS at the modern tier (the handshake then meets the rest
/// of `data`). Any outcome will do; a panic or a hang will not.
pub fn smtp_replies(data: &[u8]) {
    let (starttls, replies) = match data.split_first() {
        Some((first, rest)) => (first % 2 == 1, rest.to_vec()),
        None => (false, Vec::new()),
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback listener");
    let address = listener.local_addr().expect("its address");
    let server = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = std::io::Write::write_all(&mut stream, &replies);
        let _ = stream.shutdown(Shutdown::Write);
        // Take whatever the client sends until it closes.
        let _ = std::io::copy(&mut BufReader::new(stream), &mut std::io::sink());
    });
    let tls = starttls
        .then(|| Tier::ModernTls.parameters(Verification::None))
        .flatten();
    let to = ["postmaster@example.net".to_owned()];
    let message = Message {
        from: "sender@example.com",
        to: &to,
        data: b"Subject: fuzz\n\nbody\n",
    };
    // A hang is a fuzzing finding: every stage and the whole attempt end within seconds.
    let five = Duration::from_secs(5);
    let timeouts = Timeouts {
        connect: five,
        greeting: five,
        starttls: five,
        mail: five,
        rcpt: five,
        data_init: five,
        data_transfer: five,
        data_done: five,
        quit: five,
        attempt: five,
    };
    let _ = smtp::attempt(
        address,
        "mx.example.net",
        "client.example.com",
        tls.as_ref(),
        &TrustAnchors::default(),
        timeouts,
        &message,
    );
    server.join().expect("the fake server does not panic");
}

/// A policy file's text, then (after a NUL byte, if any) peer names, one a line: parsed, and
/// when it parses, every peer gets its policy.
pub fn policy_file(data: &[u8]) {
    let (text, peers) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (
            data,
            &b"mx.example.com\nexample.com\n\n.\nMX.EXAMPLE.COM."[..],
        ),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(file) = PolicyFile::parse(text) else {
        return;
    };
    let _ = file.default_policy();
    let _ = file.plugin_config();
    for peer in String::from_utf8_lossy(peers).split('\n') {
        let _ = file.policy_for(peer);
    }
}

/// Postfix's log, line by line through the tracker; its state survives the round trip through
/// the form the daemon saves it in (JSON).
pub fn postfix_log(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut tracker = Tracker::default();
    for line in text.lines() {
        let _ = tracker.feed(line);
    }
    let saved = serde_json::to_string(&tracker).expect("the tracker serializes");
    let restored: Tracker = serde_json::from_str(&saved).expect("and reads back");
    assert_eq!(restored, tracker);
}

/// An MTA-STS policy body (`mta_sts::Policy::parse`): a policy that parses keeps its promises
/// (max_age capped, `mx` present unless the mode is `none`), its text parses to the same policy,
/// each pattern reads back from its own form, and the canonical rendering of its fields (when it
/// fits the size cap) parses to the same fields.
pub fn mta_sts_policy(data: &[u8]) {
    let Ok(policy) = Policy::parse(data) else {
        return;
    };
    assert!(policy.max_age <= MAX_MAX_AGE);
    assert!(policy.mode == Mode::None || !policy.mx.is_empty());
    assert_eq!(
        Policy::parse(policy.text().as_bytes()).as_ref(),
        Ok(&policy)
    );
    for pattern in &policy.mx {
        assert_eq!(MxPattern::parse(&pattern.to_string()).as_ref(), Ok(pattern));
    }
    let canonical = Policy::new(policy.mode, policy.max_age, policy.mx.clone());
    // The canonical form spells `mx: ` with its space, so it can outgrow the size cap that a
    // compact input met.
    if canonical.text().len() > mta_sts::MAX_POLICY_BYTES {
        return;
    }
    let reparsed = Policy::parse(canonical.text().as_bytes()).expect("the canonical form parses");
    assert_eq!(
        (reparsed.mode, reparsed.max_age, &reparsed.mx),
        (policy.mode, policy.max_age, &policy.mx)
    );
}

/// The `_mta-sts` TXT records (one per line of the input, `mta_sts::parse_txt`): an id that comes
/// out is 1 to 32 letters and digits, and only one record starting with `v=STSv1` yields one.
pub fn mta_sts_txt(data: &[u8]) {
    let records: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if let Ok(Some(txt)) = mta_sts::parse_txt(&records) {
        assert!((1..=32).contains(&txt.id.len()));
        assert!(txt.id.bytes().all(|b| b.is_ascii_alphanumeric()));
        // The RFC's test, restated: `v=STSv1`, optional WSP, `;`.
        let candidates = records
            .iter()
            .filter(|r| {
                r.strip_prefix(b"v=STSv1").is_some_and(|rest| {
                    rest.iter().find(|b| !matches!(b, b' ' | b'\t')) == Some(&b';')
                })
            })
            .count();
        assert_eq!(candidates, 1);
    }
}

/// A recipient domain's `_smtp._tls` TXT records, one per line (`tlsrpt::record::select`):
/// a record chosen is the only one starting `v=TLSRPTv1` then `;`, is text without control
/// characters, and names a `mailto:` or `https://` rua.
pub fn tlsrpt_record(data: &[u8]) {
    let records: Vec<Vec<u8>> = data.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    let Ok(record) = crate::tlsrpt::record::select(&records) else {
        return;
    };
    let candidates = records
        .iter()
        .filter(|r| {
            r.strip_prefix(b"v=TLSRPTv1")
                .is_some_and(|rest| rest.iter().find(|b| **b != b' ') == Some(&b';'))
        })
        .count();
    assert_eq!(candidates, 1);
    assert!(!record.chars().any(char::is_control));
    // URI schemes are case-insensitive (RFC 3986 section 3.1): `mailTo:` counts.
    let lower = record.to_ascii_lowercase();
    assert!(lower.contains("mailto:") || lower.contains("https://"));
    assert!(records.iter().any(|r| r.as_slice() == record.as_bytes()));
}

/// A datagram as the ledger keeps it (`tlsrpt::datagram::Datagram::decode`, the persisted
/// format `tlsrpt preview` reads back): one that decodes encodes to JSON that decodes to the
/// same datagram, and renders into a report with as many sessions as it holds.
pub fn tlsrpt_datagram(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(datagram) = crate::tlsrpt::datagram::Datagram::decode(text) else {
        return;
    };
    let encoded = datagram.encode();
    assert_eq!(
        crate::tlsrpt::datagram::Datagram::decode(&encoded)
            .ok()
            .as_ref(),
        Some(&datagram)
    );
    let reporter = crate::tlsrpt::preview::Reporter {
        organization_name: "fuzz".to_owned(),
        contact_info: "fuzz@example.org".to_owned(),
    };
    let reports =
        crate::tlsrpt::preview::reports("2026-12-01", std::slice::from_ref(&datagram), &reporter);
    let sessions: u64 = reports
        .iter()
        .flat_map(|report| &report.policies)
        .map(|policy| {
            policy.summary.total_successful_session_count
                + policy.summary.total_failure_session_count
        })
        .sum();
    assert_eq!(sessions, datagram.policies.len() as u64);
}
