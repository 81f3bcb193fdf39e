//! Postfix's log, read back as the engine's outcomes.
//!
//! The Postfix SMTP client logs each delivery's TLS story over several lines of the same process
//! (`postfix/smtp[PID]`), lines of other processes interleaved: `connect to …` failures,
//! `SSL_connect error to …`, `warning: TLS library problem: error:0A00042E:…`, `certificate
//! verification failed for …`, `… TLS connection established to HOST[ADDR]:PORT: TLSv1.3 with
//! cipher …`, and finally one `QUEUEID: to=<…>, relay=…, dsn=…, status=…` line per recipient.
//! [`Tracker`] keeps what each process said until its status line, then turns the whole into one
//! [`Observed`] attempt. Lines of every other kind are ignored.

use std::collections::BTreeMap;

use policy_core::{CertificateError, Outcome, TlsAlert, TlsVersion};
use serde::{Deserialize, Serialize};

/// The most processes tracked at once; Postfix runs at most `default_process_limit` (100) SMTP
/// clients, so more means processes that died without a status line.
const MAX_PROCESSES: usize = 1024;
/// The most problem lines kept per process until its status line.
const MAX_PROBLEMS: usize = 8;

/// One finished attempt, read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The lookup keys this attempt may have been made under, most likely first: the recipient's
    /// domain, then the relay as `[host]:port`, `host:port` (and `[host]`, `host` on port 25).
    pub candidates: Vec<String>,
    /// What happened, in the engine's terms.
    pub outcome: Outcome,
    /// Postfix's queue ID.
    pub queue_id: String,
    /// The status line's own words (`status=… (…)`).
    pub detail: String,
}

/// What one SMTP client process has said since its last status line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    /// The protocol version of the TLS connection up (`TLSv1.3`), if any.
    tls: Option<String>,
    /// Handshake, library and certificate problems, oldest first.
    problems: Vec<String>,
    /// `host[addr]:port` of the last connection attempt that failed.
    connect_failed: Option<String>,
    /// Whether something happened since the last status line (a new connection or handshake).
    fresh: bool,
    /// The queue ID of the last status line, to count a message with many recipients once.
    last_queue_id: Option<String>,
}

/// Assembles attempts from log lines; its state is saved with the log position so that a restart
/// neither loses nor repeats an attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    processes: BTreeMap<String, Pending>,
}

impl Tracker {
    /// Reads one log line (without its newline); an attempt when the line finishes one.
    pub fn feed(&mut self, line: &str) -> Option<Observed> {
        let (process, message) = split_line(line)?;
        if let Some(rest) = message.strip_prefix("warning: TLS library problem: ") {
            self.note_problem(process, rest);
            return None;
        }
        if message.starts_with("SSL_connect error to ")
            || message.contains("certificate verification failed for ")
        {
            self.note_problem(process, message);
            return None;
        }
        if let Some(rest) = message.strip_prefix("connect to ") {
            let pending = self.pending(process);
            pending.connect_failed = rest.split(": ").next().map(str::to_owned);
            pending.fresh = true;
            return None;
        }
        if let Some(at) = message.find(" TLS connection established to ") {
            let rest = &message[at + " TLS connection established to ".len()..];
            let (_, tls) = rest.split_once(": ")?;
            let version = tls.split(' ').next()?.to_owned();
            let pending = self.pending(process);
            pending.tls = Some(version);
            pending.fresh = true;
            return None;
        }
        let status = StatusLine::parse(message)?;
        let mut pending = self.processes.remove(process).unwrap_or_default();
        let repeat = !pending.fresh && pending.last_queue_id.as_deref() == Some(status.queue_id);
        let observed = if repeat {
            None
        } else {
            status.observe(&pending)
        };
        pending.fresh = false;
        pending.problems.clear();
        pending.connect_failed = None;
        pending.last_queue_id = Some(status.queue_id.to_owned());
        // A cached connection keeps its TLS for the next message of this process; stored through
        // `pending` so that the bound on processes holds.
        *self.pending(process) = pending;
        observed
    }

    fn pending(&mut self, process: &str) -> &mut Pending {
        if self.processes.len() >= MAX_PROCESSES && !self.processes.contains_key(process) {
            // Processes that died without a status line: forget the stalest-looking ones.
            self.processes.retain(|_, p| p.fresh);
            if self.processes.len() >= MAX_PROCESSES {
                self.processes.clear();
            }
        }
        self.processes.entry(process.to_owned()).or_default()
    }

