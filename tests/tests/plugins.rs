//! Operators' policy components: hostile ones are contained, the fail mode answers, the floor
//! holds; the example plugins (Rust, JavaScript) are built and run.

mod examples;
pub(crate) mod hostile;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy_core::{
    Action, AttemptReport, Dane, Decision, DeliveryContext, History, MtaSts, Outcome, PeerFacts,
    Policy, Profile, Reason, Tier, TlsAlert, verification_for,
};
use proptest::prelude::*;
use tlsfallback_engine::component::{CallError, CallLimits};
use tlsfallback_engine::decider::{DecideError, Decided, DecisionEngine};
use tlsfallback_engine::plugin::{
    FailMode, FailureEvent, PluginConfig, PluginEngine, PluginFailure, PluginStats, Refusal,
};

use hostile::Behaviour;

const NOW: u64 = 1_767_225_600;

type Events = Arc<Mutex<Vec<FailureEvent>>>;

fn config(fail_mode: FailMode) -> PluginConfig {
    PluginConfig {
        fail_mode,
        cache_dir: None,
        ..PluginConfig::new("fixture.wasm".into())
    }
}

/// A plugin engine whose failure events, as they come back with its decisions, are collected.
struct Recorded {
    engine: PluginEngine,
    events: Events,
}

impl Recorded {
    fn record(&self, decided: Decided) -> Decision {
        if let Some(event) = decided.plugin_failure {
            self.events.lock().unwrap().push(event);
        }
        decided.decision
    }

    fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: u64,
    ) -> Decision {
        let decided = self.engine.decide(policy, context, history, last, now);
        self.record(decided)
    }

    fn stats(&self) -> PluginStats {
        self.engine.stats()
    }
}

impl DecisionEngine for Recorded {
    fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: u64,
    ) -> Result<Decided, DecideError> {
        self.decide_with_facts(policy, context, history, &PeerFacts::default(), last, now)
    }

    fn decide_with_facts(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        facts: &PeerFacts,
        last: Option<&AttemptReport>,
        now: u64,
    ) -> Result<Decided, DecideError> {
        let decided = self
            .engine
            .decide_with_facts(policy, context, history, facts, last, now);
        let failure = decided.plugin_failure.clone();
        let decision = self.record(decided);
        Ok(Decided {
            decision,
            plugin_failure: failure,
        })
    }
}

/// A plugin engine over `bytes` whose failure events are collected.
fn load(bytes: &[u8], config: &PluginConfig) -> (Recorded, Events) {
    let events = Events::default();
    let engine = PluginEngine::from_bytes(bytes, config).expect("the fixture loads");
    (
        Recorded {
            engine,
            events: Arc::clone(&events),
        },
        events,
    )
}

fn attempt(tier: Tier, context: &DeliveryContext) -> Action {
    attempt_after(tier, context, 0)
}

fn attempt_after(tier: Tier, context: &DeliveryContext, delay_secs: u32) -> Action {
    Action::Attempt {
        tier,
        tls: tier.parameters(verification_for(context)),
        delay_secs,
    }
}

fn last_event(events: &Events) -> FailureEvent {
    events
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a failure was logged")
}

fn mta_sts_enforce() -> DeliveryContext {
    DeliveryContext {
        mta_sts: MtaSts::Enforce,
        ..DeliveryContext::default()
    }
}

/// The decision every fail-closed answer must be: defer, history untouched.
fn assert_fail_closed(decision: &Decision, history: Option<&[u8]>) {
    assert_eq!(
        decision.action,
        Action::Defer {
            retry_after_secs: Policy::default().retry_after_secs
        }
    );
    assert_eq!(decision.reason, Reason::PolicyLookupFailed);
    assert_eq!(decision.history.as_bytes(), history.unwrap_or_default());
}

/// Whether a failure is the one a hostile case must be reported as.
type IsExpected = fn(&PluginFailure) -> bool;

