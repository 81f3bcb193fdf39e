//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy fetched over HTTPS, its cache, and
//! what it requires of each MX.
//!
//! - [`policy`]: the strict policy parser and MX pattern matching.
//! - [`txt`]: the `_mta-sts.<domain>` TXT record.
//! - [`fetch`]: the HTTPS fetch (reqwest over OpenSSL).
//! - [`cache`]: the policies in the history's SQLite database.
//! - here: [`StsResolver`], which decides from the TXT record, the cache and a fetch which
//!   policy applies (sections 3.3, 5.1 and 10.2). It reads no clock and does no I/O of its own:
//!   the time is an argument, DNS and HTTPS sit behind [`StsNetwork`] (so tests can fake them),
//!   and the refresh jitter is an input.

pub mod cache;
pub mod fetch;
pub mod policy;
pub mod txt;

use std::net::IpAddr;

use policy_core::MtaSts;

pub use cache::{CacheError, CachedPolicy, PolicyCache};
pub use fetch::{FetchError, FetchSettings, FetchedPolicy, Fetcher, fetch_policy};
pub use policy::{
    MAX_MAX_AGE, MAX_POLICY_BYTES, Mode, MxPattern, MxPatternError, Policy, PolicyError,
    is_host_name,
};
pub use txt::{StsTxt, TxtError, parse_txt};

/// The DNS and HTTPS the resolver needs.
pub trait StsNetwork {
    /// The TXT records at `name` (each record's strings concatenated); `Ok(None)` when the name
    /// has none (NXDOMAIN or NODATA); `Err` for a failed lookup (SERVFAIL, timeout, bogus).
    ///
    /// # Errors
    ///
    /// A failed lookup, in words.
    fn txt(&self, name: &str) -> Result<Option<Vec<Vec<u8>>>, String>;

    /// Fetches the policy of `domain` (from `mta-sts.<domain>`).
    ///
    /// # Errors
    ///
    /// See [`FetchError`].
    fn fetch(&self, domain: &str) -> Result<FetchedPolicy, FetchError>;
}

/// A TXT lookup: see [`StsNetwork::txt`].
pub type TxtLookup = Box<dyn Fn(&str) -> Result<Option<Vec<Vec<u8>>>, String> + Send + Sync>;
/// An address lookup (A and AAAA of a name): the addresses, or the failure in words.
pub type AddressLookup = Box<dyn Fn(&str) -> Result<Vec<IpAddr>, String> + Send + Sync>;

/// The real network: the host's own DNS (given as two lookups) and a [`Fetcher`].
pub struct HttpsNetwork {
    /// The TXT lookup.
    pub txt: TxtLookup,
    /// The A/AAAA lookup `mta-sts.<domain>` is resolved with.
    pub addresses: AddressLookup,
    /// The fetches, over one HTTPS client.
    pub fetcher: Fetcher,
}

impl StsNetwork for HttpsNetwork {
    fn txt(&self, name: &str) -> Result<Option<Vec<Vec<u8>>>, String> {
        (self.txt)(name)
    }

    fn fetch(&self, domain: &str) -> Result<FetchedPolicy, FetchError> {
        let addresses = (self.addresses)(&format!("mta-sts.{domain}")).map_err(|detail| {
            FetchError::NoAddress {
                domain: domain.to_owned(),
                detail,
            }
        })?;
        self.fetcher.fetch(domain, &addresses)
    }
}

/// Where the policy in a result comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// Fetched by this resolution.
    Fetched,
    /// The cache, still current (same id, before its refresh time), or kept while the TXT
    /// record is absent or its lookup failed (section 5.1).
    Cached,
    /// The cache, because a refresh (new id, or refresh time passed) failed: it applies until
    /// it expires.
    CachedAfterFailedRefresh,
    /// No policy.
    None,
}

impl PolicySource {
    /// The name in logs and JSON.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fetched => "fetched",
            Self::Cached => "cached",
            Self::CachedAfterFailedRefresh => "cached-after-failed-refresh",
            Self::None => "none",
        }
    }
}

/// A failure on the way to a policy, as TLS-RPT reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsFailure {
    /// The RFC 8460 result type: `sts-policy-fetch-error`, `sts-policy-invalid` or
    /// `sts-webpki-invalid`.
    pub result_type: &'static str,
    /// What happened, in words.
    pub detail: String,
}

/// What TLS-RPT's `policy` object needs (RFC 8460 section 4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRptPolicy {
    /// Always `sts`.
    pub policy_type: &'static str,
    /// The policy's lines.
    pub policy_string: Vec<String>,
    /// The policy domain.
    pub policy_domain: String,
    /// The MX patterns.
    pub mx_host: Vec<String>,
}

