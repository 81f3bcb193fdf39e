//! What std would provide on wasm: an allocator and a panic handler. Shared by both guest
//! components (this crate's and `bindings/tools`'s, which includes this file by path).

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