/// Each hostile behaviour, the failure it must be reported as.
fn hostile_cases() -> Vec<(&'static str, Behaviour, IsExpected)> {
    vec![
        ("infinite loop", Behaviour::InfiniteLoop, |f| {
            matches!(f, PluginFailure::Call(CallError::OutOfFuel { .. }))
        }),
        ("memory bomb", Behaviour::MemoryBomb, |f| {
            matches!(f, PluginFailure::Call(CallError::MemoryLimit { .. }))
        }),
        ("immediate trap", Behaviour::Trap, |f| {
            matches!(f, PluginFailure::Call(CallError::Trapped(_)))
        }),
        ("bad discriminant", Behaviour::BadDiscriminant, |f| {
            matches!(f, PluginFailure::Call(CallError::InvalidOutput(_)))
        }),
        (
            "history out of bounds",
            Behaviour::HistoryOutOfBounds,
            |f| matches!(f, PluginFailure::Call(CallError::InvalidOutput(_))),
        ),
        (
            "10 MB history",
            Behaviour::HugeHistory { len: 10 << 20 },
            |f| {
                matches!(
                    f,
                    PluginFailure::Call(CallError::HistoryTooLong { len }) if *len == 10 << 20
                )
            },
        ),
        (
            "cleartext under MTA-STS enforce",
            Behaviour::Answer(attempt(Tier::Cleartext, &DeliveryContext::default())),
            |f| {
                matches!(
                    f,
                    PluginFailure::Refused(Refusal::BelowFloor {
                        tier: Tier::Cleartext,
                        floor: Tier::AuthenticatedTls
                    })
                )
            },
        ),
        (
            "done without delivery",
            Behaviour::Answer(Action::Done),
            |f| matches!(f, PluginFailure::Refused(Refusal::DoneWithoutDelivery)),
        ),
    ]
}

#[test]
fn every_hostile_plugin_is_contained_and_fails_closed() {
    let stored = History::default().encode();
    for (name, behaviour, is_expected) in hostile_cases() {
        let (mut engine, events) = load(
            &hostile::component(&behaviour, hostile::VERSION),
            &config(FailMode::FailClosed),
        );
        // Three requests in a row: the host keeps serving after each failure.
        for _ in 0..3 {
            let decision = engine.decide(
                &Policy::default(),
                &mta_sts_enforce(),
                Some(stored.as_bytes()),
                None,
                NOW,
            );
            assert_fail_closed(&decision, Some(stored.as_bytes()));
            let event = last_event(&events);
            assert!(is_expected(&event.failure), "{name}: {event}");
            assert_eq!(event.fail_mode, FailMode::FailClosed);
        }
        assert_eq!(engine.stats().calls, 3, "{name}");
    }
}

#[test]
fn every_hostile_plugin_falls_back_to_the_built_in_engine() {
    for (name, behaviour, is_expected) in hostile_cases() {
        let (mut engine, events) = load(
            &hostile::component(&behaviour, hostile::VERSION),
            &config(FailMode::FallbackBuiltin),
        );
        let context = mta_sts_enforce();
        let decision = engine.decide(&Policy::default(), &context, None, None, NOW);
        let built_in = policy_core::decide(&Policy::default(), &context, None, None, NOW);
        assert_eq!(decision, built_in, "{name}");
        assert!(is_expected(&last_event(&events).failure), "{name}");
    }
}

#[test]
fn a_deadline_stops_a_loop_that_has_fuel_to_spare() {
    let mut config = config(FailMode::FailClosed);
    config.limits = CallLimits {
        fuel: u64::MAX / 2,
        deadline: Duration::from_millis(50),
        ..CallLimits::default()
    };
    let (mut engine, events) = load(
        &hostile::component(&Behaviour::InfiniteLoop, hostile::VERSION),
        &config,
    );
    let decision = engine.decide(
        &Policy::default(),
        &DeliveryContext::default(),
        None,
        None,
        NOW,
    );
    assert_fail_closed(&decision, None);
    let event = last_event(&events);
    assert!(
        matches!(
            event.failure,
            PluginFailure::Call(CallError::DeadlineExceeded { .. })
        ),
        "{event}"
    );
}