/// What MTA-STS says about a domain at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsResult {
    /// The policy domain (lower case, no trailing dot).
    pub domain: String,
    /// The engine's view: none (no policy, or `mode: none`), testing, enforce, or fetch-failed
    /// (a TXT record but no policy and nothing cached).
    pub state: MtaSts,
    /// The policy that applies, if any.
    pub policy: Option<Policy>,
    /// Its id (the TXT record's when fetched, the cached row's otherwise).
    pub policy_id: Option<String>,
    /// When the policy applied stops applying (Unix seconds).
    pub expires_at: Option<u64>,
    /// Where it comes from.
    pub source: PolicySource,
    /// What failed on the way (also when a cached policy still applies).
    pub failure: Option<StsFailure>,
    /// A cache that could not be read or written (the policy still came from the network, or
    /// none applies); `None` when the cache answered.
    pub cache_problem: Option<String>,
}

/// What the result means for one MX host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MxVerdict {
    /// `enforce`, and the MX matches: deliver only over authenticated TLS (WebPKI).
    Enforce,
    /// `testing`: deliver as without a policy, and report a failure (or a non-matching MX).
    Testing {
        /// Whether the MX matches a pattern (a mismatch is reported, not enforced).
        mx_matches: bool,
    },
    /// `enforce`, and the MX matches no pattern: the host must not deliver to it (section 4.1).
    NotAllowed,
    /// No policy applies (including a failed fetch with nothing cached).
    NoPolicy,
}

impl StsResult {
    /// No policy for `domain` (no TXT record, nothing cached).
    #[must_use]
    pub fn none(domain: &str) -> Self {
        Self {
            domain: domain.to_owned(),
            state: MtaSts::None,
            policy: None,
            policy_id: None,
            expires_at: None,
            source: PolicySource::None,
            failure: None,
            cache_problem: None,
        }
    }

    fn applying(domain: &str, entry: CachedPolicy, source: PolicySource) -> Self {
        Self {
            state: match entry.policy.mode {
                Mode::Enforce => MtaSts::Enforce,
                Mode::Testing => MtaSts::Testing,
                Mode::None => MtaSts::None,
            },
            policy_id: Some(entry.id),
            expires_at: Some(entry.expires_at),
            policy: Some(entry.policy),
            source,
            ..Self::none(domain)
        }
    }

    /// What the policy says about delivering to `mx_host`.
    #[must_use]
    pub fn for_mx(&self, mx_host: &str) -> MxVerdict {
        let Some(policy) = &self.policy else {
            return MxVerdict::NoPolicy;
        };
        let mx_matches = policy.matches_mx(mx_host);
        match policy.mode {
            Mode::Enforce if mx_matches => MxVerdict::Enforce,
            Mode::Enforce => MxVerdict::NotAllowed,
            Mode::Testing => MxVerdict::Testing { mx_matches },
            Mode::None => MxVerdict::NoPolicy,
        }
    }

    /// The engine's MTA-STS context for `mx_host`, or `None` when the host must not deliver to
    /// it at all ([`MxVerdict::NotAllowed`]).
    #[must_use]
    pub fn context_for(&self, mx_host: &str) -> Option<MtaSts> {
        match self.for_mx(mx_host) {
            MxVerdict::Enforce => Some(MtaSts::Enforce),
            MxVerdict::Testing { .. } => Some(MtaSts::Testing),
            MxVerdict::NotAllowed => None,
            MxVerdict::NoPolicy => Some(if self.state == MtaSts::FetchFailed {
                MtaSts::FetchFailed
            } else {
                MtaSts::None
            }),
        }
    }

    /// TLS-RPT's policy object, when an `enforce` or `testing` policy applies (`None`: the
    /// report's `no-policy-found`, which is also what `mode: none` means).
    #[must_use]
    pub fn tls_rpt_policy(&self) -> Option<TlsRptPolicy> {
        let policy = self
            .policy
            .as_ref()
            .filter(|policy| policy.mode != Mode::None);
        policy.map(|policy| TlsRptPolicy {
            policy_type: "sts",
            policy_string: policy.policy_string(),
            policy_domain: self.domain.clone(),
            mx_host: policy.mx.iter().map(ToString::to_string).collect(),
        })
    }
}

