//! The cost of a decision everywhere it runs in the Rust host, side by side in one run:
//! native policy-core (the limit), the component on a warm instance, on a fresh pooled instance
//! per decision, and with sandbox limits on; component load (compile vs precompiled); history
//! encode/decode; a loopback TLS handshake for scale; and the Postfix daemon's lookup and log
//! feedback.
//!
//! `cargo bench -p tlsfallback-cli --bench decide`; `scripts/bench` runs it with the other rows
//! (JSON Lines throughput, Node, Chromium) and writes docs/benchmarks.md.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_main};
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode, SslVersion};
use policy_core::{
    Action, AttemptReport, Dane, DeliveryContext, History, Outcome, Policy, Tier, TlsAlert,
    TlsVersion, decide,
};
use std::hint::black_box;
use tlsfallback_engine::component::{
    CallLimits, ComponentConfig, EMBEDDED_COMPONENT, PolicyComponent, deserialize_precompiled,
    new_wasmtime_engine, precompile,
};
use tlsfallback_engine::plugin::{PluginConfig, PluginEngine};
use tlsfallback_testkit::peers::Identity;
use wasmtime::component::Component;

const NOW: u64 = 1_767_225_600;

/// One decide call's arguments.
struct Case {
    name: &'static str,
    context: DeliveryContext,
    history: Option<Vec<u8>>,
    last: Option<AttemptReport>,
}

fn attempted_tier(decision: &policy_core::Decision) -> Tier {
    match decision.action {
        Action::Attempt { tier, .. } => tier,
        ref other => panic!("expected an attempt, got {other:?}"),
    }
}

/// Runs a delivery against a peer that answers each tier with `outcome_at(tier)`, returning the
/// history blob it ends with.
fn deliver(
    context: &DeliveryContext,
    history: Option<Vec<u8>>,
    outcome_at: impl Fn(Tier) -> Outcome,
) -> Vec<u8> {
    let policy = Policy::default();
    let mut history = history;
    let mut last = None;
    for _ in 0..8 {
        let decision = decide(&policy, context, history.as_deref(), last.as_ref(), NOW);
        history = Some(decision.history.as_bytes().to_vec());
        let Action::Attempt { tier, .. } = decision.action else {
            break;
        };
        last = Some(AttemptReport {
            tier,
            outcome: outcome_at(tier),
        });
    }
    history.expect("at least one decision")
}

fn modern(_: Tier) -> Outcome {
    Outcome::Success {
        version: Some(TlsVersion::Tls1_3),
    }
}

fn legacy_only(tier: Tier) -> Outcome {
    match tier {
        Tier::LegacyTls => Outcome::Success {
            version: Some(TlsVersion::Tls1_0),
        },
        Tier::Cleartext => Outcome::Success { version: None },
        _ => Outcome::TlsAlert(TlsAlert::ProtocolVersion),
    }
}

fn no_starttls(tier: Tier) -> Outcome {
    match tier {
        Tier::Cleartext => Outcome::Success { version: None },
        _ => Outcome::StarttlsNotOffered,
    }
}

/// History blobs of typical peers, by name.
fn typical_histories() -> Vec<(&'static str, Vec<u8>)> {
    let context = DeliveryContext::default();
    let first = decide(&Policy::default(), &context, None, None, NOW);
    vec![
        (
            "unknown-peer-mid-delivery",
            first.history.as_bytes().to_vec(),
        ),
        ("modern-pinned", deliver(&context, None, modern)),
        ("legacy-only", deliver(&context, None, legacy_only)),
        ("no-starttls", deliver(&context, None, no_starttls)),
    ]
}

fn cases() -> Vec<Case> {
    let policy = Policy::default();
    let context = DeliveryContext::default();
    let start = decide(&policy, &context, None, None, NOW);
    let alert = AttemptReport {
        tier: attempted_tier(&start),
        outcome: Outcome::TlsAlert(TlsAlert::ProtocolVersion),
    };
    let dane = DeliveryContext {
        dane: Dane::Usable,
        ..DeliveryContext::default()
    };
    vec![
        Case {
            name: "unknown-peer-start",
            context,
            history: None,
            last: None,
        },
        Case {
            name: "step-down-after-alert",
            context,
            history: Some(start.history.as_bytes().to_vec()),
            last: Some(alert),
        },
        Case {
            name: "remembered-legacy-start",
            context,
            history: Some(deliver(&context, None, legacy_only)),
            last: None,
        },
        Case {
            name: "dane-pinned-start",
            context: dane,
            history: Some(deliver(&dane, None, modern)),
            last: None,
        },
    ]
}

