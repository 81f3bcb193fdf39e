//! Peer history in SQLite: one row per peer, the engine's opaque blob and when it changed.
//!
//! The store holds blobs and knows nothing of the engine: `deciding` is the one place where a
//! stored history meets a decision.
//!
//! WAL mode so that readers never block the writer; each decide step runs in an `IMMEDIATE`
//! transaction (read the blob, decide, write the new blob), so concurrent deliveries to the same
//! peer serialise on the write lock instead of losing each other's updates.
//!
//! With a [`Fleet`] attached ([`HistoryStore::attach_fleet`]), the local history stays the source
//! of truth for this node's own deliveries, and the fleet's shared copy is merged in before each
//! step ([`policy_core::adopt_shared`]: the local dance is kept) and merged up after each batch
//! commits. A peer whose history changed while Redis did not take it is kept in
//! `fleet_unpublished`, in the same transaction, and merged up once Redis answers again. Every
//! Redis call of one batch runs to one deadline (the fleet's budget), so a batch never waits on
//! Redis for longer than that.

use std::path::{Path, PathBuf};
use std::time::Duration;

use policy_core::PeerFacts;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::causes::Causes;
use crate::clock::Deadline;
use crate::fleet::{Fleet, Published, Unavailable};

pub(crate) mod facts;
mod pending;

pub use pending::{PendingUpdate, journal_path};

/// Peers merged up to the fleet per batch after an outage (the rest at the next batches).
const MERGE_UP_PER_BATCH: u32 = 256;
/// Fleet problems kept for the caller to report, the oldest first; past these, one line says
/// that more were dropped.
const FLEET_WARNINGS_KEPT: usize = 16;

/// How long a write waits for another process's transaction by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What applying the journal of pending updates did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PendingApplied {
    /// Entries applied now.
    pub applied: usize,
    /// Entries found already applied (the journal could not be emptied last time), skipped.
    pub skipped: usize,
    /// Lines that were no entry (a write torn by a crash), dropped with the rest.
    pub unreadable: Vec<String>,
}

/// Why the history database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory of the database cannot be created.
    #[error("creating {}: {}", .dir.display(), Causes(.cause))]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The database file cannot be opened (or created).
    #[error("opening the history database {}: {}", .path.display(), Causes(.cause))]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// The file opened, but is not a database with (or where SQLite can create) the tables of
    /// this host.
    #[error("{} is not a usable tlsfallback database: {}", .path.display(), Causes(.cause))]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// The journal of pending updates beside the database cannot be opened.
    #[error("opening {}: {}", .path.display(), Causes(.cause))]
    OpenJournal {
        /// The journal file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The journal of pending updates cannot be emptied or given room for the next ones.
    #[error("{}", Causes(.0))]
    Journal(std::io::Error),
    /// A query failed (a locked or damaged database, a full disk).
    #[error("{}", Causes(.0))]
    Sql(rusqlite::Error),
    /// The facts recorded about a peer cannot be read.
    #[error("reading the recorded facts of {peer}: {}", Causes(.cause))]
    ReadFacts {
        /// The peer.
        peer: String,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
    /// The facts recorded about a peer are not ones this host writes (an unknown tier, a
    /// negative time).
    #[error("the recorded facts of {peer} are not ones this host writes: {detail}")]
    ForeignFacts {
        /// The peer.
        peer: String,
        /// What is wrong in them.
        detail: String,
    },
    /// The facts about a peer cannot be recorded.
    #[error("recording the facts of {peer}: {}", Causes(.cause))]
    WriteFacts {
        /// The peer.
        peer: String,
        /// SQLite's error.
        cause: rusqlite::Error,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(cause: rusqlite::Error) -> Self {
        Self::Sql(cause)
    }
}

/// The one spelling of a peer's key in the history, whoever writes or asks: lower case, and the
/// host without the trailing dot of a fully qualified name, so `MX.Example.org.:2525` and
/// `mx.example.org:2525` are one peer (one memory, one pin). Keeps the key's shape: `host`,
/// `host:port`, `[host]`, `[host]:port`; an IPv6 address without brackets is left as it is.
#[must_use]
pub fn peer_key(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    let bare = |host: &str| host.strip_suffix('.').unwrap_or(host).to_owned();
    if let Some((host, after)) = key.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return format!("[{}]{after}", bare(host));
    }
    match key.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => format!("{}:{port}", bare(host)),
        Some(_) => key,
        None => bare(&key),
    }
}

