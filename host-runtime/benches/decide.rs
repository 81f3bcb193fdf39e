//! Native policy-core decide against the component's decide on one warm instance.
//!
//! `cargo bench -p tlsfallback-host --bench decide`; the figures go in docs/benchmarks.md.

use criterion::{Criterion, criterion_main};
use policy_core::{AttemptReport, DeliveryContext, Outcome, Policy, Tier, TlsAlert, decide};
use std::hint::black_box;
use tlsfallback_host::component::PolicyComponent;

const NOW: u64 = 1_767_225_600;

struct Case {
    name: &'static str,
    history: Option<Vec<u8>>,
    last: Option<AttemptReport>,
}

fn cases() -> Vec<Case> {
    let policy = Policy::default();
    let context = DeliveryContext::default();
    let start = decide(&policy, &context, None, None, NOW);
    let alert = AttemptReport {
        tier: Tier::ModernTls,
        outcome: Outcome::TlsAlert(TlsAlert::ProtocolVersion),
    };
    let stepped = decide(
        &policy,
        &context,
        Some(start.history.as_bytes()),
        Some(&alert),
        NOW,
    );
    vec![
        Case {
            name: "unknown-peer-start",
            history: None,
            last: None,
        },
        Case {
            name: "step-down-after-alert",
            history: Some(start.history.as_bytes().to_vec()),
            last: Some(alert),
        },
        Case {
            name: "remembered-legacy-start",
            history: Some(stepped.history.as_bytes().to_vec()),
            last: None,
        },
    ]
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let context = DeliveryContext::default();
    let mut component = PolicyComponent::builtin().expect("the built-in component loads");
    for case in cases() {
        let mut group = c.benchmark_group(case.name);
        group.bench_function("native", |b| {
            b.iter(|| {
                decide(
                    black_box(&policy),
                    black_box(&context),
                    black_box(case.history.as_deref()),
                    black_box(case.last.as_ref()),
                    black_box(NOW),
                )
            });
        });
        group.bench_function("component-warm", |b| {
            b.iter(|| {
                component
                    .decide(
                        black_box(&policy),
                        black_box(&context),
                        black_box(case.history.as_deref()),
                        black_box(case.last.as_ref()),
                        black_box(NOW),
                    )
                    .expect("the component decides")
            });
        });
        group.finish();
    }
}

// criterion_group! generates an undocumented function.
#[allow(missing_docs)]
mod group {
    use super::bench;
    criterion::criterion_group!(benches, bench);
}
use group::benches;
criterion_main!(benches);
