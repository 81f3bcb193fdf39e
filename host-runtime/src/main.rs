//! The `tlsfallback` command: parses arguments, then hands over to `tlsfallback_host::commands`.

mod args;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser as _;
use tlsfallback_host::commands::{decide, playground, simulate};
use tlsfallback_host::config::PolicyFile;
use tlsfallback_host::engine;

use args::{
    Cli, Command, DeliverArgs, EngineArgs, PeersAction, PeersArgs, PluginAction, PostfixAction,
};
use tlsfallback_host::commands::deliver::{PeerView, exit};
use tlsfallback_host::store::HistoryStore;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Deliver(args) => return ExitCode::from(deliver(&args)),
        Command::Peers(args) => peers(&args),
        Command::Resolve(args) => resolve(&args),
        command => run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tlsfallback: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Delivers the message on stdin; the exit code tells the caller whether to keep it.
fn deliver(args: &DeliverArgs) -> u8 {
    use std::io::Read as _;
    use tlsfallback_host::commands::deliver::{
        check_address, check_helo_name, format_attempt, parse_mx, summarize,
    };
    use tlsfallback_host::delivery::{DeliveryJob, deliver};
    let fail = |code: u8, error: anyhow::Error| {
        eprintln!("tlsfallback: {error:#}");
        code
    };
    if let Err(e) = check_address(&args.from, false) {
        return fail(exit::USAGE, e.context("--from"));
    }
    for to in &args.to {
        if let Err(e) = check_address(to, true) {
            return fail(exit::USAGE, e.context("--to"));
        }
    }
    if let Err(e) = check_helo_name(&args.helo) {
        return fail(exit::USAGE, e.context("--helo"));
    }
    let dane = if args.tlsa.is_empty() {
        if args.dane == policy_core::Dane::Usable {
            return fail(
                exit::USAGE,
                anyhow::anyhow!(
                    "--dane usable needs the TLSA records to verify with: pass them with --tlsa"
                ),
            );
        }
        args.dane
    } else if args.dane != policy_core::Dane::None {
        return fail(
            exit::USAGE,
            anyhow::anyhow!("give either --tlsa records or --dane, not both"),
        );
    } else {
        match tlsfallback_host::tls::usable_tlsa_records(&args.tlsa) {
            Ok(usable) if !usable.is_empty() => policy_core::Dane::Usable,
            Ok(_) => {
                eprintln!(
                    "tlsfallback: no --tlsa record is usable (usage 2 or 3 and accepted by \
                     OpenSSL): the TLSA RRset is unusable (RFC 7672 section 2.2)"
                );
                policy_core::Dane::Unusable
            }
            Err(e) => return fail(exit::TEMPFAIL, anyhow::anyhow!(e)),
        }
    };
    let mut destinations = Vec::new();
    if args.mx.is_empty() {
        match destinations_from_dns(args) {
            Ok(found) => destinations = found,
            Err((code, error)) => return fail(code, error),
        }
    } else {
        for spec in &args.mx {
            match parse_mx(spec) {
                Ok(destination) => destinations.push(destination),
                // A name that does not resolve now may resolve later: keep the message.
                Err(e) => eprintln!("tlsfallback: skipping --mx {spec}: {e:#}"),
            }
        }
    }
    if destinations.is_empty() {
        return fail(
            exit::TEMPFAIL,
            anyhow::anyhow!("no MX host could be resolved"),
        );
    }
    let mut data = Vec::new();
    if let Err(e) = io::stdin().lock().read_to_end(&mut data) {
        return fail(
            74,
            anyhow::Error::from(e).context("reading the message from stdin"),
        );
    }
    if let Err(line) = tlsfallback_host::smtp::check_message(&data) {
        return fail(
            exit::DATA_ERROR,
            anyhow::anyhow!(
                "line {line} of the message is longer than SMTP allows (998 characters)"
            ),
        );
    }
    let setup = (|| -> anyhow::Result<_> {
        let policy_file = load_policy(&args.engine)?;
        let engine = open_engine(&args.engine, &policy_file)?;
        let busy = std::time::Duration::from_millis(args.db_busy_timeout_ms);
        let store = HistoryStore::open_with_busy_timeout(&args.store.path(), busy)?;
        let clock = tlsfallback_host::clock::HostClock::from_env()?;
        Ok((policy_file, engine, store, clock))
    })();
    let (policy_file, mut engine, mut store, mut clock) = match setup {
        Ok(parts) => parts,
        Err(e) => return fail(exit::TEMPFAIL, e),
    };
    let job = DeliveryJob {
        message: tlsfallback_host::smtp::Message {
            from: &args.from,
            to: &args.to,
            data: &data,
        },
        destinations,
        context: policy_core::DeliveryContext {
            dane,
            mta_sts: args.mta_sts,
            requiretls: args.requiretls,
            tls_required_no: args.tls_required_no,
            sasl: args.sasl,
        },
        helo_name: args.helo.clone(),
        anchors: tlsfallback_host::tls::TrustAnchors {
            ca_file: args.ca_file.clone(),
            tlsa: args.tlsa.clone(),
        },
        timeouts: tlsfallback_host::smtp::Timeouts {
            attempt: std::time::Duration::from_secs(args.attempt_timeout_secs),
            ..tlsfallback_host::smtp::Timeouts::default()
        },
    };
    let mut log =
        |line: &tlsfallback_host::delivery::AttemptLine| eprintln!("{}", format_attempt(line));
    let mut warn = |line: &str| eprintln!("tlsfallback: warning: {line}");
    match deliver(
        engine.as_mut(),
        &mut store,
        &policy_file,
        &mut clock,
        &job,
        &mut log,
        &mut warn,
    ) {
        Ok(result) => {
            let (summary, code) = summarize(&result);
            eprintln!("{summary}");
            code
        }
        // The store or the engine failed: nothing was lost, the caller keeps the message.
        Err(e) => fail(exit::TEMPFAIL, e),
    }
}

