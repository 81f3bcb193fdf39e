use policy_core::{
    Action, AttemptReport, CertificateError, Dane, DeliveryContext, History, MtaSts, Outcome,
    Policy, Profile, Tier, TlsAlert, TlsVersion, decide, floor,
};
use proptest::prelude::*;

pub(crate) fn tier() -> impl Strategy<Value = Tier> {
    prop::sample::select(Tier::STRONGEST_FIRST.to_vec())
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(Profile::ALL.to_vec()),
        any::<bool>(),
        any::<bool>(),
        0u32..60,
        prop_oneof![Just(0u32), 1u32..30 * 86_400],
        prop_oneof![Just(0u32), 1u32..90 * 86_400],
        0u8..6,
        1u32..7200,
    )
        .prop_map(
            |(profile, legacy, cleartext, delay, reprobe, pin, threshold, retry)| Policy {
                profile,
                allow_legacy_tls: legacy,
                allow_cleartext: cleartext,
                step_down_delay_secs: delay,
                reprobe_interval_secs: reprobe,
                pin_duration_secs: pin,
                transient_failure_threshold: threshold,
                retry_after_secs: retry,
            },
        )
}

pub(crate) fn context() -> impl Strategy<Value = DeliveryContext> {
    (
        prop::sample::select(Dane::ALL.to_vec()),
        prop::sample::select(MtaSts::ALL.to_vec()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(dane, mta_sts, requiretls, tls_required_no, sasl)| DeliveryContext {
                dane,
                mta_sts,
                requiretls,
                tls_required_no,
                sasl,
            },
        )
}

fn version() -> impl Strategy<Value = Option<TlsVersion>> {
    prop::option::of(prop::sample::select(vec![
        TlsVersion::Tls1_0,
        TlsVersion::Tls1_1,
        TlsVersion::Tls1_2,
        TlsVersion::Tls1_3,
    ]))
}

fn failure() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::ConnectFailed),
        Just(Outcome::StarttlsNotOffered),
        (400u16..600).prop_map(|code| Outcome::StarttlsRejected { code }),
        prop::sample::select(TlsAlert::ALL.to_vec()).prop_map(Outcome::TlsAlert),
        prop::sample::select(CertificateError::ALL.to_vec()).prop_map(Outcome::CertificateError),
        Just(Outcome::HandshakeTimeout),
        Just(Outcome::ConnectionReset),
        Just(Outcome::PostHandshakeFailure),
        Just(Outcome::PolicyLookupFailed),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        1 => version().prop_map(|version| Outcome::Success { version }),
        3 => failure(),
    ]
}

/// A history reached by a random sequence of events, or random bytes.
fn history() -> impl Strategy<Value = Option<Vec<u8>>> {
    let lived = (
        policy(),
        context(),
        prop::collection::vec((tier(), outcome(), 0u64..10 * 86_400), 0..40),
    )
        .prop_map(|(policy, context, events)| {
            let mut now = 1_700_000_000;
            let mut blob = None::<policy_core::HistoryBlob>;
            for (tier, outcome, dt) in events {
                now += dt;
                let last = (dt % 3 != 0).then_some(AttemptReport { tier, outcome });
                let d = decide(
                    &policy,
                    &context,
                    blob.as_ref().map(|b| b.as_bytes()),
                    last.as_ref(),
                    now,
                );
                blob = Some(d.history);
            }
            blob.map(|b| b.as_bytes().to_vec())
        });
    prop_oneof![
        4 => lived,
        1 => prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
    ]
}

