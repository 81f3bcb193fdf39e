//! A small SMTP client for one delivery attempt at one tier.
//!
//! Written by hand rather than with an SMTP crate (lettre) because the engine needs to control the
//! TLS handshake per tier (versions, suites, security level, fallback SCSV) and to see exactly
//! where and why an attempt failed (no STARTTLS in EHLO, 454 to STARTTLS, which TLS alert): lettre
//! hides both behind its own error type.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use policy_core::{Outcome, TlsParameters};

use crate::clock::Deadline;
use crate::tls::{self, Negotiated, TrustAnchors};

/// The longest reply line accepted (RFC 5321 allows 512; be lenient, but bounded).
const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have.
const MAX_REPLY_LINES: usize = 100;
/// The longest message line sent (RFC 5321 section 4.5.3.1.6: 1000 with CRLF).
const MAX_MESSAGE_LINE: usize = 998;

/// Time limits for one attempt: one per SMTP stage (Postfix's `smtp_*_timeout` defaults), each
/// enforced across all the reads and writes of its stage, and a deadline for the whole attempt
/// that caps every stage. A peer that dribbles a byte at a time cannot hold an attempt longer
/// than these, however often it sends.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect (`smtp_connect_timeout`, 30 s).
    pub connect: Duration,
    /// The banner, and each EHLO's reply (`smtp_helo_timeout`, 300 s).
    pub greeting: Duration,
    /// The reply to STARTTLS, and the TLS handshake (`smtp_starttls_timeout`, 300 s).
    pub starttls: Duration,
    /// The reply to MAIL FROM (`smtp_mail_timeout`, 300 s).
    pub mail: Duration,
    /// The reply to each RCPT TO (`smtp_rcpt_timeout`, 300 s).
    pub rcpt: Duration,
    /// The reply to DATA (`smtp_data_init_timeout`, 120 s).
    pub data_init: Duration,
    /// Sending each [`DATA_CHUNK`] bytes of the message (`smtp_data_xfer_timeout`, 180 s).
    pub data_transfer: Duration,
    /// The reply to the final dot (`smtp_data_done_timeout`, 600 s).
    pub data_done: Duration,
    /// The reply to QUIT (`smtp_quit_timeout`, 300 s).
    pub quit: Duration,
    /// The whole attempt, from connect to QUIT (30 minutes).
    pub attempt: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let secs = Duration::from_secs;
        Self {
            connect: secs(30),
            greeting: secs(300),
            starttls: secs(300),
            mail: secs(300),
            rcpt: secs(300),
            data_init: secs(120),
            data_transfer: secs(180),
            data_done: secs(600),
            quit: secs(300),
            attempt: secs(30 * 60),
        }
    }
}

/// How much of the message is sent under one [`Timeouts::data_transfer`] limit.
pub const DATA_CHUNK: usize = 64 * 1024;

/// A stage of the session, with its time limit.
#[derive(Clone, Copy, Debug)]
struct Stage {
    name: &'static str,
    limit: Duration,
}

/// The TCP stream under both sides of STARTTLS: every read and write gets only the time left
/// before the current stage's end (and the attempt's), so the limits hold across reads.
#[derive(Debug)]
struct Deadlined {
    stream: TcpStream,
    attempt_end: Deadline,
    stage: Stage,
    stage_end: Deadline,
}

impl Deadlined {
    fn new(stream: TcpStream, attempt_end: Deadline) -> Self {
        let stage = Stage {
            name: "connect",
            limit: Duration::ZERO,
        };
        Self {
            stream,
            attempt_end,
            stage,
            stage_end: attempt_end,
        }
    }

    /// Starts `stage`: it ends after its limit or with the attempt, whichever comes first.
    fn begin(&mut self, stage: Stage) {
        self.stage = stage;
        self.stage_end = Deadline::after(stage.limit).min(self.attempt_end);
    }

    fn timed_out(&self) -> io::Error {
        let which = if self.stage_end >= self.attempt_end {
            "the attempt's deadline".to_owned()
        } else {
            format!("its {:?} limit", self.stage.limit)
        };
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the {} stage ran past {which}", self.stage.name),
        )
    }

    /// The time left in the stage, or the time-out error when none is.
    fn left(&self) -> io::Result<Duration> {
        let left = self.stage_end.left();
        if left.is_zero() {
            Err(self.timed_out())
        } else {
            Ok(left)
        }
    }

    /// Whether bytes have arrived that nobody has read yet (without waiting for any).
    fn bytes_waiting(&self) -> bool {
        let mut probe = [0u8; 1];
        let peeked = self
            .stream
            .set_nonblocking(true)
            .and_then(|()| self.stream.peek(&mut probe));
        // Back to blocking; should that fail, the next read fails and says so.
        let _ = self.stream.set_nonblocking(false);
        matches!(peeked, Ok(n) if n > 0)
    }

    /// A socket time-out becomes the stage's own error, so the log says which limit it was.
    fn check<T>(&self, result: io::Result<T>) -> io::Result<T> {
        match result {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.timed_out())
            }
            other => other,
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let result = self.stream.read(buf);
        self.check(result)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        let result = self.stream.write(buf);
        self.check(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// The envelope and content of a message.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    /// The reverse path.
    pub from: &'a str,
    /// The forward paths.
    pub to: &'a [String],
    /// The message, header and body, lines ending in LF or CRLF.
    pub data: &'a [u8],
}

