//! The flag groups several subcommands share, and how each resolves, once, into the settings
//! the libraries take (flags over the policy file over the environment over the defaults).

use std::path::PathBuf;

use clap::Args;
use tlsfallback_engine::EngineKind;
use tlsfallback_engine::config::PolicyFile;
use tlsfallback_engine::decider::DecisionEngine;
use tlsfallback_engine::plugin::{FailMode, PluginConfig};

/// Where the daemon listens and under which map name.
#[derive(Debug, Args)]
pub(crate) struct SocketmapArgs {
    /// inet:HOST:PORT, HOST:PORT or unix:PATH (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "inet:127.0.0.1:10027", value_parser = parse_listen)]
    pub(crate) listen: tlsfallback_mta::postfix::ListenAddress,
    /// The socketmap name in Postfix's table (socketmap:inet:HOST:PORT:NAME).
    #[arg(long, default_value = "tlsfallback")]
    pub(crate) map_name: String,
}

pub(crate) fn parse_listen(text: &str) -> Result<tlsfallback_mta::postfix::ListenAddress, String> {
    tlsfallback_mta::postfix::ListenAddress::parse(text)
}

/// Where peer history lives.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The history database (default: $TLSFALLBACK_DB, else ~/.local/state/tlsfallback/peers.sqlite3).
    #[arg(long, value_name = "PATH", global = true)]
    pub(crate) db: Option<PathBuf>,
}

impl StoreArgs {
    /// The database path: `--db`, else the default location.
    pub(crate) fn path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(tlsfallback_mta::store::HistoryStore::default_path)
    }
}

/// Where and how the host resolves MX, TLSA and MTA-STS (flags over the policy file's [dns]).
#[derive(Debug, Args)]
pub(crate) struct DnsArgs {
    /// The name server, ADDR:PORT (default: the policy file's, else the first nameserver of
    /// /etc/resolv.conf).
    #[arg(long, value_name = "ADDR:PORT", env = "TLSFALLBACK_DNS_SERVER")]
    pub(crate) dns_server: Option<std::net::SocketAddr>,
    /// How DNSSEC is judged: validate locally against the trust anchors, trust the AD bit of a
    /// local validating resolver, or off (no DANE).
    #[arg(long, value_parser = parse_dnssec)]
    pub(crate) dnssec: Option<tlsfallback_mta::dns::DnssecMode>,
    /// DNSKEY trust anchors in zone-file format (default: the IANA root keys).
    #[arg(long, value_name = "FILE")]
    pub(crate) trust_anchor: Option<PathBuf>,
    /// How long one DNS query waits, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub(crate) dns_timeout_secs: u64,
    /// A PEM file of the only CAs MTA-STS policy servers may use (default: the system roots).
    #[arg(long, value_name = "PEM")]
    pub(crate) mta_sts_ca_file: Option<PathBuf>,
    /// The port of MTA-STS policy servers (443; other values are for tests on loopback).
    #[arg(long, default_value_t = 443, hide = true)]
    pub(crate) mta_sts_port: u16,
}

impl DnsArgs {
    /// The resolver's settings: each flag, else the policy file's `[dns]`, else the default.
    pub(crate) fn settings(&self, file: &PolicyFile) -> tlsfallback_mta::dns::DnsSettings {
        tlsfallback_mta::dns::DnsSettings {
            server: self.dns_server.or(file.dns.server),
            dnssec: self.dnssec.or(file.dns.dnssec).unwrap_or_default(),
            trust_anchor: self.trust_anchor.clone().or_else(|| {
                file.dns
                    .trust_anchor
                    .as_ref()
                    .map(|path| file.base_dir.join(path))
            }),
            timeout: std::time::Duration::from_secs(self.dns_timeout_secs),
            ..tlsfallback_mta::dns::DnsSettings::default()
        }
    }
}

/// Where TLS-RPT results go (flags over the policy file's `[tlsrpt]`); off by default.
#[derive(Debug, Args)]
pub(crate) struct TlsRptArgs {
    /// Report each delivery attempt's TLS-RPT result (RFC 8460) to the tlsrpt-collectd
    /// listening on this Unix datagram socket, as Postfix's libtlsrpt does; never waits.
    #[arg(long, value_name = "PATH")]
    pub(crate) tlsrpt_socket: Option<PathBuf>,
    /// Keep TLS-RPT results in the history database for `tlsrpt preview`, with or without a
    /// collectd.
    #[arg(long)]
    pub(crate) tlsrpt_ledger: bool,
}

/// TLS-RPT, resolved: on, and where the results go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsRptSettings {
    /// The collectd socket (none: only the ledger).
    pub(crate) socket: Option<PathBuf>,
}