/// When to refresh a policy fetched at `fetched_at` that lives `max_age` seconds: between 50%
/// and 80% of its life, placed by `jitter` (any u32, uniformly spread), so that senders do not
/// all refetch at once and a refresh is tried well before the policy expires (section 10.2).
#[must_use]
pub fn refresh_at(fetched_at: u64, max_age: u32, jitter: u32) -> u64 {
    let max_age = u64::from(max_age);
    // 50% + (30% × jitter / 2^32) of max_age, in integers.
    let offset = max_age / 2 + ((max_age * 3 / 10 * u64::from(jitter)) >> 32);
    fetched_at.saturating_add(offset)
}

/// The jitter source: a fresh random u32 per fetch.
pub type Jitter = Box<dyn Fn() -> u32 + Send + Sync>;

/// Resolves MTA-STS for domains: the TXT record, the cache, and a fetch when needed.
pub struct StsResolver<N> {
    network: N,
    cache: PolicyCache,
    jitter: Jitter,
}

/// A domain as the cache keys it: lower case, without the trailing dot.
#[must_use]
pub fn normalize_domain(domain: &str) -> String {
    domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase()
}

impl<N: StsNetwork> StsResolver<N> {
    /// A resolver with random refresh jitter (from the OS).
    pub fn new(network: N, cache: PolicyCache) -> Self {
        // Without the OS's randomness the refresh lands at 65% of max_age: still before expiry.
        Self::with_jitter(
            network,
            cache,
            Box::new(|| getrandom::u32().unwrap_or(u32::MAX / 2)),
        )
    }

    /// A resolver with the given jitter source (tests pass a constant).
    pub fn with_jitter(network: N, cache: PolicyCache, jitter: Jitter) -> Self {
        Self {
            network,
            cache,
            jitter,
        }
    }

    /// The cache (for `tlsfallback resolve` to list it).
    pub const fn cache(&self) -> &PolicyCache {
        &self.cache
    }

    /// The network.
    pub const fn network(&self) -> &N {
        &self.network
    }

    /// What MTA-STS says about `domain` at `now` (Unix seconds).
    pub fn resolve(&self, domain: &str, now: u64) -> StsResult {
        let domain = normalize_domain(domain);
        if !is_host_name(&domain) {
            return StsResult {
                failure: Some(StsFailure {
                    result_type: "sts-policy-fetch-error",
                    detail: format!("{} is not a host name", policy::quoted(&domain)),
                }),
                ..StsResult::none(&domain)
            };
        }
        let mut cache_problem = None;
        let cached = match self.cache.get(&domain) {
            Ok(entry) => entry.filter(|entry| now < entry.expires_at),
            Err(error) => {
                cache_problem = Some(error.to_string());
                None
            }
        };
        let mut result = self.resolve_with(&domain, now, cached, &mut cache_problem);
        result.cache_problem = cache_problem;
        result
    }

