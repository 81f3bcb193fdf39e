//! The host's own copy of the datagrams it sent (or would have sent): one row per final result,
//! keyed by UTC day and recipient domain, in the history database. `tlsrpt preview` renders a
//! day's report from it, for operators who run no reporter and for tests that compare it with
//! the real one. Knows nothing of deliveries or reports: it keeps and returns datagrams.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::datagram::{Datagram, DecodeError};

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// SQLite failed (the file is not a database, the disk is full, the table is locked).
    #[error("the TLS-RPT ledger in {path}: {cause}")]
    Database {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        cause: rusqlite::Error,
    },
    /// A stored row is not a datagram this host writes (the file was edited by hand).
    #[error("the TLS-RPT ledger row {id} is unreadable: {cause}")]
    Row {
        /// The row's id.
        id: i64,
        /// Why.
        #[source]
        cause: DecodeError,
    },
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tlsrpt_results (
    id INTEGER PRIMARY KEY,
    day TEXT NOT NULL CHECK (length(day) = 10),
    domain TEXT NOT NULL,
    datagram TEXT NOT NULL,
    recorded_at INTEGER NOT NULL CHECK (recorded_at >= 0)
) STRICT;
CREATE INDEX IF NOT EXISTS tlsrpt_results_by_day ON tlsrpt_results (day, domain);";

/// The ledger: one connection to the history database.
#[derive(Debug)]
pub struct ResultLedger {
    connection: Connection,
    path: String,
}

impl ResultLedger {
    /// Opens the ledger in the database at `path`, creating its table if needed.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or is not a database.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, LedgerError> {
        let name = path.display().to_string();
        let wrap = |cause| LedgerError::Database {
            path: name.clone(),
            cause,
        };
        let connection = Connection::open(path).map_err(wrap)?;
        connection.busy_timeout(busy_timeout).map_err(wrap)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(wrap)?;
        ensure_schema(&connection).map_err(wrap)?;
        Ok(Self {
            connection,
            path: name,
        })
    }

    /// Keeps `datagram`, recorded at `now` (Unix seconds), under its UTC day.
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn record(&self, datagram: &Datagram, now: u64) -> Result<(), LedgerError> {
        record_in(&self.connection, datagram, now).map_err(|cause| self.error(cause))
    }

    /// The datagrams kept for `day` (`YYYY-MM-DD`), for `domain` only when given, in the order
    /// they were recorded.
    ///
    /// # Errors
    ///
    /// A database error, or a row that is not a datagram ([`LedgerError::Row`]): reported, not
    /// skipped, since a report that silently misses sessions is a wrong report.
    pub fn day(&self, day: &str, domain: Option<&str>) -> Result<Vec<Datagram>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT id, datagram FROM tlsrpt_results
                 WHERE day = ?1 AND (?2 IS NULL OR domain = ?2) ORDER BY id",
            )
            .map_err(|cause| self.error(cause))?;
        let rows = statement
            .query_map(params![day, domain], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|cause| self.error(cause))?;
        rows.into_iter()
            .map(|(id, text)| {
                Datagram::decode(&text).map_err(|cause| LedgerError::Row { id, cause })
            })
            .collect()
    }

    /// The days that have datagrams, oldest first.
    ///
    /// # Errors
    ///
    /// A database error.
    pub fn days(&self) -> Result<Vec<String>, LedgerError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT DISTINCT day FROM tlsrpt_results ORDER BY day")
            .map_err(|cause| self.error(cause))?;
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(Iterator::collect)
            .map_err(|cause| self.error(cause))
    }

    /// The connection, for tests that tamper with rows.
    #[cfg(test)]
    pub(crate) const fn connection_for_tests(&self) -> &Connection {
        &self.connection
    }

    fn error(&self, cause: rusqlite::Error) -> LedgerError {
        LedgerError::Database {
            path: self.path.clone(),
            cause,
        }
    }
}

/// Creates the ledger's table in the database of `connection` if it is missing.
///
/// # Errors
///
/// A database error.
pub fn ensure_schema(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(SCHEMA)
}

