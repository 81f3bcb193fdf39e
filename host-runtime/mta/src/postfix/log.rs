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
/// The most OpenSSL reason codes kept per process until its status line.
const MAX_REASONS: usize = 8;
/// The longest `host[addr]:port` kept for a failed connection (a host name is at most 253
/// characters, an address literal 45, a port 5).
const MAX_ENDPOINT_LEN: usize = 310;
/// The longest queue ID kept (Postfix's long queue IDs are 17 characters or so).
const MAX_QUEUE_ID_LEN: usize = 32;

/// Which log lines are the Postfix SMTP client's own: lines whose program tag (the `NAME[PID]:`
/// word after the timestamp and host) is one of `client_tags`. Anything else, including a line
/// from another program whose *message* looks like Postfix's, is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    /// Program tags without the `[PID]`: `postfix/smtp` and `postfix/relay` for Debian's
    /// `master.cf` with the default `syslog_name`.
    pub client_tags: Vec<String>,
}

impl LogSource {
    /// The SMTP client services (`smtp`, `relay`) of the Postfix whose `syslog_name` is `name`.
    #[must_use]
    pub fn for_syslog_name(name: &str) -> Self {
        Self {
            client_tags: vec![format!("{name}/smtp"), format!("{name}/relay")],
        }
    }
}

impl Default for LogSource {
    fn default() -> Self {
        Self::for_syslog_name("postfix")
    }
}

/// One finished attempt, read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The SMTP client process that made it (the PID in its program tag): the daemon attributes
    /// the attempt only to what it answered this very process.
    pub pid: u32,
    /// The lookup keys this attempt may have been made under, most likely first: the recipient's
    /// domain, the domain with the relay's port when it is not 25 (`domain:port`), then the relay
    /// as `[host]:port`, `host:port` (and `[host]`, `host` on port 25).
    pub candidates: Vec<String>,
    /// What happened, in the engine's terms.
    pub outcome: Outcome,
    /// Postfix's queue ID.
    pub queue_id: String,
    /// The status line's own words (`status=… (…)`).
    pub detail: String,
    /// The server the attempt was made to, as Postfix names it (`host`, `addr` of
    /// `host[addr]:port`), for TLS-RPT's failure details.
    pub relay: Option<(String, String)>,
}

/// What one SMTP client process has said since its last status line. Only what the outcome is
/// made of is kept (not the lines themselves), so that the saved state stays small whatever the
/// log holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    /// The protocol version of the TLS connection up (`TLSv1.3`), if any.
    tls: Option<String>,
    /// OpenSSL reason codes of `TLS library problem` lines, oldest first.
    #[serde(default)]
    reasons: Vec<i32>,
    /// A handshake problem line spoke of a timeout.
    #[serde(default)]
    timed_out: bool,
    /// A handshake problem line spoke of a lost or reset connection.
    #[serde(default)]
    lost: bool,
    /// The certificate problem a `certificate verification failed` line named.
    #[serde(default)]
    certificate: Option<String>,
    /// `host[addr]:port` of the last connection attempt that failed.
    connect_failed: Option<String>,
    /// Whether something happened since the last status line (a new connection or handshake).
    fresh: bool,
    /// The queue ID of the last status line, to count a message with many recipients once.
    last_queue_id: Option<String>,
}

impl Pending {
    fn handshake_failed(&mut self) {
        self.fresh = true;
        // A failed handshake ends that connection's TLS.
        self.tls = None;
    }
}

/// Assembles attempts from log lines; its state is saved with the log position so that a restart
/// neither loses nor repeats an attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracker {
    #[serde(deserialize_with = "processes_by_pid")]
    processes: BTreeMap<u32, Pending>,
}

/// The saved processes, keyed by PID; state saved before the keys were PIDs (`postfix/smtp[PID]`)
/// is read too, so that an upgrade loses no half-read attempt.
fn processes_by_pid<'de, D>(deserializer: D) -> Result<BTreeMap<u32, Pending>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let saved = BTreeMap::<String, Pending>::deserialize(deserializer)?;
    Ok(saved
        .into_iter()
        .filter_map(|(key, pending)| {
            let pid = key
                .strip_suffix(']')
                .and_then(|k| k.rsplit_once('['))
                .map_or(key.as_str(), |(_, pid)| pid);
            Some((pid.parse().ok()?, pending))
        })
        .collect())
}

