//! `tlsfallback deliver`: a real delivery of the message on stdin, with the dance.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use policy_core::{History, Tier};
use serde::Serialize;

use tlsfallback_mta::delivery::{AttemptLine, DeliveryResult, Destination};
use tlsfallback_mta::resolve::DomainResolver;
use tlsfallback_mta::store::{HistoryStore, PeerRow};
use tlsfallback_mta::tlsrpt::reporter::{ReportTarget, TlsRptReporter};

use crate::flags::{
    DnsArgs, EngineArgs, FleetArgs, StoreArgs, TlsRptArgs, parse_dane, parse_mta_sts,
};

/// sendmail's exit codes (sysexits.h), which MTAs and scripts understand.
pub mod exit {
    /// Delivered.
    pub const OK: u8 = 0;
    /// A command-line usage error, such as an invalid address.
    pub const USAGE: u8 = 64;
    /// The message itself is unusable (a line over the SMTP limit).
    pub const DATA_ERROR: u8 = 65;
    /// Permanent failure: return the message to its sender.
    pub const UNAVAILABLE: u8 = 69;
    /// Temporary failure: keep the message and retry later.
    pub const TEMPFAIL: u8 = 75;
}

/// Parses `HOST[:PORT]` (port 25 by default) into the peer name and the address to connect to.
///
/// # Errors
///
/// An empty host, a bad port, or a name that does not resolve.
pub fn parse_mx(spec: &str) -> anyhow::Result<Destination> {
    let (host, port) = match spec.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (
            host,
            port.parse::<u16>()
                .with_context(|| format!("bad port in --mx {spec:?}"))?,
        ),
        _ => (spec, 25),
    };
    // One spelling per peer (see `peer_key`); also the name resolved and verified.
    let host = tlsfallback_mta::store::peer_key(host);
    if host.is_empty() {
        bail!("--mx {spec:?} has no host");
    }
    let address: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving the MX host {host:?}"))?
        .next()
        .with_context(|| format!("the MX host {host:?} has no address"))?;
    Ok(Destination::new(&host, address, None))
}

/// Checks an envelope address: no spaces, angle brackets or control characters; a recipient needs
/// an `@`. The null reverse path (empty) is allowed for `--from`.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_address(address: &str, recipient: bool) -> anyhow::Result<()> {
    if address.is_empty() && !recipient {
        return Ok(());
    }
    if address.len() > 254 {
        bail!("the address {address:?} is longer than 254 characters");
    }
    if address
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        bail!("the address {address:?} has spaces, control characters or angle brackets");
    }
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(()),
        _ => bail!("the address {address:?} is not local@domain"),
    }
}

/// Checks our EHLO name: a domain or an address literal as RFC 5321 section 4.1.2 defines them
/// (`mail.example.org`, `[192.0.2.1]`, `[IPv6:2001:db8::1]`). Anything else, above all a CR or
/// LF, would let the name smuggle SMTP commands into the session.
///
/// # Errors
///
/// What is wrong with it.
pub fn check_helo_name(name: &str) -> anyhow::Result<()> {
    if name.chars().any(|c| c.is_control()) {
        bail!(
            "the EHLO name {name:?} has control characters (CR or LF would inject SMTP commands)"
        );
    }
    if let Some(literal) = name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        let valid = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        if !valid {
            bail!(
                "the EHLO name {name:?} is not an address literal ([192.0.2.1] or [IPv6:2001:db8::1])"
            );
        }
        return Ok(());
    }
    // Let-dig [Ldh-str]: letters, digits and inner hyphens, 63 octets at most per label.
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 255 || !name.split('.').all(label_ok) {
        bail!(
            "the EHLO name {name:?} is not a domain (letters, digits and hyphens in dot-separated labels) or an address literal"
        );
    }
    Ok(())
}

/// One log line for an attempt.
#[must_use]
pub fn format_attempt(line: &AttemptLine) -> String {
    let negotiated = line
        .negotiated
        .as_ref()
        .map_or_else(String::new, |(v, c)| format!(" version={v} cipher={c}"));
    let delay = if line.delay_secs > 0 {
        format!(" after={}s", line.delay_secs)
    } else {
        String::new()
    };
    let resolved = line
        .resolved
        .as_ref()
        .map_or_else(String::new, |summary| format!(" {summary}"));
    format!(
        "attempt peer={} tier={}{delay} outcome={}{negotiated} reason={}{resolved} detail={:?}",
        line.peer,
        line.tier.name(),
        line.outcome,
        line.reason,
        line.detail
    )
}