fn bench_decide(c: &mut Criterion) {
    let policy = Policy::default();
    let mut warm = PolicyComponent::builtin().expect("the built-in component loads");
    let mut fresh = PolicyComponent::builtin_with(ComponentConfig::FRESH_INSTANCE_PER_CALL)
        .expect("the built-in component loads");
    let mut limited =
        PolicyComponent::builtin_with(ComponentConfig::with_limits(CallLimits::default()))
            .expect("the built-in component loads");
    // The built-in component loaded as an operator's plugin: default limits plus the guard.
    let plugin_config = PluginConfig {
        cache_dir: None,
        ..PluginConfig::new("builtin.wasm".into())
    };
    let mut plugin = PluginEngine::from_bytes(EMBEDDED_COMPONENT, &plugin_config)
        .expect("the built-in component loads as a plugin");
    let mut group = c.benchmark_group("decide");
    for case in cases() {
        let expected = decide(
            &policy,
            &case.context,
            case.history.as_deref(),
            case.last.as_ref(),
            NOW,
        );
        group.bench_function(BenchmarkId::new("native", case.name), |b| {
            b.iter(|| {
                decide(
                    black_box(&policy),
                    black_box(&case.context),
                    black_box(case.history.as_deref()),
                    black_box(case.last.as_ref()),
                    black_box(NOW),
                )
            });
        });
        for (label, component) in [
            ("component-warm", &mut warm),
            ("component-fresh-instance", &mut fresh),
            ("component-with-limits", &mut limited),
        ] {
            let decision = component
                .decide(
                    &policy,
                    &case.context,
                    case.history.as_deref(),
                    case.last.as_ref(),
                    NOW,
                )
                .expect("the component decides");
            assert_eq!(decision, expected, "{label} disagrees with native");
            group.bench_function(BenchmarkId::new(label, case.name), |b| {
                b.iter(|| {
                    component
                        .decide(
                            black_box(&policy),
                            black_box(&case.context),
                            black_box(case.history.as_deref()),
                            black_box(case.last.as_ref()),
                            black_box(NOW),
                        )
                        .expect("the component decides")
                });
            });
        }
        let guarded = plugin.decide(
            &policy,
            &case.context,
            case.history.as_deref(),
            case.last.as_ref(),
            NOW,
        );
        assert_eq!(
            guarded.plugin_failure, None,
            "the built-in component as a plugin does not fail"
        );
        assert_eq!(
            guarded.decision, expected,
            "the guarded plugin disagrees with native"
        );
        group.bench_function(BenchmarkId::new("plugin-guarded", case.name), |b| {
            b.iter(|| {
                plugin.decide(
                    black_box(&policy),
                    black_box(&case.context),
                    black_box(case.history.as_deref()),
                    black_box(case.last.as_ref()),
                    black_box(NOW),
                )
            });
        });
    }
    group.finish();
}

/// The floor under any component call in this wasmtime: a lifted `func(x: u32) -> u32` that
/// returns its argument, on a warm instance. What `decide` costs above this is lowering, lifting
/// and the engine itself.
fn bench_call_floor(c: &mut Criterion) {
    let engine = new_wasmtime_engine(None).expect("engine");
    let wat = r#"(component
        (core module $m (func (export "id") (param i32) (result i32) local.get 0))
        (core instance $i (instantiate $m))
        (func (export "id") (param "x" u32) (result u32) (canon lift (core func $i "id")))
    )"#;
    let component = Component::new(&engine, wat::parse_str(wat).expect("valid WAT")).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::component::Linker::new(&engine)
        .instantiate(&mut store, &component)
        .unwrap();
    let id = instance
        .get_typed_func::<(u32,), (u32,)>(&mut store, "id")
        .unwrap();
    c.bench_function("floor/empty-component-call", |b| {
        b.iter(|| id.call(&mut store, (black_box(7),)).unwrap());
    });
}

fn bench_load(c: &mut Criterion) {
    let engine = new_wasmtime_engine(None).expect("engine");
    let artifact = precompile(&engine, EMBEDDED_COMPONENT).expect("precompiles");
    println!(
        "component-size wasm={} cwasm={}",
        EMBEDDED_COMPONENT.len(),
        artifact.len()
    );
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    group.bench_function("compile-wasm", |b| {
        b.iter(|| Component::new(&engine, black_box(EMBEDDED_COMPONENT)).expect("compiles"));
    });
    group.bench_function("deserialize-cwasm", |b| {
        b.iter(|| deserialize_precompiled(&engine, black_box(&artifact)).expect("loads"));
    });
    group.finish();
}

