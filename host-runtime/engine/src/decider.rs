//! One interface over the ways to run the engine: the component (what ships), native policy-core
//! (the reference it is checked against), and an operator's plugin (which implements it in
//! `plugin`).
//!
//! A decision comes back as a [`Decided`]: the decision, and the plugin failure it stands in for
//! when the fail mode answered. The failure travels with the decision, not on a side channel, so
//! a caller cannot read the one and lose the other.

use policy_core::{AttemptReport, Decision, DeliveryContext, PeerFacts, Policy, UnixSeconds};

use crate::component::{CallError, PolicyComponent};
use crate::failure::FailureEvent;

/// A decision, with the plugin failure behind it if the operator's fail mode answered instead of
/// the plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a decision carries the plugin failure it stands in for: report it"]
pub struct Decided {
    /// What to do.
    pub decision: Decision,
    /// The plugin's failure, when the decision is the fail mode's (only a plugin has any).
    pub plugin_failure: Option<FailureEvent>,
}

impl Decided {
    /// A decision no plugin failure stands behind.
    pub const fn plain(decision: Decision) -> Self {
        Self {
            decision,
            plugin_failure: None,
        }
    }
}

/// Why an engine gave no decision at all (a plugin never does: its fail mode answers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecideError {
    /// The built-in component failed (a trap, fuel, the deadline): a bug, never bad input.
    #[error(transparent)]
    Component(#[from] CallError),
}

/// Something that decides.
pub trait DecisionEngine {
    /// Decides; see [`policy_core::decide`] for the arguments.
    ///
    /// # Errors
    ///
    /// When the engine itself fails (a component trap); never for bad history, which is part of
    /// the decision.
    fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError>;

    /// Decides knowing what the host itself recorded about the peer (`facts`: its pin and the
    /// tier it proved, from the outcomes the host observed, never from a history blob). The
    /// built-in engines keep the same facts in their own history and ignore these; a plugin
    /// (`plugin::PluginEngine`) is held to them, so that no history a
    /// plugin wrote can lower the floor.
    ///
    /// # Errors
    ///
    /// As for [`decide`](Self::decide).
    fn decide_with_facts(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        facts: &PeerFacts,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError> {
        let _ = facts;
        self.decide(policy, context, history, last, now)
    }

    /// Whether the engine's history blobs are policy-core's format, which the host may splice
    /// (tlsfallback-mta's `deciding` does, for the store). False by default: a plugin's history
    /// is opaque to the host.
    fn history_is_builtin_format(&self) -> bool {
        false
    }
}

/// policy-core, called directly.
#[derive(Clone, Copy, Debug, Default)]
pub struct NativeEngine;

impl DecisionEngine for NativeEngine {
    fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError> {
        Ok(Decided::plain(policy_core::decide(
            policy, context, history, last, now,
        )))
    }

    fn history_is_builtin_format(&self) -> bool {
        true
    }
}

impl DecisionEngine for PolicyComponent {
    fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError> {
        Ok(Decided::plain(Self::decide(
            self, policy, context, history, last, now,
        )?))
    }

    /// A bare `PolicyComponent` as an engine is the built-in one (`open` makes it so); operators'
    /// components run as a plugin, which keeps the default.
    fn history_is_builtin_format(&self) -> bool {
        true
    }
}
