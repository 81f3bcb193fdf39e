//! The guest adapter: exports [`policy_core::decide`] as the `tlsfallback:policy` component.
//!
//! No logic lives here, only the mechanical mapping between the WIT types and policy-core's.
//! Built for `wasm32-unknown-unknown` (std there imports nothing) and wrapped into a component by
//! `host-runtime/build.rs`; the result imports nothing at all.

mod convert;

/// The code wit-bindgen generates from `wit/policy.wit`, and the export shims.
#[allow(unsafe_code, missing_docs, unreachable_pub, unused_qualifications)]
mod generated {
    wit_bindgen::generate!({ path: "../wit", world: "policy-engine" });
    use super::PolicyEngine;
    export!(PolicyEngine);
}

use generated::exports::tlsfallback::policy::engine::{
    AttemptReport, Decision, DeliveryContext, Guest, Policy, UnixSeconds,
};

struct PolicyEngine;

impl Guest for PolicyEngine {
    fn decide(
        policy: Policy,
        context: DeliveryContext,
        history: Option<Vec<u8>>,
        last: Option<AttemptReport>,
        now: UnixSeconds,
    ) -> Decision {
        let decision = policy_core::decide(
            &convert::policy(policy),
            &convert::context(context),
            history.as_deref(),
            last.map(convert::report).as_ref(),
            now,
        );
        convert::decision(&decision)
    }
}
