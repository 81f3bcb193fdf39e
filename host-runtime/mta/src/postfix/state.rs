//! What the daemon keeps besides peer history, in the same SQLite database: the answers given to
//! Postfix's SMTP client processes (so that an outcome in the log is reported for the tier that
//! very delivery used), per destination the dance in progress, and per followed log file its
//! position and the half-read attempts.

use policy_core::{Tier, TlsRptResults};
use rusqlite::{Connection, OptionalExtension, params};

use super::log::Tracker;
use crate::causes::Causes;

/// How long an answer waits for the outcome of the delivery it was for, in seconds: longer than
/// Postfix's own timeouts allow one delivery to take (every MX host's connect, greeting, TLS and
/// data timeouts), shorter than a queue run.
pub const ANSWER_TTL_SECS: u64 = 3600;

/// Why the daemon's own tables failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The daemon's tables cannot be created.
    #[error("creating the Postfix daemon's tables: {}", Causes(.0))]
    Schema(rusqlite::Error),
    /// A query failed (a locked or damaged database, a full disk).
    #[error("{}", Causes(.0))]
    Sql(rusqlite::Error),
    /// A tier name no daemon writes.
    #[error("unknown tier {name:?} stored for {key}")]
    UnknownTier {
        /// The stored name.
        name: String,
        /// The destination (or lookup key) it was stored for.
        key: String,
    },
    /// The saved state of a followed log does not parse.
    #[error(
        "the saved state of the log {path} is unreadable; `tlsfallback postfix serve --forget-log-position` starts over: {}",
        Causes(.cause)
    )]
    UnreadableLogState {
        /// The log file.
        path: String,
        /// Why.
        cause: serde_json::Error,
    },
    /// The state of a followed log cannot be written as JSON.
    #[error("{}", Causes(.0))]
    EncodeLogState(serde_json::Error),
}

impl From<rusqlite::Error> for StateError {
    fn from(cause: rusqlite::Error) -> Self {
        Self::Sql(cause)
    }
}

/// Creates the daemon's tables if they are missing.
///
/// # Errors
///
/// A database error.
pub fn ensure_schema(connection: &Connection) -> Result<(), StateError> {
    connection
        .execute_batch(
            // `postfix_destinations` held one answered tier per destination, which concurrent
            // deliveries overwrote (so one delivery's outcome was booked for another's tier); its
            // dances carried no policy. It is dropped: a dance under way starts over, which costs
            // at most one attempt.
            "DROP TABLE IF EXISTS postfix_destinations;
             CREATE TABLE IF NOT EXISTS postfix_answers (
                 destination TEXT NOT NULL,
                 pid INTEGER NOT NULL,
                 tier TEXT NOT NULL,
                 answered_at INTEGER NOT NULL,
                 pending INTEGER NOT NULL,
                 used_by TEXT,
                 PRIMARY KEY (destination, pid, tier)
             ) STRICT;
             -- Every lookup drops the answers older than an hour: without this index that was
             -- a scan of every answer of the last hour, per lookup (docs/scale.md: 8
             -- connections fell from 12,000 to 1,400 lookups/s between 10^3 and 10^5 peers).
             CREATE INDEX IF NOT EXISTS postfix_answers_by_time ON postfix_answers (answered_at);
             CREATE TABLE IF NOT EXISTS postfix_dances (
                 destination TEXT PRIMARY KEY NOT NULL,
                 tier TEXT NOT NULL,
                 policy TEXT NOT NULL,
                 made_under TEXT NOT NULL,
                 made_at INTEGER NOT NULL,
                 until INTEGER NOT NULL
             ) STRICT;
             CREATE TABLE IF NOT EXISTS postfix_tlsrpt_dances (
                 destination TEXT PRIMARY KEY NOT NULL,
                 seen INTEGER NOT NULL CHECK (seen >= 0 AND seen < 65536),
                 until INTEGER NOT NULL
             ) STRICT;
             CREATE TABLE IF NOT EXISTS postfix_log (
                 path TEXT PRIMARY KEY NOT NULL,
                 inode INTEGER NOT NULL,
                 offset INTEGER NOT NULL,
                 tracker TEXT NOT NULL,
                 updated_at INTEGER NOT NULL
             ) STRICT;",
        )
        .and_then(|()| crate::tlsrpt::ledger::ensure_schema(connection))
        .map_err(StateError::Schema)
}

