//! The history merge for fleets: what several nodes learned about one peer, made one.
//!
//! Nodes that deliver to the same peer each keep their own [`PeerMemory`] and exchange copies
//! through a shared store. The store may deliver the copies in any order, twice, or lose them, so
//! [`PeerMemory::merge`] is the join of a semilattice (Shapiro et al., "Conflict-free Replicated
//! Data Types", 2011). It is commutative, associative and idempotent, and a merge is never below
//! either side. Any order of exchanges ends in the same memory on every node.
//!
//! The order is chosen so that security only goes up:
//!
//! | field | merged as | why |
//! |---|---|---|
//! | `pinned_until` | max | a pin set by any node protects every node until it ends |
//! | `seen_tls` | or | once any node saw TLS, a missing STARTTLS is suspicious everywhere |
//! | `last_success_at`, `last_probe_at` | max | the fleet's latest success and latest probe |
//! | `last_success_tier` | max | proof of the strongest tier any node saw outranks the rest |
//! | `start_tier`, `transient_failures` | from the side with the higher proof; equal proof: the higher start and the larger count | a start tier forged evidence taught a node that proved less is dropped |
//!
//! Unauthenticated evidence never walks a peer below what another node proved. A node that was
//! walked down by a forged alert has a start tier but no proof below the other node's proof. That
//! side loses outright, so the forged start tier is dropped and the counter with it. Proof comes
//! only from a completed delivery ([`PeerFacts::record_success`](crate::PeerFacts::record_success)).
//! What a node learns from a success therefore reaches the others: the proof and the start tier of a
//! legacy-only peer win over a node that knows nothing of it. Counters are merged with max, never
//! summed, so a copy applied twice (say, after a timeout that did write) counts once.
//!
//! The dance is not merged. It belongs to one delivery on one node, so a shared copy carries no
//! dance, and a node keeps its own dance beside the merged memory ([`merge_blobs`]). A host
//! that shares histories needs two calls: [`adopt_shared`] before a decision, [`blob_to_share`]
//! after a change.
//!
//! The cost of this order is that a peer which really lost its stronger tier keeps the fleet's
//! older, stronger proof until the shared copy expires. Each node then spends the threshold of
//! cheap evidence before it steps down, as a single node does when a peer it proved stops
//! answering at that tier.

use core::cmp::Ordering;

use crate::history::{History, HistoryBlob, HistoryError, PeerMemory};
use crate::tier::Tier;

impl PeerMemory {
    /// The join of two memories of one peer: the least memory that knows everything either knows
    /// (the order is in `docs/policy.md`, "Merging histories across a fleet"). Commutative, associative and
    /// idempotent; `a.merge(&b)` is never below `a` or `b`, and never has a weaker pin, proof or
    /// `seen_tls` than either.
    #[must_use]
    pub fn merge(&self, other: &Self) -> Self {
        let (start_tier, transient_failures) =
            match self.last_success_tier.cmp(&other.last_success_tier) {
                Ordering::Greater => (self.start_tier, self.transient_failures),
                Ordering::Less => (other.start_tier, other.transient_failures),
                Ordering::Equal => (
                    higher_start(self.start_tier, other.start_tier),
                    self.transient_failures.max(other.transient_failures),
                ),
            };
        Self {
            start_tier,
            last_success_tier: self.last_success_tier.max(other.last_success_tier),
            last_success_at: self.last_success_at.max(other.last_success_at),
            seen_tls: self.seen_tls || other.seen_tls,
            pinned_until: self.pinned_until.max(other.pinned_until),
            last_probe_at: self.last_probe_at.max(other.last_probe_at),
            transient_failures,
        }
    }

    /// Whether `self` is at or below `other` in the merge order: `other` already knows
    /// everything `self` knows, so merging `self` into it changes nothing.
    #[must_use]
    pub fn is_covered_by(&self, other: &Self) -> bool {
        self.merge(other) == *other
    }
}

/// The start tier that asks less of the peer's accommodation: `None` (the top tier) above any
/// remembered tier, and a stronger remembered tier above a weaker one.
fn higher_start(a: Option<Tier>, b: Option<Tier>) -> Option<Tier> {
    match (a, b) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => Some(a.max(b)),
    }
}

/// A node's history `local` with the fleet's `shared` copy merged in: the merged memory, and
/// `local`'s own dance.
///
/// # Errors
///
/// The [`HistoryError`] of the first blob that cannot be read (`local` first). The caller then
/// keeps its own history as it is: an unreadable shared copy must not replace a readable local
/// one, and the shared copy is rewritten from the local memory at the next exchange.
pub fn merge_blobs(local: &[u8], shared: &[u8]) -> Result<HistoryBlob, HistoryError> {
    let local = History::decode(local)?;
    let shared = History::decode(shared)?;
    Ok(History {
        memory: local.memory.merge(&shared.memory),
        dance: local.dance,
    }
    .encode())
}

/// The history a node decides with for a peer: its own `local` history (`None`: a peer this
/// node never met) with the fleet's `shared` copy merged in. A peer met only by other nodes
/// starts from the fleet's memory and no dance: a dance is one delivery's, and a copy carrying
/// one was not written by a node.
///
/// # Errors
///
/// As [`merge_blobs`]: the error of the first blob that cannot be read; the node then decides
/// with `local` as it is.
pub fn adopt_shared(local: Option<&[u8]>, shared: &[u8]) -> Result<HistoryBlob, HistoryError> {
    match local {
        Some(local) => merge_blobs(local, shared),
        None => History::decode(shared).map(|shared| {
            History {
                memory: shared.memory,
                dance: None,
            }
            .encode()
        }),
    }
}