/// A stored peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRow {
    /// The MX host name.
    pub peer: String,
    /// The engine's history blob.
    pub history: Vec<u8>,
    /// When the row last changed, in seconds since the Unix epoch.
    pub updated_at: u64,
}

/// The history database.
pub struct HistoryStore {
    connection: Connection,
    path: PathBuf,
    fleet: Option<Fleet>,
    fleet_warnings: Vec<String>,
}

impl HistoryStore {
    /// The default location: `$TLSFALLBACK_DB`, else `$XDG_STATE_HOME/tlsfallback/peers.sqlite3`,
    /// else `~/.local/state/tlsfallback/peers.sqlite3`.
    #[must_use]
    pub fn default_path() -> PathBuf {
        if let Some(path) = std::env::var_os("TLSFALLBACK_DB") {
            return PathBuf::from(path);
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        state.join("tlsfallback").join("peers.sqlite3")
    }

    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be created or is not a tlsfallback database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_busy_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// As [`open`](Self::open), with how long a write waits for another process's transaction
    /// before it fails.
    ///
    /// # Errors
    ///
    /// When the file cannot be created or is not a tlsfallback database.
    pub fn open_with_busy_timeout(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir {
                dir: dir.to_owned(),
                cause,
            })?;
        }
        let connection = Connection::open(path).map_err(|cause| StoreError::Open {
            path: path.to_owned(),
            cause,
        })?;
        connection.busy_timeout(busy_timeout)?;
        // The daemon runs the same dozen statements for every lookup: keep them all prepared.
        connection.set_prepared_statement_cache_capacity(64);
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| {
                connection.execute_batch(
                    "CREATE TABLE IF NOT EXISTS peers (
                         peer TEXT PRIMARY KEY NOT NULL,
                         history BLOB NOT NULL,
                         updated_at INTEGER NOT NULL
                     ) STRICT;
                     CREATE TABLE IF NOT EXISTS applied_pending_updates (
                         id TEXT PRIMARY KEY NOT NULL
                     ) STRICT;
                     CREATE TABLE IF NOT EXISTS fleet_unpublished (
                         peer TEXT PRIMARY KEY NOT NULL
                     ) STRICT;",
                )?;
                connection.execute_batch(facts::SCHEMA)
            })
            .map_err(|cause| StoreError::NotADatabase {
                path: path.to_owned(),
                cause,
            })?;
        Ok(Self {
            connection,
            path: path.to_owned(),
            fleet: None,
            fleet_warnings: Vec::new(),
        })
    }

    /// Shares this node's histories with a fleet from now on (see the module doc).
    pub fn attach_fleet(&mut self, fleet: Fleet) {
        self.fleet = Some(fleet);
    }

    /// The fleet, when one is attached.
    #[must_use]
    pub fn fleet(&self) -> Option<&Fleet> {
        self.fleet.as_ref()
    }

    /// What went wrong with the fleet since the last call (Redis unavailable, the circuit
    /// opening or closing, an unreadable shared copy): decisions went on from local state, and the
    /// caller reports these.
    pub fn take_fleet_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.fleet_warnings)
    }

    /// Peers whose local changes the fleet has not taken yet.
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn unpublished(&self) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT peer FROM fleet_unpublished ORDER BY peer")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Keeps a decide step that could not be stored in the journal beside the database, synced
    /// to disk, for [`apply_pending`](Self::apply_pending) to replay.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written either.
    pub fn record_pending(&self, update: &PendingUpdate) -> std::io::Result<()> {
        pending::Journal::open(&self.path)?.append(update)
    }

    /// Replays the journal's pending updates, each once, through `step` (which stores what the
    /// update leads to, in the batch it is given), in one write transaction, then empties the
    /// journal; also makes sure the journal has room for the next ones. Nothing is lost when this
    /// fails: the journal is kept for the next try. The store does not know what `step` does
    /// (see `deciding::apply_pending`, which decides).
    ///
    /// # Errors
    ///
    /// A journal or database error ([`StoreError`], into the caller's error type), or the error
    /// of `step`.
    pub fn replay_pending<E: From<StoreError>>(
        &mut self,
        mut step: impl FnMut(&mut Batch<'_>, &PendingUpdate) -> Result<(), E>,
    ) -> Result<PendingApplied, E> {
        let mut journal =
            pending::Journal::open(&self.path).map_err(|cause| StoreError::OpenJournal {
                path: journal_path(&self.path),
                cause,
            })?;
        let (entries, unreadable) = journal.entries();
        let mut report = PendingApplied {
            unreadable,
            ..PendingApplied::default()
        };
        if !entries.is_empty() || !report.unreadable.is_empty() {
            let (applied, skipped) = self.batch(|batch| {
                let (mut applied, mut skipped) = (0, 0);
                for entry in &entries {
                    let fresh = batch
                        .connection()
                        .prepare_cached(
                            "INSERT OR IGNORE INTO applied_pending_updates (id) VALUES (?1)",
                        )
                        .and_then(|mut statement| statement.execute([&entry.id]))
                        .map_err(StoreError::from)?
                        == 1;
                    if !fresh {
                        skipped += 1;
                        continue;
                    }
                    step(batch, entry)?;
                    applied += 1;
                }
                Ok::<_, E>((applied, skipped))
            })?;
            report.applied = applied;
            report.skipped = skipped;
            journal.clear().map_err(StoreError::Journal)?;
            // The ids only guard entries still in the journal: none are now.
            self.connection
                .prepare_cached("DELETE FROM applied_pending_updates")
                .and_then(|mut statement| statement.execute([]))
                .map_err(StoreError::from)?;
        }
        journal.reserve().map_err(StoreError::Journal)?;
        Ok(report)
    }

    /// Where the database is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `step` on the peer's stored history inside one write transaction and stores the
    /// history it returns. Nothing is written when `step` fails.
    ///
    /// # Errors
    ///
    /// A database error ([`StoreError`], into the caller's error type), or the error of `step`.
    pub fn update<T, E: From<StoreError>>(
        &mut self,
        peer: &str,
        now: u64,
        step: impl FnOnce(Option<&[u8]>) -> Result<(T, Vec<u8>), E>,
    ) -> Result<T, E> {
        self.batch(|batch| batch.update(peer, now, step))
    }

    /// Runs `work` inside one write transaction: every change it makes is kept, or none (when
    /// it fails).
    ///
    /// # Errors
    ///
    /// A database error ([`StoreError`], into the caller's error type), or the error of `work`.
    pub fn batch<T, E: From<StoreError>>(
        &mut self,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // Taken out for the batch, so that the transaction's borrow of the connection ends
        // before the merge-up after the commit needs both.
        let mut fleet = self.fleet.take();
        let mut warnings = std::mem::take(&mut self.fleet_warnings);
        let result = self.batch_with(fleet.as_mut(), &mut warnings, work);
        self.fleet = fleet;
        self.fleet_warnings = warnings;
        result
    }

    fn batch_with<T, E: From<StoreError>>(
        &mut self,
        mut fleet: Option<&mut Fleet>,
        warnings: &mut Vec<String>,
        work: impl FnOnce(&mut Batch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let deadline = fleet.as_deref().map(Fleet::deadline);
        let transitions = fleet.as_deref().map(Fleet::circuit_transitions);
        let (value, touched) = {
            let mut batch = Batch {
                tx: self
                    .connection
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?,
                fleet: fleet.as_deref_mut().zip(deadline),
                touched: Vec::new(),
                warnings,
            };
            let value = work(&mut batch)?;
            let Batch { tx, touched, .. } = batch;
            tx.commit().map_err(StoreError::from)?;
            (value, touched)
        };
        if let (Some((fleet, deadline)), Some(before)) = (fleet.zip(deadline), transitions) {
            merge_up(
                &self.connection,
                fleet,
                &touched,
                deadline,
                before,
                warnings,
            );
        }
        Ok(value)
    }

    /// The connection, for the tables other parts of the host keep in the same database (the
    /// Postfix daemon's).
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Every stored peer, by name.
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn list(&self) -> Result<Vec<PeerRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT peer, history, updated_at FROM peers ORDER BY peer")?;
        let rows = statement.query_map([], row_to_peer)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One peer.
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn get(&self, peer: &str) -> Result<Option<PeerRow>, StoreError> {
        Ok(self
            .connection
            .prepare_cached("SELECT peer, history, updated_at FROM peers WHERE peer = ?1")?
            .query_row([peer], row_to_peer)
            .optional()?)
    }

    /// What the host recorded that `peer` proved (its pin, its last success): the facts a
    /// plugin's decisions are held to, whatever history it returns.
    ///
    /// # Errors
    ///
    /// A database error, or a row this host did not write.
    pub fn facts(&self, peer: &str) -> Result<PeerFacts, StoreError> {
        facts::read(&self.connection, peer)
    }

    /// Forgets a peer, its history and the facts recorded about it (its pin too: the operator
    /// asked); whether anything was there.
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn forget(&self, peer: &str) -> Result<bool, StoreError> {
        forget_in(&self.connection, peer)
    }

    /// Forgets the peers, among the next `limit` rows after `after` (a row id; 0 for the
    /// first), that nothing touched since `unused_since` and whose recorded pin has run out
    /// by `now`: their history, facts and fleet mark, in one transaction. A table is swept in
    /// slices so that no lookup waits behind a walk of a million rows; each slice reads its
    /// rows by row id, without an index on the time (which every update would have to move).
    ///
    /// # Errors
    ///
    /// A database error; nothing of the slice is forgotten then.
    pub fn forget_unused(
        &mut self,
        unused_since: u64,
        now: u64,
        after: i64,
        limit: u32,
    ) -> Result<Swept, StoreError> {
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx
            .prepare_cached(
                "SELECT max(rowid) FROM (SELECT rowid FROM peers WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
            )?
            .query_row(params![after, limit], |row| row.get(0))?;
        let Some(last) = last else {
            return Ok(Swept {
                forgotten: 0,
                next: None,
            });
        };
        let unused: Vec<String> = tx
            .prepare_cached(
                "SELECT p.peer FROM peers p LEFT JOIN peer_facts f ON f.peer = p.peer
                 WHERE p.rowid > ?1 AND p.rowid <= ?2 AND p.updated_at < ?3
                   AND coalesce(f.pinned_until, 0) <= ?4",
            )?
            .query_map(
                params![
                    after,
                    last,
                    facts::seconds(unused_since),
                    facts::seconds(now)
                ],
                |row| row.get(0),
            )?
            .collect::<Result<_, _>>()?;
        for peer in &unused {
            forget_in(&tx, peer)?;
        }
        tx.commit()?;
        Ok(Swept {
            forgotten: unused.len() as u64,
            next: Some(last),
        })
    }
}

/// Forgets `peer` through `connection` (inside the caller's transaction, if any): its history,
/// the facts recorded about it and its fleet mark; whether anything was there.
fn forget_in(connection: &Connection, peer: &str) -> Result<bool, StoreError> {
    let history = connection
        .prepare_cached("DELETE FROM peers WHERE peer = ?1")?
        .execute([peer])?
        > 0;
    let facts = facts::forget(connection, peer)?;
    connection
        .prepare_cached("DELETE FROM fleet_unpublished WHERE peer = ?1")?
        .execute([peer])?;
    Ok(history || facts)
}

/// What one slice of [`HistoryStore::forget_unused`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "`next` is where the sweep goes on"]
pub struct Swept {
    /// Peers forgotten.
    pub forgotten: u64,
    /// The row id to go on after; `None` once the table is swept to its end.
    pub next: Option<i64>,
}

/// One write transaction over the database (see [`HistoryStore::batch`]).
pub struct Batch<'a> {
    tx: rusqlite::Transaction<'a>,
    /// The fleet and the deadline of this batch's calls to it.
    fleet: Option<(&'a mut Fleet, Deadline)>,
    /// The peers this batch decided for, to merge up after it commits.
    touched: Vec<String>,
    warnings: &'a mut Vec<String>,
}

impl Batch<'_> {
    /// As [`HistoryStore::update`], inside this transaction.
    ///
    /// # Errors
    ///
    /// A database error ([`StoreError`], into the caller's error type), or the error of `step`.
    pub fn update<T, E: From<StoreError>>(
        &mut self,
        peer: &str,
        now: u64,
        step: impl FnOnce(Option<&[u8]>) -> Result<(T, Vec<u8>), E>,
    ) -> Result<T, E> {
        let stored: Option<Vec<u8>> = self
            .tx
            .prepare_cached("SELECT history FROM peers WHERE peer = ?1")
            .and_then(|mut statement| statement.query_row([peer], |row| row.get(0)).optional())
            .map_err(StoreError::from)?;
        // An empty blob is what a fail-closed plugin decision keeps for a peer without history.
        let stored_blob = stored.as_deref().filter(|blob| !blob.is_empty());
        let with_fleet = self.with_shared_copy(peer, stored_blob);
        let (value, history) = step(with_fleet.as_deref().or(stored_blob))?;
        if self.fleet.is_some() {
            self.touched.push(peer.to_owned());
        }
        if stored.as_deref() == Some(history.as_slice()) {
            // Unchanged (a known peer's lookup, most of the daemon's): no write, and
            // `updated_at` stays the time the history last changed.
            return Ok(value);
        }
        self.tx.prepare_cached("INSERT INTO peers (peer, history, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(peer) DO UPDATE SET history = excluded.history, updated_at = excluded.updated_at")
        .and_then(|mut statement| statement.execute(
            params![peer, history, facts::seconds(now)],
        ))
        .map_err(StoreError::from)?;
        if self.fleet.is_some() {
            // Until the fleet takes it: kept with the change itself, so neither a crash nor an
            // outage loses it.
            self.tx
                .prepare_cached("INSERT OR IGNORE INTO fleet_unpublished (peer) VALUES (?1)")
                .and_then(|mut statement| statement.execute([peer]))
                .map_err(StoreError::from)?;
        }
        Ok(value)
    }

    /// The local history with the fleet's shared copy merged in, when the fleet answered within
    /// the budget and the merge changes something; `None`: decide with the local history.
    fn with_shared_copy(&mut self, peer: &str, local: Option<&[u8]>) -> Option<Vec<u8>> {
        let (fleet, deadline) = self.fleet.as_mut()?;
        let shared = match fleet.shared(peer, *deadline) {
            Ok(shared) => shared?,
            Err(unavailable) => {
                warn(self.warnings, peer, &unavailable);
                return None;
            }
        };
        let merged = policy_core::adopt_shared(local, &shared.blob);
        match merged {
            Ok(merged) if Some(merged.as_bytes()) != local => Some(merged.as_bytes().to_vec()),
            Ok(_) => None,
            Err(error) => {
                push_warning(
                    self.warnings,
                    format!(
                        "the fleet's shared copy of {peer} is unreadable ({error}); deciding from \
                         the local history, which replaces it at the next write"
                    ),
                );
                None
            }
        }
    }

    /// The transaction, for other tables in the same database.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.tx
    }
}

