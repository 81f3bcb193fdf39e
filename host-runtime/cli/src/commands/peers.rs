//! `tlsfallback peers`: show or forget what is remembered about peers.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use policy_core::History;
use serde::Serialize;
use tlsfallback_mta::store::{HistoryStore, PeerRow};

use crate::commands::deliver::PeerView;
use crate::flags::{FleetArgs, StoreArgs};

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
    /// One peer; with a fleet, also its shared copy and whether it differs.
    Show {
        /// The MX host name.
        peer: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Forget a peer; with a fleet, also its shared copy.
    Forget {
        /// The MX host name.
        peer: String,
        #[command(flatten)]
        fleet: FleetArgs,
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
            PeersAction::Show { peer, fleet } => {
                let peer = &tlsfallback_mta::store::peer_key(peer);
                let row = store.get(peer)?;
                let Some(mut link) = fleet_link(fleet)? else {
                    let row = row.ok_or_else(|| {
                        anyhow::anyhow!("no history for {peer} in {}", path.display())
                    })?;
                    let view = PeerView::new(&row);
                    if args.json {
                        serde_json::to_writer(&mut stdout, &view)?;
                        writeln!(stdout)?;
                    } else {
                        writeln!(stdout, "{}", view.line())?;
                    }
                    return Ok(());
                };
                let shared = link.read(peer, operator_deadline());
                let unpublished = store.unpublished()?.contains(peer);
                let comparison = FleetComparison::new(peer, row.as_ref(), shared, unpublished);
                if args.json {
                    serde_json::to_writer(&mut stdout, &comparison)?;
                    writeln!(stdout)?;
                } else {
                    for line in comparison.lines() {
                        writeln!(stdout, "{line}")?;
                    }
                }
                if row.is_none() && comparison.shared.is_none() {
                    anyhow::bail!(
                        "no history for {peer} in {} nor in the fleet",
                        path.display()
                    );
                }
            }
            PeersAction::Forget { peer, fleet } => {
                let peer = &tlsfallback_mta::store::peer_key(peer);
                let local = store.forget(peer)?;
                let Some(mut link) = fleet_link(fleet)? else {
                    if !local {
                        anyhow::bail!("no history for {peer} in {}", path.display());
                    }
                    writeln!(stdout, "forgot {peer}")?;
                    return Ok(());
                };
                let shared = link.forget(peer, operator_deadline()).map_err(|error| {
                    // Forgotten here only: the shared copy would bring it back at the next
                    // decision, so this is a failure to retry, not a success.
                    anyhow::anyhow!(
                        "{} the fleet did not answer ({error}): its shared copy of {peer} is \
                         still there and comes back at this node's next decision; run this again",
                        if local {
                            "forgot it on this node, but"
                        } else {
                            "nothing forgotten:"
                        }
                    )
                })?;
                if !local && !shared {
                    anyhow::bail!(
                        "no history for {peer} in {} nor in the fleet",
                        path.display()
                    );
                }
                writeln!(
                    stdout,
                    "forgot {peer} {}; other nodes keep their own history of it until it is \
                     forgotten there too (a node merges it up again at its next delivery to it)",
                    match (local, shared) {
                        (true, true) => "on this node and in the fleet",
                        (true, false) => "on this node (the fleet had no copy)",
                        _ => "in the fleet (this node had no history of it)",
                    }
                )?;
            }
        }
        Ok(())
    }
}

/// The link to the fleet `--fleet` (or the environment) names, if any. `peers` reads no policy
/// file, so a `[fleet]` section is not consulted.
fn fleet_link(fleet: &FleetArgs) -> anyhow::Result<Option<tlsfallback_mta::fleet::Fleet>> {
    let Some(settings) = fleet.settings(&tlsfallback_engine::config::PolicyFile::default()) else {
        return Ok(None);
    };
    Ok(Some(tlsfallback_mta::fleet::Fleet::connect(settings)?))
}

/// How long an operator's command waits for Redis: far longer than a decision's budget, since
/// nobody waits on a message meanwhile.
fn operator_deadline() -> tlsfallback_mta::clock::Deadline {
    tlsfallback_mta::clock::Deadline::after(std::time::Duration::from_secs(5))
}

