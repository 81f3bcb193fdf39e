//! `tlsfallback peers`: show or forget what is remembered about peers.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use tlsfallback_mta::store::HistoryStore;

use crate::commands::deliver::PeerView;
use crate::flags::StoreArgs;

/// `tlsfallback peers`.
#[derive(Debug, Args)]
pub(crate) struct PeersCommand {
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

impl PeersCommand {
    /// Lists, shows or forgets peers.
    ///
    /// # Errors
    ///
    /// A database error, or a peer with no history.
    pub(crate) fn run(&self) -> anyhow::Result<()> {
        let args = self;
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
                let peer = &tlsfallback_mta::store::peer_key(peer);
                let row = store.get(peer)?.ok_or_else(|| {
                    anyhow::anyhow!("no history for {peer} in {}", path.display())
                })?;
                let view = PeerView::new(&row);
                if args.json {
                    serde_json::to_writer(&mut stdout, &view)?;
                    writeln!(stdout)?;
                } else {
                    writeln!(stdout, "{}", view.line())?;
                }
            }
            PeersAction::Forget { peer } => {
                let peer = &tlsfallback_mta::store::peer_key(peer);
                if !store.forget(peer)? {
                    anyhow::bail!("no history for {peer} in {}", path.display());
                }
                writeln!(stdout, "forgot {peer}")?;
            }
        }
        Ok(())
    }
}
