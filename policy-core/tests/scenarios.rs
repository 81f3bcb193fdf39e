use policy_core::sim::{self, Preset, Scenario};
use policy_core::{
    Action, AttemptReport, Outcome, Policy, Reason, Tier, TlsAlert, TlsRptResult, TlsVersion,
    decide,
};

use crate::harness::{self, DAY, Peer, is_defer, legacy_only, modern, no_starttls};

fn simulate(preset: Preset, days: u32) -> sim::Timeline {
    let scenario = Scenario {
        days,
        ..Scenario::new(preset.peer(), Policy::default())
    };
    sim::run_natively(&scenario).expect("the presets are valid scenarios")
}

#[test]
fn modern_peer_always_starts_at_the_top_without_delay_and_pays_nothing() {
    let timeline = simulate(Preset::Modern, 60);
    for delivery in &timeline.deliveries {
        assert_eq!(delivery.first_tier(), Some(Tier::ModernTls));
        assert_eq!(delivery.delivered_tier(), Some(Tier::ModernTls));
        assert_eq!(delivery.steps.len(), 2, "one attempt, then done");
    }
    assert_eq!(timeline.summary.failed_attempts, 0);
    assert_eq!(timeline.summary.fallback_delay_secs, 0);
}

#[test]
fn legacy_only_peer_steps_down_once_then_starts_at_legacy() {
    let mut peer = Peer::new();
    let first = peer.deliver(legacy_only);
    assert_eq!(first.tiers(), [Tier::ModernTls, Tier::LegacyTls]);
    assert_eq!(first.attempts[1].1, Policy::default().step_down_delay_secs);
    assert_eq!(
        first.reasons(),
        ["strongest-tier", "stepped-down-after-alert", "delivered"]
    );
    assert!(
        first.decisions[1]
            .report
            .contains(TlsRptResult::ValidationFailure)
    );
    let Action::Attempt { tls: Some(tls), .. } = first.decisions[1].action else {
        panic!("legacy attempt carries TLS parameters");
    };
    assert_eq!(tls.min_version, TlsVersion::Tls1_0);
    assert_eq!(tls.security_level, 0);
    assert!(tls.fallback_scsv);

    for _ in 0..20 {
        peer.advance(6 * 3600);
        let later = peer.deliver(legacy_only);
        assert_eq!(
            later.tiers(),
            [Tier::LegacyTls],
            "legacy peers do not repeat failing handshakes"
        );
        assert_eq!(later.decisions[0].reason, Reason::RememberedTier);
    }
}

#[test]
fn remembered_peers_are_reprobed_after_the_interval() {
    let mut peer = Peer::new();
    peer.deliver(legacy_only);
    peer.advance(u64::from(Policy::default().reprobe_interval_secs) - 10);
    assert_eq!(peer.deliver(legacy_only).tiers(), [Tier::LegacyTls]);
    peer.advance(20);
    let probe = peer.deliver(legacy_only);
    assert_eq!(probe.tiers(), [Tier::ModernTls, Tier::LegacyTls]);
    assert_eq!(probe.decisions[0].reason, Reason::ReprobeUpward);
    // The probe restarts the interval.
    peer.advance(3600);
    assert_eq!(peer.deliver(legacy_only).tiers(), [Tier::LegacyTls]);
}

#[test]
fn upgraded_peer_is_noticed_through_the_fallback_scsv_before_any_reprobe() {
    let mut peer = Peer::new();
    peer.deliver(legacy_only);
    peer.advance(DAY);
    let upgraded = peer.deliver(modern);
    assert_eq!(upgraded.tiers(), [Tier::LegacyTls, Tier::ModernTls]);
    assert_eq!(
        upgraded.decisions[1].reason,
        Reason::SteppedUpPeerWantsStronger
    );
    assert_eq!(upgraded.attempts[1].1, 0, "stepping up costs no delay");
    peer.advance(DAY);
    assert_eq!(peer.deliver(modern).tiers(), [Tier::ModernTls]);
}