const NOW: u64 = 1_700_000_000 + 400 * 86_400;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_floor_is_never_violated(
        policy in policy(),
        context in context(),
        history in history(),
        outcomes in prop::collection::vec((outcome(), any::<bool>()), 1..8),
    ) {
        let memory = history
            .as_deref()
            .and_then(|b| History::decode(b).ok())
            .unwrap_or_default()
            .memory;
        let bounds = floor(&policy, &context, &memory, NOW);
        let mut blob = history;
        let mut last = None;
        for (outcome, host_lies) in outcomes {
            let d = decide(&policy, &context, blob.as_deref(), last.as_ref(), NOW);
            blob = Some(d.history.as_bytes().to_vec());
            let Action::Attempt { tier, tls, .. } = d.action else { break };
            prop_assert!(tier >= bounds.floor, "{tier:?} below floor {:?}", bounds.floor);
            prop_assert!(tier <= bounds.top);
            prop_assert!(tier != Tier::LegacyTls || policy.allow_legacy_tls);
            prop_assert_eq!(tls.is_some(), tier.uses_tls());
            // A host that reports the wrong tier must not drag the engine below the floor either.
            let reported = if host_lies { Tier::ModernTls } else { tier };
            last = Some(AttemptReport { tier: reported, outcome });
        }
    }

    /// However an attacker answers one delivery (forged alerts, resets, timeouts, STARTTLS
    /// stripped, in any order), no attempt goes below the tier the peer proved by its last
    /// delivery, pinned or not: stepping below it takes `transient_failure_threshold` deliveries.
    #[test]
    fn unauthenticated_failures_never_take_one_delivery_below_the_proven_tier(
        policy in policy().prop_filter("at threshold 1 one piece of cheap evidence is enough",
            |p| p.transient_failure_threshold >= 2),
        context in context().prop_filter("the sender's TLS-Required: No lifts the rule",
            |c| !c.tls_required_no || c.requiretls),
        history in history(),
        proven in tier().prop_filter("only a success over TLS proves a tier", |t| t.uses_tls()),
        failures in prop::collection::vec(failure(), 16),
    ) {
        let start = decide(&policy, &context, history.as_deref(), None, NOW);
        let success = AttemptReport {
            tier: proven,
            outcome: Outcome::Success { version: Some(TlsVersion::Tls1_2) },
        };
        let delivered = decide(&policy, &context, Some(start.history.as_bytes()), Some(&success), NOW + 1);
        let later = NOW + 300;
        let memory = History::decode(delivered.history.as_bytes()).unwrap().memory;
        // A proof at authenticated TLS cannot lift an opportunistic delivery above its top.
        let lowest = proven.min(floor(&policy, &context, &memory, later).top);
        let mut decision = decide(&policy, &context, Some(delivered.history.as_bytes()), None, later);
        let mut failures = failures.into_iter();
        let mut attempts = 0;
        while let Action::Attempt { tier, .. } = decision.action {
            prop_assert!(tier >= lowest, "{tier:?} below the proven {lowest:?}");
            attempts += 1;
            let report = AttemptReport { tier, outcome: failures.next().unwrap() };
            decision = decide(&policy, &context, Some(decision.history.as_bytes()), Some(&report), later + attempts);
        }
    }

    #[test]
    fn a_capable_peer_is_never_delayed_or_downgraded(
        policy in policy(),
        context in context().prop_filter("a failed TLSA lookup defers everyone",
            |c| c.dane != Dane::LookupFailed || (c.tls_required_no && !c.requiretls)),
        gaps in prop::collection::vec(0u64..20 * 86_400, 1..30),
    ) {
        let mut now = 1_700_000_000;
        let mut blob: Option<Vec<u8>> = None;
        for gap in gaps {
            now += gap;
            let memory = blob.as_deref().and_then(|b| History::decode(b).ok()).unwrap_or_default().memory;
            let top = floor(&policy, &context, &memory, now).top;
            let first = decide(&policy, &context, blob.as_deref(), None, now);
            prop_assert_eq!(first.action, Action::Attempt {
                tier: top,
                tls: top.parameters(match first.action {
                    Action::Attempt { tls: Some(t), .. } => t.verification,
                    _ => policy_core::Verification::None,
                }),
                delay_secs: 0,
            });
            let report = AttemptReport { tier: top, outcome: Outcome::Success { version: Some(TlsVersion::Tls1_3) } };
            let done = decide(&policy, &context, Some(first.history.as_bytes()), Some(&report), now + 1);
            prop_assert_eq!(done.action, Action::Done);
            blob = Some(done.history.as_bytes().to_vec());
        }
    }

    #[test]
    fn history_stays_within_64_bytes_and_readable(
        policy in policy(),
        context in context(),
        events in prop::collection::vec((prop::option::of((tier(), outcome())), 0u64..u64::MAX / 4), 1..200),
    ) {
        let mut blob: Option<Vec<u8>> = None;
        for (last, now) in events {
            let last = last.map(|(tier, outcome)| AttemptReport { tier, outcome });
            let d = decide(&policy, &context, blob.as_deref(), last.as_ref(), now);
            prop_assert!(d.history.as_bytes().len() <= policy_core::MAX_HISTORY_LEN);
            prop_assert!(d.history.as_bytes().len() <= 41);
            prop_assert!(History::decode(d.history.as_bytes()).is_ok());
            blob = Some(d.history.as_bytes().to_vec());
        }
    }

    #[test]
    fn every_failing_sequence_terminates_within_the_attempt_limit(
        policy in policy(),
        context in context(),
        history in history(),
        failures in prop::collection::vec(failure(), 16),
    ) {
        let mut blob = history;
        let mut decision = decide(&policy, &context, blob.as_deref(), None, NOW);
        let mut attempts = 0;
        let mut failures = failures.into_iter();
        while let Action::Attempt { tier, .. } = decision.action {
            attempts += 1;
            prop_assert!(attempts <= usize::from(policy_core::MAX_ATTEMPTS_PER_DELIVERY));
            blob = Some(decision.history.as_bytes().to_vec());
            let report = AttemptReport { tier, outcome: failures.next().unwrap() };
            decision = decide(&policy, &context, blob.as_deref(), Some(&report), NOW + attempts as u64);
        }
        let ended = matches!(decision.action, Action::Defer { .. } | Action::Bounce { .. });
        prop_assert!(ended, "ended with {:?}", decision.action);
    }

    #[test]
    fn decisions_are_deterministic_and_total_on_any_bytes(
        policy in policy(),
        context in context(),
        bytes in prop::option::of(prop::collection::vec(any::<u8>(), 0..100)),
        last in prop::option::of((tier(), outcome())),
        now in any::<u64>(),
    ) {
        let last = last.map(|(tier, outcome)| AttemptReport { tier, outcome });
        let a = decide(&policy, &context, bytes.as_deref(), last.as_ref(), now);
        let b = decide(&policy, &context, bytes.as_deref(), last.as_ref(), now);
        prop_assert_eq!(a, b);
    }
}
