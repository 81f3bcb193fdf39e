//! The host side of tlsfallback: embeds the policy component with wasmtime and drives it.
//!
//! # Layout
//!
//! - [`component`]: the wasmtime embedding of the zero-import `tlsfallback:policy` component
//!   (built by this crate's build script and embedded in the binary).
//! - [`engine`]: one [`DecisionEngine`](engine::DecisionEngine) trait over the component and the
//!   native policy-core, so that every caller can pick either and compare them.
//! - [`config`]: the operator's TOML policy file with per-destination overrides.
//! - [`wire`]: the JSON Lines request and response of `tlsfallback decide`.
//! - [`commands`]: what each subcommand does (the binary's `main.rs` only parses arguments).
//!
//! The host owns everything with an effect; the engine only decides.

pub mod commands;
pub mod component;
pub mod config;
pub mod engine;
pub mod wire;
