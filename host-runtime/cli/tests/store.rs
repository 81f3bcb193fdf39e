use tlsfallback_mta::deciding;
use tlsfallback_mta::store::{HistoryStore, StoreError};

#[test]
fn histories_round_trip_and_peers_can_be_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/peers.sqlite3");
    let mut store = HistoryStore::open(&path).unwrap();
    store
        .update("mx.a.test", 10, |old| {
            assert!(old.is_none());
            Ok::<_, StoreError>(((), vec![1, 2, 3]))
        })
        .unwrap();
    store
        .update("mx.a.test", 20, |old| {
            assert_eq!(old, Some(&[1, 2, 3][..]));
            Ok::<_, StoreError>(((), vec![4]))
        })
        .unwrap();
    let row = store.get("mx.a.test").unwrap().unwrap();
    assert_eq!((row.history, row.updated_at), (vec![4], 20));
    assert!(store.forget("mx.a.test").unwrap());
    assert!(!store.forget("mx.a.test").unwrap());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_failed_step_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
    store
        .update("mx", 1, |_| Ok::<_, StoreError>(((), vec![7])))
        .unwrap();
    let failed: anyhow::Result<()> = store.update("mx", 2, |_| anyhow::bail!("engine failed"));
    assert!(failed.is_err());
    assert_eq!(store.get("mx").unwrap().unwrap().history, vec![7]);
}

#[test]
fn concurrent_updates_to_one_peer_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sqlite3");
    HistoryStore::open(&path).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = HistoryStore::open(&path).unwrap();
                for _ in 0..50 {
                    store
                        .update("mx", 1, |old| {
                            let n = old.map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()));
                            Ok::<_, StoreError>(((), (n + 1).to_le_bytes().to_vec()))
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let store = HistoryStore::open(&path).unwrap();
    let count = u32::from_le_bytes(
        store
            .get("mx")
            .unwrap()
            .unwrap()
            .history
            .try_into()
            .unwrap(),
    );
    assert_eq!(count, 200, "every increment survived");
}

#[test]
fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sqlite3");
    std::fs::write(&path, vec![0x42; 4096]).unwrap();
    let error = HistoryStore::open(&path).err().unwrap();
    assert!(
        format!("{error:#}").contains("garbage.sqlite3"),
        "{error:#}"
    );
}

/// Two interleaved deliveries to one peer through the store: A reaches the top tier, a forged
/// protocol-version alert brings it down to legacy, B starts meanwhile, then the real peer refuses
/// A's legacy attempt with `inappropriate_fallback`. The reason of A's last decision.
fn interleaved_deliveries(
    engine: &mut dyn tlsfallback_engine::decider::DecisionEngine,
) -> policy_core::Reason {
    use policy_core::{AttemptReport, DeliveryContext, Outcome, Policy, Reason, Tier, TlsAlert};
    let dir = tempfile::tempdir().unwrap();
    let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
    let (policy, context) = (Policy::default(), DeliveryContext::default());
    let report = |tier, alert| AttemptReport {
        tier,
        outcome: Outcome::TlsAlert(alert),
    };
    let a1 = deciding::decide(&mut store, engine, "mx", &policy, &context, None, 100)
        .unwrap()
        .decision;
    let forged = report(Tier::ModernTls, TlsAlert::ProtocolVersion);
    let a2 = deciding::decide_in_delivery(
        &mut store,
        engine,
        "mx",
        &policy,
        &context,
        &forged,
        a1.history.as_bytes(),
        101,
    )
    .unwrap()
    .decision;
    assert_eq!(a2.reason, Reason::SteppedDownAfterAlert);
    // B starts at the remembered legacy tier: the stored dance is now B's, which never reached
    // the top.
    let b1 = deciding::decide(&mut store, engine, "mx", &policy, &context, None, 102)
        .unwrap()
        .decision;
    assert_eq!(b1.reason, Reason::RememberedTier);
    let refused = report(Tier::LegacyTls, TlsAlert::InappropriateFallback);
    deciding::decide_in_delivery(
        &mut store,
        engine,
        "mx",
        &policy,
        &context,
        &refused,
        a2.history.as_bytes(),
        103,
    )
    .unwrap()
    .decision
    .reason
}

#[test]
fn concurrent_delivery_does_not_hide_a_forged_downgrade() {
    // A reached the top in this delivery, so the alert that brought it down was forged.
    assert_eq!(
        interleaved_deliveries(&mut tlsfallback_engine::decider::NativeEngine),
        policy_core::Reason::DowngradeAttackSuspected
    );
    // A plugin's history is opaque to the host: passed as stored, so it sees B's dance (what it
    // makes of that is its own affair; the built-in rules step up).
    assert_eq!(
        interleaved_deliveries(&mut OpaqueHistoryEngine),
        policy_core::Reason::SteppedUpPeerWantsStronger
    );
}