/// After a batch (`before`: the circuit's transitions when it began): merges each peer it decided for up to the fleet (nothing is sent when the
/// cached shared copy already covers the local history), then, when due (the first answer of
/// this process, the circuit closing), the peers whose changes Redis missed; all to `deadline`.
fn merge_up(
    connection: &Connection,
    fleet: &mut Fleet,
    touched: &[String],
    deadline: Deadline,
    before: (u64, u64),
    warnings: &mut Vec<String>,
) {
    let mut published = Vec::new();
    for peer in touched {
        if publish_local(connection, fleet, peer, deadline, warnings) {
            published.push(peer.clone());
        }
    }
    if fleet.take_merge_up_due() {
        let missed: rusqlite::Result<Vec<String>> = connection
            .prepare_cached("SELECT peer FROM fleet_unpublished ORDER BY peer LIMIT ?1")
            .and_then(|mut statement| {
                statement
                    .query_map([MERGE_UP_PER_BATCH], |row| row.get(0))?
                    .collect()
            });
        match missed {
            Ok(missed) => {
                let all_due = missed.len() < MERGE_UP_PER_BATCH as usize;
                let mut merged_all = true;
                for peer in missed.iter().filter(|peer| !touched.contains(peer)) {
                    if publish_local(connection, fleet, peer, deadline, warnings) {
                        published.push(peer.clone());
                    } else {
                        merged_all = false;
                        break;
                    }
                }
                if !(all_due && merged_all) {
                    fleet.merge_up_again();
                }
            }
            Err(error) => push_warning(
                warnings,
                format!("listing the peers the fleet missed: {}", Causes(&error)),
            ),
        }
    }
    for peer in &published {
        if let Err(error) = connection
            .prepare_cached("DELETE FROM fleet_unpublished WHERE peer = ?1")
            .and_then(|mut statement| statement.execute([peer]))
        {
            // Harmless: the peer is merged up again later, and a merge twice changes nothing.
            push_warning(
                warnings,
                format!(
                    "marking {peer} as shared with the fleet: {}",
                    Causes(&error)
                ),
            );
        }
    }
    let (opened, closed) = fleet.circuit_transitions();
    if opened > before.0 {
        push_warning(
            warnings,
            "the circuit to the fleet's Redis opened after repeated errors: deciding from local \
             history alone until it answers again"
                .to_owned(),
        );
    }
    if closed > before.1 {
        push_warning(
            warnings,
            "the fleet's Redis answers again: the circuit is closed and local changes are merged up"
                .to_owned(),
        );
    }
}

