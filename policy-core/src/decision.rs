//! What the engine tells the host to do.

use core::fmt;

use crate::context::DeliveryContext;
use crate::history::{HistoryBlob, HistoryError};
use crate::tier::{Tier, TlsParameters};

/// The engine's answer to one [`decide`](crate::decide) call.
#[must_use = "a decision tells the host what to do next and carries the peer's new history"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What the host does next.
    pub action: Action,
    /// Why, as a machine-readable code; [`Reason::explanation`] gives the human line.
    pub reason: Reason,
    /// The RFC 8460 (TLS-RPT) result types the host should report for this step.
    pub report: TlsRptResults,
    /// The peer's new history: the host stores it in place of the old one.
    pub history: HistoryBlob,
    /// Why the history passed in could not be read, when it could not: the decision was then made
    /// as for an unknown peer and `reason` is [`Reason::HistoryUnreadable`].
    pub history_error: Option<HistoryError>,
}

impl Decision {
    /// Whether the delivery is over (done, deferred or bounced) rather than asking for an attempt.
    #[must_use]
    pub const fn is_final(&self) -> bool {
        !matches!(self.action, Action::Attempt { .. })
    }
}

/// What the host does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect and try to deliver at `tier` with `tls`, not before `delay_secs` from now.
    Attempt {
        /// The tier to attempt.
        tier: Tier,
        /// The TLS settings to apply; `None` for cleartext (no STARTTLS).
        tls: Option<TlsParameters>,
        /// Seconds to wait before connecting, counted from the `now` of this decision.
        delay_secs: u32,
    },
    /// Stop trying this peer for now; try again no sooner than `retry_after_secs` from now (the
    /// host may try the destination's next MX meanwhile).
    Defer {
        /// Seconds until the next try.
        retry_after_secs: u32,
    },
    /// Return the message to its sender with this enhanced status code.
    Bounce {
        /// The RFC 3463 enhanced status code.
        status: EnhancedStatus,
    },
    /// The message was delivered; nothing more to do.
    Done,
}

impl Action {
    /// The kebab-case name of the action kind.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Attempt { .. } => "attempt",
            Self::Defer { .. } => "defer",
            Self::Bounce { .. } => "bounce",
            Self::Done => "done",
        }
    }

    pub(crate) fn attempt(tier: Tier, delay_secs: u32, context: &DeliveryContext) -> Self {
        Self::Attempt {
            tier,
            tls: tier.parameters(crate::floor::verification_for(context)),
            delay_secs,
        }
    }
}

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject (7 = security or policy status).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedStatus {
    /// 5.7.10, "Encryption needed" (RFC 5248 registry), the bounce for a REQUIRETLS message that
    /// cannot be sent with authenticated TLS (RFC 8689 section 5).
    pub const ENCRYPTION_NEEDED: Self = Self {
        class: 5,
        subject: 7,
        detail: 10,
    };
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One RFC 8460 section 4.3 result type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum TlsRptResult {
    /// `starttls-not-supported`: the peer did not offer STARTTLS or refused it.
    StarttlsNotSupported = 1 << 0,
    /// `certificate-host-mismatch`: the certificate does not name the MX host.
    CertificateHostMismatch = 1 << 1,
    /// `certificate-expired`.
    CertificateExpired = 1 << 2,
    /// `certificate-not-trusted`: the chain does not lead to a trusted root.
    CertificateNotTrusted = 1 << 3,
    /// `validation-failure`: any other failure to establish TLS (handshake errors, DANE mismatch).
    ValidationFailure = 1 << 4,
    /// `tlsa-invalid`: the TLSA records are invalid.
    TlsaInvalid = 1 << 5,
    /// `dnssec-invalid`: the DNSSEC lookup of the TLSA records failed.
    DnssecInvalid = 1 << 6,
    /// `dane-required`: DANE was required but no usable records were found.
    DaneRequired = 1 << 7,
    /// `sts-policy-fetch-error`: the MTA-STS policy could not be fetched.
    StsPolicyFetchError = 1 << 8,
    /// `sts-policy-invalid`: the MTA-STS policy could not be parsed.
    StsPolicyInvalid = 1 << 9,
    /// `sts-webpki-invalid`: WebPKI validation required by MTA-STS failed.
    StsWebpkiInvalid = 1 << 10,
}

impl TlsRptResult {
    /// Every result type, in RFC order.
    pub const ALL: [Self; 11] = [
        Self::StarttlsNotSupported,
        Self::CertificateHostMismatch,
        Self::CertificateExpired,
        Self::CertificateNotTrusted,
        Self::ValidationFailure,
        Self::TlsaInvalid,
        Self::DnssecInvalid,
        Self::DaneRequired,
        Self::StsPolicyFetchError,
        Self::StsPolicyInvalid,
        Self::StsWebpkiInvalid,
    ];

    /// The result type as RFC 8460 spells it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::StarttlsNotSupported => "starttls-not-supported",
            Self::CertificateHostMismatch => "certificate-host-mismatch",
            Self::CertificateExpired => "certificate-expired",
            Self::CertificateNotTrusted => "certificate-not-trusted",
            Self::ValidationFailure => "validation-failure",
            Self::TlsaInvalid => "tlsa-invalid",
            Self::DnssecInvalid => "dnssec-invalid",
            Self::DaneRequired => "dane-required",
            Self::StsPolicyFetchError => "sts-policy-fetch-error",
            Self::StsPolicyInvalid => "sts-policy-invalid",
            Self::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// A set of [`TlsRptResult`]s: a bit set, so reporting allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsRptResults(u16);

impl TlsRptResults {
    /// No result types.
    pub const EMPTY: Self = Self(0);

    /// The set with these bits (unknown bits are dropped).
    #[must_use]
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits & 0x07ff)
    }

    /// The bits of the set.
    #[must_use]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Adds a result type.
    pub fn insert(&mut self, result: TlsRptResult) {
        self.0 |= result as u16;
    }

    /// Whether the set holds `result`.
    #[must_use]
    pub const fn contains(self, result: TlsRptResult) -> bool {
        self.0 & result as u16 != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The result types in the set, in RFC order.
    pub fn iter(self) -> impl Iterator<Item = TlsRptResult> {
        TlsRptResult::ALL
            .into_iter()
            .filter(move |r| self.contains(*r))
    }
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $explanation:literal; )*) => {
        /// Why the engine decided what it did. Each code has a kebab-case [`name`](Self::name) and a
        /// one-line [`explanation`](Self::explanation).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason code.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The machine-readable kebab-case code.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// One line for a human.
            #[must_use]
            pub const fn explanation(self) -> &'static str {
                match self { $(Self::$variant => $explanation,)* }
            }

            /// Parses a kebab-case code.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

