//! The one place where the history store and the engine meet: read a peer's stored history,
//! decide with it, store the history the decision carries, all in one write transaction.
//!
//! [`store`](crate::store) keeps blobs and the host's own facts about each peer and knows nothing
//! of engines; [`tlsfallback_engine`] decides and knows nothing of storage. A caller that needs
//! both (the delivery loop, the Postfix service, the journal replay) comes here.
//!
//! Each decision comes back as a [`Decided`], carrying the plugin failure behind it, if any, so
//! the caller reports it.

use policy_core::{AttemptReport, DeliveryContext, Policy};
use tlsfallback_engine::decider::{DecideError, Decided, DecisionEngine};

use crate::store::facts;
use crate::store::{Batch, HistoryStore, PendingApplied, StoreError};

/// Why no decision was made (or stored).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecidingError {
    /// The history database (or the journal of pending updates) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine gave no decision.
    #[error(transparent)]
    Engine(#[from] DecideError),
}

/// Asks `engine` for the next decision about `peer` with its stored history, and stores the
/// history the decision carries, in one write transaction.
///
/// # Errors
///
/// A database error, or the engine's.
pub fn decide(
    store: &mut HistoryStore,
    engine: &mut dyn DecisionEngine,
    peer: &str,
    policy: &Policy,
    context: &DeliveryContext,
    last: Option<&AttemptReport>,
    now: u64,
) -> Result<Decided, DecidingError> {
    store.batch(|batch| decide_in(batch, engine, peer, policy, context, last, now))
}

/// As [`decide`], for a later step of a delivery in progress: `own` is the history this
/// delivery's previous decision returned. With the built-in engine, the engine sees the stored
/// (shared) memory with this delivery's own dance ([`policy_core::with_dance_of`]), so a
/// concurrent delivery to the same peer, which stores its own dance in the same row, cannot erase
/// this one's (its `reached_top`, the evidence of a forged downgrade). A plugin's history is
/// opaque: it is passed as stored.
///
/// # Errors
///
/// A database error, or the engine's.
#[allow(clippy::too_many_arguments)]
pub fn decide_in_delivery(
    store: &mut HistoryStore,
    engine: &mut dyn DecisionEngine,
    peer: &str,
    policy: &Policy,
    context: &DeliveryContext,
    last: &AttemptReport,
    own: &[u8],
    now: u64,
) -> Result<Decided, DecidingError> {
    store.batch(|batch| {
        decide_with_own_dance(
            batch,
            engine,
            peer,
            policy,
            context,
            Some(last),
            Some(own),
            now,
        )
    })
}

/// As [`decide`], inside the transaction `batch`. The facts the host records about the peer
/// ([`HistoryStore::facts`]) are updated here from `last`, the outcome the host observed, and
/// handed to the engine: a plugin is held to them.
///
/// # Errors
///
/// A database error, or the engine's.
pub fn decide_in(
    batch: &mut Batch<'_>,
    engine: &mut dyn DecisionEngine,
    peer: &str,
    policy: &Policy,
    context: &DeliveryContext,
    last: Option<&AttemptReport>,
    now: u64,
) -> Result<Decided, DecidingError> {
    decide_with_own_dance(batch, engine, peer, policy, context, last, None, now)
}

#[allow(clippy::too_many_arguments)]
fn decide_with_own_dance(
    batch: &mut Batch<'_>,
    engine: &mut dyn DecisionEngine,
    peer: &str,
    policy: &Policy,
    context: &DeliveryContext,
    last: Option<&AttemptReport>,
    own: Option<&[u8]>,
    now: u64,
) -> Result<Decided, DecidingError> {
    let recorded = facts::read(batch.connection(), peer)?;
    let mut facts = recorded;
    if let Some(report) = last {
        facts.observe(policy, context, report, now);
    }
    let splice = engine.history_is_builtin_format();
    let decided = batch.update(peer, now, |stored| {
        let spliced = own
            .filter(|_| splice)
            .zip(stored)
            .and_then(|(own, shared)| policy_core::with_dance_of(shared, own));
        let history = spliced
            .as_ref()
            .map_or(stored, |blob| Some(blob.as_bytes()));
        let decided = engine.decide_with_facts(policy, context, history, &facts, last, now)?;
        let blob = decided.decision.history.as_bytes().to_vec();
        Ok::<_, DecidingError>((decided, blob))
    })?;
    if facts != recorded {
        facts::write(batch.connection(), peer, &facts, now)?;
    }
    Ok(decided)
}

/// Replays the store's journal of pending updates through `engine`, each once
/// ([`HistoryStore::replay_pending`]). The decisions were for deliveries long over; only the
/// histories they store count, and a plugin failure among them is reported through `report`.
///
/// # Errors
///
/// A journal, database or engine error; the journal is then kept for the next try.
pub fn apply_pending(
    store: &mut HistoryStore,
    engine: &mut dyn DecisionEngine,
    report: &mut dyn FnMut(&str),
) -> Result<PendingApplied, DecidingError> {
    store.replay_pending(|batch, entry| {
        let replayed = decide_in(
            batch,
            engine,
            &entry.peer,
            &entry.policy,
            &entry.context,
            Some(&entry.last),
            entry.now,
        )?;
        if let Some(failure) = replayed.plugin_failure {
            report(&format!(
                "replaying the pending update of {}: {failure}",
                entry.peer
            ));
        }
        Ok(())
    })
}
