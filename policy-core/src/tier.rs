//! Tiers of transport security, TLS protocol versions, and the TLS parameters the host applies
//! for each tier.
//!
//! A leaf module: it imports nothing from the rest of the crate (an attempt's report, in
//! `outcome`, names a tier and a version; a tier's parameters never name an outcome).

use serde::{Deserialize, Serialize};

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0 (RFC 2246), deprecated by RFC 8996.
    #[serde(rename = "TLSv1", alias = "TLSv1.0")]
    Tls1_0,
    /// TLS 1.1 (RFC 4346), deprecated by RFC 8996.
    #[serde(rename = "TLSv1.1")]
    Tls1_1,
    /// TLS 1.2 (RFC 5246).
    #[serde(rename = "TLSv1.2")]
    Tls1_2,
    /// TLS 1.3 (RFC 8446).
    #[serde(rename = "TLSv1.3")]
    Tls1_3,
}

impl TlsVersion {
    /// The name OpenSSL and Postfix logs use (`TLSv1`, `TLSv1.1`, `TLSv1.2`, `TLSv1.3`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tls1_0 => "TLSv1",
            Self::Tls1_1 => "TLSv1.1",
            Self::Tls1_2 => "TLSv1.2",
            Self::Tls1_3 => "TLSv1.3",
        }
    }

    /// Parses `TLSv1`, `TLSv1.0`, `TLSv1.1`, `TLSv1.2` or `TLSv1.3`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "TLSv1" | "TLSv1.0" => Some(Self::Tls1_0),
            "TLSv1.1" => Some(Self::Tls1_1),
            "TLSv1.2" => Some(Self::Tls1_2),
            "TLSv1.3" => Some(Self::Tls1_3),
            _ => None,
        }
    }
}

/// A level of transport security the host can attempt, ordered weakest to strongest, so that
/// `Tier::Cleartext < Tier::LegacyTls < Tier::ModernTls < Tier::AuthenticatedTls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// No STARTTLS: the message crosses the network in the clear.
    Cleartext,
    /// Old protocol versions and suites the host's TLS stack still has (TLS 1.0 to 1.2 with CBC-SHA1
    /// suites at OpenSSL security level 0 today; RC4 in 2014), unauthenticated, with the fallback
    /// SCSV so that a peer that can do better says so.
    LegacyTls,
    /// TLS 1.2 or newer with strong (AEAD, forward-secret) suites, certificate not verified.
    ModernTls,
    /// TLS 1.2 or newer with strong suites and a verified certificate: DANE-TLSA when the
    /// destination has usable TLSA records, WebPKI with MX host name match otherwise.
    AuthenticatedTls,
}

impl Tier {
    /// Every tier, strongest first: the order of the fallback dance.
    pub const STRONGEST_FIRST: [Self; 4] = [
        Self::AuthenticatedTls,
        Self::ModernTls,
        Self::LegacyTls,
        Self::Cleartext,
    ];

    /// The tier's kebab-case name, as in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cleartext => "cleartext",
            Self::LegacyTls => "legacy-tls",
            Self::ModernTls => "modern-tls",
            Self::AuthenticatedTls => "authenticated-tls",
        }
    }

    /// Parses a kebab-case tier name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::STRONGEST_FIRST.into_iter().find(|t| t.name() == name)
    }

    /// Whether the tier runs STARTTLS.
    #[must_use]
    pub const fn uses_tls(self) -> bool {
        !matches!(self, Self::Cleartext)
    }

    /// The next weaker tier, if any.
    #[must_use]
    pub const fn weaker(self) -> Option<Self> {
        match self {
            Self::AuthenticatedTls => Some(Self::ModernTls),
            Self::ModernTls => Some(Self::LegacyTls),
            Self::LegacyTls => Some(Self::Cleartext),
            Self::Cleartext => None,
        }
    }

    /// The TLS parameters for this tier, `None` for cleartext.
    #[must_use]
    pub const fn parameters(self, verification: Verification) -> Option<TlsParameters> {
        match self {
            Self::Cleartext => None,
            Self::LegacyTls => Some(TlsParameters {
                min_version: TlsVersion::Tls1_0,
                // Capped below TLS 1.3 and sent with the fallback SCSV (RFC 7507): a peer that
                // could do TLS 1.3 answers `inappropriate_fallback`, which tells us it upgraded
                // or that the earlier failure was forged.
                max_version: TlsVersion::Tls1_2,
                ciphers: CipherPolicy::LegacyCompatible,
                security_level: 0,
                verification: Verification::None,
                fallback_scsv: true,
            }),
            Self::ModernTls => Some(TlsParameters {
                min_version: TlsVersion::Tls1_2,
                max_version: TlsVersion::Tls1_3,
                ciphers: CipherPolicy::Strong,
                security_level: 2,
                verification: Verification::None,
                fallback_scsv: false,
            }),
            Self::AuthenticatedTls => Some(TlsParameters {
                min_version: TlsVersion::Tls1_2,
                max_version: TlsVersion::Tls1_3,
                ciphers: CipherPolicy::Strong,
                security_level: 2,
                verification,
                fallback_scsv: false,
            }),
        }
    }
}

/// Which cipher suites the host offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CipherPolicy {
    /// Forward-secret AEAD suites only (ECDHE/DHE with AES-GCM or ChaCha20-Poly1305; all TLS 1.3
    /// suites).
    Strong,
    /// Everything the host's TLS stack still has, including CBC-SHA1 and static-RSA suites
    /// (OpenSSL `DEFAULT:@SECLEVEL=0`).
    LegacyCompatible,
}

impl CipherPolicy {
    /// The kebab-case name used in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Strong => "strong",
            Self::LegacyCompatible => "legacy-compatible",
        }
    }
}

/// How the host verifies the peer's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// Any certificate is accepted (opportunistic TLS, RFC 7435).
    None,
    /// DANE-TLSA (RFC 7672) against the TLSA records the host resolved with DNSSEC.
    Dane,
    /// WebPKI chain to the system roots plus a match of the MX host name (RFC 8461 section 4).
    Webpki,
}

impl Verification {
    /// The kebab-case name used in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Dane => "dane",
            Self::Webpki => "webpki",
        }
    }
}

/// The TLS settings the host must apply to an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlsParameters {
    /// The lowest protocol version to offer.
    pub min_version: TlsVersion,
    /// The highest protocol version to offer.
    pub max_version: TlsVersion,
    /// Which suites to offer.
    pub ciphers: CipherPolicy,
    /// The OpenSSL security level (`@SECLEVEL=n`): 0 admits SHA-1 and small keys, 2 is Debian's
    /// default.
    pub security_level: u8,
    /// How to verify the peer's certificate.
    pub verification: Verification,
    /// Whether to send `TLS_FALLBACK_SCSV` (RFC 7507) in the ClientHello.
    pub fallback_scsv: bool,
}
