//! The guest adapter: exports [`policy_core::decide`] as the `tlsfallback:policy` component.
//!
//! No logic lives here, only the mechanical mapping between the WIT types and policy-core's
//! (`tlsfallback-wit-mapping`, shared with the host and Rust plugins).
//! Built `no_std` for `wasm32-unknown-unknown` and wrapped into a component by
//! `host-runtime/engine/build.rs`; the result imports nothing at all. (On other targets, where only
//! `cargo clippy --workspace` ever compiles it, it uses std.)

#![cfg_attr(target_family = "wasm", no_std)]

extern crate alloc;

use alloc::vec::Vec;

mod convert;

/// What std would provide on wasm: an allocator and a panic handler.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod wasm_runtime {
    use core::alloc::Layout;
    use talc::{OomHandler, Span, Talc, Talck, locking::AssumeUnlockable};

    /// The heap the engine starts with: a static array inside the module's one initial page
    /// (with the 32 KiB stack and the data). Every call of a normal host fits in it, so the
    /// instance never runs `memory.grow`, which is what made a fresh pooled instance cost twice
    /// as much (wasmtime changes page protections for grown memory, and again to reset it).
    static mut ARENA: [u8; 16 * 1024] = [0; 16 * 1024];

    /// Claims [`ARENA`] on the first allocation; grows the memory only for what does not fit (a
    /// host passing a huge garbage history, which the engine then rejects).
    ///
    /// Written here because talc ships the two halves as separate handlers (`ClaimOnOom`,
    /// `WasmHandler`) and one cannot delegate to the other.
    struct ArenaThenGrow {
        arena: Span,
    }

    impl OomHandler for ArenaThenGrow {
        fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
            const PAGE: usize = 64 * 1024;
            let arena = core::mem::replace(&mut talc.oom_handler.arena, Span::empty());
            if !arena.is_empty() {
                // SAFETY: the arena is a static array that nothing else refers to.
                unsafe { talc.claim(arena)? };
                return Ok(());
            }
            // Enough for the allocation plus talc's bookkeeping; talc asks again if not.
            let pages = (layout.size() + layout.align() + 256).div_ceil(PAGE);
            let previous = core::arch::wasm32::memory_grow::<0>(pages);
            if previous == usize::MAX {
                return Err(());
            }
            let base = (previous * PAGE) as *mut u8;
            // SAFETY: `memory.grow` just added these pages; nothing else uses them.
            unsafe { talc.claim(Span::new(base, base.wrapping_add(pages * PAGE)))? };
            Ok(())
        }
    }

    // SAFETY: wasm32-unknown-unknown without the atomics target feature is single-threaded, so
    // the allocator needs no lock.
    #[global_allocator]
    static ALLOCATOR: Talck<AssumeUnlockable, ArenaThenGrow> = Talc::new(ArenaThenGrow {
        arena: Span::from_array(core::ptr::addr_of_mut!(ARENA)),
    })
    .lock();

    /// A panic in the engine is a bug (policy-core's properties say none happens on any input):
    /// trap at once, without formatting a message no one would read. The host sees a trap,
    /// reports it and replaces the instance.
    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }
}

/// The code wit-bindgen generates from `wit/policy.wit`, and the export shims.
#[allow(unsafe_code, missing_docs, unreachable_pub, unused_qualifications)]
mod generated {
    wit_bindgen::generate!({ path: "../wit", world: "policy-engine" });
    use super::PolicyEngine;
    export!(PolicyEngine);
}

use generated::exports::tlsfallback::policy::engine::{
    AttemptReport, Decision, DeliveryContext, Guest, GuestDecider, Policy, UnixSeconds,
};

struct PolicyEngine;

impl Guest for PolicyEngine {
    type Decider = Decider;
}

/// The `decider` resource: a policy, converted once.
struct Decider(policy_core::Policy);

impl GuestDecider for Decider {
    fn new(policy: Policy) -> Self {
        Self(policy.into())
    }

    fn decide(
        &self,
        context: DeliveryContext,
        history: Option<Vec<u8>>,
        last: Option<AttemptReport>,
        now: UnixSeconds,
    ) -> Decision {
        let decision = policy_core::decide(
            &self.0,
            &context.into(),
            history.as_deref(),
            last.map(policy_core::AttemptReport::from).as_ref(),
            now,
        );
        Decision::from(&decision)
    }
}