    fn note_problem(&mut self, process: &str, text: &str) {
        let pending = self.pending(process);
        if pending.problems.len() == MAX_PROBLEMS {
            pending.problems.remove(0);
        }
        pending.problems.push(text.to_owned());
        pending.fresh = true;
        // A failed handshake ends that connection's TLS.
        pending.tls = None;
    }
}

/// Splits a syslog or `maillog_file` line into the process (`postfix/smtp[4530]`) and its message.
fn split_line(line: &str) -> Option<(&str, &str)> {
    // The process is the first word shaped NAME/SERVICE[PID]: whatever the timestamp format before
    // it (traditional, RFC 3339) and whatever the syslog_name.
    let mut offset = 0;
    for word in line.split(' ') {
        let end = offset + word.len();
        if let Some(process) = word.strip_suffix(':')
            && let Some((name, pid)) = process.strip_suffix(']').and_then(|p| p.split_once('['))
            && name.contains('/')
            && !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
        {
            return Some((process, line.get(end + 1..).unwrap_or_default()));
        }
        offset = end + 1;
    }
    None
}

/// A delivery status line: `QUEUEID: to=<rcpt>, relay=…, …, dsn=…, status=WORD (detail)`.
struct StatusLine<'a> {
    queue_id: &'a str,
    recipient: &'a str,
    relay: &'a str,
    status: &'a str,
    detail: &'a str,
}

impl<'a> StatusLine<'a> {
    fn parse(message: &'a str) -> Option<Self> {
        let (queue_id, rest) = message.split_once(": to=<")?;
        if queue_id.is_empty() || !queue_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (recipient, rest) = rest.split_once(">, ")?;
        let relay = field(rest, "relay=")?;
        let status_at = rest.find("status=")?;
        let status_text = &rest[status_at + "status=".len()..];
        let (status, detail) = match status_text.split_once(' ') {
            Some((status, detail)) => {
                (status, detail.trim_start_matches('(').trim_end_matches(')'))
            }
            None => (status_text, ""),
        };
        Some(Self {
            queue_id,
            recipient,
            relay,
            status,
            detail,
        })
    }

    /// The attempt this status line closes, if it was one (a status without a connection, like
    /// `delivery temporarily suspended`, is not).
    fn observe(&self, pending: &Pending) -> Option<Observed> {
        // Local, virtual, pipe and LMTP-over-socket deliveries name a transport, not a host.
        if self.relay != "none" && !self.relay.contains('[') {
            return None;
        }
        let outcome = self.outcome(pending)?;
        let endpoint = if self.relay == "none" {
            pending.connect_failed.as_deref().or_else(|| {
                self.detail
                    .strip_prefix("connect to ")
                    .and_then(|r| r.split(": ").next())
            })?
        } else {
            self.relay
        };
        let mut candidates = Vec::new();
        if let Some((_, domain)) = self.recipient.rsplit_once('@')
            && !domain.is_empty()
        {
            candidates.push(domain.to_ascii_lowercase());
        }
        candidates.extend(relay_keys(endpoint));
        Some(Observed {
            candidates,
            outcome,
            queue_id: self.queue_id.to_owned(),
            detail: format!("status={} ({})", self.status, self.detail),
        })
    }

