//! The host's DNS: A/AAAA, MX, TLSA and TXT with their DNSSEC status, on hickory-resolver.
//!
//! The promise: an answer is [`Security::Secure`] only when it was validated (by hickory against
//! the trust anchors, or, in [`DnssecMode::TrustAd`], by the configured validating resolver that
//! set the AD bit); a bogus or failed lookup is an error, never an insecure answer, so a caller
//! that needs DNSSEC (DANE, RFC 7672) can tell "no protection" from "protection under attack".
//!
//! Synchronous on the outside (the delivery path is synchronous) over one current-thread tokio
//! runtime per resolver. Answers are cached in front of hickory, bounded in entries, for the
//! shortest TTL of what was used (negative answers for the SOA's negative TTL); failures are not
//! cached, so a transient SERVFAIL costs one more query, not minutes of deferrals.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::Resolver as HickoryResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, Edns, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use crate::clock::Deadline;
use crate::tls::TlsaRecord;

/// How DNSSEC answers are judged (a setting of the policy file, so it is defined beside it).
pub use tlsfallback_engine::config::DnssecMode;

/// Where and how to resolve.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// The name server (`ADDR:PORT`); `None`: the first `nameserver` of /etc/resolv.conf.
    pub server: Option<SocketAddr>,
    /// How DNSSEC answers are judged.
    pub dnssec: DnssecMode,
    /// The trust anchors for [`DnssecMode::Validate`]: a file of DNSKEY records in zone-file
    /// format; `None`: the IANA root keys built into hickory (KSK-2017 and KSK-2024).
    pub trust_anchor: Option<PathBuf>,
    /// How long one query waits for an answer (hickory retries within it).
    pub timeout: Duration,
    /// How many answers the cache keeps.
    pub cache_entries: usize,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            server: None,
            dnssec: DnssecMode::default(),
            trust_anchor: None,
            timeout: Duration::from_secs(10),
            cache_entries: 10_000,
        }
    }
}

/// Whether an answer was validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Security {
    /// Validated by DNSSEC (the whole CNAME chain included).
    Secure,
    /// Not protected by DNSSEC (an unsigned zone below a proven-insecure delegation, or DNSSEC
    /// off).
    Insecure,
}

impl Security {
    /// The kebab-case name of the log and the JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Insecure => "insecure",
        }
    }

    /// Secure only when both are.
    #[must_use]
    pub const fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::Secure, Self::Secure) => Self::Secure,
            _ => Self::Insecure,
        }
    }
}

/// What one lookup found: the records of the type asked for (empty: the name exists without
/// them, or does not exist, see `no_such_name`), and how far to trust that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer<T> {
    /// The records, in the server's order.
    pub records: Vec<T>,
    /// Whether the answer (or the proof of absence) was validated.
    pub security: Security,
    /// NXDOMAIN: the name does not exist at all.
    pub no_such_name: bool,
    /// The name the records belong to after following CNAMEs (the name asked for without any).
    pub canonical_name: String,
    /// How long the answer may be used, in seconds.
    pub ttl: u32,
}

/// One MX record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxRecord {
    /// The preference (lower first).
    pub preference: u16,
    /// The exchange, lower case without the trailing dot (`""`: the root, a null MX).
    pub exchange: String,
}

/// A lookup that gave no usable answer. For DANE each is `lookup-failed` for the MX concerned
/// (RFC 7672 section 2.1.1): defer it, try the next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name is not a domain name we can ask for.
    #[error("{name:?} is not a domain name: {detail}")]
    BadName {
        /// The name as given.
        name: String,
        /// Why.
        detail: String,
    },
    /// DNSSEC validation failed: signatures that do not verify, expired, or a chain of trust
    /// that does not hold (a DS for a key that signs nothing). An attack or a broken zone.
    #[error("DNSSEC validation of {name} {record_type} failed (bogus): {detail}")]
    Bogus {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        record_type: String,
        /// What the validator said.
        detail: String,
    },
    /// The server answered with an error code (SERVFAIL, REFUSED, ...); behind a validating
    /// resolver SERVFAIL is also how a bogus answer looks.
    #[error("the name server answered {code} for {name} {record_type}")]
    ServerFailure {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        record_type: String,
        /// The response code.
        code: String,
    },
    /// No answer in time.
    #[error("no answer for {name} {record_type} in time")]
    Timeout {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        record_type: String,
    },
    /// The network, the server's answer or the resolver failed otherwise.
    #[error("looking up {name} {record_type} failed: {detail}")]
    Failed {
        /// The name asked for.
        name: String,
        /// The record type asked for.
        record_type: String,
        /// What happened.
        detail: String,
    },
    /// The resolver could not be set up (an unreadable trust anchor file, no name server).
    #[error("the DNS resolver cannot be set up: {0}")]
    Setup(String),
}

