//! Local SMTP peers with real sockets and real OpenSSL handshakes, bound to 127.0.0.1:0: the
//! kinds of receiving MTA the dance meets (modern, TLS-1.0-only, no STARTTLS, STARTTLS answered
//! with 454, a reset in the middle of the handshake, text where TLS should be after the 220, a
//! banner dribbled a byte at a time). Used by the tests and the demo.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{SslAcceptor, SslMethod, SslOptions, SslVersion};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509, X509NameBuilder};

use crate::accept::accept_loop;
use crate::attacker::{Attack, AttackProxy, Strip};

/// How a local peer behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// TLS 1.2 and 1.3 with strong suites.
    Modern,
    /// TLS 1.0 only, legacy suites at security level 0.
    LegacyOnly,
    /// No STARTTLS in EHLO.
    NoStarttls,
    /// STARTTLS offered, answered with 454.
    Starttls454,
    /// STARTTLS answered with 220, then the connection is closed mid-handshake.
    ResetInHandshake,
    /// STARTTLS answered with 220, and right behind it bytes that are not TLS (whether they
    /// reach the client in the read of the 220 or a later one is up to the network).
    GarbageAfterStarttls,
    /// STARTTLS answered with 220; the ClientHello is answered with text instead of TLS, so the
    /// bytes reach the client only in a read after the 220's.
    TextAfterClientHello,
    /// Sends its banner one byte every [`DRIBBLE_INTERVAL`] ([`DRIBBLE_BYTES`] of them, then
    /// behaves): each byte arrives well within any per-read timeout.
    DribblingGreeting,
}

/// How often [`PeerKind::DribblingGreeting`] sends a byte.
pub const DRIBBLE_INTERVAL: Duration = Duration::from_millis(100);
/// How many bytes [`PeerKind::DribblingGreeting`] dribbles before the banner's end (20 s worth, so
/// that a client without a deadline is still held far past a test's).
pub const DRIBBLE_BYTES: usize = 200;

/// What [`PeerKind::GarbageAfterStarttls`] and [`PeerKind::TextAfterClientHello`] send where TLS
/// should be: an SMTP-looking line, what a confused peer or an injecting attacker would send.
pub const NOT_TLS: &[u8] = b"554 5.7.0 no TLS here after all\r\n";

/// A certificate and key for a peer.
#[derive(Clone)]
pub struct Identity {
    /// The certificate (self-signed).
    pub certificate: X509,
    /// Its private key.
    pub key: PKey<Private>,
}

impl Identity {
    /// A fresh self-signed RSA-2048 certificate for `name` (a host name or an IP address), valid
    /// for a day.
    ///
    /// # Errors
    ///
    /// When OpenSSL fails.
    pub fn self_signed(name: &str) -> Result<Self, openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut subject = X509NameBuilder::new()?;
        subject.append_entry_by_text("CN", name)?;
        let subject = subject.build();
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&subject)?;
        builder.set_issuer_name(&subject)?;
        builder.set_pubkey(&key)?;
        let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(1)?);
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        let mut san = SubjectAlternativeName::new();
        // An address literal (`--mx 127.0.0.1:PORT`) is matched against an IP entry.
        if name.parse::<std::net::IpAddr>().is_ok() {
            san.ip(name);
        } else {
            san.dns(name);
        }
        let san = san.build(&builder.x509v3_context(None, None))?;
        builder.append_extension(san)?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(Self {
            certificate: builder.build(),
            key,
        })
    }
}

/// A message a peer accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The TLS version and cipher it arrived under; `None` for cleartext.
    pub tls: Option<(String, String)>,
    /// MAIL FROM.
    pub from: String,
    /// RCPT TO, in order.
    pub to: Vec<String>,
    /// The content, dot-unstuffed, with CRLF line ends.
    pub data: Vec<u8>,
}

