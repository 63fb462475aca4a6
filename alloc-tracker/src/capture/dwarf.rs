//! DWARF unwinding through the `backtrace` crate (libgcc's unwinder on Linux): right for
//! any code with unwind tables, which Rust always emits, but 1–4 µs for a 20-frame stack:
//! each frame's rule is found and evaluated anew.

use super::Out;
use std::mem::MaybeUninit;

/// Captures return addresses from the caller's frame on, like the other unwinders: the
/// first is the return address into the caller. Fills all of `out` if the stack is deeper.
#[inline(never)]
pub(super) fn walk(out: &mut Out) -> usize {
    // The unwinder reports its own frames first, then this function's, then the caller's:
    // a frame is ours until its CFA (the stack pointer of its caller) lies above a local of
    // this function. The first frame above is this function itself (its return address is
    // into here), so it is skipped too. This holds however `backtrace` is inlined.
    let marker = 0u8;
    let marker = std::hint::black_box(&raw const marker) as usize;
    let mut own = true;
    let mut len = 0;
    // SAFETY: `trace_unsynchronized` requires that no other unsynchronized trace runs on
    // this thread at the same time; the reentrancy guard is up, so the tracker cannot
    // re-enter here from within the callback, which only stores addresses.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if ip == 0 {
                return false; // the end of the stack
            }
            if own {
                own = (frame.sp() as usize) <= marker;
                return true;
            }
            match out.get_mut(len) {
                Some(slot) => {
                    *slot = MaybeUninit::new(ip);
                    len += 1;
                    len < out.len()
                }
                None => false,
            }
        });
    }
    len
}
