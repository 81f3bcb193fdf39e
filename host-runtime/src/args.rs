//! Command-line arguments: parsing and validation only, no effects.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tlsfallback_host::engine::EngineKind;
use tlsfallback_host::plugin::FailMode;

/// A TLS fallback policy engine for mail transfer agents.
#[derive(Debug, Parser)]
#[command(name = "tlsfallback", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Answer JSON Lines decision requests from stdin on stdout (see README for the contract).
    Decide(EngineArgs),
    /// Run the fallback dance over simulated time against built-in peer presets.
    Simulate(SimulateArgs),
    /// Deliver the message on stdin, with the dance, to the given MX hosts.
    Deliver(DeliverArgs),
    /// Show what the host resolves for a recipient domain (MX, DNSSEC, DANE, MTA-STS) and the
    /// floor that follows for each MX host.
    Resolve(ResolveArgs),
    /// Show or forget what is remembered about peers.
    Peers(PeersArgs),
    /// Start local peers and deliver to them twice with real sockets and handshakes.
    Demo(DemoArgs),
    /// Write the embedded policy component (.wasm) to a file, for jco, wasmtime-py or a C host
    /// (--tools: the playground's tools component).
    ExportComponent(ExportArgs),
    /// Operators' own policy components.
    Plugin(PluginArgs),
    /// Postfix: the socketmap policy daemon for smtp_tls_policy_maps, and its main.cf lines.
    Postfix(PostfixArgs),
    /// Serve the browser playground (built by scripts/playground) on 127.0.0.1 and print its URL.
    Playground(PlaygroundArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PlaygroundArgs {
    /// The built playground directory (default: ./playground, else the one in this source tree).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the URL printed says which).
    #[arg(long, default_value = "127.0.0.1:8437")]
    pub(crate) listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub(crate) struct PostfixArgs {
    #[command(subcommand)]
    pub(crate) action: PostfixAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PostfixAction {
    /// Answer Postfix's TLS policy lookups (socketmap) with the engine's decisions, and learn
    /// each attempt's outcome from Postfix's log.
    Serve(Box<PostfixServeArgs>),
    /// Print the main.cf lines that hand Postfix's TLS policy to the daemon.
    Config(PostfixConfigArgs),
}

/// Where the daemon listens and under which map name.
#[derive(Debug, Args)]
pub(crate) struct SocketmapArgs {
    /// inet:HOST:PORT, HOST:PORT or unix:PATH (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "inet:127.0.0.1:10027", value_parser = parse_listen)]
    pub(crate) listen: tlsfallback_host::postfix::ListenAddress,
    /// The socketmap name in Postfix's table (socketmap:inet:HOST:PORT:NAME).
    #[arg(long, default_value = "tlsfallback")]
    pub(crate) map_name: String,
}

#[derive(Debug, Args)]
pub(crate) struct PostfixServeArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) socketmap: SocketmapArgs,
    /// Postfix's log to learn outcomes from (maillog_file, or the file syslog writes); without
    /// it the daemon only answers, and never learns.
    #[arg(long, value_name = "FILE")]
    pub(crate) log: Option<PathBuf>,
    /// Forget where reading the log stopped, and start at its end.
    #[arg(long, requires = "log")]
    pub(crate) forget_log_position: bool,
    /// How long the next step of a dance waits for Postfix's retry, in seconds.
    #[arg(long, default_value_t = 3 * 3600)]
    pub(crate) dance_window_secs: u64,
    /// How often the log is read, in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub(crate) poll_ms: u64,
    /// Postfix's syslog_name: only lines tagged SYSLOG_NAME/smtp[PID] and SYSLOG_NAME/relay[PID]
    /// (its SMTP client services) are read as outcomes.
    #[arg(long, default_value = "postfix", value_parser = parse_syslog_name)]
    pub(crate) syslog_name: String,
    /// The most connections served at once (fewer if the descriptor limit allows fewer); at
    /// the limit a new connection takes the place of the one idle longest.
    #[arg(
        long,
        default_value_t = tlsfallback_host::postfix::DaemonOptions::default().max_connections,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub(crate) max_connections: usize,
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
    /// Do not resolve next hops (no DNSSEC, DANE or MTA-STS floor: only for a Postfix whose
    /// other tables or main.cf give the floor).
    #[arg(long, conflicts_with = "mode")]
    pub(crate) no_resolve: bool,
    /// What the answers carry: `dance` (the engine's dance under the DANE and MTA-STS floor) or
    /// `policy-table` (the floor alone, NOTFOUND where there is none: a drop-in replacement for
    /// postfix-mta-sts-resolver, DANE first).
    #[arg(long, default_value = "dance", value_parser = parse_mode)]
    pub(crate) mode: tlsfallback_host::postfix::AnswerMode,
    /// How long one lookup waits for a floor being resolved, in milliseconds; past it the answer
    /// is TEMP (Postfix defers) and the resolution goes on for the next lookup. Keep it well
    /// under Postfix's socketmap timeout (10 s).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=8000))]
    pub(crate) resolve_budget_ms: u64,
    /// How many next hops are resolved at once.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub(crate) resolve_workers: usize,
    /// How long a resolved floor is used before it is resolved again in the background, in
    /// seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) refresh_secs: u64,
    /// Add Postfix 3.10's TLSRPT attributes (policy_type, policy_domain, mx_host_pattern,
    /// policy_string, policy_failure) to the answers; Postfix 3.9 and older refuse them.
    #[arg(long)]
    pub(crate) tlsrpt: bool,
}

fn parse_mode(text: &str) -> Result<tlsfallback_host::postfix::AnswerMode, String> {
    tlsfallback_host::postfix::AnswerMode::parse(text)
}

fn parse_syslog_name(text: &str) -> Result<String, String> {
    let shaped = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if shaped {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a Postfix syslog_name (letters, digits, - _ . /)"
        ))
    }
}