/// The recipients' domain, or a usage error when they are in several.
fn recipient_domain(to: &[String]) -> Result<String, (u8, anyhow::Error)> {
    let domains: std::collections::BTreeSet<String> = to
        .iter()
        .filter_map(|to| to.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .collect();
    let mut domains = domains.into_iter();
    let (Some(domain), None) = (domains.next(), domains.next()) else {
        return Err((
            exit::USAGE,
            anyhow::anyhow!("recipients in several domains: deliver once per domain, or pass --mx"),
        ));
    };
    Ok(domain)
}

/// The MX hosts of the recipients' domain with what the host resolved for each (DNSSEC, DANE,
/// MTA-STS).
fn destinations_from_dns(
    args: &DeliverArgs,
) -> Result<Vec<tlsfallback_host::delivery::Destination>, (u8, anyhow::Error)> {
    use tlsfallback_host::clock::Clock as _;
    use tlsfallback_host::commands::resolve::{DomainResolver, destinations};
    let domain = recipient_domain(&args.to)?;
    let temp = |e: anyhow::Error| (exit::TEMPFAIL, e);
    let policy_file = load_policy(&args.engine).map_err(temp)?;
    let settings = resolve_settings(&args.dns, &policy_file, args.port);
    let resolver = DomainResolver::new(&settings, &args.store.path()).map_err(temp)?;
    let now = tlsfallback_host::clock::HostClock::from_env()
        .map_err(temp)?
        .now();
    let resolution = resolver.resolve(&domain, now);
    let (found, skipped) = destinations(&resolution, args.port)
        .map_err(|no| (no.exit_code, anyhow::anyhow!(no.reason)))?;
    for line in skipped {
        eprintln!("tlsfallback: {line}");
    }
    Ok(found)
}

fn resolve_settings(
    dns: &args::DnsArgs,
    policy_file: &PolicyFile,
    port: u16,
) -> tlsfallback_host::commands::resolve::ResolveSettings {
    tlsfallback_host::commands::resolve::ResolveSettings {
        dns: dns.settings(policy_file),
        fetch: tlsfallback_host::mta_sts::FetchSettings {
            port: dns.mta_sts_port,
            ca_file: dns.mta_sts_ca_file.clone(),
            ..tlsfallback_host::mta_sts::FetchSettings::default()
        },
        port,
    }
}

/// `tlsfallback resolve`: what the host resolves for a domain, and the floor of each MX.
fn resolve(args: &args::ResolveArgs) -> anyhow::Result<()> {
    use tlsfallback_host::clock::Clock as _;
    use tlsfallback_host::commands::resolve::{DomainResolver, to_json, to_text};
    let policy_file = match &args.policy {
        Some(path) => PolicyFile::load(path)?,
        None => PolicyFile::default(),
    };
    let settings = resolve_settings(&args.dns, &policy_file, args.port);
    let resolver = DomainResolver::new(&settings, &args.store.path())?;
    let now = tlsfallback_host::clock::HostClock::from_env()?.now();
    let resolution = resolver.resolve(&args.domain, now);
    let mut stdout = io::stdout().lock();
    if args.json {
        serde_json::to_writer(
            &mut stdout,
            &to_json(&resolution, Some(resolver.dns().cache_stats())),
        )?;
        writeln!(stdout)?;
    } else {
        writeln!(stdout, "{}", to_text(&resolution))?;
    }
    Ok(())
}

fn peers(args: &PeersArgs) -> anyhow::Result<()> {
    let path = args.store.path();
    let store = HistoryStore::open(&path)?;
    let mut stdout = io::stdout().lock();
    match &args.action {
        PeersAction::List => {
            let views: Vec<_> = store.list()?.iter().map(PeerView::new).collect();
            if args.json {
                serde_json::to_writer(&mut stdout, &views)?;
                writeln!(stdout)?;
            } else {
                for view in views {
                    writeln!(stdout, "{}", view.line())?;
                }
            }
        }
        PeersAction::Show { peer } => {
            let peer = &tlsfallback_host::store::peer_key(peer);
            let row = store
                .get(peer)?
                .ok_or_else(|| anyhow::anyhow!("no history for {peer} in {}", path.display()))?;
            let view = PeerView::new(&row);
            if args.json {
                serde_json::to_writer(&mut stdout, &view)?;
                writeln!(stdout)?;
            } else {
                writeln!(stdout, "{}", view.line())?;
            }
        }
        PeersAction::Forget { peer } => {
            let peer = &tlsfallback_host::store::peer_key(peer);
            if !store.forget(peer)? {
                anyhow::bail!("no history for {peer} in {}", path.display());
            }
            writeln!(stdout, "forgot {peer}")?;
        }
    }
    Ok(())
}

fn load_policy(args: &EngineArgs) -> anyhow::Result<PolicyFile> {
    args.policy
        .as_deref()
        .map_or_else(|| Ok(PolicyFile::default()), PolicyFile::load)
}

/// The engine the arguments and the policy file ask for: the flags override the file's
/// `[plugin]` table.
fn open_engine(
    args: &EngineArgs,
    policy_file: &PolicyFile,
) -> anyhow::Result<Box<dyn engine::DecisionEngine>> {
    let mut plugin = policy_file.plugin_config()?;
    if let Some(component) = &args.policy_component {
        let mut config = plugin
            .unwrap_or_else(|| tlsfallback_host::plugin::PluginConfig::new(component.clone()));
        config.component.clone_from(component);
        plugin = Some(config);
    }
    if let Some(config) = &mut plugin {
        if let Some(fail_mode) = args.fail_mode {
            config.fail_mode = fail_mode;
        }
        if let Some(dir) = &args.component_cache {
            config.cache_dir = Some(dir.clone());
        }
    }
    engine::open(args.engine, plugin.as_ref())
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Decide(args) => {
            let policy_file = load_policy(&args)?;
            let mut engine = open_engine(&args, &policy_file)?;
            let stdin = io::stdin().lock();
            let stdout = io::BufWriter::new(io::stdout().lock());
            decide::run(engine.as_mut(), &policy_file, stdin, stdout)?;
            Ok(())
        }
        Command::Simulate(args) => {
            let policy_file = load_policy(&args.engine)?;
            let policy = policy_file.default_policy();
            let mut engine = open_engine(&args.engine, &policy_file)?;
            let presets = if args.presets.is_empty() {
                policy_core::sim::Preset::ALL.to_vec()
            } else {
                args.presets
            };
            let options = simulate::SimulateOptions {
                days: args.days,
                messages_per_day: args.messages_per_day,
                backoff: policy_core::sim::QueueBackoff {
                    minimal_secs: args.minimal_backoff,
                    maximal_secs: args.maximal_backoff,
                },
            };
            let mut stdout = io::stdout().lock();
            for preset in presets {
                let timeline = simulate::run(engine.as_mut(), &policy, preset, options)?;
                if args.json {
                    writeln!(stdout, "{}", simulate::to_json(preset, options, &timeline))?;
                    continue;
                }
                let start = policy_core::sim::Scenario::new(preset.peer(), policy).start;
                writeln!(
                    stdout,
                    "{}",
                    simulate::render(preset, &policy, &timeline, start)
                )?;
            }
            Ok(())
        }
        Command::Playground(args) => {
            let dir = args.dir.unwrap_or_else(|| {
                let here = PathBuf::from("playground");
                if here.join(playground::BUILT_MARKER).is_file() {
                    here
                } else {
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../playground")
                }
            });
            let server = playground::PlaygroundServer::bind(&dir, args.listen)?;
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "playground: {}", server.url()?)?;
            writeln!(stdout, "serving {} (Ctrl-C stops)", dir.display())?;
            stdout.flush()?;
            drop(stdout);
            server.serve_forever();
            Ok(())
        }
        Command::Demo(args) => {
            let mut engine = open_engine(&args.engine, &load_policy(&args.engine)?)?;
            let temporary = tempfile_dir()?;
            let path = args
                .db
                .clone()
                .unwrap_or_else(|| temporary.join("peers.sqlite3"));
            let mut store = HistoryStore::open(&path)?;
            let mut stdout = io::stdout().lock();
            let result =
                tlsfallback_host::commands::demo::run(engine.as_mut(), &mut store, &mut stdout);
            if args.db.is_none() {
                let _ = std::fs::remove_dir_all(&temporary);
            }
            result
        }
        Command::ExportComponent(args) => std::fs::write(
            &args.output,
            if args.tools {
                tlsfallback_host::component::TOOLS_COMPONENT
            } else {
                tlsfallback_host::component::EMBEDDED_COMPONENT
            },
        )
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", args.output.display())),
        Command::Plugin(args) => match args.action {
            PluginAction::Check(check) => {
                let policy_file = check
                    .policy
                    .as_deref()
                    .map_or_else(|| Ok(PolicyFile::default()), PolicyFile::load)?;
                let mut config = policy_file.plugin_config()?.unwrap_or_else(|| {
                    tlsfallback_host::plugin::PluginConfig::new(check.component.clone())
                });
                config.component = check.component;
                config.cache_dir = check.component_cache;
                tlsfallback_host::commands::plugin::check(
                    &config,
                    &policy_file.default_policy(),
                    check.days,
                    &mut io::stdout().lock(),
                )
            }
        },
        Command::Postfix(args) => match args.action {
            PostfixAction::Config(config) => {
                print!(
                    "{}",
                    tlsfallback_host::commands::postfix::config_text(
                        &config.socketmap.listen,
                        &config.socketmap.map_name,
                        config.log.as_deref(),
                    )
                );
                Ok(())
            }
            PostfixAction::Serve(serve) => postfix_serve(&serve),
        },
        Command::Deliver(_) | Command::Peers(_) | Command::Resolve(_) => {
            unreachable!("handled in main")
        }
    }
}

