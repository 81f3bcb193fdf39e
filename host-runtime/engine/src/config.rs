//! The operator's policy file (TOML) and per-destination overrides.
//!
//! ```toml
//! [policy]                       # applies to every destination
//! profile = "opportunistic"
//! pin_duration_secs = 2592000
//!
//! [[destination]]                # the most specific match wins
//! peer = ".bank.example"         # a leading dot matches the domain and every name under it
//! profile = "mandatory"
//!
//! [plugin]                       # an operator's own policy component (see crate::plugin)
//! component = "site-rules.wasm"  # relative to this file
//! fail_mode = "fallback-builtin" # or "fail-closed" (the default)
//!
//! [dns]                          # how the host resolves MX, TLSA and MTA-STS (the MTA host: tlsfallback-mta)
//! server = "127.0.0.1:53"        # default: the first nameserver of /etc/resolv.conf
//! dnssec = "validate"            # or "trust-ad" (a local validating resolver), or "off"
//! trust_anchor = "root.key"      # DNSKEY records; default: the IANA root keys
//! ```

use std::path::{Path, PathBuf};

use policy_core::{Policy, Profile};
use serde::Deserialize;

use crate::plugin::{InvalidPluginSection, PluginConfig, PluginSection};

/// Policy fields to change; every field is optional. Used by the `[policy]` table, each
/// `[[destination]]`, and the `policy` object of a `decide` request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverrides {
    /// See [`Policy::profile`].
    pub profile: Option<Profile>,
    /// See [`Policy::allow_legacy_tls`].
    pub allow_legacy_tls: Option<bool>,
    /// See [`Policy::allow_cleartext`].
    pub allow_cleartext: Option<bool>,
    /// See [`Policy::step_down_delay_secs`].
    pub step_down_delay_secs: Option<u32>,
    /// See [`Policy::reprobe_interval_secs`].
    pub reprobe_interval_secs: Option<u32>,
    /// See [`Policy::pin_duration_secs`].
    pub pin_duration_secs: Option<u32>,
    /// See [`Policy::transient_failure_threshold`].
    pub transient_failure_threshold: Option<u8>,
    /// See [`Policy::retry_after_secs`].
    pub retry_after_secs: Option<u32>,
}

impl PolicyOverrides {
    /// `base` with these overrides applied.
    #[must_use]
    pub fn apply(&self, base: Policy) -> Policy {
        Policy {
            profile: self.profile.unwrap_or(base.profile),
            allow_legacy_tls: self.allow_legacy_tls.unwrap_or(base.allow_legacy_tls),
            allow_cleartext: self.allow_cleartext.unwrap_or(base.allow_cleartext),
            step_down_delay_secs: self
                .step_down_delay_secs
                .unwrap_or(base.step_down_delay_secs),
            reprobe_interval_secs: self
                .reprobe_interval_secs
                .unwrap_or(base.reprobe_interval_secs),
            pin_duration_secs: self.pin_duration_secs.unwrap_or(base.pin_duration_secs),
            transient_failure_threshold: self
                .transient_failure_threshold
                .unwrap_or(base.transient_failure_threshold),
            retry_after_secs: self.retry_after_secs.unwrap_or(base.retry_after_secs),
        }
    }
}

/// One `[[destination]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationOverride {
    /// The peer (MX host name) it applies to: `mx.example.net` exactly, or `.example.net` for
    /// `example.net` and every name under it.
    pub peer: String,
    /// The fields to change.
    #[serde(flatten)]
    pub overrides: PolicyOverrides,
}

/// The `[dns]` table: where and how the host resolves (every field optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// The name server, `ADDR:PORT`.
    pub server: Option<std::net::SocketAddr>,
    /// `validate`, `trust-ad` or `off`.
    pub dnssec: Option<DnssecMode>,
    /// A file of DNSKEY trust anchors, relative to the policy file.
    pub trust_anchor: Option<PathBuf>,
}

