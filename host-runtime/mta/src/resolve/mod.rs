//! What the host resolves for a recipient domain before it decides: the MX hosts with their
//! DNSSEC status, the DANE TLSA state of each (RFC 7672), and the domain's MTA-STS policy
//! (RFC 8461); and from them the floor's inputs of each MX's [`DeliveryContext`].
//!
//! The promise: an MX is [`Dane::Usable`] only when its MX RRset (or the implicit MX), its
//! address records and its TLSA RRset were all validated secure and OpenSSL accepts at least one
//! record of usage 2 or 3; a TLSA lookup that failed or was bogus under a secure MX is
//! [`Dane::LookupFailed`] (that MX is deferred, the next one tried), never "no DANE". The rules
//! are pure functions of the lookups' results ([`dane_for`]), so a property test can check them
//! against an oracle whatever the DNS says.

use std::net::IpAddr;

use policy_core::{Dane, DeliveryContext, MtaSts};
use serde::Serialize;

use crate::dns::{Answer, DnsError, MxRecord, Resolver, Security};
use crate::mta_sts::{MxVerdict, StsResult};
use crate::tls::{TlsaRecord, usable_tlsa_records};

mod domain;

pub use domain::{
    DomainResolver, NoDestination, ResolveSettings, ResolverError, TlsRptLookupError, destinations,
    report_policy,
};

/// The DANE state of one MX host, with what led to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum DaneResolution {
    /// DANE does not apply: the MX RRset or the host's addresses are not secure, so the TLSA
    /// records were not looked up (an attacker who can forge those could point us anywhere).
    NotApplicable {
        /// Which lookup was insecure.
        why: String,
    },
    /// The TLSA RRset is insecure (an unsigned zone): DANE does not apply.
    Insecure,
    /// Securely proven that there is no TLSA RRset: DANE does not apply.
    SecureAbsent,
    /// Validated TLSA records, at least one usable: authenticated TLS with DANE verification.
    Usable {
        /// The records OpenSSL verifies with (usage 2 or 3, accepted by OpenSSL).
        records: Vec<TlsaText>,
        /// The name the TLSA RRset was found at.
        base_domain: String,
    },
    /// Validated TLSA records, none usable: TLS is required but not authenticated.
    Unusable {
        /// The records found.
        records: Vec<TlsaText>,
    },
    /// The TLSA lookup failed or was bogus under a secure MX: do not use this MX now.
    LookupFailed {
        /// What failed.
        error: String,
    },
}

/// A TLSA record as the log and the JSON show it: `3 1 1 <hex>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TlsaText(pub String);

impl TlsaText {
    /// The record's presentation text.
    #[must_use]
    pub fn of(record: &TlsaRecord) -> Self {
        Self(record.presentation())
    }
}

impl DaneResolution {
    /// The engine's view.
    #[must_use]
    pub const fn state(&self) -> Dane {
        match self {
            Self::NotApplicable { .. } | Self::Insecure | Self::SecureAbsent => Dane::None,
            Self::Usable { .. } => Dane::Usable,
            Self::Unusable { .. } => Dane::Unusable,
            Self::LookupFailed { .. } => Dane::LookupFailed,
        }
    }
}

