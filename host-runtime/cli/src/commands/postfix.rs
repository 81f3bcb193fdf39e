//! `tlsfallback postfix serve` and `tlsfallback postfix config`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tlsfallback_mta::clock::Clock;
use tlsfallback_mta::store::HistoryStore;

use tlsfallback_mta::postfix::policy::LOW_CIPHERLIST;
use tlsfallback_mta::postfix::server::Operations;
use tlsfallback_mta::postfix::{Daemon, ListenAddress, serve};

use crate::flags::{DnsArgs, EngineArgs, SocketmapArgs, StoreArgs, TlsRptArgs, parse_named};
use crate::logging::LogFormat;

/// The `main.cf` lines that hand Postfix's TLS policy to the daemon at `address`.
#[must_use]
pub fn config_text(address: &ListenAddress, map_name: &str, log: Option<&Path>) -> String {
    let table = address.postfix_table(map_name);
    let log_note = match log {
        Some(path) => format!(
            "# The log the daemon follows (--log {0}); if Postfix logs through syslog instead,\n\
             # point --log at the file syslog writes (for example /var/log/mail.log).\n\
             maillog_file = {0}\n",
            path.display()
        ),
        None => {
            "# Start the daemon with --log pointing at Postfix's log (maillog_file, or the file\n\
                 # syslog writes, for example /var/log/mail.log): that is how it learns outcomes.\n"
                .to_owned()
        }
    };
    format!(
        "# tlsfallback: the TLS fallback dance for Postfix (add to main.cf, then `postfix reload`).\n\
         # Tables are searched in order: keep MTA-STS or DANE tables you already have before this one.\n\
         smtp_tls_policy_maps = {table}\n\
         # The daemon learns each attempt's outcome from these lines; recipients are logged with\n\
         # their local parts quoted (Postfix's default), so no address can pass for a field.\n\
         smtp_tls_loglevel = 1\n\
         info_log_address_format = external\n\
         # The legacy tier answers `ciphers=low`: TLS 1.0 and SHA-1 suites need OpenSSL security level 0.\n\
         tls_low_cipherlist = {LOW_CIPHERLIST}\n\
         {log_note}"
    )
}

/// Runs the daemon until it fails, logging where it listens (and serves metrics) first.
///
/// # Errors
///
/// As for [`serve`].
pub fn run(
    daemon: &mut Daemon<'_>,
    clock: &mut dyn Clock,
    address: &ListenAddress,
    log_file: Option<(&Path, bool)>,
    operations: Operations<'_>,
    map_name: &str,
    metrics_at: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    serve(daemon, clock, address, log_file, operations, &mut |bound| {
        // The listening line comes first (scripts wait for it), in the log's format.
        let table = bound.postfix_table(map_name);
        tracing::info!(
            event = "listening",
            address = %bound,
            table,
            "listening on {bound}; main.cf: smtp_tls_policy_maps = {table}"
        );
        if let Some(metrics_at) = metrics_at {
            tracing::info!(
                event = "metrics",
                address = %metrics_at,
                "metrics on http://{metrics_at}/metrics"
            );
        }
    })?;
    Ok(())
}

/// `tlsfallback postfix`.
#[derive(Debug, Args)]
pub(crate) struct PostfixCommand {
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

#[derive(Debug, Args)]
pub(crate) struct PostfixServeArgs {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) socketmap: SocketmapArgs,
    #[command(flatten)]
    pub(crate) fleet: crate::flags::FleetArgs,
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
    /// Forget a destination whose memory nothing changed for this many days (with --log, each
    /// delivery's outcome changes it), once its pin has run out too: its history, facts,
    /// unfinished dance and TLS-RPT ledger rows. 0 keeps everything forever.
    #[arg(
        long,
        value_name = "DAYS",
        default_value_t = tlsfallback_mta::postfix::daemon::DEFAULT_FORGET_AFTER_DAYS,
        value_parser = clap::value_parser!(u64).range(0..=36_500)
    )]
    pub(crate) forget_after: u64,
    /// Postfix's syslog_name: only lines tagged SYSLOG_NAME/smtp[PID] and SYSLOG_NAME/relay[PID]
    /// (its SMTP client services) are read as outcomes.
    #[arg(long, default_value = "postfix", value_parser = parse_syslog_name)]
    pub(crate) syslog_name: String,
    /// The most connections served at once (fewer if the descriptor limit allows fewer); at
    /// the limit a new connection takes the place of the one idle longest.
    #[arg(
        long,
        default_value_t = tlsfallback_mta::postfix::DaemonOptions::default().max_connections,
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
    pub(crate) mode: tlsfallback_mta::postfix::AnswerMode,
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
    /// The daemon's own TLS-RPT reports, from the log (for a Postfix without libtlsrpt; with
    /// it, use --tlsrpt and let Postfix report).
    #[command(flatten)]
    pub(crate) tlsrpt_report: TlsRptArgs,
    /// Serve metrics in the Prometheus text format at http://ADDRESS/metrics (off unless
    /// given; for example 127.0.0.1:9464).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) metrics: Option<String>,
    /// How the log on stderr is written: `human` (a line per lookup and outcome) or `json`
    /// (one object per record, with stable event names and fields).
    #[arg(long, default_value = LogFormat::default().name(), value_parser = parse_log_format)]
    pub(crate) log_format: LogFormat,
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    parse_named(&LogFormat::ALL, LogFormat::name, "log format", text)
}

