//! An example policy plugin: the built-in engine, plus one site rule it does not have.
//!
//! **No cleartext at first contact.** When a peer that never accepted a message from us does not
//! offer STARTTLS, the built-in engine sends the message in cleartext at once. An attacker who strips
//! STARTTLS for a few minutes then gets the first message to every new peer. This plugin defers
//! that first cleartext delivery by the policy's retry interval instead; the engine's history
//! still records that the peer lacks STARTTLS, so the retry starts in cleartext (reason
//! `remembered-tier`) and goes through. A stripping attacker must now hold on across a retry.
//!
//! Everything else is `policy_core::decide`, so the history blob stays in policy-core's format
//! and the host keeps enforcing the peer's pin.
//!
//! Build (the host's tests do exactly this):
//!
//! ```sh
//! cargo build -p tlsfallback-example-plugin --target wasm32-unknown-unknown --release
//! wasm-tools component new target/wasm32-unknown-unknown/release/tlsfallback_example_plugin.wasm \
//!     -o first-contact.wasm
//! tlsfallback decide --policy-component first-contact.wasm < requests.jsonl
//! ```
//!
//! On `wasm32-unknown-unknown`, std imports nothing, so the component imports nothing either.

use policy_core::{Action, History, Reason, Tier};

/// The code wit-bindgen generates from `wit/policy.wit`, and the export shims.
#[allow(unsafe_code, missing_docs, unreachable_pub)]
mod generated {
    wit_bindgen::generate!({ path: "../../wit", world: "policy-engine" });
    use super::Plugin;
    export!(Plugin);
}

use generated::exports::tlsfallback::policy::engine as wit;

// `From` impls between the generated types and policy-core's, as the guest adapter has them.
tlsfallback_wit_mapping::wit_mapping!();

struct Plugin;

impl wit::Guest for Plugin {
    type Decider = Decider;
}

struct Decider(policy_core::Policy);

impl wit::GuestDecider for Decider {
    fn new(policy: wit::Policy) -> Self {
        Self(policy.into())
    }

    fn decide(
        &self,
        context: wit::DeliveryContext,
        history: Option<Vec<u8>>,
        last: Option<wit::AttemptReport>,
        now: wit::UnixSeconds,
    ) -> wit::Decision {
        let mut decision = policy_core::decide(
            &self.0,
            &context.into(),
            history.as_deref(),
            last.map(policy_core::AttemptReport::from).as_ref(),
            now,
        );
        if first_contact_cleartext(&decision) {
            decision.action = Action::Defer {
                retry_after_secs: self.0.retry_after_secs,
            };
            decision.reason = Reason::TlsRequiredNotOffered;
        }
        wit::Decision::from(&decision)
    }
}

/// Whether the built-in engine just stepped down to cleartext, because STARTTLS is missing, for
/// a peer that never accepted a message from us. (A peer remembered as cleartext-only starts
/// there with `remembered-tier`; one that took mail before steps down again after a re-probe,
/// and is let through.)
fn first_contact_cleartext(decision: &policy_core::Decision) -> bool {
    let stepped_down = matches!(
        decision.action,
        Action::Attempt {
            tier: Tier::Cleartext,
            ..
        }
    ) && decision.reason == Reason::SteppedDownNoStarttls;
    stepped_down
        && History::decode(decision.history.as_bytes())
            .is_ok_and(|history| history.memory.last_success_at == 0)
}
