//! What the daemon keeps besides peer history, in the same SQLite database: per destination the
//! tier last answered (so that an outcome in the log is reported for the tier Postfix used) and
//! the dance in progress, and per followed log file its position and the half-read attempts.

use anyhow::Context as _;
use policy_core::Tier;
use rusqlite::{Connection, OptionalExtension, params};

use super::log::Tracker;

/// Creates the daemon's tables if they are missing.
///
/// # Errors
///
/// A database error.
pub fn ensure_schema(connection: &Connection) -> anyhow::Result<()> {
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS postfix_destinations (
                 destination TEXT PRIMARY KEY NOT NULL,
                 answered_tier TEXT,
                 answered_at INTEGER NOT NULL,
                 continue_tier TEXT,
                 continue_policy TEXT,
                 continue_until INTEGER NOT NULL DEFAULT 0
             ) STRICT;
             CREATE TABLE IF NOT EXISTS postfix_log (
                 path TEXT PRIMARY KEY NOT NULL,
                 inode INTEGER NOT NULL,
                 offset INTEGER NOT NULL,
                 tracker TEXT NOT NULL,
                 updated_at INTEGER NOT NULL
             ) STRICT;",
        )
        .context("creating the Postfix daemon's tables")
}

/// The next attempt of a dance in progress: what the engine asked for after the last outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    /// The tier.
    pub tier: Tier,
    /// The Postfix policy that carries it out.
    pub policy: String,
}

/// One destination's row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationRow {
    /// The tier of the last answer (`None`: the answer was not an attempt).
    pub answered_tier: Option<Tier>,
    /// When, in seconds since the Unix epoch.
    pub answered_at: u64,
    /// The dance's next attempt, while it is due.
    pub continuation: Option<Continuation>,
    /// Until when the continuation stands, in seconds since the Unix epoch.
    pub continue_until: u64,
}

fn to_sql(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn from_sql(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0)
}

/// Reads one destination.
///
/// # Errors
///
/// A database error, or a tier name no engine writes (the table was edited by hand).
pub fn destination(connection: &Connection, key: &str) -> anyhow::Result<Option<DestinationRow>> {
    let row = connection
        .query_row(
            "SELECT answered_tier, answered_at, continue_tier, continue_policy, continue_until
             FROM postfix_destinations WHERE destination = ?1",
            [key],
            |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((answered, answered_at, continue_tier, continue_policy, continue_until)) = row else {
        return Ok(None);
    };
    let tier = |name: Option<String>| -> anyhow::Result<Option<Tier>> {
        name.map(|n| {
            Tier::from_name(&n).with_context(|| format!("unknown tier {n:?} stored for {key}"))
        })
        .transpose()
    };
    let continuation = match (tier(continue_tier)?, continue_policy) {
        (Some(tier), Some(policy)) => Some(Continuation { tier, policy }),
        _ => None,
    };
    Ok(Some(DestinationRow {
        answered_tier: tier(answered)?,
        answered_at: from_sql(answered_at),
        continuation,
        continue_until: from_sql(continue_until),
    }))
}

/// Writes one destination.
///
/// # Errors
///
/// A database error.
pub fn save_destination(
    connection: &Connection,
    key: &str,
    row: &DestinationRow,
) -> anyhow::Result<()> {
    connection.execute(
        "INSERT INTO postfix_destinations
             (destination, answered_tier, answered_at, continue_tier, continue_policy, continue_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(destination) DO UPDATE SET
             answered_tier = excluded.answered_tier, answered_at = excluded.answered_at,
             continue_tier = excluded.continue_tier, continue_policy = excluded.continue_policy,
             continue_until = excluded.continue_until",
        params![
            key,
            row.answered_tier.map(Tier::name),
            to_sql(row.answered_at),
            row.continuation.as_ref().map(|c| c.tier.name()),
            row.continuation.as_ref().map(|c| c.policy.as_str()),
            to_sql(row.continue_until),
        ],
    )?;
    Ok(())
}

/// Where reading a log file stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPosition {
    /// The file's inode (a rotated file keeps it under its new name).
    pub inode: u64,
    /// The offset just after the last line read.
    pub offset: u64,
}

/// The saved position and tracker for the log at `path`.
///
/// # Errors
///
/// A database error, or a saved tracker that does not parse (it is then reported, not dropped).
pub fn log_state(
    connection: &Connection,
    path: &str,
) -> anyhow::Result<Option<(LogPosition, Tracker)>> {
    let row = connection
        .query_row(
            "SELECT inode, offset, tracker FROM postfix_log WHERE path = ?1",
            [path],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    let Some((inode, offset, tracker)) = row else {
        return Ok(None);
    };
    let tracker: Tracker = serde_json::from_str(&tracker).with_context(|| {
        format!("the saved state of the log {path} is unreadable; `tlsfallback postfix serve --forget-log-position` starts over")
    })?;
    Ok(Some((
        LogPosition {
            inode: from_sql(inode),
            offset: from_sql(offset),
        },
        tracker,
    )))
}

/// Saves the position and tracker for the log at `path`.
///
/// # Errors
///
/// A database error.
pub fn save_log_state(
    connection: &Connection,
    path: &str,
    position: LogPosition,
    tracker: &Tracker,
    now: u64,
) -> anyhow::Result<()> {
    connection.execute(
        "INSERT INTO postfix_log (path, inode, offset, tracker, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, offset = excluded.offset,
             tracker = excluded.tracker, updated_at = excluded.updated_at",
        params![
            path,
            to_sql(position.inode),
            to_sql(position.offset),
            serde_json::to_string(tracker)?,
            to_sql(now),
        ],
    )?;
    Ok(())
}

/// Forgets the saved position of the log at `path`.
///
/// # Errors
///
/// A database error.
pub fn forget_log_state(connection: &Connection, path: &str) -> anyhow::Result<()> {
    connection.execute("DELETE FROM postfix_log WHERE path = ?1", [path])?;
    Ok(())
}
