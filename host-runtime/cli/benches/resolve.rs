//! The cost of resolving the floor: MX, addresses, TLSA and MTA-STS (TXT, policy fetch, cache)
//! for a recipient domain, against the DNSSEC rig (NSD, unbound) and the MTA-STS policy server on
//! loopback, and a native `decide` on what was resolved.
//!
//! Measures, and prints as one JSON object on stdout (scripts/bench writes it to
//! target/bench/resolve.json and docs/benchmarks.md rows 12 and 13 from it):
//! - `cold`: a fresh resolver per domain (a freshly started process: nothing cached, not even the
//!   root's and the zones' DNSKEYs), in `validate` mode against the rig's front and in `trust-ad`
//!   mode through unbound (a domain unbound has not seen either); then `warm`: the same resolver,
//!   the same domain again. Each both as a resolution and as a decision (resolution + one native
//!   `policy_core::decide` for the first MX). Median, p90, p99 over the sampled domains.
//! - `fill`: one long-lived resolver resolves every domain once (a new domain, the zones' keys
//!   cached): its latency, the entries of the DNS cache, the process's RSS before and after, and
//!   the size on disk of the SQLite MTA-STS cache.
//! - `deliveries`: another long-lived resolver per mode, deliveries to domains drawn with a
//!   seeded Zipf-like distribution (s = 1): the DNS cache's hit rate and the total time.
//!
//! `cargo bench -p tlsfallback-cli --bench resolve` (about two minutes; BENCH_QUICK=1: 200
//! domains, 2,000 deliveries, 30 cold samples per mode).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tlsfallback_mta::clock::{Clock, Stopwatch, SystemClock};
use tlsfallback_mta::dns::{DnsSettings, DnssecMode};
use tlsfallback_mta::mta_sts::FetchSettings;
use tlsfallback_mta::resolve::{DomainResolution, MxList};
use tlsfallback_mta::resolve::{DomainResolver, ResolveSettings};
use tlsfallback_testkit::rig::dnssec::{ChildZone, DnssecRig, RigSpec, Signing};
use tlsfallback_testkit::rig::https::{PolicyServer, Response};

/// Child zones `z0.test` .. `z9.test`; the last [`UNSIGNED_ZONES`] are unsigned.
const ZONES: usize = 10;
const UNSIGNED_ZONES: usize = 2;
/// Every this-many-th domain publishes an MTA-STS policy (`enforce`).
const STS_EVERY: usize = 4;
/// The seed of the domain sample and of the deliveries' draw.
const SEED: u64 = 16;

struct Sizes {
    domains: usize,
    deliveries: usize,
    cold_samples: usize,
}

impl Sizes {
    fn from_env() -> Self {
        if std::env::var("BENCH_QUICK").as_deref() == Ok("1") {
            Self {
                domains: 200,
                deliveries: 2_000,
                cold_samples: 30,
            }
        } else {
            Self {
                domains: 1_000,
                deliveries: 10_000,
                cold_samples: 100,
            }
        }
    }
}

/// `dK.zN.test`: domain `k` lives in zone `k % ZONES`.
fn domain(k: usize) -> String {
    format!("d{k}.z{}.test", k % ZONES)
}

fn has_sts(k: usize) -> bool {
    k.is_multiple_of(STS_EVERY)
}

fn spec(domains: usize) -> RigSpec {
    let tlsa = "3 1 1 8f1e3cbb1ab5c2d4e7b0a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8";
    let mut spec = RigSpec::new();
    for zone in 0..ZONES {
        let signing = if zone < ZONES - UNSIGNED_ZONES {
            Signing::Signed
        } else {
            Signing::Unsigned
        };
        let mut child = ChildZone::new(&format!("z{zone}"), signing);
        for k in (zone..domains).step_by(ZONES) {
            child = child.records([
                format!("d{k} IN MX 10 mx.d{k}"),
                format!("mx.d{k} IN A 127.0.0.1"),
                format!("_25._tcp.mx.d{k} IN TLSA {tlsa}"),
            ]);
            if has_sts(k) {
                child = child.records([
                    format!("_mta-sts.d{k} IN TXT \"v=STSv1; id=20261202\""),
                    format!("mta-sts.d{k} IN A 127.0.0.1"),
                ]);
            }
        }
        spec = spec.child(child);
    }
    spec
}