/// A recipient the peer refused at RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientRefusal {
    /// The forward path.
    pub recipient: String,
    /// The peer's reply.
    pub reply: String,
    /// A 5xx reply (bounce it); a 4xx one defers it.
    pub permanent: bool,
}

/// How an attempt ended.
#[derive(Debug)]
pub struct AttemptResult {
    /// What the engine is told.
    pub outcome: Outcome,
    /// What TLS negotiated, when it did.
    pub negotiated: Option<Negotiated>,
    /// A permanent (5xx) rejection of the message itself after the session was set up: the
    /// message must bounce whatever the TLS tier.
    pub rejected: Option<String>,
    /// A temporary (4xx) refusal of the message itself after the session was set up.
    pub deferred: Option<String>,
    /// The recipients the peer refused at RCPT TO, each with its reply. When some were
    /// accepted, the message went to those, and only these failed.
    pub refused_recipients: Vec<RecipientRefusal>,
    /// A line for the log.
    pub detail: String,
}

impl AttemptResult {
    fn failed(outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            negotiated: None,
            rejected: None,
            deferred: None,
            refused_recipients: Vec::new(),
            detail: detail.into(),
        }
    }
}

/// An SMTP reply.
#[derive(Debug)]
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
    }
}

/// Either side of STARTTLS.
enum Conn {
    Plain(BufReader<Deadlined>),
    Tls(BufReader<openssl::ssl::SslStream<Deadlined>>),
    /// Only while the stream moves from plain to TLS.
    Closed(BufReader<io::Empty>),
}

impl Conn {
    fn reader(&mut self) -> &mut dyn BufRead {
        match self {
            Self::Plain(r) => r,
            Self::Tls(r) => r,
            Self::Closed(r) => r,
        }
    }

    /// Starts a stage: its limit holds from now on, across every read and write.
    fn begin(&mut self, stage: Stage) {
        match self {
            Self::Plain(r) => r.get_mut().begin(stage),
            Self::Tls(r) => r.get_mut().get_mut().begin(stage),
            Self::Closed(_) => {}
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Plain(r) => r.get_mut().write_all(bytes),
            Self::Tls(r) => {
                r.get_mut().write_all(bytes)?;
                r.get_mut().flush()
            }
            Self::Closed(_) => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let read = self
                .reader()
                .take(MAX_REPLY_LINE as u64 + 1)
                .read_until(b'\n', &mut line)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ));
            }
            if line.len() > MAX_REPLY_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply line too long",
                ));
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            let bytes = text.as_bytes();
            let valid = bytes.len() >= 3
                && bytes[..3].iter().all(u8::is_ascii_digit)
                && (bytes.len() == 3 || bytes[3] == b' ' || bytes[3] == b'-');
            if !valid {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an SMTP reply: {:?}", truncate(&text)),
                ));
            }
            let code: u16 = text[..3].parse().unwrap_or(0);
            let last = bytes.len() == 3 || bytes[3] == b' ';
            lines.push(text.get(4..).unwrap_or("").to_owned());
            if lines.len() > MAX_REPLY_LINES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply has too many lines",
                ));
            }
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// Sends one command and reads its reply, both within `stage`.
    fn command(&mut self, stage: Stage, line: &str) -> io::Result<Reply> {
        self.begin(stage);
        if has_line_break(line) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to send a command with CR or LF: {line:?}"),
            ));
        }
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }
}

/// Whether `text` would end an SMTP command line early (and start another: command injection).
fn has_line_break(text: &str) -> bool {
    text.contains(['\r', '\n'])
}

fn truncate(text: &str) -> &str {
    let end = text.char_indices().nth(80).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// Classifies an I/O failure before or after the handshake.
fn io_outcome(error: &io::Error, tls_up: bool) -> Outcome {
    if tls_up {
        return Outcome::PostHandshakeFailure;
    }
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Outcome::HandshakeTimeout,
        _ => Outcome::ConnectionReset,
    }
}

