//! The guest adapter: exports [`policy_core::decide`] as the `tlsfallback:policy` component.
//!
//! No logic lives here, only the mechanical mapping between the WIT types and policy-core's.
//! Built `no_std` for `wasm32-unknown-unknown` and wrapped into a component by
//! `host-runtime/build.rs`; the result imports nothing at all. (On other targets, where only
//! `cargo clippy --workspace` ever compiles it, it uses std.)

#![cfg_attr(target_family = "wasm", no_std)]

extern crate alloc;

use alloc::vec::Vec;

mod convert;

/// What std would provide on wasm: an allocator and a panic handler.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm_runtime {
    // SAFETY: `TalckWasm` requires single-threaded wasm, which wasm32-unknown-unknown without the
    // atomics target feature is; it grows the memory with `memory.grow` as it needs.
    #[global_allocator]
    static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };

    /// A panic in the engine is a bug (policy-core's properties say none happens on any input):
    /// trap at once, without formatting a message no one would read. The host sees a trap,
    /// reports it and replaces the instance.
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }
}

/// The code wit-bindgen generates from `wit/policy.wit`, and the export shims.
#[allow(unsafe_code, missing_docs, unreachable_pub, unused_qualifications)]
mod generated {
    wit_bindgen::generate!({ path: "../wit", world: "policy-engine" });
    use super::PolicyEngine;
    export!(PolicyEngine);
}

use generated::exports::tlsfallback::policy::engine::{
    AttemptReport, Decision, DeliveryContext, Guest, GuestDecider, Policy, UnixSeconds,
};

struct PolicyEngine;

impl Guest for PolicyEngine {
    type Decider = Decider;
}

/// The `decider` resource: a policy, converted once.
struct Decider(policy_core::Policy);

impl GuestDecider for Decider {
    fn new(policy: Policy) -> Self {
        Self(convert::policy(policy))
    }

    fn decide(
        &self,
        context: DeliveryContext,
        history: Option<Vec<u8>>,
        last: Option<AttemptReport>,
        now: UnixSeconds,
    ) -> Decision {
        let decision = policy_core::decide(
            &self.0,
            &convert::context(context),
            history.as_deref(),
            last.map(convert::report).as_ref(),
            now,
        );
        convert::decision(&decision)
    }
}
