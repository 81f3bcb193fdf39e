//! The fleet merge ([`PeerMemory::merge`]): the semilattice laws, the floor it never lowers, the
//! 64-byte bound, and nodes that exchange copies in any order (duplicated, dropped) converging.

use policy_core::{
    Action, AttemptReport, DeliveryContext, History, Outcome, PeerMemory, Policy, Profile, Tier,
    TlsAlert, decide, floor, merge_blobs,
};
use proptest::prelude::*;

use crate::properties::{context, tier};

const CASES: u32 = 10_000;
const T0: u64 = 1_700_000_000;

/// Times from a small set, so that merges often meet equal times (ties are where merges go
/// wrong), and from the whole range.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(vec![0, T0, T0 + 1, T0 + 86_400]),
        1 => any::<u64>(),
    ]
}

/// Any memory a blob can hold, whether or not the engine would write it.
fn any_memory() -> impl Strategy<Value = PeerMemory> {
    (
        prop::option::of(tier()),
        prop::option::of(tier()),
        time(),
        any::<bool>(),
        time(),
        time(),
        prop_oneof![3 => 0u8..4, 1 => any::<u8>()],
    )
        .prop_map(|fields| PeerMemory {
            start_tier: fields.0,
            last_success_tier: fields.1,
            last_success_at: fields.2,
            seen_tls: fields.3,
            pinned_until: fields.4,
            last_probe_at: fields.5,
            transient_failures: fields.6,
        })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        2 => Just(Outcome::Success { version: None }),
        1 => Just(Outcome::StarttlsNotOffered),
        1 => prop::sample::select(TlsAlert::ALL.to_vec()).prop_map(Outcome::TlsAlert),
        1 => Just(Outcome::ConnectionReset),
        1 => Just(Outcome::HandshakeTimeout),
    ]
}

/// One node's delivery step: the outcome of an attempt at a tier (or the start of a delivery),
/// a little later than the last.
fn event() -> impl Strategy<Value = (Tier, Outcome, bool, u64)> {
    (tier(), outcome(), any::<bool>(), 0u64..3 * 86_400)
}

/// Runs `events` through the engine from `memory` (the shared copy a node read before).
fn live(
    policy: &Policy,
    memory: PeerMemory,
    events: &[(Tier, Outcome, bool, u64)],
    now: &mut u64,
) -> PeerMemory {
    let mut blob = History {
        memory,
        dance: None,
    }
    .encode();
    for &(tier, outcome, starts, dt) in events {
        *now += dt;
        let report = (!starts).then_some(AttemptReport { tier, outcome });
        blob = decide(
            policy,
            &DeliveryContext::default(),
            Some(blob.as_bytes()),
            report.as_ref(),
            *now,
        )
        .history;
    }
    History::decode(blob.as_bytes())
        .expect("the engine writes readable blobs")
        .memory
}

