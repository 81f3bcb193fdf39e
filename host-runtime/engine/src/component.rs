//! The policy component, embedded and run with wasmtime.
//!
//! One [`PolicyComponent`] compiles (or loads precompiled) a component once and pre-links it
//! against an empty [`Linker`]: a component that imports anything is refused before any call. Each
//! distinct [`Policy`] becomes one `decider` resource in the instance, made on first use and kept,
//! so a decision is one call carrying only what changes per attempt.
//!
//! Instances come from wasmtime's pooling allocator. A call runs either on one warm instance
//! (replaced after a trap: a trapped instance is poisoned) or, with
//! [`ComponentConfig::fresh_instance_per_call`], on a new instance every time. Optional
//! [`CallLimits`] bound each call's CPU (fuel and an epoch deadline) and memory.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};

use policy_core::{AttemptReport, Decision, DeliveryContext, Policy, UnixSeconds};

mod generated {
    wasmtime::component::bindgen!({ path: "../../wit", world: "policy-engine" });
}

use generated::exports::tlsfallback::policy::engine as wit;
use generated::{PolicyEngine, PolicyEnginePre};

// `From`/`TryFrom` impls between the generated types and policy-core's (shared with the guest).
tlsfallback_wit_mapping::wit_mapping!();

/// The WIT interface every policy component must export, with the version this host speaks.
pub const EXPORTED_INTERFACE: &str = "tlsfallback:policy/engine@0.2.0";

/// The name of [`EXPORTED_INTERFACE`] without its version.
const INTERFACE_NAME: &str = "tlsfallback:policy/engine";

/// Why a call into a policy component gave no decision. Every variant leaves the host serving:
/// the instance that failed is discarded and the next call gets a fresh one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The call used up its fuel: a loop that does not end, or far more work than a policy needs.
    #[error("the policy component used up its fuel ({fuel} units) in one call")]
    OutOfFuel {
        /// The fuel one call gets.
        fuel: u64,
    },
    /// The call ran past its wall-clock deadline.
    #[error("the policy component ran past its deadline of {} ms", .deadline.as_millis())]
    DeadlineExceeded {
        /// The deadline of one call.
        deadline: Duration,
    },
    /// The component asked for more linear memory than it may have.
    #[error(
        "the policy component asked for {requested} bytes of memory; the limit is {limit} bytes"
    )]
    MemoryLimit {
        /// The memory size the component tried to grow to, in bytes.
        requested: usize,
        /// The most it may have, in bytes.
        limit: usize,
    },
    /// The component trapped (an `unreachable`, an out-of-bounds access, a panic in the guest).
    #[error("the policy component trapped: {0}")]
    Trapped(String),
    /// The component returned something that is not a valid `decision`: a value the canonical
    /// ABI cannot lift (a bad discriminant, a list out of bounds, invalid UTF-8).
    #[error("the policy component returned an invalid decision: {0}")]
    InvalidOutput(String),
    /// The decision's history blob is longer than the contract's
    /// [`MAX_HISTORY_LEN`](policy_core::MAX_HISTORY_LEN) bytes.
    #[error(
        "the policy component returned a history blob of {len} bytes; the contract allows {}",
        policy_core::MAX_HISTORY_LEN
    )]
    HistoryTooLong {
        /// The blob's length.
        len: usize,
    },
}

impl CallError {
    /// Every cause's name, in declaration order: the fixed label set of the plugin failure
    /// metric.
    pub const CAUSES: [&'static str; 6] = [
        "out-of-fuel",
        "deadline-exceeded",
        "memory-limit",
        "trapped",
        "invalid-output",
        "history-too-long",
    ];

    /// The kebab-case name of the cause (one of [`CAUSES`](Self::CAUSES)), without its details.
    #[must_use]
    pub const fn cause(&self) -> &'static str {
        let index = match self {
            Self::OutOfFuel { .. } => 0,
            Self::DeadlineExceeded { .. } => 1,
            Self::MemoryLimit { .. } => 2,
            Self::Trapped(_) => 3,
            Self::InvalidOutput(_) => 4,
            Self::HistoryTooLong { .. } => 5,
        };
        Self::CAUSES[index]
    }
}