/// The DANE state of one MX host from the lookups' results (RFC 7672 sections 2.1 and 2.2).
///
/// `tlsa` is asked for the TLSA RRset at a host name: first at the CNAME-expanded name when the
/// addresses were found through a secure CNAME chain, then at the original name (RFC 7672
/// section 2.2.2); the usable records are those [`usable_tlsa_records`] keeps.
pub fn dane_for(
    mx_security: Security,
    host: &str,
    addresses: &Answer<IpAddr>,
    tlsa: &mut dyn FnMut(&str) -> Result<Answer<TlsaRecord>, DnsError>,
) -> (DaneResolution, Vec<TlsaRecord>) {
    if mx_security != Security::Secure {
        return (
            DaneResolution::NotApplicable {
                why: "the MX RRset is insecure".to_owned(),
            },
            Vec::new(),
        );
    }
    if addresses.security != Security::Secure {
        return (
            DaneResolution::NotApplicable {
                why: format!("the addresses of {host} are insecure"),
            },
            Vec::new(),
        );
    }
    let mut bases = Vec::new();
    if addresses.canonical_name != host {
        bases.push(addresses.canonical_name.clone());
    }
    bases.push(host.to_owned());
    for base in &bases {
        let answer = match tlsa(base) {
            Ok(answer) => answer,
            Err(error) => {
                return (
                    DaneResolution::LookupFailed {
                        error: error.to_string(),
                    },
                    Vec::new(),
                );
            }
        };
        if answer.security != Security::Secure {
            return (DaneResolution::Insecure, Vec::new());
        }
        if answer.records.is_empty() {
            // Securely absent here; the original name may still have them.
            continue;
        }
        let found: Vec<TlsaText> = answer.records.iter().map(TlsaText::of).collect();
        return match usable_tlsa_records(&answer.records) {
            Ok(usable) if !usable.is_empty() => (
                DaneResolution::Usable {
                    records: usable.iter().map(TlsaText::of).collect(),
                    base_domain: base.clone(),
                },
                usable,
            ),
            Ok(_) => (DaneResolution::Unusable { records: found }, Vec::new()),
            Err(error) => (DaneResolution::LookupFailed { error }, Vec::new()),
        };
    }
    (DaneResolution::SecureAbsent, Vec::new())
}

/// Whether an enforced MTA-STS policy forbids this MX host: it lists no pattern the host
/// matches (RFC 8461 section 4.1), and the host has no usable DANE, which takes precedence
/// (RFC 8461 section 2).
#[must_use]
pub fn sts_forbids(dane: &DaneResolution, verdict: MxVerdict) -> bool {
    verdict == MxVerdict::NotAllowed && dane.state() != Dane::Usable
}

/// One MX host as resolved.
#[derive(Clone, Debug)]
pub struct MxResolution {
    /// The MX host name (lower case, no trailing dot).
    pub host: String,
    /// Its MX preference (0 for the implicit MX).
    pub preference: u16,
    /// Its addresses (empty when the lookup failed or found none).
    pub addresses: Vec<IpAddr>,
    /// Whether the addresses were validated (`None`: the lookup failed).
    pub address_security: Option<Security>,
    /// The DANE state and why.
    pub dane: DaneResolution,
    /// What the domain's MTA-STS policy says of this host.
    pub mta_sts: MxVerdict,
    /// The engine's MTA-STS state for this host (`None` with [`MxVerdict::NotAllowed`]).
    pub mta_sts_state: Option<MtaSts>,
    /// Why this MX cannot be used now, if it cannot (no address, an IP literal, not in the
    /// enforced MTA-STS policy).
    pub unusable: Option<String>,
    /// The TLSA records to verify with (those of [`DaneResolution::Usable`]).
    pub tlsa: Vec<TlsaRecord>,
}

impl MxResolution {
    /// The floor's inputs for an attempt at this MX: the DANE and MTA-STS states resolved here,
    /// the rest (REQUIRETLS, TLS-Required: No, SASL) from `base`.
    #[must_use]
    pub fn context(&self, base: DeliveryContext) -> DeliveryContext {
        DeliveryContext {
            dane: self.dane.state(),
            mta_sts: self.mta_sts_state.unwrap_or(MtaSts::Enforce),
            ..base
        }
    }

    /// The floor that what was resolved imposes on its own (the default policy, no pin: the
    /// operator's profile and the peer's pin can only raise it). Deferred MX hosts
    /// ([`Dane::LookupFailed`]) have none, since nothing is attempted.
    #[must_use]
    pub fn floor(&self) -> policy_core::Tier {
        let context = self.context(DeliveryContext::default());
        policy_core::floor(
            &policy_core::Policy::DEFAULT,
            &context,
            &policy_core::PeerMemory::default(),
            0,
        )
        .floor
    }

