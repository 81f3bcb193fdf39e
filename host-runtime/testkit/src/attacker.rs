//! An on-path attacker for the tests: a TCP proxy on 127.0.0.1 in front of a local peer (or a
//! private Postfix) that understands just enough SMTP (one reply per command, pipelined or not;
//! DATA and BDAT) and TLS (record framing) to strip STARTTLS, inject bytes after the `220` to
//! STARTTLS, forge TLS alerts, cut the connection at each step of the handshake, dribble bytes,
//! or corrupt records.
//!
//! Everything it produces is what the engine has to treat as unauthenticated evidence: none of it
//! needs a key, only a place on the path. The attack can change between connections
//! ([`AttackProxy::set_attack`]), so a driver lets a peer be proven first and attacks it later.
//!
//! It only ever connects to 127.0.0.1: [`AttackProxy::start`] refuses any other upstream.

#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::accept::accept_loop;

/// The TLS alert descriptions the engine tells apart, for [`Attack::ForgeAlert`]: the same
/// numbers the host reads alerts by.
pub use tlsfallback_mta::tls::alert;

/// How STARTTLS is taken away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strip {
    /// STARTTLS removed from the EHLO reply.
    RemoveFromEhlo,
    /// STARTTLS left in EHLO, but answered `454` by the proxy (the peer never sees it).
    Answer454,
    /// STARTTLS left in EHLO, but answered `502` by the proxy.
    Answer502,
}

/// What is injected after the `220` to STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Injection {
    /// A line of text that is neither SMTP nor TLS.
    Garbage,
    /// An HTTP response, as a confused middlebox sends.
    HttpResponse,
    /// A TLS record header promising more than follows, then the end of the connection.
    PartialRecord,
}

impl Injection {
    /// The bytes injected.
    #[must_use]
    pub const fn bytes(self) -> &'static [u8] {
        match self {
            Self::Garbage => b"garbage that is neither SMTP nor TLS\r\n",
            Self::HttpResponse => {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            // A handshake record of 64 bytes, of which a ServerHello's first three arrive.
            Self::PartialRecord => b"\x16\x03\x03\x00\x40\x02\x00\x00",
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Garbage => "garbage",
            Self::HttpResponse => "http-response",
            Self::PartialRecord => "partial-record",
        }
    }
}

/// When the injected bytes arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InjectTiming {
    /// In the same segment as the `220` (the client can see them before its handshake starts:
    /// the STARTTLS command-injection pattern, CVE-2011-0411).
    WithThe220,
    /// After the client's ClientHello, in place of the server's answer: TLS reads them.
    AfterClientHello,
}

/// Where in the handshake the connection is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandshakeStep {
    /// Right after the `220` to STARTTLS, before the ClientHello.
    After220,
    /// After the client's ClientHello, which never reaches the peer.
    AfterClientHello,
    /// After the peer's ServerHello record reached the client.
    AfterServerHello,
    /// After the peer's second record (the server's flight cut in two).
    MidHandshake,
    /// After the handshake finished, at the client's first application data (the EHLO).
    AfterFinished,
}

impl HandshakeStep {
    /// Every step, in handshake order.
    pub const ALL: [Self; 5] = [
        Self::After220,
        Self::AfterClientHello,
        Self::AfterServerHello,
        Self::MidHandshake,
        Self::AfterFinished,
    ];

    const fn name(self) -> &'static str {
        match self {
            Self::After220 => "after-220",
            Self::AfterClientHello => "after-client-hello",
            Self::AfterServerHello => "after-server-hello",
            Self::MidHandshake => "mid-handshake",
            Self::AfterFinished => "after-finished",
        }
    }
}

/// How the peer's TLS bytes are slowed down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delay {
    /// Holds the peer's first TLS record for this long, then passes everything.
    Stall(Duration),
    /// Passes the peer's TLS bytes `chunk` at a time with `pause` between.
    Dribble {
        /// Bytes per write.
        chunk: usize,
        /// The pause after each write.
        pause: Duration,
    },
}