#[derive(Debug, Args)]
pub(crate) struct PostfixConfigArgs {
    #[command(flatten)]
    pub(crate) socketmap: SocketmapArgs,
    /// The log file the daemon will follow (printed as maillog_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) log: Option<PathBuf>,
}

fn parse_listen(text: &str) -> Result<tlsfallback_host::postfix::ListenAddress, String> {
    tlsfallback_host::postfix::ListenAddress::parse(text)
}

#[derive(Debug, Args)]
pub(crate) struct PluginArgs {
    #[command(subcommand)]
    pub(crate) action: PluginAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginAction {
    /// Load a policy component as the host would, run every simulated peer with it and with the
    /// built-in engine, and print the differences, the guard's refusals and the cost per decision.
    Check(PluginCheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PluginCheckArgs {
    /// The component to check.
    #[arg(value_name = "FILE.wasm")]
    pub(crate) component: PathBuf,
    /// A policy file: its [policy] and its [plugin] limits apply.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Days of simulated mail per peer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// Also time loading from a precompiled-artifact cache in this directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) component_cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Where to write the component.
    #[arg(value_name = "PATH")]
    pub(crate) output: PathBuf,
    /// Write the tools component instead (the engine plus `tlsfallback:policy/tools`: the
    /// simulator, peer presets and history decoder the playground runs).
    #[arg(long)]
    pub(crate) tools: bool,
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
            .unwrap_or_else(tlsfallback_host::store::HistoryStore::default_path)
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
    pub(crate) dnssec: Option<tlsfallback_host::dns::DnssecMode>,
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
    pub(crate) fn settings(
        &self,
        file: &tlsfallback_host::config::PolicyFile,
    ) -> tlsfallback_host::dns::DnsSettings {
        tlsfallback_host::dns::DnsSettings {
            server: self.dns_server.or(file.dns.server),
            dnssec: self.dnssec.or(file.dns.dnssec).unwrap_or_default(),
            trust_anchor: self.trust_anchor.clone().or_else(|| {
                file.dns
                    .trust_anchor
                    .as_ref()
                    .map(|path| file.base_dir.join(path))
            }),
            timeout: std::time::Duration::from_secs(self.dns_timeout_secs),
            ..tlsfallback_host::dns::DnsSettings::default()
        }
    }
}

fn parse_dnssec(name: &str) -> Result<tlsfallback_host::dns::DnssecMode, String> {
    tlsfallback_host::dns::DnssecMode::from_name(name)
        .ok_or_else(|| format!("unknown DNSSEC mode {name:?}: validate, trust-ad or off"))
}

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// The recipient domain.
    pub(crate) domain: String,
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The operator's policy file (for its [dns] table).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// The SMTP port whose TLSA records apply (`_PORT._tcp.<mx>`).
    #[arg(long, default_value_t = 25)]
    pub(crate) port: u16,
    /// JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeliverArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
    /// The envelope sender (empty for the null reverse path).
    #[arg(long)]
    pub(crate) from: String,
    /// An envelope recipient (repeatable).
    #[arg(long, required = true)]
    pub(crate) to: Vec<String>,
    /// An MX host as HOST[:PORT], in preference order (repeatable); without it, the MX hosts
    /// of the recipients' domain are looked up in the DNS.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) mx: Vec<String>,
    /// The SMTP port of MX hosts found in the DNS.
    #[arg(long, default_value_t = 25)]
    pub(crate) port: u16,
    /// Our EHLO name: a domain or an address literal ([192.0.2.1], [IPv6:2001:db8::1]).
    #[arg(long, default_value = "localhost")]
    pub(crate) helo: String,
    /// The longest one attempt (connect to QUIT) may take, in seconds, however the peer trickles
    /// its bytes; each SMTP stage also has its own limit (Postfix's defaults).
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) attempt_timeout_secs: u64,
    /// How long a history write waits for another process's transaction, in milliseconds; past
    /// it, an update after a delivered message goes to the journal beside the database.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) db_busy_timeout_ms: u64,
    /// A PEM file of CA certificates for verified tiers (default: the system roots).
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
    /// A DNSSEC-validated TLSA record of the MX host, "USAGE SELECTOR MTYPE HEX" (repeatable);
    /// sets the DANE state to usable (or unusable when none is DANE-TA/DANE-EE that OpenSSL
    /// accepts). An override for tests: without --mx the host resolves TLSA itself.
    #[arg(long, value_name = "RECORD", value_parser = tlsfallback_host::tls::TlsaRecord::parse, requires = "mx")]
    pub(crate) tlsa: Vec<tlsfallback_host::tls::TlsaRecord>,
    /// The DANE TLSA state of the --mx hosts, as the caller resolved it (`usable` needs --tlsa;
    /// without --mx the host resolves it).
    #[arg(long, default_value = "none", value_parser = parse_dane, requires = "mx")]
    pub(crate) dane: policy_core::Dane,
    /// The MTA-STS state of the recipient domain for the --mx hosts, as the caller resolved it
    /// (without --mx the host resolves it).
    #[arg(long, default_value = "none", value_parser = parse_mta_sts, requires = "mx")]
    pub(crate) mta_sts: policy_core::MtaSts,
    /// The message was received with REQUIRETLS.
    #[arg(long)]
    pub(crate) requiretls: bool,
    /// The message carries TLS-Required: No.
    #[arg(long)]
    pub(crate) tls_required_no: bool,
    /// SASL credentials will be sent.
    #[arg(long)]
    pub(crate) sasl: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PeersArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// JSON instead of one line per peer.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) action: PeersAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PeersAction {
    /// Every remembered peer.
    List,
    /// One peer.
    Show {
        /// The MX host name.
        peer: String,
    },
    /// Forget a peer.
    Forget {
        /// The MX host name.
        peer: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Keep the history here (default: a fresh temporary database, so every run starts unknown).
    #[arg(long, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,
}

fn parse_dane(name: &str) -> Result<policy_core::Dane, String> {
    policy_core::Dane::from_name(name).ok_or_else(|| {
        format!("unknown DANE state {name:?}: none, usable, unusable or lookup-failed")
    })
}

fn parse_mta_sts(name: &str) -> Result<policy_core::MtaSts, String> {
    policy_core::MtaSts::from_name(name).ok_or_else(|| {
        format!("unknown MTA-STS state {name:?}: none, testing, enforce or fetch-failed")
    })
}

/// Options shared by every command that decides.
#[derive(Debug, Args)]
pub(crate) struct EngineArgs {
    /// Which engine decides.
    #[arg(long, value_enum, default_value_t = EngineKind::Component)]
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
    #[arg(long, value_enum, requires = "policy_component")]
    pub(crate) fail_mode: Option<FailMode>,
    /// Where precompiled policy components are cached (default: the policy file's, else
    /// ~/.cache/tlsfallback/components).
    #[arg(long, value_name = "DIR")]
    pub(crate) component_cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// Peer presets to simulate (repeatable); all of them when absent.
    #[arg(long = "preset", value_name = "NAME", value_parser = parse_preset)]
    pub(crate) presets: Vec<policy_core::sim::Preset>,
    /// Days of mail to simulate.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// New messages per day.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub(crate) messages_per_day: u32,
    /// The simulated queue's shortest gap between two tries of a deferred message, in seconds
    /// (Postfix `minimal_backoff_time`); the gap is the message's age in the queue, clamped
    /// between this and --maximal-backoff, and never shorter than the engine's retry-after.
    #[arg(long, value_name = "SECS", default_value_t = policy_core::sim::QueueBackoff::POSTFIX.minimal_secs,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub(crate) minimal_backoff: u64,
    /// The simulated queue's longest gap between two tries of a deferred message, in seconds
    /// (Postfix `maximal_backoff_time`).
    #[arg(long, value_name = "SECS", default_value_t = policy_core::sim::QueueBackoff::POSTFIX.maximal_secs,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86_400))]
    pub(crate) maximal_backoff: u64,
    /// Print one JSON object per preset (totals, and each delivery try's tiers and reasons)
    /// instead of the timeline.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_preset(name: &str) -> Result<policy_core::sim::Preset, String> {
    policy_core::sim::Preset::from_name(name).ok_or_else(|| {
        let known: Vec<_> = policy_core::sim::Preset::ALL
            .iter()
            .map(|p| p.name())
            .collect();
        format!("unknown preset {name:?}; known: {}", known.join(", "))
    })
}