/// A running peer; stops when dropped.
pub struct LocalPeer {
    /// Where it listens.
    pub address: SocketAddr,
    /// What it has accepted.
    pub received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LocalPeer {
    /// Starts a peer of `kind` on 127.0.0.1 with a fresh port.
    ///
    /// # Errors
    ///
    /// When the socket or the TLS acceptor cannot be set up.
    pub fn start(kind: PeerKind, identity: &Identity) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let acceptor = Arc::new(acceptor(kind, identity).map_err(io::Error::other)?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let received = received.clone();
            accept_loop(listener, stop.clone(), move |stream| {
                // A client that misbehaves only ends its own session.
                let _ = serve(kind, &acceptor, stream, &received);
            })
        };
        Ok(Self {
            address,
            received,
            stop,
            thread: Some(thread),
        })
    }

    /// The messages accepted so far.
    #[must_use]
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Drop for LocalPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn acceptor(
    kind: PeerKind,
    identity: &Identity,
) -> Result<SslAcceptor, openssl::error::ErrorStack> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    builder.set_private_key(&identity.key)?;
    builder.set_certificate(&identity.certificate)?;
    if kind == PeerKind::LegacyOnly {
        // The Mozilla profile switches TLS 1.0 and 1.1 off with options; a legacy peer needs them.
        builder.clear_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1);
        builder.set_min_proto_version(Some(SslVersion::TLS1))?;
        builder.set_max_proto_version(Some(SslVersion::TLS1))?;
        builder.set_cipher_list("ALL:!aNULL:!eNULL:@SECLEVEL=0")?;
        builder.set_security_level(0);
    } else {
        builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    }
    Ok(builder.build())
}

fn serve(
    kind: PeerKind,
    acceptor: &SslAcceptor,
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut session = Session::new(BufReader::new(stream.try_clone()?), stream, None);
    session.starttls_454 = kind == PeerKind::Starttls454;
    if kind == PeerKind::DribblingGreeting {
        let dots = std::iter::repeat_n(b'.', DRIBBLE_BYTES);
        for byte in b"220 peer.test ESMTP ".iter().copied().chain(dots) {
            // Fails once the client has given up: the session ends there.
            session.writer.write_all(&[byte])?;
            std::thread::sleep(DRIBBLE_INTERVAL);
        }
    }
    session.send("220 peer.test ESMTP local test peer")?;
    match session.dialogue(kind != PeerKind::NoStarttls, received)? {
        Next::Done => Ok(()),
        Next::StartTls => {
            match kind {
                PeerKind::ResetInHandshake => {
                    // Read the ClientHello, then hang up.
                    let mut hello = [0u8; 64];
                    let _ = session.reader.read(&mut hello);
                    return Ok(());
                }
                PeerKind::GarbageAfterStarttls => {
                    session.writer.write_all(NOT_TLS)?;
                    return linger(session.reader);
                }
                PeerKind::TextAfterClientHello => {
                    let mut hello = [0u8; 64];
                    let _ = session.reader.read(&mut hello)?;
                    session.writer.write_all(NOT_TLS)?;
                    return linger(session.reader);
                }
                _ => {}
            }
            let stream = session.writer;
            let tls = acceptor
                .accept(stream)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let agreed = (
                tls.ssl().version_str().to_owned(),
                tls.ssl()
                    .current_cipher()
                    .map_or_else(String::new, |c| c.name().to_owned()),
            );
            let shared = Arc::new(Mutex::new(tls));
            let mut session = Session::new(
                BufReader::new(SharedTls(shared.clone())),
                SharedTls(shared),
                Some(agreed),
            );
            session.dialogue(false, received).map(|_| ())
        }
    }
}

/// Reads until the client hangs up, so that it sees what was sent rather than a reset.
fn linger(mut reader: impl Read) -> io::Result<()> {
    let mut sink = [0u8; 512];
    while reader.read(&mut sink)? > 0 {}
    Ok(())
}