#[test]
fn upgrading_preset_ends_at_modern_tls() {
    let timeline = simulate(Preset::Upgrading, 20);
    let last = timeline.deliveries.last().unwrap();
    assert_eq!(last.delivered_tier(), Some(Tier::ModernTls));
    assert_eq!(timeline.summary.expired + timeline.summary.bounces, 0);
}

#[test]
fn peer_without_starttls_goes_to_cleartext_and_stays_there() {
    let mut peer = Peer::new();
    let first = peer.deliver(no_starttls);
    assert_eq!(
        first.tiers(),
        [Tier::ModernTls, Tier::Cleartext],
        "legacy TLS cannot help"
    );
    assert_eq!(first.decisions[1].reason, Reason::SteppedDownNoStarttls);
    assert!(
        first.decisions[1]
            .report
            .contains(TlsRptResult::StarttlsNotSupported)
    );
    let Action::Attempt { tls, .. } = first.decisions[1].action else {
        panic!("attempt expected");
    };
    assert_eq!(tls, None, "cleartext has no TLS parameters");
    peer.advance(3600);
    assert_eq!(peer.deliver(no_starttls).tiers(), [Tier::Cleartext]);
}

#[test]
fn broken_starttls_454_is_treated_like_missing_starttls() {
    let timeline = simulate(Preset::BrokenStarttls, 10);
    assert_eq!(
        timeline.deliveries[0].delivered_tier(),
        Some(Tier::Cleartext)
    );
    assert_eq!(timeline.deliveries[1].first_tier(), Some(Tier::Cleartext));
    assert_eq!(
        timeline.summary.delivered_by_tier[0],
        timeline.summary.messages
    );
}

#[test]
fn flaky_network_never_downgrades_a_pinned_peer() {
    let timeline = simulate(Preset::FlakyNetwork, 30);
    assert!(
        timeline.summary.failed_attempts > 0,
        "the network does reset"
    );
    for delivery in &timeline.deliveries {
        for step in &delivery.steps {
            if let Action::Attempt { tier, .. } = step.decision.action {
                assert_eq!(tier, Tier::ModernTls, "resets never move a pinned peer");
            }
        }
    }
    assert_eq!(timeline.summary.expired, 0);
}

#[test]
fn resets_step_an_unpinned_peer_down_only_after_repeated_evidence_across_attempts() {
    let policy = Policy {
        pin_duration_secs: 0,
        ..Policy::default()
    };
    let threshold = policy.transient_failure_threshold;
    let mut peer = Peer::with(policy, Default::default());
    let reset = |tier: Tier| {
        if tier == Tier::ModernTls {
            Outcome::ConnectionReset
        } else {
            harness::ok(TlsVersion::Tls1_2)
        }
    };
    for attempt in 1..threshold {
        let delivery = peer.deliver(reset);
        assert_eq!(delivery.tiers(), [Tier::ModernTls], "attempt {attempt}");
        assert!(is_defer(delivery.last()));
        assert_eq!(delivery.last().reason, Reason::TransientFailure);
        peer.advance(300);
    }
    let stepped = peer.deliver(reset);
    assert_eq!(stepped.tiers(), [Tier::ModernTls, Tier::LegacyTls]);
    assert_eq!(
        stepped.decisions[1].reason,
        Reason::SteppedDownRepeatedFailures
    );
}

#[test]
fn a_success_resets_the_count_of_transient_failures() {
    let policy = Policy {
        pin_duration_secs: 0,
        ..Policy::default()
    };
    let mut peer = Peer::with(policy, Default::default());
    for _ in 0..10 {
        for _ in 1..policy.transient_failure_threshold {
            peer.deliver(|_| Outcome::HandshakeTimeout);
            peer.advance(300);
        }
        assert_eq!(peer.deliver(modern).tiers(), [Tier::ModernTls]);
    }
}

