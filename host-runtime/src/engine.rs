//! One interface over the two ways to run the engine: the component (what ships) and native
//! policy-core (the reference it is checked against).

use policy_core::{AttemptReport, Decision, DeliveryContext, PeerFacts, Policy, UnixSeconds};

use crate::component::PolicyComponent;
use crate::plugin::{FailureEvent, PluginConfig, PluginEngine};

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

    /// Decides knowing what the host itself recorded about the peer (`facts`: its pin and the
    /// tier it proved, from the outcomes the host observed, never from a history blob). The
    /// built-in engines keep the same facts in their own history and ignore these; a
    /// [`PluginEngine`] holds the plugin's decisions to them, so that no history a plugin wrote
    /// can lower the floor.
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
    ) -> anyhow::Result<Decision> {
        let _ = facts;
        self.decide(policy, context, history, last, now)
    }

    /// Whether the engine's history blobs are policy-core's format, which the host may splice
    /// (see [`HistoryStore::decide_in_delivery`](crate::store::HistoryStore::decide_in_delivery)).
    /// False by default: a plugin's history is opaque to the host.
    fn history_is_builtin_format(&self) -> bool {
        false
    }

    /// The plugin failure behind the last decision, if it came from the fail mode (only a
    /// [`PluginEngine`] has any); taking it clears it.
    fn take_failure(&mut self) -> Option<FailureEvent> {
        None
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
    ) -> anyhow::Result<Decision> {
        Ok(policy_core::decide(policy, context, history, last, now))
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
    ) -> anyhow::Result<Decision> {
        Ok(Self::decide(self, policy, context, history, last, now)?)
    }

    /// A bare `PolicyComponent` as an engine is the built-in one (`open` makes it so); operators'
    /// components run as a [`PluginEngine`], which keeps the default.
    fn history_is_builtin_format(&self) -> bool {
        true
    }
}

/// Creates the engine of the given kind, or the operator's plugin when one is configured.
///
/// # Errors
///
/// When the component fails to load (the plugin: see [`PluginEngine::load`]), or when a plugin
/// is asked for together with the native engine.
pub fn open(
    kind: EngineKind,
    plugin: Option<&PluginConfig>,
) -> anyhow::Result<Box<dyn DecisionEngine>> {
    Ok(match (kind, plugin) {
        (EngineKind::Component, Some(plugin)) => Box::new(PluginEngine::load(plugin)?),
        (EngineKind::Native, Some(_)) => anyhow::bail!(
            "a policy component replaces the engine: it cannot be used with --engine native"
        ),
        (EngineKind::Component, None) => Box::new(PolicyComponent::builtin()?),
        (EngineKind::Native, None) => Box::new(NativeEngine),
    })
}