/// A memory the engine reached by a random sequence of deliveries, or any memory at all.
fn memory() -> impl Strategy<Value = PeerMemory> {
    let lived = prop::collection::vec(event(), 0..30).prop_map(|events| {
        let mut now = T0;
        live(&Policy::default(), PeerMemory::default(), &events, &mut now)
    });
    prop_oneof![2 => lived, 1 => any_memory()]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(Profile::ALL.to_vec()),
        any::<bool>(),
        any::<bool>(),
        0u32..90 * 86_400,
    )
        .prop_map(
            |(profile, allow_legacy_tls, allow_cleartext, pin_duration_secs)| Policy {
                profile,
                allow_legacy_tls,
                allow_cleartext,
                pin_duration_secs,
                ..Policy::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn merge_is_commutative(a in memory(), b in memory()) {
        prop_assert_eq!(a.merge(&b), b.merge(&a));
    }

    #[test]
    fn merge_is_associative(a in memory(), b in memory(), c in memory()) {
        prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
    }

    #[test]
    fn merge_is_idempotent(a in memory(), b in memory()) {
        prop_assert_eq!(a.merge(&a), a);
        // A copy applied twice (a retried write that had landed) changes nothing more.
        prop_assert_eq!(a.merge(&b).merge(&b), a.merge(&b));
    }

    #[test]
    fn merge_is_inflationary(a in memory(), b in memory()) {
        let merged = a.merge(&b);
        prop_assert!(a.is_covered_by(&merged));
        prop_assert!(b.is_covered_by(&merged));
    }

    /// The attack this stops: a node walked down by forged evidence, or one that knows nothing,
    /// weakening through the fleet what another node proved or pinned.
    #[test]
    fn a_merge_never_lowers_the_floor_either_side_had(
        a in memory(), b in memory(), policy in policy(), context in context(), now in time(),
    ) {
        let merged = a.merge(&b);
        prop_assert!(merged.pinned_until >= a.pinned_until.max(b.pinned_until));
        prop_assert!(merged.last_success_tier >= a.last_success_tier.max(b.last_success_tier));
        prop_assert_eq!(merged.seen_tls, a.seen_tls || b.seen_tls);
        let bounds = floor(&policy, &context, &merged, now);
        for side in [&a, &b] {
            let theirs = floor(&policy, &context, side, now);
            prop_assert!(bounds.floor >= theirs.floor, "{:?} merged to {:?}", theirs, bounds);
            prop_assert!(bounds.pinned >= theirs.pinned);
            prop_assert!(bounds.legacy_allowed <= theirs.legacy_allowed);
        }
    }

    #[test]
    fn merged_blobs_stay_within_the_bound_and_read_back(a in memory(), b in memory()) {
        let blob = History { memory: a.merge(&b), dance: None }.encode();
        prop_assert!(blob.as_bytes().len() <= policy_core::MAX_HISTORY_LEN);
        prop_assert_eq!(History::decode(blob.as_bytes()).unwrap().memory, a.merge(&b));
        let via_blobs = merge_blobs(
            History { memory: a, dance: None }.encode().as_bytes(),
            History { memory: b, dance: None }.encode().as_bytes(),
        ).unwrap();
        prop_assert_eq!(via_blobs, blob);
    }
}

/// What one node does next in a fleet run.
#[derive(Clone, Debug)]
enum Step {
    /// A delivery on the node, through the engine.
    Deliver(usize, Vec<(Tier, Outcome, bool, u64)>),
    /// The node merges its memory into the shared copy; `copies` times (0: the write was lost).
    Push(usize, u8),
    /// The node merges the shared copy into its memory.
    Pull(usize),
}

fn step(nodes: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..nodes, prop::collection::vec(event(), 1..6)).prop_map(|(n, e)| Step::Deliver(n, e)),
        (0..nodes, 0u8..3).prop_map(|(n, c)| Step::Push(n, c)),
        (0..nodes).prop_map(Step::Pull),
    ]
}