#[test]
fn a_trap_poisons_only_that_instance() {
    // Traps when `now` is odd: the even calls around it must still be answered by the plugin.
    let (mut engine, events) = load(
        &hostile::component(&Behaviour::TrapWhenNowIsOdd, hostile::VERSION),
        &config(FailMode::FailClosed),
    );
    let context = DeliveryContext::default();
    let answered = |decision: &Decision| {
        matches!(
            decision.action,
            Action::Attempt {
                tier: Tier::ModernTls,
                ..
            }
        )
    };
    assert!(answered(&engine.decide(
        &Policy::default(),
        &context,
        None,
        None,
        NOW
    )));
    assert_fail_closed(
        &engine.decide(&Policy::default(), &context, None, None, NOW + 1),
        None,
    );
    assert!(matches!(
        last_event(&events).failure,
        PluginFailure::Call(CallError::Trapped(_))
    ));
    assert!(answered(&engine.decide(
        &Policy::default(),
        &context,
        None,
        None,
        NOW + 2
    )));
    let stats = engine.stats();
    assert_eq!((stats.calls, stats.call_failures), (3, 1));
}

#[test]
fn a_component_importing_wasi_is_refused_at_load_with_the_import_named() {
    let error = PluginEngine::from_bytes(&hostile::importing_wasi(), &config(FailMode::FailClosed))
        .expect_err("must be refused");
    let message = format!("{error:#}");
    assert!(message.contains("wasi:cli/environment@0.2.3"), "{message}");
    assert!(message.contains("must import nothing"), "{message}");
}

#[test]
fn an_incompatible_wit_version_is_refused_and_a_compatible_one_loads() {
    for version in ["0.1.0", "1.0.0", "0.3.0"] {
        let bytes = hostile::component(&Behaviour::Answer(Action::Done), version);
        let error = PluginEngine::from_bytes(&bytes, &config(FailMode::FailClosed))
            .expect_err("must be refused");
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("tlsfallback:policy/engine@{version}")),
            "{message}"
        );
        assert!(message.contains("^0.2"), "{message}");
    }
    let context = DeliveryContext::default();
    let bytes = hostile::component(
        &Behaviour::Answer(attempt(Tier::ModernTls, &context)),
        "0.2.9",
    );
    let (mut engine, events) = load(&bytes, &config(FailMode::FailClosed));
    let decision = engine.decide(&Policy::default(), &context, None, None, NOW);
    assert_eq!(decision.action, attempt(Tier::ModernTls, &context));
    assert!(events.lock().unwrap().is_empty());
}