    fn resolve_with(
        &self,
        domain: &str,
        now: u64,
        cached: Option<CachedPolicy>,
        cache_problem: &mut Option<String>,
    ) -> StsResult {
        // Without a usable TXT record, a current cached policy keeps applying (section 5.1:
        // withdrawing a policy takes `mode: none` under a new id, not a missing record, which an
        // attacker can fake).
        let keep_cached = |failure: Option<StsFailure>| match cached.clone() {
            Some(entry) => StsResult {
                failure,
                ..StsResult::applying(domain, entry, PolicySource::Cached)
            },
            None => StsResult {
                failure,
                ..StsResult::none(domain)
            },
        };
        let txt = match self.network.txt(&format!("_mta-sts.{domain}")) {
            Ok(None) => return keep_cached(None),
            Ok(Some(records)) => parse_txt(&records),
            Err(detail) => {
                let failure = StsFailure {
                    result_type: "sts-policy-fetch-error",
                    detail: format!("the TXT lookup of _mta-sts.{domain} failed: {detail}"),
                };
                return keep_cached(Some(failure));
            }
        };
        let txt = match txt {
            Ok(Some(txt)) => txt,
            Ok(None) => return keep_cached(None),
            Err(error) => {
                let failure = StsFailure {
                    result_type: "sts-policy-invalid",
                    detail: format!("_mta-sts.{domain}: {error}"),
                };
                return keep_cached(Some(failure));
            }
        };
        if let Some(entry) = &cached
            && entry.id == txt.id
            && now < entry.refresh_at
        {
            return StsResult::applying(domain, entry.clone(), PolicySource::Cached);
        }
        match self.network.fetch(domain) {
            Ok(fetched) => {
                let max_age = fetched.policy.max_age;
                let entry = CachedPolicy {
                    domain: domain.to_owned(),
                    id: txt.id,
                    policy: fetched.policy,
                    fetched_at: now,
                    expires_at: now.saturating_add(u64::from(max_age)),
                    refresh_at: refresh_at(now, max_age, (self.jitter)()),
                };
                if let Err(error) = self.cache.put(&entry) {
                    *cache_problem = Some(error.to_string());
                }
                StsResult::applying(domain, entry, PolicySource::Fetched)
            }
            Err(error) => {
                let failure = StsFailure {
                    result_type: error.result_type(),
                    detail: error.detail(),
                };
                match cached {
                    Some(entry) => StsResult {
                        failure: Some(failure),
                        ..StsResult::applying(domain, entry, PolicySource::CachedAfterFailedRefresh)
                    },
                    None => StsResult {
                        state: MtaSts::FetchFailed,
                        policy_id: Some(txt.id),
                        failure: Some(failure),
                        ..StsResult::none(domain)
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A fake network: the TXT answer and the fetch's answer are set by the test; fetches are
    /// counted.
    struct Fake {
        txt: RefCell<Result<Option<Vec<Vec<u8>>>, String>>,
        policy: RefCell<Result<String, u16>>,
        fetches: Cell<usize>,
    }

    impl Fake {
        fn new(id: &str, policy: &str) -> Self {
            Self {
                txt: RefCell::new(Ok(Some(vec![format!("v=STSv1; id={id}").into_bytes()]))),
                policy: RefCell::new(Ok(policy.to_owned())),
                fetches: Cell::new(0),
            }
        }
    }

    impl StsNetwork for &Fake {
        fn txt(&self, _name: &str) -> Result<Option<Vec<Vec<u8>>>, String> {
            self.txt.borrow().clone()
        }

        fn fetch(&self, domain: &str) -> Result<FetchedPolicy, FetchError> {
            self.fetches.set(self.fetches.get() + 1);
            match &*self.policy.borrow() {
                Ok(text) => Policy::parse(text.as_bytes())
                    .map(|policy| FetchedPolicy { policy })
                    .map_err(|error| FetchError::Invalid {
                        domain: domain.to_owned(),
                        error,
                    }),
                Err(status) => Err(FetchError::Status {
                    domain: domain.to_owned(),
                    status: *status,
                }),
            }
        }
    }

    const ENFORCE: &str = "version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 1000\n";

    fn resolver(fake: &Fake) -> StsResolver<&Fake> {
        // Jitter 0: refresh at exactly 50% of max_age.
        StsResolver::with_jitter(fake, PolicyCache::in_memory().unwrap(), Box::new(|| 0))
    }

    #[test]
    fn refresh_falls_between_half_and_four_fifths_of_max_age() {
        assert_eq!(refresh_at(100, 1000, 0), 600);
        assert_eq!(refresh_at(100, 1000, u32::MAX), 100 + 500 + 299);
        assert_eq!(refresh_at(u64::MAX, MAX_MAX_AGE, u32::MAX), u64::MAX);
    }

    #[test]
    fn current_cached_policy_is_used_without_a_fetch() {
        let fake = Fake::new("a", ENFORCE);
        let resolver = resolver(&fake);
        assert_eq!(
            resolver.resolve("Example.NET.", 0).source,
            PolicySource::Fetched
        );
        let again = resolver.resolve("example.net", 499);
        assert_eq!(again.source, PolicySource::Cached);
        assert_eq!(again.state, MtaSts::Enforce);
        assert_eq!(fake.fetches.get(), 1);
        // At the refresh time it fetches again.
        assert_eq!(
            resolver.resolve("example.net", 500).source,
            PolicySource::Fetched
        );
        assert_eq!(fake.fetches.get(), 2);
    }

    #[test]
    fn removed_txt_record_does_not_drop_a_cached_enforce_policy() {
        let fake = Fake::new("a", ENFORCE);
        let resolver = resolver(&fake);
        resolver.resolve("example.net", 0);
        *fake.txt.borrow_mut() = Ok(None);
        let result = resolver.resolve("example.net", 900);
        assert_eq!(
            (result.state, result.source),
            (MtaSts::Enforce, PolicySource::Cached)
        );
        *fake.txt.borrow_mut() = Err("SERVFAIL".to_owned());
        let result = resolver.resolve("example.net", 999);
        assert_eq!(result.state, MtaSts::Enforce);
        assert_eq!(
            result.failure.unwrap().result_type,
            "sts-policy-fetch-error"
        );
        // Expired: nothing applies any more.
        assert_eq!(resolver.resolve("example.net", 1000).state, MtaSts::None);
    }

    #[test]
    fn forged_second_txt_record_does_not_drop_a_cached_enforce_policy() {
        let fake = Fake::new("a", ENFORCE);
        let resolver = resolver(&fake);
        resolver.resolve("example.net", 0);
        fake.txt
            .borrow_mut()
            .as_mut()
            .unwrap()
            .as_mut()
            .unwrap()
            .push(b"v=STSv1; id=b".to_vec());
        let result = resolver.resolve("example.net", 10);
        assert_eq!(result.state, MtaSts::Enforce);
        assert!(
            result
                .failure
                .unwrap()
                .detail
                .contains("several v=STSv1 records")
        );
    }

    #[test]
    fn no_txt_and_no_cache_is_no_policy() {
        let fake = Fake::new("a", ENFORCE);
        *fake.txt.borrow_mut() = Ok(None);
        let result = resolver(&fake).resolve("example.net", 0);
        assert_eq!(
            (result.state, result.source),
            (MtaSts::None, PolicySource::None)
        );
        assert_eq!(fake.fetches.get(), 0);
    }

    #[test]
    fn failed_fetch_without_cache_is_fetch_failed_not_none() {
        let fake = Fake::new("a", ENFORCE);
        *fake.policy.borrow_mut() = Err(404);
        let result = resolver(&fake).resolve("example.net", 0);
        assert_eq!(result.state, MtaSts::FetchFailed);
        assert_eq!(
            result.context_for("mx.example.net"),
            Some(MtaSts::FetchFailed)
        );
        assert_eq!(
            result.failure.unwrap().result_type,
            "sts-policy-fetch-error"
        );
    }

    #[test]
    fn domain_with_url_syntax_is_not_looked_up_nor_fetched() {
        let fake = Fake::new("a", ENFORCE);
        let resolver = resolver(&fake);
        for domain in [
            "user@attacker.example",
            "example.net/x",
            "example.net:444",
            "[::1]",
            "192.0.2.1",
            "",
        ] {
            let result = resolver.resolve(domain, 0);
            assert_eq!(result.state, MtaSts::None, "{domain}");
            assert!(result.failure.unwrap().detail.contains("not a host name"));
        }
        assert_eq!(fake.fetches.get(), 0);
    }

    #[test]
    fn enforce_policy_refuses_an_mx_it_does_not_name() {
        let fake = Fake::new("a", ENFORCE);
        let result = resolver(&fake).resolve("example.net", 0);
        assert_eq!(result.for_mx("mx1.example.net"), MxVerdict::Enforce);
        assert_eq!(result.for_mx("mx.attacker.example"), MxVerdict::NotAllowed);
        assert_eq!(result.context_for("mx.attacker.example"), None);
        let rpt = result.tls_rpt_policy().unwrap();
        assert_eq!(rpt.policy_type, "sts");
        assert_eq!(rpt.mx_host, ["*.example.net"]);
        assert_eq!(rpt.policy_string[1], "mode: enforce");
    }

    #[test]
    fn mode_none_under_a_new_id_withdraws_the_policy() {
        let fake = Fake::new("a", ENFORCE);
        let resolver = resolver(&fake);
        resolver.resolve("example.net", 0);
        *fake.txt.borrow_mut() = Ok(Some(vec![b"v=STSv1; id=b".to_vec()]));
        *fake.policy.borrow_mut() = Ok("version: STSv1\nmode: none\nmax_age: 1000\n".to_owned());
        let result = resolver.resolve("example.net", 1);
        assert_eq!(result.state, MtaSts::None);
        assert_eq!(result.for_mx("anything.example"), MxVerdict::NoPolicy);
        assert_eq!(result.policy_id.as_deref(), Some("b"));
        assert_eq!(result.tls_rpt_policy(), None);
    }

    #[test]
    fn unreadable_cache_is_reported_and_the_network_still_answers() {
        let fake = Fake::new("a", ENFORCE);
        let resolver = resolver(&fake);
        resolver.resolve("example.net", 0);
        resolver
            .cache
            .connection_for_tests()
            .execute("UPDATE mta_sts_policies SET policy = 'junk'", [])
            .unwrap();
        let result = resolver.resolve("example.net", 1);
        assert!(result.cache_problem.unwrap().contains("no longer parses"));
        assert_eq!(
            (result.state, result.source),
            (MtaSts::Enforce, PolicySource::Fetched)
        );
    }
}