/// The shared copy a node writes after a change to its `local` history, over the `shared` copy
/// it read (`None`: there is none): both memories merged, and no dance. A shared copy that
/// cannot be read (not written by a node, or of a newer schema) is replaced by the local memory
/// rather than trusted. When the result equals `shared`, nothing needs writing.
///
/// # Errors
///
/// The [`HistoryError`] of `local`: a node shares only a history the engine wrote.
pub fn blob_to_share(local: &[u8], shared: Option<&[u8]>) -> Result<HistoryBlob, HistoryError> {
    let local = History::decode(local)?;
    let memory = shared
        .and_then(|shared| History::decode(shared).ok())
        .map_or(local.memory, |shared| local.memory.merge(&shared.memory));
    Ok(History {
        memory,
        dance: None,
    }
    .encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Dance;

    fn memory(proof: Option<Tier>, start: Option<Tier>, failures: u8) -> PeerMemory {
        PeerMemory {
            start_tier: start,
            last_success_tier: proof,
            last_success_at: 10,
            seen_tls: proof.is_some_and(Tier::uses_tls),
            pinned_until: 0,
            last_probe_at: 5,
            transient_failures: failures,
        }
    }

    #[test]
    fn a_forged_step_down_on_one_node_loses_to_the_proof_of_another() {
        let proved_modern = memory(Some(Tier::ModernTls), None, 0);
        let walked_down = memory(None, Some(Tier::LegacyTls), 2);
        let merged = proved_modern.merge(&walked_down);
        assert_eq!(merged.start_tier, None);
        assert_eq!(merged.transient_failures, 0);
        assert_eq!(merged.last_success_tier, Some(Tier::ModernTls));
    }

    #[test]
    fn a_legacy_only_peer_learned_on_one_node_starts_at_legacy_on_another() {
        let learned = memory(Some(Tier::LegacyTls), Some(Tier::LegacyTls), 0);
        let unknown = PeerMemory::default();
        assert_eq!(
            unknown.merge(&learned).start_tier,
            Some(Tier::LegacyTls),
            "the node that knows nothing takes what the other learned"
        );
    }

    #[test]
    fn merge_blobs_keeps_the_local_dance_and_refuses_unreadable_copies() {
        let dance = Some(Dance {
            tier: Tier::LegacyTls,
            attempts: 2,
            reached_top: true,
        });
        let local = History {
            memory: PeerMemory::default(),
            dance,
        };
        let mut pinned = memory(Some(Tier::ModernTls), None, 0);
        pinned.pinned_until = 99;
        let shared = History {
            memory: pinned,
            dance: None,
        };
        let merged = merge_blobs(local.encode().as_bytes(), shared.encode().as_bytes()).unwrap();
        let merged = History::decode(merged.as_bytes()).unwrap();
        assert_eq!(merged.dance, dance);
        assert_eq!(merged.memory.pinned_until, 99);
        assert_eq!(
            merge_blobs(local.encode().as_bytes(), &[1]),
            Err(HistoryError::Truncated)
        );
    }

    #[test]
    fn a_shared_copy_carrying_a_dance_gives_a_new_node_no_dance() {
        let shared = History {
            memory: memory(Some(Tier::LegacyTls), Some(Tier::LegacyTls), 0),
            dance: Some(Dance {
                tier: Tier::Cleartext,
                attempts: 3,
                reached_top: true,
            }),
        };
        let adopted = adopt_shared(None, shared.encode().as_bytes()).unwrap();
        let adopted = History::decode(adopted.as_bytes()).unwrap();
        assert_eq!(adopted.dance, None);
        assert_eq!(adopted.memory, shared.memory);
    }

    #[test]
    fn an_unreadable_shared_copy_is_replaced_by_the_local_memory() {
        let dance = Some(Dance {
            tier: Tier::ModernTls,
            attempts: 1,
            reached_top: true,
        });
        let local = History {
            memory: memory(Some(Tier::ModernTls), None, 1),
            dance,
        };
        let local = local.encode();
        let written = blob_to_share(local.as_bytes(), Some(&[0xff, 0])).unwrap();
        let written = History::decode(written.as_bytes()).unwrap();
        assert_eq!(written.dance, None, "a shared copy never carries a dance");
        assert_eq!(
            written.memory,
            History::decode(local.as_bytes()).unwrap().memory
        );
        assert_eq!(blob_to_share(&[], None), Err(HistoryError::Empty));
    }

    #[test]
    fn sharing_what_the_copy_already_covers_writes_the_copy_unchanged() {
        let shared = History {
            memory: memory(Some(Tier::AuthenticatedTls), None, 0),
            dance: None,
        }
        .encode();
        let behind = History {
            memory: memory(Some(Tier::ModernTls), None, 0),
            dance: None,
        }
        .encode();
        assert_eq!(
            blob_to_share(behind.as_bytes(), Some(shared.as_bytes())).unwrap(),
            shared
        );
    }
}