    /// `dane=usable mta_sts=enforce`: what the log line of each attempt names.
    #[must_use]
    pub fn summary(&self, sts: Option<&StsResult>) -> String {
        let policy_id = sts
            .and_then(|sts| sts.policy_id.as_deref())
            .map_or_else(String::new, |id| format!(" policy_id={id}"));
        format!(
            "dane={} mta_sts={}{policy_id}",
            self.dane.state().name(),
            self.mta_sts_state.map_or("not-allowed", MtaSts::name)
        )
    }
}

/// The MX hosts of a domain, or why there are none.
#[derive(Clone, Debug)]
pub enum MxList {
    /// MX hosts in preference order (the domain itself for the implicit MX).
    Hosts {
        /// Whether the MX RRset (or the proof that there is none) was validated.
        security: Security,
        /// The domain has no MX records: its own name is the MX (RFC 5321 section 5.1).
        implicit: bool,
        /// The hosts.
        hosts: Vec<MxResolution>,
    },
    /// A null MX (RFC 7505): the domain accepts no mail.
    NullMx,
    /// The domain does not exist.
    NoSuchDomain,
    /// The MX lookup failed: defer the whole delivery.
    Failed {
        /// What failed.
        error: String,
    },
}

/// Everything resolved for one recipient domain.
#[derive(Clone, Debug)]
pub struct DomainResolution {
    /// The domain.
    pub domain: String,
    /// Its MX hosts.
    pub mx: MxList,
    /// Its MTA-STS state.
    pub mta_sts: StsResult,
}

/// Resolves a domain: MX (or implicit MX), each host's addresses and TLSA at `port`, and the
/// MTA-STS policy `sts` returns for the domain.
pub fn resolve_domain(
    resolver: &Resolver,
    domain: &str,
    port: u16,
    sts: &mut dyn FnMut(&str) -> StsResult,
) -> DomainResolution {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mta_sts = sts(&domain);
    let mx = match resolver.mx(&domain) {
        Err(error) => MxList::Failed {
            error: error.to_string(),
        },
        Ok(answer) if answer.no_such_name => MxList::NoSuchDomain,
        Ok(answer) => {
            // RFC 7505: a single MX of preference 0 whose exchange is the root.
            if answer.records.len() == 1 && answer.records[0].exchange.is_empty() {
                MxList::NullMx
            } else {
                let implicit = answer.records.is_empty();
                let records = if implicit {
                    vec![MxRecord {
                        preference: 0,
                        exchange: domain.clone(),
                    }]
                } else {
                    answer.records
                };
                let hosts = records
                    .iter()
                    .filter(|mx| !mx.exchange.is_empty())
                    .map(|mx| resolve_mx(resolver, answer.security, mx, port, &mta_sts))
                    .collect();
                MxList::Hosts {
                    security: answer.security,
                    implicit,
                    hosts,
                }
            }
        }
    };
    DomainResolution {
        domain,
        mx,
        mta_sts,
    }
}

/// Resolves a next hop given as a host (Postfix's `[host]` or `[host]:port`, a relayhost or a
/// transport's next hop): no MX lookup, the host itself is the only MX host, and its addresses
/// and, when they are secure, its TLSA records at `port` (RFC 7672 section 2.2.2: with no MX
/// lookup, the host name itself is the secure base). `sts` gives the MTA-STS policy the host
/// name publishes as a domain, if any: no recipient domain chose the host, but a host that
/// publishes a policy asked for it, and postfix-mta-sts-resolver applies it too.
pub fn resolve_host(
    resolver: &Resolver,
    host: &str,
    port: u16,
    sts: &mut dyn FnMut(&str) -> StsResult,
) -> DomainResolution {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mta_sts = sts(&host);
    let record = MxRecord {
        preference: 0,
        exchange: host.clone(),
    };
    let resolved = resolve_mx(resolver, Security::Secure, &record, port, &mta_sts);
    DomainResolution {
        domain: host,
        mx: MxList::Hosts {
            security: Security::Secure,
            implicit: true,
            hosts: vec![resolved],
        },
        mta_sts,
    }
}

