//! One interface over the two ways to run the engine: the component (what ships) and native
//! policy-core (the reference it is checked against).

use policy_core::{AttemptReport, Decision, DeliveryContext, Policy, UnixSeconds};

use crate::component::PolicyComponent;

/// Which engine answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// The embedded WebAssembly component, run by wasmtime (the default: what MTAs embed).
    #[default]
    Component,
    /// policy-core compiled into this binary.
    Native,
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
    ) -> anyhow::Result<Decision>;
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
    ) -> anyhow::Result<Decision> {
        Ok(policy_core::decide(policy, context, history, last, now))
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
    ) -> anyhow::Result<Decision> {
        Self::decide(self, policy, context, history, last, now)
    }
}

/// Creates the engine of the given kind.
///
/// # Errors
///
/// When the built-in component fails to load.
pub fn open(kind: EngineKind) -> anyhow::Result<Box<dyn DecisionEngine>> {
    Ok(match kind {
        EngineKind::Component => Box::new(PolicyComponent::builtin()?),
        EngineKind::Native => Box::new(NativeEngine),
    })
}