/// How often the cache answered (for `tlsfallback resolve` and the benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the name server.
    pub misses: u64,
    /// Answers in the cache now.
    pub entries: usize,
}

/// A cached answer: any record type, kept as hickory's records.
#[derive(Clone)]
struct Cached {
    answer: Answer<Record>,
    /// The TTL, counted down on the monotonic clock.
    expires: Deadline,
}

enum Backend {
    /// hickory's resolver, validating (`Validate`) or not (`Off`).
    Resolver(Box<HickoryResolver<TokioRuntimeProvider>>),
    /// Queries with the AD bit set to a validating resolver, whose AD bit is trusted. hickory's
    /// name server pool turns an empty answer into an error that drops the header, AD bit
    /// included, so a negative answer could not be told secure from insecure: these queries go
    /// through hickory-net's plain client instead, over UDP and again over TCP when truncated.
    TrustAd(SocketAddr),
}

/// The host's resolver. Cheap to share by reference; queries are answered one at a time.
pub struct Resolver {
    runtime: tokio::runtime::Runtime,
    backend: Backend,
    settings: DnsSettings,
    cache: Mutex<lru::LruCache<(String, RecordType), Cached>>,
    stats: Mutex<CacheStats>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The first `nameserver` of /etc/resolv.conf, else 127.0.0.1:53.
#[must_use]
pub fn system_nameserver() -> SocketAddr {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|conf| {
            conf.lines().find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some("nameserver"))
                    .then(|| words.next()?.parse::<IpAddr>().ok())
                    .flatten()
            })
        })
        .map_or_else(
            || SocketAddr::from(([127, 0, 0, 1], 53)),
            |ip| SocketAddr::new(ip, 53),
        )
}

fn fqdn(name: &str) -> Result<Name, DnsError> {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(DnsError::BadName {
            name: name.to_owned(),
            detail: "empty".to_owned(),
        });
    }
    if trimmed.parse::<IpAddr>().is_ok() {
        return Err(DnsError::BadName {
            name: name.to_owned(),
            detail: "an IP address, not a host name".to_owned(),
        });
    }
    Name::from_ascii(format!("{trimmed}.")).map_err(|e| DnsError::BadName {
        name: name.to_owned(),
        detail: e.to_string(),
    })
}

