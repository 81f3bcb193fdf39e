//! The `decider` resource: [`policy_core::decide`] behind the engine interface. Shared by both
//! guest components (this crate's and `bindings/tools`'s, which includes this file by path, so
//! the engine both export is one piece of code).

use alloc::vec::Vec;

use crate::generated::exports::tlsfallback::policy::engine::{
    AttemptReport, Decision, DeliveryContext, GuestDecider, Policy, UnixSeconds,
};

/// A policy, converted once.
pub(crate) struct Decider(policy_core::Policy);

impl GuestDecider for Decider {
    fn new(policy: Policy) -> Self {
        Self(policy.into())
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
            &context.into(),
            history.as_deref(),
            last.map(policy_core::AttemptReport::from).as_ref(),
            now,
        );
        Decision::from(&decision)
    }
}