/// Merges the peer's local history up; whether the fleet has it now.
fn publish_local(
    connection: &Connection,
    fleet: &mut Fleet,
    peer: &str,
    deadline: Deadline,
    warnings: &mut Vec<String>,
) -> bool {
    let local: rusqlite::Result<Option<Vec<u8>>> = connection
        .prepare_cached("SELECT history FROM peers WHERE peer = ?1")
        .and_then(|mut statement| statement.query_row([peer], |row| row.get(0)).optional());
    let local = match local {
        // Forgotten meanwhile: nothing to share.
        Ok(None) => return true,
        Ok(Some(local)) => local,
        Err(error) => {
            push_warning(
                warnings,
                format!(
                    "reading {peer} to share it with the fleet: {}",
                    Causes(&error)
                ),
            );
            return false;
        }
    };
    match fleet.publish(peer, &local, deadline) {
        Ok(Published::Unchanged | Published::Written { .. }) => true,
        // A plugin's own format: it stays local, and so does the row (nothing to retry).
        Err(Unavailable::NotShareable(_)) => true,
        Err(unavailable) => {
            warn(warnings, peer, &unavailable);
            false
        }
    }
}

/// Keeps a fleet problem for the caller, except the calls an open circuit or a spent budget did
/// not make (the circuit's opening is reported once instead).
fn warn(warnings: &mut Vec<String>, peer: &str, unavailable: &Unavailable) {
    if !matches!(
        unavailable,
        Unavailable::CircuitOpen | Unavailable::NoTimeLeft
    ) {
        push_warning(
            warnings,
            format!("{peer}: {unavailable}; deciding from local history"),
        );
    }
}