reasons! {
    /// A new delivery starts at the strongest tier the policy allows.
    StrongestTier = "strongest-tier",
        "starting at the strongest tier the policy allows";
    /// A new delivery starts at the tier this peer last worked at (below the strongest).
    RememberedTier = "remembered-tier",
        "starting at the weaker tier this peer is remembered to need";
    /// The re-probe interval has passed: the strongest tier is tried again.
    ReprobeUpward = "reprobe-upward",
        "re-probing the strongest tier: the peer's re-probe interval has passed";
    /// The history blob could not be read; the peer was treated as unknown.
    HistoryUnreadable = "history-unreadable",
        "the stored history could not be read; the peer was treated as unknown";
    /// The peer refused the tier with a protocol or cipher alert: step down.
    SteppedDownAfterAlert = "stepped-down-after-alert",
        "the peer refused this tier with a protocol or cipher alert; stepping down";
    /// A peer never seen doing TLS did not offer or refused STARTTLS: cleartext.
    SteppedDownNoStarttls = "stepped-down-no-starttls",
        "the peer, never seen doing TLS, did not offer or refused STARTTLS; continuing in cleartext";
    /// Cheap evidence (resets, timeouts, missing STARTTLS, alerts refusing a tier the peer
    /// proved) repeated across deliveries at this tier: step down.
    SteppedDownRepeatedFailures = "stepped-down-repeated-failures",
        "cheap evidence (resets, timeouts, missing STARTTLS, refusals of a proven tier) repeated across deliveries at this tier; stepping down";
    /// The peer signalled it can do better than the remembered tier: try the strongest.
    SteppedUpPeerWantsStronger = "stepped-up-peer-wants-stronger",
        "the peer signalled it supports a stronger tier; retrying at the strongest tier";
    /// The message was delivered.
    Delivered = "delivered",
        "the message was delivered";
    /// The TCP connection failed: not TLS evidence.
    ConnectFailed = "connect-failed",
        "the connection failed, which says nothing about TLS; retrying later";
    /// The host could not resolve the policy inputs.
    PolicyLookupFailed = "policy-lookup-failed",
        "the policy inputs (DANE, MTA-STS) could not be resolved; retrying later";
    /// The TLSA lookup failed: the MX must not be used now.
    DaneLookupFailed = "dane-lookup-failed",
        "the DNSSEC lookup of the TLSA records failed; the MX must not be used now";
    /// A reset, timeout or post-handshake failure not yet repeated enough to step down.
    TransientFailure = "transient-failure",
        "a reset, timeout or broken session, not yet repeated enough to step down; retrying later";
    /// The peer is pinned: refuse the downgrade the evidence would otherwise allow.
    DowngradeRefusedPinned = "downgrade-refused-pinned",
        "the peer did modern TLS before and is pinned; refusing to downgrade";
    /// STARTTLS vanished from a peer seen doing TLS: possible stripping.
    StarttlsMissingAfterTls = "starttls-missing-after-tls",
        "STARTTLS is missing from a peer seen doing TLS before: possible stripping; retrying later";
    /// The floor requires TLS, and the peer offers none.
    TlsRequiredNotOffered = "tls-required-not-offered",
        "the policy requires TLS and the peer does not offer it";
    /// Every tier the policy allows has failed.
    NoTierLeft = "no-tier-left",
        "every tier the policy allows has failed; retrying later";
    /// Certificate verification failed at the authenticated tier.
    AuthenticationFailed = "authentication-failed",
        "certificate verification failed and the policy requires authenticated TLS";
    /// REQUIRETLS cannot be satisfied: bounce.
    RequiretlsUnsatisfiable = "requiretls-unsatisfiable",
        "the message requires authenticated TLS (REQUIRETLS) and the peer cannot provide it";
    /// The evidence contradicts what the peer proved: an alert refusing a tier below which it
    /// delivered last time (counted as cheap evidence), or a fallback rejected as inappropriate
    /// after a step-down in this delivery.
    DowngradeAttackSuspected = "downgrade-attack-suspected",
        "the peer refused a tier it proved before, or rejected our fallback as inappropriate after a step-down: the failure was probably forged; retrying later";
    /// The no-fallback profile allows one tier only.
    NoFallbackProfile = "no-fallback-profile",
        "the no-fallback profile allows a single tier; retrying later";
    /// The per-delivery attempt limit was reached.
    AttemptLimit = "attempt-limit",
        "the attempt limit for one delivery was reached; retrying later";
    /// The reported outcome cannot happen at the tier reported.
    InconsistentOutcome = "inconsistent-outcome",
        "the reported outcome cannot happen at the tier reported; retrying later";
}
