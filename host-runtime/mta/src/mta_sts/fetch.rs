//! The policy fetch (RFC 8461 section 3.3): `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! over WebPKI-validated TLS, to addresses the host resolved itself, with no redirect, no proxy,
//! a timeout and a size cap; then the strict parse.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, redirect};

use super::policy::{MAX_POLICY_BYTES, Policy, PolicyError, is_host_name, quoted};
use crate::tls::SSL_R_CERTIFICATE_VERIFY_FAILED;

/// The path every policy is at.
pub const WELL_KNOWN_PATH: &str = "/.well-known/mta-sts.txt";

/// How a fetch is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSettings {
    /// The HTTPS port (443; tests use a free one).
    pub port: u16,
    /// The whole fetch's deadline: connect, handshake, headers and body.
    pub timeout: Duration,
    /// When set, only this PEM file's CAs are trusted (the tests' CA, or an operator's private
    /// one); otherwise the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            port: 443,
            // RFC 8461 section 3.3 asks for a timeout without a number; a minute leaves slow
            // servers room and still bounds a delivery attempt.
            timeout: Duration::from_secs(60),
            ca_file: None,
        }
    }
}

/// A policy as fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedPolicy {
    /// The parsed policy.
    pub policy: Policy,
}

/// Why a fetch gave no policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The certificate did not validate (untrusted, expired, or for another name).
    #[error("the certificate of mta-sts.{domain} does not validate: {detail}")]
    Certificate {
        /// The policy domain.
        domain: String,
        /// OpenSSL's reason, with the verify result.
        detail: String,
    },
    /// The body was fetched but is not a valid policy.
    #[error("the policy of {domain} is invalid: {error}")]
    Invalid {
        /// The policy domain.
        domain: String,
        /// Why.
        error: PolicyError,
    },
    /// The domain is not a host name (an IP literal, or URL syntax such as `user@host` that would
    /// send the fetch elsewhere): nothing is fetched.
    #[error("{domain} is not a host name: no policy is fetched for it")]
    BadDomain {
        /// The domain, quoted and shortened.
        domain: String,
    },
    /// `mta-sts.<domain>` has no address (or its lookup failed).
    #[error("mta-sts.{domain} has no address: {detail}")]
    NoAddress {
        /// The policy domain.
        domain: String,
        /// The lookup's answer.
        detail: String,
    },
    /// No connection, a reset, a timeout or an HTTP protocol error.
    #[error("fetching the policy of {domain} failed: {detail}")]
    Transport {
        /// The policy domain.
        domain: String,
        /// What failed.
        detail: String,
    },
    /// A 3xx answer: section 3.3 forbids following redirects.
    #[error("the policy URL of {domain} redirects ({status}) to {location}, which is not followed")]
    Redirect {
        /// The policy domain.
        domain: String,
        /// The status.
        status: u16,
        /// The `Location` header, quoted and shortened (or `none`).
        location: String,
    },
    /// A status other than 200.
    #[error("the policy URL of {domain} answered HTTP {status}")]
    Status {
        /// The policy domain.
        domain: String,
        /// The status.
        status: u16,
    },
    /// A `Content-Type` other than `text/plain`.
    #[error("the policy of {domain} has Content-Type {content_type}, not text/plain")]
    ContentType {
        /// The policy domain.
        domain: String,
        /// The header, quoted and shortened (or `none`).
        content_type: String,
    },
    /// The body is over [`MAX_POLICY_BYTES`] (reading stopped there).
    #[error("the policy of {domain} is over {MAX_POLICY_BYTES} bytes")]
    TooLarge {
        /// The policy domain.
        domain: String,
    },
    /// The configured CA file cannot be read or holds no certificate: a local problem.
    #[error("the MTA-STS CA file {path}: {detail}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

impl FetchError {
    /// The TLS-RPT result type (RFC 8460 section 4.3) this failure is reported as.
    #[must_use]
    pub const fn result_type(&self) -> &'static str {
        match self {
            Self::Certificate { .. } => "sts-webpki-invalid",
            Self::Invalid { .. } => "sts-policy-invalid",
            _ => "sts-policy-fetch-error",
        }
    }

    /// The failure in words (TLS-RPT's `additional-information`, the log's reason).
    #[must_use]
    pub fn detail(&self) -> String {
        self.to_string()
    }
}