/// The summary (one line, after one line per refused recipient and any warning) and the exit
/// code for a delivery result.
///
/// One exit code covers every recipient of the run, as for sendmail's delivery agents: 0 only
/// when every recipient has the message; when the peer refused some, the code is theirs (75 if
/// any was deferred with 4xx, else 69), although the others have it. A caller that needs a result
/// per recipient delivers to one recipient per run (Postfix: `destination_recipient_limit = 1`).
#[must_use]
pub fn summarize(result: &DeliveryResult) -> (String, u8) {
    match result {
        DeliveryResult::Delivered {
            peer,
            tier,
            history_warning,
            refused,
        } => {
            let mut lines: Vec<String> = history_warning
                .iter()
                .map(|warning| format!("warning: {warning}"))
                .collect();
            for refusal in refused {
                let fate = if refusal.permanent {
                    "bounced"
                } else {
                    "deferred"
                };
                lines.push(format!(
                    "recipient <{}> {fate}: {peer} answered {}",
                    refusal.recipient, refusal.reply
                ));
            }
            let code = if refused.is_empty() {
                exit::OK
            } else if refused.iter().any(|r| !r.permanent) {
                exit::TEMPFAIL
            } else {
                exit::UNAVAILABLE
            };
            let partly = if refused.is_empty() {
                String::new()
            } else {
                format!(" for all but {} recipient(s)", refused.len())
            };
            lines.push(format!("delivered to {peer} over {}{partly}", tier.name()));
            (lines.join("\n"), code)
        }
        DeliveryResult::Deferred {
            retry_after_secs,
            reasons,
        } => (
            format!(
                "deferred, retry in {retry_after_secs}s: {}",
                reasons.join("; ")
            ),
            exit::TEMPFAIL,
        ),
        DeliveryResult::Bounced { status, reason } => {
            (format!("bounced {status}: {reason}"), exit::UNAVAILABLE)
        }
    }
}

/// A peer's history, decoded for people and scripts.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// The MX host.
    pub peer: String,
    /// When its history last changed (seconds since the epoch).
    pub updated_at: u64,
    /// The tier its next delivery starts at when below the top (`null`: the top tier).
    pub start_tier: Option<Tier>,
    /// The tier of its last success.
    pub last_success_tier: Option<Tier>,
    /// When that was.
    pub last_success_at: Option<u64>,
    /// Whether it was ever seen doing TLS.
    pub seen_tls: bool,
    /// Until when cleartext and legacy TLS are refused (`null`: not pinned).
    pub pinned_until: Option<u64>,
    /// Cheap failures in a row.
    pub transient_failures: u8,
    /// Why the stored blob could not be read, if it could not.
    pub unreadable: Option<String>,
}

impl PeerView {
    /// Decodes a stored row; an unreadable blob is shown as such, not hidden.
    #[must_use]
    pub fn new(row: &PeerRow) -> Self {
        let (memory, unreadable) = match History::decode(&row.history) {
            Ok(history) => (history.memory, None),
            Err(e) => (policy_core::PeerMemory::default(), Some(e.to_string())),
        };
        let nonzero = |t: u64| (t != 0).then_some(t);
        Self {
            peer: row.peer.clone(),
            updated_at: row.updated_at,
            start_tier: memory.start_tier,
            last_success_tier: memory.last_success_tier,
            last_success_at: nonzero(memory.last_success_at),
            seen_tls: memory.seen_tls,
            pinned_until: nonzero(memory.pinned_until),
            transient_failures: memory.transient_failures,
            unreadable,
        }
    }