/// Why a component could not be loaded: reported at start-up, before any call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// wasmtime refused: the bytes are not a component, the engine's configuration, linking, or
    /// a precompiled artifact. (wasmtime's error is an `anyhow::Error`, kept as its text with
    /// its causes.)
    #[error("{doing}: {cause}")]
    Wasmtime {
        /// What the host was doing.
        doing: &'static str,
        /// wasmtime's error, with its causes.
        cause: String,
    },
    /// The component imports something; a policy component must import nothing.
    #[error(
        "the policy component imports {}; a policy component must import nothing (the host owns \
         DNS, sockets, clocks and storage)",
        .0.join(", ")
    )]
    Imports(Vec<String>),
    /// It exports no `tlsfallback:policy/engine`, or one at a version this host cannot call.
    #[error("{0}")]
    Interface(String),
    /// The precompiled cache could not be written.
    #[error("{doing} {}: {cause}", .path.display())]
    Cache {
        /// What the host was doing.
        doing: &'static str,
        /// The directory or file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// wasmtime has its own error type (anyhow's): its text, causes included, goes into the host's.
fn wasm_error(error: &wasmtime::Error, doing: &'static str) -> LoadError {
    LoadError::Wasmtime {
        doing,
        cause: format!("{error:#}"),
    }
}

/// The built-in policy component (`wasm32-unknown-unknown` guest wrapped by the build script).
pub static EMBEDDED_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/policy_engine.wasm"));

/// The tools component (`bindings/tools`: the engine and `tlsfallback:policy/tools`, the
/// simulator, presets and history decoder), shipped for the playground; the host never runs it.
pub static TOOLS_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy_tools.wasm"));

/// Bounds on one call into a component that is not trusted to behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallLimits {
    /// Fuel for one call (about one unit per WebAssembly instruction); running out traps.
    pub fuel: u64,
    /// Wall-clock bound on one call, enforced by wasmtime's epoch interruption (granularity
    /// [`EPOCH_TICK`]); a call past it traps.
    pub deadline: Duration,
    /// The most linear memory an instance may have, in bytes; `memory.grow` past it fails.
    pub max_memory_bytes: usize,
}

impl Default for CallLimits {
    /// Generous for any sane policy and small enough that a hostile one is stopped within
    /// milliseconds.
    fn default() -> Self {
        Self {
            fuel: 10_000_000,
            deadline: Duration::from_millis(100),
            max_memory_bytes: 16 << 20,
        }
    }
}

/// How often the epoch advances when [`CallLimits`] are on.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How a [`PolicyComponent`] runs its calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Bound every call (for components from outside this build); `None` trusts the component.
    pub limits: Option<CallLimits>,
    /// Instantiate anew for every call instead of keeping one warm instance: nothing a call
    /// leaves in the instance can reach the next one.
    pub fresh_instance_per_call: bool,
}

impl ComponentConfig {
    /// One warm instance with every call bounded by `limits`: for a component from outside
    /// this build.
    #[must_use]
    pub const fn with_limits(limits: CallLimits) -> Self {
        Self {
            limits: Some(limits),
            fresh_instance_per_call: false,
        }
    }

    /// A fresh instance for every call, without limits.
    pub const FRESH_INSTANCE_PER_CALL: Self = Self {
        limits: None,
        fresh_instance_per_call: true,
    };
}

/// Creates the wasmtime engine the host uses for policy components: synchronous calls only, no
/// component-model-async (it doubles the per-call cost), Cranelift at `Speed`, the pooling
/// allocator, and fuel and epoch interruption when `limits` are wanted (they cost every call, so
/// they are off for the trusted built-in component).
///
/// # Errors
///
/// When wasmtime rejects the configuration.
pub fn new_wasmtime_engine(limits: Option<&CallLimits>) -> Result<Engine, LoadError> {
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    let mut pooling = PoolingAllocationConfig::default();
    // A policy component is a module or a few (the built-in one: one memory, two tables, counting
    // the resource shim): these slots leave room for components from other languages while
    // keeping the pool's virtual reservation modest.
    pooling
        .total_component_instances(64)
        .total_core_instances(512)
        .total_memories(128)
        .total_tables(512)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_memory_size(limits.map_or(64 << 20, |l| l.max_memory_bytes))
        // Resetting a slot for reuse by zeroing its first pages beats returning them to the
        // kernel (page faults and TLB shootdowns on the next use): the built-in instance's whole
        // memory fits in this.
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(4 << 10);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    // The guest's data is a few KiB: copying it in is cheaper than mapping a copy-on-write image
    // per instance (measured in the fresh-instance benchmark).
    config.memory_init_cow(false);
    if limits.is_some() {
        config.consume_fuel(true);
        config.epoch_interruption(true);
    }
    Engine::new(&config).map_err(|e| wasm_error(&e, "configuring wasmtime"))
}