/// Fetches and parses the policy of `domain` from `addresses` (what the host resolved
/// `mta-sts.<domain>` to), with a client made for this one fetch.
///
/// # Errors
///
/// See [`FetchError`].
pub fn fetch_policy(
    domain: &str,
    addresses: &[IpAddr],
    settings: &FetchSettings,
) -> Result<FetchedPolicy, FetchError> {
    Fetcher::new(settings.clone()).fetch(domain, addresses)
}

/// The addresses each host name may be connected to, set by [`Fetcher::fetch`] for its fetch:
/// the HTTPS client's only "DNS", so nothing resolves a policy host behind the host's back.
#[derive(Clone, Debug, Default)]
struct Pinned(Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>);

impl Pinned {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SocketAddr>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Resolve for Pinned {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self.lock().get(name.as_str()).cloned();
        Box::pin(async move {
            match found {
                Some(sockets) => Ok(Box::new(sockets.into_iter()) as Addrs),
                None => Err(format!("{} was not resolved by the host", name.as_str()).into()),
            }
        })
    }
}

/// Fetches policies with one HTTPS client, made at the first fetch and kept: making one loads
/// the CA roots through OpenSSL, which costs tens of milliseconds, more than the fetch itself
/// over a fast network. Connections go only to the addresses each fetch was given.
#[derive(Debug)]
pub struct Fetcher {
    settings: FetchSettings,
    pinned: Pinned,
    client: Mutex<Option<Client>>,
}

impl Fetcher {
    /// A fetcher with `settings` (the client is made at the first fetch).
    #[must_use]
    pub fn new(settings: FetchSettings) -> Self {
        Self {
            settings,
            pinned: Pinned::default(),
            client: Mutex::new(None),
        }
    }

    /// Its settings.
    #[must_use]
    pub const fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    /// The client, made now if there is none yet (a failure is not kept: the next fetch tries
    /// again, after the operator fixed the CA file).
    fn client(&self, domain: &str) -> Result<Client, FetchError> {
        let mut client = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let settings = &self.settings;
        let mut builder = Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .http1_only()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(Arc::new(self.pinned.clone()))
            // No connection kept between fetches: each goes to the addresses resolved for it,
            // never to one a pooled connection was made to before.
            .pool_max_idle_per_host(0)
            .referer(false);
        if let Some(path) = &settings.ca_file {
            builder = builder.tls_certs_only(load_roots(path)?);
        }
        let made = builder.build().map_err(|e| classify(domain, &e))?;
        *client = Some(made.clone());
        Ok(made)
    }

    /// Fetches and parses the policy of `domain` from `addresses` (what the host resolved
    /// `mta-sts.<domain>` to).
    ///
    /// # Errors
    ///
    /// See [`FetchError`].
    pub fn fetch(&self, domain: &str, addresses: &[IpAddr]) -> Result<FetchedPolicy, FetchError> {
        // The domain becomes part of a URL: `user@attacker.example` or `example.net/x` would
        // move the fetch to another host, resolved by nobody's DNS but the system's.
        if !is_host_name(domain) {
            return Err(FetchError::BadDomain {
                domain: quoted(domain),
            });
        }
        let host = format!("mta-sts.{domain}");
        if addresses.is_empty() {
            return Err(FetchError::NoAddress {
                domain: domain.to_owned(),
                detail: "no A or AAAA record".to_owned(),
            });
        }
        let sockets: Vec<SocketAddr> = addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, self.settings.port))
            .collect();
        let client = self.client(domain)?;
        // The only addresses: nothing else resolves the name behind the host's back.
        self.pinned.lock().insert(host.clone(), sockets);
        let fetched = fetch_with(&client, domain, &host);
        self.pinned.lock().remove(&host);
        fetched
    }
}