    /// One line for a terminal.
    #[must_use]
    pub fn line(&self) -> String {
        if let Some(error) = &self.unreadable {
            return format!("{}  UNREADABLE HISTORY: {error}", self.peer);
        }
        let tier = |t: Option<Tier>| t.map_or("-", Tier::name);
        format!(
            "{}  starts-at={}  last-success={}{}  seen-tls={}  pinned-until={}  transient-failures={}",
            self.peer,
            self.start_tier.map_or("top", Tier::name),
            tier(self.last_success_tier),
            self.last_success_at
                .map_or_else(String::new, |t| format!("@{t}")),
            self.seen_tls,
            self.pinned_until
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            self.transient_failures
        )
    }
}

/// `tlsfallback deliver`.
#[derive(Debug, Args)]
pub(crate) struct DeliverCommand {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) dns: DnsArgs,
    #[command(flatten)]
    pub(crate) tlsrpt: TlsRptArgs,
    #[command(flatten)]
    pub(crate) fleet: FleetArgs,
    /// The recipient domain's TLSRPT record ("v=TLSRPTv1; rua=..."), instead of looking it up
    /// at _smtp._tls.<domain> (for --mx runs and tests).
    #[arg(long, value_name = "RECORD")]
    pub(crate) tlsrpt_record: Option<String>,
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
    #[arg(long, value_name = "RECORD", value_parser = tlsfallback_mta::tls::TlsaRecord::parse, requires = "mx")]
    pub(crate) tlsa: Vec<tlsfallback_mta::tls::TlsaRecord>,
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

impl DeliverCommand {
    /// Delivers the message on stdin; the exit code (sysexits) tells the caller whether to keep
    /// it. Every error is reported on stderr here, with the code that goes with it.
    #[must_use]
    pub(crate) fn run(&self) -> ExitCode {
        ExitCode::from(deliver(self))
    }
}

