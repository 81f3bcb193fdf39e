//! Postfix without patching Postfix: a socketmap daemon for `smtp_tls_policy_maps` that answers
//! each next hop with the TLS policy carrying out the engine's decision, and learns each attempt's
//! outcome from Postfix's own log.
//!
//! The loop, per next-hop destination (the lookup key Postfix sends, which is also the history
//! key):
//!
//! 1. Postfix looks up the TLS policy; the daemon asks the engine what a new delivery starts with
//!    (or, while a dance is under way, takes the step the engine asked for after the last
//!    outcome) and answers it as a mandatory Postfix level ([`policy`]).
//! 2. Postfix delivers, or defers when that tier fails, and logs why.
//! 3. The daemon reads the log ([`follow`], [`log`]), reports the outcome for the tier it
//!    answered the very process that made the attempt ([`client`] finds the process behind a
//!    connection), and stores the engine's new history and next step ([`state`]).
//! 4. Postfix's retry of the deferred message is the dance's next attempt.
//!
//! [`socketmap`] is the wire protocol; [`daemon`] is the service, sans-IO (a lookup and log lines
//! in, with `now`; replies and history out); [`server`] owns the sockets, threads and clock, and
//! [`connections`] accepts and frames Postfix's connections for it. [`events`] are the typed
//! records of what the daemon did, which its log writes and [`metrics`] counts.

pub mod client;
pub mod connections;
pub mod daemon;
pub mod events;
pub mod floor;
pub mod follow;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod socketmap;
pub mod state;

pub use daemon::{AnswerMode, Daemon, DaemonError, DaemonOptions};
pub use server::{ListenAddress, ServeError, serve};