fn fetch_with(client: &Client, domain: &str, host: &str) -> Result<FetchedPolicy, FetchError> {
    let transport = |error: &reqwest::Error| classify(domain, error);
    let url = format!("https://{host}{WELL_KNOWN_PATH}");
    let response = client.get(&url).send().map_err(|e| transport(&e))?;

    let status = response.status();
    if status.is_redirection() {
        let location = response.headers().get(LOCATION).map_or_else(
            || "none".to_owned(),
            |v| quoted(&String::from_utf8_lossy(v.as_bytes())),
        );
        return Err(FetchError::Redirect {
            domain: domain.to_owned(),
            status: status.as_u16(),
            location,
        });
    }
    if status != StatusCode::OK {
        return Err(FetchError::Status {
            domain: domain.to_owned(),
            status: status.as_u16(),
        });
    }
    let content_type = response.headers().get(CONTENT_TYPE);
    if !content_type.is_some_and(|v| is_text_plain(v.as_bytes())) {
        return Err(FetchError::ContentType {
            domain: domain.to_owned(),
            content_type: content_type.map_or_else(
                || "none".to_owned(),
                |v| quoted(&String::from_utf8_lossy(v.as_bytes())),
            ),
        });
    }
    let too_large = || FetchError::TooLarge {
        domain: domain.to_owned(),
    };
    // A declared length over the cap fails before reading anything.
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_POLICY_BYTES as u64) {
        return Err(too_large());
    }
    // One byte past the cap tells an over-long body from one exactly at it, without buffering
    // more of it.
    let mut body = Vec::new();
    response
        .take(MAX_POLICY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| FetchError::Transport {
            domain: domain.to_owned(),
            detail: format!("reading the body: {}", chain(&e)),
        })?;
    if body.len() > MAX_POLICY_BYTES {
        return Err(too_large());
    }
    let policy = Policy::parse(&body).map_err(|error| FetchError::Invalid {
        domain: domain.to_owned(),
        error,
    })?;
    Ok(FetchedPolicy { policy })
}

fn load_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, FetchError> {
    let ca_error = |detail: String| FetchError::CaFile {
        path: path.to_owned(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(chain(&e)))?;
    if roots.is_empty() {
        return Err(ca_error("no certificate in it".to_owned()));
    }
    Ok(roots)
}

/// `text/plain`, with or without parameters (`; charset=utf-8`), in any case.
fn is_text_plain(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let media_type = value.split(';').next().unwrap_or_default();
    media_type.trim().eq_ignore_ascii_case("text/plain")
}

/// A reqwest error as a fetch error: a certificate that OpenSSL refused (its reason
/// `certificate verify failed` somewhere in the error's sources) is `sts-webpki-invalid`;
/// everything else is a transport failure.
fn classify(domain: &str, error: &reqwest::Error) -> FetchError {
    let detail = chain(error);
    if is_certificate_failure(error) {
        FetchError::Certificate {
            domain: domain.to_owned(),
            detail,
        }
    } else {
        FetchError::Transport {
            domain: domain.to_owned(),
            detail,
        }
    }
}

fn is_certificate_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        // native-tls's error reports OpenSSL's error stack as its source.
        if let Some(stack) = error.downcast_ref::<openssl::error::ErrorStack>()
            && stack
                .errors()
                .iter()
                .any(|e| e.reason_code() == SSL_R_CERTIFICATE_VERIFY_FAILED)
        {
            return true;
        }
        if let Some(ssl) = error.downcast_ref::<openssl::ssl::Error>()
            && ssl.ssl_error().is_some_and(|stack| {
                stack
                    .errors()
                    .iter()
                    .any(|e| e.reason_code() == SSL_R_CERTIFICATE_VERIFY_FAILED)
            })
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// An error and its sources, each once, joined by `: ` (reqwest's own Display leaves the
/// reason out).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(error) = source {
        let text = error.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_read_by_media_type() {
        assert!(is_text_plain(b"text/plain"));
        assert!(is_text_plain(b"Text/Plain; charset=utf-8"));
        assert!(!is_text_plain(b"text/html"));
        assert!(!is_text_plain(b"text/plainx"));
        assert!(!is_text_plain(b"\xfftext/plain"));
    }

    #[test]
    fn result_types_follow_rfc_8460() {
        let domain = "example.net".to_owned();
        assert_eq!(
            FetchError::Certificate {
                domain: domain.clone(),
                detail: String::new()
            }
            .result_type(),
            "sts-webpki-invalid"
        );
        assert_eq!(
            FetchError::Invalid {
                domain: domain.clone(),
                error: PolicyError::TooLarge
            }
            .result_type(),
            "sts-policy-invalid"
        );
        assert_eq!(
            FetchError::Status {
                domain,
                status: 404
            }
            .result_type(),
            "sts-policy-fetch-error"
        );
    }
}
