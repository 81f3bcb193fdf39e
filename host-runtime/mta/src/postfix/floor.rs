//! The floor of a next hop, as the daemon answers it: what DNSSEC, DANE and MTA-STS say of the
//! destination Postfix asks about, resolved with the host's own resolver ([`crate::resolve`]),
//! and written so that Postfix enforces it (`dane-only`, `dane`, `secure match=...`).
//!
//! The promise: adding the daemon to Postfix never makes a destination weaker than Postfix's own
//! DANE (`smtp_tls_security_level = dane`) or postfix-mta-sts-resolver would make it. A floor
//! that cannot be known (the MX lookup failed, every MX host's TLSA lookup failed, or the
//! resolution is still running when the lookup's budget is spent) is answered `TEMP`, so that
//! Postfix defers, never guessed low.
//!
//! [`Floor::of`] is a pure function of a [`DomainResolution`]; [`FloorService`] runs the
//! resolutions on worker threads, off the lookup path, with a bounded cache and queue in front.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use policy_core::{Dane, DeliveryContext, MtaSts};

use crate::clock::{Clock, Deadline, Stopwatch, SystemClock};
use crate::mta_sts::{Mode, StsResult};
use crate::resolve::{DomainResolution, MxList};
use crate::resolve::{DomainResolver, ResolveSettings, ResolverError};
use crate::tlsrpt::datagram::ReportPolicy;

/// What a next-hop key names, for resolution.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `domain` or `domain:port`: MX lookup, TLSA at `_port._tcp.<mx>`, MTA-STS of the domain.
    Domain {
        /// The domain (lower case).
        domain: String,
        /// The SMTP port (25 unless the key names one).
        port: u16,
    },
    /// `[host]` or `[host]:port`: no MX lookup, the host's own DANE, and the MTA-STS policy the
    /// host name publishes, if any.
    Host {
        /// The host (lower case).
        host: String,
        /// The SMTP port.
        port: u16,
    },
    /// An IP address (bracketed or not): there is no name to resolve, so DNS gives no floor.
    Literal,
}

impl Target {
    /// The target of a destination key as
    /// [`destination_key`](super::daemon::destination_key) spells it.
    #[must_use]
    pub fn of(key: &str) -> Self {
        let (host, port, bracketed) = if let Some(rest) = key.strip_prefix('[') {
            let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
            (host, after.strip_prefix(':'), true)
        } else {
            match key.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port), false),
                _ => (key, None, false),
            }
        };
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Self::Literal;
        }
        let port = port.and_then(|p| p.parse().ok()).unwrap_or(25);
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if bracketed {
            Self::Host { host: name, port }
        } else {
            Self::Domain { domain: name, port }
        }
    }

    /// The key of the floor cache (`domain:port` or `[host]:port`).
    fn cache_key(&self) -> Option<String> {
        match self {
            Self::Domain { domain, port } => Some(format!("{domain}:{port}")),
            Self::Host { host, port } => Some(format!("[{host}]:{port}")),
            Self::Literal => None,
        }
    }
}

/// What the resolved DNS and MTA-STS state asks of every delivery to a next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Floor {
    /// Nothing raises the floor beyond what `context` tells the engine (insecure DNS, no DANE,
    /// an MTA-STS policy in `testing` or none, TLSA records that are all unusable): the dance.
    Open {
        /// The engine's view: `dane` is `Unusable` when some MX host has only unusable TLSA
        /// records (TLS required, as Postfix's `dane` level makes it), `mta_sts` the policy's
        /// state.
        context: DeliveryContext,
    },
    /// Every MX host that can be reached has usable DANE TLSA records: Postfix's `dane-only`.
    DaneEvery,
    /// Some MX hosts have usable DANE TLSA records (or their TLSA lookup failed, which Postfix's
    /// own DANE defers), others none: Postfix's `dane`, which verifies the first and treats the
    /// others opportunistically, or `dane-only` where TLS is required anyway.
    DaneSome {
        /// Whether the domain's MTA-STS policy is `enforce` (the hosts without DANE would then
        /// need authenticated TLS too, which `dane` does not give them: `dane-only` is answered).
        sts_enforce: bool,
    },
    /// The domain's MTA-STS policy is `enforce` and no MX host has usable DANE: authenticated
    /// TLS to a host matching one of `patterns`.
    StsEnforce {
        /// The policy's MX patterns as Postfix's `match=` writes them (`*.example.net` as
        /// `.example.net`), in the policy's order, without repeats.
        patterns: Vec<String>,
    },
    /// The domain receives no mail (a null MX, RFC 7505) or does not exist: Postfix finds that
    /// out itself and bounces, so the daemon has nothing to add.
    NoMail {
        /// Which.
        why: String,
    },
    /// The floor cannot be known now: answer `TEMP` so that Postfix defers.
    Unknown {
        /// Why.
        why: String,
    },
}