/// Lower case, no trailing dot: the one spelling of a name in answers and logs.
fn spelled(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl Resolver {
    /// Sets up the resolver.
    ///
    /// # Errors
    ///
    /// [`DnsError::Setup`]: the runtime, or an unreadable trust anchor file.
    pub fn new(settings: DnsSettings) -> Result<Self, DnsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| DnsError::Setup(format!("no async runtime: {e}")))?;
        let server = settings.server.unwrap_or_else(system_nameserver);
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let mut options = ResolverOpts::default();
        options.timeout = settings.timeout;
        options.attempts = 1;
        options.use_hosts_file = ResolveHosts::Never;
        options.preserve_intermediates = true;
        options.try_tcp_on_error = true;
        options.edns0 = true;
        // Our own cache answers repeated lookups; hickory's keeps the DNSKEY and DS sets that
        // validation fetches along the way.
        options.cache_size = 1024;
        let backend = match settings.dnssec {
            DnssecMode::Validate | DnssecMode::Off => {
                options.validate = settings.dnssec == DnssecMode::Validate;
                let builder = HickoryResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
                .with_options(options);
                let builder = if settings.dnssec == DnssecMode::Validate {
                    // `with_trust_anchor`, not `ResolverOpts::trust_anchor`: the builder ignores
                    // the latter's path and falls back to the root keys.
                    let anchors = match &settings.trust_anchor {
                        Some(path) => load_trust_anchor(path)?,
                        None => TrustAnchors::default(),
                    };
                    builder.with_trust_anchor(Arc::new(anchors))
                } else {
                    builder
                };
                let resolver = {
                    let _guard = runtime.enter();
                    builder
                        .build()
                        .map_err(|e| DnsError::Setup(e.to_string()))?
                };
                Backend::Resolver(Box::new(resolver))
            }
            DnssecMode::TrustAd => Backend::TrustAd(server),
        };
        let entries = NonZeroUsize::new(settings.cache_entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            runtime,
            backend,
            settings,
            cache: Mutex::new(lru::LruCache::new(entries)),
            stats: Mutex::new(CacheStats::default()),
        })
    }

    /// The settings it was made with.
    #[must_use]
    pub const fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// How often the cache answered so far.
    #[must_use]
    pub fn cache_stats(&self) -> CacheStats {
        let mut stats = *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        stats.entries = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        stats
    }

    /// The MX records of `domain`, most preferred first (ties in the server's order).
    ///
    /// # Errors
    ///
    /// See [`DnsError`].
    pub fn mx(&self, domain: &str) -> Result<Answer<MxRecord>, DnsError> {
        let answer = self.lookup(domain, RecordType::MX)?;
        let mut records: Vec<MxRecord> = answer
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some(MxRecord {
                    preference: mx.preference,
                    exchange: spelled(&mx.exchange),
                }),
                _ => None,
            })
            .collect();
        records.sort_by_key(|mx| mx.preference);
        Ok(map_answer(answer, records))
    }

    /// The IPv4 and IPv6 addresses of `host` (A first, then AAAA). Secure only when both answers
    /// are; a failure of either fails the lookup (a half answer would hide an attack on the
    /// other half).
    ///
    /// # Errors
    ///
    /// See [`DnsError`].
    pub fn addresses(&self, host: &str) -> Result<Answer<IpAddr>, DnsError> {
        let v4 = self.lookup(host, RecordType::A)?;
        // AAAA at the end of the A lookup's CNAME chain, the chain's security carried over:
        // hickory 0.26 fails to validate a denial of existence behind a CNAME (a secure NODATA
        // for the target's AAAA comes back bogus), so the target is asked directly.
        let v6 = self.lookup(&v4.canonical_name, RecordType::AAAA)?;
        let mut records: Vec<IpAddr> = Vec::new();
        for record in v4.records.iter().chain(v6.records.iter()) {
            match &record.data {
                RData::A(a) => records.push(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => records.push(IpAddr::V6(aaaa.0)),
                _ => {}
            }
        }
        Ok(Answer {
            records,
            security: v4.security.and(v6.security),
            no_such_name: v4.no_such_name && v6.no_such_name,
            canonical_name: v4.canonical_name,
            ttl: v4.ttl.min(v6.ttl),
        })
    }

    /// The TLSA records at `_PORT._tcp.HOST` (RFC 6698 section 3), in the server's order.
    /// Records whose fields OpenSSL could never use stay in the answer: usability is the DANE
    /// layer's judgement.
    ///
    /// # Errors
    ///
    /// See [`DnsError`].
    pub fn tlsa(&self, host: &str, port: u16) -> Result<Answer<TlsaRecord>, DnsError> {
        let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
        let answer = self.lookup(&name, RecordType::TLSA)?;
        let records = answer
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::TLSA(tlsa) => Some(TlsaRecord {
                    usage: u8::from(tlsa.cert_usage),
                    selector: u8::from(tlsa.selector),
                    matching_type: u8::from(tlsa.matching),
                    data: tlsa.cert_data.clone(),
                }),
                _ => None,
            })
            .collect();
        Ok(map_answer(answer, records))
    }

    /// The TXT records at `name`, each record's character-strings joined (RFC 7208 section
    /// 3.3, RFC 8461 section 3.1).
    ///
    /// # Errors
    ///
    /// See [`DnsError`].
    pub fn txt(&self, name: &str) -> Result<Answer<Vec<u8>>, DnsError> {
        let answer = self.lookup(name, RecordType::TXT)?;
        let records = answer
            .records
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .flat_map(|s| s.iter().copied())
                        .collect(),
                ),
                _ => None,
            })
            .collect();
        Ok(map_answer(answer, records))
    }

    /// One lookup of one type, through the cache.
    fn lookup(&self, name: &str, record_type: RecordType) -> Result<Answer<Record>, DnsError> {
        let query_name = fqdn(name)?;
        let key = (spelled(&query_name), record_type);
        {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(hit) = cache.get(&key) {
                if !hit.expires.left().is_zero() {
                    let answer = hit.answer.clone();
                    drop(cache);
                    self.stats
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .hits += 1;
                    return Ok(answer);
                }
                cache.pop(&key);
            }
        }
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .misses += 1;
        let answer = match &self.backend {
            Backend::Resolver(resolver) => self.via_resolver(resolver, &query_name, record_type),
            Backend::TrustAd(server) => self.via_trusted_ad(*server, &query_name, record_type),
        }?;
        if answer.ttl > 0 {
            self.cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .put(
                    key,
                    Cached {
                        answer: answer.clone(),
                        expires: Deadline::after(Duration::from_secs(u64::from(answer.ttl))),
                    },
                );
        }
        Ok(answer)
    }

    fn via_resolver(
        &self,
        resolver: &HickoryResolver<TokioRuntimeProvider>,
        name: &Name,
        record_type: RecordType,
    ) -> Result<Answer<Record>, DnsError> {
        let validating = self.settings.dnssec == DnssecMode::Validate;
        let timeout = self.settings.timeout.saturating_mul(3);
        let result = self.runtime.block_on(async {
            tokio::time::timeout(timeout, resolver.lookup(name.clone(), record_type)).await
        });
        let failed = |detail: String| DnsError::Failed {
            name: spelled(name),
            record_type: record_type.to_string(),
            detail,
        };
        let Ok(result) = result else {
            return Err(DnsError::Timeout {
                name: spelled(name),
                record_type: record_type.to_string(),
            });
        };
        match result {
            Ok(lookup) => {
                let records = lookup.answers().to_vec();
                let security = if validating {
                    proven(name, record_type, records.iter().map(|r| r.proof))?
                } else {
                    Security::Insecure
                };
                Ok(chase(name, record_type, records, security))
            }
            Err(NetError::Dns(HickoryDnsError::NoRecordsFound(no_records))) => {
                let security = if validating {
                    let proofs = no_records
                        .soa
                        .as_ref()
                        .map(|soa| soa.proof)
                        .into_iter()
                        .chain(
                            no_records
                                .authorities
                                .iter()
                                .flat_map(|a| a.iter().map(|r| r.proof)),
                        );
                    proven(name, record_type, proofs)?
                } else {
                    Security::Insecure
                };
                match no_records.response_code {
                    ResponseCode::NoError | ResponseCode::NXDomain => Ok(Answer {
                        records: Vec::new(),
                        security,
                        no_such_name: no_records.response_code == ResponseCode::NXDomain,
                        canonical_name: spelled(name),
                        ttl: negative_ttl(
                            no_records.negative_ttl,
                            no_records
                                .soa
                                .as_ref()
                                .map(|soa| soa.ttl.min(soa.data.minimum)),
                        ),
                    }),
                    code => Err(DnsError::ServerFailure {
                        name: spelled(name),
                        record_type: record_type.to_string(),
                        code: code.to_string(),
                    }),
                }
            }
            Err(NetError::Dns(HickoryDnsError::Nsec {
                response, proof, ..
            })) => {
                if proof == Proof::Bogus || proof == Proof::Indeterminate {
                    return Err(bogus(
                        name,
                        record_type,
                        format!("the denial of existence is {proof}"),
                    ));
                }
                let no_such_name = response.response_code == ResponseCode::NXDomain;
                Ok(Answer {
                    records: Vec::new(),
                    security: if validating && proof == Proof::Secure {
                        Security::Secure
                    } else {
                        Security::Insecure
                    },
                    no_such_name,
                    canonical_name: spelled(name),
                    ttl: negative_ttl(response.negative_ttl(), None),
                })
            }
            Err(NetError::Dns(HickoryDnsError::DnssecBogus)) => Err(bogus(
                name,
                record_type,
                "DNSSEC validation failed".to_owned(),
            )),
            Err(NetError::Dns(HickoryDnsError::ResponseCode(code))) => {
                Err(DnsError::ServerFailure {
                    name: spelled(name),
                    record_type: record_type.to_string(),
                    code: code.to_string(),
                })
            }
            Err(NetError::Timeout) => Err(DnsError::Timeout {
                name: spelled(name),
                record_type: record_type.to_string(),
            }),
            Err(other) => Err(failed(other.to_string())),
        }
    }

    fn via_trusted_ad(
        &self,
        server: SocketAddr,
        name: &Name,
        record_type: RecordType,
    ) -> Result<Answer<Record>, DnsError> {
        let timeout = self.settings.timeout;
        let result = self.runtime.block_on(async {
            let udp = ask_with_ad(server, name, record_type, timeout, false).await;
            match udp {
                Ok(response) if response.metadata.truncation => {
                    ask_with_ad(server, name, record_type, timeout, true).await
                }
                other => other,
            }
        });
        let response = match result {
            Err(NetError::Timeout) => {
                return Err(DnsError::Timeout {
                    name: spelled(name),
                    record_type: record_type.to_string(),
                });
            }
            Err(e) => {
                return Err(DnsError::Failed {
                    name: spelled(name),
                    record_type: record_type.to_string(),
                    detail: e.to_string(),
                });
            }
            Ok(response) => response,
        };
        let code = response.metadata.response_code;
        if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Err(DnsError::ServerFailure {
                name: spelled(name),
                record_type: record_type.to_string(),
                code: code.to_string(),
            });
        }
        let security = if response.metadata.authentic_data {
            Security::Secure
        } else {
            Security::Insecure
        };
        let negative_ttl = response.negative_ttl();
        let records: Vec<Record> = response.answers.to_vec();
        let mut answer = chase(name, record_type, records, security);
        answer.no_such_name = code == ResponseCode::NXDomain && answer.records.is_empty();
        if answer.records.is_empty() {
            answer.ttl = negative_ttl.unwrap_or(0).min(3600);
        }
        Ok(answer)
    }
}

