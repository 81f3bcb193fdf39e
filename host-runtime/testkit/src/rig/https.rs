//! An HTTPS server for MTA-STS policies (RFC 8461 section 3.3) signed by a test CA: a test kit
//! for the fetch's and the resolver's tests and benchmarks, not a web server.
//!
//! It listens on a free loopback port, picks the policy domain from the SNI name
//! (`mta-sts.<domain>`), and answers each domain's configured [`Response`], which the test can
//! change while it runs. Its CA's certificate is written to [`PolicyServer::ca_file`], the file
//! the fetch is told to trust alone. A domain can be served with a certificate for another name
//! or an expired one ([`Certificate`]), for the `sts-webpki-invalid` cases.
//!
//! The HTTP/1.1 is written by hand on purpose: it reads one request head and answers with
//! `Connection: close`, which is all a policy fetch needs, and it can say what a real server
//! would refuse to (no `Content-Length`, a body of any size, any status and headers).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{NameType, SniError, SslAcceptor, SslContext, SslMethod, SslRef};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509NameBuilder};

use tlsfallback_mta::clock::{Clock, SystemClock};

/// One answer to `GET /.well-known/mta-sts.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// Whether to send `Content-Length` (without it the body ends when the connection closes).
    pub content_length: bool,
}

impl Response {
    /// `200`, `text/plain`, this policy.
    #[must_use]
    pub fn policy(text: &str) -> Self {
        Self {
            status: 200,
            content_type: Some("text/plain".to_owned()),
            body: text.as_bytes().to_vec(),
            location: None,
            content_length: true,
        }
    }

    /// A `302` to `location`.
    #[must_use]
    pub fn redirect(location: &str) -> Self {
        Self {
            status: 302,
            content_type: Some("text/plain".to_owned()),
            body: Vec::new(),
            location: Some(location.to_owned()),
            content_length: true,
        }
    }

    /// A bare status with an HTML body.
    #[must_use]
    pub fn status(status: u16) -> Self {
        Self {
            status,
            content_type: Some("text/html".to_owned()),
            body: b"<html><body>no</body></html>".to_vec(),
            location: None,
            content_length: true,
        }
    }
}

/// Which certificate a domain is served with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Certificate {
    /// For `mta-sts.<domain>`, current, signed by the test CA.
    Valid,
    /// For `mta-sts.other.invalid`, current, signed by the test CA.
    OtherName,
    /// For `mta-sts.<domain>`, signed by the test CA, expired yesterday.
    Expired,
}

struct Site {
    response: Response,
    certificate: Certificate,
    requests: usize,
}

struct Ca {
    certificate: X509,
    key: PKey<Private>,
}