/// What the proxy does to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attack {
    /// Nothing: every byte passes unchanged.
    PassThrough,
    /// Takes STARTTLS away.
    StripStarttls(Strip),
    /// Adds bytes after the `220` to STARTTLS.
    InjectAfter220 {
        /// The bytes.
        payload: Injection,
        /// When they arrive.
        timing: InjectTiming,
    },
    /// Answers the ClientHello with a fatal TLS alert of this description, as a real alert record
    /// in place of the ServerHello (see [`alert`]).
    ForgeAlert(u8),
    /// Cuts the connection at this step.
    ResetAt(HandshakeStep),
    /// Slows the peer's TLS bytes down.
    Delay(Delay),
    /// Flips a byte in every record the peer sends after its ServerHello.
    CorruptRecords,
}

impl Attack {
    /// Every attack of the campaign, once each (the alerts of [`alert::ALL`], every
    /// [`HandshakeStep`], every injection at each timing).
    #[must_use]
    pub fn every() -> Vec<Self> {
        let mut all = vec![
            Self::StripStarttls(Strip::RemoveFromEhlo),
            Self::StripStarttls(Strip::Answer454),
            Self::StripStarttls(Strip::Answer502),
        ];
        for payload in [
            Injection::Garbage,
            Injection::HttpResponse,
            Injection::PartialRecord,
        ] {
            for timing in [InjectTiming::WithThe220, InjectTiming::AfterClientHello] {
                all.push(Self::InjectAfter220 { payload, timing });
            }
        }
        all.extend(alert::ALL.iter().map(|(code, _)| Self::ForgeAlert(*code)));
        all.extend(HandshakeStep::ALL.map(Self::ResetAt));
        all.push(Self::Delay(Delay::Stall(Duration::from_secs(1))));
        all.push(Self::Delay(Delay::Dribble {
            chunk: 64,
            pause: Duration::from_millis(2),
        }));
        all.push(Self::CorruptRecords);
        all
    }

    /// A short name for tables and logs, e.g. `forge-alert/protocol-version`.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Self::PassThrough => "pass-through".to_owned(),
            Self::StripStarttls(Strip::RemoveFromEhlo) => "strip/remove-from-ehlo".to_owned(),
            Self::StripStarttls(Strip::Answer454) => "strip/answer-454".to_owned(),
            Self::StripStarttls(Strip::Answer502) => "strip/answer-502".to_owned(),
            Self::InjectAfter220 { payload, timing } => format!(
                "inject/{}/{}",
                payload.name(),
                match timing {
                    InjectTiming::WithThe220 => "with-220",
                    InjectTiming::AfterClientHello => "after-client-hello",
                }
            ),
            Self::ForgeAlert(code) => format!("forge-alert/{}", alert::name(*code)),
            Self::ResetAt(step) => format!("reset/{}", step.name()),
            Self::Delay(Delay::Stall(d)) => format!("delay/stall-{}ms", d.as_millis()),
            Self::Delay(Delay::Dribble { chunk, pause }) => {
                format!("delay/dribble-{chunk}B-per-{}ms", pause.as_millis())
            }
            Self::CorruptRecords => "corrupt-records".to_owned(),
        }
    }
}

/// A running attacker; stops when dropped.
pub struct AttackProxy {
    /// Where it listens (127.0.0.1, a fresh port).
    pub address: SocketAddr,
    attack: Arc<Mutex<Attack>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    fired: AtomicUsize,
}