/// One query with the AD (and DO) bit to `server`, over UDP or TCP, answered as it came.
async fn ask_with_ad(
    server: SocketAddr,
    name: &Name,
    record_type: RecordType,
    timeout: Duration,
    over_tcp: bool,
) -> Result<hickory_resolver::proto::op::DnsResponse, NetError> {
    use futures_util::StreamExt as _;
    use hickory_resolver::net::DnsHandle as _;
    use hickory_resolver::net::client::Client;
    use hickory_resolver::net::tcp::TcpClientStream;
    use hickory_resolver::net::udp::UdpClientStream;
    let provider = TokioRuntimeProvider::default();
    let (client, background) = if over_tcp {
        let (stream, handle) = TcpClientStream::new(server, None, Some(timeout), provider);
        let (client, background) =
            Client::<TokioRuntimeProvider>::with_timeout(stream.await?, handle, timeout);
        (client, tokio::spawn(background).abort_handle())
    } else {
        let stream = UdpClientStream::builder(server, provider)
            .with_timeout(Some(timeout))
            .build();
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        (client, tokio::spawn(background).abort_handle())
    };
    let mut message = Message::new(random_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    // RFC 6840 section 5.7: AD in a query asks the resolver to report validation in the
    // answer's AD bit; DO as well, which is what Postfix sends (RES_USE_DNSSEC).
    message.metadata.authentic_data = true;
    message.add_query(Query::query(name.clone(), record_type));
    let mut edns = Edns::new();
    edns.set_max_payload(1232).set_dnssec_ok(true);
    message.set_edns(edns);
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    options.recursion_desired = true;
    let mut responses = client.send(DnsRequest::new(message, options));
    let answer = tokio::time::timeout(
        timeout.saturating_add(Duration::from_secs(1)),
        responses.next(),
    )
    .await
    .map_err(|_| NetError::Timeout)?
    .ok_or(NetError::Message("the name server sent no response"))?;
    background.abort();
    answer
}

/// How long a negative answer is kept (RFC 2308 section 5: the SOA's TTL or MINIMUM, whichever
/// is less), at most an hour. hickory's validating path can hand the answer over with a negative
/// TTL of 0 and the SOA apart; without either it is not cached at all.
fn negative_ttl(given: Option<u32>, from_soa: Option<u32>) -> u32 {
    given
        .filter(|ttl| *ttl > 0)
        .or(from_soa)
        .unwrap_or(0)
        .min(3600)
}

fn random_id() -> u16 {
    let bytes = getrandom::u32().unwrap_or(0).to_le_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]])
}

