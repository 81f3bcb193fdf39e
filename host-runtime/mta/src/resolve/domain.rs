//! The host's resolution of one recipient domain, set up once per run: DNS (MX, DNSSEC, TLSA) and
//! MTA-STS (TXT, policy, cache), and the MX hosts to try with the floor each gets from them.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::{DaneResolution, DomainResolution, MxList, MxResolution, resolve_domain, resolve_host};
use crate::delivery::{Destination, ResolvedFloor};
use crate::dns::{DnsError, DnsSettings, Resolver};
use crate::mta_sts::{
    CacheError, FetchSettings, Fetcher, HttpsNetwork, PolicyCache, StsResolver, StsResult,
};
use crate::tlsrpt::datagram::{PolicyType, ReportPolicy};
use crate::tlsrpt::record::{self, RecordError};

/// Why the resolution of recipient domains cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// The DNS resolver (no async runtime, an unreadable trust anchor file).
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The MTA-STS policy cache in the history database.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Everything the resolution needs to be set up.
#[derive(Clone, Debug)]
pub struct ResolveSettings {
    /// The DNS.
    pub dns: DnsSettings,
    /// How MTA-STS policies are fetched.
    pub fetch: FetchSettings,
    /// The SMTP port (its TLSA records are at `_PORT._tcp.<mx>`).
    pub port: u16,
}

/// The host's resolver and MTA-STS resolver, set up once for a run.
pub struct DomainResolver {
    dns: Arc<Resolver>,
    sts: StsResolver<HttpsNetwork>,
    port: u16,
}

impl DomainResolver {
    /// Sets up the DNS resolver and the MTA-STS resolver whose policy cache is in the history
    /// database at `db`.
    ///
    /// # Errors
    ///
    /// The resolver (a bad trust anchor file) or the cache (an unreadable database).
    pub fn new(settings: &ResolveSettings, db: &Path) -> Result<Self, ResolverError> {
        let dns = Arc::new(Resolver::new(settings.dns.clone())?);
        let cache = PolicyCache::open(db)?;
        let txt_dns = Arc::clone(&dns);
        let address_dns = Arc::clone(&dns);
        let network = HttpsNetwork {
            txt: Box::new(move |name| match txt_dns.txt(name) {
                Ok(answer) if answer.records.is_empty() => Ok(None),
                Ok(answer) => Ok(Some(answer.records)),
                Err(error) => Err(error.to_string()),
            }),
            addresses: Box::new(move |name| match address_dns.addresses(name) {
                Ok(answer) => Ok(answer.records),
                Err(error) => Err(error.to_string()),
            }),
            fetcher: Fetcher::new(settings.fetch.clone()),
        };
        Ok(Self {
            dns,
            sts: StsResolver::new(network, cache),
            port: settings.port,
        })
    }

    /// Resolves `domain` at `now` (Unix seconds, for the policy cache).
    #[must_use]
    pub fn resolve(&self, domain: &str, now: u64) -> DomainResolution {
        self.resolve_at(domain, self.port, now)
    }

    /// As [`resolve`](Self::resolve), with the TLSA records of `port` (a next hop
    /// `domain:port`).
    #[must_use]
    pub fn resolve_at(&self, domain: &str, port: u16, now: u64) -> DomainResolution {
        resolve_domain(&self.dns, domain, port, &mut |domain| {
            self.sts.resolve(domain, now)
        })
    }

    /// Resolves the next hop `[host]:port` at `now`: the host's addresses and TLSA records, no
    /// MX lookup, and the MTA-STS policy the host name publishes ([`resolve_host`]).
    #[must_use]
    pub fn resolve_host(&self, host: &str, port: u16, now: u64) -> DomainResolution {
        resolve_host(&self.dns, host, port, &mut |domain| {
            self.sts.resolve(domain, now)
        })
    }

    /// The TLSRPT record `domain` publishes at `_smtp._tls.<domain>` (RFC 8460 section 3),
    /// chosen as Postfix chooses it.
    ///
    /// # Errors
    ///
    /// The lookup failed, or no single valid record is published ([`TlsRptLookupError`]).
    pub fn tlsrpt_record(&self, domain: &str) -> Result<String, TlsRptLookupError> {
        let name = format!("_smtp._tls.{}", domain.trim_end_matches('.'));
        let answer = self
            .dns
            .txt(&name)
            .map_err(|error| TlsRptLookupError::Dns {
                name: name.clone(),
                error: error.to_string(),
            })?;
        record::select(&answer.records).map_err(|error| TlsRptLookupError::Record { name, error })
    }

    /// The DNS resolver (for its cache statistics).
    #[must_use]
    pub fn dns(&self) -> &Resolver {
        &self.dns
    }
}