fn parse_mode(text: &str) -> Result<tlsfallback_mta::postfix::AnswerMode, String> {
    tlsfallback_mta::postfix::AnswerMode::parse(text)
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

impl PostfixCommand {
    /// Serves, or prints the main.cf lines.
    ///
    /// # Errors
    ///
    /// The policy file, the engine, the database, the resolver's set-up, or the daemon's
    /// sockets and log.
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.action {
            PostfixAction::Config(config) => {
                print!(
                    "{}",
                    config_text(
                        &config.socketmap.listen,
                        &config.socketmap.map_name,
                        config.log.as_deref(),
                    )
                );
                Ok(())
            }
            PostfixAction::Serve(serve) => postfix_serve(&serve),
        }
    }
}

/// Runs the Postfix policy daemon until it fails.
fn postfix_serve(args: &PostfixServeArgs) -> anyhow::Result<()> {
    use tlsfallback_mta::postfix::{Daemon, DaemonOptions};
    crate::logging::install(args.log_format)?;
    let (policy_file, engine) = args.engine.resolve()?;
    let mut store = HistoryStore::open(&args.store.path())?;
    args.fleet
        .attach(&policy_file, engine.as_ref(), &mut store)?;
    let fleet_attached = store.fleet().is_some();
    let mut clock = tlsfallback_mta::clock::HostClock::from_env()?;
    let options = DaemonOptions {
        map_name: args.socketmap.map_name.clone(),
        dance_window_secs: args.dance_window_secs,
        poll_interval: std::time::Duration::from_millis(args.poll_ms),
        log_source: tlsfallback_mta::postfix::log::LogSource::for_syslog_name(&args.syslog_name),
        max_connections: args.max_connections,
        mode: args.mode,
        tlsrpt: args.tlsrpt,
        forget_after: (args.forget_after > 0)
            .then(|| std::time::Duration::from_secs(args.forget_after * 86_400)),
        ..DaemonOptions::default()
    };
    let reporting = args.tlsrpt_report.settings(&policy_file);
    if reporting.is_some() && args.no_resolve {
        anyhow::bail!(
            "--tlsrpt-socket and --tlsrpt-ledger need the resolver (the TLSRPT record and the \
             policies come with each floor): drop --no-resolve"
        );
    }
    if reporting.is_some() && args.log.is_none() {
        anyhow::bail!("--tlsrpt-socket and --tlsrpt-ledger report from Postfix's log: pass --log");
    }
    let floors = if args.no_resolve {
        None
    } else {
        let mut settings = tlsfallback_mta::postfix::floor::FloorSettings::new(
            args.dns.resolve_settings(&policy_file, 25),
            args.store.path(),
        );
        settings.budget = std::time::Duration::from_millis(args.resolve_budget_ms);
        settings.workers = args.resolve_workers;
        settings.refresh_after = std::time::Duration::from_secs(args.refresh_secs);
        settings.tlsrpt_records = reporting.is_some();
        Some(std::sync::Arc::new(
            tlsfallback_mta::postfix::floor::FloorService::start(settings)?,
        ))
    };
    // The listener starts before the daemon, so the ready line can say where it is.
    let (metrics, metrics_address) = match &args.metrics {
        Some(address) => {
            let mut metrics = tlsfallback_mta::postfix::metrics::Metrics::new();
            if let Some(floors) = &floors {
                metrics.watch_floors(floors.clone());
            }
            let metrics = std::sync::Arc::new(metrics);
            let bound = tlsfallback_mta::postfix::metrics::http::spawn(
                address,
                std::sync::Arc::clone(&metrics),
            )?;
            (Some(metrics), Some(bound))
        }
        None => (None, None),
    };
    let counted = metrics.clone();
    let mut log = move |event: &tlsfallback_mta::postfix::events::Event| {
        if let Some(metrics) = &counted {
            metrics.observe(event);
        }
        event.emit();
    };
    let mut daemon = Daemon::new(engine, store, policy_file, options, &mut log)?;
    if let Some(floors) = floors {
        daemon = daemon.with_floors(floors);
    }
    if let Some(reporting) = reporting {
        let client = reporting
            .socket
            .as_deref()
            .map(tlsfallback_mta::tlsrpt::client::TlsRptClient::new)
            .transpose()
            .context("making the TLS-RPT datagram socket")?;
        daemon = daemon.with_tlsrpt(client);
    }
    let log_file = args
        .log
        .as_deref()
        .map(|path| (path, args.forget_log_position));
    // SIGHUP reads the policy file and the plugin anew, as at start; the resolver's, the
    // fleet's and TLS-RPT's settings stay as they were read at start.
    let mut reload = || -> tlsfallback_mta::postfix::server::Reloaded {
        let (policy_file, engine) = args
            .engine
            .resolve()
            .map_err(|error| format!("{error:#}"))?;
        if fleet_attached && !engine.history_is_builtin_format() {
            return Err(
                "--fleet shares histories in the built-in format, and the new plugin \
                        keeps its own"
                    .to_owned(),
            );
        }
        Ok((policy_file, engine))
    };
    let policy_name = args
        .engine
        .policy
        .as_deref()
        .map_or_else(|| "built-in".to_owned(), |path| path.display().to_string());
    let operations = Operations {
        metrics,
        reload: Some(&mut reload),
        policy_name,
    };
    run(
        &mut daemon,
        &mut clock,
        &args.socketmap.listen,
        log_file,
        operations,
        &args.socketmap.map_name,
        metrics_address,
    )
}
