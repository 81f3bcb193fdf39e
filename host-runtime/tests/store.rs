use tlsfallback_host::store::HistoryStore;

#[test]
fn histories_round_trip_and_peers_can_be_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/peers.sqlite3");
    let mut store = HistoryStore::open(&path).unwrap();
    store
        .update("mx.a.test", 10, |old| {
            assert!(old.is_none());
            Ok(((), vec![1, 2, 3]))
        })
        .unwrap();
    store
        .update("mx.a.test", 20, |old| {
            assert_eq!(old, Some(&[1, 2, 3][..]));
            Ok(((), vec![4]))
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
    store.update("mx", 1, |_| Ok(((), vec![7]))).unwrap();
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
                            Ok(((), (n + 1).to_le_bytes().to_vec()))
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
    engine: &mut dyn tlsfallback_host::engine::DecisionEngine,
) -> policy_core::Reason {
    use policy_core::{AttemptReport, DeliveryContext, Outcome, Policy, Reason, Tier, TlsAlert};
    let dir = tempfile::tempdir().unwrap();
    let mut store = HistoryStore::open(&dir.path().join("p.sqlite3")).unwrap();
    let (policy, context) = (Policy::default(), DeliveryContext::default());
    let report = |tier, alert| AttemptReport {
        tier,
        outcome: Outcome::TlsAlert(alert),
    };
    let a1 = store
        .decide(engine, "mx", &policy, &context, None, 100)
        .unwrap();
    let forged = report(Tier::ModernTls, TlsAlert::ProtocolVersion);
    let a2 = store
        .decide_in_delivery(
            engine,
            "mx",
            &policy,
            &context,
            &forged,
            a1.history.as_bytes(),
            101,
        )
        .unwrap();
    assert_eq!(a2.reason, Reason::SteppedDownAfterAlert);
    // B starts at the remembered legacy tier: the stored dance is now B's, which never reached
    // the top.
    let b1 = store
        .decide(engine, "mx", &policy, &context, None, 102)
        .unwrap();
    assert_eq!(b1.reason, Reason::RememberedTier);
    let refused = report(Tier::LegacyTls, TlsAlert::InappropriateFallback);
    store
        .decide_in_delivery(
            engine,
            "mx",
            &policy,
            &context,
            &refused,
            a2.history.as_bytes(),
            103,
        )
        .unwrap()
        .reason
}

#[test]
fn concurrent_delivery_does_not_hide_a_forged_downgrade() {
    // A reached the top in this delivery, so the alert that brought it down was forged.
    assert_eq!(
        interleaved_deliveries(&mut tlsfallback_host::engine::NativeEngine),
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

impl tlsfallback_host::engine::DecisionEngine for OpaqueHistoryEngine {
    fn decide(
        &mut self,
        policy: &policy_core::Policy,
        context: &policy_core::DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&policy_core::AttemptReport>,
        now: u64,
    ) -> anyhow::Result<policy_core::Decision> {
        Ok(policy_core::decide(policy, context, history, last, now))
    }
}