/// policy-core behind the trait's default: a history format the host does not know.
struct OpaqueHistoryEngine;

impl tlsfallback_engine::decider::DecisionEngine for OpaqueHistoryEngine {
    fn decide(
        &mut self,
        policy: &policy_core::Policy,
        context: &policy_core::DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&policy_core::AttemptReport>,
        now: u64,
    ) -> Result<tlsfallback_engine::Decided, tlsfallback_engine::decider::DecideError> {
        Ok(tlsfallback_engine::Decided::plain(policy_core::decide(
            policy, context, history, last, now,
        )))
    }
}

mod facts {
    use policy_core::{Action, AttemptReport, DeliveryContext, Outcome, Policy, Tier, TlsAlert};
    use tlsfallback_engine::decider::NativeEngine;
    use tlsfallback_mta::deciding;
    use tlsfallback_mta::store::HistoryStore;

    const PEER: &str = "mx.example.net";
    const NOW: u64 = 1_767_225_600;

    fn report(tier: Tier, outcome: Outcome) -> AttemptReport {
        AttemptReport { tier, outcome }
    }

    #[test]
    fn a_success_the_host_observed_pins_the_peer_in_its_own_record_for_the_policys_duration() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
        let context = DeliveryContext::default();
        let policy = Policy::default();
        let alert = report(
            Tier::ModernTls,
            Outcome::TlsAlert(TlsAlert::ProtocolVersion),
        );
        let stepped = deciding::decide(
            &mut store,
            &mut NativeEngine,
            PEER,
            &policy,
            &context,
            Some(&alert),
            NOW,
        )
        .unwrap()
        .decision;
        assert!(!stepped.is_final());
        assert_eq!(
            store.facts(PEER).unwrap(),
            Default::default(),
            "failures prove nothing"
        );
        let success = report(Tier::ModernTls, Outcome::Success { version: None });
        let done = deciding::decide(
            &mut store,
            &mut NativeEngine,
            PEER,
            &policy,
            &context,
            Some(&success),
            NOW + 5,
        )
        .unwrap()
        .decision;
        assert_eq!(done.action, Action::Done);
        let facts = store.facts(PEER).unwrap();
        assert_eq!(facts.last_success_tier, Some(Tier::ModernTls));
        assert!(facts.seen_tls);
        assert_eq!(
            facts.pinned_until,
            NOW + 5 + u64::from(policy.pin_duration_secs)
        );
        // Reopened, the record is still there; without pinning, a success pins nothing.
        drop(store);
        let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
        assert_eq!(store.facts(PEER).unwrap(), facts);
        let unpinned = Policy {
            pin_duration_secs: 0,
            ..policy
        };
        let done = deciding::decide(
            &mut store,
            &mut NativeEngine,
            "mx.other.net",
            &unpinned,
            &context,
            Some(&success),
            NOW,
        )
        .unwrap()
        .decision;
        assert_eq!(done.action, Action::Done);
        assert_eq!(store.facts("mx.other.net").unwrap().pinned_until, 0);
    }

    #[test]
    fn forgetting_a_peer_forgets_its_recorded_pin() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
        let success = report(Tier::ModernTls, Outcome::Success { version: None });
        let done = deciding::decide(
            &mut store,
            &mut NativeEngine,
            PEER,
            &Policy::default(),
            &DeliveryContext::default(),
            Some(&success),
            NOW,
        )
        .unwrap()
        .decision;
        assert_eq!(done.action, Action::Done);
        assert!(store.facts(PEER).unwrap().pinned_until > NOW);
        assert!(store.forget(PEER).unwrap());
        assert_eq!(store.facts(PEER).unwrap(), Default::default());
        assert!(!store.forget(PEER).unwrap());
    }

    #[test]
    fn a_recorded_fact_this_host_never_writes_is_a_clear_error_not_a_lost_pin() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
        // Past the table's own checks, as a hand edit could go.
        let connection = store.connection();
        connection
            .pragma_update(None, "ignore_check_constraints", true)
            .unwrap();
        connection
            .execute(
                "INSERT INTO peer_facts VALUES (?1, 'modern', 0, 1, 5, 0)",
                [PEER],
            )
            .unwrap();
        let error = store.facts(PEER).unwrap_err();
        assert!(format!("{error:#}").contains(PEER), "{error:#}");
        // The delivery cannot decide without it: it fails (and the host defers), nothing written.
        let decided = deciding::decide(
            &mut store,
            &mut NativeEngine,
            PEER,
            &Policy::default(),
            &DeliveryContext::default(),
            None,
            NOW,
        );
        assert!(decided.is_err());
        assert!(store.get(PEER).unwrap().is_none());
    }
}
