//! The shared WIT mapping, expanded over wit-bindgen's generated types.

use crate::generated::exports::tlsfallback::policy::engine as wit;

policy_core::wit_mapping!();

pub(crate) fn policy(p: wit::Policy) -> policy_core::Policy {
    policy_from_wit(p)
}

pub(crate) fn context(c: wit::DeliveryContext) -> policy_core::DeliveryContext {
    context_from_wit(c)
}

pub(crate) fn report(r: wit::AttemptReport) -> policy_core::AttemptReport {
    report_from_wit(r)
}

pub(crate) fn decision(d: &policy_core::Decision) -> wit::Decision {
    decision_to_wit(d)
}
