//! The cost of MTA-STS per delivery: the policy parse, a resolution answered by the cache (warm:
//! in memory and in a database file), and one that fetches over loopback HTTPS from
//! `rig::https::PolicyServer` (cold: TLS handshake with the test CA, HTTP, parse, cache write).
//!
//! `cargo bench -p tlsfallback-cli --bench mta_sts`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_main};
use tlsfallback_mta::mta_sts::{
    FetchSettings, Fetcher, HttpsNetwork, Policy, PolicyCache, PolicySource, StsResolver,
};
use tlsfallback_testkit::rig::https::{PolicyServer, Response};

const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmx: *.backup.example.net\r\nmax_age: 604800\r\n";

fn resolver(server: &PolicyServer, cache: PolicyCache) -> StsResolver<HttpsNetwork> {
    let network = HttpsNetwork {
        txt: Box::new(|_| Ok(Some(vec![b"v=STSv1; id=20260101".to_vec()]))),
        addresses: Box::new(|_| Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])),
        fetcher: Fetcher::new(FetchSettings {
            port: server.port(),
            timeout: Duration::from_secs(20),
            ca_file: Some(server.ca_file().to_owned()),
        }),
    };
    StsResolver::with_jitter(network, cache, Box::new(|| 0))
}

fn bench_mta_sts(c: &mut Criterion) {
    let server = PolicyServer::start().expect("the policy server starts");
    server.set("example.net", Response::policy(POLICY));
    let mut group = c.benchmark_group("mta_sts");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("parse policy", |b| {
        b.iter(|| Policy::parse(black_box(POLICY.as_bytes())).unwrap());
    });

    let warm = resolver(&server, PolicyCache::in_memory().unwrap());
    assert_eq!(warm.resolve("example.net", 0).source, PolicySource::Fetched);
    group.bench_function("resolve warm (in-memory cache)", |b| {
        b.iter(|| assert_eq!(warm.resolve("example.net", 10).source, PolicySource::Cached));
    });

    let dir = tempfile::tempdir().unwrap();
    let file = resolver(
        &server,
        PolicyCache::open(&dir.path().join("peers.sqlite3")).unwrap(),
    );
    file.resolve("example.net", 0);
    group.bench_function("resolve warm (database file)", |b| {
        b.iter(|| assert_eq!(file.resolve("example.net", 10).source, PolicySource::Cached));
    });

    let cold = resolver(&server, PolicyCache::in_memory().unwrap());
    group.bench_function("resolve cold (loopback HTTPS fetch)", |b| {
        b.iter(|| {
            cold.cache().forget("example.net").unwrap();
            assert_eq!(
                cold.resolve("example.net", 10).source,
                PolicySource::Fetched
            );
        });
    });
    group.finish();
}

// criterion_group! generates an undocumented function.
#[allow(missing_docs)]
mod group {
    use super::bench_mta_sts;
    criterion::criterion_group!(benches, bench_mta_sts);
}
use group::benches;
criterion_main!(benches);
