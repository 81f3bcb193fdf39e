//! The guest adapter: exports [`policy_core::decide`] and the fleet's history merge as the
//! `tlsfallback:policy` component.
//!
//! No logic lives here, only the mechanical mapping between the WIT types and policy-core's
//! (`tlsfallback-wit-mapping`, shared with the host and Rust plugins).
//! Built `no_std` for `wasm32-unknown-unknown` and wrapped into a component by
//! `host-runtime/engine/build.rs`; the result imports nothing at all. (On other targets, where only
//! `cargo clippy --workspace` ever compiles it, it uses std.)

#![cfg_attr(target_family = "wasm", no_std)]

extern crate alloc;

use alloc::vec::Vec;

use generated::exports::tlsfallback::policy::engine::HistoryError;

mod convert;

/// What std would provide on wasm: an allocator and a panic handler.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm_runtime;

/// The code wit-bindgen generates from `wit/policy.wit`, and the export shims.
#[allow(unsafe_code, missing_docs, unreachable_pub, unused_qualifications)]
mod generated {
    // The world lives here, not in wit/ (where a second world would make every tool that reads
    // wit/ without naming a world refuse it): `policy-engine`, which plugins implement, and the
    // fleet's history merge, which only the built-in engine exports.
    wit_bindgen::generate!({
        path: "../wit",
        inline: "
            package tlsfallback:builtin;

            /// The built-in engine: the policy engine and the fleet's history merge.
            world fleet-engine {
                include tlsfallback:policy/policy-engine@0.2.0;
                export tlsfallback:policy/fleet@0.2.0;
            }
        ",
        world: "tlsfallback:builtin/fleet-engine",
    });
    use super::PolicyEngine;
    export!(PolicyEngine);
}

mod decider;

/// The component: the engine interface's one resource is [`decider::Decider`]; the fleet
/// interface is [`policy_core::adopt_shared`] and [`policy_core::blob_to_share`].
struct PolicyEngine;

impl generated::exports::tlsfallback::policy::engine::Guest for PolicyEngine {
    type Decider = decider::Decider;
}

impl generated::exports::tlsfallback::policy::fleet::Guest for PolicyEngine {
    fn adopt_shared(local: Option<Vec<u8>>, shared: Vec<u8>) -> Result<Vec<u8>, HistoryError> {
        policy_core::adopt_shared(local.as_deref(), &shared)
            .map(|blob| blob.as_bytes().to_vec())
            .map_err(HistoryError::from)
    }

    fn blob_to_share(local: Vec<u8>, shared: Option<Vec<u8>>) -> Result<Vec<u8>, HistoryError> {
        policy_core::blob_to_share(&local, shared.as_deref())
            .map(|blob| blob.as_bytes().to_vec())
            .map_err(HistoryError::from)
    }
}
