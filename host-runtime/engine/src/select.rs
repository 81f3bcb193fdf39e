//! Which engine a caller asked for, and opening it: the one module that knows every kind, so
//! that [`decider`](crate::decider) (the trait) and [`plugin`](crate::plugin) (one implementation)
//! need not know each other both ways.

use crate::component::{LoadError, PolicyComponent};
use crate::decider::{DecisionEngine, NativeEngine};
use crate::plugin::{PluginConfig, PluginEngine, PluginLoadError};

/// Why the engine asked for cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The operator's policy component did not load.
    #[error(transparent)]
    Plugin(#[from] PluginLoadError),
    /// The built-in component did not load (never for a correct build).
    #[error(transparent)]
    Builtin(#[from] LoadError),
    /// A policy component was asked for together with the native engine.
    #[error("a policy component replaces the engine: it cannot be used with --engine native")]
    PluginWithNative,
}

/// Which engine answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// The embedded WebAssembly component, run by wasmtime (the default: what MTAs embed).
    #[default]
    Component,
    /// policy-core compiled into this binary.
    Native,
}

impl EngineKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [Self; 2] = [Self::Component, Self::Native];

    /// The kebab-case name of the CLI.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::Native => "native",
        }
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
) -> Result<Box<dyn DecisionEngine>, OpenError> {
    Ok(match (kind, plugin) {
        (EngineKind::Component, Some(plugin)) => Box::new(PluginEngine::load(plugin)?),
        (EngineKind::Native, Some(_)) => return Err(OpenError::PluginWithNative),
        (EngineKind::Component, None) => Box::new(PolicyComponent::builtin()?),
        (EngineKind::Native, None) => Box::new(NativeEngine),
    })
}