impl AttackProxy {
    /// Starts a proxy to `upstream` carrying out `attack` on every connection.
    ///
    /// # Errors
    ///
    /// When `upstream` is not on 127.0.0.1 (the attacker only ever attacks local peers), or the
    /// socket cannot be bound.
    pub fn start(upstream: SocketAddr, attack: Attack) -> io::Result<Self> {
        if upstream.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the test attacker only connects to 127.0.0.1, not {upstream}"),
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let attack = Arc::new(Mutex::new(attack));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (attack, counters) = (attack.clone(), counters.clone());
            accept_loop(listener, stop.clone(), move |client| {
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let attack = *attack.lock().unwrap_or_else(PoisonError::into_inner);
                // A failed relay only ends its own connection, as a real network would.
                let _ = relay(client, upstream, attack, &counters.fired);
            })
        };
        Ok(Self {
            address,
            attack,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// From now on, new connections get `attack`.
    pub fn set_attack(&self, attack: Attack) {
        *self.attack.lock().unwrap_or_else(PoisonError::into_inner) = attack;
    }

    /// The attack new connections get.
    #[must_use]
    pub fn attack(&self) -> Attack {
        *self.attack.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Connections on which the attack was carried out (STARTTLS found to strip, a ClientHello to
    /// answer, a record to corrupt...): a campaign whose attacks never fired proves nothing.
    #[must_use]
    pub fn fired(&self) -> usize {
        self.counters.fired.load(Ordering::Relaxed)
    }
}

impl Drop for AttackProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The longest SMTP line relayed; longer ones end the connection.
const MAX_LINE: u64 = 64 * 1024;
/// The largest TLS record body (2^14 plus the expansion TLS 1.2 allows).
const MAX_RECORD_BODY: usize = 16_384 + 2_048;
/// How long the proxy waits for either side before giving up on a connection.
const IDLE: Duration = Duration::from_secs(30);

const RECORD_CHANGE_CIPHER_SPEC: u8 = 20;
const RECORD_ALERT: u8 = 21;
const RECORD_HANDSHAKE: u8 = 22;
const RECORD_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_SERVER_HELLO: u8 = 2;
const EXTENSION_SUPPORTED_VERSIONS: u16 = 43;
const TLS_1_3: u16 = 0x0304;

/// Both sockets of one proxied connection, so that either relay direction can cut both.
struct Ends {
    client: TcpStream,
    server: TcpStream,
}

impl Ends {
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

/// One SMTP reply: its lines, CRLF included.
struct Reply {
    lines: Vec<Vec<u8>>,
}

impl Reply {
    fn code(&self) -> Option<u16> {
        let first = self.lines.first()?;
        std::str::from_utf8(first.get(..3)?).ok()?.parse().ok()
    }

    fn bytes(&self) -> Vec<u8> {
        self.lines.concat()
    }

    /// The reply without a `STARTTLS` line, the continuation marks fixed; whether one was there.
    fn without_starttls(&self) -> (Self, bool) {
        let is_starttls = |line: &Vec<u8>| {
            line.get(4..)
                .is_some_and(|rest| rest.trim_ascii().eq_ignore_ascii_case(b"STARTTLS"))
        };
        let mut lines: Vec<Vec<u8>> = self
            .lines
            .iter()
            .filter(|l| !is_starttls(l))
            .cloned()
            .collect();
        let removed = lines.len() != self.lines.len();
        let count = lines.len();
        for (index, line) in lines.iter_mut().enumerate() {
            if line.len() > 3 {
                line[3] = if index + 1 == count { b' ' } else { b'-' };
            }
        }
        (Self { lines }, removed)
    }
}

fn read_line(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    reader.take(MAX_LINE).read_until(b'\n', &mut line)?;
    Ok((!line.is_empty()).then_some(line))
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Option<Reply>> {
    let mut lines = Vec::new();
    while let Some(line) = read_line(reader)? {
        let last = line.get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok(Some(Reply { lines }));
        }
    }
    Ok(None)
}

fn is_command(line: &[u8], verb: &[u8]) -> bool {
    line.trim_ascii().len() >= verb.len()
        && line.trim_ascii()[..verb.len()].eq_ignore_ascii_case(verb)
}

/// The chunk size of a `BDAT` command.
fn bdat_size(command: &[u8]) -> Option<u64> {
    if !is_command(command, b"BDAT ") {
        return None;
    }
    let text = std::str::from_utf8(command).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Relays one connection in plain SMTP (lockstep: our client does not pipeline) until STARTTLS
/// succeeds, then hands over to the TLS phase.
fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    attack: Attack,
    fired: &AtomicUsize,
) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(IDLE))?;
    let server = TcpStream::connect_timeout(&upstream, IDLE)?;
    server.set_read_timeout(Some(IDLE))?;
    let ends = Ends {
        client: client.try_clone()?,
        server: server.try_clone()?,
    };
    let result = smtp_phase(client, server, attack, fired, &ends);
    ends.cut();
    result
}

fn smtp_phase(
    client: TcpStream,
    server: TcpStream,
    attack: Attack,
    fired: &AtomicUsize,
    ends: &Ends,
) -> io::Result<()> {
    let (mut client_in, mut client_out) = (BufReader::new(client.try_clone()?), client);
    let (mut server_in, mut server_out) = (BufReader::new(server.try_clone()?), server);
    let fire = || {
        fired.fetch_add(1, Ordering::Relaxed);
    };
    let Some(banner) = read_reply(&mut server_in)? else {
        return Ok(());
    };
    client_out.write_all(&banner.bytes())?;
    while let Some(command) = read_line(&mut client_in)? {
        let starttls = is_command(&command, b"STARTTLS");
        if starttls {
            let refusal: Option<&[u8]> = match attack {
                Attack::StripStarttls(Strip::Answer454) => {
                    Some(b"454 4.7.0 TLS not available due to local problem\r\n")
                }
                Attack::StripStarttls(Strip::Answer502) => {
                    Some(b"502 5.5.1 Command not implemented\r\n")
                }
                _ => None,
            };
            if let Some(refusal) = refusal {
                fire();
                client_out.write_all(refusal)?;
                continue;
            }
        }
        server_out.write_all(&command)?;
        if let Some(size) = bdat_size(&command) {
            // A chunk of the message (RFC 3030) follows its command as raw bytes, not lines.
            let copied = io::copy(&mut (&mut client_in).take(size), &mut server_out)?;
            if copied < size {
                return Ok(());
            }
        }
        let Some(mut reply) = read_reply(&mut server_in)? else {
            return Ok(());
        };
        if is_command(&command, b"EHLO") && attack == Attack::StripStarttls(Strip::RemoveFromEhlo) {
            let (stripped, removed) = reply.without_starttls();
            if removed {
                fire();
            }
            reply = stripped;
        }
        if starttls && reply.code() == Some(220) {
            return tls_phase(client_in, server_in, &reply.bytes(), attack, fired, ends);
        }
        client_out.write_all(&reply.bytes())?;
        if reply.code() == Some(354) {
            // The message: lines up to the lone dot, then the peer's verdict.
            while let Some(line) = read_line(&mut client_in)? {
                server_out.write_all(&line)?;
                if line == b".\r\n" {
                    break;
                }
            }
            let Some(verdict) = read_reply(&mut server_in)? else {
                return Ok(());
            };
            client_out.write_all(&verdict.bytes())?;
        }
    }
    Ok(())
}

/// A TLS record: its 5-byte header and its body.
struct Record {
    header: [u8; 5],
    body: Vec<u8>,
}

impl Record {
    fn content_type(&self) -> u8 {
        self.header[0]
    }

    fn bytes(&self) -> Vec<u8> {
        [&self.header[..], &self.body].concat()
    }

    /// Whether this is a ServerHello choosing TLS 1.3 (its `supported_versions` extension).
    fn is_tls13_server_hello(&self) -> bool {
        self.content_type() == RECORD_HANDSHAKE
            && self.body.first() == Some(&HANDSHAKE_SERVER_HELLO)
            && server_hello_version(&self.body[4.min(self.body.len())..]) == Some(TLS_1_3)
    }
}

/// The version a ServerHello body selects through `supported_versions`, if it has that extension.
fn server_hello_version(hello: &[u8]) -> Option<u16> {
    let u16_at = |at: usize| Some(u16::from_be_bytes([*hello.get(at)?, *hello.get(at + 1)?]));
    // legacy_version (2), random (32), then the session id with its length byte.
    let mut at = 34;
    at += 1 + usize::from(*hello.get(at)?);
    // cipher suite (2), compression method (1), extensions length (2).
    at += 3;
    let end = at + 2 + usize::from(u16_at(at)?);
    at += 2;
    while at + 4 <= end {
        let (kind, len) = (u16_at(at)?, usize::from(u16_at(at + 2)?));
        if kind == EXTENSION_SUPPORTED_VERSIONS {
            return u16_at(at + 4);
        }
        at += 4 + len;
    }
    None
}

/// Reads one record; `None` at the end of the stream or on bytes that are not TLS framing.
fn read_record(reader: &mut impl Read) -> io::Result<Option<Record>> {
    let mut header = [0u8; 5];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let framed = (RECORD_CHANGE_CIPHER_SPEC..=RECORD_APPLICATION_DATA).contains(&header[0])
        && header[1] == 3
        && len <= MAX_RECORD_BODY;
    if !framed {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    Ok(Some(Record { header, body }))
}

/// After the peer's `220` to STARTTLS: the attacks on the handshake, then record relaying.
fn tls_phase(
    mut client_in: BufReader<TcpStream>,
    server_in: BufReader<TcpStream>,
    reply_220: &[u8],
    attack: Attack,
    fired: &AtomicUsize,
    ends: &Ends,
) -> io::Result<()> {
    let mut client_out: &TcpStream = &ends.client;
    let fire = || {
        fired.fetch_add(1, Ordering::Relaxed);
    };
    match attack {
        Attack::InjectAfter220 {
            payload,
            timing: InjectTiming::WithThe220,
        } => {
            fire();
            client_out.write_all(&[reply_220, payload.bytes()].concat())?;
        }
        Attack::InjectAfter220 {
            payload,
            timing: InjectTiming::AfterClientHello,
        } => {
            client_out.write_all(reply_220)?;
            if read_record(&mut client_in)?.is_some() {
                fire();
                client_out.write_all(payload.bytes())?;
            }
            return Ok(());
        }
        Attack::ForgeAlert(description) => {
            client_out.write_all(reply_220)?;
            if let Some(hello) = read_record(&mut client_in)? {
                fire();
                // A fatal alert at the record version the client used, as a real peer sends it.
                let [_, major, minor, _, _] = hello.header;
                client_out.write_all(&[RECORD_ALERT, major, minor, 0, 2, 2, description])?;
            }
            return Ok(());
        }
        Attack::ResetAt(HandshakeStep::After220) => {
            fire();
            client_out.write_all(reply_220)?;
            return Ok(());
        }
        Attack::ResetAt(HandshakeStep::AfterClientHello) => {
            client_out.write_all(reply_220)?;
            if read_record(&mut client_in)?.is_some() {
                fire();
            }
            return Ok(());
        }
        _ => client_out.write_all(reply_220)?,
    }
    let tls13 = AtomicBool::new(false);
    let cut_at_ehlo = attack == Attack::ResetAt(HandshakeStep::AfterFinished);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            if let Ok(true) = client_to_server(client_in, ends, cut_at_ehlo, &tls13) {
                fire();
            }
            ends.cut();
        });
        let downward = server_to_client(server_in, ends, attack, &tls13, fired);
        ends.cut();
        downward
    })
}