struct World {
    rig: DnssecRig,
    policies: PolicyServer,
    dir: tempfile::TempDir,
}

impl World {
    fn settings(&self, mode: DnssecMode) -> ResolveSettings {
        let (server, trust_anchor) = match mode {
            DnssecMode::TrustAd => (self.rig.unbound_addr(), None),
            _ => (self.rig.direct_addr(), Some(self.rig.trust_anchor_file())),
        };
        ResolveSettings {
            dns: DnsSettings {
                server: Some(server),
                dnssec: mode,
                trust_anchor,
                timeout: Duration::from_secs(5),
                ..DnsSettings::default()
            },
            fetch: FetchSettings {
                port: self.policies.port(),
                timeout: Duration::from_secs(10),
                ca_file: Some(self.policies.ca_file().to_owned()),
            },
            port: 25,
        }
    }

    fn resolver(&self, mode: DnssecMode, db: &str) -> DomainResolver {
        DomainResolver::new(&self.settings(mode), &self.dir.path().join(db))
            .expect("the resolver is set up")
    }
}

/// What a resolution gave the first MX (`dane/mta-sts`), to show the benchmark resolved what
/// the zones say rather than timing failures.
fn outcome(resolution: &DomainResolution) -> String {
    match &resolution.mx {
        MxList::Hosts { hosts, .. } => hosts.first().map_or_else(
            || "no-hosts".to_owned(),
            |mx| {
                let context = mx.context(policy_core::DeliveryContext::default());
                format!(
                    "dane={} mta_sts={}",
                    context.dane.name(),
                    context.mta_sts.name()
                )
            },
        ),
        MxList::NullMx => "null-mx".to_owned(),
        MxList::NoSuchDomain => "no-such-domain".to_owned(),
        MxList::Failed { error } => format!("failed: {error}"),
    }
}

/// One native decision on the first MX's resolved context (what `deliver` does next).
fn decide(resolution: &DomainResolution, now: u64) -> policy_core::Decision {
    let context = match &resolution.mx {
        MxList::Hosts { hosts, .. } => hosts.first().map_or_else(Default::default, |mx| {
            mx.context(policy_core::DeliveryContext::default())
        }),
        _ => policy_core::DeliveryContext::default(),
    };
    policy_core::decide(&policy_core::Policy::default(), &context, None, None, now)
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

/// Median, p90 and p99 in microseconds.
fn percentiles(samples: &mut [Duration]) -> Value {
    samples.sort();
    let at = |q: f64| {
        let index = ((q * samples.len() as f64) as usize).min(samples.len().saturating_sub(1));
        samples.get(index).copied().map_or(0.0, micros)
    };
    json!({"median_us": at(0.5), "p90_us": at(0.9), "p99_us": at(0.99), "samples": samples.len()})
}

#[derive(Default)]
struct Latencies {
    cold_resolve: Vec<Duration>,
    cold_decision: Vec<Duration>,
    /// The cold resolutions of the domains with an MTA-STS policy (fetched over HTTPS) and of
    /// the others.
    cold_with_policy_fetch: Vec<Duration>,
    cold_without_policy: Vec<Duration>,
    warm_resolve: Vec<Duration>,
    warm_decision: Vec<Duration>,
    outcomes: BTreeMap<String, usize>,
    /// The warm resolutions by outcome (DANE-usable ones probe the TLSA records with OpenSSL).
    warm_by_outcome: BTreeMap<String, Vec<Duration>>,
}

/// Cold then warm, for each of `domains`, a fresh resolver each.
fn cold_and_warm(world: &World, mode: DnssecMode, domains: &[usize]) -> Value {
    let mut l = Latencies::default();
    for (i, &k) in domains.iter().enumerate() {
        let name = domain(k);
        let resolver = world.resolver(mode, &format!("cold-{}-{i}.sqlite3", mode.name()));
        let now = SystemClock.now();
        for warm in [false, true] {
            let watch = Stopwatch::start();
            let resolution = resolver.resolve(&name, now);
            let resolved = watch.elapsed();
            let _ = std::hint::black_box(decide(&resolution, now));
            let decided = watch.elapsed();
            let (resolve, decision) = if warm {
                l.warm_by_outcome
                    .entry(outcome(&resolution))
                    .or_default()
                    .push(resolved);
                (&mut l.warm_resolve, &mut l.warm_decision)
            } else {
                *l.outcomes.entry(outcome(&resolution)).or_default() += 1;
                if has_sts(k) {
                    l.cold_with_policy_fetch.push(resolved);
                } else {
                    l.cold_without_policy.push(resolved);
                }
                (&mut l.cold_resolve, &mut l.cold_decision)
            };
            resolve.push(resolved);
            decision.push(decided);
        }
    }
    json!({
        "cold_resolve": percentiles(&mut l.cold_resolve),
        "cold_decision": percentiles(&mut l.cold_decision),
        "cold_resolve_with_policy_fetch": percentiles(&mut l.cold_with_policy_fetch),
        "cold_resolve_without_policy": percentiles(&mut l.cold_without_policy),
        "warm_resolve": percentiles(&mut l.warm_resolve),
        "warm_decision": percentiles(&mut l.warm_decision),
        "warm_resolve_by_outcome": l
            .warm_by_outcome
            .iter_mut()
            .map(|(outcome, samples)| (outcome.clone(), percentiles(samples)))
            .collect::<BTreeMap<_, _>>(),
        "outcomes": l.outcomes,
    })
}

/// The process's resident set (VmRSS of /proc/self/status), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// The database and its WAL and shared-memory files, in bytes.
fn on_disk(db: &Path) -> u64 {
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .filter_map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(Path::new(&name)).ok()
        })
        .map(|m| m.len())
        .sum()
}

