//! The host's own record of what each peer proved ([`PeerFacts`]: its pin, the tier of its last
//! success, whether it did TLS), the facts the plugin guard holds every decision to.
//!
//! Kept in the history database beside `peers`, in the same write transaction as the decision,
//! and written only from the outcomes the host itself passes to the engine
//! (in `deciding`), never from a history blob: a policy plugin
//! writes the blob, and a plugin that rewrites or empties it must not take the pin with it.

use policy_core::{PeerFacts, Tier};
use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// The table, created with the database.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS peer_facts (
    peer TEXT PRIMARY KEY NOT NULL,
    last_success_tier TEXT
        CHECK (last_success_tier IN ('cleartext', 'legacy-tls', 'modern-tls', 'authenticated-tls')),
    last_success_at INTEGER NOT NULL CHECK (last_success_at >= 0),
    seen_tls INTEGER NOT NULL CHECK (seen_tls IN (0, 1)),
    pinned_until INTEGER NOT NULL CHECK (pinned_until >= 0),
    updated_at INTEGER NOT NULL
) STRICT;";

/// Seconds since the epoch as SQLite stores them (beyond `i64::MAX`, which no clock reaches,
/// the largest it can).
pub(crate) fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The facts recorded for `peer`; none recorded yet is a peer that proved nothing.
///
/// # Errors
///
/// A database error, or a row this host did not write (an unknown tier, a negative time).
pub(crate) fn read(connection: &Connection, peer: &str) -> Result<PeerFacts, StoreError> {
    let row = connection
        .prepare_cached(
            "SELECT last_success_tier, last_success_at, seen_tls, pinned_until
             FROM peer_facts WHERE peer = ?1",
        )?
        .query_row([peer], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .optional()
        .map_err(|cause| StoreError::ReadFacts {
            peer: peer.to_owned(),
            cause,
        })?;
    let Some((tier, last_success_at, seen_tls, pinned_until)) = row else {
        return Ok(PeerFacts::default());
    };
    let foreign = |detail: String| StoreError::ForeignFacts {
        peer: peer.to_owned(),
        detail,
    };
    let last_success_tier = tier
        .map(|name| Tier::from_name(&name).ok_or_else(|| foreign(format!("tier {name:?}"))))
        .transpose()?;
    let time = |value: i64| u64::try_from(value).map_err(|e| foreign(e.to_string()));
    Ok(PeerFacts {
        last_success_tier,
        last_success_at: time(last_success_at)?,
        seen_tls,
        pinned_until: time(pinned_until)?,
    })
}

/// Stores `facts` for `peer`.
///
/// # Errors
///
/// A database error.
pub(crate) fn write(
    connection: &Connection,
    peer: &str,
    facts: &PeerFacts,
    now: u64,
) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO peer_facts
                 (peer, last_success_tier, last_success_at, seen_tls, pinned_until, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(peer) DO UPDATE SET
                 last_success_tier = excluded.last_success_tier,
                 last_success_at = excluded.last_success_at,
                 seen_tls = excluded.seen_tls,
                 pinned_until = excluded.pinned_until,
                 updated_at = excluded.updated_at",
        )?
        .execute(params![
            peer,
            facts.last_success_tier.map(Tier::name),
            seconds(facts.last_success_at),
            facts.seen_tls,
            seconds(facts.pinned_until),
            seconds(now),
        ])
        .map_err(|cause| StoreError::WriteFacts {
            peer: peer.to_owned(),
            cause,
        })?;
    Ok(())
}

/// Forgets what `peer` proved; whether anything was recorded.
///
/// # Errors
///
/// A database error.
pub(crate) fn forget(connection: &Connection, peer: &str) -> Result<bool, StoreError> {
    Ok(connection
        .prepare_cached("DELETE FROM peer_facts WHERE peer = ?1")?
        .execute([peer])?
        > 0)
}
