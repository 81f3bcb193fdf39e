use policy_core::sim::{
    self, DAY, Preset, QueueBackoff, Scenario, SimError, Simulation, aggregate,
};
use policy_core::{Action, Policy, decide};

fn scenario(preset: Preset, days: u32) -> Scenario {
    Scenario {
        days,
        ..Scenario::new(preset.peer(), Policy::default())
    }
}

fn decide_input(input: sim::DecideInput<'_>) -> policy_core::Decision {
    decide(
        input.policy,
        input.context,
        input.history,
        input.last.as_ref(),
        input.now,
    )
}

#[test]
fn answering_a_finished_simulation_is_refused_not_ignored() {
    let mut simulation = Simulation::new(&scenario(Preset::Modern, 1)).expect("valid");
    let mut last = None;
    while let Some(input) = simulation.request() {
        let decision = decide_input(input);
        last = Some(decision);
        simulation.answer(decision).expect("a request was waiting");
    }
    assert!(simulation.is_finished());
    let before = simulation.request().is_none();
    assert_eq!(
        simulation.answer(last.expect("one decision at least")),
        Err(SimError::NotWaiting)
    );
    assert!(before);
    let timeline = simulation.finish().map_err(|(e, _)| e).expect("finished");
    assert_eq!(timeline.summary.messages, 4);
    assert_eq!(
        timeline.deliveries.len(),
        4,
        "the stray answer added no try"
    );
}

#[test]
fn finishing_with_a_request_waiting_hands_the_simulation_back() {
    let simulation = Simulation::new(&scenario(Preset::Modern, 1)).expect("valid");
    let Err((error, simulation)) = simulation.finish() else {
        panic!("a run with a request waiting is not finished");
    };
    assert_eq!(error, SimError::Unfinished);
    assert!(
        simulation.request().is_some(),
        "the waiting request is kept"
    );
}

#[test]
fn stepping_by_hand_gives_the_same_timeline_as_the_native_run() {
    let scenario = scenario(Preset::StrippingAttacker, 6);
    let mut simulation = Simulation::new(&scenario).expect("valid");
    while let Some(input) = simulation.request() {
        simulation.answer(decide_input(input)).expect("waiting");
    }
    let stepped = simulation.finish().map_err(|(e, _)| e).expect("finished");
    assert_eq!(stepped, sim::run_natively(&scenario).expect("valid"));
}

#[test]
fn scenarios_without_mail_or_with_a_broken_backoff_are_refused() {
    let no_days = Scenario {
        days: 0,
        ..scenario(Preset::Modern, 1)
    };
    assert!(matches!(
        Simulation::new(&no_days),
        Err(SimError::NoMail { days: 0, .. })
    ));
    let zero = Scenario {
        backoff: QueueBackoff {
            minimal_secs: 0,
            maximal_secs: 4000,
        },
        ..scenario(Preset::Modern, 1)
    };
    assert!(matches!(
        Simulation::new(&zero),
        Err(SimError::ZeroMinimalBackoff)
    ));
    let inverted = Scenario {
        backoff: QueueBackoff {
            minimal_secs: 600,
            maximal_secs: 300,
        },
        ..scenario(Preset::Modern, 1)
    };
    assert!(matches!(
        Simulation::new(&inverted),
        Err(SimError::InvertedBackoff {
            minimal: 600,
            maximal: 300
        })
    ));
}

