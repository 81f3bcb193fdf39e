//! What the host reports about an attempt.

use serde::{Deserialize, Serialize};

use crate::tier::{Tier, TlsVersion};

/// A TLS alert the peer sent (or the host's TLS stack raised) during the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsAlert {
    /// `protocol_version` (70): the peer does not speak any version we offered.
    ProtocolVersion,
    /// `handshake_failure` (40): no common cipher suite or parameters.
    HandshakeFailure,
    /// `insufficient_security` (71): the peer demands stronger suites than we offered.
    InsufficientSecurity,
    /// `inappropriate_fallback` (86): we sent the fallback SCSV and the peer supports a higher
    /// version than we offered (RFC 7507).
    InappropriateFallback,
    /// Any other alert or handshake error: not definitive evidence of what the peer can do.
    Other,
}

impl TlsAlert {
    /// Every alert kind.
    pub const ALL: [Self; 5] = [
        Self::ProtocolVersion,
        Self::HandshakeFailure,
        Self::InsufficientSecurity,
        Self::InappropriateFallback,
        Self::Other,
    ];

    /// The kebab-case name used in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ProtocolVersion => "protocol-version",
            Self::HandshakeFailure => "handshake-failure",
            Self::InsufficientSecurity => "insufficient-security",
            Self::InappropriateFallback => "inappropriate-fallback",
            Self::Other => "other",
        }
    }

    /// Parses a kebab-case alert name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Why certificate verification failed (only reported when the tier asked for verification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateError {
    /// The certificate (or one in its chain) has expired.
    Expired,
    /// The chain does not lead to a trusted root.
    Untrusted,
    /// The certificate does not name the MX host.
    NameMismatch,
    /// No TLSA record matches the certificate or its chain.
    DaneMismatch,
}

impl CertificateError {
    /// Every certificate error kind.
    pub const ALL: [Self; 4] = [
        Self::Expired,
        Self::Untrusted,
        Self::NameMismatch,
        Self::DaneMismatch,
    ];

    /// The kebab-case name used in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Untrusted => "untrusted",
            Self::NameMismatch => "name-mismatch",
            Self::DaneMismatch => "dane-mismatch",
        }
    }

    /// Parses a kebab-case certificate error name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// What happened on an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The message was accepted by the peer. `version` is the negotiated TLS version (`None` for
    /// cleartext or when the host does not know it).
    Success {
        /// The negotiated protocol version.
        version: Option<TlsVersion>,
    },
    /// The TCP connection could not be made (refused, unreachable, timed out). Not TLS evidence.
    ConnectFailed,
    /// The peer's EHLO reply did not offer STARTTLS.
    StarttlsNotOffered,
    /// The peer answered STARTTLS with a non-220 reply (for example 454).
    StarttlsRejected {
        /// The SMTP reply code.
        code: u16,
    },
    /// The TLS handshake failed with an alert.
    TlsAlert(TlsAlert),
    /// The handshake completed but the certificate did not verify.
    CertificateError(CertificateError),
    /// The TLS handshake did not complete in time.
    HandshakeTimeout,
    /// The connection was reset or closed during STARTTLS or the handshake.
    ConnectionReset,
    /// TLS was established, then the session failed (EHLO after STARTTLS, or I/O error, before the
    /// message was accepted).
    PostHandshakeFailure,
    /// The host could not resolve the policy inputs (DANE, MTA-STS) for this attempt.
    PolicyLookupFailed,
}

impl Outcome {
    /// The kebab-case name of the outcome kind, as in the CLI's JSON `outcome` field.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Success { .. } => "success",
            Self::ConnectFailed => "connect-failed",
            Self::StarttlsNotOffered => "starttls-not-offered",
            Self::StarttlsRejected { .. } => "starttls-rejected",
            Self::TlsAlert(_) => "tls-alert",
            Self::CertificateError(_) => "certificate-error",
            Self::HandshakeTimeout => "handshake-timeout",
            Self::ConnectionReset => "connection-reset",
            Self::PostHandshakeFailure => "post-handshake-failure",
            Self::PolicyLookupFailed => "policy-lookup-failed",
        }
    }
}

/// The host's report of the attempt it made at the engine's last request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptReport {
    /// The tier the host attempted.
    pub tier: Tier,
    /// What happened.
    pub outcome: Outcome,
}
