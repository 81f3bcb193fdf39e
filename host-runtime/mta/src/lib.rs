//! What an MTA host does around the tlsfallback engine: every effect the engine must not have.
//!
//! The engine (`tlsfallback-engine`) only decides; this crate owns the clock, the network, TLS,
//! DNS and storage, and feeds the engine's decisions their inputs. It must never depend on the
//! command line (clap), on the test kit (local peers, attacker, rigs) or on anyhow (each layer
//! has its own error enum, as the engine's do); the CLI and embedders that want a ready delivery
//! loop or the Postfix service depend on it.
//!
//! # Layout
//!
//! - [`clock`]: the one place the clock is read.
//! - [`smtp`], [`tls`]: one delivery attempt at one tier, with OpenSSL configured per tier and its
//!   failures classified into the engine's outcomes.
//! - [`dns`], [`mta_sts`], [`resolve`]: what the host resolves for a recipient domain (MX with
//!   DNSSEC, DANE TLSA, MTA-STS) and the floor each MX host gets from it.
//! - [`store`]: peer history in SQLite (blobs, never decisions), and beside it the host's own record
//!   of what each peer proved (its pin), which no plugin's history can lower.
//! - [`fleet`]: the fleet's shared copy of each peer's history in Redis, which the store merges
//!   in and up (a semilattice merge, compare-and-set, a circuit breaker, local state as fallback).
//! - [`deciding`]: the one place where the store and the engine meet.
//! - [`delivery`]: the loop decide → attempt → report, MX hosts in preference order.
//! - [`postfix`]: the socketmap service for Postfix's `smtp_tls_policy_maps`, fed by its log.
//! - [`tlsrpt`]: TLS-RPT (RFC 8460): each attempt's final result to sys4's `tlsrpt-collectd`, the ledger,
//!   `tlsrpt preview`.
//! - [`fuzzing`]: the entry points of the fuzz targets over every parser of outside input.
#![deny(unsafe_code)]

mod causes;
pub mod clock;
pub mod deciding;
pub mod delivery;
pub mod dns;
pub mod fleet;
pub mod fuzzing;
pub mod mta_sts;
pub mod postfix;
pub mod resolve;
pub mod smtp;
pub mod store;
pub mod tls;
pub mod tlsrpt;