fn bogus(name: &Name, record_type: RecordType, detail: String) -> DnsError {
    DnsError::Bogus {
        name: spelled(name),
        record_type: record_type.to_string(),
        detail,
    }
}

/// Secure when every proof is; bogus or indeterminate anywhere is an error (an indeterminate
/// proof from a validating resolver means the chain could not be built: treating it as insecure
/// would let an attacker who blocks DS lookups switch DANE off).
fn proven(
    name: &Name,
    record_type: RecordType,
    proofs: impl Iterator<Item = Proof>,
) -> Result<Security, DnsError> {
    let mut security = Security::Secure;
    let mut any = false;
    for proof in proofs {
        any = true;
        match proof {
            Proof::Secure => {}
            Proof::Insecure => security = Security::Insecure,
            Proof::Bogus => return Err(bogus(name, record_type, "a record is bogus".to_owned())),
            Proof::Indeterminate => {
                return Err(bogus(
                    name,
                    record_type,
                    "the validator could not decide (indeterminate)".to_owned(),
                ));
            }
        }
    }
    Ok(if any { security } else { Security::Insecure })
}

/// Follows the CNAME chain from `name` through `records` and keeps the records of the type asked
/// for at its end; the TTL is the shortest of the chain and the records kept.
fn chase(
    name: &Name,
    record_type: RecordType,
    records: Vec<Record>,
    security: Security,
) -> Answer<Record> {
    let mut current = spelled(name);
    let mut ttl = u32::MAX;
    // A chain longer than the records cannot be; the bound also stops a CNAME loop.
    for _ in 0..=records.len() {
        let next = records.iter().find_map(|r| match &r.data {
            RData::CNAME(target)
                if spelled(&r.name) == current && record_type != RecordType::CNAME =>
            {
                Some((spelled(&target.0), r.ttl))
            }
            _ => None,
        });
        match next {
            Some((target, record_ttl)) if target != current => {
                ttl = ttl.min(record_ttl);
                current = target;
            }
            _ => break,
        }
    }
    let kept: Vec<Record> = records
        .into_iter()
        .filter(|r| r.record_type() == record_type && spelled(&r.name) == current)
        .collect();
    for record in &kept {
        ttl = ttl.min(record.ttl);
    }
    Answer {
        records: kept,
        security,
        no_such_name: false,
        canonical_name: current,
        ttl: if ttl == u32::MAX { 0 } else { ttl },
    }
}