    fn outcome(&self, pending: &Pending) -> Option<Outcome> {
        let version = pending.tls.as_deref().and_then(TlsVersion::from_name);
        let detail = self.detail;
        match self.status {
            "sent" => return Some(Outcome::Success { version }),
            "deferred" | "bounced" => {}
            _ => return None,
        }
        if detail.starts_with("TLS is required, but was not offered") {
            return Some(Outcome::StarttlsNotOffered);
        }
        if let Some((_, reply)) = detail.split_once("refused to start TLS: ") {
            let code = reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(454);
            return Some(Outcome::StarttlsRejected { code });
        }
        if detail.starts_with("Cannot start TLS") {
            return Some(handshake_outcome(&pending.problems));
        }
        if detail.starts_with("Server certificate not") {
            return Some(Outcome::CertificateError(certificate_error(
                &pending.problems,
            )));
        }
        if detail.starts_with("connect to ") {
            return Some(Outcome::ConnectFailed);
        }
        // The peer answered: the session itself worked at this tier (the message was refused for
        // other reasons), as `deliver` counts it; unless it was refused before the session began.
        if let Some((_, stage)) = detail.rsplit_once("(in reply to ") {
            let before_session = stage.starts_with("EHLO")
                || stage.starts_with("HELO")
                || stage.starts_with("STARTTLS");
            return Some(match (before_session, pending.tls.is_some()) {
                (false, _) => Outcome::Success { version },
                (true, true) => Outcome::PostHandshakeFailure,
                (true, false) => Outcome::ConnectFailed,
            });
        }
        let lost = detail.starts_with("lost connection with ");
        let timed_out = detail.starts_with("conversation with ") && detail.contains(" timed out ");
        if lost || timed_out {
            let outcome = if pending.tls.is_some() {
                Outcome::PostHandshakeFailure
            } else if detail.contains("while receiving the initial server greeting") {
                Outcome::ConnectFailed
            } else if timed_out {
                Outcome::HandshakeTimeout
            } else {
                Outcome::ConnectionReset
            };
            return Some(outcome);
        }
        // "delivery temporarily suspended", "Host or domain name not found", our own TEMP
        // answer, …: no attempt was made.
        None
    }
}

/// The value of `name` in a `name=value, …` list.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let at = text.find(name)?;
    let value = &text[at + name.len()..];
    Some(value.split(", ").next().unwrap_or(value))
}

/// The lookup keys Postfix uses for a next hop reached at `endpoint` (`host[addr]:port`).
fn relay_keys(endpoint: &str) -> Vec<String> {
    let (host, port) = match endpoint.split_once('[') {
        Some((host, rest)) => (host, rest.rsplit_once("]:").map_or("25", |(_, port)| port)),
        None => (endpoint, "25"),
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Vec::new();
    }
    let mut keys = vec![format!("[{host}]:{port}"), format!("{host}:{port}")];
    if port == "25" {
        keys.push(format!("[{host}]"));
        keys.push(host);
    }
    keys
}

/// The outcome of `Cannot start TLS: handshake failure`, from the lines before it.
fn handshake_outcome(problems: &[String]) -> Outcome {
    for problem in problems.iter().rev() {
        if let Some(reason) = openssl_reason(problem)
            && let Some(outcome) = crate::tls::outcome_for_reasons(&[reason])
        {
            return outcome;
        }
    }
    let said = |needle: &str| problems.iter().any(|p| p.contains(needle));
    if said("timed out") || said("timeout") {
        Outcome::HandshakeTimeout
    } else if said("lost connection") || said("Connection reset") {
        Outcome::ConnectionReset
    } else {
        Outcome::TlsAlert(TlsAlert::Other)
    }
}

/// The reason code of an OpenSSL error string: OpenSSL 3 writes `error:0A00042E:SSL routines::…`
/// (the reason is the low 23 bits), OpenSSL 1.1 `error:1409442E:SSL routines:func:…` (low 12).
fn openssl_reason(text: &str) -> Option<i32> {
    let (_, rest) = text.split_once("error:")?;
    let (hex, rest) = rest.split_once(':')?;
    let code = u32::from_str_radix(hex, 16).ok()?;
    let (_library, rest) = rest.split_once(':')?;
    let reason = if rest.starts_with(':') {
        code & 0x7F_FFFF
    } else {
        code & 0xFFF
    };
    i32::try_from(reason).ok()
}

