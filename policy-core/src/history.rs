//! The peer's history: an opaque, versioned postcard blob the host stores and hands back.
//!
//! Layout of format version 1: one version byte (`1`), then the postcard encoding of [`History`]
//! (varint integers, one byte per enum tag and `Option` tag). Every field is bounded, so the blob
//! is at most [`MAX_HISTORY_LEN`] bytes whatever happens (41 with every field at its maximum); a
//! peer that always works at the top tier needs about 14.

use serde::{Deserialize, Serialize};

use crate::UnixSeconds;
use crate::tier::Tier;

/// The history format this engine writes. Older versions it still reads are listed in
/// `docs/policy.md`; version 1 is the first.
pub const HISTORY_FORMAT_VERSION: u8 = 1;

/// The largest history blob the engine ever writes or accepts, in bytes.
pub const MAX_HISTORY_LEN: usize = 64;

/// Why a history blob could not be read. The engine then treats the peer as unknown and says so
/// ([`Reason::HistoryUnreadable`](crate::Reason::HistoryUnreadable)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The blob has no bytes at all (pass `None` for a peer without history).
    #[error("the history blob is empty")]
    Empty,
    /// The blob is longer than any this engine writes.
    #[error(
        "the history blob is {0} bytes, more than the {MAX_HISTORY_LEN} this engine ever writes"
    )]
    TooLong(usize),
    /// The first byte names a format this engine does not know (written by a newer engine, or not
    /// a history blob at all).
    #[error(
        "the history blob has format version {0}, this engine reads version {HISTORY_FORMAT_VERSION}"
    )]
    UnsupportedVersion(u8),
    /// The blob ends in the middle of a field.
    #[error("the history blob is truncated")]
    Truncated,
    /// A field holds a value no engine writes (an unknown tier, a boolean that is neither 0 nor 1,
    /// an overlong integer).
    #[error("the history blob holds a value no engine writes")]
    Malformed,
    /// Bytes follow the last field.
    #[error("the history blob has {0} bytes after its last field")]
    TrailingBytes(usize),
}

impl HistoryError {
    /// The kebab-case name used in the WIT contract and the CLI's JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong(_) => "too-long",
            Self::UnsupportedVersion(_) => "unsupported-version",
            Self::Truncated => "truncated",
            Self::Malformed => "malformed",
            Self::TrailingBytes(_) => "trailing-bytes",
        }
    }
}

/// What the engine remembers about a peer between deliveries.
///
/// `last_success_tier`, `last_success_at`, `seen_tls` and `pinned_until` are the peer's
/// [`PeerFacts`](crate::PeerFacts) ([`facts`](Self::facts)), kept here as plain fields so the
/// blob's layout stays the one `docs/policy.md` documents; successes update them through
/// [`PeerFacts::record_success`](crate::PeerFacts::record_success) only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerMemory {
    /// The tier the next delivery starts at when it is below the top tier (`None`: the top tier).
    /// Set by definitive evidence (a success, a protocol or cipher alert, STARTTLS absent).
    pub start_tier: Option<Tier>,
    /// The tier of the last successful delivery.
    pub last_success_tier: Option<Tier>,
    /// When the last successful delivery happened, in seconds since the Unix epoch (0: never).
    pub last_success_at: UnixSeconds,
    /// Whether the peer was ever seen completing a delivery over TLS. A peer that did TLS before
    /// and now lacks STARTTLS may be behind a stripping attacker.
    pub seen_tls: bool,
    /// Until when (seconds since the Unix epoch) cleartext and legacy TLS are refused for this
    /// peer (0: not pinned).
    pub pinned_until: UnixSeconds,
    /// When a delivery last started at the top tier, in seconds since the Unix epoch (0: never).
    pub last_probe_at: UnixSeconds,
    /// Cheap evidence in a row at the current start tier, across deliveries: resets, timeouts,
    /// post-handshake failures, unexpected missing STARTTLS, and alerts refusing a tier below
    /// the one the peer proved.
    pub transient_failures: u8,
}

/// Where the current delivery stands (between an `attempt` decision and the report of its
/// outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dance {
    /// The tier the engine last asked for.
    pub tier: Tier,
    /// Attempts asked for in this delivery so far.
    pub attempts: u8,
    /// Whether this delivery has attempted the top tier.
    pub reached_top: bool,
}

/// Everything in a history blob.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct History {
    /// What is remembered between deliveries.
    pub memory: PeerMemory,
    /// The delivery in progress, if any.
    pub dance: Option<Dance>,
}