/// Lets the TLS stream serve as both the buffered reader and the writer.
struct SharedTls(Arc<Mutex<openssl::ssl::SslStream<TcpStream>>>);

impl Read for SharedTls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .read(buf)
    }
}

impl Write for SharedTls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .flush()
    }
}

enum Next {
    Done,
    StartTls,
}

struct Session<R, W> {
    reader: BufReader<R>,
    writer: W,
    tls: Option<(String, String)>,
    starttls_454: bool,
}

impl<R: Read, W: Write> Session<R, W> {
    fn new(reader: BufReader<R>, writer: W, tls: Option<(String, String)>) -> Self {
        Self {
            reader,
            writer,
            tls,
            starttls_454: false,
        }
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.writer.flush()
    }

    fn line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end().to_owned()))
    }

    fn dialogue(
        &mut self,
        offer_starttls: bool,
        received: &Mutex<Vec<Received>>,
    ) -> io::Result<Next> {
        let mut from = String::new();
        let mut to = Vec::new();
        while let Some(line) = self.line()? {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                self.send("250-peer.test")?;
                if offer_starttls {
                    self.send("250-STARTTLS")?;
                }
                self.send("250 8BITMIME")?;
            } else if upper == "STARTTLS" && offer_starttls {
                if self.starttls_454 {
                    self.send("454 4.7.0 TLS not available due to local problem")?;
                } else {
                    self.send("220 2.0.0 Ready to start TLS")?;
                    return Ok(Next::StartTls);
                }
            } else if upper.starts_with("MAIL FROM:") {
                from = angle(&line[10..]);
                to.clear();
                self.send("250 2.1.0 Ok")?;
            } else if upper.starts_with("RCPT TO:") {
                to.push(angle(&line[8..]));
                self.send("250 2.1.5 Ok")?;
            } else if upper == "DATA" {
                self.send("354 End data with <CR><LF>.<CR><LF>")?;
                let mut data = Vec::new();
                loop {
                    let mut raw = Vec::new();
                    if self.reader.read_until(b'\n', &mut raw)? == 0 {
                        return Ok(Next::Done);
                    }
                    if raw == b".\r\n" || raw == b".\n" {
                        break;
                    }
                    let unstuffed = if raw.first() == Some(&b'.') {
                        &raw[1..]
                    } else {
                        &raw[..]
                    };
                    data.extend_from_slice(unstuffed);
                }
                if let Ok(mut messages) = received.lock() {
                    messages.push(Received {
                        tls: self.tls.clone(),
                        from: std::mem::take(&mut from),
                        to: std::mem::take(&mut to),
                        data,
                    });
                }
                self.send("250 2.0.0 Ok: queued")?;
            } else if upper == "QUIT" {
                self.send("221 2.0.0 Bye")?;
                return Ok(Next::Done);
            } else {
                self.send("502 5.5.2 Command not recognised")?;
            }
        }
        Ok(Next::Done)
    }
}

fn angle(path: &str) -> String {
    path.trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A TCP proxy in front of a peer that can start stripping STARTTLS from EHLO replies at any
/// moment: the on-path attacker of the demo (the test kit's [`AttackProxy`] with one attack).
pub struct StrippingProxy {
    /// Where it listens.
    pub address: SocketAddr,
    proxy: AttackProxy,
}

impl StrippingProxy {
    /// Starts a proxy to `upstream` (on 127.0.0.1), passing everything through until
    /// [`strip`](Self::strip).
    ///
    /// # Errors
    ///
    /// When `upstream` is not on 127.0.0.1, or the socket cannot be bound.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let proxy = AttackProxy::start(upstream, Attack::PassThrough)?;
        Ok(Self {
            address: proxy.address,
            proxy,
        })
    }

    /// From now on, new connections get EHLO replies without STARTTLS.
    pub fn strip(&self) {
        self.proxy
            .set_attack(Attack::StripStarttls(Strip::RemoveFromEhlo));
    }
}
