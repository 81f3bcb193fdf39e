//! Operators' own policy components ("plugins"), run so that nothing they do can hurt the host
//! or let a delivery below the floor through.
//!
//! A plugin is any component that exports `tlsfallback:policy/engine` at a version compatible
//! with [`EXPORTED_INTERFACE`](crate::component::EXPORTED_INTERFACE) and imports nothing, in
//! whatever language it was written. [`PluginEngine`] runs it with [`CallLimits`] (fuel, an
//! epoch deadline, a memory limit) on pooled instances, replaces an instance after any failure,
//! checks every decision with [`guard::check`], and when anything goes wrong answers with the
//! operator's [`FailMode`] instead, returning the [`FailureEvent`] with that decision.

use std::path::{Path, PathBuf};
use std::time::Duration;

use policy_core::{
    Action, AttemptReport, Decision, DeliveryContext, HistoryBlob, PeerFacts, Policy, Reason,
    TlsRptResults, UnixSeconds,
};

use crate::component::{CallLimits, ComponentConfig, LoadError, PolicyComponent};
use crate::decider::{DecideError, Decided, DecisionEngine};

pub use crate::failure::{FailMode, FailureEvent, PluginFailure};
pub use crate::guard::{self, GuardLimits, Refusal};

/// How to load and run a plugin: the `[plugin]` table of the policy file, or the host library's
/// API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginConfig {
    /// The component file (`.wasm`).
    pub component: PathBuf,
    /// What to do when the plugin fails.
    pub fail_mode: FailMode,
    /// Bounds on each call.
    pub limits: CallLimits,
    /// Bounds on what a decision may ask for.
    pub guard: GuardLimits,
    /// A fresh instance for every call (nothing a call leaves behind reaches the next), instead
    /// of one warm instance replaced only after a failure.
    pub fresh_instance_per_call: bool,
    /// Where precompiled artifacts are cached (`None`: compile at every start).
    pub cache_dir: Option<PathBuf>,
}

impl PluginConfig {
    /// The defaults for `component`: fail closed, [`CallLimits::default`],
    /// [`GuardLimits::default`], a warm instance, the default cache directory.
    #[must_use]
    pub fn new(component: PathBuf) -> Self {
        Self {
            component,
            fail_mode: FailMode::default(),
            limits: CallLimits::default(),
            guard: GuardLimits::default(),
            fresh_instance_per_call: false,
            cache_dir: default_cache_dir(),
        }
    }
}

/// `$XDG_CACHE_HOME/tlsfallback/components`, else `~/.cache/tlsfallback/components`.
#[must_use]
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .map(|cache| cache.join("tlsfallback").join("components"))
}

/// Counts of what a [`PluginEngine`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Decisions asked of the plugin.
    pub calls: u64,
    /// Calls that failed (trap, limits, unreadable output).
    pub call_failures: u64,
    /// Decisions the guard refused.
    pub refusals: u64,
}

/// A plugin, run under limits and checked by the guard, with a fail mode.
pub struct PluginEngine {
    component: PolicyComponent,
    fail_mode: FailMode,
    guard: GuardLimits,
    /// The component's name in failure events.
    name: String,
    stats: PluginStats,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("fail_mode", &self.fail_mode)
            .field("guard", &self.guard)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// Loads the plugin `config` names. Its failures come back with the decisions made instead.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not a component, imports anything, or does not export a
    /// compatible `tlsfallback:policy/engine`: a configuration error, reported at start-up
    /// rather than at the first delivery.
    pub fn load(config: &PluginConfig) -> Result<Self, PluginLoadError> {
        let bytes = std::fs::read(&config.component).map_err(|cause| PluginLoadError::Read {
            path: config.component.clone(),
            cause,
        })?;
        Self::from_bytes(&bytes, config).map_err(|error| PluginLoadError::Load {
            path: config.component.clone(),
            error,
        })
    }

    /// Loads a plugin from its bytes (`config.component` is only used in messages).
    ///
    /// # Errors
    ///
    /// As for [`load`](Self::load).
    pub fn from_bytes(bytes: &[u8], config: &PluginConfig) -> Result<Self, LoadError> {
        let component_config = ComponentConfig {
            limits: Some(config.limits),
            fresh_instance_per_call: config.fresh_instance_per_call,
        };
        let component =
            PolicyComponent::load(bytes, component_config, config.cache_dir.as_deref())?;
        let name = config.component.display().to_string();
        Ok(Self {
            component,
            fail_mode: config.fail_mode,
            guard: config.guard,
            name,
            stats: PluginStats::default(),
        })
    }

    /// What this engine did so far.
    #[must_use]
    pub const fn stats(&self) -> PluginStats {
        self.stats
    }

    /// Decides with the plugin, or with the fail mode when the plugin fails; never an error.
    /// The failure, if any, comes back with the decision, for the caller to report.
    ///
    /// The guard holds the decision to the pin in `history` only; a host that keeps its own
    /// record of the peer calls [`decide_with_facts`](Self::decide_with_facts).
    pub fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Decided {
        self.decide_with_facts(policy, context, history, &PeerFacts::default(), last, now)
    }