impl Floor {
    /// The floor a resolution imposes on a next hop (RFC 7672, RFC 8461: DANE first).
    #[must_use]
    pub fn of(resolution: &DomainResolution) -> Self {
        let hosts = match &resolution.mx {
            MxList::Failed { error } => {
                return Self::Unknown {
                    why: format!("the MX lookup failed: {error}"),
                };
            }
            MxList::NullMx => {
                return Self::NoMail {
                    why: "a null MX (RFC 7505)".to_owned(),
                };
            }
            MxList::NoSuchDomain => {
                return Self::NoMail {
                    why: "no such domain".to_owned(),
                };
            }
            MxList::Hosts { hosts, .. } => hosts,
        };
        let sts = &resolution.mta_sts;
        let enforce = sts
            .policy
            .as_ref()
            .filter(|policy| policy.mode == Mode::Enforce);
        let failed = hosts
            .iter()
            .filter(|mx| mx.dane.state() == Dane::LookupFailed)
            .count();
        let reachable: Vec<_> = hosts
            .iter()
            .filter(|mx| !mx.addresses.is_empty() && mx.dane.state() != Dane::LookupFailed)
            .collect();
        let usable = reachable
            .iter()
            .filter(|mx| mx.dane.state() == Dane::Usable)
            .count();
        if reachable.is_empty() && failed > 0 {
            return Self::Unknown {
                why: format!(
                    "the TLSA lookup of every MX host failed ({failed} of {})",
                    hosts.len()
                ),
            };
        }
        if usable > 0 && usable == reachable.len() && failed == 0 {
            return Self::DaneEvery;
        }
        if usable > 0 || failed > 0 {
            return Self::DaneSome {
                sts_enforce: enforce.is_some(),
            };
        }
        if let Some(policy) = enforce {
            let mut patterns: Vec<String> = Vec::new();
            for pattern in &policy.mx {
                let text = pattern.to_string();
                let written = text.strip_prefix('*').unwrap_or(&text).to_owned();
                if !patterns.contains(&written) {
                    patterns.push(written);
                }
            }
            return Self::StsEnforce { patterns };
        }
        let unusable = reachable.iter().any(|mx| mx.dane.state() == Dane::Unusable);
        Self::Open {
            context: DeliveryContext {
                dane: if unusable { Dane::Unusable } else { Dane::None },
                mta_sts: open_sts_state(sts),
                ..DeliveryContext::default()
            },
        }
    }

    /// The short name the daemon's log gives it.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Open { .. } => "none",
            Self::DaneEvery => "dane-only",
            Self::DaneSome { .. } => "dane",
            Self::StsEnforce { .. } => "sts-enforce",
            Self::NoMail { .. } => "no-mail",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// The engine's delivery context for a next hop with this floor. `requires_tls`: the
    /// engine's floor without DNS (profile, pin) already excludes cleartext; for [`DaneSome`]
    /// that makes the answer `dane-only`, so the engine decides for DANE then.
    ///
    /// [`DaneSome`]: Floor::DaneSome
    #[must_use]
    pub fn context(&self, requires_tls: bool) -> DeliveryContext {
        match self {
            Self::Open { context } => *context,
            Self::DaneEvery => DeliveryContext {
                dane: Dane::Usable,
                ..DeliveryContext::default()
            },
            Self::DaneSome { sts_enforce } if *sts_enforce || requires_tls => DeliveryContext {
                dane: Dane::Usable,
                ..DeliveryContext::default()
            },
            Self::StsEnforce { .. } => DeliveryContext {
                mta_sts: MtaSts::Enforce,
                ..DeliveryContext::default()
            },
            Self::DaneSome { .. } | Self::NoMail { .. } | Self::Unknown { .. } => {
                DeliveryContext::default()
            }
        }
    }
}

