use policy_core::{
    Action, Dance, DeliveryContext, History, HistoryError, PeerMemory, Policy, Reason, Tier, decide,
};

const T: u64 = 1_767_225_600;
const PIN: u64 = 30 * 86_400;

/// The v1 vectors in tests/data were written from the format's description (docs/policy.md), not
/// by the encoder: they must keep decoding to exactly this, whatever the code becomes.
fn golden() -> Vec<(&'static str, &'static [u8], History)> {
    let memory =
        |start_tier, last_success_tier, seen_tls, pinned_until, transient_failures| PeerMemory {
            start_tier,
            last_success_tier,
            last_success_at: T,
            seen_tls,
            pinned_until,
            last_probe_at: T,
            transient_failures,
        };
    vec![
        (
            "modern-pinned",
            include_bytes!("data/history-v1-modern-pinned.bin"),
            History {
                memory: memory(None, Some(Tier::ModernTls), true, T + PIN, 0),
                dance: None,
            },
        ),
        (
            "legacy-remembered",
            include_bytes!("data/history-v1-legacy-remembered.bin"),
            History {
                memory: memory(Some(Tier::LegacyTls), Some(Tier::LegacyTls), true, 0, 0),
                dance: None,
            },
        ),
        (
            "cleartext-remembered",
            include_bytes!("data/history-v1-cleartext-remembered.bin"),
            History {
                memory: memory(Some(Tier::Cleartext), Some(Tier::Cleartext), false, 0, 0),
                dance: None,
            },
        ),
        (
            "mid-dance",
            include_bytes!("data/history-v1-mid-dance.bin"),
            History {
                memory: PeerMemory {
                    start_tier: Some(Tier::LegacyTls),
                    last_probe_at: T,
                    ..PeerMemory::default()
                },
                dance: Some(Dance {
                    tier: Tier::LegacyTls,
                    attempts: 2,
                    reached_top: true,
                }),
            },
        ),
        (
            "transient-failures",
            include_bytes!("data/history-v1-transient-failures.bin"),
            History {
                memory: memory(None, Some(Tier::ModernTls), true, T + PIN, 2),
                dance: None,
            },
        ),
    ]
}

#[test]
fn golden_v1_vectors_keep_decoding_and_encode_identically() {
    for (name, bytes, expected) in golden() {
        assert_eq!(History::decode(bytes), Ok(expected), "{name}");
        assert_eq!(expected.encode().as_bytes(), bytes, "{name}");
        assert!(
            bytes.len() <= 32,
            "{name}: typical blobs stay within 32 bytes"
        );
    }
}

#[test]
fn golden_v1_vectors_drive_the_decisions_they_describe() {
    let policy = Policy::default();
    let context = DeliveryContext::default();
    let first_tier =
        |bytes: &[u8], now| match decide(&policy, &context, Some(bytes), None, now).action {
            Action::Attempt { tier, .. } => tier,
            other => panic!("expected an attempt, got {other:?}"),
        };
    let golden = golden();
    assert_eq!(first_tier(golden[0].1, T + 60), Tier::ModernTls);
    assert_eq!(first_tier(golden[1].1, T + 60), Tier::LegacyTls);
    assert_eq!(first_tier(golden[2].1, T + 60), Tier::Cleartext);
    // The pin of the first vector refuses cleartext for a stripped peer.
    let report = policy_core::AttemptReport {
        tier: Tier::ModernTls,
        outcome: policy_core::Outcome::StarttlsNotOffered,
    };
    let stripped = decide(&policy, &context, Some(golden[4].1), Some(&report), T + 60);
    assert_eq!(stripped.reason, Reason::DowngradeRefusedPinned);
}

#[test]
fn unreadable_blobs_give_typed_errors() {
    let cases: [(&[u8], HistoryError); 6] = [
        (&[], HistoryError::Empty),
        (&[2, 0, 0], HistoryError::UnsupportedVersion(2)),
        (&[1, 0, 0], HistoryError::Truncated),
        (&[1, 9], HistoryError::Malformed),
        (
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 7],
            HistoryError::TrailingBytes(1),
        ),
        (&[1; 65], HistoryError::TooLong(65)),
    ];
    for (bytes, error) in cases {
        assert_eq!(History::decode(bytes), Err(error), "{bytes:?}");
    }
}