#[test]
fn stripping_attacker_gets_no_cleartext_after_the_pin() {
    let timeline = simulate(Preset::StrippingAttacker, 30);
    assert_eq!(timeline.summary.cleartext_to_attacker, 0);
    assert!(timeline.summary.refused_to_attacker > 0);
    let attacked: Vec<_> = timeline
        .deliveries
        .iter()
        .filter(|d| d.attacker_active)
        .collect();
    assert!(!attacked.is_empty());
    for delivery in attacked {
        assert!(is_defer(delivery.last_decision().unwrap()));
        assert_eq!(delivery.delivered_tier(), None);
    }
}

#[test]
fn a_delivered_try_reports_the_wait_from_queue_to_delivery_and_a_deferred_one_none() {
    let timeline = simulate(Preset::LegacyOnly, 3);
    let first = &timeline.deliveries[0];
    // Queued, the modern attempt refused, the step-down delay, the legacy attempt: all waited.
    assert_eq!(
        first.delivery_latency_secs(),
        Some(first.ended_at - first.queued_at)
    );
    assert!(first.delivery_latency_secs() >= Some(Policy::default().step_down_delay_secs.into()));
    let attacked = simulate(Preset::StrippingAttacker, 5);
    assert!(
        attacked
            .deliveries
            .iter()
            .filter(|d| d.attacker_active)
            .all(|d| d.delivery_latency_secs().is_none())
    );
}

#[test]
fn stripped_pinned_peer_is_deferred_with_the_pin_as_reason_once_evidence_repeats() {
    let mut peer = Peer::new();
    peer.deliver(modern);
    let threshold = Policy::default().transient_failure_threshold;
    for _ in 1..threshold {
        peer.advance(300);
        let stripped = peer.deliver(no_starttls);
        assert_eq!(stripped.last().reason, Reason::StarttlsMissingAfterTls);
    }
    for _ in 0..5 {
        peer.advance(300);
        let stripped = peer.deliver(no_starttls);
        assert_eq!(stripped.tiers(), [Tier::ModernTls]);
        assert_eq!(stripped.last().reason, Reason::DowngradeRefusedPinned);
    }
}

#[test]
fn an_unpinned_peer_seen_doing_tls_needs_repeated_missing_starttls_before_cleartext() {
    let policy = Policy {
        pin_duration_secs: 0,
        ..Policy::default()
    };
    let mut peer = Peer::with(policy, Default::default());
    peer.deliver(modern);
    for _ in 1..policy.transient_failure_threshold {
        peer.advance(300);
        let stripped = peer.deliver(no_starttls);
        assert_eq!(stripped.last().reason, Reason::StarttlsMissingAfterTls);
    }
    peer.advance(300);
    let last = peer.deliver(no_starttls);
    assert_eq!(last.tiers(), [Tier::ModernTls, Tier::Cleartext]);
}

#[test]
fn the_pin_expires() {
    let mut peer = Peer::new();
    peer.deliver(modern);
    peer.advance(u64::from(Policy::default().pin_duration_secs) + 1);
    for _ in 1..Policy::default().transient_failure_threshold {
        peer.deliver(no_starttls);
        peer.advance(300);
    }
    assert_eq!(
        peer.deliver(no_starttls).tiers(),
        [Tier::ModernTls, Tier::Cleartext]
    );
}

#[test]
fn dane_protected_peer_is_only_ever_attempted_authenticated() {
    let timeline = simulate(Preset::DaneProtected, 30);
    assert_eq!(timeline.summary.cleartext_to_attacker, 0);
    for delivery in &timeline.deliveries {
        for step in &delivery.steps {
            if let Action::Attempt { tier, tls, .. } = step.decision.action {
                assert_eq!(tier, Tier::AuthenticatedTls);
                assert_eq!(tls.unwrap().verification, policy_core::Verification::Dane);
            }
        }
    }
}