/// Keeps `datagram` through `connection` (inside the caller's transaction, so that the
/// Postfix service keeps it with the log position that produced it: exactly once).
///
/// # Errors
///
/// A database error.
pub fn record_in(connection: &Connection, datagram: &Datagram, now: u64) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO tlsrpt_results (day, domain, datagram, recorded_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            utc_day(now),
            datagram.domain,
            datagram.encode(),
            i64::try_from(now).unwrap_or(i64::MAX)
        ])?;
    Ok(())
}

/// Drops the results of the days before the one `since` falls in (the daily reports they made
/// are long sent).
///
/// # Errors
///
/// A database error.
pub fn forget_before(connection: &Connection, since: u64) -> rusqlite::Result<()> {
    connection
        .prepare_cached("DELETE FROM tlsrpt_results WHERE day < ?1")?
        .execute([utc_day(since)])?;
    Ok(())
}

/// The UTC day (`YYYY-MM-DD`) of `now` (Unix seconds), the day TLS-RPT reports cover.
#[must_use]
pub fn utc_day(now: u64) -> String {
    let days = i64::try_from(now / 86_400).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Checks a `YYYY-MM-DD` day (a real calendar date).
///
/// # Errors
///
/// What is wrong with it.
pub fn check_day(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not a day as YYYY-MM-DD");
    let fields: Vec<&str> = text.split('-').collect();
    let [year, month, day] = fields.as_slice() else {
        return Err(bad());
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(bad());
    }
    let number = |field: &str| field.parse::<u32>().map_err(|_| bad());
    let (year, month, day) = (number(year)?, number(month)?, number(day)?);
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let length = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("{text:?}: there is no month {month}")),
    };
    if day == 0 || day > length {
        return Err(format!("{text:?}: that month has no day {day}"));
    }
    Ok(())
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count since
/// 1970-01-01. Written out (ten lines) rather than adding a date crate for one conversion.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsrpt::datagram::{PolicyResult, ReportPolicy};

    fn datagram(domain: &str) -> Datagram {
        Datagram {
            domain: domain.to_owned(),
            record: "v=TLSRPTv1; rua=mailto:r@example.net".to_owned(),
            policies: vec![PolicyResult {
                policy: ReportPolicy::no_policy_found(domain),
                failures: Vec::new(),
                failed: false,
            }],
        }
    }

    #[test]
    fn utc_days_are_calendar_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(86_399), "1970-01-01");
        assert_eq!(utc_day(951_782_400), "2000-02-29");
        assert_eq!(utc_day(1_796_083_200), "2026-12-01");
        assert!(check_day("2000-02-29").is_ok());
        for bad in [
            "2001-02-29",
            "2026-13-01",
            "2026-1-01",
            "yesterday",
            "2026-12-00",
        ] {
            assert!(check_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_day_returns_what_was_recorded_that_day() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ResultLedger::open(&dir.path().join("db"), Duration::from_secs(1)).unwrap();
        ledger
            .record(&datagram("a.example"), 1_796_083_200)
            .unwrap();
        ledger
            .record(&datagram("b.example"), 1_796_083_201)
            .unwrap();
        ledger
            .record(&datagram("a.example"), 1_796_083_200 + 86_400)
            .unwrap();
        assert_eq!(ledger.day("2026-12-01", None).unwrap().len(), 2);
        assert_eq!(
            ledger.day("2026-12-01", Some("b.example")).unwrap(),
            vec![datagram("b.example")]
        );
        assert_eq!(ledger.days().unwrap(), ["2026-12-01", "2026-12-02"]);
    }

    #[test]
    fn a_tampered_row_is_an_error_not_a_missing_session() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ResultLedger::open(&dir.path().join("db"), Duration::from_secs(1)).unwrap();
        ledger
            .record(&datagram("a.example"), 1_796_083_200)
            .unwrap();
        ledger
            .connection_for_tests()
            .execute("UPDATE tlsrpt_results SET datagram = '{\"dpv\": \"1\"'", [])
            .unwrap();
        let error = ledger.day("2026-12-01", None).unwrap_err().to_string();
        assert!(error.contains("row 1 is unreadable"), "{error}");
    }
}