impl TlsRptArgs {
    /// `None` when TLS-RPT is off (no socket and no ledger anywhere).
    pub(crate) fn settings(&self, file: &PolicyFile) -> Option<TlsRptSettings> {
        let socket = self.tlsrpt_socket.clone().or_else(|| {
            file.tlsrpt
                .socket
                .as_ref()
                .map(|path| file.base_dir.join(path))
        });
        (socket.is_some() || self.tlsrpt_ledger || file.tlsrpt.ledger)
            .then_some(TlsRptSettings { socket })
    }
}

/// The fleet's shared histories in Redis (flags over the policy file's `[fleet]`); off by
/// default.
#[derive(Debug, Args)]
pub(crate) struct FleetArgs {
    /// Share peer histories with the other nodes of a fleet through this Redis (or Valkey):
    /// redis://[USER:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS. Decisions still come from
    /// local history when it is slow or down.
    #[arg(
        long,
        value_name = "URL",
        env = "TLSFALLBACK_FLEET",
        hide_env_values = true
    )]
    pub(crate) fleet: Option<String>,
    /// The --fleet URL is a node of a Redis Cluster.
    #[arg(long)]
    pub(crate) fleet_cluster: bool,
    /// A PEM file of the CAs a rediss:// fleet server is checked against (default: the system's).
    #[arg(long, value_name = "PEM")]
    pub(crate) fleet_ca_file: Option<PathBuf>,
    /// The longest a decision waits for the fleet's Redis, in milliseconds [default: 50].
    #[arg(long, value_name = "MS")]
    pub(crate) fleet_budget_ms: Option<u64>,
    /// How long a shared copy read from Redis is trusted, in seconds [default: 5].
    #[arg(long, value_name = "SECS")]
    pub(crate) fleet_cache_ttl_secs: Option<u64>,
}

impl FleetArgs {
    /// `None` when no fleet is configured anywhere.
    pub(crate) fn settings(
        &self,
        file: &PolicyFile,
    ) -> Option<tlsfallback_mta::fleet::FleetSettings> {
        use std::time::Duration;
        let url = self.fleet.clone().or_else(|| file.fleet.url.clone())?;
        let mut settings = tlsfallback_mta::fleet::FleetSettings::new(url);
        settings.cluster = self.fleet_cluster || file.fleet.cluster;
        settings.ca_file = self.fleet_ca_file.clone().or_else(|| {
            file.fleet
                .ca_file
                .as_ref()
                .map(|path| file.base_dir.join(path))
        });
        if let Some(ms) = self.fleet_budget_ms.or(file.fleet.budget_ms) {
            settings.budget = Duration::from_millis(ms);
        }
        if let Some(secs) = self.fleet_cache_ttl_secs.or(file.fleet.cache_ttl_secs) {
            settings.cache_ttl = Duration::from_secs(secs);
        }
        settings.key_ttl =
            tlsfallback_mta::fleet::key_ttl_for(&file.policies().collect::<Vec<_>>());
        Some(settings)
    }

    /// Attaches the fleet, when one is configured, to `store`.
    ///
    /// # Errors
    ///
    /// A fleet with an engine whose histories are not in the built-in format (a plugin's own):
    /// they cannot be merged; a bad URL or CA file.
    pub(crate) fn attach(
        &self,
        file: &PolicyFile,
        engine: &dyn DecisionEngine,
        store: &mut tlsfallback_mta::store::HistoryStore,
    ) -> anyhow::Result<()> {
        let Some(settings) = self.settings(file) else {
            return Ok(());
        };
        if !engine.history_is_builtin_format() {
            anyhow::bail!(
                "--fleet shares histories in the built-in format, and this plugin keeps its own: \
                 drop --fleet, or let the plugin use the built-in history"
            );
        }
        store.attach_fleet(tlsfallback_mta::fleet::Fleet::connect(settings)?);
        Ok(())
    }
}

pub(crate) fn parse_dnssec(name: &str) -> Result<tlsfallback_mta::dns::DnssecMode, String> {
    tlsfallback_mta::dns::DnssecMode::from_name(name)
        .ok_or_else(|| format!("unknown DNSSEC mode {name:?}: validate, trust-ad or off"))
}

pub(crate) fn parse_dane(name: &str) -> Result<policy_core::Dane, String> {
    policy_core::Dane::from_name(name).ok_or_else(|| {
        format!("unknown DANE state {name:?}: none, usable, unusable or lookup-failed")
    })
}