impl History {
    /// Reads a history blob.
    ///
    /// # Errors
    ///
    /// A [`HistoryError`] naming what is wrong with the blob; never a panic, whatever the bytes.
    pub fn decode(blob: &[u8]) -> Result<Self, HistoryError> {
        let (&version, body) = blob.split_first().ok_or(HistoryError::Empty)?;
        if blob.len() > MAX_HISTORY_LEN {
            return Err(HistoryError::TooLong(blob.len()));
        }
        if version != HISTORY_FORMAT_VERSION {
            return Err(HistoryError::UnsupportedVersion(version));
        }
        let (history, rest) = postcard::take_from_bytes::<Self>(body).map_err(|e| match e {
            postcard::Error::DeserializeUnexpectedEnd => HistoryError::Truncated,
            _ => HistoryError::Malformed,
        })?;
        if !rest.is_empty() {
            return Err(HistoryError::TrailingBytes(rest.len()));
        }
        Ok(history)
    }

    /// Writes the history blob (format [`HISTORY_FORMAT_VERSION`]). Allocates nothing.
    pub fn encode(&self) -> HistoryBlob {
        let mut blob = HistoryBlob {
            bytes: [0; MAX_HISTORY_LEN],
            len: 1,
        };
        blob.bytes[0] = HISTORY_FORMAT_VERSION;
        // Cannot fail: every field is bounded and the largest encoding is 41 bytes
        // (`history::tests::largest_history_fits` proves it), so `len` stays at 1 only if the
        // impossible happened, and the blob then reads back as `Truncated`, never as a wrong peer.
        if let Ok(used) = postcard::to_slice(self, &mut blob.bytes[1..]) {
            blob.len = 1 + used.len() as u8;
        }
        blob
    }
}

/// An encoded history blob: a fixed buffer, so that deciding allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct HistoryBlob {
    bytes: [u8; MAX_HISTORY_LEN],
    len: u8,
}

impl HistoryBlob {
    /// The blob's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Copies bytes into a blob (for example a blob a policy component returned).
    ///
    /// # Errors
    ///
    /// [`HistoryError::TooLong`] when `bytes` is longer than [`MAX_HISTORY_LEN`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HistoryError> {
        if bytes.len() > MAX_HISTORY_LEN {
            return Err(HistoryError::TooLong(bytes.len()));
        }
        let mut blob = Self {
            bytes: [0; MAX_HISTORY_LEN],
            len: bytes.len() as u8,
        };
        blob.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(blob)
    }
}

impl PartialEq for HistoryBlob {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for HistoryBlob {}

/// The peer's shared history `shared` (what the host stores for the peer, written by every
/// delivery to it) with the dance of `own` (the history this delivery's previous decision
/// returned) in place of the stored one.
///
/// The memory is shared between deliveries; the dance belongs to one delivery. When two
/// deliveries to one peer interleave, the stored dance is the last writer's: a delivery that
/// reports an outcome must be judged on its own dance (did *it* reach the top tier?), or a
/// concurrent start hides the evidence of a forged downgrade. Total: when either blob cannot be
/// read, `None`, and the caller passes `shared` as it is (the engine then says what is wrong with
/// it, or rebuilds the dance from the report, exactly as without this function).
#[must_use]
pub fn with_dance_of(shared: &[u8], own: &[u8]) -> Option<HistoryBlob> {
    let shared = History::decode(shared).ok()?;
    let own = History::decode(own).ok()?;
    Some(
        History {
            memory: shared.memory,
            dance: own.dance,
        }
        .encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn largest() -> History {
        History {
            memory: PeerMemory {
                start_tier: Some(Tier::AuthenticatedTls),
                last_success_tier: Some(Tier::AuthenticatedTls),
                last_success_at: u64::MAX,
                seen_tls: true,
                pinned_until: u64::MAX,
                last_probe_at: u64::MAX,
                transient_failures: u8::MAX,
            },
            dance: Some(Dance {
                tier: Tier::AuthenticatedTls,
                attempts: u8::MAX,
                reached_top: true,
            }),
        }
    }

    #[test]
    fn with_dance_of_keeps_the_shared_memory_and_this_deliverys_dance() {
        let mut shared = largest();
        shared.dance = None;
        let own = History {
            memory: PeerMemory::default(),
            dance: largest().dance,
        };
        let spliced = with_dance_of(shared.encode().as_bytes(), own.encode().as_bytes()).unwrap();
        assert_eq!(History::decode(spliced.as_bytes()), Ok(largest()));
        assert!(with_dance_of(&[9, 9], own.encode().as_bytes()).is_none());
        assert!(with_dance_of(shared.encode().as_bytes(), &[]).is_none());
    }

    #[test]
    fn largest_history_fits() {
        let blob = largest().encode();
        assert_eq!(blob.as_bytes().len(), 41);
        assert_eq!(History::decode(blob.as_bytes()), Ok(largest()));
    }

    #[test]
    fn every_prefix_of_a_blob_is_truncated_not_a_panic() {
        let blob = largest().encode();
        for len in 1..blob.as_bytes().len() {
            assert_eq!(
                History::decode(&blob.as_bytes()[..len]),
                Err(HistoryError::Truncated),
                "prefix of {len} bytes"
            );
        }
    }
}