struct State {
    ca: Ca,
    sites: HashMap<String, Site>,
    contexts: HashMap<(String, Certificate), SslContext>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running server; stops when dropped.
pub struct PolicyServer {
    address: SocketAddr,
    ca_file: PathBuf,
    state: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PolicyServer {
    /// Starts a server on a free loopback port, with a fresh CA.
    ///
    /// # Errors
    ///
    /// When the port, the certificates or the CA file cannot be made.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Starts a server on `address`, with a fresh CA: an address of its own such as
    /// `127.0.0.7:443`, for a client that always fetches from port 443 of the address DNS gives
    /// (postfix-mta-sts-resolver does).
    ///
    /// # Errors
    ///
    /// When `address` cannot be bound, or the certificates or the CA file cannot be made.
    pub fn start_on(address: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(address)
            .map_err(|e| anyhow::anyhow!("binding the MTA-STS policy server to {address}: {e}"))?;
        let address = listener.local_addr()?;
        let ca = make_ca()?;
        // The address in the name: servers on different addresses may share a port.
        let ca_file = std::env::temp_dir().join(format!(
            "tlsfallback-mta-sts-ca-{}-{}-{}.pem",
            std::process::id(),
            address.ip(),
            address.port()
        ));
        std::fs::write(&ca_file, ca.certificate.to_pem()?)?;
        let state: Shared = Arc::new(Mutex::new(State {
            ca,
            sites: HashMap::new(),
            contexts: HashMap::new(),
        }));
        let acceptor = make_acceptor(&state)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
                    std::thread::spawn(move || serve(&acceptor, &state, stream));
                }
            })
        };
        Ok(Self {
            address,
            ca_file,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// The port (on 127.0.0.1, or on the address given to [`start_on`](Self::start_on)).
    #[must_use]
    pub const fn port(&self) -> u16 {
        self.address.port()
    }

    /// The address it listens on.
    #[must_use]
    pub const fn address(&self) -> SocketAddr {
        self.address
    }

    /// The PEM file holding the test CA's certificate.
    #[must_use]
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Sets what `domain` answers (its certificate unchanged; [`Certificate::Valid`] at first).
    pub fn set(&self, domain: &str, response: Response) {
        let mut state = lock(&self.state);
        match state.sites.get_mut(domain) {
            Some(site) => site.response = response,
            None => {
                state.sites.insert(
                    domain.to_owned(),
                    Site {
                        response,
                        certificate: Certificate::Valid,
                        requests: 0,
                    },
                );
            }
        }
    }

    /// Sets which certificate `domain` is served with (a domain not [`set`](Self::set) yet
    /// answers 404 until it is).
    pub fn set_certificate(&self, domain: &str, certificate: Certificate) {
        lock(&self.state)
            .sites
            .entry(domain.to_owned())
            .or_insert_with(|| Site {
                response: Response::status(404),
                certificate,
                requests: 0,
            })
            .certificate = certificate;
    }

    /// How many requests for `domain` got an answer.
    #[must_use]
    pub fn requests(&self, domain: &str) -> usize {
        lock(&self.state)
            .sites
            .get(domain)
            .map_or(0, |site| site.requests)
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

fn serve(acceptor: &SslAcceptor, state: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut tls) = acceptor.accept(stream) else {
        return;
    };
    let domain = tls
        .ssl()
        .servername(NameType::HOST_NAME)
        .and_then(|name| name.strip_prefix("mta-sts."))
        .map(str::to_owned);
    // One request head, up to a sane size.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let wanted = head.starts_with(
        format!("GET {} ", tlsfallback_mta::mta_sts::fetch::WELL_KNOWN_PATH).as_bytes(),
    );
    let response = {
        let mut state = lock(state);
        match domain.as_deref().and_then(|d| state.sites.get_mut(d)) {
            Some(site) if wanted => {
                site.requests += 1;
                site.response.clone()
            }
            _ => Response::status(404),
        }
    };
    let mut out = format!("HTTP/1.1 {} Test\r\nConnection: close\r\n", response.status);
    if let Some(content_type) = &response.content_type {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if let Some(location) = &response.location {
        out.push_str(&format!("Location: {location}\r\n"));
    }
    if response.content_length {
        out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    out.push_str("\r\n");
    // One write, so head and body do not wait on each other's ACK (Nagle and delayed ACKs
    // would add tens of milliseconds to each fetch). The client may hang up in the middle of an
    // over-long body: that is the point.
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&response.body);
    let _ = tls.write_all(&bytes);
    let _ = tls.shutdown();
    let _ = tls.get_ref().shutdown(Shutdown::Both);
}

fn make_acceptor(state: &Shared) -> anyhow::Result<SslAcceptor> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    // The certificate for a name nobody configured (the callback leaves it in place).
    let fallback = {
        let state = lock(state);
        leaf(&state.ca, "unknown.invalid", Certificate::Valid)?
    };
    builder.set_certificate(&fallback.0)?;
    builder.set_private_key(&fallback.1)?;
    let state = Arc::clone(state);
    builder.set_servername_callback(move |ssl: &mut SslRef, _alert| {
        let Some(domain) = ssl
            .servername(NameType::HOST_NAME)
            .and_then(|name| name.strip_prefix("mta-sts."))
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let context = context_for(&state, &domain).map_err(|_| SniError::ALERT_FATAL)?;
        if let Some(context) = context {
            ssl.set_ssl_context(&context)
                .map_err(|_| SniError::ALERT_FATAL)?;
        }
        Ok(())
    });
    Ok(builder.build())
}

/// The TLS context for a configured domain (made once per certificate kind).
fn context_for(state: &Shared, domain: &str) -> anyhow::Result<Option<SslContext>> {
    let mut state = lock(state);
    let Some(certificate) = state.sites.get(domain).map(|site| site.certificate) else {
        return Ok(None);
    };
    let key = (domain.to_owned(), certificate);
    if let Some(context) = state.contexts.get(&key) {
        return Ok(Some(context.clone()));
    }
    let (cert, private) = leaf(&state.ca, &format!("mta-sts.{domain}"), certificate)?;
    let mut builder = SslContext::builder(SslMethod::tls_server())?;
    builder.set_certificate(&cert)?;
    builder.set_private_key(&private)?;
    let context = builder.build();
    state.contexts.insert(key, context.clone());
    Ok(Some(context))
}

fn ec_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

// Certificates are valid (or expired) relative to the real time of day, which OpenSSL checks.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> i64 {
    i64::try_from(SystemClock.now()).unwrap_or(i64::MAX)
}

fn make_ca() -> Result<Ca, openssl::error::ErrorStack> {
    let key = ec_key()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "tlsfallback test MTA-STS CA")?;
    let name = name.build();
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let serial = BigNum::from_u32(1)?.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    let not_before = Asn1Time::from_unix(unix_now() - 86_400)?;
    let not_after = Asn1Time::from_unix(unix_now() + 7 * 86_400)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok(Ca {
        certificate: builder.build(),
        key,
    })
}

fn leaf(
    ca: &Ca,
    host: &str,
    kind: Certificate,
) -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
    let name_in_certificate = match kind {
        Certificate::OtherName => "mta-sts.other.invalid",
        Certificate::Valid | Certificate::Expired => host,
    };
    let (not_before, not_after) = match kind {
        Certificate::Expired => (unix_now() - 10 * 86_400, unix_now() - 86_400),
        Certificate::Valid | Certificate::OtherName => (unix_now() - 3600, unix_now() + 86_400),
    };
    let key = ec_key()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", name_in_certificate)?;
    let name = name.build();
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let serial = getrandom::u32().unwrap_or(2) | 1;
    let serial = BigNum::from_u32(serial)?.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(ca.certificate.subject_name())?;
    builder.set_pubkey(&key)?;
    let (not_before, not_after) = (
        Asn1Time::from_unix(not_before)?,
        Asn1Time::from_unix(not_after)?,
    );
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let context = builder.x509v3_context(Some(&ca.certificate), None);
    let san = SubjectAlternativeName::new()
        .dns(name_in_certificate)
        .build(&context)?;
    let aki = AuthorityKeyIdentifier::new().keyid(false).build(&context)?;
    builder.append_extension(san)?;
    builder.append_extension(aki)?;
    builder.sign(&ca.key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}