/// How a peer's local history and the fleet's shared copy of it compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum SharedState {
    /// Both know the same.
    Same,
    /// The fleet knows more than this node: merged in at this node's next decision.
    FleetKnowsMore,
    /// This node knows more than the fleet: merged up after its next decision.
    NodeKnowsMore,
    /// Each knows something the other does not.
    BothDiffer,
    /// The fleet has no copy.
    NotShared,
    /// This node has no history; the fleet has one.
    OnlyShared,
    /// The shared copy is not a history this host can read.
    Unreadable,
    /// Redis did not answer.
    Unavailable,
}

/// `peers show` with a fleet.
#[derive(Debug, Serialize)]
struct FleetComparison {
    local: Option<PeerView>,
    shared: Option<PeerView>,
    shared_state: SharedState,
    /// Local changes the fleet has not taken yet.
    unpublished: bool,
    /// Why Redis gave no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl FleetComparison {
    fn new(
        peer: &str,
        local: Option<&PeerRow>,
        shared: Result<
            Option<tlsfallback_mta::fleet::SharedCopy>,
            tlsfallback_mta::fleet::Unavailable,
        >,
        unpublished: bool,
    ) -> Self {
        let memory = |blob: &[u8]| History::decode(blob).ok().map(|history| history.memory);
        let (shared, error) = match shared {
            Ok(copy) => (copy, None),
            Err(error) => (None, Some(error.to_string())),
        };
        let shared_state = match (&error, local, &shared) {
            (Some(_), _, _) => SharedState::Unavailable,
            (None, _, None) => SharedState::NotShared,
            (None, None, Some(_)) => SharedState::OnlyShared,
            (None, Some(local), Some(copy)) => match (memory(&local.history), memory(&copy.blob)) {
                (_, None) => SharedState::Unreadable,
                // An unreadable local blob: the store's own error, shown by `local`.
                (None, Some(_)) => SharedState::BothDiffer,
                (Some(local), Some(shared)) => {
                    match (local.is_covered_by(&shared), shared.is_covered_by(&local)) {
                        (true, true) => SharedState::Same,
                        (true, false) => SharedState::FleetKnowsMore,
                        (false, true) => SharedState::NodeKnowsMore,
                        (false, false) => SharedState::BothDiffer,
                    }
                }
            },
        };
        Self {
            local: local.map(PeerView::new),
            shared: shared.map(|copy| {
                PeerView::new(&PeerRow {
                    peer: peer.to_owned(),
                    history: copy.blob,
                    updated_at: 0,
                })
            }),
            shared_state,
            unpublished,
            error,
        }
    }

    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.local {
            Some(view) => lines.push(format!("local:  {}", view.line())),
            None => lines.push("local:  no history on this node".to_owned()),
        }
        match &self.shared {
            Some(view) => lines.push(format!("shared: {}", view.line())),
            None => lines.push("shared: no copy in the fleet".to_owned()),
        }
        lines.push(match (self.shared_state, &self.error) {
            (SharedState::Unavailable, Some(error)) => format!("the fleet did not answer: {error}"),
            (SharedState::Same, _) => "the shared copy is the same".to_owned(),
            (SharedState::FleetKnowsMore, _) => {
                "the shared copy differs: the fleet knows more (merged in at this node's next decision)".to_owned()
            }
            (SharedState::NodeKnowsMore, _) => {
                "the shared copy differs: this node knows more (merged up after its next decision)".to_owned()
            }
            (SharedState::BothDiffer, _) => {
                "the shared copy differs: each knows something the other does not".to_owned()
            }
            (SharedState::NotShared, _) => "the fleet has no copy of this peer".to_owned(),
            (SharedState::OnlyShared, _) => "only the fleet knows this peer".to_owned(),
            (SharedState::Unreadable, _) | (SharedState::Unavailable, None) => {
                "the shared copy is unreadable: the next write replaces it".to_owned()
            }
        });
        if self.unpublished {
            lines.push(
                "local changes not yet taken by the fleet: merged up when it answers".to_owned(),
            );
        }
        lines
    }
}