/// Runs the Postfix policy daemon until it fails.
fn postfix_serve(args: &args::PostfixServeArgs) -> anyhow::Result<()> {
    use tlsfallback_host::postfix::{Daemon, DaemonOptions};
    let policy_file = load_policy(&args.engine)?;
    let mut engine = open_engine(&args.engine, &policy_file)?;
    let store = HistoryStore::open(&args.store.path())?;
    let mut clock = tlsfallback_host::clock::HostClock::from_env()?;
    let options = DaemonOptions {
        map_name: args.socketmap.map_name.clone(),
        dance_window_secs: args.dance_window_secs,
        poll_interval: std::time::Duration::from_millis(args.poll_ms),
        log_source: tlsfallback_host::postfix::log::LogSource::for_syslog_name(&args.syslog_name),
        max_connections: args.max_connections,
        mode: args.mode,
        tlsrpt: args.tlsrpt,
        ..DaemonOptions::default()
    };
    let floors = if args.no_resolve {
        None
    } else {
        let mut settings = tlsfallback_host::postfix::floor::FloorSettings::new(
            resolve_settings(&args.dns, &policy_file, 25),
            args.store.path(),
        );
        settings.budget = std::time::Duration::from_millis(args.resolve_budget_ms);
        settings.workers = args.resolve_workers;
        settings.refresh_after = std::time::Duration::from_secs(args.refresh_secs);
        Some(std::sync::Arc::new(
            tlsfallback_host::postfix::floor::FloorService::start(settings)?,
        ))
    };
    let mut log = |line: &str| eprintln!("{line}");
    let mut daemon = Daemon::new(
        engine.as_mut(),
        store,
        &policy_file,
        &mut clock,
        options,
        &mut log,
    )?;
    if let Some(floors) = floors {
        daemon = daemon.with_floors(floors);
    }
    let log_file = args
        .log
        .as_deref()
        .map(|path| (path, args.forget_log_position));
    tlsfallback_host::commands::postfix::run(
        &mut daemon,
        &args.socketmap.listen,
        log_file,
        &args.socketmap.map_name,
        &mut io::stderr(),
    )
}

/// A fresh private directory for the demo's throw-away history.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tlsfallback-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