#[test]
fn forged_failure_detected_through_inappropriate_fallback_defers_instead_of_downgrading() {
    let mut peer = Peer::new();
    // The attacker forges a protocol_version alert on the modern attempt; the real peer then
    // answers our SCSV-marked legacy offer with inappropriate_fallback.
    let delivery = peer.deliver(|tier| match tier {
        Tier::ModernTls => Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        Tier::LegacyTls => Outcome::TlsAlert(TlsAlert::InappropriateFallback),
        _ => harness::CLEAR_OK,
    });
    assert_eq!(delivery.tiers(), [Tier::ModernTls, Tier::LegacyTls]);
    assert_eq!(delivery.last().reason, Reason::DowngradeAttackSuspected);
    peer.advance(300);
    assert_eq!(
        peer.deliver(modern).tiers(),
        [Tier::ModernTls],
        "the forged step-down is not remembered"
    );
}

#[test]
fn a_host_reporting_the_same_tier_forever_hits_the_attempt_limit() {
    let mut peer = Peer::new();
    let mut decision = peer.decide(None);
    let report = AttemptReport {
        tier: Tier::ModernTls,
        outcome: Outcome::TlsAlert(TlsAlert::ProtocolVersion),
    };
    let mut asked = 1;
    while !decision.is_final() {
        decision = peer.decide(Some(report));
        asked += 1;
        assert!(asked <= usize::from(policy_core::MAX_ATTEMPTS_PER_DELIVERY) + 1);
    }
    assert_eq!(decision.reason, Reason::AttemptLimit);
}

#[test]
fn connect_failures_are_not_tls_evidence() {
    let mut peer = Peer::new();
    for _ in 0..20 {
        let delivery = peer.deliver(|_| Outcome::ConnectFailed);
        assert_eq!(delivery.tiers(), [Tier::ModernTls]);
        assert_eq!(delivery.last().reason, Reason::ConnectFailed);
        assert!(delivery.last().report.is_empty());
        peer.advance(300);
    }
    assert_eq!(peer.deliver(modern).tiers(), [Tier::ModernTls]);
}

#[test]
fn insufficient_security_at_modern_skips_legacy() {
    let mut peer = Peer::new();
    let delivery = peer.deliver(|tier| match tier {
        Tier::Cleartext => harness::CLEAR_OK,
        _ => Outcome::TlsAlert(TlsAlert::InsufficientSecurity),
    });
    assert_eq!(delivery.tiers(), [Tier::ModernTls, Tier::Cleartext]);
}

#[test]
fn unreadable_history_is_treated_as_an_unknown_peer_and_says_so() {
    let policy = Policy::default();
    let context = Default::default();
    let fresh = decide(&policy, &context, None, None, harness::START);
    for blob in [
        &[][..],
        &[1][..],
        &[9, 9, 9][..],
        &[1, 7, 7, 7][..],
        &[0xff; 65][..],
    ] {
        let decision = decide(&policy, &context, Some(blob), None, harness::START);
        assert_eq!(decision.action, fresh.action, "blob {blob:?}");
        assert_eq!(decision.history, fresh.history, "blob {blob:?}");
        assert_eq!(decision.reason, Reason::HistoryUnreadable, "blob {blob:?}");
        assert!(decision.history_error.is_some());
    }
}

/// A peer an attacker answers with a forged `protocol_version` alert at every TLS tier.
fn forged_alerts_everywhere(tier: Tier) -> Outcome {
    if tier.uses_tls() {
        Outcome::TlsAlert(TlsAlert::ProtocolVersion)
    } else {
        harness::CLEAR_OK
    }
}

#[test]
fn forged_protocol_version_alert_cannot_walk_a_proven_peer_down_in_one_delivery() {
    let policy = Policy {
        pin_duration_secs: 0,
        ..Policy::default()
    };
    let mut peer = Peer::with(policy, Default::default());
    assert_eq!(peer.deliver(modern).tiers(), [Tier::ModernTls]);
    peer.advance(300);
    let attacked = peer.deliver(forged_alerts_everywhere);
    assert_eq!(
        attacked.tiers(),
        [Tier::ModernTls],
        "neither legacy TLS nor cleartext within the delivery"
    );
    assert!(is_defer(attacked.last()));
    assert_eq!(attacked.last().reason, Reason::DowngradeAttackSuspected);
    assert!(
        attacked
            .last()
            .report
            .contains(TlsRptResult::ValidationFailure)
    );
    // Nothing is remembered that would start the next delivery lower.
    peer.advance(300);
    assert_eq!(peer.deliver(modern).tiers(), [Tier::ModernTls]);
}