/// The `[tlsrpt]` table: where TLS-RPT (RFC 8460) results go; off when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRptSection {
    /// The Unix datagram socket of `tlsrpt-collectd`, relative to the policy file;
    /// `--tlsrpt-socket` overrides it.
    pub socket: Option<PathBuf>,
    /// Keep results in the history database for `tlsrpt preview` even without a collectd
    /// (they are always kept when a socket is set); `--tlsrpt-ledger` sets it.
    #[serde(default)]
    pub ledger: bool,
}

/// The `[fleet]` table: the Redis a fleet of nodes shares peer histories in; off when absent.
/// Every field has a `--fleet-*` flag that overrides it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` (TLS). Better kept out of the
    /// file when it holds a password: `TLSFALLBACK_FLEET` in the environment overrides it.
    pub url: Option<String>,
    /// Whether `url` is a node of a Redis Cluster.
    #[serde(default)]
    pub cluster: bool,
    /// The PEM file of the CAs a `rediss://` server is checked against, relative to the policy
    /// file.
    pub ca_file: Option<PathBuf>,
    /// The longest a decision waits for Redis, in milliseconds (default 50).
    pub budget_ms: Option<u64>,
    /// How long a shared copy read is trusted, in seconds (default 5).
    pub cache_ttl_secs: Option<u64>,
}

/// The whole policy file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Changes to the built-in defaults, for every destination.
    #[serde(default)]
    pub policy: PolicyOverrides,
    /// Per-destination changes on top of `policy`.
    #[serde(default, rename = "destination")]
    pub destinations: Vec<DestinationOverride>,
    /// The operator's own policy component, if any.
    #[serde(default)]
    pub plugin: PluginSection,
    /// How the host resolves the floor's inputs; command-line flags override each field.
    #[serde(default)]
    pub dns: DnsSection,
    /// Where TLS-RPT results go; command-line flags override it.
    #[serde(default)]
    pub tlsrpt: TlsRptSection,
    /// Where the fleet's shared histories are; command-line flags override it.
    #[serde(default)]
    pub fleet: FleetSection,
    /// The directory relative paths in the file are resolved against (the file's own).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Why a policy file is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading the policy file {}: {cause}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Toml(toml::de::Error),
    /// A `[[destination]]` whose `peer` is empty (or only dots).
    #[error("a [[destination]] has an empty peer ({0:?})")]
    EmptyPeer(String),
    /// The `[plugin]` table is inconsistent (options without a component, a zero limit).
    #[error(transparent)]
    Plugin(#[from] InvalidPluginSection),
    /// One of the above, in the file at `path`.
    #[error("in the policy file {}: {error}", .path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        error: Box<Self>,
    },
}

impl PolicyFile {
    /// Reads and checks a policy file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not valid TOML, has an unknown key or value, or has a
    /// destination with an empty `peer`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let in_file = |error: ConfigError| ConfigError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        };
        let mut file = Self::parse(&text).map_err(in_file)?;
        file.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        file.plugin_config().map_err(in_file)?;
        Ok(file)
    }

    /// The plugin the `[plugin]` table configures, if any.
    ///
    /// # Errors
    ///
    /// When the table is inconsistent (options without a component, a zero limit).
    pub fn plugin_config(&self) -> Result<Option<PluginConfig>, ConfigError> {
        Ok(self.plugin.resolve(&self.base_dir)?)
    }

    /// Parses a policy file's text.
    ///
    /// # Errors
    ///
    /// As for [`load`](Self::load), without the reading.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let file: Self = toml::from_str(text).map_err(ConfigError::Toml)?;
        if let Some(bad) = file
            .destinations
            .iter()
            .find(|d| d.peer.trim_start_matches('.').is_empty())
        {
            return Err(ConfigError::EmptyPeer(bad.peer.clone()));
        }
        Ok(file)
    }

    /// The policy for destinations no `[[destination]]` matches.
    #[must_use]
    pub fn default_policy(&self) -> Policy {
        self.policy.apply(Policy::DEFAULT)
    }

    /// Every policy the file can give: the default one, then each destination's.
    pub fn policies(&self) -> impl Iterator<Item = Policy> + '_ {
        let base = self.default_policy();
        core::iter::once(base).chain(
            self.destinations
                .iter()
                .map(move |d| d.overrides.apply(base)),
        )
    }

    /// The policy for `peer`: the defaults, then `[policy]`, then the most specific matching
    /// destination (an exact name beats a suffix; a longer suffix beats a shorter one).
    #[must_use]
    pub fn policy_for(&self, peer: &str) -> Policy {
        let base = self.default_policy();
        let peer = peer.trim_end_matches('.');
        let best = self
            .destinations
            .iter()
            .filter_map(|d| match_strength(&d.peer, peer).map(|strength| (strength, d)))
            .max_by_key(|(strength, _)| *strength);
        match best {
            Some((_, destination)) => destination.overrides.apply(base),
            None => base,
        }
    }
}

