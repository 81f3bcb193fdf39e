//! `tlsfallback tlsrpt preview`: the RFC 8460 reports the TLS-RPT results kept in the history
//! database make for one UTC day, aggregated as `tlsrpt-reportd` aggregates them.

use std::io::{self, Write as _};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tlsfallback_mta::clock::Clock as _;
use tlsfallback_mta::tlsrpt::ledger::{ResultLedger, check_day, utc_day};
use tlsfallback_mta::tlsrpt::preview::{Reporter, reports};

use crate::flags::StoreArgs;

/// `tlsfallback tlsrpt`.
#[derive(Debug, Args)]
pub(crate) struct TlsRptCommand {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(subcommand)]
    pub(crate) action: TlsRptAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TlsRptAction {
    /// Print, as a JSON array, the RFC 8460 reports of one UTC day's kept results (deliveries
    /// made with --tlsrpt-socket or --tlsrpt-ledger): one per recipient domain and TLSRPT
    /// record, as tlsrpt-reportd would send them.
    Preview(PreviewArgs),
}

/// `tlsfallback tlsrpt preview`.
#[derive(Debug, Args)]
pub(crate) struct PreviewArgs {
    /// The UTC day, YYYY-MM-DD (default: today).
    #[arg(long, value_parser = parse_day)]
    pub(crate) day: Option<String>,
    /// Only this recipient domain.
    #[arg(long)]
    pub(crate) domain: Option<String>,
    /// The report's organization-name.
    #[arg(long, default_value = "tlsfallback")]
    pub(crate) organization_name: String,
    /// The report's contact-info.
    #[arg(long, default_value = "postmaster@localhost")]
    pub(crate) contact_info: String,
}

fn parse_day(text: &str) -> Result<String, String> {
    check_day(text).map(|()| text.to_owned())
}

impl TlsRptCommand {
    /// Prints the preview.
    ///
    /// # Errors
    ///
    /// The database cannot be read, or one of its results is unreadable.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        let TlsRptAction::Preview(args) = &self.action;
        let path = self.store.path();
        if !path.exists() {
            anyhow::bail!("no history database at {}", path.display());
        }
        let ledger = ResultLedger::open(&path, std::time::Duration::from_secs(30))?;
        let day = match &args.day {
            Some(day) => day.clone(),
            None => utc_day(tlsfallback_mta::clock::HostClock::from_env()?.now()),
        };
        let domain = args.domain.as_deref().map(tlsfallback_mta::store::peer_key);
        let datagrams = ledger
            .day(&day, domain.as_deref())
            .with_context(|| format!("reading the TLS-RPT results of {day}"))?;
        let reporter = Reporter {
            organization_name: args.organization_name.clone(),
            contact_info: args.contact_info.clone(),
        };
        let reports = reports(&day, &datagrams, &reporter);
        let mut stdout = io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &reports)?;
        writeln!(stdout)?;
        Ok(())
    }
}