fn resolve_mx(
    resolver: &Resolver,
    mx_security: Security,
    mx: &MxRecord,
    port: u16,
    sts: &StsResult,
) -> MxResolution {
    let host = mx.exchange.clone();
    let mta_sts = sts.for_mx(&host);
    let mut resolution = MxResolution {
        host: host.clone(),
        preference: mx.preference,
        mta_sts_state: sts.context_for(&host),
        addresses: Vec::new(),
        address_security: None,
        dane: DaneResolution::NotApplicable {
            why: "no addresses".to_owned(),
        },
        mta_sts,
        unusable: None,
        tlsa: Vec::new(),
    };
    if host.parse::<IpAddr>().is_ok() {
        // RFC 5321 section 5.1 and RFC 7505: an MX names a host, never an address; Postfix
        // skips such a record as malformed.
        resolution.unusable = Some(format!(
            "the MX record names the IP address {host}, not a host name"
        ));
        return resolution;
    }
    match resolver.addresses(&host) {
        Err(error) => {
            resolution.unusable = Some(format!("no address: {error}"));
            if mx_security == Security::Secure {
                resolution.dane = DaneResolution::LookupFailed {
                    error: error.to_string(),
                };
            }
        }
        Ok(addresses) => {
            let (dane, tlsa) = dane_for(mx_security, &host, &addresses, &mut |name| {
                resolver.tlsa(name, port)
            });
            resolution.dane = dane;
            resolution.tlsa = tlsa;
            resolution.address_security = Some(addresses.security);
            if addresses.records.is_empty() {
                resolution.unusable = Some(format!("{host} has no address"));
            }
            resolution.addresses = addresses.records;
        }
    }
    if resolution.unusable.is_none() && sts_forbids(&resolution.dane, resolution.mta_sts) {
        resolution.unusable = Some(format!(
            "{host} is not an MX host of the enforced MTA-STS policy (RFC 8461 section 4.1)"
        ));
    }
    resolution
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer<T>(records: Vec<T>, security: Security, canonical: &str) -> Answer<T> {
        Answer {
            records,
            security,
            no_such_name: false,
            canonical_name: canonical.to_owned(),
            ttl: 300,
        }
    }

    fn dane_ee() -> TlsaRecord {
        TlsaRecord {
            usage: 3,
            selector: 1,
            matching_type: 1,
            data: vec![0xab; 32],
        }
    }

    fn pkix_ee() -> TlsaRecord {
        TlsaRecord {
            usage: 1,
            ..dane_ee()
        }
    }

    /// What the DNS may say about one TLSA lookup.
    #[derive(Clone, Debug)]
    enum TlsaOutcome {
        Records(Security, Vec<TlsaRecord>),
        Absent(Security),
        Bogus,
        ServFail,
        Timeout,
    }

    fn tlsa_outcome() -> impl Strategy<Value = TlsaOutcome> {
        let security = prop_oneof![Just(Security::Secure), Just(Security::Insecure)];
        let record = prop_oneof![
            Just(dane_ee()),
            Just(pkix_ee()),
            // A SHA-256 digest of the wrong length: OpenSSL refuses it.
            Just(TlsaRecord {
                data: vec![1, 2, 3],
                ..dane_ee()
            }),
            Just(TlsaRecord {
                usage: 2,
                ..dane_ee()
            }),
        ];
        prop_oneof![
            (security.clone(), proptest::collection::vec(record, 1..4))
                .prop_map(|(s, r)| TlsaOutcome::Records(s, r)),
            security.prop_map(TlsaOutcome::Absent),
            Just(TlsaOutcome::Bogus),
            Just(TlsaOutcome::ServFail),
            Just(TlsaOutcome::Timeout),
        ]
    }

    fn lookup(outcome: &TlsaOutcome, name: &str) -> Result<Answer<TlsaRecord>, DnsError> {
        let error = |code: &str| DnsError::ServerFailure {
            name: name.to_owned(),
            record_type: "TLSA".to_owned(),
            code: code.to_owned(),
        };
        match outcome {
            TlsaOutcome::Records(security, records) => Ok(answer(records.clone(), *security, name)),
            TlsaOutcome::Absent(security) => Ok(answer(Vec::new(), *security, name)),
            TlsaOutcome::Bogus => Err(DnsError::Bogus {
                name: name.to_owned(),
                record_type: "TLSA".to_owned(),
                detail: "forged".to_owned(),
            }),
            TlsaOutcome::ServFail => Err(error("SERVFAIL")),
            TlsaOutcome::Timeout => Err(DnsError::Timeout {
                name: name.to_owned(),
                record_type: "TLSA".to_owned(),
            }),
        }
    }

    /// RFC 7672 as a small oracle: the DANE state the rules require for one lookup sequence.
    fn oracle(
        mx: Security,
        addresses: Security,
        cname: bool,
        expanded: &TlsaOutcome,
        original: &TlsaOutcome,
    ) -> Dane {
        if mx != Security::Secure || addresses != Security::Secure {
            return Dane::None;
        }
        let judge = |outcome: &TlsaOutcome| -> Option<Dane> {
            match outcome {
                TlsaOutcome::Bogus | TlsaOutcome::ServFail | TlsaOutcome::Timeout => {
                    Some(Dane::LookupFailed)
                }
                TlsaOutcome::Absent(Security::Insecure)
                | TlsaOutcome::Records(Security::Insecure, _) => Some(Dane::None),
                TlsaOutcome::Absent(Security::Secure) => None,
                TlsaOutcome::Records(Security::Secure, records) => Some(
                    if records.iter().any(|r| r.usage >= 2 && r.data.len() == 32) {
                        Dane::Usable
                    } else {
                        Dane::Unusable
                    },
                ),
            }
        };
        if cname && let Some(state) = judge(expanded) {
            return state;
        }
        judge(original).unwrap_or(Dane::None)
    }

    proptest! {
        #[test]
        fn the_dane_state_is_never_below_what_rfc_7672_requires(
            mx in prop_oneof![Just(Security::Secure), Just(Security::Insecure)],
            addresses in prop_oneof![Just(Security::Secure), Just(Security::Insecure)],
            cname in any::<bool>(),
            expanded in tlsa_outcome(),
            original in tlsa_outcome(),
        ) {
            let canonical = if cname { "target.example.net" } else { "mx.example.net" };
            let found = answer(vec!["192.0.2.1".parse().unwrap()], addresses, canonical);
            let mut asked = Vec::new();
            let (dane, tlsa) = dane_for(mx, "mx.example.net", &found, &mut |name| {
                asked.push(name.to_owned());
                if name == "target.example.net" { lookup(&expanded, name) } else { lookup(&original, name) }
            });
            let expected = oracle(mx, addresses, cname, &expanded, &original);
            prop_assert_eq!(dane.state(), expected, "{:?}", dane);
            // Usable means records to verify with, every one DANE-TA or DANE-EE.
            prop_assert_eq!(dane.state() == Dane::Usable, !tlsa.is_empty());
            prop_assert!(tlsa.iter().all(|r| r.usage >= 2));
            // An insecure MX or address set never even asks (nothing to leak, nothing to trust).
            if mx != Security::Secure || addresses != Security::Secure {
                prop_assert!(asked.is_empty());
            }
        }
    }

    fn sts_mode() -> impl Strategy<Value = crate::mta_sts::Mode> {
        prop_oneof![
            Just(crate::mta_sts::Mode::Enforce),
            Just(crate::mta_sts::Mode::Testing),
            Just(crate::mta_sts::Mode::None),
        ]
    }

    proptest! {
        #[test]
        fn an_mx_under_an_enforced_policy_is_authenticated_or_not_used(
            mode in sts_mode(),
            listed in any::<bool>(),
            wildcard in any::<bool>(),
            dane in prop_oneof![
                Just(DaneResolution::SecureAbsent),
                Just(DaneResolution::Insecure),
                Just(DaneResolution::Usable { records: Vec::new(), base_domain: "mx.example.net".to_owned() }),
                Just(DaneResolution::Unusable { records: Vec::new() }),
            ],
        ) {
            use crate::mta_sts::{MxPattern, Policy, PolicySource};
            let pattern = match (listed, wildcard) {
                (true, true) => "*.example.net",
                (true, false) => "mx.example.net",
                (false, true) => "*.other.example",
                (false, false) => "mx.other.example",
            };
            let policy = Policy::new(mode, 86_400, vec![MxPattern::parse(pattern).unwrap()]);
            let sts = StsResult {
                state: match mode {
                    crate::mta_sts::Mode::Enforce => MtaSts::Enforce,
                    crate::mta_sts::Mode::Testing => MtaSts::Testing,
                    crate::mta_sts::Mode::None => MtaSts::None,
                },
                policy: Some(policy),
                policy_id: Some("1".to_owned()),
                source: PolicySource::Fetched,
                ..StsResult::none("example.net")
            };
            let verdict = sts.for_mx("mx.example.net");
            let forbidden = sts_forbids(&dane, verdict);
            let mx = MxResolution {
                host: "mx.example.net".to_owned(),
                preference: 10,
                addresses: Vec::new(),
                address_security: Some(Security::Secure),
                dane: dane.clone(),
                mta_sts: verdict,
                mta_sts_state: sts.context_for("mx.example.net"),
                unusable: None,
                tlsa: Vec::new(),
            };
            let enforced = mode == crate::mta_sts::Mode::Enforce;
            if enforced && !listed {
                // RFC 8461 section 4.1, unless DANE applies (section 2).
                prop_assert_eq!(forbidden, dane.state() != Dane::Usable);
            } else {
                prop_assert!(!forbidden);
            }
            if !forbidden && (enforced || dane.state() == Dane::Usable) {
                prop_assert_eq!(mx.floor(), policy_core::Tier::AuthenticatedTls);
            }
            if !enforced && dane.state() != Dane::Usable {
                prop_assert!(mx.floor() < policy_core::Tier::AuthenticatedTls);
            }
        }
    }

    #[test]
    fn a_bogus_tlsa_answer_under_a_secure_mx_defers_that_mx_instead_of_dropping_dane() {
        let found = answer(
            vec!["192.0.2.1".parse().unwrap()],
            Security::Secure,
            "mx.example.net",
        );
        let (dane, _) = dane_for(Security::Secure, "mx.example.net", &found, &mut |name| {
            lookup(&TlsaOutcome::Bogus, name)
        });
        assert_eq!(dane.state(), Dane::LookupFailed);
    }

    #[test]
    fn only_pkix_usages_make_the_rrset_unusable_not_absent() {
        let found = answer(
            vec!["192.0.2.1".parse().unwrap()],
            Security::Secure,
            "mx.example.net",
        );
        let (dane, tlsa) = dane_for(Security::Secure, "mx.example.net", &found, &mut |name| {
            lookup(
                &TlsaOutcome::Records(Security::Secure, vec![pkix_ee()]),
                name,
            )
        });
        assert_eq!(dane.state(), Dane::Unusable);
        assert!(tlsa.is_empty());
    }
}