fn certificate_error(problems: &[String]) -> CertificateError {
    let said = |needle: &str| {
        problems
            .iter()
            .any(|p| p.to_ascii_lowercase().contains(needle))
    };
    if said("expired") {
        CertificateError::Expired
    } else if said("tlsa") || said("dane") {
        CertificateError::DaneMismatch
    } else if said("name") || said("mismatch") {
        CertificateError::NameMismatch
    } else {
        CertificateError::Untrusted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    // Lines as Postfix 3.7.11 (Debian) with OpenSSL 3 wrote them, `smtp_tls_loglevel = 1`.
    const MODERN: &str = "Nov 30 17:55:57 sender postfix/smtp[4239]: Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:12525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256";
    const MODERN_SENT: &str = "Nov 30 17:55:57 sender postfix/smtp[4239]: ACAC09940B9: to=<u@modern.test>, relay=127.0.0.1[127.0.0.1]:12525, delay=1.9, delays=0.03/1.8/0.04/0.04, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 981D49940D7)";

    fn run(lines: &[&str]) -> Vec<Observed> {
        let mut tracker = Tracker::default();
        lines.iter().filter_map(|l| tracker.feed(l)).collect()
    }

    #[test]
    fn a_tls_success_with_its_version() {
        let seen = run(&[MODERN, MODERN_SENT]);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].outcome,
            Outcome::Success {
                version: Some(TlsVersion::Tls1_3)
            }
        );
        assert_eq!(
            seen[0].candidates,
            ["modern.test", "[127.0.0.1]:12525", "127.0.0.1:12525"]
        );
        assert_eq!(seen[0].queue_id, "ACAC09940B9");
    }

    #[test]
    fn interleaved_processes_keep_their_own_story() {
        let seen = run(&[
            "Nov 30 17:55:57 sender postfix/smtp[4309]: SSL_connect error to 127.0.0.1[127.0.0.1]:12526: -1",
            MODERN,
            "Nov 30 17:55:57 sender postfix/smtp[4309]: warning: TLS library problem: error:0A00042E:SSL routines::tlsv1 alert protocol version:../ssl/record/rec_layer_s3.c:1601:SSL alert number 70:",
            "Nov 30 17:55:57 sender postfix/smtp[4312]: BAF5A9940BD: to=<u@plain.test>, relay=127.0.0.1[127.0.0.1]:12527, delay=1.8, delays=0.01/1.8/0.01/0, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])",
            "Nov 30 17:55:57 sender postfix/smtp[4312]: connect to 127.0.0.1[127.0.0.1]:1: Connection refused",
            "Nov 30 17:55:57 sender postfix/smtp[4309]: B404C9940BB: to=<u@legacy.test>, relay=127.0.0.1[127.0.0.1]:12526, delay=1.9, delays=0.03/1.8/0.03/0, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)",
            "Nov 30 17:55:57 sender postfix/smtp[4312]: C4B4F9940BF: to=<u@closed.test>, relay=none, delay=1.8, delays=0.01/1.8/0/0, dsn=4.4.1, status=deferred (connect to 127.0.0.1[127.0.0.1]:1: Connection refused)",
            MODERN_SENT,
            "Nov 30 17:55:57 sender postfix/smtp[4317]: C0F909940BE: to=<u@broken.test>, relay=127.0.0.1[127.0.0.1]:12528, delay=1.8, delays=0.01/1.8/0.03/0, dsn=4.7.0, status=deferred (TLS is required, but host 127.0.0.1[127.0.0.1] refused to start TLS: 454 4.7.0 TLS not available due to local problem)",
        ]);
        let outcomes: Vec<_> = seen
            .iter()
            .map(|o| (o.queue_id.as_str(), o.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("BAF5A9940BD", Outcome::StarttlsNotOffered),
                ("B404C9940BB", Outcome::TlsAlert(TlsAlert::ProtocolVersion)),
                ("C4B4F9940BF", Outcome::ConnectFailed),
                (
                    "ACAC09940B9",
                    Outcome::Success {
                        version: Some(TlsVersion::Tls1_3)
                    }
                ),
                ("C0F909940BE", Outcome::StarttlsRejected { code: 454 }),
            ]
        );
        assert_eq!(
            seen[2].candidates,
            ["closed.test", "[127.0.0.1]:1", "127.0.0.1:1"]
        );
    }

    #[test]
    fn legacy_cleartext_and_certificate_lines() {
        let seen = run(&[
            "Nov 30 17:56:06 sender postfix/smtp[4511]: BAF5A9940BD: to=<u@plain.test>, relay=127.0.0.1[127.0.0.1]:12527, delay=11, delays=9.5/1.2/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 764C3994107)",
            "Nov 30 17:56:06 sender postfix/smtp[4511]: Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:12526: TLSv1 with cipher ECDHE-RSA-AES256-SHA (256/256 bits)",
            "Nov 30 17:56:06 sender postfix/smtp[4511]: B404C9940BB: to=<u@legacy.test>, relay=127.0.0.1[127.0.0.1]:12526, delay=11, delays=9.5/1.2/0.01/0.02, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 78ED89940BD)",
            "Nov 30 17:56:06 sender postfix/smtp[4530]: certificate verification failed for 127.0.0.1[127.0.0.1]:12525: self-signed certificate",
            "Nov 30 17:56:06 sender postfix/smtp[4530]: Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:12525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
            "Nov 30 17:56:06 sender postfix/smtp[4530]: 43ACD9940D1: to=<u@modern.test>, relay=127.0.0.1[127.0.0.1]:12525, delay=1.2, delays=0.01/1.2/0.01/0, dsn=4.7.5, status=deferred (Server certificate not verified)",
        ]);
        let outcomes: Vec<_> = seen.iter().map(|o| o.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Success { version: None },
                Outcome::Success {
                    version: Some(TlsVersion::Tls1_0)
                },
                Outcome::CertificateError(CertificateError::Untrusted),
            ]
        );
    }

    #[test]
    fn many_recipients_of_one_message_count_once() {
        let second = MODERN_SENT.replace("u@modern.test", "v@modern.test");
        let seen = run(&[MODERN, MODERN_SENT, &second]);
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn other_lines_and_garbage_are_ignored() {
        let seen = run(&[
            "",
            "garbage \u{0} \u{ffff} [ ]: :",
            "Nov 30 17:55:55 sender postfix/postfix-script[4212]: starting the Postfix mail system",
            "Nov 30 17:55:57 sender postfix/qmgr[4227]: ACAC09940B9: from=<a@sender.test>, size=283, nrcpt=1 (queue active)",
            "Nov 30 17:55:57 receiver postfix/smtpd[1]: Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
            "Nov 30 17:55:57 receiver postfix/virtual[2]: 981D49940D7: to=<u@modern.test>, relay=virtual, delay=0.01, status=sent (delivered to maildir)",
            "Nov 30 17:56:00 sender postfix/smtp[9]: 1234ABC: to=<u@x.test>, relay=none, delay=0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to 127.0.0.1[127.0.0.1]:1: Connection refused)",
        ]);
        assert!(seen.is_empty(), "{seen:?}");
    }

    #[test]
    fn rfc3339_timestamps_and_custom_syslog_names() {
        let line = MODERN_SENT.replace(
            "Nov 30 17:55:57 sender postfix/smtp",
            "2026-11-30T17:55:57.123456+00:00 sender postfix-out/relay",
        );
        let tls = MODERN.replace(
            "Nov 30 17:55:57 sender postfix/smtp",
            "2026-11-30T17:55:57.123456+00:00 sender postfix-out/relay",
        );
        assert_eq!(run(&[&tls, &line]).len(), 1);
    }

    proptest::proptest! {
        /// Whatever a log holds (garbage, cut lines, real lines spliced), reading it never
        /// panics and the state stays bounded.
        #[test]
        fn any_log_is_read_without_panic(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::arbitrary::any::<String>(),
                    (0..MODERN_SENT.len(), 0..20u32).prop_map(|(cut, pid)| {
                        let line = MODERN_SENT.replace("[4239]", &format!("[{pid}]"));
                        line.get(..cut).unwrap_or(&line).to_owned()
                    }),
                    (0..20u32).prop_map(|pid| MODERN.replace("[4239]", &format!("[{pid}]"))),
                ],
                0..60,
            )
        ) {
            let mut tracker = Tracker::default();
            for line in &lines {
                let _ = tracker.feed(line);
            }
            proptest::prop_assert!(tracker.processes.len() <= MAX_PROCESSES);
            for pending in tracker.processes.values() {
                proptest::prop_assert!(pending.problems.len() <= MAX_PROBLEMS);
            }
        }
    }

    #[test]
    fn openssl_reason_codes_of_both_formats() {
        assert_eq!(
            openssl_reason("error:0A00042E:SSL routines::tlsv1 alert protocol version:x"),
            Some(1070)
        );
        assert_eq!(
            openssl_reason(
                "error:1409442E:SSL routines:ssl3_read_bytes:tlsv1 alert protocol version:x"
            ),
            Some(1070)
        );
        assert_eq!(openssl_reason("no code here"), None);
    }
}