fn push_warning(warnings: &mut Vec<String>, warning: String) {
    if warnings.len() < FLEET_WARNINGS_KEPT {
        warnings.push(warning);
    } else if warnings.len() == FLEET_WARNINGS_KEPT {
        warnings.push("more fleet problems followed and were not kept".to_owned());
    }
}

fn row_to_peer(row: &rusqlite::Row<'_>) -> rusqlite::Result<PeerRow> {
    let updated_at: i64 = row.get(2)?;
    Ok(PeerRow {
        peer: row.get(0)?,
        history: row.get(1)?,
        updated_at: u64::try_from(updated_at).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_database_is_refused_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.sqlite3");
        std::fs::write(&path, [0x5a; 4096]).unwrap();
        let Err(error) = HistoryStore::open(&path) else {
            panic!("{} opened as a database", path.display());
        };
        assert!(
            matches!(&error, StoreError::NotADatabase { path: p, .. } if *p == path),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "{} is not a usable tlsfallback database: file is not a database",
                path.display()
            )),
            "{message}"
        );
        // The cause is in the message, not behind it: a chain printer writes it once.
        assert!(std::error::Error::source(&error).is_none());
    }

    #[test]
    fn facts_this_host_does_not_write_are_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let store = HistoryStore::open(&dir.path().join("peers.sqlite3")).unwrap();
        store
            .connection()
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON;
                 INSERT INTO peer_facts VALUES ('mx.a.test', 'bogus', 0, 0, 0, 0);
                 INSERT INTO peer_facts VALUES ('mx.b.test', NULL, -1, 0, 0, 0);",
            )
            .unwrap();
        let error = store.facts("mx.a.test").unwrap_err();
        assert!(
            matches!(&error, StoreError::ForeignFacts { peer, .. } if peer == "mx.a.test"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "the recorded facts of mx.a.test are not ones this host writes: tier \"bogus\""
        );
        assert_eq!(
            store.facts("mx.b.test").unwrap_err().to_string(),
            "the recorded facts of mx.b.test are not ones this host writes: out of range \
             integral type conversion attempted"
        );
    }

    #[test]
    fn a_failed_step_comes_back_as_the_callers_error_and_writes_nothing() {
        #[derive(Debug, PartialEq)]
        enum Caller {
            Store,
            Refused,
        }
        impl From<StoreError> for Caller {
            fn from(_: StoreError) -> Self {
                Self::Store
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut store = HistoryStore::open(&dir.path().join("peers.sqlite3")).unwrap();
        let refused = store.update("mx", 1, |_| Err::<((), Vec<u8>), _>(Caller::Refused));
        assert_eq!(refused, Err(Caller::Refused));
        assert_eq!(store.get("mx").unwrap(), None);
    }

    #[test]
    fn forgetting_unused_peers_goes_slice_by_slice_and_spares_the_pinned_and_the_recent() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HistoryStore::open(&dir.path().join("peers.sqlite3")).unwrap();
        // Ten peers last touched at 100..=1000; mx3 and mx7 are pinned until 5000.
        for k in 1..=10_i64 {
            store
                .connection()
                .execute(
                    "INSERT INTO peers (peer, history, updated_at) VALUES (?1, x'01', ?2)",
                    params![format!("mx{k}"), k * 100],
                )
                .unwrap();
        }
        for pinned in ["mx3", "mx7"] {
            store
                .connection()
                .execute(
                    "INSERT INTO peer_facts VALUES (?1, 'modern-tls', 1, 1, 5000, 1)",
                    [pinned],
                )
                .unwrap();
        }
        let (mut after, mut forgotten, mut slices) = (0, 0, 0);
        loop {
            let swept = store.forget_unused(850, 2000, after, 3).unwrap();
            forgotten += swept.forgotten;
            slices += 1;
            match swept.next {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!((forgotten, slices), (6, 5));
        let left: Vec<String> = store.list().unwrap().into_iter().map(|r| r.peer).collect();
        assert_eq!(left, ["mx10", "mx3", "mx7", "mx9"]);
        assert_eq!(store.facts("mx3").unwrap().pinned_until, 5000);
    }
}