#[test]
fn a_peer_that_really_lost_modern_tls_gets_mail_after_the_threshold_of_deliveries() {
    let policy = Policy {
        pin_duration_secs: 0,
        ..Policy::default()
    };
    let mut peer = Peer::with(policy, Default::default());
    peer.deliver(modern);
    for delivery in 1..policy.transient_failure_threshold {
        peer.advance(300);
        let refused = peer.deliver(legacy_only);
        assert_eq!(refused.tiers(), [Tier::ModernTls], "delivery {delivery}");
        assert_eq!(refused.last().reason, Reason::DowngradeAttackSuspected);
    }
    peer.advance(300);
    let stepped = peer.deliver(legacy_only);
    assert_eq!(stepped.tiers(), [Tier::ModernTls, Tier::LegacyTls]);
    assert_eq!(
        stepped.reasons(),
        [
            "strongest-tier",
            "stepped-down-repeated-failures",
            "delivered"
        ]
    );
    // Legacy TLS is now what the peer proved: it starts there, and a forged alert there cannot
    // take it to cleartext in one delivery either.
    peer.advance(300);
    assert_eq!(peer.deliver(legacy_only).tiers(), [Tier::LegacyTls]);
    peer.advance(300);
    let attacked = peer.deliver(forged_alerts_everywhere);
    assert_eq!(attacked.tiers(), [Tier::LegacyTls]);
    assert_eq!(attacked.last().reason, Reason::DowngradeAttackSuspected);
}

#[test]
fn a_pinned_peer_that_lost_modern_tls_waits_for_the_pin_whatever_the_count() {
    let mut peer = Peer::new();
    peer.deliver(modern);
    for _ in 0..2 * Policy::default().transient_failure_threshold {
        peer.advance(300);
        let refused = peer.deliver(legacy_only);
        assert_eq!(refused.tiers(), [Tier::ModernTls]);
        assert_eq!(refused.last().reason, Reason::DowngradeRefusedPinned);
    }
}

#[test]
fn a_legacy_peer_reprobed_at_modern_still_steps_down_to_legacy_at_once() {
    let mut peer = Peer::new();
    peer.deliver(legacy_only);
    peer.advance(u64::from(Policy::default().reprobe_interval_secs) + 1);
    let probe = peer.deliver(legacy_only);
    assert_eq!(probe.tiers(), [Tier::ModernTls, Tier::LegacyTls]);
    assert_eq!(probe.decisions[1].reason, Reason::SteppedDownAfterAlert);
}

#[test]
fn tls_required_no_message_stripped_to_cleartext_does_not_teach_the_peer_cleartext() {
    let policy = Policy {
        pin_duration_secs: 0,
        ..Policy::default()
    };
    let mut peer = Peer::with(policy, Default::default());
    peer.deliver(modern);
    peer.advance(300);
    // The sender waived TLS for this one message; an attacker strips STARTTLS.
    peer.context.tls_required_no = true;
    let waived = peer.deliver(no_starttls);
    assert_eq!(waived.tiers(), [Tier::ModernTls, Tier::Cleartext]);
    // A forged alert on the next waived message gets it through too, in that delivery only.
    peer.advance(300);
    let alerted = peer.deliver(forged_alerts_everywhere);
    assert_eq!(
        alerted.tiers(),
        [Tier::ModernTls, Tier::LegacyTls, Tier::Cleartext]
    );
    // The next ordinary message starts where the peer proved, not where the waivers went.
    peer.context.tls_required_no = false;
    peer.advance(300);
    let next = peer.deliver(modern);
    assert_eq!(next.tiers(), [Tier::ModernTls]);
    assert_eq!(next.decisions[0].reason, Reason::StrongestTier);
}