/// How specifically `pattern` matches `peer` (case-insensitively), if at all.
fn match_strength(pattern: &str, peer: &str) -> Option<usize> {
    let pattern = pattern.trim_end_matches('.');
    if let Some(domain) = pattern.strip_prefix('.') {
        let matches = peer.eq_ignore_ascii_case(domain)
            || (peer.len() > domain.len()
                && peer.as_bytes()[peer.len() - domain.len() - 1] == b'.'
                && peer[peer.len() - domain.len()..].eq_ignore_ascii_case(domain));
        matches.then_some(domain.len())
    } else {
        peer.eq_ignore_ascii_case(pattern).then_some(usize::MAX)
    }
}

/// How DNSSEC answers are judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnssecMode {
    /// Validate every answer locally against the trust anchors (default: the IANA root keys).
    #[default]
    Validate,
    /// Trust the AD bit of the configured resolver, which must be a validating resolver on a
    /// trusted path (loopback), as Postfix does with `smtp_dns_support_level = dnssec`.
    TrustAd,
    /// No DNSSEC: every answer is insecure, so DANE never applies.
    Off,
}

impl DnssecMode {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [Self; 3] = [Self::Validate, Self::TrustAd, Self::Off];

    /// The kebab-case name of the CLI and the policy file.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::TrustAd => "trust-ad",
            Self::Off => "off",
        }
    }

    /// Parses a kebab-case name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [policy]
        pin_duration_secs = 100

        [[destination]]
        peer = ".example.net"
        profile = "mandatory"

        [[destination]]
        peer = ".bank.example.net"
        profile = "authenticated-only"

        [[destination]]
        peer = "mx1.bank.example.net"
        profile = "no-fallback"
    "#;

    #[test]
    fn the_most_specific_destination_wins() {
        let file = PolicyFile::parse(FILE).unwrap();
        assert_eq!(
            file.policy_for("mx.other.org").profile,
            Profile::Opportunistic
        );
        assert_eq!(file.policy_for("mx.other.org").pin_duration_secs, 100);
        assert_eq!(file.policy_for("example.net").profile, Profile::Mandatory);
        assert_eq!(
            file.policy_for("MX.Example.NET.").profile,
            Profile::Mandatory
        );
        assert_eq!(
            file.policy_for("mx.bank.example.net").profile,
            Profile::AuthenticatedOnly
        );
        assert_eq!(
            file.policy_for("mx1.bank.example.net").profile,
            Profile::NoFallback
        );
        assert_eq!(
            file.policy_for("notexample.net").profile,
            Profile::Opportunistic
        );
        assert_eq!(
            file.policy_for("mx1.bank.example.net").pin_duration_secs,
            100
        );
    }

    #[test]
    fn unknown_keys_and_values_are_errors() {
        let typo = PolicyFile::parse("[policy]\npin_duration = 5\n").unwrap_err();
        assert!(format!("{typo:#}").contains("pin_duration"), "{typo:#}");
        let bad = PolicyFile::parse("[policy]\nprofile = \"paranoid\"\n").unwrap_err();
        assert!(format!("{bad:#}").contains("paranoid"), "{bad:#}");
        assert!(PolicyFile::parse("[[destination]]\npeer = \".\"\n").is_err());
    }
}
