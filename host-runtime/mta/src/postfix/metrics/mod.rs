//! The daemon's metrics, in the Prometheus text format (OpenMetrics), with the conventions of
//! postfix_exporter: a `tlsfallback_` prefix, `_total` counters, and every label from a fixed
//! set (a tier, a reason, an outcome kind, a cause: never a peer's name, so an attacker who
//! picks recipient domains cannot grow the series).
//!
//! Most of them count the daemon's [`Event`]s ([`Metrics::observe`]): the records its log
//! writes are what it counts, one source for both. The rest are sampled from the parts that
//! keep their own counters (the floor cache, the fleet's circuit) when Prometheus scrapes.
//! [`http`] serves them.

pub mod http;

use std::sync::Arc;

use policy_core::{Outcome, Tier};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::events::{AnswerReason, Event};
use super::floor::FloorSource;
use crate::fleet::CircuitState;

/// The version the build info reports: the crate's, which is the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A decision's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// The action (`attempt`, `defer`, `bounce`, `done`, `postfix-default`, `refused`).
    action: &'static str,
    /// The tier answered, or `none`.
    tier: &'static str,
    /// The reason code.
    reason: &'static str,
}

/// An outcome's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// The outcome kind (`success`, `tls-alert`, ...).
    outcome: &'static str,
    /// The tier attempted.
    tier: &'static str,
}

/// One label from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// One label from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

/// One label from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FloorLabel {
    floor: &'static str,
}

/// One label from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// One label from a fixed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The daemon's metrics. Every update is an atomic add, so one `Arc<Metrics>` is shared by the
/// deciding thread, the connections' threads and the HTTP listener, without a lock of ours.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    outcomes: Family<OutcomeLabels, Counter>,
    downgrades_refused: Family<ReasonLabel, Counter>,
    lookup_errors: Family<CauseLabel, Counter>,
    history_store_errors: Counter,
    plugin_failures: Family<CauseLabel, Counter>,
    floors: Family<FloorLabel, Counter>,
    tlsrpt_datagrams: Family<ResultLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    outcomes_ignored: Counter,
    forgotten: Counter,
    lookup_duration: Histogram,
    fleet_circuit: Family<StateLabel, Gauge>,
    up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero; `up` is 0 until [`set_up`](Self::set_up).
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tlsfallback");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Lookups answered, by what the answer does, its tier and why",
            decisions.clone(),
        );
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "outcomes",
            "Attempt outcomes read from Postfix's log and given to the engine, by kind and tier",
            outcomes.clone(),
        );
        let downgrades_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "downgrades_refused",
            "Answers that refused to walk a peer below what it proved (pins kept, downgrades \
             suspected), by reason",
            downgrades_refused.clone(),
        );
        let lookup_errors = Family::<CauseLabel, Counter>::default();
        registry.register(
            "lookup_errors",
            "Lookups answered without a decision (malformed, another map, deciding failed)",
            lookup_errors.clone(),
        );
        let history_store_errors = Counter::default();
        registry.register(
            "history_store_errors",
            "Lookups and log batches the history database failed (Postfix was told TEMP, or the \
             batch is read again)",
            history_store_errors.clone(),
        );
        let plugin_failures = Family::<CauseLabel, Counter>::default();
        registry.register(
            "plugin_failures",
            "Calls of the operator's policy component that gave no usable decision, by cause",
            plugin_failures.clone(),
        );
        let floors = Family::<FloorLabel, Counter>::default();
        registry.register(
            "floors",
            "Lookups by the floor DNSSEC/DANE and MTA-STS gave their next hop (unknown: not \
             resolved yet or failed)",
            floors.clone(),
        );
        let tlsrpt_datagrams = Family::<ResultLabel, Counter>::default();
        registry.register(
            "tlsrpt_datagrams",
            "TLS-RPT datagrams to the collector, sent or failed",
            tlsrpt_datagrams.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reloads",
            "Policy reloads (SIGHUP), taken or refused",
            reloads.clone(),
        );
        let outcomes_ignored = Counter::default();
        registry.register(
            "outcomes_ignored",
            "Outcomes read from the log that could not be attributed to one tier",
            outcomes_ignored.clone(),
        );
        let forgotten = Counter::default();
        registry.register(
            "destinations_forgotten",
            "Destinations forgotten after --forget-after without use",
            forgotten.clone(),
        );
        // Deciding takes microseconds; waiting for a floor up to the budget (seconds).
        let lookup_duration = Histogram::new([
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0, 2.5, 5.0,
        ]);
        registry.register(
            "lookup_duration_seconds",
            "Time from a lookup's arrival to its reply, floor resolution included",
            lookup_duration.clone(),
        );
        let fleet_circuit = Family::<StateLabel, Gauge>::default();
        registry.register(
            "fleet_circuit",
            "The circuit to the fleet's Redis: 1 for the state it is in (closed, open, \
             half-open); absent without a fleet",
            fleet_circuit.clone(),
        );
        let up = Gauge::default();
        registry.register("up", "1 while the daemon serves lookups", up.clone());
        registry.register(
            "build",
            "The daemon's build",
            Info::new(vec![("version", VERSION)]),
        );
        Self {
            registry,
            decisions,
            outcomes,
            downgrades_refused,
            lookup_errors,
            history_store_errors,
            plugin_failures,
            floors,
            tlsrpt_datagrams,
            reloads,
            outcomes_ignored,
            forgotten,
            lookup_duration,
            fleet_circuit,
            up,
        }
    }

    /// Adds the floor cache's own counters (sampled at each scrape).
    pub fn watch_floors(&mut self, floors: Arc<dyn FloorSource>) {
        self.registry
            .register_collector(Box::new(FloorCollector(floors)));
    }

    /// Counts what `event` says happened.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Answered(answered) => {
                let reason = answered.reason.name();
                self.decisions
                    .get_or_create(&DecisionLabels {
                        action: answered.action,
                        tier: answered.tier.map_or("none", Tier::name),
                        reason,
                    })
                    .inc();
                if answered.reason.refused_downgrade() {
                    self.downgrades_refused
                        .get_or_create(&ReasonLabel { reason })
                        .inc();
                }
                self.floors
                    .get_or_create(&FloorLabel {
                        floor: answered.floor,
                    })
                    .inc();
            }
            Event::Outcome(taken) => {
                self.outcomes
                    .get_or_create(&OutcomeLabels {
                        outcome: Outcome::name(taken.outcome),
                        tier: taken.tier.name(),
                    })
                    .inc();
                if AnswerReason::Engine(taken.reason).refused_downgrade() {
                    self.downgrades_refused
                        .get_or_create(&ReasonLabel {
                            reason: taken.reason.name(),
                        })
                        .inc();
                }
            }
            Event::LookupFailed { cause, .. } => {
                self.lookup_errors
                    .get_or_create(&CauseLabel { cause })
                    .inc();
                if *cause == super::daemon::HISTORY_STORE_CAUSE {
                    self.history_store_errors.inc();
                }
            }
            Event::LogFailed { cause, .. } => {
                if *cause == super::daemon::HISTORY_STORE_CAUSE {
                    self.history_store_errors.inc();
                }
            }
            Event::PluginFailure { cause, .. } => {
                self.plugin_failures
                    .get_or_create(&CauseLabel { cause })
                    .inc();
            }
            Event::TlsRpt { problem, .. } => {
                let result = if problem.is_some() { "failed" } else { "sent" };
                self.tlsrpt_datagrams
                    .get_or_create(&ResultLabel { result })
                    .inc();
            }
            Event::Reloaded { .. } => {
                self.reloads
                    .get_or_create(&ResultLabel { result: "ok" })
                    .inc();
            }
            Event::ReloadRefused { .. } => {
                self.reloads
                    .get_or_create(&ResultLabel { result: "refused" })
                    .inc();
            }
            Event::OutcomeIgnored { .. } => {
                self.outcomes_ignored.inc();
            }
            Event::Forgotten { destinations, .. } => {
                self.forgotten.inc_by(*destinations);
            }
            Event::Warning(_) => {}
        }
    }

    /// Records how long one lookup took, in seconds.
    pub fn observe_lookup_duration(&self, seconds: f64) {
        self.lookup_duration.observe(seconds);
    }

    /// Sets the fleet circuit's state (none: no fleet).
    pub fn set_fleet_circuit(&self, state: Option<&CircuitState>) {
        let Some(state) = state else {
            return;
        };
        let current = match state {
            CircuitState::Closed => "closed",
            CircuitState::Open { .. } => "open",
            CircuitState::HalfOpen => "half-open",
        };
        for name in ["closed", "open", "half-open"] {
            self.fleet_circuit
                .get_or_create(&StateLabel { state: name })
                .set(i64::from(name == current));
        }
    }

    /// Sets `up`: 1 while serving.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// The metrics in the text format Prometheus scrapes ([`http::CONTENT_TYPE`]).
    ///
    /// # Errors
    ///
    /// Only if formatting fails, which writing to a `String` does not.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The floor cache's counters, read at each scrape.