/// Why a domain's TLSRPT record is not known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsRptLookupError {
    /// The TXT lookup failed.
    #[error("looking up the TLSRPT record at {name}: {error}")]
    Dns {
        /// The name looked up.
        name: String,
        /// What failed.
        error: String,
    },
    /// No usable record (none, several, or malformed).
    #[error("the TLSRPT record at {name}: {error}")]
    Record {
        /// The name looked up.
        name: String,
        /// What is wrong.
        #[source]
        error: RecordError,
    },
}

/// Why a resolution gives no MX host to try, and the sendmail exit code that goes with it.
#[derive(Debug)]
pub struct NoDestination {
    /// 69 (bounce) or 75 (defer).
    pub exit_code: u8,
    /// Why.
    pub reason: String,
}

/// The MX hosts to try, in preference order, each with its resolved floor; the ones that cannot
/// be used now are returned apart with the reason (for the log).
///
/// # Errors
///
/// A null MX or a domain that does not exist (bounce), or no usable MX at all (defer).
pub fn destinations(
    resolution: &DomainResolution,
    port: u16,
) -> Result<(Vec<Destination>, Vec<String>), NoDestination> {
    let domain = &resolution.domain;
    let hosts = match &resolution.mx {
        MxList::Hosts { hosts, .. } => hosts,
        MxList::NullMx => {
            return Err(NoDestination {
                exit_code: 69,
                reason: format!(
                    "bounced 5.1.10: {domain} publishes a null MX and accepts no mail (RFC 7505)"
                ),
            });
        }
        MxList::NoSuchDomain => {
            return Err(NoDestination {
                exit_code: 69,
                reason: format!("bounced 5.1.2: the domain {domain} does not exist"),
            });
        }
        MxList::Failed { error } => {
            return Err(NoDestination {
                exit_code: 75,
                reason: format!("looking up the MX of {domain}: {error}"),
            });
        }
    };
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    for mx in hosts {
        if let Some(why) = &mx.unusable {
            skipped.push(format!("skipping MX {}: {why}", mx.host));
            continue;
        }
        // IPv4 first: the local peers and most MX hosts listen there (one address per MX for
        // now; see docs/dns.md).
        let Some(ip) = mx
            .addresses
            .iter()
            .find(|ip| ip.is_ipv4())
            .or_else(|| mx.addresses.first())
        else {
            continue;
        };
        usable.push(destination(mx, *ip, port, &resolution.mta_sts));
    }
    if usable.is_empty() {
        return Err(NoDestination {
            exit_code: 75,
            reason: format!(
                "no MX host of {domain} can be used now: {}",
                skipped.join("; ")
            ),
        });
    }
    Ok((usable, skipped))
}

fn destination(mx: &MxResolution, ip: IpAddr, port: u16, sts: &StsResult) -> Destination {
    let context = mx.context(policy_core::DeliveryContext::default());
    Destination::new(
        &mx.host,
        SocketAddr::new(ip, port),
        Some(ResolvedFloor {
            dane: context.dane,
            mta_sts: context.mta_sts,
            tlsa: mx.tlsa.clone(),
            summary: mx.summary(Some(sts)),
            report_policy: report_policy(mx, sts),
        }),
    )
}

/// The policy TLS-RPT reports attempts at `mx` under: DANE when it applies (usable or not:
/// RFC 7672 takes precedence over MTA-STS), else the domain's MTA-STS policy when one applies
/// or could not be fetched (Postfix's `policy_type=sts` with `policy_failure`), else none.
#[must_use]
pub fn report_policy(mx: &MxResolution, sts: &StsResult) -> ReportPolicy {
    let tlsa = |records: &[super::TlsaText], domain: &str| ReportPolicy {
        policy_type: PolicyType::Tlsa,
        policy_domain: Some(domain.to_owned()),
        policy_strings: records.iter().map(|record| record.0.clone()).collect(),
        mx_host_patterns: Vec::new(),
    };
    match &mx.dane {
        DaneResolution::Usable {
            records,
            base_domain,
        } => return tlsa(records, base_domain),
        DaneResolution::Unusable { records } => return tlsa(records, &mx.host),
        _ => {}
    }
    match sts.tls_rpt_policy() {
        Some(policy) => ReportPolicy {
            policy_type: PolicyType::Sts,
            policy_domain: Some(policy.policy_domain),
            policy_strings: policy.policy_string,
            mx_host_patterns: policy.mx_host,
        },
        None if sts.failure.is_some() => ReportPolicy {
            policy_type: PolicyType::Sts,
            policy_domain: Some(sts.domain.clone()),
            policy_strings: Vec::new(),
            mx_host_patterns: Vec::new(),
        },
        None => ReportPolicy::no_policy_found(&sts.domain),
    }
}
