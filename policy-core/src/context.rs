//! Per-delivery inputs the host resolves (DNS, MTA-STS, the message's own requests).

use serde::{Deserialize, Serialize};

/// The result of the host's DANE TLSA lookup for the MX host (RFC 7672).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dane {
    /// No DNSSEC-validated TLSA records: DANE does not apply.
    #[default]
    None,
    /// DNSSEC-validated TLSA records with at least one usable record: authenticated TLS is
    /// required, never lower (RFC 7672 section 2.2).
    Usable,
    /// DNSSEC-validated TLSA records, all unusable: TLS is required but not authenticated
    /// (RFC 7672 section 2.2, Postfix's effective `encrypt`).
    Unusable,
    /// The TLSA lookup failed (SERVFAIL or bogus DNSSEC): the MX must not be used now
    /// (RFC 7672 section 2.2.1).
    LookupFailed,
}

impl Dane {
    /// Every DANE state.
    pub const ALL: [Self; 4] = [Self::None, Self::Usable, Self::Unusable, Self::LookupFailed];

    /// The kebab-case name used in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Usable => "usable",
            Self::Unusable => "unusable",
            Self::LookupFailed => "lookup-failed",
        }
    }

    /// Parses a kebab-case name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// The MTA-STS policy the host found for the recipient domain (RFC 8461).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MtaSts {
    /// No policy (or `mode: none`).
    #[default]
    None,
    /// `mode: testing`: failures are reported, delivery proceeds as without a policy.
    Testing,
    /// `mode: enforce`, and this MX matches the policy: authenticated TLS is required
    /// (RFC 8461 section 5).
    Enforce,
    /// No cached policy and the fetch failed: delivery proceeds as without a policy and the failure
    /// is reported (`sts-policy-fetch-error`).
    FetchFailed,
}

impl MtaSts {
    /// Every MTA-STS state.
    pub const ALL: [Self; 4] = [Self::None, Self::Testing, Self::Enforce, Self::FetchFailed];

    /// The kebab-case name used in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Testing => "testing",
            Self::Enforce => "enforce",
            Self::FetchFailed => "fetch-failed",
        }
    }

    /// Parses a kebab-case name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Everything about this delivery that the host resolved before asking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryContext {
    /// The DANE TLSA state of the MX host.
    pub dane: Dane,
    /// The MTA-STS state of the recipient domain.
    pub mta_sts: MtaSts,
    /// The message was received with `MAIL FROM:<…> REQUIRETLS` (RFC 8689): authenticated TLS or
    /// a 5.7.10 bounce. Takes precedence over `tls_required_no`.
    pub requiretls: bool,
    /// The message carries `TLS-Required: No` (RFC 8689 section 5): DANE, MTA-STS and the peer's
    /// pin are ignored and delivery stays opportunistic (the operator's profile still applies).
    pub tls_required_no: bool,
    /// The connection will authenticate with SASL credentials: never send them in cleartext.
    pub sasl: bool,
}