impl Tracker {
    /// Reads one log line (without its newline) of the default [`LogSource`]; an attempt when
    /// the line finishes one.
    pub fn feed(&mut self, line: &str) -> Option<Observed> {
        self.feed_from(&LogSource::default(), line)
    }

    /// Reads one log line (without its newline); an attempt when the line finishes one. Lines
    /// that are not `source`'s are ignored.
    pub fn feed_from(&mut self, source: &LogSource, line: &str) -> Option<Observed> {
        let (pid, message) = client_message(source, line)?;
        if let Some(rest) = message.strip_prefix("warning: TLS library problem: ") {
            let pending = self.pending(pid);
            if let Some(reason) = openssl_reason(rest) {
                if pending.reasons.len() == MAX_REASONS {
                    pending.reasons.remove(0);
                }
                pending.reasons.push(reason);
            }
            pending.timed_out |= rest.contains("timed out") || rest.contains("timeout");
            pending.lost |= rest.contains("lost connection") || rest.contains("Connection reset");
            pending.handshake_failed();
            return None;
        }
        if let Some(rest) = message.strip_prefix("SSL_connect error to ") {
            let pending = self.pending(pid);
            pending.timed_out |= rest.contains("timed out") || rest.contains("timeout");
            pending.lost |= rest.contains("lost connection") || rest.contains("Connection reset");
            pending.handshake_failed();
            return None;
        }
        if let Some(at) = message.find("certificate verification failed for ") {
            let problem = &message[at..];
            let error = certificate_error(problem);
            let pending = self.pending(pid);
            pending.certificate = Some(error.name().to_owned());
            pending.handshake_failed();
            return None;
        }
        if let Some(rest) = message.strip_prefix("connect to ") {
            let endpoint = rest.split(": ").next().filter(|e| endpoint_shaped(e));
            let pending = self.pending(pid);
            pending.connect_failed = endpoint.map(str::to_owned);
            pending.fresh = true;
            return None;
        }
        if let Some(at) = message.find(" TLS connection established to ") {
            let rest = &message[at + " TLS connection established to ".len()..];
            let (_, tls) = rest.split_once(": ")?;
            let version = TlsVersion::from_name(tls.split(' ').next()?)?;
            let pending = self.pending(pid);
            pending.tls = Some(version.name().to_owned());
            pending.fresh = true;
            return None;
        }
        let status = StatusLine::parse(message)?;
        let mut pending = self.processes.remove(&pid).unwrap_or_default();
        let repeat = !pending.fresh && pending.last_queue_id.as_deref() == Some(status.queue_id);
        let observed = if repeat {
            None
        } else {
            status.observe(pid, &pending)
        };
        // A cached connection keeps its TLS for the next message of this process.
        let tls = pending.tls.take();
        pending = Pending {
            tls,
            last_queue_id: Some(status.queue_id.to_owned()),
            ..Pending::default()
        };
        // Stored through `pending` so that the bound on processes holds.
        *self.pending(pid) = pending;
        observed
    }

    fn pending(&mut self, pid: u32) -> &mut Pending {
        if self.processes.len() >= MAX_PROCESSES && !self.processes.contains_key(&pid) {
            // Processes that died without a status line: forget the stalest-looking ones.
            self.processes.retain(|_, p| p.fresh);
            if self.processes.len() >= MAX_PROCESSES {
                self.processes.clear();
            }
        }
        self.processes.entry(pid).or_default()
    }
}

/// The PID and message of a line written by one of `source`'s SMTP client processes.
///
/// A syslog or `maillog_file` line is `TIMESTAMP HOST TAG[PID]: MESSAGE`; the tag is the first
/// word that ends in a colon (neither timestamp format, traditional or RFC 3339, nor a host name
/// does). Taking that word, rather than searching for anything shaped like Postfix's tag, means
/// that a message cannot smuggle a tag of its own.
fn client_message<'a>(source: &LogSource, line: &'a str) -> Option<(u32, &'a str)> {
    let mut offset = 0;
    for word in line.split(' ') {
        let end = offset + word.len();
        if let Some(tag) = word.strip_suffix(':') {
            let (name, pid) = tag.strip_suffix(']')?.split_once('[')?;
            if !source.client_tags.iter().any(|t| t == name)
                || pid.is_empty()
                || !pid.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let pid = pid.parse().ok()?;
            return Some((pid, line.get(end + 1..).unwrap_or_default()));
        }
        offset = end + 1;
    }
    None
}