/// The gaps between the tries of one message, in seconds.
fn gaps_of(timeline: &sim::Timeline, message: u32) -> Vec<u64> {
    let starts: Vec<u64> = timeline
        .deliveries
        .iter()
        .filter(|d| d.message == message)
        .map(|d| d.started_at)
        .collect();
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn a_deferred_message_backs_off_by_its_age_in_the_queue_like_postfix_qmgr() {
    // From day 3 the attacker strips STARTTLS from a pinned peer: every try is deferred. Postfix's
    // qmgr delays the next try by the message's age, clamped to [300 s, 4000 s]: 300, 300, 600,
    // 1200, 2400, then 4000 s for the rest of the queue lifetime.
    let timeline = sim::run_natively(&scenario(Preset::StrippingAttacker, 10)).expect("valid");
    let attacked = timeline
        .deliveries
        .iter()
        .find(|d| d.queued_at >= timeline.deliveries[0].queued_at + 4 * DAY)
        .expect("a message queued under attack")
        .message;
    let gaps = gaps_of(&timeline, attacked);
    assert!(gaps.len() > 20, "{gaps:?}");
    let delay_after = |age: u64| age.clamp(300, 4000);
    // Each gap is the age when deferred, clamped; the one SMTP client's earlier tries (a second
    // each) may hold a try back by a few seconds.
    let mut age = 0u64;
    for &gap in &gaps {
        let wanted = delay_after(age);
        assert!(
            gap >= wanted && gap <= wanted + 60,
            "gap {gap} at age {age}: {gaps:?}"
        );
        age += gap;
    }
    assert!(gaps[..3].iter().all(|&gap| gap < 700), "young: {gaps:?}");
    assert!(gaps[6..].iter().all(|&gap| gap >= 4000), "old: {gaps:?}");
}

#[test]
fn the_engines_retry_after_is_a_lower_bound_on_the_queues_backoff() {
    let backoff = QueueBackoff::POSTFIX;
    assert_eq!(backoff.delay_secs(10, 0), 300);
    assert_eq!(backoff.delay_secs(1000, 0), 1000);
    assert_eq!(backoff.delay_secs(DAY, 0), 4000);
    assert_eq!(
        backoff.delay_secs(DAY, 7200),
        7200,
        "the engine asked for later"
    );
    assert_eq!(
        backoff.delay_secs(10, 60),
        300,
        "the queue's minimum still holds"
    );
}

#[test]
fn a_longer_maximal_backoff_means_fewer_tries_under_a_month_of_attack() {
    let postfix = sim::run_natively(&scenario(Preset::StrippingAttacker, 30)).expect("valid");
    let patient = sim::run_natively(&Scenario {
        backoff: QueueBackoff {
            minimal_secs: 300,
            maximal_secs: 4 * 3600,
        },
        ..scenario(Preset::StrippingAttacker, 30)
    })
    .expect("valid");
    assert!(
        patient.summary.deferrals * 2 < postfix.summary.deferrals,
        "{} vs {}",
        patient.summary.deferrals,
        postfix.summary.deferrals
    );
    assert_eq!(patient.summary.cleartext_to_attacker, 0);
    assert_eq!(postfix.summary.cleartext_to_attacker, 0);
}

#[test]
fn a_month_of_attack_reads_as_a_handful_of_blocks() {
    let timeline = sim::run_natively(&scenario(Preset::StrippingAttacker, 30)).expect("valid");
    let blocks = aggregate(&timeline.deliveries);
    assert!(
        timeline.deliveries.len() > 5000,
        "{}",
        timeline.deliveries.len()
    );
    assert!(blocks.len() < 40, "{} blocks", blocks.len());
    // The blocks cover every try once, in order, and each holds tries that went the same way.
    let mut next = 0;
    for block in &blocks {
        assert_eq!(block.first, next);
        let run = &timeline.deliveries[block.first..block.first + block.count];
        assert!(run.iter().all(|d| d.same_course(&run[0])));
        assert_eq!(block.expired, run.iter().filter(|d| d.expired).count());
        assert_eq!(block.started_at, run[0].started_at);
        assert_eq!(block.ended_at, run[run.len() - 1].ended_at);
        next += block.count;
    }
    assert_eq!(next, timeline.deliveries.len());
    let refusals = blocks
        .iter()
        .filter(|b| {
            matches!(
                timeline.deliveries[b.first]
                    .last_decision()
                    .map(|d| d.action),
                Some(Action::Defer { .. })
            )
        })
        .map(|b| b.count)
        .max()
        .unwrap_or(0);
    assert!(
        refusals > 1000,
        "the attack month's refusals are one block: {refusals}"
    );
}

#[test]
fn preset_descriptions_follow_the_moved_change_day() {
    assert_eq!(
        Preset::StrippingAttacker.describe(),
        "a modern peer; from day 3 an on-path attacker strips STARTTLS"
    );
    assert!(
        Preset::Upgrading
            .describe_with_change_day(12)
            .contains("until day 12")
    );
    assert_eq!(
        Preset::Modern.describe_with_change_day(9),
        Preset::Modern.describe()
    );
}