/// One long-lived resolver resolves every domain once.
fn fill(world: &World, sizes: &Sizes) -> Value {
    let db = "fill.sqlite3";
    let resolver = world.resolver(DnssecMode::Validate, db);
    let now = SystemClock.now();
    // One resolution first, so the RSS before counts the resolver's own set-up (runtime, hickory,
    // SQLite) and the root's and `test.`'s keys, not just the answers.
    let _ = resolver.resolve("z0.test", now);
    let before = rss_kib();
    let entries_before = resolver.dns().cache_stats().entries;
    let mut latencies = Vec::with_capacity(sizes.domains);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let watch = Stopwatch::start();
    for k in 0..sizes.domains {
        let one = Stopwatch::start();
        let resolution = resolver.resolve(&domain(k), now);
        latencies.push(one.elapsed());
        *outcomes.entry(outcome(&resolution)).or_default() += 1;
    }
    let total = watch.elapsed();
    let after = rss_kib();
    let entries = resolver.dns().cache_stats().entries;
    let added = entries.saturating_sub(entries_before);
    let grown = after.saturating_sub(before);
    json!({
        "domains": sizes.domains,
        "total_ms": (total.as_secs_f64() * 1e3).round(),
        "new_domain_resolve": percentiles(&mut latencies),
        "dns_cache_entries": entries,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_growth_kib": grown,
        "rss_bytes_per_entry": if added == 0 { 0 } else { grown * 1024 / added as u64 },
        "mta_sts_cache_bytes_on_disk": on_disk(&world.dir.path().join(db)),
        "mta_sts_domains": (0..sizes.domains).filter(|&k| has_sts(k)).count(),
        "outcomes": outcomes,
    })
}