fn fleet() -> impl Strategy<Value = (usize, Vec<Step>, Vec<usize>)> {
    (2usize..6).prop_flat_map(|nodes| {
        (
            Just(nodes),
            prop::collection::vec(step(nodes), 0..40),
            Just((0..nodes).collect::<Vec<_>>()).prop_shuffle(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Nodes deliver, write and read the shared copy in any order, with writes duplicated or
    /// lost; once deliveries stop, one full exchange in any order leaves every node, and the
    /// shared copy, with the same memory: the join of what the nodes held.
    #[test]
    fn nodes_exchanging_in_any_order_converge((nodes, steps, order) in fleet()) {
        let policy = Policy::default();
        let mut local = vec![PeerMemory::default(); nodes];
        let mut shared = PeerMemory::default();
        let mut now = T0;
        for step in steps {
            match step {
                Step::Deliver(n, events) => local[n] = live(&policy, local[n], &events, &mut now),
                Step::Push(n, copies) => {
                    for _ in 0..copies {
                        shared = shared.merge(&local[n]);
                    }
                }
                Step::Pull(n) => local[n] = local[n].merge(&shared),
            }
        }
        let everything = local.iter().fold(shared, |acc, m| acc.merge(m));
        for &n in &order {
            shared = shared.merge(&local[n]);
        }
        for &n in &order {
            local[n] = local[n].merge(&shared);
        }
        prop_assert_eq!(shared, everything);
        for memory in &local {
            prop_assert_eq!(memory, &everything);
        }
    }
}

fn attempt_tier(action: &Action) -> Option<Tier> {
    match action {
        Action::Attempt { tier, .. } => Some(*tier),
        _ => None,
    }
}

/// Node A's memory after one delivery that starts, then meets `outcomes` at their tiers.
fn node_a_after(policy: &Policy, outcomes: &[(Tier, Outcome)], now: &mut u64) -> PeerMemory {
    let start = (Tier::ModernTls, Outcome::Success { version: None }, true, 0);
    let events: Vec<_> = core::iter::once(start)
        .chain(
            outcomes
                .iter()
                .map(|&(tier, outcome)| (tier, outcome, false, 1)),
        )
        .collect();
    live(policy, PeerMemory::default(), &events, now)
}

/// Node B's history once it has merged node A's shared copy into its own empty memory.
fn node_b_with(a: &PeerMemory) -> policy_core::HistoryBlob {
    History {
        memory: PeerMemory::default().merge(a),
        dance: None,
    }
    .encode()
}

/// Node A learns a legacy-only peer; node B, reading the shared copy, starts its first delivery
/// at legacy TLS instead of paying the failed modern handshake again.
#[test]
fn a_legacy_only_peer_learned_by_one_node_costs_the_others_nothing() {
    let policy = Policy::default();
    let mut now = T0;
    let a = node_a_after(
        &policy,
        &[
            (
                Tier::ModernTls,
                Outcome::TlsAlert(TlsAlert::ProtocolVersion),
            ),
            (Tier::LegacyTls, Outcome::Success { version: None }),
        ],
        &mut now,
    );
    assert_eq!(a.start_tier, Some(Tier::LegacyTls));
    let blob = node_b_with(&a);
    let context = DeliveryContext::default();
    let first = decide(&policy, &context, Some(blob.as_bytes()), None, now + 60);
    assert_eq!(
        attempt_tier(&first.action),
        Some(Tier::LegacyTls),
        "{first:?}"
    );
}

/// Node A delivered at modern TLS and pinned the peer; node B, behind a stripping attacker,
/// never goes to cleartext once it has merged A's copy (the attack: a forged missing STARTTLS on
/// one node's path undoing the pin another node set).
#[test]
fn a_pin_set_by_one_node_stops_a_stripping_attack_on_another() {
    let policy = Policy::default();
    assert!(policy.pin_duration_secs > 0);
    let mut now = T0;
    let a = node_a_after(
        &policy,
        &[(Tier::ModernTls, Outcome::Success { version: None })],
        &mut now,
    );
    assert!(a.pinned_until > now);
    let mut blob = node_b_with(&a);
    let context = DeliveryContext::default();
    let mut report = None;
    for _ in 0..policy_core::MAX_ATTEMPTS_PER_DELIVERY + 1 {
        now += 1;
        let d = decide(
            &policy,
            &context,
            Some(blob.as_bytes()),
            report.as_ref(),
            now,
        );
        blob = d.history;
        match attempt_tier(&d.action) {
            Some(tier) => {
                assert!(
                    tier >= Tier::ModernTls,
                    "node B stepped down to {tier:?}: {d:?}"
                );
                report = Some(AttemptReport {
                    tier,
                    outcome: Outcome::StarttlsNotOffered,
                });
            }
            None => {
                assert!(matches!(d.action, Action::Defer { .. }), "{d:?}");
                return;
            }
        }
    }
    panic!("the delivery did not end");
}
