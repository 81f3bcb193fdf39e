//! policy-core is a fully deterministic TLS fallback policy engine for mail transfer agents.
//!
//! It contains no networking code, does no DNS, reads no files and never looks at a clock or a
//! random number generator: the current time, the peer's history and the outcome of the last
//! attempt are inputs, and a [`Decision`] (what to do next, and the peer's new history) is the
//! output. The same inputs always give the same decision, byte for byte.
//!
//! # The one entry point
//!
//! [`decide`] takes the operator's [`Policy`], the per-delivery [`DeliveryContext`] the host
//! resolved (DANE, MTA-STS, REQUIRETLS, `TLS-Required: No`, SASL), the peer's opaque history blob,
//! the [`AttemptReport`] of the last attempt (or `None` when a delivery starts) and `now` in
//! seconds since the Unix epoch. The host carries out the decision, reports the outcome and asks
//! again, until the action is [`Action::Done`], [`Action::Defer`] or [`Action::Bounce`]:
//!
//! ```
//! use policy_core::{decide, Action, AttemptReport, DeliveryContext, Outcome, Policy, Tier, TlsAlert};
//!
//! let policy = Policy::default();
//! let context = DeliveryContext::default();
//! let now = 1_700_000_000;
//!
//! // A new delivery to a peer we have never seen: start at the strongest tier allowed.
//! let first = decide(&policy, &context, None, None, now);
//! assert!(matches!(first.action, Action::Attempt { tier: Tier::ModernTls, delay_secs: 0, .. }));
//!
//! // The peer only speaks TLS 1.0: it answers the modern handshake with a protocol_version alert.
//! let report = AttemptReport { tier: Tier::ModernTls, outcome: Outcome::TlsAlert(TlsAlert::ProtocolVersion) };
//! let second = decide(&policy, &context, Some(first.history.as_bytes()), Some(&report), now + 1);
//! assert!(matches!(second.action, Action::Attempt { tier: Tier::LegacyTls, .. }));
//! ```
//!
//! # What the engine promises
//!
//! - **The floor is never violated.** DANE, MTA-STS `enforce`, REQUIRETLS, SASL credentials, the
//!   operator's profile and the peer's pin set a weakest acceptable tier ([`floor`]); no decision
//!   ever attempts a weaker one.
//! - **Capable peers never pay.** A peer that has always worked at the strongest tier is always
//!   tried there first, without delay.
//! - **Bounded.** Every delivery ends in `done`, `defer` or `bounce` within
//!   [`MAX_ATTEMPTS_PER_DELIVERY`] attempts, whatever the peer or the host reports; every decision
//!   is O(1) and allocation-free.
//! - **Small, versioned history.** The history blob is at most [`MAX_HISTORY_LEN`] bytes whatever
//!   the sequence of events; an unreadable blob gives a typed [`HistoryError`] and the decision for
//!   an unknown peer, never a panic.
//!
//! The rules, their rationale and the full outcome × policy table are in `docs/policy.md`.
#![no_std]
#![forbid(unsafe_code, unused_must_use)]
#![warn(missing_docs)]

#[cfg(feature = "simulation")]
extern crate alloc;

mod context;
mod decision;
mod engine;
mod facts;
mod floor;
mod history;
mod merge;
mod outcome;
mod policy;
mod tier;

#[cfg(feature = "simulation")]
pub mod sim;

pub use context::{Dane, DeliveryContext, MtaSts};
pub use decision::{Action, Decision, EnhancedStatus, Reason, TlsRptResult, TlsRptResults};
pub use engine::{MAX_ATTEMPTS_PER_DELIVERY, decide};
pub use facts::PeerFacts;
pub use floor::{Bounds, floor, verification_for};
pub use history::{
    Dance, HISTORY_FORMAT_VERSION, History, HistoryBlob, HistoryError, MAX_HISTORY_LEN, PeerMemory,
    with_dance_of,
};
pub use merge::{adopt_shared, blob_to_share, merge_blobs};
pub use outcome::{AttemptReport, CertificateError, Outcome, TlsAlert};
pub use policy::{Policy, Profile};
pub use tier::{CipherPolicy, Tier, TlsParameters, TlsVersion, Verification};

/// Seconds since the Unix epoch (1970-01-01T00:00:00Z), ignoring leap seconds.
pub type UnixSeconds = u64;