/// Deliveries to domains drawn Zipf-like (rank r with weight 1/r), one long-lived resolver in
/// `mode` (the same draw in both modes).
fn deliveries(world: &World, sizes: &Sizes, mode: DnssecMode) -> Value {
    let mut rng = fastrand::Rng::with_seed(SEED);
    // Which domain has which popularity rank: shuffled, so the popular ones are spread over the
    // zones and over signed, unsigned and MTA-STS domains.
    let mut by_rank: Vec<usize> = (0..sizes.domains).collect();
    rng.shuffle(&mut by_rank);
    let mut cumulative = Vec::with_capacity(sizes.domains);
    let mut sum = 0.0;
    for rank in 1..=sizes.domains {
        sum += 1.0 / rank as f64;
        cumulative.push(sum);
    }
    let draws: Vec<usize> = (0..sizes.deliveries)
        .map(|_| {
            let x = rng.f64() * sum;
            by_rank[cumulative
                .partition_point(|&c| c < x)
                .min(sizes.domains - 1)]
        })
        .collect();
    let distinct = draws.iter().collect::<std::collections::HashSet<_>>().len();
    let resolver = world.resolver(mode, &format!("deliveries-{}.sqlite3", mode.name()));
    let now = SystemClock.now();
    let watch = Stopwatch::start();
    let mut failed = 0;
    for &k in &draws {
        let resolution = resolver.resolve(&domain(k), now);
        if !matches!(resolution.mx, MxList::Hosts { .. }) {
            failed += 1;
        }
        let _ = std::hint::black_box(decide(&resolution, now));
    }
    let total = watch.elapsed();
    let stats = resolver.dns().cache_stats();
    let lookups = stats.hits + stats.misses;
    json!({
        "deliveries": sizes.deliveries,
        "domains": sizes.domains,
        "distinct_domains_drawn": distinct,
        "total_ms": (total.as_secs_f64() * 1e3).round(),
        "mean_us_per_delivery": micros(total / u32::try_from(sizes.deliveries.max(1)).unwrap_or(u32::MAX)),
        "dns_cache_hits": stats.hits,
        "dns_cache_misses": stats.misses,
        "dns_cache_hit_rate": if lookups == 0 { 0.0 } else { (stats.hits as f64 / lookups as f64 * 1e4).round() / 1e4 },
        "dns_cache_entries": stats.entries,
        "failed_resolutions": failed,
    })
}

fn main() {
    let sizes = Sizes::from_env();
    let policies = PolicyServer::start().expect("the policy server starts");
    for k in (0..sizes.domains).filter(|&k| has_sts(k)) {
        let name = domain(k);
        policies.set(
            &name,
            Response::policy(&format!(
                "version: STSv1\nmode: enforce\nmx: mx.{name}\nmax_age: 86400\n"
            )),
        );
    }
    eprintln!(
        "resolve bench: starting the DNSSEC rig with {} domains",
        sizes.domains
    );
    let rig = DnssecRig::start(&spec(sizes.domains)).expect("the DNSSEC rig starts");
    let world = World {
        rig,
        policies,
        dir: tempfile::tempdir().expect("a temporary directory"),
    };

    // Disjoint samples per mode, so unbound has not seen a trust-ad sample's names before.
    let mut sample: Vec<usize> = (0..sizes.domains).collect();
    fastrand::Rng::with_seed(SEED).shuffle(&mut sample);
    let (validate_sample, rest) = sample.split_at(sizes.cold_samples.min(sizes.domains / 2));
    let trust_ad_sample = &rest[..sizes.cold_samples.min(rest.len())];

    eprintln!("resolve bench: cold and warm, validate");
    let validate = cold_and_warm(&world, DnssecMode::Validate, validate_sample);
    eprintln!("resolve bench: cold and warm, trust-ad");
    let trust_ad = cold_and_warm(&world, DnssecMode::TrustAd, trust_ad_sample);
    eprintln!("resolve bench: filling one resolver with every domain");
    let filled = fill(&world, &sizes);
    eprintln!("resolve bench: {} deliveries", sizes.deliveries);
    let runs: BTreeMap<&str, Value> = [DnssecMode::Validate, DnssecMode::TrustAd]
        .into_iter()
        .map(|mode| (mode.name(), deliveries(&world, &sizes, mode)))
        .collect();

    let report = json!({
        "quick": std::env::var("BENCH_QUICK").as_deref() == Ok("1"),
        "rig": {
            "domains": sizes.domains,
            "zones": ZONES,
            "unsigned_zones": UNSIGNED_ZONES,
            "mta_sts_every": STS_EVERY,
            "started_in_ms": world.rig.started_in().as_millis(),
        },
        "validate": validate,
        "trust_ad": trust_ad,
        "fill": filled,
        "deliveries": runs,
    });
    println!("{report}");
}
