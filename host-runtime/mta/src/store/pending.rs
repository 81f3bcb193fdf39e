//! Pending history updates: what a delivery that reached its peer could not write to the
//! history database (locked past the busy timeout, disk full, engine failure), kept in a journal
//! beside the database and applied at the start of the next delivery.
//!
//! The message was delivered, so `deliver` must exit 0 (a TEMPFAIL would make the MTA send it
//! again) and the update (the success, and the pin it brings) must not be lost. The journal is
//! `DB.pending`: JSON lines, then NUL padding. The padding is written (so its blocks are
//! allocated) at the start of every delivery, and an entry overwrites it in place, so recording
//! needs no new disk space when the disk filled up during the delivery. Every access holds an
//! exclusive lock on the file; each entry has an id, and the ids applied are recorded in the
//! same transaction as the updates, so an entry is applied once even when the journal could not
//! be emptied afterwards.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use policy_core::{AttemptReport, DeliveryContext, Policy, UnixSeconds};
use serde::{Deserialize, Serialize};

/// The NUL padding kept at the end of the journal: room for a few dozen entries.
const RESERVED_BYTES: usize = 16 * 1024;

/// One decide step that could not be stored: replayed as it was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// Unique per entry, so that it is applied once.
    pub id: String,
    /// The peer's history key.
    pub peer: String,
    /// The policy the delivery used for the peer.
    pub policy: Policy,
    /// The delivery's context.
    pub context: DeliveryContext,
    /// The attempt's report (the success).
    pub last: AttemptReport,
    /// When it happened.
    pub now: UnixSeconds,
}

impl PendingUpdate {
    /// An entry with a fresh random id.
    ///
    /// # Errors
    ///
    /// When the system has no randomness to give.
    pub fn new(
        peer: &str,
        policy: Policy,
        context: DeliveryContext,
        last: AttemptReport,
        now: UnixSeconds,
    ) -> io::Result<Self> {
        let random = getrandom::u64().map_err(io::Error::other)?;
        Ok(Self {
            id: format!("{now}-{random:016x}"),
            peer: peer.to_owned(),
            policy,
            context,
            last,
            now,
        })
    }
}

/// The journal of the database at `db`.
#[must_use]
pub fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".pending");
    PathBuf::from(name)
}

/// The journal, open and exclusively locked (the lock goes with the file).
pub(super) struct Journal {
    file: File,
    /// The entries' bytes: everything before the padding.
    content: Vec<u8>,
}

impl Journal {
    /// Opens (creating) and locks the journal, and reads its entries.
    pub(super) fn open(db: &Path) -> io::Result<Self> {
        let path = journal_path(db);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if !existed {
            // The new name must survive a crash too.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        file.lock()?;
        let mut bytes = Vec::new();
        (&file).read_to_end(&mut bytes)?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes.truncate(end);
        Ok(Self {
            file,
            content: bytes,
        })
    }

    /// The entries, and the lines that are not one (a write torn by a crash).
    pub(super) fn entries(&self) -> (Vec<PendingUpdate>, Vec<String>) {
        let mut entries = Vec::new();
        let mut unreadable = Vec::new();
        for line in self
            .content
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            match serde_json::from_slice(line) {
                Ok(entry) => entries.push(entry),
                Err(e) => unreadable.push(format!("{:?}: {e}", String::from_utf8_lossy(line))),
            }
        }
        (entries, unreadable)
    }

    /// Makes sure the padding is there (best effort: on a full disk it may not be).
    pub(super) fn reserve(&self) -> io::Result<()> {
        let len = self.file.metadata()?.len();
        let wanted = (self.content.len() + RESERVED_BYTES) as u64;
        if len < wanted {
            let zeros = vec![0u8; usize::try_from(wanted - len).unwrap_or(RESERVED_BYTES)];
            self.file.write_all_at(&zeros, len)?;
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Adds an entry, over the padding, and syncs it to disk.
    pub(super) fn append(&mut self, entry: &PendingUpdate) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all_at(&line, self.content.len() as u64)?;
        self.file.sync_data()?;
        self.content.extend_from_slice(&line);
        // Padding for the next one; the entry is safe whether or not there is room.
        let _ = self.reserve();
        Ok(())
    }

    /// Empties the journal (after its entries were applied), keeping the padding.
    pub(super) fn clear(&mut self) -> io::Result<()> {
        self.file.write_all_at(&vec![0u8; self.content.len()], 0)?;
        self.file.sync_data()?;
        self.content.clear();
        Ok(())
    }
}