/// A policy, context and stored history whose floor is above cleartext.
type RaisedFloor = (&'static str, Policy, DeliveryContext, Option<Vec<u8>>, Tier);

/// Contexts and policies whose floor is above cleartext, and the floor each sets.
fn raised_floors() -> Vec<RaisedFloor> {
    let policy = Policy::default();
    let plain = DeliveryContext::default();
    let pinned = {
        let mut history = History::default();
        history.memory.pinned_until = NOW + 3600;
        history.encode().as_bytes().to_vec()
    };
    vec![
        (
            "MTA-STS enforce",
            policy,
            mta_sts_enforce(),
            None,
            Tier::AuthenticatedTls,
        ),
        (
            "DANE usable",
            policy,
            DeliveryContext {
                dane: Dane::Usable,
                ..plain
            },
            None,
            Tier::AuthenticatedTls,
        ),
        (
            "REQUIRETLS",
            policy,
            DeliveryContext {
                requiretls: true,
                ..plain
            },
            None,
            Tier::AuthenticatedTls,
        ),
        (
            "SASL",
            policy,
            DeliveryContext {
                sasl: true,
                ..plain
            },
            None,
            Tier::LegacyTls,
        ),
        (
            "mandatory profile",
            Policy {
                profile: Profile::Mandatory,
                ..policy
            },
            plain,
            None,
            Tier::LegacyTls,
        ),
        ("pinned peer", policy, plain, Some(pinned), Tier::ModernTls),
    ]
}

#[test]
fn no_decision_below_the_floor_gets_through_in_either_fail_mode() {
    for (name, policy, context, history, floor) in raised_floors() {
        for tier in Tier::STRONGEST_FIRST.into_iter().filter(|t| *t < floor) {
            let bytes = hostile::component(
                &Behaviour::Answer(attempt(tier, &context)),
                hostile::VERSION,
            );
            for fail_mode in [FailMode::FailClosed, FailMode::FallbackBuiltin] {
                let (mut engine, events) = load(&bytes, &config(fail_mode));
                let decision = engine.decide(&policy, &context, history.as_deref(), None, NOW);
                if let Action::Attempt { tier: got, .. } = decision.action {
                    assert!(got >= floor, "{name}: {} let through", got.name());
                }
                assert!(
                    matches!(
                        last_event(&events).failure,
                        PluginFailure::Refused(Refusal::BelowFloor { .. })
                    ),
                    "{name}: {}",
                    tier.name()
                );
            }
        }
    }
}

fn any_context() -> impl Strategy<Value = DeliveryContext> {
    (0..4u8, 0..4u8, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(dane, mta_sts, requiretls, tls_required_no, sasl)| DeliveryContext {
            dane: [Dane::None, Dane::Usable, Dane::Unusable, Dane::LookupFailed][dane as usize],
            mta_sts: [
                MtaSts::None,
                MtaSts::Testing,
                MtaSts::Enforce,
                MtaSts::FetchFailed,
            ][mta_sts as usize],
            requiretls,
            tls_required_no,
            sasl,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever a plugin asks for, what comes out is at or above the host's floor.
    #[test]
    fn whatever_the_plugin_says_the_floor_holds(
        context in any_context(),
        asked in 0..4usize,
        allow_cleartext in any::<bool>(),
        allow_legacy_tls in any::<bool>(),
    ) {
        let tier = Tier::STRONGEST_FIRST[asked];
        let policy = Policy { allow_cleartext, allow_legacy_tls, ..Policy::default() };
        let bytes = hostile::component(&Behaviour::Answer(attempt(tier, &context)), hostile::VERSION);
        let (mut engine, _) = load(&bytes, &config(FailMode::FallbackBuiltin));
        let decision = engine.decide(&policy, &context, None, None, NOW);
        let bounds = policy_core::floor(&policy, &context, &Default::default(), NOW);
        if let Action::Attempt { tier: got, tls, .. } = decision.action {
            prop_assert!(got >= bounds.floor);
            prop_assert!(got != Tier::LegacyTls || allow_legacy_tls);
            prop_assert_eq!(tls, got.parameters(verification_for(&context)));
        }
    }
}

/// One peer's deliveries through a plugin: each call passes the history the last one returned.
struct Peer<'a> {
    engine: &'a mut Recorded,
    policy: Policy,
    context: DeliveryContext,
    history: Option<Vec<u8>>,
}

impl<'a> Peer<'a> {
    fn new(engine: &'a mut Recorded) -> Self {
        Self {
            engine,
            policy: Policy::default(),
            context: DeliveryContext::default(),
            history: None,
        }
    }

    fn decide(&mut self, last: Option<AttemptReport>, now: u64) -> Decision {
        let decision = self.engine.decide(
            &self.policy,
            &self.context,
            self.history.as_deref(),
            last.as_ref(),
            now,
        );
        self.history = Some(decision.history.as_bytes().to_vec());
        decision
    }

    /// A new delivery starts.
    fn start(&mut self, now: u64) -> Decision {
        self.decide(None, now)
    }

    /// The attempt at `tier` ended with `outcome`.
    fn report(&mut self, tier: Tier, outcome: Outcome, now: u64) -> Decision {
        self.decide(Some(AttemptReport { tier, outcome }), now)
    }
}

/// The tier a decision attempts, if it attempts one.
fn attempted(decision: &Decision) -> Option<Tier> {
    match decision.action {
        Action::Attempt { tier, .. } => Some(tier),
        _ => None,
    }
}

const REFUSED_ALERT: Outcome = Outcome::TlsAlert(TlsAlert::ProtocolVersion);

#[test]
fn a_legacy_peer_gets_mail_through_the_rust_example_and_first_contact_cleartext_waits() {
    let (mut engine, events) = load(&examples::rust_plugin(), &config(FailMode::FailClosed));
    let policy = Policy::default();

    // A legacy-only peer: the same dance as the built-in engine.
    let mut legacy = Peer::new(&mut engine);
    let first = legacy.start(NOW);
    let second = legacy.report(Tier::ModernTls, REFUSED_ALERT, NOW + 1);
    let alert = AttemptReport {
        tier: Tier::ModernTls,
        outcome: REFUSED_ALERT,
    };
    let built_in = policy_core::decide(
        &policy,
        &DeliveryContext::default(),
        Some(first.history.as_bytes()),
        Some(&alert),
        NOW + 1,
    );
    assert_eq!(second, built_in);
    assert_eq!(attempted(&second), Some(Tier::LegacyTls));

    // A new peer without STARTTLS: the built-in engine goes cleartext, the plugin defers once.
    let mut new_peer = Peer::new(&mut engine);
    let first = new_peer.start(NOW);
    assert_eq!(attempted(&first), Some(Tier::ModernTls));
    let deferred = new_peer.report(Tier::ModernTls, Outcome::StarttlsNotOffered, NOW + 1);
    let retry_after_secs = policy.retry_after_secs;
    assert_eq!(deferred.action, Action::Defer { retry_after_secs });
    assert_eq!(deferred.reason, Reason::TlsRequiredNotOffered);
    // The retry starts in cleartext, remembered, and the message goes.
    let retry = new_peer.start(NOW + u64::from(retry_after_secs));
    assert_eq!(attempted(&retry), Some(Tier::Cleartext), "{retry:?}");
    assert_eq!(retry.reason, Reason::RememberedTier);
    let events = events.lock().unwrap();
    assert!(
        events.is_empty(),
        "the guard refused the example: {events:?}"
    );
}

#[test]
fn the_javascript_example_never_sends_cleartext_and_steps_down_to_legacy() {
    let (mut engine, events) = load(
        &examples::javascript_plugin(),
        &config(FailMode::FailClosed),
    );
    let mut peer = Peer::new(&mut engine);
    let first = peer.start(NOW);
    assert_eq!(attempted(&first), Some(Tier::ModernTls), "{first:?}");
    let second = peer.report(Tier::ModernTls, REFUSED_ALERT, NOW + 1);
    assert_eq!(
        second.action,
        attempt_after(
            Tier::LegacyTls,
            &DeliveryContext::default(),
            peer.policy.step_down_delay_secs
        ),
    );
    let done = peer.report(Tier::LegacyTls, Outcome::Success { version: None }, NOW + 2);
    assert_eq!(done.action, Action::Done);
    // The next delivery starts where the peer works.
    let next = peer.start(NOW + 3600);
    assert_eq!(attempted(&next), Some(Tier::LegacyTls), "{next:?}");
    assert_eq!(next.reason, Reason::RememberedTier);
    // The peer upgraded and dropped old TLS: straight back to the top tier.
    let up = peer.report(Tier::LegacyTls, REFUSED_ALERT, NOW + 3601);
    assert_eq!(attempted(&up), Some(Tier::ModernTls), "{up:?}");
    assert_eq!(up.reason, Reason::SteppedUpPeerWantsStronger);
    // No STARTTLS: defer, never cleartext.
    let deferred = peer.report(Tier::ModernTls, Outcome::StarttlsNotOffered, NOW + 3602);
    assert!(
        matches!(deferred.action, Action::Defer { .. }),
        "{deferred:?}"
    );
    // MTA-STS enforce: authenticated TLS with WebPKI.
    peer.context = mta_sts_enforce();
    let strict = peer.start(NOW + 7200);
    assert_eq!(
        strict.action,
        attempt(Tier::AuthenticatedTls, &mta_sts_enforce())
    );
    let events = events.lock().unwrap();
    assert!(
        events.is_empty(),
        "the guard refused the example: {events:?}"
    );
}

#[test]
fn the_javascript_example_under_default_limits_loses_at_most_a_decision_to_its_heap() {
    // A warm ComponentizeJS instance's heap grows with every call until SpiderMonkey collects,
    // past the default 16 MiB: the host must replace the instance and keep answering.
    let (mut engine, events) = load(
        &examples::javascript_plugin(),
        &config(FailMode::FailClosed),
    );
    let mut peer = Peer::new(&mut engine);
    let calls = 5_000;
    let mut answered = 0;
    for call in 0..calls {
        let before = peer.history.clone();
        let decision = peer.start(NOW + call);
        if attempted(&decision) == Some(Tier::ModernTls) {
            answered += 1;
        } else {
            assert_fail_closed(&decision, before.as_deref());
        }
    }
    let events = events.lock().unwrap();
    assert_eq!(answered + events.len() as u64, calls);
    for event in events.iter() {
        assert!(
            matches!(
                event.failure,
                PluginFailure::Call(CallError::MemoryLimit { .. })
            ),
            "{event}"
        );
    }
    // A failure replaces the instance, and the fresh one serves on.
    assert!(answered >= calls - 5, "{} failures", events.len());
}

#[test]
fn the_javascript_examples_policy_file_gives_it_the_limits_it_needs() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugin-js/policy.toml");
    let file = tlsfallback_engine::config::PolicyFile::load(&path).unwrap();
    let plugin = file.plugin_config().unwrap().expect("a [plugin] table");
    assert!(plugin.component.ends_with("dist/plugin.wasm"));
    assert_eq!(plugin.limits.max_memory_bytes, 128 << 20);
    assert_eq!(plugin.limits.fuel, 1_000_000_000);
    assert_eq!(plugin.fail_mode, FailMode::FailClosed);
}

/// The pin lives in the host's own record too, so a plugin's history cannot take it away.
mod pin {
    use policy_core::{TlsVersion, decide};
    use tlsfallback_engine::decider::NativeEngine;
    use tlsfallback_mta::deciding;
    use tlsfallback_mta::store::HistoryStore;

    use super::*;

    const PEER: &str = "mx.example.net";

    const SUCCESS: AttemptReport = AttemptReport {
        tier: Tier::ModernTls,
        outcome: Outcome::Success {
            version: Some(TlsVersion::Tls1_3),
        },
    };

    /// A database in which the built-in engine delivered to `PEER` at modern TLS: pinned.
    fn pinned_store(dir: &tempfile::TempDir) -> HistoryStore {
        let mut store = HistoryStore::open(&dir.path().join("peers.sqlite3")).unwrap();
        let (policy, context) = (Policy::default(), DeliveryContext::default());
        let start = deciding::decide(
            &mut store,
            &mut NativeEngine,
            PEER,
            &policy,
            &context,
            None,
            NOW,
        )
        .unwrap()
        .decision;
        assert_eq!(attempted(&start), Some(Tier::ModernTls));
        let done = deciding::decide(
            &mut store,
            &mut NativeEngine,
            PEER,
            &policy,
            &context,
            Some(&SUCCESS),
            NOW + 1,
        )
        .unwrap()
        .decision;
        assert_eq!(done.action, Action::Done);
        store
    }

    /// The next delivery to `PEER` through a plugin that asks for cleartext: refused in either
    /// fail mode, and never a cleartext attempt.
    fn cleartext_is_refused(store: &mut HistoryStore) {
        let context = DeliveryContext::default();
        let bytes = hostile::component(
            &Behaviour::Answer(attempt(Tier::Cleartext, &context)),
            hostile::VERSION,
        );
        for fail_mode in [FailMode::FailClosed, FailMode::FallbackBuiltin] {
            let (mut plugin, events) = load(&bytes, &config(fail_mode));
            let next = deciding::decide(
                store,
                &mut plugin,
                PEER,
                &Policy::default(),
                &context,
                None,
                NOW + 3600,
            )
            .unwrap()
            .decision;
            assert!(
                attempted(&next).is_none_or(|tier| tier >= Tier::ModernTls),
                "{}: {next:?}",
                fail_mode.name()
            );
            assert_eq!(
                last_event(&events).failure,
                PluginFailure::Refused(Refusal::BelowFloor {
                    tier: Tier::Cleartext,
                    floor: Tier::ModernTls
                }),
                "{}",
                fail_mode.name()
            );
        }
    }

    #[test]
    fn plugin_rewriting_its_history_cannot_erase_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = pinned_store(&dir);
        // After the next success the plugin writes a history of its own: policy-core's format,
        // well-formed, and without the pin.
        let rewritten = History::default().encode().as_bytes().to_vec();
        let (mut rewriter, events) = load(
            &hostile::component(
                &Behaviour::AnswerWithHistory(Action::Done, rewritten.clone()),
                hostile::VERSION,
            ),
            &config(FailMode::FailClosed),
        );
        let done = deciding::decide(
            &mut store,
            &mut rewriter,
            PEER,
            &Policy::default(),
            &DeliveryContext::default(),
            Some(&SUCCESS),
            NOW + 60,
        )
        .unwrap()
        .decision;
        assert_eq!(done.action, Action::Done);
        assert!(
            events.lock().unwrap().is_empty(),
            "done after a success is fine"
        );
        assert_eq!(store.get(PEER).unwrap().unwrap().history, rewritten);
        cleartext_is_refused(&mut store);
    }

    #[test]
    fn plugin_returning_an_empty_history_cannot_drop_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = pinned_store(&dir);
        let (mut eraser, _) = load(
            &hostile::component(&Behaviour::Answer(Action::Done), hostile::VERSION),
            &config(FailMode::FailClosed),
        );
        let done = deciding::decide(
            &mut store,
            &mut eraser,
            PEER,
            &Policy::default(),
            &DeliveryContext::default(),
            Some(&SUCCESS),
            NOW + 60,
        )
        .unwrap()
        .decision;
        assert_eq!(done.action, Action::Done);
        assert!(store.get(PEER).unwrap().unwrap().history.is_empty());
        cleartext_is_refused(&mut store);
    }

    #[test]
    fn the_built_in_fallback_for_a_plugin_that_dropped_the_pin_is_held_to_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = pinned_store(&dir);
        let (mut eraser, _) = load(
            &hostile::component(&Behaviour::Answer(Action::Done), hostile::VERSION),
            &config(FailMode::FailClosed),
        );
        let (policy, context) = (Policy::default(), DeliveryContext::default());
        let done = deciding::decide(
            &mut store,
            &mut eraser,
            PEER,
            &policy,
            &context,
            Some(&SUCCESS),
            NOW + 60,
        )
        .unwrap()
        .decision;
        assert_eq!(done.action, Action::Done);
        // The plugin now traps; its fallback, the built-in engine, reads the empty history as an
        // unknown peer and would step down to legacy TLS after a (forged) protocol alert.
        let alert = AttemptReport {
            tier: Tier::ModernTls,
            outcome: REFUSED_ALERT,
        };
        let unknown = decide(&policy, &context, None, Some(&alert), NOW + 3600);
        assert_eq!(attempted(&unknown), Some(Tier::LegacyTls));
        let (mut trapping, events) = load(
            &hostile::component(&Behaviour::Trap, hostile::VERSION),
            &config(FailMode::FallbackBuiltin),
        );
        let next = deciding::decide(
            &mut store,
            &mut trapping,
            PEER,
            &policy,
            &context,
            Some(&alert),
            NOW + 3600,
        )
        .unwrap()
        .decision;
        assert_fail_closed(&next, None);
        let event = last_event(&events);
        assert!(
            matches!(event.failure, PluginFailure::Call(CallError::Trapped(_))),
            "{event}"
        );
        assert_eq!(event.fail_mode, FailMode::FailClosed, "{event}");
    }
}
