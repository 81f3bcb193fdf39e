//! The policy component, embedded and run with wasmtime.

use anyhow::anyhow;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

use policy_core::{AttemptReport, Decision, DeliveryContext, Policy, UnixSeconds};

mod generated {
    wasmtime::component::bindgen!({ path: "../wit", world: "policy-engine" });
}

use generated::exports::tlsfallback::policy::engine as wit;
use generated::{PolicyEngine, PolicyEnginePre};

mod mapping {
    use super::wit;
    policy_core::wit_mapping!();
}

/// wasmtime has its own error type; the host speaks anyhow.
fn wasm_error(error: wasmtime::Error, doing: &'static str) -> anyhow::Error {
    anyhow::Error::from(error).context(doing)
}

/// The built-in policy component (`wasm32-unknown-unknown` guest wrapped by the build script).
pub static EMBEDDED_COMPONENT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/policy_engine.wasm"));

/// Creates the wasmtime engine the host uses for policy components: synchronous calls only, no
/// component-model-async (it doubles the per-call cost), Cranelift at `Speed`.
///
/// # Errors
///
/// When wasmtime rejects the configuration.
pub fn new_wasmtime_engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    Ok(Engine::new(&config)?)
}

/// The names of everything a component imports (the built-in one imports nothing).
///
/// # Errors
///
/// When the bytes are not a valid component.
pub fn imports_of(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Vec<String>> {
    let component = Component::new(engine, bytes)?;
    let imports = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    Ok(imports)
}

/// A policy component ready to answer `decide` calls: compiled and pre-linked once, with one warm
/// instance that is replaced after a trap (a trapped instance is poisoned).
pub struct PolicyComponent {
    pre: PolicyEnginePre<()>,
    engine: Engine,
    live: Option<(Store<()>, PolicyEngine)>,
}

impl PolicyComponent {
    /// Loads the built-in component.
    ///
    /// # Errors
    ///
    /// When the component fails to compile or link (never for a correct build).
    pub fn builtin() -> anyhow::Result<Self> {
        Self::from_bytes(EMBEDDED_COMPONENT)
    }

    /// Loads a component from its bytes. The linker is empty: a component that imports anything
    /// fails here, before any call, with the import named.
    ///
    /// # Errors
    ///
    /// When the bytes are not a component, or the component imports something or does not export
    /// `tlsfallback:policy/engine@0.1.0`.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let engine = new_wasmtime_engine()?;
        let component = Component::new(&engine, bytes)
            .map_err(|e| wasm_error(e, "compiling the policy component"))?;
        let imports = imports_of(&engine, bytes)?;
        if !imports.is_empty() {
            return Err(anyhow!(
                "the policy component imports {}; a policy component must import nothing",
                imports.join(", ")
            ));
        }
        let linker = Linker::new(&engine);
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| wasm_error(e, "linking the policy component"))?;
        let pre = PolicyEnginePre::new(instance_pre).map_err(|e| {
            wasm_error(
                e,
                "the component does not export tlsfallback:policy/engine@0.1.0",
            )
        })?;
        Ok(Self {
            pre,
            engine,
            live: None,
        })
    }

    /// Asks the component for a decision.
    ///
    /// # Errors
    ///
    /// When the component traps (the instance is then discarded and the next call gets a fresh
    /// one), or returns a history longer than any engine writes.
    pub fn decide(
        &mut self,
        policy: &Policy,
        context: &DeliveryContext,
        history: Option<&[u8]>,
        last: Option<&AttemptReport>,
        now: UnixSeconds,
    ) -> anyhow::Result<Decision> {
        let (store, instance) = match &mut self.live {
            Some(live) => live,
            live @ None => {
                let mut store = Store::new(&self.engine, ());
                let instance = self
                    .pre
                    .instantiate(&mut store)
                    .map_err(|e| wasm_error(e, "instantiating the policy component"))?;
                live.insert((store, instance))
            }
        };
        let result = instance.tlsfallback_policy_engine().call_decide(
            &mut *store,
            mapping::policy_to_wit(policy),
            mapping::context_to_wit(context),
            history,
            last.map(mapping::report_to_wit),
            now,
        );
        match result {
            Ok(decision) => mapping::decision_from_wit(decision)
                .map_err(|e| anyhow!("the policy component returned an invalid decision: {e}")),
            Err(trap) => {
                self.live = None;
                Err(wasm_error(trap, "the policy component trapped"))
            }
        }
    }
}