/// Client records to the peer; with `cut_at_ehlo`, cuts at the client's first application data
/// after its Finished (in TLS 1.3 the Finished itself is the first application data record).
/// Whether it cut.
fn client_to_server(
    mut client_in: BufReader<TcpStream>,
    ends: &Ends,
    cut_at_ehlo: bool,
    tls13: &AtomicBool,
) -> io::Result<bool> {
    let mut server_out: &TcpStream = &ends.server;
    let mut application_records = 0;
    while let Some(record) = read_record(&mut client_in)? {
        if record.content_type() == RECORD_APPLICATION_DATA {
            application_records += 1;
            let finished_is_encrypted = tls13.load(Ordering::Relaxed);
            if cut_at_ehlo && application_records > usize::from(finished_is_encrypted) {
                return Ok(true);
            }
        }
        server_out.write_all(&record.bytes())?;
    }
    Ok(false)
}

/// The peer's records to the client, with the attacks on them.
fn server_to_client(
    mut server_in: BufReader<TcpStream>,
    ends: &Ends,
    attack: Attack,
    tls13: &AtomicBool,
    fired: &AtomicUsize,
) -> io::Result<()> {
    let mut client_out: &TcpStream = &ends.client;
    let mut count = 0usize;
    while let Some(mut record) = read_record(&mut server_in)? {
        count += 1;
        if record.is_tls13_server_hello() {
            tls13.store(true, Ordering::Relaxed);
        }
        match attack {
            Attack::CorruptRecords if count > 1 && !record.body.is_empty() => {
                if count == 2 {
                    fired.fetch_add(1, Ordering::Relaxed);
                }
                let middle = record.body.len() / 2;
                record.body[middle] ^= 0x5a;
            }
            Attack::Delay(Delay::Stall(pause)) if count == 1 => {
                fired.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(pause);
            }
            _ => {}
        }
        match attack {
            Attack::Delay(Delay::Dribble { chunk, pause }) => {
                if count == 1 {
                    fired.fetch_add(1, Ordering::Relaxed);
                }
                for piece in record.bytes().chunks(chunk.max(1)) {
                    client_out.write_all(piece)?;
                    std::thread::sleep(pause);
                }
            }
            _ => client_out.write_all(&record.bytes())?,
        }
        let cut_after = match attack {
            Attack::ResetAt(HandshakeStep::AfterServerHello) => Some(1),
            Attack::ResetAt(HandshakeStep::MidHandshake) => Some(2),
            _ => None,
        };
        if cut_after == Some(count) {
            fired.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_with_versions(versions: Option<u16>) -> Vec<u8> {
        let mut hello = vec![3, 3];
        hello.extend([7u8; 32]);
        hello.extend([2, 0xaa, 0xbb]);
        hello.extend([0x13, 0x01, 0]);
        let mut extensions = vec![0, 11, 0, 1, 0];
        if let Some(v) = versions {
            extensions.extend([0, 43, 0, 2]);
            extensions.extend(v.to_be_bytes());
        }
        hello.extend(u16::try_from(extensions.len()).unwrap().to_be_bytes());
        hello.extend(extensions);
        hello
    }

    #[test]
    fn the_server_hello_version_is_read_from_supported_versions() {
        assert_eq!(
            server_hello_version(&hello_with_versions(Some(TLS_1_3))),
            Some(TLS_1_3)
        );
        assert_eq!(server_hello_version(&hello_with_versions(None)), None);
        assert_eq!(server_hello_version(&[3, 3, 1]), None);
    }

    #[test]
    fn starttls_is_removed_from_the_middle_or_the_end_of_ehlo() {
        let reply = Reply {
            lines: vec![
                b"250-peer\r\n".to_vec(),
                b"250-STARTTLS\r\n".to_vec(),
                b"250 8BITMIME\r\n".to_vec(),
            ],
        };
        let (stripped, removed) = reply.without_starttls();
        assert!(removed);
        assert_eq!(stripped.bytes(), b"250-peer\r\n250 8BITMIME\r\n");
        let last = Reply {
            lines: vec![b"250-peer\r\n".to_vec(), b"250 starttls\r\n".to_vec()],
        };
        assert_eq!(last.without_starttls().0.bytes(), b"250 peer\r\n");
    }

    #[test]
    fn a_bdat_chunk_is_relayed_as_bytes() {
        assert_eq!(bdat_size(b"BDAT 1024 LAST\r\n"), Some(1024));
        assert_eq!(bdat_size(b"bdat 7\r\n"), Some(7));
        assert_eq!(bdat_size(b"BDAT\r\n"), None);
        assert_eq!(bdat_size(b"DATA\r\n"), None);
    }
}