fn open_sts_state(sts: &StsResult) -> MtaSts {
    match sts.policy.as_ref().map(|policy| policy.mode) {
        Some(Mode::Testing) => MtaSts::Testing,
        Some(Mode::Enforce) => MtaSts::Enforce,
        Some(Mode::None) => MtaSts::None,
        None if sts.state == MtaSts::FetchFailed => MtaSts::FetchFailed,
        None => MtaSts::None,
    }
}

/// A next hop's floor with what the answers and the log say of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedFloor {
    /// The floor.
    pub floor: Floor,
    /// Postfix 3.10's TLSRPT attributes for this destination's MTA-STS policy
    /// (`policy_type=sts policy_domain=... mx_host_pattern=... { policy_string = ... }`), or
    /// `policy_type=no-policy-found ...`; `None` for DANE floors (Postfix reports its own DANE).
    pub tlsrpt: Option<String>,
    /// The MTA-STS policy id, for the log.
    pub policy_id: Option<String>,
    /// What the daemon's own TLS-RPT reports of this destination need (when it reports, for
    /// a recipient domain): its TLSRPT record and the policy of each MX host.
    pub report: Option<DestinationReport>,
}

/// A recipient domain's TLS-RPT facts, resolved with its floor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationReport {
    /// The recipient domain.
    pub domain: String,
    /// Its TLSRPT record, or why there is none to report to.
    pub record: Result<String, String>,
    /// The policy attempts at each MX host are reported under.
    pub policies: Vec<(String, ReportPolicy)>,
}

