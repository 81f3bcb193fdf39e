//! The operator's configuration.

use serde::{Deserialize, Serialize};

/// The operator's overall stance; see `docs/policy.md` for the table of what each allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The full dance: strongest TLS, then legacy TLS, then cleartext, with per-peer memory and
    /// pinning (RFC 7435 opportunistic security done carefully).
    #[default]
    Opportunistic,
    /// Any TLS, never cleartext (Postfix `encrypt`): the dance stops at legacy TLS.
    Mandatory,
    /// Authenticated TLS only (Postfix `secure`/`dane-only`): no dance.
    AuthenticatedOnly,
    /// A single tier, no fallback and no cleartext: the submission / implicit-TLS case.
    NoFallback,
    /// Pre-2015 browser behaviour: version fallback from modern to legacy TLS within one delivery,
    /// never cleartext, no memory between deliveries.
    BrowserStyle,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Self; 5] = [
        Self::Opportunistic,
        Self::Mandatory,
        Self::AuthenticatedOnly,
        Self::NoFallback,
        Self::BrowserStyle,
    ];

    /// The kebab-case name used in the WIT contract, the config file and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Opportunistic => "opportunistic",
            Self::Mandatory => "mandatory",
            Self::AuthenticatedOnly => "authenticated-only",
            Self::NoFallback => "no-fallback",
            Self::BrowserStyle => "browser-style",
        }
    }

    /// Parses a kebab-case profile name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the engine remembers the tier a peer works at between deliveries.
    #[must_use]
    pub const fn remembers_tiers(self) -> bool {
        matches!(self, Self::Opportunistic | Self::Mandatory)
    }
}

/// The operator's policy for one destination (the host resolves per-destination overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    /// The overall stance.
    pub profile: Profile,
    /// Whether the legacy TLS tier may be used at all.
    pub allow_legacy_tls: bool,
    /// Whether cleartext may be used at all (subject to the profile and the delivery's floor).
    pub allow_cleartext: bool,
    /// Seconds to wait before an attempt at a weaker tier within one delivery.
    pub step_down_delay_secs: u32,
    /// Seconds after which a peer remembered below the strongest tier is probed at the strongest
    /// tier again, so that upgraded peers are noticed.
    pub reprobe_interval_secs: u32,
    /// Seconds for which a peer that did modern TLS or better is pinned: cleartext and legacy TLS
    /// are refused for it (trust on first use, like HSTS). Each such success renews the pin. 0
    /// disables pinning.
    pub pin_duration_secs: u32,
    /// How many resets, timeouts or post-handshake failures in a row, across deliveries, at one
    /// tier before an unpinned peer is stepped down. At least 1.
    pub transient_failure_threshold: u8,
    /// Seconds after which a deferred delivery should be retried.
    pub retry_after_secs: u32,
}

impl Policy {
    /// The defaults: opportunistic, legacy TLS and cleartext allowed, 5 s step-down delay, 7-day
    /// re-probe, 30-day pin, 3 transient failures before stepping down, 5-minute retry.
    pub const DEFAULT: Self = Self {
        profile: Profile::Opportunistic,
        allow_legacy_tls: true,
        allow_cleartext: true,
        step_down_delay_secs: 5,
        reprobe_interval_secs: 7 * 86_400,
        pin_duration_secs: 30 * 86_400,
        transient_failure_threshold: 3,
        retry_after_secs: 300,
    };
}

impl Default for Policy {
    fn default() -> Self {
        Self::DEFAULT
    }
}