/// Delivers the message on stdin; the exit code tells the caller whether to keep it.
fn deliver(args: &DeliverCommand) -> u8 {
    use std::io::Read as _;
    use tlsfallback_mta::delivery::{DeliveryJob, DeliveryOutputs, deliver};
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
        match tlsfallback_mta::tls::usable_tlsa_records(&args.tlsa) {
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
    let mut resolver = None;
    if args.mx.is_empty() {
        match destinations_from_dns(args) {
            Ok((found, used)) => {
                destinations = found;
                resolver = Some(used);
            }
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
    if let Err(line) = tlsfallback_mta::smtp::check_message(&data) {
        return fail(
            exit::DATA_ERROR,
            anyhow::anyhow!(
                "line {line} of the message is longer than SMTP allows (998 characters)"
            ),
        );
    }
    // A report about a failed delivery must not itself fail over TLS, nor be reported (the
    // report loop RFC 8460 section 5.3 warns of).
    let is_report = tlsfallback_mta::tlsrpt::message::is_tlsrpt_report(&data);
    if is_report {
        eprintln!(
            "tlsfallback: the message is a TLS-RPT report: sent with TLS-Required: No, its \
             delivery is not reported"
        );
    }
    let setup = (|| -> anyhow::Result<_> {
        let (policy_file, engine) = args.engine.resolve()?;
        let busy = std::time::Duration::from_millis(args.db_busy_timeout_ms);
        let mut store = HistoryStore::open_with_busy_timeout(&args.store.path(), busy)?;
        args.fleet
            .attach(&policy_file, engine.as_ref(), &mut store)?;
        let clock = tlsfallback_mta::clock::HostClock::from_env()?;
        let reporter = match args.tlsrpt.settings(&policy_file) {
            Some(settings) if !is_report => Some(TlsRptReporter::new(
                settings.socket.as_deref(),
                &args.store.path(),
                busy,
            )?),
            _ => None,
        };
        Ok((policy_file, engine, store, clock, reporter))
    })();
    let (policy_file, mut engine, mut store, mut clock, mut reporter) = match setup {
        Ok(parts) => parts,
        Err(e) => return fail(exit::TEMPFAIL, e),
    };
    let tlsrpt = match &reporter {
        Some(_) => report_target(args, resolver.as_ref(), &policy_file),
        None => None,
    };
    let job = DeliveryJob {
        message: tlsfallback_mta::smtp::Message {
            from: &args.from,
            to: &args.to,
            data: &data,
        },
        destinations,
        context: policy_core::DeliveryContext {
            dane,
            mta_sts: args.mta_sts,
            requiretls: args.requiretls,
            tls_required_no: args.tls_required_no || is_report,
            sasl: args.sasl,
        },
        helo_name: args.helo.clone(),
        anchors: tlsfallback_mta::tls::TrustAnchors {
            ca_file: args.ca_file.clone(),
            tlsa: args.tlsa.clone(),
        },
        timeouts: tlsfallback_mta::smtp::Timeouts {
            attempt: std::time::Duration::from_secs(args.attempt_timeout_secs),
            ..tlsfallback_mta::smtp::Timeouts::default()
        },
        tlsrpt,
    };
    let mut log = |line: &AttemptLine| eprintln!("{}", format_attempt(line));
    let mut warn = |line: &str| eprintln!("tlsfallback: warning: {line}");
    match deliver(
        engine.as_mut(),
        &mut store,
        &policy_file,
        &mut clock,
        &job,
        DeliveryOutputs {
            log: &mut log,
            warn: &mut warn,
            tlsrpt: reporter.as_mut(),
        },
    ) {
        Ok(result) => {
            let (summary, code) = summarize(&result);
            eprintln!("{summary}");
            code
        }
        // The store or the engine failed: nothing was lost, the caller keeps the message.
        Err(e) => fail(exit::TEMPFAIL, e.into()),
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

/// Where this delivery's TLS-RPT results go: the recipients' domain and its TLSRPT record
/// (`--tlsrpt-record`, else looked up with `resolver`, else with a resolver made for it);
/// `None`, said on stderr, when there is none.
fn report_target(
    args: &DeliverCommand,
    resolver: Option<&DomainResolver>,
    policy_file: &tlsfallback_engine::config::PolicyFile,
) -> Option<ReportTarget> {
    let domain = match recipient_domain(&args.to) {
        Ok(domain) => tlsfallback_mta::store::peer_key(&domain),
        Err((_, error)) => {
            eprintln!("tlsfallback: TLS-RPT: not reported: {error:#}");
            return None;
        }
    };
    let record = match &args.tlsrpt_record {
        Some(text) => tlsfallback_mta::tlsrpt::record::select(&[text.clone().into_bytes()])
            .map_err(|error| format!("--tlsrpt-record: {error}")),
        None => {
            let made;
            let resolver = match resolver {
                Some(resolver) => Ok(resolver),
                None => {
                    let settings = args.dns.resolve_settings(policy_file, args.port);
                    made = DomainResolver::new(&settings, &args.store.path());
                    made.as_ref().map_err(ToString::to_string)
                }
            };
            resolver.and_then(|resolver| {
                resolver
                    .tlsrpt_record(&domain)
                    .map_err(|error| error.to_string())
            })
        }
    };
    match record {
        Ok(record) => Some(ReportTarget { domain, record }),
        Err(error) => {
            eprintln!("tlsfallback: TLS-RPT: attempts to {domain} not reported: {error}");
            None
        }
    }
}

/// The MX hosts of the recipients' domain with what the host resolved for each (DNSSEC, DANE,
/// MTA-STS), and the resolver (for the TLSRPT record).
fn destinations_from_dns(
    args: &DeliverCommand,
) -> Result<(Vec<Destination>, DomainResolver), (u8, anyhow::Error)> {
    use tlsfallback_mta::clock::Clock as _;
    use tlsfallback_mta::resolve::destinations;
    let domain = recipient_domain(&args.to)?;
    let temp = |e: anyhow::Error| (exit::TEMPFAIL, e);
    let policy_file = args.engine.policy_file().map_err(temp)?;
    let settings = args.dns.resolve_settings(&policy_file, args.port);
    let resolver =
        DomainResolver::new(&settings, &args.store.path()).map_err(|e| temp(e.into()))?;
    let now = tlsfallback_mta::clock::HostClock::from_env()
        .map_err(|e| temp(e.into()))?
        .now();
    let resolution = resolver.resolve(&domain, now);
    let (found, skipped) = destinations(&resolution, args.port)
        .map_err(|no| (no.exit_code, anyhow::anyhow!(no.reason)))?;
    for line in skipped {
        eprintln!("tlsfallback: {line}");
    }
    Ok((found, resolver))
}
