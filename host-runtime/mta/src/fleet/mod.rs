//! The fleet's shared copy of each peer's history, in Redis (or Valkey, or a Redis Cluster).
//!
//! The promise: every node's decisions come from its own SQLite history, with whatever the fleet
//! learned merged in when Redis answers within the budget, and from the local history alone when
//! it does not. Redis is soft state: it may stall, forget everything or refuse writes, and no
//! decision waits on it for longer than the budget, nor gets weaker for it.
//!
//! - One hash per peer, `tlsfb:v1:{<peer>}:h`, with the fields `v` (a version the writer bumps)
//!   and `b` (the history blob without a dance: the memory only). The braces are a Redis Cluster
//!   hash tag, so the key's slot is the peer's; `v1` names the blob's schema.
//! - Reads go through a small per-node cache (entries live [`FleetSettings::cache_ttl`]).
//! - Writes merge in Rust ([`policy_core::blob_to_share`], a semilattice join: any order, duplicate
//!   or retry of writes ends in the same copy), then compare-and-set the version in one Lua script
//!   ([`redis::Script`]: EVALSHA, loaded again on NOSCRIPT, so a restarted or failed-over server
//!   costs one extra round trip). A conflict answers with the newer copy, which is merged and
//!   tried again. An ambiguous timeout (the write may have been applied) is harmless to retry:
//!   merging a copy twice changes nothing. Nothing is written when the merge changes nothing.
//! - Every call runs to a [`Deadline`]; errors and timeouts feed a [`Breaker`], which stops
//!   calling a server that keeps failing and lets one trial call through after its cooldown.
//!
//! The history store decides when to read and write; this module only talks to Redis.

mod breaker;
mod link;

use std::path::PathBuf;
use std::time::Duration;

use crate::causes::Causes;
use crate::clock::{Deadline, Stopwatch};

pub use breaker::{Breaker, BreakerSettings, CircuitState};
use link::Link;
pub use tlsfallback_engine::fleet_protocol::{
    BLOB_FIELD, CAS_ROUNDS, COMPARE_AND_SET_SCRIPT, KEY_PREFIX, KEY_SUFFIX, SHORTEST_KEY_TTL,
    VERSION_FIELD,
};

/// The longest a decision waits for Redis by default.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);
/// How long a node trusts a shared copy it read before reading it again, by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// The longest the first call of a process may take: connecting (a TCP and perhaps a TLS
/// handshake, AUTH) costs more than a call on an open connection, and a short-lived process such
/// as `deliver` pays it at every run.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Peers a node remembers the shared copy of.
const CACHE_ENTRIES: usize = 16_384;

/// How a node reaches the fleet's Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. With
    /// [`cluster`](Self::cluster), one node of the cluster (the others are discovered).
    pub url: String,
    /// Whether `url` is a node of a Redis Cluster.
    pub cluster: bool,
    /// The PEM file of the certificate authorities a `rediss://` server is checked against
    /// (`None`: the system's).
    pub ca_file: Option<PathBuf>,
    /// The longest a decision waits for Redis (a read before it, the write after it, together).
    pub budget: Duration,
    /// The longest the first call of a process may wait (it connects), when that is longer than
    /// the budget left.
    pub connect_timeout: Duration,
    /// How long a shared copy read is trusted before it is read again.
    pub cache_ttl: Duration,
    /// How long a shared copy lives after its last write (see [`key_ttl_for`]).
    pub key_ttl: Duration,
    /// When to stop calling a failing Redis.
    pub breaker: BreakerSettings,
}

impl FleetSettings {
    /// The defaults for `url`: a 50 ms budget (250 ms to connect), a 5 s cache, a key TTL of one
    /// day, the default breaker.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: false,
            ca_file: None,
            budget: DEFAULT_BUDGET,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            key_ttl: SHORTEST_KEY_TTL,
            breaker: BreakerSettings::default(),
        }
    }
}

