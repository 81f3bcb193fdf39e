//! Fetched policies, kept in the history's SQLite database (table `mta_sts_policies`) so that a
//! policy keeps applying across deliveries and restarts until it expires (RFC 8461 section 5.1).
//!
//! The policy is stored as the body it was fetched as and parsed again when read: a row whose
//! body no longer parses (a stricter parser, a hand-edited database) is reported as
//! [`CacheError::StoredPolicyInvalid`], never used as if valid and never dropped in silence.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::policy::{Policy, PolicyError};
use crate::store::DEFAULT_BUSY_TIMEOUT;

/// A cached policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedPolicy {
    /// The policy domain (lower case, no trailing dot).
    pub domain: String,
    /// The TXT record's id the policy was fetched under.
    pub id: String,
    /// The policy.
    pub policy: Policy,
    /// When it was fetched (Unix seconds).
    pub fetched_at: u64,
    /// When it stops applying: `fetched_at + max_age`.
    pub expires_at: u64,
    /// When to fetch it again even if the id has not changed (before `expires_at`).
    pub refresh_at: u64,
}

/// Why the cache could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The database could not be opened or its table created.
    #[error("opening the MTA-STS policy cache {path}: {source}")]
    Open {
        /// The database file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A query failed (a locked or damaged database, a full disk).
    #[error("the MTA-STS policy cache: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored policy that does not parse any more.
    #[error("the cached MTA-STS policy of {domain} no longer parses: {error}")]
    StoredPolicyInvalid {
        /// The domain.
        domain: String,
        /// Why.
        error: PolicyError,
    },
    /// A row with a negative time (not written by this program).
    #[error("the cached MTA-STS policy of {domain} has a negative time")]
    BadRow {
        /// The domain.
        domain: String,
    },
}

/// The cache: one connection to the database file.
#[derive(Debug)]
pub struct PolicyCache {
    connection: Connection,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS mta_sts_policies (
    domain TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    policy TEXT NOT NULL,
    fetched_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    refresh_at INTEGER NOT NULL
)";

const COLUMNS: &str = "domain, id, policy, fetched_at, expires_at, refresh_at";

type Row = (String, String, String, i64, i64, i64);

impl PolicyCache {
    /// Opens the cache in the database at `path` (the history's), creating the table if needed.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or is not a database.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        Self::open_with_busy_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// As [`open`](Self::open), with how long a write waits for another process's transaction.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or is not a database.
    pub fn open_with_busy_timeout(path: &Path, busy_timeout: Duration) -> Result<Self, CacheError> {
        let open_error = |source| CacheError::Open {
            path: path.display().to_string(),
            source,
        };
        let connection = Connection::open(path).map_err(open_error)?;
        Self::with_connection(connection, busy_timeout).map_err(open_error)
    }

    /// A cache in memory, for tests and one-off runs.
    ///
    /// # Errors
    ///
    /// When SQLite cannot create the table.
    pub fn in_memory() -> Result<Self, CacheError> {
        let connection = Connection::open_in_memory()?;
        Ok(Self::with_connection(connection, DEFAULT_BUSY_TIMEOUT)?)
    }

    fn with_connection(connection: Connection, busy_timeout: Duration) -> rusqlite::Result<Self> {
        connection.busy_timeout(busy_timeout)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self { connection })
    }

    /// The connection, for tests that tamper with rows.
    #[cfg(test)]
    pub(crate) const fn connection_for_tests(&self) -> &Connection {
        &self.connection
    }

