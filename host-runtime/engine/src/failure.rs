//! What a plugin failure is, and what the host did about it: the value that comes back with the
//! decision the fail mode made (`decider::Decided`). Its own module, so that the
//! decision type and the plugin engine need not know each other both ways.

use crate::component::CallError;
use crate::guard::Refusal;

/// What the host does when a plugin gives no usable decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    /// Defer the delivery (`retry_after_secs` of the policy), keeping the peer's history as it
    /// was: no mail moves while the plugin is broken.
    #[default]
    FailClosed,
    /// Decide with the built-in engine instead: mail keeps moving under the default rules.
    FallbackBuiltin,
}

impl FailMode {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [Self; 2] = [Self::FailClosed, Self::FallbackBuiltin];

    /// The kebab-case name, as in the configuration.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::FailClosed => "fail-closed",
            Self::FallbackBuiltin => "fallback-builtin",
        }
    }
}

/// Why a plugin's call gave no usable decision.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginFailure {
    /// The call failed: a trap, fuel or time used up, the memory limit, or output the host
    /// could not read.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The decision was well-formed, and the guard refused it.
    #[error("the guard refused the policy component's decision: {0}")]
    Refused(#[from] Refusal),
}

impl PluginFailure {
    /// The cause's kebab-case name without its details: a call's
    /// [`CallError::cause`], or `refused` (the guard refused the decision).
    #[must_use]
    pub const fn cause(&self) -> &'static str {
        match self {
            Self::Call(error) => error.cause(),
            Self::Refused(_) => "refused",
        }
    }
}

/// One plugin failure, as it comes back with the decision the fail mode made instead
/// ([`Decided::plugin_failure`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureEvent {
    /// The component that failed, as its configuration names it.
    pub component: String,
    /// What went wrong.
    pub failure: PluginFailure,
    /// What the host did about it.
    pub fail_mode: FailMode,
}

impl std::fmt::Display for FailureEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = match self.fail_mode {
            FailMode::FailClosed => "deferred the delivery",
            FailMode::FallbackBuiltin => "decided with the built-in engine",
        };
        write!(
            f,
            "policy component {}: {}; {}: {done}",
            self.component,
            self.failure,
            self.fail_mode.name()
        )
    }
}
