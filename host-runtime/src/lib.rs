//! The host side of tlsfallback: embeds the policy component with wasmtime and drives it.
//!
//! # Layout
//!
//! - [`component`]: the wasmtime embedding of the zero-import `tlsfallback:policy` component
//!   (built by this crate's build script and embedded in the binary).
//! - [`engine`]: one [`DecisionEngine`](engine::DecisionEngine) trait over the component and the
//!   native policy-core, so that every caller can pick either and compare them.
//! - [`plugin`]: operators' own policy components, run under limits, checked against the floor,
//!   with a fail mode.
//! - [`config`]: the operator's TOML policy file with per-destination overrides.
//! - [`wire`]: the JSON Lines request and response of `tlsfallback decide`.
//! - [`smtp`], [`tls`]: one delivery attempt at one tier, with OpenSSL configured per tier and its
//!   failures classified into the engine's outcomes.
//! - [`delivery`]: the loop decide → attempt → report, MX hosts in preference order.
//! - [`mx`]: MX lookup for deliveries without `--mx`.
//! - [`store`]: peer history in SQLite, and beside it the host's own record of what each peer
//!   proved (its pin), which no plugin's history can lower. [`clock`]: the one place the clock
//!   is read.
//! - [`postfix`]: the socketmap daemon for Postfix's `smtp_tls_policy_maps`, fed by its log.
//! - [`peers`]: local SMTP peers (modern, legacy, no STARTTLS, 454, reset) for tests and the demo;
//!   [`attacker`]: the on-path attacker the downgrade campaign puts in front of them.
//! - [`commands`]: what each subcommand does (the binary's `main.rs` only parses arguments).
//!
//! The host owns everything with an effect; the engine only decides.

pub mod attacker;
pub mod clock;
pub mod commands;
pub mod component;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod engine;
mod facts;
pub mod fuzzing;
pub mod mta_sts;
pub mod mx;
pub mod peers;
pub mod plugin;
pub mod postfix;
pub mod rig;
pub mod smtp;
pub mod store;
pub mod tls;
pub mod wire;