    /// The cached policy of `domain`, expired or not (the caller compares the times).
    ///
    /// # Errors
    ///
    /// A failed query, or [`CacheError::StoredPolicyInvalid`].
    pub fn get(&self, domain: &str) -> Result<Option<CachedPolicy>, CacheError> {
        let row: Option<Row> = self
            .connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM mta_sts_policies WHERE domain = ?1"),
                params![domain],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                    ))
                },
            )
            .optional()?;
        row.map(from_row).transpose()
    }

    /// Stores (or replaces) a domain's policy.
    ///
    /// # Errors
    ///
    /// A failed write.
    pub fn put(&self, entry: &CachedPolicy) -> Result<(), CacheError> {
        let time = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        self.connection.execute(
            &format!(
                "INSERT OR REPLACE INTO mta_sts_policies ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ),
            params![
                entry.domain,
                entry.id,
                entry.policy.text(),
                time(entry.fetched_at),
                time(entry.expires_at),
                time(entry.refresh_at),
            ],
        )?;
        Ok(())
    }

    /// Forgets a domain's policy; whether there was one.
    ///
    /// # Errors
    ///
    /// A failed write.
    pub fn forget(&self, domain: &str) -> Result<bool, CacheError> {
        let removed = self.connection.execute(
            "DELETE FROM mta_sts_policies WHERE domain = ?1",
            params![domain],
        )?;
        Ok(removed > 0)
    }

    /// Every cached policy by domain, each row on its own: one that does not parse is an error
    /// in its place, the others are still listed.
    ///
    /// # Errors
    ///
    /// A failed query.
    pub fn list(&self) -> Result<Vec<Result<CachedPolicy, CacheError>>, CacheError> {
        let mut statement = self.connection.prepare(&format!(
            "SELECT {COLUMNS} FROM mta_sts_policies ORDER BY domain"
        ))?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            entries.push(from_row(row?));
        }
        Ok(entries)
    }
}

fn from_row(
    (domain, id, text, fetched_at, expires_at, refresh_at): Row,
) -> Result<CachedPolicy, CacheError> {
    let time = |t: i64| {
        u64::try_from(t).map_err(|_| CacheError::BadRow {
            domain: domain.clone(),
        })
    };
    let (fetched_at, expires_at, refresh_at) =
        (time(fetched_at)?, time(expires_at)?, time(refresh_at)?);
    let policy =
        Policy::parse(text.as_bytes()).map_err(|error| CacheError::StoredPolicyInvalid {
            domain: domain.clone(),
            error,
        })?;
    Ok(CachedPolicy {
        domain,
        id,
        policy,
        fetched_at,
        expires_at,
        refresh_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::policy::{Mode, MxPattern};

    fn entry(domain: &str) -> CachedPolicy {
        CachedPolicy {
            domain: domain.to_owned(),
            id: "abc".to_owned(),
            policy: Policy::new(
                Mode::Enforce,
                86400,
                vec![MxPattern::parse("mx.example.net").unwrap()],
            ),
            fetched_at: 1000,
            expires_at: 87400,
            refresh_at: 50000,
        }
    }

    #[test]
    fn policies_round_trip_through_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.sqlite3");
        {
            let cache = PolicyCache::open(&path).unwrap();
            cache.put(&entry("example.net")).unwrap();
            cache.put(&entry("example.org")).unwrap();
        }
        let cache = PolicyCache::open(&path).unwrap();
        assert_eq!(
            cache.get("example.net").unwrap(),
            Some(entry("example.net"))
        );
        assert_eq!(cache.get("example.com").unwrap(), None);
        assert_eq!(cache.list().unwrap().len(), 2);
        assert!(cache.forget("example.net").unwrap());
        assert!(!cache.forget("example.net").unwrap());
        assert_eq!(cache.get("example.net").unwrap(), None);
    }

    #[test]
    fn the_cache_shares_the_history_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.sqlite3");
        let _store = crate::store::HistoryStore::open(&path).unwrap();
        let cache = PolicyCache::open(&path).unwrap();
        cache.put(&entry("example.net")).unwrap();
        drop(cache);
        let _store = crate::store::HistoryStore::open(&path).unwrap();
        assert!(
            PolicyCache::open(&path)
                .unwrap()
                .get("example.net")
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn tampered_cached_policy_is_reported_not_used_nor_dropped() {
        let cache = PolicyCache::in_memory().unwrap();
        cache.put(&entry("example.net")).unwrap();
        cache.put(&entry("example.org")).unwrap();
        cache
            .connection
            .execute(
                "UPDATE mta_sts_policies SET policy = 'mode: enforce' WHERE domain = 'example.net'",
                [],
            )
            .unwrap();
        assert!(matches!(
            cache.get("example.net"),
            Err(CacheError::StoredPolicyInvalid { .. })
        ));
        let listed = cache.list().unwrap();
        assert!(matches!(
            listed[0],
            Err(CacheError::StoredPolicyInvalid { .. })
        ));
        assert!(listed[1].is_ok());
        cache
            .connection
            .execute(
                "UPDATE mta_sts_policies SET expires_at = -1 WHERE domain = 'example.org'",
                [],
            )
            .unwrap();
        assert!(matches!(
            cache.get("example.org"),
            Err(CacheError::BadRow { .. })
        ));
    }
}