pub(crate) fn parse_mta_sts(name: &str) -> Result<policy_core::MtaSts, String> {
    policy_core::MtaSts::from_name(name).ok_or_else(|| {
        format!("unknown MTA-STS state {name:?}: none, testing, enforce or fetch-failed")
    })
}

/// Options shared by every command that decides.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Which engine decides.
    #[arg(long, default_value = EngineKind::default().name(), value_parser = parse_engine)]
    pub(crate) engine: EngineKind,
    /// The operator's policy file (TOML: a [policy] table, [[destination]] overrides, a
    /// [plugin] table).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// An operator's own policy component to decide instead of the built-in one (overrides the
    /// policy file's [plugin] component); it runs under limits, and the host refuses any decision
    /// below the floor.
    #[arg(long, value_name = "FILE.wasm")]
    pub(crate) policy_component: Option<PathBuf>,
    /// What to do when the policy component fails or its decision is refused (default: the
    /// policy file's, else fail-closed).
    #[arg(long, requires = "policy_component", value_parser = parse_fail_mode)]
    pub(crate) fail_mode: Option<FailMode>,
    /// Where precompiled policy components are cached (default: the policy file's, else
    /// ~/.cache/tlsfallback/components).
    #[arg(long, value_name = "DIR")]
    pub(crate) component_cache: Option<PathBuf>,
}

/// A name from a library enum's own list: the library stays free of clap, and the names have one
/// source (the enum's `ALL` and `name`).
pub(crate) fn parse_named<T: Copy>(
    all: &[T],
    name_of: fn(T) -> &'static str,
    what: &str,
    text: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|value| name_of(*value) == text)
        .ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|value| name_of(*value)).collect();
            format!("unknown {what} {text:?}: {}", names.join(", "))
        })
}

pub(crate) fn parse_engine(text: &str) -> Result<EngineKind, String> {
    parse_named(&EngineKind::ALL, EngineKind::name, "engine", text)
}

pub(crate) fn parse_fail_mode(text: &str) -> Result<FailMode, String> {
    parse_named(&FailMode::ALL, FailMode::name, "fail mode", text)
}

impl EngineArgs {
    /// The policy file (`--policy`, else the built-in defaults).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a valid policy file.
    pub(crate) fn policy_file(&self) -> anyhow::Result<PolicyFile> {
        Ok(self
            .policy
            .as_deref()
            .map_or_else(|| Ok(PolicyFile::default()), PolicyFile::load)?)
    }

    /// The engine the flags and the policy file ask for: the flags override the file's
    /// `[plugin]` table.
    ///
    /// # Errors
    ///
    /// When the plugin's settings are invalid or its component does not load.
    pub(crate) fn open_engine(
        &self,
        policy_file: &PolicyFile,
    ) -> anyhow::Result<Box<dyn DecisionEngine>> {
        let mut plugin = policy_file.plugin_config()?;
        if let Some(component) = &self.policy_component {
            let mut config = plugin.unwrap_or_else(|| PluginConfig::new(component.clone()));
            config.component.clone_from(component);
            plugin = Some(config);
        }
        if let Some(config) = &mut plugin {
            if let Some(fail_mode) = self.fail_mode {
                config.fail_mode = fail_mode;
            }
            if let Some(dir) = &self.component_cache {
                config.cache_dir = Some(dir.clone());
            }
        }
        Ok(tlsfallback_engine::open(self.engine, plugin.as_ref())?)
    }

    /// Both: the policy file, and the engine it and the flags ask for.
    ///
    /// # Errors
    ///
    /// As for [`policy_file`](Self::policy_file) and [`open_engine`](Self::open_engine).
    pub(crate) fn resolve(&self) -> anyhow::Result<(PolicyFile, Box<dyn DecisionEngine>)> {
        let policy_file = self.policy_file()?;
        let engine = self.open_engine(&policy_file)?;
        Ok((policy_file, engine))
    }
}

impl DnsArgs {
    /// Everything the resolution of one domain needs: the DNS flags over the policy file's
    /// `[dns]`, the MTA-STS fetch settings, and the SMTP port whose TLSA records apply.
    pub(crate) fn resolve_settings(
        &self,
        policy_file: &PolicyFile,
        port: u16,
    ) -> tlsfallback_mta::resolve::ResolveSettings {
        tlsfallback_mta::resolve::ResolveSettings {
            dns: self.settings(policy_file),
            fetch: tlsfallback_mta::mta_sts::FetchSettings {
                port: self.mta_sts_port,
                ca_file: self.mta_sts_ca_file.clone(),
                ..tlsfallback_mta::mta_sts::FetchSettings::default()
            },
            port,
        }
    }
}