struct FloorCollector(Arc<dyn FloorSource>);

impl std::fmt::Debug for FloorCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorCollector").finish_non_exhaustive()
    }
}

impl Collector for FloorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let counters = self.0.counters();
        for (name, help, value) in [
            (
                "floor_resolutions",
                "DNSSEC/DANE and MTA-STS resolutions finished (lookups' and refreshes')",
                counters.resolutions,
            ),
            (
                "floor_cache_hits",
                "Lookups whose floor was in the cache",
                counters.cache_hits,
            ),
            (
                "floor_cache_misses",
                "Lookups whose floor had to be resolved first",
                counters.cache_misses,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postfix::events::Answered;
    use policy_core::Reason;

    fn answered(peer: &str, reason: Reason) -> Event {
        Event::Answered(Answered {
            peer: peer.to_owned(),
            client: "1".to_owned(),
            floor: "none",
            tier: Some(Tier::ModernTls),
            action: "attempt",
            reason: AnswerReason::Engine(reason),
            policy_id: None,
            answer: "OK encrypt".to_owned(),
        })
    }

    #[test]
    fn a_stranger_chosen_peer_name_never_becomes_a_series() {
        let metrics = Metrics::new();
        for peer in ["[evil\"} 1\n#]:25", "a.example", "b.example"] {
            metrics.observe(&answered(peer, Reason::StrongestTier));
        }
        let text = metrics.encode().unwrap();
        assert!(!text.contains("evil"), "{text}");
        assert!(
            text.contains(
                "tlsfallback_decisions_total{action=\"attempt\",tier=\"modern-tls\",\
                 reason=\"strongest-tier\"} 3"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_refused_downgrade_is_counted_by_its_reason() {
        let metrics = Metrics::new();
        metrics.observe(&answered("a.example", Reason::DowngradeRefusedPinned));
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                "tlsfallback_downgrades_refused_total{reason=\"downgrade-refused-pinned\"} 1"
            ),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