/// The names of everything a component imports (the built-in one imports nothing).
///
/// # Errors
///
/// When the bytes are not a valid component.
pub fn imports_of(engine: &Engine, bytes: &[u8]) -> Result<Vec<String>, LoadError> {
    let component =
        Component::new(engine, bytes).map_err(|e| wasm_error(&e, "compiling the component"))?;
    Ok(names_of_imports(engine, &component))
}

fn names_of_imports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Per-store state: the memory limit and whether the last call hit it.
///
/// Hand-written rather than wasmtime's `StoreLimits` because the host must tell a memory bomb
/// from any other failure, and `StoreLimits` does not say which limit it enforced.
struct StoreState {
    max_memory_bytes: usize,
    /// Set when a `memory.grow` past the limit was refused (and trapped): the size asked for.
    denied_memory: Option<usize>,
}

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.denied_memory = Some(desired);
            // Trapping, rather than letting `memory.grow` return -1, stops a component that
            // would ignore the failure, and names the cause.
            return Err(wasmtime::Error::msg(format!(
                "memory.grow to {desired} bytes refused (limit {} bytes)",
                self.max_memory_bytes
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A policy has no use for big tables; the pooling allocator bounds them anyway.
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The most elements a component's table may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The thread only sleeps and ticks; it cannot have panicked in a way worth reporting.
            let _ = thread.join();
        }
    }
}

/// A live instance and the `decider` it holds for each policy seen.
struct LiveInstance {
    store: Store<StoreState>,
    instance: PolicyEngine,
    deciders: HashMap<Policy, ResourceAny>,
    /// The decider used last: most hosts use one policy, and comparing it beats hashing.
    last: Option<(Policy, ResourceAny)>,
}

/// Distinct policies kept as deciders in one instance before they are all dropped and made anew
/// (a host has one per `[[destination]]` override at most; this only bounds a pathological one).
const MAX_DECIDERS: usize = 256;

/// A policy component ready to answer `decide` calls.
pub struct PolicyComponent {
    pre: PolicyEnginePre<StoreState>,
    engine: Engine,
    config: ComponentConfig,
    live: Option<LiveInstance>,
    // Declared last: dropped after the instance, stops the engine's epoch thread.
    _ticker: Option<EpochTicker>,
}

impl PolicyComponent {
    /// Loads the built-in component, trusted: one warm instance, no call limits.
    ///
    /// # Errors
    ///
    /// When the component fails to compile or link (never for a correct build).
    pub fn builtin() -> Result<Self, LoadError> {
        Self::from_bytes(EMBEDDED_COMPONENT)
    }

    /// Loads the built-in component with `config` (no cache: it compiles in about 40 ms).
    ///
    /// # Errors
    ///
    /// When the component fails to compile or link (never for a correct build).
    pub fn builtin_with(config: ComponentConfig) -> Result<Self, LoadError> {
        Self::load(EMBEDDED_COMPONENT, config, None)
    }