/// A shared copy's TTL past the longest horizon in a blob written under `policies`: twice the
/// longest pin or re-probe interval, and at least a day. An expired copy means "nothing known",
/// which starts a peer at the top tier: the safe direction.
pub fn key_ttl_for<'a>(policies: impl IntoIterator<Item = &'a policy_core::Policy>) -> Duration {
    let longest = policies
        .into_iter()
        .map(|p| p.pin_duration_secs.max(p.reprobe_interval_secs))
        .max()
        .unwrap_or(0);
    Duration::from_secs(2 * u64::from(longest)).max(SHORTEST_KEY_TTL)
}

/// The Redis key of a peer's shared copy (the peer as the store's `peer_key` spells it).
#[must_use]
pub fn key_of(peer: &str) -> String {
    format!("{KEY_PREFIX}{peer}{KEY_SUFFIX}")
}

/// Why the fleet could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The URL is not one of a Redis server.
    #[error("the fleet URL {url:?} is not usable: {}", Causes(.cause))]
    Url {
        /// The URL, its password hidden.
        url: String,
        /// The redis crate's error.
        cause: redis::RedisError,
    },
    /// The certificate authority file cannot be read.
    #[error("reading the fleet's CA file {}: {}", .path.display(), Causes(.cause))]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A CA file was given for a Redis Cluster: a cluster over TLS is checked against the
    /// system's certificate authorities.
    #[error(
        "a CA file is not supported with a Redis Cluster: install the CA in the system's store"
    )]
    ClusterCaFile,
    /// The runtime the Redis client runs on cannot be started.
    #[error("starting the fleet's runtime: {}", Causes(.0))]
    Runtime(std::io::Error),
}

/// Why a call to the fleet gave no answer (the decision then goes on from local state).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The circuit is open: Redis failed repeatedly and is not called until the cooldown ends.
    #[error("the circuit to the fleet's Redis is open after repeated errors")]
    CircuitOpen,
    /// The budget of this decision was spent before the call could start.
    #[error("no time was left in this decision's budget for the fleet")]
    NoTimeLeft,
    /// Redis did not answer within the budget (the call may still take effect).
    #[error("the fleet's Redis did not answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("the fleet's Redis failed: {}", Causes(.0))]
    Redis(redis::RedisError),
    /// Other nodes kept changing the copy: every compare-and-set round lost.
    #[error("the shared copy of {0} kept changing ({CAS_ROUNDS} compare-and-set rounds lost)")]
    Contended(String),
    /// The local history is not in the engine's format (a plugin's opaque history): it is not
    /// shared.
    #[error("the local history of {0} is not in the built-in format and is not shared")]
    NotShareable(String),
}

/// A peer's shared copy as Redis has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedCopy {
    /// The writer's version (compared, never interpreted).
    pub version: String,
    /// The blob, as stored: outside input, read with [`policy_core::History::decode`] before it is trusted.
    pub blob: Vec<u8>,
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Published {
    /// The shared copy already knew everything the local history knows: nothing was written.
    Unchanged,
    /// The merge was written, after this many lost compare-and-set rounds.
    Written {
        /// Rounds lost to other writers first.
        conflicts: u32,
    },
}

/// What the fleet did so far (for `peers show`, tests and, later, metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetCounters {
    /// Reads answered from the cache.
    pub cache_hits: u64,
    /// Reads sent to Redis and answered.
    pub reads: u64,
    /// Writes sent and applied.
    pub writes: u64,
    /// Writes not needed: the shared copy already covered the local history.
    pub unchanged: u64,
    /// Compare-and-set rounds lost to another writer.
    pub conflicts: u64,
    /// Calls that ran out of time.
    pub timeouts: u64,
    /// Calls that failed (an error reply, a lost connection).
    pub errors: u64,
    /// Calls not made: the circuit was open, or the budget spent.
    pub skipped: u64,
}

struct Cached {
    copy: Option<SharedCopy>,
    read_at: Duration,
}