fn bench_history(c: &mut Criterion) {
    let mut group = c.benchmark_group("history");
    for (name, blob) in typical_histories() {
        println!("history-size {name}={}", blob.len());
        let decoded = History::decode(&blob).expect("a valid blob");
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| History::decode(black_box(&blob)));
        });
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| black_box(&decoded).encode());
        });
    }
    group.finish();
}

/// A full TLS 1.3 handshake with OpenSSL over loopback, both ends in this process: what one
/// delivery attempt costs before any SMTP, for scale.
fn bench_tls_handshake(c: &mut Criterion) {
    let identity = Identity::self_signed("bench.test").expect("a certificate");
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_private_key(&identity.key).unwrap();
    acceptor.set_certificate(&identity.certificate).unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Ok(mut tls) = acceptor.accept(stream) {
                let _ = tls.shutdown();
            }
        }
    });
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    connector
        .set_min_proto_version(Some(SslVersion::TLS1_3))
        .unwrap();
    let connector = connector.build();
    let mut group = c.benchmark_group("tls");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("loopback-handshake-tls1.3", |b| {
        b.iter(|| {
            let tcp = TcpStream::connect(address).unwrap();
            tcp.set_nodelay(true).unwrap();
            let tls = connector
                .configure()
                .unwrap()
                .verify_hostname(false)
                .connect("bench.test", tcp)
                .expect("handshake");
            black_box(tls)
        });
    });
    group.finish();
}

/// A clock that stands still, for the daemon.
/// The Postfix daemon's own cost, without the socket: a lookup (one SQLite write transaction and
/// a component decision) and reading one logged attempt back into the engine.
fn bench_postfix(c: &mut Criterion) {
    use tlsfallback_mta::postfix::{Daemon, DaemonOptions, log::Tracker};
    let dir = tempfile::tempdir().unwrap();
    let store = tlsfallback_mta::store::HistoryStore::open(&dir.path().join("h.sqlite3")).unwrap();
    let engine = Box::new(PolicyComponent::builtin().unwrap());
    let policy = tlsfallback_engine::config::PolicyFile::default();
    let mut log = |_: &tlsfallback_mta::postfix::events::Event| {};
    let mut daemon =
        Daemon::new(engine, store, policy, DaemonOptions::default(), &mut log).unwrap();
    let mut group = c.benchmark_group("postfix");
    group.bench_function("lookup-known-destination", |b| {
        b.iter(|| black_box(daemon.answer(b"tlsfallback [127.0.0.1]:2525", Some(4511), NOW)));
    });
    let mut counter = 0u64;
    group.bench_function("lookup-new-destination", |b| {
        b.iter(|| {
            counter += 1;
            black_box(daemon.answer(
                format!("tlsfallback d{counter}.example").as_bytes(),
                Some(4511),
                NOW,
            ))
        });
    });
    let mut tracker = Tracker::default();
    let mut queue = 0u64;
    // Each attempt read back is attributed to the answer its process got: one lookup per attempt,
    // as Postfix makes it.
    group.bench_function("lookup-then-log-attempt-to-engine", |b| {
        b.iter(|| {
            queue += 1;
            black_box(daemon.answer(b"tlsfallback [127.0.0.1]:2525", Some(4511), NOW));
            let lines = [
                "Nov 30 17:56:06 sender postfix/smtp[4511]: Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:2525: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)".to_owned(),
                format!("Nov 30 17:56:06 sender postfix/smtp[4511]: Q{queue:X}: to=<u@x.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=1, delays=0/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)"),
            ];
            daemon
                .observe("bench.log", &lines, None, &mut tracker, NOW)
                .unwrap();
        });
    });
    group.finish();
}

// criterion_group! generates an undocumented function.
#[allow(missing_docs)]
mod group {
    use super::{
        bench_call_floor, bench_decide, bench_history, bench_load, bench_postfix,
        bench_tls_handshake,
    };
    criterion::criterion_group!(
        benches,
        bench_decide,
        bench_call_floor,
        bench_load,
        bench_history,
        bench_tls_handshake,
        bench_postfix
    );
}
use group::benches;
criterion_main!(benches);
