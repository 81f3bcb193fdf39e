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

use crate::tls::{self, Negotiated, TrustAnchors};

/// The longest reply line accepted (RFC 5321 allows 512; be lenient, but bounded).
const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have.
const MAX_REPLY_LINES: usize = 100;
/// The longest message line sent (RFC 5321 section 4.5.3.1.6: 1000 with CRLF).
const MAX_MESSAGE_LINE: usize = 998;

/// Timeouts for one attempt.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each read or write (the banner, each reply, the TLS handshake).
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(60),
        }
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
    Plain(BufReader<TcpStream>),
    Tls(BufReader<openssl::ssl::SslStream<TcpStream>>),
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

    fn command(&mut self, line: &str) -> io::Result<Reply> {
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
    let stream = match TcpStream::connect_timeout(&address, timeouts.connect) {
        Ok(stream) => stream,
        Err(e) => {
            return AttemptResult::failed(
                Outcome::ConnectFailed,
                format!("connect {address}: {e}"),
            );
        }
    };
    let configured = stream
        .set_read_timeout(Some(timeouts.command))
        .and_then(|()| stream.set_write_timeout(Some(timeouts.command)));
    if let Err(e) = configured {
        return AttemptResult::failed(Outcome::ConnectFailed, format!("socket set-up: {e}"));
    }
    let mut conn = Conn::Plain(BufReader::new(stream));
    let mut negotiated = None;
    let session = (|| -> Result<AttemptResult, (Outcome, String)> {
        let fail = |e: io::Error, tls_up: bool| (io_outcome(&e, tls_up), e.to_string());
        let banner = conn.read_reply().map_err(|e| fail(e, false))?;
        if banner.code != 220 {
            // A peer that will not talk now: like a failed connection, not TLS evidence.
            return Err((Outcome::ConnectFailed, format!("banner {}", banner.text())));
        }
        let ehlo = conn
            .command(&format!("EHLO {helo_name}"))
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
            let reply = conn.command("STARTTLS").map_err(|e| fail(e, false))?;
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
            if !reader.buffer().is_empty() {
                // Bytes after the 220 before the handshake: a command-injection attempt (CVE-2011-0411).
                let extra = String::from_utf8_lossy(reader.buffer()).into_owned();
                return Err((
                    Outcome::ConnectionReset,
                    format!("data after the 220 to STARTTLS: {extra:?}"),
                ));
            }
            let (stream, agreed) = tls::handshake(params, anchors, mx_host, reader.into_inner())
                .map_err(|f| (f.outcome, f.detail))?;
            negotiated = Some(agreed);
            conn = Conn::Tls(BufReader::new(stream));
            let ehlo = conn
                .command(&format!("EHLO {helo_name}"))
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
            .command(&format!("MAIL FROM:<{}>", message.from))
            .map_err(|e| fail(e, tls_up))?;
        if reply.code != 250 {
            return Ok(refused(&reply, "MAIL FROM"));
        }
        for rcpt in message.to {
            let reply = conn
                .command(&format!("RCPT TO:<{rcpt}>"))
                .map_err(|e| fail(e, tls_up))?;
            if reply.code != 250 && reply.code != 251 {
                return Ok(refused(&reply, "RCPT TO"));
            }
        }
        let reply = conn.command("DATA").map_err(|e| fail(e, tls_up))?;
        if reply.code != 354 {
            return Ok(refused(&reply, "DATA"));
        }
        conn.send(&dot_stuff(message.data))
            .map_err(|e| fail(e, tls_up))?;
        let reply = conn.read_reply().map_err(|e| fail(e, tls_up))?;
        if reply.code != 250 {
            return Ok(refused(&reply, "end of data"));
        }
        // The message is accepted; a failed QUIT changes nothing.
        let _ = conn.command("QUIT");
        Ok(accepted(format!("accepted: {}", reply.text())))
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