fn to_sql(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn from_sql(seconds: i64) -> u64 {
    u64::try_from(seconds).unwrap_or(0)
}

fn stored_tier(name: &str, key: &str) -> Result<Tier, StateError> {
    Tier::from_name(name).ok_or_else(|| StateError::UnknownTier {
        name: name.to_owned(),
        key: key.to_owned(),
    })
}

/// Who asked: the PID of the Postfix SMTP client process behind a socketmap connection, when the
/// daemon could learn it (`SO_PEERCRED` on a Unix socket; `/proc` for a TCP one).
pub type ClientPid = Option<u32>;

/// Records that `pid` was answered `tier` for `destination` (`None`: the answer was not an
/// attempt, so an outcome of that process for it is nobody's).
///
/// A known process's new answer replaces its old one of another tier: Postfix looks the policy
/// up again for every delivery ("the TLS policy cache lifetime is one delivery", smtp_state.c).
/// One of the same tier is counted instead: a process delivering to a busy destination asks
/// again before the daemon has read its last status line, and both deliveries' outcomes are
/// that tier's (docs/scale.md: one in 55,000 attempts of the log benchmark was left out before).
/// Answers to unknown processes are counted per tier.
///
/// # Errors
///
/// A database error.
pub fn record_answer(
    connection: &Connection,
    destination: &str,
    pid: ClientPid,
    tier: Option<Tier>,
    now: u64,
) -> Result<(), StateError> {
    connection
        .prepare_cached("DELETE FROM postfix_answers WHERE answered_at < ?1")?
        .execute([to_sql(now.saturating_sub(ANSWER_TTL_SECS))])?;
    if let Some(pid) = pid.filter(|&p| p > 0) {
        connection
            .prepare_cached(
                "DELETE FROM postfix_answers WHERE destination = ?1 AND pid = ?2
                 AND tier IS NOT ?3",
            )?
            .execute(params![destination, pid, tier.map(Tier::name)])?;
    }
    let Some(tier) = tier else {
        return Ok(());
    };
    connection
        .prepare_cached(
            "INSERT INTO postfix_answers (destination, pid, tier, answered_at, pending, used_by)
         VALUES (?1, ?2, ?3, ?4, 1, NULL)
         ON CONFLICT(destination, pid, tier) DO UPDATE SET
             pending = pending + 1, answered_at = excluded.answered_at",
        )?
        .execute(params![
            destination,
            pid.unwrap_or(0),
            tier.name(),
            to_sql(now)
        ])?;
    Ok(())
}

/// To whom an observed attempt belongs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// The process that logged it was answered this tier for this destination.
    Exact {
        /// The destination (lookup key).
        destination: String,
        /// The tier answered.
        tier: Tier,
    },
    /// The process is not known, but every answer to unknown processes for this destination
    /// waiting for an outcome was this one tier.
    Unambiguous {
        /// The destination (lookup key).
        destination: String,
        /// The tier answered.
        tier: Tier,
    },
    /// Unknown processes were answered several tiers for this destination: the outcome cannot be
    /// told apart, and is not reported (a guess could book a modern failure as a legacy one).
    Ambiguous {
        /// The destination (lookup key).
        destination: String,
    },
    /// No answer of this daemon is waiting for this attempt.
    Unanswered,
}