/// A delivery status line, as Postfix's `log_adhoc.c` writes it, fields in their fixed order:
/// `QUEUEID: to=<rcpt>, [orig_to=<rcpt>, ]relay=…, [conn_use=N, ]delay=N, delays=a/b/c/d,
/// dsn=X.Y.Z, status=WORD (detail)`.
///
/// The recipient is chosen by whoever sends the mail, and may hold `>, relay=…, status=…`: it is
/// read by its own grammar (RFC 5321 with the local part quoted, as Postfix logs addresses with
/// `info_log_address_format = external`, its default), and every field after it must have its
/// own shape, so text inside an address cannot stand in for a field.
#[derive(Debug, PartialEq, Eq)]
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
        if queue_id.is_empty()
            || queue_id.len() > MAX_QUEUE_ID_LEN
            || !queue_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        let (recipient, rest) = address(rest)?;
        let mut rest = rest.strip_prefix(", ")?;
        if let Some(after) = rest.strip_prefix("orig_to=<") {
            let (_, after) = address(after)?;
            rest = after.strip_prefix(", ")?;
        }
        let (relay, mut rest) = field(rest, "relay=", relay_shaped)?;
        if rest.starts_with("conn_use=") {
            (_, rest) = field(rest, "conn_use=", |v| v.bytes().all(|b| b.is_ascii_digit()))?;
        }
        let (_, rest) = field(rest, "delay=", number_shaped)?;
        let (_, rest) = field(rest, "delays=", |v| v.split('/').all(number_shaped))?;
        let (_, rest) = field(rest, "dsn=", dsn_shaped)?;
        let rest = rest.strip_prefix("status=")?;
        let (status, detail) = rest.split_once(" (")?;
        let detail = detail.strip_suffix(')')?;
        if status.is_empty() || !status.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        // With `info_log_address_format = internal` an address is logged unquoted, and one that
        // holds a whole status line's fields makes the line ambiguous: such a line is not read.
        if [">, relay=", ", dsn=", ", status="]
            .iter()
            .all(|fields| detail.contains(fields))
        {
            return None;
        }
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
    fn observe(&self, pid: u32, pending: &Pending) -> Option<Observed> {
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
                    .filter(|e| endpoint_shaped(e))
            })?
        } else {
            self.relay
        };
        let mut candidates = Vec::new();
        if let Some(domain) = recipient_domain(self.recipient) {
            // A transport entry `smtp:DOMAIN:PORT` (MX lookup, another port) is looked up
            // under `DOMAIN:PORT`, which the relay (the MX host) does not name.
            let port = endpoint_port(endpoint);
            let with_port = (port != "25").then(|| format!("{domain}:{port}"));
            candidates.push(domain);
            candidates.extend(with_port);
        }
        candidates.extend(relay_keys(endpoint));
        let relay = endpoint.split_once('[').and_then(|(host, rest)| {
            let (addr, _) = rest.split_once(']')?;
            Some((host.to_owned(), addr.to_owned()))
        });
        Some(Observed {
            pid,
            candidates,
            outcome,
            queue_id: self.queue_id.to_owned(),
            detail: format!("status={} ({})", self.status, self.detail),
            relay,
        })
    }

    /// The `host[addr]` of the relay, as Postfix names the server in its own texts.
    fn relay_host(&self) -> &str {
        self.relay
            .rsplit_once("]:")
            .map_or(self.relay, |(host, _)| host)
            .trim_end_matches(']')
    }

    /// Whether `text` is exactly "…by host H[A]" / "… H[A] …" for this line's relay: Postfix's
    /// own sentences name the server it talked to, and a detail that names another one, or goes
    /// on after it, was not written by Postfix about this attempt.
    fn names_relay(&self, host: &str) -> bool {
        let relay = self.relay_host();
        host.strip_suffix(']').is_some_and(|h| h == relay)
    }

    fn outcome(&self, pending: &Pending) -> Option<Outcome> {
        let version = pending.tls.as_deref().and_then(TlsVersion::from_name);
        let detail = self.detail;
        match self.status {
            "sent" => return Some(Outcome::Success { version }),
            "deferred" | "bounced" => {}
            _ => return None,
        }
        // Postfix's own sentences (smtp_proto.c, smtp_connect.c, smtp_trouble.c), matched whole.
        if let Some(host) = detail.strip_prefix("TLS is required, but was not offered by host ") {
            return self
                .names_relay(host)
                .then_some(Outcome::StarttlsNotOffered);
        }
        if let Some(rest) = detail.strip_prefix("TLS is required, but host ") {
            let (host, reply) = rest.split_once(" refused to start TLS: ")?;
            if !self.names_relay(host) {
                return None;
            }
            let code = reply.get(..3).and_then(|c| c.parse().ok())?;
            return Some(Outcome::StarttlsRejected { code });
        }
        if detail == "Cannot start TLS: handshake failure" {
            return Some(handshake_outcome(pending));
        }
        if matches!(
            detail,
            "Server certificate not trusted" | "Server certificate not verified"
        ) {
            let error = pending
                .certificate
                .as_deref()
                .and_then(CertificateError::from_name)
                .unwrap_or(CertificateError::Untrusted);
            return Some(Outcome::CertificateError(error));
        }
        if detail.starts_with("connect to ") {
            return Some(Outcome::ConnectFailed);
        }
        // The peer answered: the session itself worked at this tier (the message was refused for
        // other reasons), as `deliver` counts it; unless it was refused before the session began.
        // The stage is the last parenthesis, Postfix's own; the peer's words come before it.
        if let Some(said) = detail.strip_prefix("host ")
            && let Some((host, _)) = said.split_once(" said: ")
            && self.names_relay(host)
            && let Some((_, stage)) = detail.rsplit_once("(in reply to ")
        {
            let before_session = stage.starts_with("EHLO")
                || stage.starts_with("HELO")
                || stage.starts_with("STARTTLS");
            return Some(match (before_session, pending.tls.is_some()) {
                (false, _) => Outcome::Success { version },
                (true, true) => Outcome::PostHandshakeFailure,
                (true, false) => Outcome::ConnectFailed,
            });
        }
        let lost = detail
            .strip_prefix("lost connection with ")
            .and_then(|r| r.split_once(" while "));
        let timed_out = detail
            .strip_prefix("conversation with ")
            .and_then(|r| r.split_once(" timed out while "));
        let talked = lost.or(timed_out);
        if let Some((host, stage)) = talked
            && self.names_relay(host)
        {
            let outcome = if pending.tls.is_some() {
                Outcome::PostHandshakeFailure
            } else if stage.starts_with("receiving the initial server greeting") {
                Outcome::ConnectFailed
            } else if timed_out.is_some() {
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

/// An address as Postfix logs it, up to its closing `>`: the local part quoted when it holds
/// specials (RFC 5321 `Quoted-string`, `\` escaping the next character), then `@domain`.
fn address(text: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, byte) in text.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some((&text[..at], &text[at + 1..])),
            _ => {}
        }
    }
    None
}

