//! The guest adapter: exports [`policy_core::decide`] as the `tlsfallback:policy` component.
//!
//! No logic lives here, only the mechanical mapping between the WIT types and policy-core's
//! (`tlsfallback-wit-mapping`, shared with the host and Rust plugins).
//! Built `no_std` for `wasm32-unknown-unknown` and wrapped into a component by
//! `host-runtime/engine/build.rs`; the result imports nothing at all. (On other targets, where only
//! `cargo clippy --workspace` ever compiles it, it uses std.)

#![cfg_attr(target_family = "wasm", no_std)]

extern crate alloc;

mod convert;

/// What std would provide on wasm: an allocator and a panic handler.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm_runtime;

/// The code wit-bindgen generates from `wit/policy.wit`, and the export shims.
#[allow(unsafe_code, missing_docs, unreachable_pub, unused_qualifications)]
mod generated {
    wit_bindgen::generate!({ path: "../wit", world: "policy-engine" });
    use super::PolicyEngine;
    export!(PolicyEngine);
}

mod decider;

/// The component: the engine interface's one resource is [`decider::Decider`].
struct PolicyEngine;

impl generated::exports::tlsfallback::policy::engine::Guest for PolicyEngine {
    type Decider = decider::Decider;
}