/// Finds, and uses up, the answer an attempt of process `pid` under one of `candidates` (most
/// likely first) was made with. Several status lines of one queue ID (one per recipient) find
/// the same answer; another queue ID does not.
///
/// # Errors
///
/// A database error, or a tier name no daemon writes.
pub fn attribute(
    connection: &Connection,
    candidates: &[String],
    pid: u32,
    queue_id: &str,
    now: u64,
) -> Result<Attribution, StateError> {
    let fresh_since = to_sql(now.saturating_sub(ANSWER_TTL_SECS));
    if pid > 0 {
        for key in candidates {
            let row = connection
                .prepare_cached(
                    "SELECT tier, used_by, pending FROM postfix_answers
                     WHERE destination = ?1 AND pid = ?2 AND answered_at >= ?3",
                )?
                .query_row(params![key, pid, fresh_since], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            let Some((tier, used_by, pending)) = row else {
                continue;
            };
            // Another recipient of the message that used the answer, or a delivery whose
            // lookup is not used up yet; any other queue ID has no answer of its own.
            let same_message = used_by.as_deref() == Some(queue_id);
            if same_message || pending > 0 {
                if !same_message {
                    connection
                        .prepare_cached(
                            "UPDATE postfix_answers SET used_by = ?3, pending = pending - 1
                             WHERE destination = ?1 AND pid = ?2",
                        )?
                        .execute(params![key, pid, queue_id])?;
                }
                return Ok(Attribution::Exact {
                    destination: key.clone(),
                    tier: stored_tier(&tier, key)?,
                });
            }
        }
    }
    for key in candidates {
        let mut statement = connection.prepare_cached(
            "SELECT tier FROM postfix_answers
             WHERE destination = ?1 AND pid = 0 AND pending > 0 AND answered_at >= ?2",
        )?;
        let tiers = statement
            .query_map(params![key, fresh_since], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        match tiers.as_slice() {
            [] => {}
            [tier] => {
                connection
                    .prepare_cached(
                        "UPDATE postfix_answers SET pending = pending - 1
                     WHERE destination = ?1 AND pid = 0 AND tier = ?2",
                    )?
                    .execute(params![key, tier])?;
                return Ok(Attribution::Unambiguous {
                    destination: key.clone(),
                    tier: stored_tier(tier, key)?,
                });
            }
            _ => {
                return Ok(Attribution::Ambiguous {
                    destination: key.clone(),
                });
            }
        }
    }
    Ok(Attribution::Unanswered)
}

/// The next attempt of a dance in progress: what the engine asked for after the last outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    /// The tier.
    pub tier: Tier,
    /// The Postfix policy that carries it out.
    pub policy: String,
    /// What the engine decided under (the policy for this destination, see
    /// [`continuation`]): a dance decided under another policy does not go on.
    pub made_under: String,
    /// When the engine asked for it, in seconds since the Unix epoch.
    pub made_at: u64,
    /// Until when it stands (Postfix's retry must come by then).
    pub until: u64,
}

/// The dance in progress for `destination`, if it still stands at `now` under `made_under`.
/// One made under another policy, expired, or made "later" than `now` (the clock stepped
/// backwards, so how long ago it was made is unknown) does not, and is forgotten.
///
/// # Errors
///
/// A database error, or a tier name no daemon writes.
pub fn continuation(
    connection: &Connection,
    destination: &str,
    made_under: &str,
    now: u64,
) -> Result<Option<Continuation>, StateError> {
    let row = connection
        .prepare_cached(
            "SELECT tier, policy, made_under, made_at, until FROM postfix_dances
             WHERE destination = ?1",
        )?
        .query_row([destination], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    let Some((tier, policy, under, made_at, until)) = row else {
        return Ok(None);
    };
    let dance = Continuation {
        tier: stored_tier(&tier, destination)?,
        policy,
        made_under: under,
        made_at: from_sql(made_at),
        until: from_sql(until),
    };
    if dance.made_under == made_under && dance.made_at <= now && now <= dance.until {
        return Ok(Some(dance));
    }
    end_dance(connection, destination)?;
    Ok(None)
}

/// Saves the dance in progress for `destination`.
///
/// # Errors
///
/// A database error.
pub fn save_dance(
    connection: &Connection,
    destination: &str,
    dance: &Continuation,
) -> Result<(), StateError> {
    connection
        .prepare_cached(
            "INSERT INTO postfix_dances (destination, tier, policy, made_under, made_at, until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(destination) DO UPDATE SET
             tier = excluded.tier, policy = excluded.policy, made_under = excluded.made_under,
             made_at = excluded.made_at, until = excluded.until",
        )?
        .execute(params![
            destination,
            dance.tier.name(),
            dance.policy,
            dance.made_under,
            to_sql(dance.made_at),
            to_sql(dance.until),
        ])?;
    Ok(())
}

/// Ends the dance in progress for `destination`, if any.
///
/// # Errors
///
/// A database error.
pub fn end_dance(connection: &Connection, destination: &str) -> Result<(), StateError> {
    connection
        .prepare_cached("DELETE FROM postfix_dances WHERE destination = ?1")?
        .execute([destination])?;
    Ok(())
}

/// Drops what lapsed before `unused_since`: unfinished dances (Postfix gave up on them, or the
/// destination was never asked for again), their TLS-RPT steps, and TLS-RPT ledger rows.
///
/// # Errors
///
/// A database error.
pub fn forget_unused(connection: &Connection, unused_since: u64) -> Result<(), StateError> {
    let since = to_sql(unused_since);
    connection
        .prepare_cached("DELETE FROM postfix_dances WHERE until < ?1")?
        .execute([since])?;
    connection
        .prepare_cached("DELETE FROM postfix_tlsrpt_dances WHERE until < ?1")?
        .execute([since])?;
    crate::tlsrpt::ledger::forget_before(connection, unused_since)?;
    Ok(())
}

/// The TLS-RPT result types the dance in progress for `destination` named so far (none when
/// no dance stands at `now`), kept apart from [`Continuation`] so that they outlive nothing:
/// saved with each step, gone when the dance ends or lapses.
///
/// # Errors
///
/// A database error.
pub fn dance_results(
    connection: &Connection,
    destination: &str,
    now: u64,
) -> Result<TlsRptResults, StateError> {
    let row = connection
        .prepare_cached("SELECT seen, until FROM postfix_tlsrpt_dances WHERE destination = ?1")?
        .query_row([destination], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?;
    Ok(match row {
        Some((seen, until)) if now <= from_sql(until) => {
            TlsRptResults::from_bits(u16::try_from(seen).unwrap_or(0))
        }
        _ => TlsRptResults::EMPTY,
    })
}

/// Saves what the dance in progress for `destination` named, until `until`; an empty set ends
/// it.
///
/// # Errors
///
/// A database error.
pub fn save_dance_results(
    connection: &Connection,
    destination: &str,
    seen: TlsRptResults,
    until: u64,
) -> Result<(), StateError> {
    if seen.is_empty() {
        connection
            .prepare_cached("DELETE FROM postfix_tlsrpt_dances WHERE destination = ?1")?
            .execute([destination])?;
        return Ok(());
    }
    connection
        .prepare_cached(
            "INSERT INTO postfix_tlsrpt_dances (destination, seen, until) VALUES (?1, ?2, ?3)
             ON CONFLICT(destination) DO UPDATE SET seen = excluded.seen, until = excluded.until",
        )?
        .execute(params![destination, i64::from(seen.bits()), to_sql(until)])?;
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
) -> Result<Option<(LogPosition, Tracker)>, StateError> {
    let row = connection
        .prepare_cached("SELECT inode, offset, tracker FROM postfix_log WHERE path = ?1")?
        .query_row([path], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .optional()?;
    let Some((inode, offset, tracker)) = row else {
        return Ok(None);
    };
    let tracker: Tracker =
        serde_json::from_str(&tracker).map_err(|cause| StateError::UnreadableLogState {
            path: path.to_owned(),
            cause,
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
) -> Result<(), StateError> {
    connection.prepare_cached("INSERT INTO postfix_log (path, inode, offset, tracker, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(path) DO UPDATE SET inode = excluded.inode, offset = excluded.offset,
             tracker = excluded.tracker, updated_at = excluded.updated_at")?
        .execute(
        params![
            path,
            to_sql(position.inode),
            to_sql(position.offset),
            serde_json::to_string(tracker).map_err(StateError::EncodeLogState)?,
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
pub fn forget_log_state(connection: &Connection, path: &str) -> Result<(), StateError> {
    connection
        .prepare_cached("DELETE FROM postfix_log WHERE path = ?1")?
        .execute([path])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every lookup drops the answers older than an hour; a scan of the answers table there
    /// made each lookup cost as much as the destinations answered in the last hour.
    #[test]
    fn dropping_old_answers_walks_an_index_not_every_answer() {
        let connection = Connection::open_in_memory().unwrap();
        ensure_schema(&connection).unwrap();
        let plan: Vec<String> = connection
            .prepare("EXPLAIN QUERY PLAN DELETE FROM postfix_answers WHERE answered_at < ?1")
            .unwrap()
            .query_map([0], |row| row.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX postfix_answers_by_time")),
            "{plan:?}"
        );
        // And the pruning still drops what is old, and only that.
        for (destination, at) in [("old.example", 10), ("new.example", 5_000)] {
            record_answer(&connection, destination, Some(7), Some(Tier::ModernTls), at).unwrap();
        }
        let left: Vec<String> = connection
            .prepare("SELECT destination FROM postfix_answers")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(left, ["new.example"]);
    }

    #[test]
    fn an_unreadable_saved_log_state_is_reported_with_the_way_out() {
        let connection = Connection::open_in_memory().unwrap();
        ensure_schema(&connection).unwrap();
        connection
            .execute(
                "INSERT INTO postfix_log VALUES ('/var/log/mail.log', 1, 2, 'not json', 3)",
                [],
            )
            .unwrap();
        let error = log_state(&connection, "/var/log/mail.log").unwrap_err();
        assert!(
            matches!(&error, StateError::UnreadableLogState { path, .. } if path == "/var/log/mail.log"),
            "{error:?}"
        );
        assert!(
            error.to_string().starts_with(
                "the saved state of the log /var/log/mail.log is unreadable; \
                 `tlsfallback postfix serve --forget-log-position` starts over: expected"
            ),
            "{error}"
        );
    }
}