impl DestinationReport {
    /// What `resolution` says, with the TLSRPT record `record`.
    #[must_use]
    pub fn of(resolution: &DomainResolution, record: Result<String, String>) -> Self {
        let policies = match &resolution.mx {
            MxList::Hosts { hosts, .. } => hosts
                .iter()
                .map(|mx| {
                    (
                        mx.host.clone(),
                        crate::resolve::report_policy(mx, &resolution.mta_sts),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            domain: resolution.domain.clone(),
            record,
            policies,
        }
    }

    /// The policy of the MX host `host` (as the log names it); `no-policy-found` for a host
    /// the resolution did not list.
    #[must_use]
    pub fn policy_for(&self, host: &str) -> ReportPolicy {
        let host = crate::store::peer_key(host);
        self.policies
            .iter()
            .find(|(mx, _)| *mx == host)
            .map_or_else(
                || ReportPolicy::no_policy_found(&self.domain),
                |(_, policy)| policy.clone(),
            )
    }
}

impl ResolvedFloor {
    /// The floor of `resolution`, and its TLSRPT attributes.
    #[must_use]
    pub fn of(resolution: &DomainResolution, has_sts: bool) -> Self {
        let floor = Floor::of(resolution);
        let tlsrpt = match floor {
            _ if !has_sts => None,
            Floor::DaneEvery | Floor::DaneSome { .. } | Floor::NoMail { .. } => None,
            Floor::Unknown { .. } | Floor::StsEnforce { .. } | Floor::Open { .. } => {
                Some(tlsrpt_attributes(&resolution.mta_sts))
            }
        };
        Self {
            floor,
            tlsrpt,
            policy_id: resolution.mta_sts.policy_id.clone(),
            report: None,
        }
    }

    /// A floor that could not be resolved at all.
    #[must_use]
    pub fn unknown(why: impl Into<String>) -> Self {
        Self {
            floor: Floor::Unknown { why: why.into() },
            tlsrpt: None,
            policy_id: None,
            report: None,
        }
    }
}

/// Postfix 3.10's TLSRPT attributes of a policy table answer for the MTA-STS state `sts`
/// (attribute values hold no spaces; `{ ... }` holds one `policy_string` with spaces).
fn tlsrpt_attributes(sts: &StsResult) -> String {
    let domain = &sts.domain;
    match sts.tls_rpt_policy() {
        Some(policy) => {
            let mut text = format!("policy_type=sts policy_domain={domain}");
            for pattern in &policy.mx_host {
                text.push_str(&format!(" mx_host_pattern={pattern}"));
            }
            for line in &policy.policy_string {
                text.push_str(&format!(" {{ policy_string = {line} }}"));
            }
            if let Some(failure) = &sts.failure {
                text.push_str(&format!(" policy_failure={}", failure.result_type));
            }
            text
        }
        None => match &sts.failure {
            Some(failure) => format!(
                "policy_type=sts policy_domain={domain} policy_failure={}",
                failure.result_type
            ),
            None => format!("policy_type=no-policy-found policy_domain={domain}"),
        },
    }
}

/// What a lookup learns of a next hop's floor.
#[derive(Clone, Debug)]
pub enum FloorLookup {
    /// The floor (possibly [`Floor::Unknown`]).
    Known(Arc<ResolvedFloor>),
    /// The next hop is an IP address: DNS gives it no floor.
    NoName,
    /// Not resolved within the budget (or no room to resolve it now): answer `TEMP`.
    NotYet {
        /// Why.
        why: String,
    },
}

/// Where the daemon gets next hops' floors: the [`FloorService`], or in tests a fixed table.
pub trait FloorSource: Send + Sync {
    /// The floor of `target`, waiting at most the budget for one not yet known.
    fn lookup(&self, target: &Target) -> FloorLookup;
    /// The floor of `target` as it stands, without waiting or resolving.
    fn peek(&self, target: &Target) -> Option<Arc<ResolvedFloor>>;
    /// How the cache has served so far (nothing, for a source without one).
    fn counters(&self) -> FloorCounters {
        FloorCounters::default()
    }
}

/// How a floor cache has served, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloorCounters {
    /// Resolutions finished (lookups' and refreshes').
    pub resolutions: u64,
    /// Lookups that found a usable floor in the cache.
    pub cache_hits: u64,
    /// Lookups that had to wait for a resolution (or were answered before it finished).
    pub cache_misses: u64,
}

impl FloorSource for FloorService {
    fn lookup(&self, target: &Target) -> FloorLookup {
        Self::lookup(self, target)
    }

    fn peek(&self, target: &Target) -> Option<Arc<ResolvedFloor>> {
        Self::peek(self, target)
    }

    fn counters(&self) -> FloorCounters {
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        FloorCounters {
            resolutions: load(&self.shared.resolutions),
            cache_hits: load(&self.shared.cache_hits),
            cache_misses: load(&self.shared.cache_misses),
        }
    }
}

/// How the [`FloorService`] works.
#[derive(Clone, Debug)]
pub struct FloorSettings {
    /// The resolvers' settings (one resolver per worker).
    pub resolve: ResolveSettings,
    /// The database holding the MTA-STS policy cache.
    pub db: PathBuf,
    /// How many resolutions run at once (one slow domain must not hold up the others).
    pub workers: usize,
    /// How long one lookup waits for a floor not yet known.
    pub budget: Duration,
    /// How long a resolved floor is used before it is resolved again (in the background: the
    /// lookup that notices gets the floor it has).
    pub refresh_after: Duration,
    /// How long past `refresh_after` a floor is still used while its refresh fails or runs (DNS
    /// down: the last floor known holds, never a weaker guess).
    pub serve_stale_for: Duration,
    /// How soon a floor that came out [`Floor::Unknown`] is tried again.
    pub retry_unknown_after: Duration,
    /// The most next hops whose floor is kept.
    pub max_entries: usize,
    /// The most resolutions waiting for a worker (a flood of unknown domains gets `TEMP` past it).
    pub max_queued: usize,
    /// How long after its last lookup a floor is still refreshed when due without a lookup
    /// asking (so that the next lookup of a destination in use never waits, even after a quiet
    /// spell, while one nobody sends to stops costing DNS and HTTPS).
    pub keep_warm_for: Duration,
    /// How often idle workers look for floors due for a refresh.
    pub sweep_every: Duration,
    /// Whether a recipient domain's TLSRPT record is looked up with its floor (when the daemon
    /// reports TLS-RPT itself).
    pub tlsrpt_records: bool,
}

impl FloorSettings {
    /// The defaults for `resolve` and `db`.
    #[must_use]
    pub fn new(resolve: ResolveSettings, db: PathBuf) -> Self {
        Self {
            resolve,
            db,
            workers: 4,
            budget: Duration::from_secs(2),
            refresh_after: Duration::from_secs(300),
            serve_stale_for: Duration::from_secs(3600),
            retry_unknown_after: Duration::from_secs(5),
            max_entries: 100_000,
            max_queued: 1024,
            keep_warm_for: Duration::from_secs(24 * 3600),
            sweep_every: Duration::from_secs(30),
            tlsrpt_records: false,
        }
    }
}

struct Entry {
    /// What is resolved.
    target: Target,
    floor: Option<Arc<ResolvedFloor>>,
    /// When a lookup last asked for it (the proactive refresh keeps only those in use warm).
    last_used: Stopwatch,
    /// When `floor` was resolved.
    resolved: Stopwatch,
    /// When to resolve again.
    next_refresh: Deadline,
    /// Queued or being resolved now.
    resolving: bool,
}

struct State {
    entries: lru::LruCache<String, Entry>,
    queue: VecDeque<(String, Target)>,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a resolution is done.
    done: Condvar,
    /// Signalled when work is queued (or the service stops).
    work: Condvar,
    settings: FloorSettings,
    /// How many resolutions the workers finished.
    resolutions: std::sync::atomic::AtomicU64,
    /// Lookups that found a usable floor at once.
    cache_hits: std::sync::atomic::AtomicU64,
    /// Lookups that did not.
    cache_misses: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resolves next hops' floors on worker threads, with a bounded cache in front: a lookup waits
/// at most the budget, and a floor in use is refreshed before it goes stale.
pub struct FloorService {
    shared: Arc<Shared>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FloorService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloorService")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl FloorService {
    /// Sets up one resolver per worker (so that a bad trust anchor or an unreadable database is
    /// an error now, not at the first lookup) and starts the workers.
    ///
    /// # Errors
    ///
    /// A resolver that cannot be set up.
    pub fn start(settings: FloorSettings) -> Result<Self, ResolverError> {
        let mut resolvers = Vec::new();
        for _ in 0..settings.workers.max(1) {
            resolvers.push(DomainResolver::new(&settings.resolve, &settings.db)?);
        }
        let capacity = std::num::NonZeroUsize::new(settings.max_entries.max(1))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                entries: lru::LruCache::new(capacity),
                queue: VecDeque::new(),
                stopping: false,
            }),
            done: Condvar::new(),
            work: Condvar::new(),
            settings,
            resolutions: std::sync::atomic::AtomicU64::new(0),
            cache_hits: std::sync::atomic::AtomicU64::new(0),
            cache_misses: std::sync::atomic::AtomicU64::new(0),
        });
        let workers = resolvers
            .into_iter()
            .map(|resolver| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || work(&shared, &resolver))
            })
            .collect();
        Ok(Self { shared, workers })
    }

    /// The floor of `target`, waiting at most the budget for one not yet known.
    #[must_use]
    pub fn lookup(&self, target: &Target) -> FloorLookup {
        let Some(key) = target.cache_key() else {
            return FloorLookup::NoName;
        };
        let settings = &self.shared.settings;
        let deadline = Deadline::after(settings.budget);
        let usable_for = settings.refresh_after + settings.serve_stale_for;
        let mut state = self.shared.lock();
        let mut first_look = true;
        loop {
            // One cache lookup on the hot path: mark the entry used, and take its floor (with
            // whether a refresh is due) while it is still usable.
            let usable = state.entries.get_mut(&key).and_then(|entry| {
                entry.last_used = Stopwatch::start();
                let floor = entry
                    .floor
                    .as_ref()
                    .filter(|_| entry.resolved.elapsed() <= usable_for)?;
                let due = entry.next_refresh.left().is_zero() && !entry.resolving;
                Some((Arc::clone(floor), due))
            });
            if std::mem::take(&mut first_look) {
                let counter = if usable.is_some() {
                    &self.shared.cache_hits
                } else {
                    &self.shared.cache_misses
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some((floor, due)) = usable {
                if due && enqueue(&mut state, settings, &key, target).is_ok() {
                    // Refreshed in the background: this lookup gets the floor there is.
                    self.shared.work.notify_one();
                }
                return FloorLookup::Known(floor);
            }
            let resolving = state.entries.peek(&key).is_some_and(|e| e.resolving);
            if !resolving {
                if let Err(why) = enqueue(&mut state, settings, &key, target) {
                    return FloorLookup::NotYet { why };
                }
                self.shared.work.notify_one();
            }
            let left = deadline.left();
            if left.is_zero() {
                return FloorLookup::NotYet {
                    why: format!(
                        "still resolving after the lookup budget of {} ms",
                        settings.budget.as_millis()
                    ),
                };
            }
            state = self
                .shared
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The floor of `target` as it stands, without waiting or resolving (the outcome of an
    /// attempt is judged under the floor its lookup was answered with).
    #[must_use]
    pub fn peek(&self, target: &Target) -> Option<Arc<ResolvedFloor>> {
        let key = target.cache_key()?;
        self.shared.lock().entries.peek(&key)?.floor.clone()
    }

    /// How many resolutions have finished (lookups' and refreshes').
    #[must_use]
    pub fn resolutions(&self) -> u64 {
        self.shared
            .resolutions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many next hops have a floor or a resolution under way, and how many wait for a worker.
    #[must_use]
    pub fn sizes(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.entries.len(), state.queue.len())
    }
}

impl Drop for FloorService {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Queues `target` for a worker, marking its entry as resolving.
fn enqueue(
    state: &mut State,
    settings: &FloorSettings,
    key: &str,
    target: &Target,
) -> Result<(), String> {
    if state.queue.len() >= settings.max_queued {
        return Err(format!(
            "{} next hops are waiting to be resolved (the limit)",
            settings.max_queued
        ));
    }
    match state.entries.get_mut(key) {
        Some(entry) => entry.resolving = true,
        None => {
            state.entries.push(
                key.to_owned(),
                Entry {
                    target: target.clone(),
                    floor: None,
                    last_used: Stopwatch::start(),
                    resolved: Stopwatch::start(),
                    next_refresh: Deadline::after(Duration::ZERO),
                    resolving: true,
                },
            );
        }
    }
    state.queue.push_back((key.to_owned(), target.clone()));
    Ok(())
}

/// The proactive refresh: queues every floor due for a refresh whose destination was looked up
/// within `keep_warm_for`, as far as the queue has room.
fn queue_due_refreshes(state: &mut State, settings: &FloorSettings) {
    let due: Vec<(String, Target)> = state
        .entries
        .iter()
        .filter(|(_, entry)| {
            entry.floor.is_some()
                && !entry.resolving
                && entry.next_refresh.left().is_zero()
                && entry.last_used.elapsed() <= settings.keep_warm_for
        })
        .map(|(key, entry)| (key.clone(), entry.target.clone()))
        .collect();
    for (key, target) in due {
        if enqueue(state, settings, &key, &target).is_err() {
            break;
        }
    }
}

/// A worker: takes queued next hops, resolves each without the lock, and stores the floor.
fn work(shared: &Shared, resolver: &DomainResolver) {
    let settings = &shared.settings;
    loop {
        let (key, target) = {
            let mut state = shared.lock();
            loop {
                if state.stopping {
                    return;
                }
                if let Some(next) = state.queue.pop_front() {
                    break next;
                }
                let (next, waited) = shared
                    .work
                    .wait_timeout(state, settings.sweep_every)
                    .unwrap_or_else(PoisonError::into_inner);
                state = next;
                if waited.timed_out() {
                    queue_due_refreshes(&mut state, settings);
                    if !state.queue.is_empty() {
                        shared.work.notify_all();
                    }
                }
            }
        };
        let resolved = Arc::new(resolve(resolver, &target, settings.tlsrpt_records));
        shared
            .resolutions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut state = shared.lock();
        let usable_for = settings.refresh_after + settings.serve_stale_for;
        let unknown = matches!(resolved.floor, Floor::Unknown { .. });
        match state.entries.get_mut(&key) {
            Some(entry) => {
                let keep_old = unknown
                    && entry.floor.as_ref().is_some_and(|old| {
                        !matches!(old.floor, Floor::Unknown { .. })
                            && entry.resolved.elapsed() <= usable_for
                    });
                if keep_old {
                    // DNS or HTTPS down: the last floor known holds until it is too old.
                    entry.next_refresh = Deadline::after(settings.retry_unknown_after);
                } else {
                    entry.floor = Some(resolved);
                    entry.resolved = Stopwatch::start();
                    entry.next_refresh = Deadline::after(if unknown {
                        settings.retry_unknown_after
                    } else {
                        settings.refresh_after
                    });
                }
                entry.resolving = false;
            }
            None => {
                state.entries.push(
                    key,
                    Entry {
                        target,
                        floor: Some(resolved),
                        last_used: Stopwatch::start(),
                        resolved: Stopwatch::start(),
                        next_refresh: Deadline::after(settings.refresh_after),
                        resolving: false,
                    },
                );
            }
        }
        drop(state);
        shared.done.notify_all();
    }
}

fn resolve(resolver: &DomainResolver, target: &Target, tlsrpt_records: bool) -> ResolvedFloor {
    match target {
        Target::Domain { domain, port } => {
            let resolution = resolver.resolve_at(domain, *port, SystemClock.now());
            let mut floor = ResolvedFloor::of(&resolution, true);
            if tlsrpt_records {
                let record = resolver
                    .tlsrpt_record(domain)
                    .map_err(|error| error.to_string());
                floor.report = Some(DestinationReport::of(&resolution, record));
            }
            floor
        }
        Target::Host { host, port } => {
            let resolution = resolver.resolve_host(host, *port, SystemClock.now());
            ResolvedFloor::of(&resolution, true)
        }
        Target::Literal => ResolvedFloor::unknown("an IP address has no name to resolve"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Security;
    use crate::mta_sts::MxVerdict;
    use crate::mta_sts::{MxPattern, Policy, PolicySource};
    use crate::resolve::{DaneResolution, MxResolution, TlsaText};

    fn mx(host: &str, dane: DaneResolution) -> MxResolution {
        MxResolution {
            host: host.to_owned(),
            preference: 10,
            addresses: vec!["127.0.0.1".parse().unwrap()],
            address_security: Some(Security::Secure),
            dane,
            mta_sts: MxVerdict::NoPolicy,
            mta_sts_state: Some(MtaSts::None),
            unusable: None,
            tlsa: Vec::new(),
        }
    }

    fn usable() -> DaneResolution {
        DaneResolution::Usable {
            records: vec![TlsaText("3 1 1 ab".to_owned())],
            base_domain: "mx.example.test".to_owned(),
        }
    }

    fn failed() -> DaneResolution {
        DaneResolution::LookupFailed {
            error: "SERVFAIL".to_owned(),
        }
    }

    fn domain(hosts: Vec<MxResolution>, sts: StsResult) -> DomainResolution {
        DomainResolution {
            domain: "example.test".to_owned(),
            mx: MxList::Hosts {
                security: Security::Secure,
                implicit: false,
                hosts,
            },
            mta_sts: sts,
        }
    }

    fn enforce(patterns: &[&str]) -> StsResult {
        StsResult {
            state: MtaSts::Enforce,
            policy: Some(Policy::new(
                Mode::Enforce,
                86400,
                patterns
                    .iter()
                    .map(|p| MxPattern::parse(p).unwrap())
                    .collect(),
            )),
            policy_id: Some("20261202".to_owned()),
            source: PolicySource::Fetched,
            ..StsResult::none("example.test")
        }
    }

    #[test]
    fn every_mx_dane_usable_is_dane_only() {
        let r = domain(
            vec![mx("a.test", usable()), mx("b.test", usable())],
            StsResult::none("example.test"),
        );
        assert_eq!(Floor::of(&r), Floor::DaneEvery);
    }

    #[test]
    fn dane_takes_precedence_over_an_enforced_mta_sts_policy() {
        let r = domain(vec![mx("a.test", usable())], enforce(&["a.test"]));
        assert_eq!(Floor::of(&r), Floor::DaneEvery);
        let r = domain(
            vec![
                mx("a.test", usable()),
                mx("b.test", DaneResolution::SecureAbsent),
            ],
            enforce(&["*.test"]),
        );
        let floor = Floor::of(&r);
        assert_eq!(floor, Floor::DaneSome { sts_enforce: true });
        // The hosts without DANE still need authenticated TLS: dane-only, never `dane`'s `may`.
        assert_eq!(floor.context(false).dane, Dane::Usable);
    }

    #[test]
    fn a_failed_tlsa_lookup_of_one_mx_is_left_to_postfix_dane_never_answered_encrypt() {
        let r = domain(
            vec![
                mx("a.test", failed()),
                mx("b.test", DaneResolution::SecureAbsent),
            ],
            StsResult::none("example.test"),
        );
        assert_eq!(Floor::of(&r), Floor::DaneSome { sts_enforce: false });
    }

    #[test]
    fn every_tlsa_lookup_failed_is_unknown_not_insecure() {
        let r = domain(
            vec![mx("a.test", failed()), mx("b.test", failed())],
            StsResult::none("example.test"),
        );
        assert!(matches!(Floor::of(&r), Floor::Unknown { .. }));
    }

    #[test]
    fn a_failed_mx_lookup_is_unknown() {
        let r = DomainResolution {
            domain: "example.test".to_owned(),
            mx: MxList::Failed {
                error: "timeout".to_owned(),
            },
            mta_sts: StsResult::none("example.test"),
        };
        assert!(matches!(Floor::of(&r), Floor::Unknown { .. }));
    }

    #[test]
    fn enforced_mta_sts_patterns_are_written_as_postfix_match_values() {
        let r = domain(
            vec![mx("mx.a.test", DaneResolution::Insecure)],
            enforce(&["mx.a.test", "*.b.test", "mx.a.test"]),
        );
        assert_eq!(
            Floor::of(&r),
            Floor::StsEnforce {
                patterns: vec!["mx.a.test".to_owned(), ".b.test".to_owned()]
            }
        );
        let resolved = ResolvedFloor::of(&r, true);
        let tlsrpt = resolved.tlsrpt.unwrap();
        assert!(
            tlsrpt.starts_with(
                "policy_type=sts policy_domain=example.test mx_host_pattern=mx.a.test \
                 mx_host_pattern=*.b.test"
            ),
            "{tlsrpt}"
        );
        assert!(
            tlsrpt.contains("{ policy_string = mode: enforce }"),
            "{tlsrpt}"
        );
    }

    #[test]
    fn unusable_tlsa_records_require_tls_in_the_dance() {
        let r = domain(
            vec![mx(
                "a.test",
                DaneResolution::Unusable {
                    records: Vec::new(),
                },
            )],
            StsResult::none("example.test"),
        );
        let Floor::Open { context } = Floor::of(&r) else {
            panic!("open floor expected");
        };
        assert_eq!(context.dane, Dane::Unusable);
    }

    #[test]
    fn next_hop_keys_name_their_targets() {
        assert_eq!(
            Target::of("example.test"),
            Target::Domain {
                domain: "example.test".into(),
                port: 25
            }
        );
        assert_eq!(
            Target::of("example.test:2525"),
            Target::Domain {
                domain: "example.test".into(),
                port: 2525
            }
        );
        assert_eq!(
            Target::of("[mx.example.test]:587"),
            Target::Host {
                host: "mx.example.test".into(),
                port: 587
            }
        );
        assert_eq!(Target::of("[127.0.0.1]:2525"), Target::Literal);
        assert_eq!(Target::of("127.0.0.1:2525"), Target::Literal);
        assert_eq!(Target::of("[::1]:25"), Target::Literal);
    }
}