    /// As [`decide`](Self::decide), with the guard holding every decision, the fail mode's too,
    /// to the pin the host recorded itself in `facts` as well: whatever history the plugin
    /// returned before, it cannot lower the floor.
    pub fn decide_with_facts(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        facts: &PeerFacts,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Decided {
        self.stats.calls += 1;
        let check = |decision: &Decision| {
            guard::check(
                decision,
                &self.guard,
                policy,
                context,
                history,
                facts,
                last,
                now,
            )
        };
        let failure = match self.component.decide(policy, context, history, last, now) {
            Ok(decision) => match check(&decision) {
                Ok(()) => return Decided::plain(decision),
                Err(refusal) => {
                    self.stats.refusals += 1;
                    PluginFailure::Refused(refusal)
                }
            },
            Err(error) => {
                self.stats.call_failures += 1;
                PluginFailure::Call(error)
            }
        };
        let mut event = FailureEvent {
            component: self.name.clone(),
            failure,
            fail_mode: self.fail_mode,
        };
        let decision = match self.fail_mode {
            FailMode::FailClosed => fail_closed(policy, history),
            FailMode::FallbackBuiltin => {
                let built_in = policy_core::decide(policy, context, history, last, now);
                // The built-in engine reads the plugin's history: when the plugin rewrote or
                // dropped the pin there, only the host's record still holds it, so the
                // fallback's decision is checked too, and fails closed when it would cross.
                if check(&built_in).is_ok() {
                    built_in
                } else {
                    event.fail_mode = FailMode::FailClosed;
                    fail_closed(policy, history)
                }
            }
        };
        Decided {
            decision,
            plugin_failure: Some(event),
        }
    }
}

/// The fail-closed decision: defer, and keep the history that was passed in, so that the
/// failure costs the peer nothing it had learnt.
fn fail_closed(policy: &Policy, history: Option<&[u8]>) -> Decision {
    let history = history
        .and_then(|blob| HistoryBlob::from_slice(blob).ok())
        // No history, or one longer than any engine writes: store none.
        .unwrap_or_else(|| HistoryBlob::from_slice(&[]).expect("an empty blob fits"));
    Decision {
        action: Action::Defer {
            retry_after_secs: policy.retry_after_secs,
        },
        // The policy could not be evaluated: the code hosts already handle as "retry later".
        reason: Reason::PolicyLookupFailed,
        report: TlsRptResults::EMPTY,
        history,
        history_error: None,
    }
}

impl DecisionEngine for PluginEngine {
    fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError> {
        Ok(Self::decide(self, policy, context, history, last, now))
    }

    fn decide_with_facts(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        facts: &PeerFacts,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decided, DecideError> {
        Ok(Self::decide_with_facts(
            self, policy, context, history, facts, last, now,
        ))
    }
}

/// Why an operator's policy component could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginLoadError {
    /// The file cannot be read.
    #[error("reading the policy component {}: {cause}", .path.display())]
    Read {
        /// The component's file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is no component this host can run (not a component, imports, the interface).
    #[error("loading the policy component {}: {error}", .path.display())]
    Load {
        /// The component's file.
        path: PathBuf,
        /// Why.
        error: LoadError,
    },
}

/// A `[plugin]` table that cannot work: options without a component, a zero or out-of-range
/// limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPluginSection(pub &'static str);

/// The `[plugin]` table of the policy file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// The component file; relative to the policy file's directory.
    pub component: Option<PathBuf>,
    /// `fail-closed` (the default) or `fallback-builtin`.
    pub fail_mode: Option<FailMode>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Wall-clock deadline per call, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Linear memory limit per instance, in MiB.
    pub max_memory_mib: Option<u32>,
    /// A fresh instance for every call.
    pub fresh_instance_per_call: Option<bool>,
    /// Where precompiled artifacts are cached; relative to the policy file's directory.
    pub cache_dir: Option<PathBuf>,
    /// Bounds on what a decision may ask for.
    #[serde(flatten)]
    pub guard: GuardSection,
}

/// The guard's bounds in the `[plugin]` table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct GuardSection {
    /// See [`GuardLimits::max_attempt_delay_secs`].
    pub max_attempt_delay_secs: Option<u32>,
    /// See [`GuardLimits::max_retry_after_secs`].
    pub max_retry_after_secs: Option<u32>,
}

impl PluginSection {
    /// The plugin configuration this table describes, paths resolved against `base` (the
    /// policy file's directory); `None` when it names no component.
    ///
    /// # Errors
    ///
    /// When a limit is zero (a plugin could never answer).
    pub fn resolve(&self, base: &Path) -> Result<Option<PluginConfig>, InvalidPluginSection> {
        let Some(component) = &self.component else {
            if *self != Self::default() {
                return Err(InvalidPluginSection(
                    "the [plugin] table sets options but no `component`",
                ));
            }
            return Ok(None);
        };
        let mut config = PluginConfig::new(base.join(component));
        if let Some(fail_mode) = self.fail_mode {
            config.fail_mode = fail_mode;
        }
        if let Some(fuel) = self.fuel {
            if fuel == 0 {
                return Err(InvalidPluginSection("[plugin] fuel must be positive"));
            }
            config.limits.fuel = fuel;
        }
        if let Some(ms) = self.deadline_ms {
            if ms == 0 {
                return Err(InvalidPluginSection(
                    "[plugin] deadline_ms must be positive",
                ));
            }
            config.limits.deadline = Duration::from_millis(ms);
        }
        if let Some(mib) = self.max_memory_mib {
            if !(1..=4096).contains(&mib) {
                return Err(InvalidPluginSection(
                    "[plugin] max_memory_mib must be between 1 and 4096",
                ));
            }
            config.limits.max_memory_bytes = (mib as usize) << 20;
        }
        if let Some(fresh) = self.fresh_instance_per_call {
            config.fresh_instance_per_call = fresh;
        }
        if let Some(dir) = &self.cache_dir {
            config.cache_dir = Some(base.join(dir));
        }
        if let Some(secs) = self.guard.max_attempt_delay_secs {
            config.guard.max_attempt_delay_secs = secs;
        }
        if let Some(secs) = self.guard.max_retry_after_secs {
            config.guard.max_retry_after_secs = secs;
        }
        Ok(Some(config))
    }
}
