//! The cost TLS-RPT adds to one delivery attempt: building and encoding its datagram, sending
//! it to a collectd socket (drained by a thread, as tlsrpt-collectd drains it) or to none (the
//! `ENOENT` path a missing collectd takes), and the whole report (send plus the ledger row in a
//! database file).
//!
//! `cargo bench -p tlsfallback-cli --bench tlsrpt`.

use std::hint::black_box;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use policy_core::{TlsRptResult, TlsRptResults};
use tlsfallback_mta::tlsrpt::client::TlsRptClient;
use tlsfallback_mta::tlsrpt::dance::FinalResult;
use tlsfallback_mta::tlsrpt::datagram::{Datagram, PolicyType, ReportPolicy};
use tlsfallback_mta::tlsrpt::reporter::{Receiver, ReportTarget, TlsRptReporter, attempt_datagram};

fn datagram() -> Datagram {
    let target = ReportTarget {
        domain: "example.net".to_owned(),
        record: "v=TLSRPTv1; rua=mailto:tlsrpt@example.net".to_owned(),
    };
    let policy = ReportPolicy {
        policy_type: PolicyType::Sts,
        policy_domain: Some("example.net".to_owned()),
        policy_strings: vec![
            "version: STSv1".to_owned(),
            "mode: enforce".to_owned(),
            "mx: mx1.example.net".to_owned(),
            "mx: *.backup.example.net".to_owned(),
            "max_age: 604800".to_owned(),
        ],
        mx_host_patterns: vec![
            "mx1.example.net".to_owned(),
            "*.backup.example.net".to_owned(),
        ],
    };
    let mut results = TlsRptResults::EMPTY;
    results.insert(TlsRptResult::CertificateHostMismatch);
    let receiver = Receiver {
        mx_host: Some("mx1.example.net".to_owned()),
        ip: Some("192.0.2.25".to_owned()),
        failure_reason: Some("certificate-error name-mismatch".to_owned()),
    };
    attempt_datagram(&target, &policy, FinalResult::Failure(results), &receiver)
}

fn bench_tlsrpt(c: &mut Criterion) {
    let mut group = c.benchmark_group("tlsrpt");
    group.measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();

    group.bench_function("build and encode a datagram", |b| {
        b.iter(|| black_box(datagram()).encode());
    });

    let socket = dir.path().join("collectd.sock");
    let collectd = UnixDatagram::bind(&socket).unwrap();
    let drain = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 65_536];
        while let Ok(n) = collectd.recv(&mut buffer) {
            if n == 1 {
                break;
            }
        }
    });
    let mut client = TlsRptClient::new(&socket).unwrap();
    let sample = datagram();
    group.bench_function("send to a collectd socket", |b| {
        b.iter(|| {
            // A full queue is counted, not waited for; the drain keeps up here.
            let _ = client.send(black_box(&sample));
        });
    });
    let stop = UnixDatagram::unbound().unwrap();
    let _ = stop.send_to(b"x", &socket);
    let _ = drain.join();

    let mut absent = TlsRptClient::new(&dir.path().join("no-collectd.sock")).unwrap();
    group.bench_function("send with no collectd", |b| {
        b.iter(|| {
            let _ = absent.send(black_box(&sample));
        });
    });

    let db = dir.path().join("peers.sqlite3");
    let mut reporter =
        TlsRptReporter::new(None, &db, Duration::from_secs(5)).expect("the ledger opens");
    let mut now = 1_796_083_200u64;
    group.bench_function("report (ledger row in a database file)", |b| {
        b.iter(|| {
            now += 1;
            black_box(reporter.report(&sample, now))
        });
    });
    group.finish();
}

fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_tlsrpt(&mut criterion);
}

criterion_main!(benches);
