//! The embedding crate of tlsfallback: what a program needs to get decisions from the policy
//! component, and nothing else.
//!
//! It must never depend on OpenSSL, SQLite, a DNS resolver, an HTTP client or clap: the C kit
//! (`libtlsfallback`) links this crate alone, and an MTA that owns its own sockets, TLS and
//! storage embeds it as it is. Effects an MTA host needs live in `tlsfallback-mta`; the command
//! line in `tlsfallback-cli`.
//!
//! # Layout
//!
//! - [`component`]: the wasmtime embedding of the zero-import `tlsfallback:policy` component
//!   (built by this crate's build script from `bindings/` and embedded in the library).
//! - [`decider`]: one [`DecisionEngine`] trait over the component and the native policy-core, so
//!   that every caller can pick either and compare them; each decision carries the plugin
//!   failure behind it, if any ([`Decided`]).
//! - [`plugin`]: operators' own policy components, run under limits, checked against the floor by
//!   the [`guard`], with a fail mode; what a failure was and what the host did is a
//!   [`failure::FailureEvent`].
//! - [`select`]: which engine a caller asked for ([`EngineKind`], [`open`]).
//! - [`config`]: the operator's TOML policy file with per-destination overrides.
//! - [`fleet_protocol`]: how the nodes of a fleet share histories in Redis (key, fields, script).
//! - [`wire`]: the JSON Lines request and response; [`answer`]: answering one line, and the
//!   `decide` loop over a stream.
#![deny(unsafe_code)]

pub mod answer;
pub mod component;
pub mod config;
pub mod decider;
pub mod failure;
pub mod fleet_protocol;
pub mod guard;
pub mod plugin;
pub mod select;
pub mod wire;

pub use decider::{Decided, DecisionEngine, NativeEngine};
pub use select::{EngineKind, open};