    /// Loads a component from its bytes, with the default configuration.
    ///
    /// # Errors
    ///
    /// See [`PolicyComponent::load`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoadError> {
        Self::load(bytes, ComponentConfig::default(), None)
    }

    /// Loads a component from its bytes: compiled, or with `cache_dir` deserialized from a
    /// precompiled artifact there (written on first load; see [`precompiled_path`]). The linker
    /// is empty: a component that imports anything fails here, before any call, with the imports
    /// named.
    ///
    /// # Errors
    ///
    /// When the bytes are not a component, or the component imports something or does not export
    /// [`EXPORTED_INTERFACE`] with the right types.
    pub fn load(
        bytes: &[u8],
        config: ComponentConfig,
        cache_dir: Option<&Path>,
    ) -> Result<Self, LoadError> {
        let engine = new_wasmtime_engine(config.limits.as_ref())?;
        let component = match cache_dir {
            Some(dir) => load_cached(&engine, bytes, dir)?,
            None => Component::new(&engine, bytes)
                .map_err(|e| wasm_error(&e, "compiling the policy component"))?,
        };
        let imports = names_of_imports(&engine, &component);
        if !imports.is_empty() {
            return Err(LoadError::Imports(imports));
        }
        check_exported_version(&engine, &component)?;
        let linker = Linker::new(&engine);
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| wasm_error(&e, "linking the policy component"))?;
        let pre = PolicyEnginePre::new(instance_pre).map_err(|e| {
            LoadError::Interface(format!(
                "the component does not export {EXPORTED_INTERFACE} with the types this host \
                 knows: {e:#}"
            ))
        })?;
        let ticker = config.limits.is_some().then(|| EpochTicker::start(&engine));
        Ok(Self {
            pre,
            engine,
            config,
            live: None,
            _ticker: ticker,
        })
    }

    /// The configuration this component runs with.
    #[must_use]
    pub fn config(&self) -> ComponentConfig {
        self.config
    }

    fn instantiate(&self) -> Result<LiveInstance, CallError> {
        let max_memory_bytes = self
            .config
            .limits
            .map_or(usize::MAX, |limits| limits.max_memory_bytes);
        let state = StoreState {
            max_memory_bytes,
            denied_memory: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        self.arm(&mut store);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(&store, e))?;
        Ok(LiveInstance {
            store,
            instance,
            deciders: HashMap::new(),
            last: None,
        })
    }

    /// Refills the fuel and resets the deadline before a call, when limits are on.
    fn arm(&self, store: &mut Store<StoreState>) {
        if let Some(limits) = self.config.limits {
            // Only fails when the engine has no fuel, and limits turn fuel on.
            let _ = store.set_fuel(limits.fuel);
            let ticks = limits.deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
            store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        }
    }

    /// Names why a call failed.
    fn classify(&self, store: &Store<StoreState>, error: wasmtime::Error) -> CallError {
        let limits = self.config.limits.unwrap_or_default();
        if let Some(requested) = store.data().denied_memory {
            return CallError::MemoryLimit {
                requested,
                limit: store.data().max_memory_bytes,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => CallError::OutOfFuel { fuel: limits.fuel },
            Some(Trap::Interrupt) => CallError::DeadlineExceeded {
                deadline: limits.deadline,
            },
            Some(_) => CallError::Trapped(format!("{error:#}")),
            // Not a trap: the canonical ABI could not lift what the component returned.
            None => CallError::InvalidOutput(format!("{error:#}")),
        }
    }

    /// Asks the component for a decision.
    ///
    /// # Errors
    ///
    /// A [`CallError`] when the component traps, runs out of fuel or time, exceeds its memory
    /// (the instance is then discarded and the next call gets a fresh one), or returns a decision
    /// that is not valid (an over-long history blob, say).
    pub fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> Result<Decision, CallError> {
        let mut live = match self.live.take() {
            Some(live) if !self.config.fresh_instance_per_call => live,
            _ => self.instantiate()?,
        };
        let result = self.decide_on(&mut live, policy, context, history, last, now);
        let decision = match result {
            Ok(decision) => decision,
            Err(error) => return Err(self.classify(&live.store, error)),
        };
        let len = decision.history.len();
        // An instance that gave an invalid answer is not trusted with the next call either.
        let decision =
            Decision::try_from(decision).map_err(|_| CallError::HistoryTooLong { len })?;
        if !self.config.fresh_instance_per_call {
            self.live = Some(live);
        }
        Ok(decision)
    }

    fn decide_on(
        &self,
        live: &mut LiveInstance,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> wasmtime::Result<wit::Decision> {
        let guest = live.instance.tlsfallback_policy_engine().decider();
        self.arm(&mut live.store);
        let decider = match (live.last, live.deciders.get(policy)) {
            (Some((last_policy, decider)), _) if last_policy == *policy => decider,
            (_, Some(decider)) => *decider,
            (_, None) => {
                if live.deciders.len() >= MAX_DECIDERS {
                    live.last = None;
                    for (_, decider) in live.deciders.drain() {
                        decider.resource_drop(&mut live.store)?;
                    }
                }
                let decider = guest.call_constructor(&mut live.store, wit::Policy::from(policy))?;
                live.deciders.insert(*policy, decider);
                decider
            }
        };
        live.last = Some((*policy, decider));
        guest.call_decide(
            &mut live.store,
            decider,
            wit::DeliveryContext::from(context),
            history,
            last.map(wit::AttemptReport::from),
            now,
        )
    }
}

/// Checks that the component exports [`EXPORTED_INTERFACE`] at a version this host can call:
/// the same major version (the same minor while the major is 0), as Cargo and wasmtime's own
/// lookup read semver.
fn check_exported_version(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let ours = semver::Version::parse(&EXPORTED_INTERFACE[INTERFACE_NAME.len() + 1..])
        .expect("EXPORTED_INTERFACE carries a valid version");
    let compatible = semver::VersionReq {
        comparators: vec![semver::Comparator {
            op: semver::Op::Caret,
            major: ours.major,
            minor: Some(ours.minor),
            patch: Some(0),
            pre: semver::Prerelease::EMPTY,
        }],
    };
    let theirs: Vec<&str> = exports
        .iter()
        .filter_map(|name| name.strip_prefix(INTERFACE_NAME))
        .collect();
    if theirs
        .iter()
        .filter_map(|version| version.strip_prefix('@'))
        .filter_map(|version| semver::Version::parse(version).ok())
        .any(|version| compatible.matches(&version))
    {
        return Ok(());
    }
    if theirs.is_empty() {
        return Err(LoadError::Interface(format!(
            "the component exports {}, not {INTERFACE_NAME}: it is not a tlsfallback policy \
             component (this host needs {EXPORTED_INTERFACE} or a compatible {compatible})",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        )));
    }
    Err(LoadError::Interface(format!(
        "the component exports {}, which this host cannot call: it speaks {EXPORTED_INTERFACE} \
         and accepts versions {compatible}; rebuild the component against wit/ of this release",
        theirs
            .iter()
            .map(|version| format!("{INTERFACE_NAME}{version}"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Where the precompiled artifact of `wasm` for `engine` lives in `cache_dir`: named by the
/// SHA-256 of the component and the engine's compatibility hash (it covers the wasmtime version
/// and every setting that changes the machine code, such as fuel), so a stale or foreign artifact
/// is never picked up. wasmtime checks the version and settings again when deserializing.
#[must_use]
pub fn precompiled_path(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> PathBuf {
    let mut settings = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(wasm);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    cache_dir.join(format!("{hex}-{:016x}.cwasm", settings.finish()))
}

/// Compiles a component to the precompiled form [`PolicyComponent::load`] caches.
///
/// # Errors
///
/// When the bytes are not a valid component.
pub fn precompile(engine: &Engine, wasm: &[u8]) -> Result<Vec<u8>, LoadError> {
    engine
        .precompile_component(wasm)
        .map_err(|e| wasm_error(&e, "compiling the policy component"))
}

/// Deserializes a precompiled component written by this host.
///
/// # Errors
///
/// When wasmtime refuses the artifact (another version or configuration).
#[allow(unsafe_code)]
pub fn deserialize_precompiled(engine: &Engine, artifact: &[u8]) -> Result<Component, LoadError> {
    // SAFETY: wasmtime requires the bytes to come from its own `serialize`/`precompile` (it
    // checks the version and configuration itself, not the machine code). Callers pass only
    // artifacts this host wrote: `load_cached` reads files it created in the operator's cache
    // directory, under a name derived from the component's hash and the engine's settings.
    unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| wasm_error(&e, "loading the precompiled policy component"))
}

fn load_cached(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> Result<Component, LoadError> {
    let path = precompiled_path(engine, wasm, cache_dir);
    if let Ok(artifact) = std::fs::read(&path) {
        match deserialize_precompiled(engine, &artifact) {
            Ok(component) => return Ok(component),
            // A truncated or foreign file: recompile and overwrite it rather than fail.
            Err(error) => eprintln!("tlsfallback: ignoring {}: {error:#}", path.display()),
        }
    }
    let artifact = precompile(engine, wasm)?;
    std::fs::create_dir_all(cache_dir).map_err(|cause| LoadError::Cache {
        doing: "creating the cache directory",
        path: cache_dir.to_path_buf(),
        cause,
    })?;
    // Written under a temporary name and renamed, so a concurrent reader never sees half a file.
    let partial = path.with_extension(format!("partial{}", std::process::id()));
    std::fs::write(&partial, &artifact)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|cause| LoadError::Cache {
            doing: "writing",
            path: path.clone(),
            cause,
        })?;
    deserialize_precompiled(engine, &artifact)
}