/// A local part as Postfix logs it with `info_log_address_format = external` (`quote_822_local`):
/// as it is when it holds only atom characters and dots, else quoted with `"` and `\` escaped.
/// The status-line grammar reads it back; the tests build hostile recipients with it.
#[must_use]
pub fn logged_local_part(local: &str) -> String {
    let atom = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    if !local.is_empty() && local.chars().all(atom) {
        return local.to_owned();
    }
    let mut quoted = String::from('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The domain of a logged recipient, lower case, if it is a host name (not an address literal,
/// nothing after a quoted local part that is not `@domain`).
fn recipient_domain(recipient: &str) -> Option<String> {
    let (local, domain) = recipient.rsplit_once('@')?;
    // The local part, if quoted, must end in its quote: `"a@b"` alone has no domain.
    if local.starts_with('"') && !local.ends_with('"') {
        return None;
    }
    let host_shaped = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    host_shaped.then(|| domain.trim_end_matches('.').to_ascii_lowercase())
}

/// `name=VALUE, ` at the start of `text`, VALUE of the given shape; the value and what follows.
fn field<'a>(
    text: &'a str,
    name: &str,
    shaped: impl Fn(&str) -> bool,
) -> Option<(&'a str, &'a str)> {
    let (value, rest) = text.strip_prefix(name)?.split_once(", ")?;
    shaped(value).then_some((value, rest))
}

fn number_shaped(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn dsn_shaped(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `none`, a transport name (`local`, `virtual`, `private/dovecot-lmtp`), or
/// `host[addr]:port` / `host[addr]`.
fn relay_shaped(value: &str) -> bool {
    value == "none"
        || endpoint_shaped(value)
        || (!value.is_empty()
            && value.len() <= MAX_ENDPOINT_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/')))
}

/// `host[addr]:port` or `host[addr]`: what Postfix writes for a server it connected to.
fn endpoint_shaped(value: &str) -> bool {
    let Some((host, rest)) = value.split_once('[') else {
        return false;
    };
    let Some((addr, port)) = rest.split_once(']') else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    let addr_ok = !addr.is_empty()
        && addr
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'v' | b'6' | b'i' | b'p'));
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok());
    value.len() <= MAX_ENDPOINT_LEN && host_ok && addr_ok && port_ok
}

/// The port of `endpoint` (`host[addr]:port`), `25` when it names none.
fn endpoint_port(endpoint: &str) -> &str {
    endpoint
        .split_once('[')
        .and_then(|(_, rest)| rest.rsplit_once("]:"))
        .map_or("25", |(_, port)| port)
}

/// The lookup keys Postfix uses for a next hop reached at `endpoint` (`host[addr]:port`).
fn relay_keys(endpoint: &str) -> Vec<String> {
    let host = endpoint.split_once('[').map_or(endpoint, |(host, _)| host);
    let port = endpoint_port(endpoint);
    let host = host.trim_end_matches('.').to_ascii_lowercase();
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
fn handshake_outcome(pending: &Pending) -> Outcome {
    for reason in pending.reasons.iter().rev() {
        if let Some(outcome) = crate::tls::outcome_for_reasons(&[*reason]) {
            return outcome;
        }
    }
    if pending.timed_out {
        Outcome::HandshakeTimeout
    } else if pending.lost {
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

/// OpenSSL's verify error codes (`X509_V_ERR_*`) that name a problem the engine tells apart.
const X509_V_ERR_CERT_HAS_EXPIRED: u32 = 10;
const X509_V_ERR_HOSTNAME_MISMATCH: u32 = 62;
const X509_V_ERR_DANE_NO_MATCH: u32 = 65;

/// The certificate problem a `[server ]certificate verification failed for HOST[ADDR]:PORT:
/// REASON` line names. Postfix 3.7 writes REASON as `num=NN:TEXT` (OpenSSL's verify error code
/// and text: `num=65:no matching DANE TLSA records` at the `dane` level, `num=62:hostname
/// mismatch` at `secure`), older lines as TEXT alone (`self-signed certificate`).
///
/// Only REASON is read, never HOST: the host name comes from DNS, and a server named
/// `mx.dane-expired-name.example` must not choose the error its own failure is booked as.
fn certificate_error(problem: &str) -> CertificateError {
    let reason = problem
        .split_once("certificate verification failed for ")
        .map_or(problem, |(_, rest)| rest)
        // `HOST[ADDR]:PORT: REASON`: Postfix validates host names, so the first `]` closes ADDR.
        .split_once(']')
        .map_or("", |(_, rest)| {
            let rest = rest
                .strip_prefix(':')
                .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
            rest.strip_prefix(": ").unwrap_or("")
        });
    let code = reason
        .strip_prefix("num=")
        .and_then(|r| r.split_once(':'))
        .and_then(|(code, _)| code.parse::<u32>().ok());
    match code {
        Some(X509_V_ERR_DANE_NO_MATCH) => CertificateError::DaneMismatch,
        Some(X509_V_ERR_HOSTNAME_MISMATCH) => CertificateError::NameMismatch,
        Some(X509_V_ERR_CERT_HAS_EXPIRED) => CertificateError::Expired,
        Some(_) => CertificateError::Untrusted,
        None => {
            let reason = reason.to_ascii_lowercase();
            let said = |needle: &str| reason.contains(needle);
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
            [
                "modern.test",
                "modern.test:12525",
                "[127.0.0.1]:12525",
                "127.0.0.1:12525"
            ]
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
            [
                "closed.test",
                "closed.test:1",
                "[127.0.0.1]:1",
                "127.0.0.1:1"
            ]
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
        let source = LogSource::for_syslog_name("postfix-out");
        let mut tracker = Tracker::default();
        assert_eq!(tracker.feed_from(&source, &tls), None);
        assert_eq!(tracker.feed_from(&source, &line).map(|o| o.pid), Some(4239));
        assert_eq!(run(&[&tls, &line]), [], "not the default syslog_name's");
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
                proptest::prop_assert!(pending.reasons.len() <= MAX_REASONS);
            }
        }
    }

    /// A status line for `recipient` (as Postfix logs it) delivered to 127.0.0.1:2525.
    fn sent_to(recipient: &str) -> String {
        format!(
            "Dec  1 12:00:00 sender postfix/smtp[77]: ABC123: to=<{recipient}>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)"
        )
    }

    const FORGED_LOCAL_PART: &str = "x@bank.example>, relay=n[192.0.2.1]:9, status=deferred (TLS is required, but was not offered";

    #[test]
    fn forged_status_fields_in_a_quoted_local_part_are_not_read() {
        let recipient = format!("{}@evil.example", logged_local_part(FORGED_LOCAL_PART));
        let seen = run(&[&sent_to(&recipient)]);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].outcome, Outcome::Success { version: None });
        assert_eq!(seen[0].candidates[0], "evil.example");
        assert!(
            seen[0].candidates.iter().all(|c| !c.contains("bank")),
            "{seen:?}"
        );
    }

    #[test]
    fn forged_status_fields_in_an_unquoted_local_part_are_not_read() {
        // `info_log_address_format = internal`: the address is logged as is, and the peer's reply
        // (the real detail) ends as the forgery needs.
        for reply in [
            "250 ok",
            "250 ok bank[192.0.2.1]",
            "250 ok bank[192.0.2.1]:25",
        ] {
            let line = format!(
                "Dec  1 12:00:00 sender postfix/smtp[77]: ABC123: to=<x@bank.example>, relay=bank[192.0.2.1]:25, delay=1, delays=0/0/0/0, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host bank[192.0.2.1]) y@evil.example>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent ({reply})"
            );
            assert_eq!(run(&[&line]), [], "{line}");
        }
        // The peer's words naming the stage cannot be read as Postfix's own either.
        let line = "Dec  1 12:00:00 sender postfix/smtp[77]: ABC123: to=<x@bank.example>, relay=bank[192.0.2.1]:25, delay=1, delays=0/0/0/0, dsn=4.4.2, status=deferred (lost connection with bank[192.0.2.1] while sending RCPT TO) y@evil.example>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 ok)";
        assert_eq!(run(&[line]), []);
    }

    #[test]
    fn postfix_sentences_naming_another_host_are_not_an_outcome() {
        let line = "Dec  1 12:00:00 sender postfix/smtp[77]: ABC123: to=<u@plain.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=1, delays=0/0/0/0, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host bank[192.0.2.1])";
        assert_eq!(run(&[line]), []);
        let line = line.replace("bank[192.0.2.1]", "127.0.0.1[127.0.0.1]");
        assert_eq!(
            run(&[&line]).first().map(|o| o.outcome),
            Some(Outcome::StarttlsNotOffered)
        );
    }

    #[test]
    fn lines_of_other_programs_cannot_pose_as_the_smtp_client() {
        let real = sent_to("u@evil.example");
        let message = real.split_once("postfix/smtp[77]: ").unwrap().1;
        for tag in [
            "evil:",
            "logger[5]:",
            "postfix/smtpd[77]:",
            "postfix/local[77]:",
            "postfix/smtp[77x]:",
            "postfix/smtp[]:",
            "other/smtp[77]:",
        ] {
            let line = format!("Dec  1 12:00:00 sender {tag} postfix/smtp[77]: {message}");
            assert_eq!(run(&[&line]), [], "{line}");
        }
        assert_eq!(run(&[&real]).len(), 1);
        let relay = real.replace("postfix/smtp[", "postfix/relay[");
        assert_eq!(run(&[&relay]).len(), 1, "Debian's relay service");
    }

    #[test]
    fn forged_lines_cannot_grow_the_saved_tracker() {
        // 8,192 lines of 4 KB each, from as many processes, as an attacker who can write to the
        // log would send them: the tracker keeps what outcomes are made of, not the lines.
        let mut tracker = Tracker::default();
        let padding = "A".repeat(4096);
        for pid in 0..8192 {
            for line in [
                format!(
                    "Dec  1 12:00:00 sender postfix/smtp[{pid}]: warning: TLS library problem: {padding}"
                ),
                format!(
                    "Dec  1 12:00:00 sender postfix/smtp[{pid}]: connect to {padding}[1.2.3.4]:25: refused"
                ),
                format!(
                    "Dec  1 12:00:00 sender postfix/smtp[{pid}]: certificate verification failed for {padding}"
                ),
                format!(
                    "Dec  1 12:00:00 sender evil/smtp[{pid}]: warning: TLS library problem: {padding}"
                ),
            ] {
                let _ = tracker.feed(&line);
            }
        }
        let saved = serde_json::to_string(&tracker).unwrap();
        assert!(tracker.processes.len() <= MAX_PROCESSES);
        assert!(saved.len() < 256 * 1024, "{} bytes", saved.len());
    }

    #[test]
    fn a_tracker_saved_with_program_keys_is_read_back() {
        let old = r#"{"processes":{"postfix/smtp[4239]":{"tls":"TLSv1.3","problems":["x"],"connect_failed":null,"fresh":true,"last_queue_id":null},"junk":{"tls":null,"problems":[],"connect_failed":null,"fresh":false,"last_queue_id":null}}}"#;
        let mut tracker: Tracker = serde_json::from_str(old).unwrap();
        assert_eq!(tracker.processes.len(), 1);
        let seen = tracker.feed(MODERN_SENT).unwrap();
        assert_eq!(
            seen.outcome,
            Outcome::Success {
                version: Some(TlsVersion::Tls1_3)
            },
            "the half-read attempt finishes"
        );
    }

    proptest::proptest! {
        /// Whatever local part a stranger chooses (quotes, `>`, `relay=`, `status=`, very long),
        /// logged as Postfix logs it, the line is read as the delivery to its own domain with its
        /// own status: never as another destination's outcome.
        #[test]
        fn hostile_recipients_never_speak_for_another_destination(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("\"".to_owned()),
                    proptest::strategy::Just("\\".to_owned()),
                    proptest::strategy::Just(">".to_owned()),
                    proptest::strategy::Just(", ".to_owned()),
                    proptest::strategy::Just("@bank.example".to_owned()),
                    proptest::strategy::Just("relay=bank[192.0.2.1]:25".to_owned()),
                    proptest::strategy::Just("status=deferred (".to_owned()),
                    proptest::strategy::Just(FORGED_LOCAL_PART.to_owned()),
                    proptest::strategy::Just(")".to_owned()),
                    "[ -~]{0,40}",
                    "\\PC{0,8}",
                ],
                1..24,
            ),
            long in 0..3usize,
        ) {
            let mut local: String = pieces.concat();
            local.push_str(&"x".repeat(long * 2000));
            let recipient = format!("{}@evil.example", logged_local_part(&local));
            let seen = run(&[&sent_to(&recipient)]);
            proptest::prop_assert_eq!(seen.len(), 1);
            proptest::prop_assert_eq!(seen[0].outcome, Outcome::Success { version: None });
            proptest::prop_assert_eq!(&seen[0].candidates[0], "evil.example");
            proptest::prop_assert!(seen[0].candidates.iter().all(|c| !c.contains("bank")));
        }
    }

    /// The lines Postfix 3.7.11 (Debian, OpenSSL 3) wrote for one deferred attempt whose
    /// certificate verification failed with `reason`, to `host` (tests/postfix_dane.rs).
    fn verification_failed(host: &str, reason: &str) -> Vec<String> {
        let at = "Dec  2 02:23:50 sender postfix/smtp[15622]:";
        vec![
            format!(
                "{at} server certificate verification failed for {host}[127.0.0.1]:37737: {reason}"
            ),
            format!(
                "{at} Untrusted TLS connection established to {host}[127.0.0.1]:37737: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256"
            ),
            format!(
                "{at} D56439A423B: to=<user@mismatch.test>, relay={host}[127.0.0.1]:37737, delay=0.09, delays=0.01/0.02/0.05/0, dsn=4.7.5, status=deferred (Server certificate not verified)"
            ),
        ]
    }

    fn outcome_of(lines: &[String]) -> Vec<Outcome> {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        run(&lines).iter().map(|o| o.outcome).collect()
    }

    #[test]
    fn dane_verification_failure_is_a_dane_mismatch() {
        assert_eq!(
            outcome_of(&verification_failed(
                "mx.mismatch.test",
                "num=65:no matching DANE TLSA records"
            )),
            [Outcome::CertificateError(CertificateError::DaneMismatch)]
        );
    }

    #[test]
    fn secure_level_hostname_mismatch_is_a_name_mismatch() {
        assert_eq!(
            outcome_of(&verification_failed(
                "mx.sts.test",
                "num=62:hostname mismatch"
            )),
            [Outcome::CertificateError(CertificateError::NameMismatch)]
        );
    }

    #[test]
    fn an_mx_next_hop_with_a_port_is_a_candidate_so_its_outcome_is_booked() {
        // `transport_maps`: `dane.test smtp:dane.test:35655`. Postfix looked the policy up under
        // `dane.test:35655` and logs the MX host as the relay: without that key among the
        // candidates, the daemon found no answer and booked nothing.
        let seen = run(&[
            "Dec  2 02:23:55 sender postfix/smtp[15938]: AA3ED9A42A6: to=<user@dane.test>, relay=mx.dane.test[127.0.0.1]:35655, delay=0.12, delays=0.01/0.02/0.09/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)",
        ]);
        assert_eq!(
            seen[0].candidates,
            [
                "dane.test",
                "dane.test:35655",
                "[mx.dane.test]:35655",
                "mx.dane.test:35655"
            ]
        );
        // On port 25 the domain alone is the key.
        let on_25 = MODERN_SENT.replace(":12525", ":25");
        assert_eq!(
            run(&[&on_25])[0].candidates[..2],
            ["modern.test", "[127.0.0.1]:25"]
        );
    }

    #[test]
    fn dane_verified_connection_is_a_success() {
        let seen = run(&[
            "Dec  2 02:23:55 sender postfix/smtp[15938]: Verified TLS connection established to mx.dane.test[127.0.0.1]:35655: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
            "Dec  2 02:23:55 sender postfix/smtp[15938]: AA3ED9A42A6: to=<user@dane.test>, relay=mx.dane.test[127.0.0.1]:35655, delay=0.12, delays=0.01/0.02/0.09/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)",
        ]);
        assert_eq!(
            seen.iter().map(|o| o.outcome).collect::<Vec<_>>(),
            [Outcome::Success {
                version: Some(TlsVersion::Tls1_3)
            }]
        );
    }

    #[test]
    fn a_host_named_like_a_certificate_error_does_not_choose_the_error() {
        // The host name comes from DNS: read whole, `mx.dane-expired-name.example` made an
        // untrusted certificate pass for an expired one, a DANE mismatch or a name mismatch.
        for reason in ["num=18:self-signed certificate", "self-signed certificate"] {
            assert_eq!(
                outcome_of(&verification_failed("mx.dane-expired-name.example", reason)),
                [Outcome::CertificateError(CertificateError::Untrusted)],
                "{reason}"
            );
        }
        assert_eq!(
            outcome_of(&verification_failed(
                "mx.expired.example",
                "num=65:no matching DANE TLSA records"
            )),
            [Outcome::CertificateError(CertificateError::DaneMismatch)]
        );
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