fn map_answer<T>(answer: Answer<Record>, records: Vec<T>) -> Answer<T> {
    Answer {
        records,
        security: answer.security,
        no_such_name: answer.no_such_name,
        canonical_name: answer.canonical_name,
        ttl: answer.ttl,
    }
}

/// Reads a trust anchor file of DNSKEY records (zone-file format, `;` comments allowed).
///
/// # Errors
///
/// [`DnsError::Setup`] naming the file.
pub fn load_trust_anchor(path: &Path) -> Result<TrustAnchors, DnsError> {
    let anchors = TrustAnchors::from_file(path).map_err(|e| {
        DnsError::Setup(format!(
            "the trust anchor file {} is not DNSKEY records in zone-file format: {e}",
            path.display()
        ))
    })?;
    if anchors.is_empty() {
        return Err(DnsError::Setup(format!(
            "the trust anchor file {} has no DNSKEY record",
            path.display()
        )));
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_literal_is_not_a_name_to_look_up() {
        assert!(matches!(fqdn("192.0.2.1"), Err(DnsError::BadName { .. })));
        assert!(matches!(fqdn("::1"), Err(DnsError::BadName { .. })));
        assert!(fqdn("mx.example.net.").is_ok());
    }

    #[test]
    fn modes_round_trip_their_names() {
        for mode in DnssecMode::ALL {
            assert_eq!(DnssecMode::from_name(mode.name()), Some(mode));
        }
        assert_eq!(DnssecMode::from_name("on"), None);
    }

    #[test]
    fn a_cname_loop_ends() {
        let a: Name = "a.example.".parse().unwrap();
        let b: Name = "b.example.".parse().unwrap();
        let records = vec![
            Record::from_rdata(
                a.clone(),
                60,
                RData::CNAME(hickory_resolver::proto::rr::rdata::CNAME(b.clone())),
            ),
            Record::from_rdata(
                b,
                60,
                RData::CNAME(hickory_resolver::proto::rr::rdata::CNAME(a.clone())),
            ),
        ];
        let answer = chase(&a, RecordType::A, records, Security::Insecure);
        assert!(answer.records.is_empty());
    }

    #[test]
    fn security_is_secure_only_when_all_is() {
        assert_eq!(Security::Secure.and(Security::Secure), Security::Secure);
        assert_eq!(Security::Secure.and(Security::Insecure), Security::Insecure);
        let name: Name = "x.example.".parse().unwrap();
        assert!(
            proven(
                &name,
                RecordType::A,
                [Proof::Secure, Proof::Bogus].into_iter()
            )
            .is_err()
        );
        assert!(proven(&name, RecordType::A, [Proof::Indeterminate].into_iter()).is_err());
        assert_eq!(
            proven(
                &name,
                RecordType::A,
                [Proof::Secure, Proof::Insecure].into_iter()
            )
            .unwrap(),
            Security::Insecure
        );
    }
}