/// Makes one attempt: connect, EHLO, STARTTLS with `tls` (none: cleartext), EHLO, MAIL, RCPT,
/// DATA, QUIT.
#[must_use]
pub fn attempt(
    address: SocketAddr,
    mx_host: &str,
    helo_name: &str,
    tls: Option<&TlsParameters>,
    anchors: &TrustAnchors,
    timeouts: Timeouts,
    message: &Message<'_>,
) -> AttemptResult {
    // The CLI checks these; the client refuses them too, before any byte goes out, whoever calls
    // it. Our own fault, so reported like an unreachable peer: no evidence about its TLS.
    let mut fields = [helo_name, message.from]
        .into_iter()
        .chain(message.to.iter().map(String::as_str));
    if let Some(bad) = fields.find(|field| has_line_break(field)) {
        return AttemptResult::failed(
            Outcome::ConnectFailed,
            format!("refused before connecting: {bad:?} has CR or LF (SMTP command injection)"),
        );
    }
    let attempt_end = Deadline::after(timeouts.attempt);
    let stream = match TcpStream::connect_timeout(&address, timeouts.connect.min(timeouts.attempt))
    {
        Ok(stream) => stream,
        Err(e) => {
            return AttemptResult::failed(
                Outcome::ConnectFailed,
                format!("connect {address}: {e}"),
            );
        }
    };
    let stage = |name: &'static str, limit: Duration| Stage { name, limit };
    let greeting = stage("greeting", timeouts.greeting);
    let mut conn = Conn::Plain(BufReader::new(Deadlined::new(stream, attempt_end)));
    let mut negotiated = None;
    let session = (|| -> Result<AttemptResult, (Outcome, String)> {
        let fail = |e: io::Error, tls_up: bool| (io_outcome(&e, tls_up), e.to_string());
        conn.begin(greeting);
        let banner = conn.read_reply().map_err(|e| fail(e, false))?;
        if banner.code != 220 {
            // A peer that will not talk now: like a failed connection, not TLS evidence.
            return Err((Outcome::ConnectFailed, format!("banner {}", banner.text())));
        }
        let ehlo = conn
            .command(greeting, &format!("EHLO {helo_name}"))
            .map_err(|e| fail(e, false))?;
        if ehlo.code != 250 {
            return Err((
                Outcome::ConnectFailed,
                format!("EHLO refused: {}", ehlo.text()),
            ));
        }
        if let Some(params) = tls {
            let offers = ehlo
                .lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("STARTTLS"));
            if !offers {
                return Err((
                    Outcome::StarttlsNotOffered,
                    "EHLO did not offer STARTTLS".to_owned(),
                ));
            }
            let starttls = stage("STARTTLS", timeouts.starttls);
            let reply = conn
                .command(starttls, "STARTTLS")
                .map_err(|e| fail(e, false))?;
            if reply.code != 220 {
                return Err((
                    Outcome::StarttlsRejected { code: reply.code },
                    format!("STARTTLS refused: {}", reply.text()),
                ));
            }
            let closed = Conn::Closed(BufReader::new(io::empty()));
            let Conn::Plain(reader) = std::mem::replace(&mut conn, closed) else {
                return Err((
                    Outcome::ConnectionReset,
                    "STARTTLS on a connection not in plain text".to_owned(),
                ));
            };
            // Bytes after the 220 before our ClientHello, whether in the 220's read or arrived
            // since (no TLS server speaks first): a command-injection attempt (CVE-2011-0411).
            // Cheap evidence, a reset. Bytes that come later still are OpenSSL's to read, and
            // are no alert either (`tls::outcome_for_reasons`).
            let waiting = reader.get_ref().bytes_waiting();
            if !reader.buffer().is_empty() || waiting {
                let mut extra = String::from_utf8_lossy(reader.buffer()).into_owned();
                if waiting {
                    extra.push('…');
                }
                return Err((
                    Outcome::ConnectionReset,
                    format!("data after the 220 to STARTTLS, before our ClientHello: {extra:?}"),
                ));
            }
            // The handshake stays in the STARTTLS stage.
            let (stream, agreed) = tls::handshake(params, anchors, mx_host, reader.into_inner())
                .map_err(|f| (f.outcome, f.detail))?;
            negotiated = Some(agreed);
            conn = Conn::Tls(BufReader::new(stream));
            let ehlo = conn
                .command(greeting, &format!("EHLO {helo_name}"))
                .map_err(|e| fail(e, true))?;
            if ehlo.code != 250 {
                return Err((
                    Outcome::PostHandshakeFailure,
                    format!("EHLO after STARTTLS: {}", ehlo.text()),
                ));
            }
        }
        let tls_up = tls.is_some();
        let version = negotiated.as_ref().and_then(|n: &Negotiated| n.version);
        let accepted = |detail: String| AttemptResult {
            outcome: Outcome::Success { version },
            negotiated: None,
            rejected: None,
            deferred: None,
            refused_recipients: Vec::new(),
            detail,
        };
        let refused = |reply: &Reply, stage: &str| {
            let mut result = accepted(format!("{stage}: {}", reply.text()));
            if reply.code >= 500 {
                result.rejected = Some(reply.text());
            } else {
                result.deferred = Some(reply.text());
            }
            result
        };
        let reply = conn
            .command(
                stage("MAIL FROM", timeouts.mail),
                &format!("MAIL FROM:<{}>", message.from),
            )
            .map_err(|e| fail(e, tls_up))?;
        if reply.code != 250 {
            return Ok(refused(&reply, "MAIL FROM"));
        }
        // Each recipient on its own: one refused must not keep the message from the others.
        let mut refusals = Vec::new();
        for rcpt in message.to {
            let reply = conn
                .command(
                    stage("RCPT TO", timeouts.rcpt),
                    &format!("RCPT TO:<{rcpt}>"),
                )
                .map_err(|e| fail(e, tls_up))?;
            if reply.code != 250 && reply.code != 251 {
                refusals.push(RecipientRefusal {
                    recipient: rcpt.clone(),
                    reply: reply.text(),
                    permanent: reply.code >= 500,
                });
            }
        }
        if refusals.len() == message.to.len() {
            // Nobody to send it to. It bounces only if every refusal was permanent.
            let text = refusals
                .iter()
                .map(|r| format!("<{}>: {}", r.recipient, r.reply))
                .collect::<Vec<_>>()
                .join("; ");
            let mut result = accepted(format!("RCPT TO: every recipient refused: {text}"));
            if refusals.iter().all(|r| r.permanent) {
                result.rejected = Some(text);
            } else {
                result.deferred = Some(text);
            }
            result.refused_recipients = refusals;
            let _ = conn.command(stage("QUIT", timeouts.quit), "QUIT");
            return Ok(result);
        }
        let reply = conn
            .command(stage("DATA", timeouts.data_init), "DATA")
            .map_err(|e| fail(e, tls_up))?;
        if reply.code != 354 {
            return Ok(refused(&reply, "DATA"));
        }
        for chunk in dot_stuff(message.data).chunks(DATA_CHUNK) {
            conn.begin(stage("message transfer", timeouts.data_transfer));
            conn.send(chunk).map_err(|e| fail(e, tls_up))?;
        }
        conn.begin(stage("end of data", timeouts.data_done));
        let reply = conn.read_reply().map_err(|e| fail(e, tls_up))?;
        if reply.code != 250 {
            return Ok(refused(&reply, "end of data"));
        }
        // The message is accepted; a failed QUIT changes nothing.
        let _ = conn.command(stage("QUIT", timeouts.quit), "QUIT");
        let mut result = accepted(format!("accepted: {}", reply.text()));
        result.refused_recipients = refusals;
        Ok(result)
    })();
    match session {
        Ok(mut result) => {
            result.negotiated = negotiated;
            result
        }
        Err((outcome, detail)) => AttemptResult {
            negotiated,
            ..AttemptResult::failed(outcome, detail)
        },
    }
}

/// The DATA payload: lines normalised to CRLF, leading dots doubled (RFC 5321 section 4.5.2),
/// then the lone dot. Over-long lines are refused before any connection by [`check_message`].
#[must_use]
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 5);
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    // `split` yields an empty last piece after a final newline: drop its CRLF.
    if data.ends_with(b"\n") {
        out.truncate(out.len() - 2);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Checks a message before any connection: every line within the SMTP limit.
///
/// # Errors
///
/// The 1-based number of the first over-long line.
pub fn check_message(data: &[u8]) -> Result<(), usize> {
    for (index, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_MESSAGE_LINE {
            return Err(index + 1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_with_a_lone_dot() {
        assert_eq!(dot_stuff(b"a\n.b\n..c\n"), b"a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b"crlf\r\n.\r\n"), b"crlf\r\n..\r\n.\r\n");
    }

    #[test]
    fn over_long_lines_are_found_before_sending() {
        let long = vec![b'x'; 999];
        let mut message = b"ok\n".to_vec();
        message.extend_from_slice(&long);
        assert_eq!(check_message(&message), Err(2));
        assert_eq!(check_message(b"short\nlines\n"), Ok(()));
    }
}