/// A node's link to the fleet: the Redis client, its cache and breaker. Calls block the calling
/// thread (on a runtime of its own) for at most the time left to their [`Deadline`].
pub struct Fleet {
    settings: FleetSettings,
    runtime: tokio::runtime::Runtime,
    link: Link,
    breaker: Breaker,
    cache: lru::LruCache<String, Cached>,
    origin: Stopwatch,
    counters: FleetCounters,
    merge_up_due: bool,
    /// Whether this process called Redis yet: the first call may take the connect timeout (once
    /// only, so a server that swallows packets costs a daemon 250 ms once, not at every call
    /// until the circuit opens).
    called: bool,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("url", &link::redacted(&self.settings.url))
            .field("cluster", &self.settings.cluster)
            .field("circuit", &self.breaker.state())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Sets up the link (connecting happens at the first call, so a node starts while Redis is
    /// down).
    ///
    /// # Errors
    ///
    /// A URL that is not one of Redis, an unreadable CA file, no runtime.
    pub fn connect(settings: FleetSettings) -> Result<Self, FleetError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(FleetError::Runtime)?;
        let link = Link::new(&settings, &runtime)?;
        Ok(Self {
            breaker: Breaker::new(settings.breaker),
            settings,
            runtime,
            link,
            cache: lru::LruCache::new(CACHE_ENTRIES.try_into().expect("not zero")),
            origin: Stopwatch::start(),
            counters: FleetCounters::default(),
            merge_up_due: true,
            called: false,
        })
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    /// The deadline of one decision's calls: the budget from now.
    #[must_use]
    pub fn deadline(&self) -> Deadline {
        Deadline::after(self.settings.budget)
    }

    /// What the fleet did so far.
    #[must_use]
    pub fn counters(&self) -> FleetCounters {
        self.counters
    }

    /// Where the circuit stands.
    #[must_use]
    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// The breaker's transitions: times opened, times closed again.
    #[must_use]
    pub fn circuit_transitions(&self) -> (u64, u64) {
        self.breaker.transitions()
    }

    /// Whether local changes Redis missed should be merged up now: once after the first answer
    /// of this process, and again each time the circuit closes. Asking clears it.
    pub fn take_merge_up_due(&mut self) -> bool {
        std::mem::take(&mut self.merge_up_due)
    }

    /// Asks for the merge-up again (the last one ran out of time or peers).
    pub fn merge_up_again(&mut self) {
        self.merge_up_due = true;
    }

    /// The peer's shared copy (`None`: Redis knows nothing of it), from the cache while fresh.
    ///
    /// # Errors
    ///
    /// No answer within `deadline`, the circuit open, a Redis error.
    pub fn shared(
        &mut self,
        peer: &str,
        deadline: Deadline,
    ) -> Result<Option<SharedCopy>, Unavailable> {
        let now = self.origin.elapsed();
        if let Some(cached) = self.cache.get(peer)
            && now.saturating_sub(cached.read_at) < self.settings.cache_ttl
        {
            self.counters.cache_hits += 1;
            return Ok(cached.copy.clone());
        }
        let copy = self.read(peer, deadline)?;
        Ok(copy)
    }

    /// The peer's shared copy, read from Redis now (the cache refreshed with it).
    ///
    /// # Errors
    ///
    /// As [`shared`](Self::shared).
    pub fn read(
        &mut self,
        peer: &str,
        deadline: Deadline,
    ) -> Result<Option<SharedCopy>, Unavailable> {
        let key = key_of(peer);
        let copy = self.call(deadline, |link| Box::pin(link.read(key)))?;
        self.counters.reads += 1;
        self.remember(peer, copy.clone());
        Ok(copy)
    }

    /// Merges `local` (a history blob in the engine's format) into the peer's shared copy:
    /// reads the copy (from the cache while fresh), merges, and compare-and-sets it, again with
    /// the newer copy after each lost round. Writes nothing when the shared copy already covers
    /// `local`.
    ///
    /// # Errors
    ///
    /// `local` not in the engine's format, no answer within `deadline`, the circuit open, a Redis
    /// error, or every round lost.
    pub fn publish(
        &mut self,
        peer: &str,
        local: &[u8],
        deadline: Deadline,
    ) -> Result<Published, Unavailable> {
        let mut current = self.shared(peer, deadline)?;
        let mut conflicts = 0;
        while conflicts < CAS_ROUNDS {
            let Ok(merged) = policy_core::blob_to_share(
                local,
                current.as_ref().map(|copy| copy.blob.as_slice()),
            ) else {
                return Err(Unavailable::NotShareable(peer.to_owned()));
            };
            if current.as_ref().map(|copy| copy.blob.as_slice()) == Some(merged.as_bytes()) {
                self.counters.unchanged += 1;
                return Ok(Published::Unchanged);
            }
            let key = key_of(peer);
            let expected = current.as_ref().map(|copy| copy.version.clone());
            let blob = merged.as_bytes().to_vec();
            let ttl = self.settings.key_ttl;
            match self.call(deadline, move |link| {
                Box::pin(link.compare_and_set(key, expected, blob, ttl))
            })? {
                Ok(written) => {
                    self.counters.writes += 1;
                    self.remember(peer, Some(written));
                    return Ok(Published::Written { conflicts });
                }
                Err(newer) => {
                    conflicts += 1;
                    self.counters.conflicts += 1;
                    self.remember(peer, newer.clone());
                    current = newer;
                }
            }
        }
        Err(Unavailable::Contended(peer.to_owned()))
    }

    /// Forgets the cached copy of `peer` (after the operator forgot the peer).
    pub fn forget_cached(&mut self, peer: &str) {
        self.cache.pop(peer);
    }

    /// Deletes the peer's shared copy (the operator forgetting it fleet-wide); whether there was
    /// one. Other nodes keep their own histories of the peer: the merge has no way to tell a
    /// forgotten fact from one not yet shared, so each merges its history up again at its next
    /// change for the peer unless it forgot the peer too.
    ///
    /// # Errors
    ///
    /// No answer within `deadline`, the circuit open, a Redis error.
    pub fn forget(&mut self, peer: &str, deadline: Deadline) -> Result<bool, Unavailable> {
        let key = key_of(peer);
        let deleted = self.call(deadline, |link| Box::pin(link.delete(key)))?;
        self.forget_cached(peer);
        Ok(deleted)
    }

    fn remember(&mut self, peer: &str, copy: Option<SharedCopy>) {
        let read_at = self.origin.elapsed();
        self.cache.put(peer.to_owned(), Cached { copy, read_at });
    }

    /// Runs one Redis call to `deadline`, through the breaker.
    fn call<T>(
        &mut self,
        deadline: Deadline,
        call: impl FnOnce(&mut Link) -> link::Call<'_, T>,
    ) -> Result<T, Unavailable> {
        let mut left = deadline.left();
        if !std::mem::replace(&mut self.called, true) {
            left = left.max(self.settings.connect_timeout);
        }
        if left.is_zero() {
            self.counters.skipped += 1;
            return Err(Unavailable::NoTimeLeft);
        }
        if !self.breaker.allow(self.origin.elapsed()) {
            self.counters.skipped += 1;
            return Err(Unavailable::CircuitOpen);
        }
        let Self { runtime, link, .. } = self;
        let answer = runtime.block_on(async { tokio::time::timeout(left, call(link)).await });
        match answer {
            Ok(Ok(value)) => {
                if self.breaker.succeeded() {
                    self.merge_up_due = true;
                }
                Ok(value)
            }
            Ok(Err(error)) => {
                self.counters.errors += 1;
                self.breaker.failed(self.origin.elapsed());
                self.link.after_error(&error);
                Err(Unavailable::Redis(error))
            }
            Err(_elapsed) => {
                self.counters.timeouts += 1;
                self.breaker.failed(self.origin.elapsed());
                Err(Unavailable::TimedOut(left))
            }
        }
    }
}
