//! Table-driven stack capture, for code built without frame pointers (Cargo's default):
//! the unwind tables (`.eh_frame` CFI) of the loaded objects, with each return address's
//! rule cached, so that a warm capture costs a table lookup and two bounded stack reads a
//! frame (about 6 ns).
//!
//! - [`modules`] finds every loaded object's code and `.eh_frame_hdr` in memory through
//!   `dl_iterate_phdr`, and keeps a snapshot, taken again when the loader's counters show
//!   that an object was loaded or unloaded (checked before a table is read, and before a
//!   rule of an object that may be unloaded is used: see [`pool`]).
//! - [`rules`] derives an address's rule from its CFI row with gimli: the CFA from the
//!   stack or frame pointer plus an offset, the return address and the frame pointer
//!   restored from fixed offsets of the CFA. A row of any other shape, or an address
//!   without CFI (JIT code, a signal frame), fails the capture: the caller then uses DWARF,
//!   so a stack is never guessed.
//! - [`cache`] keeps the rules by address; [`pool`] holds a few caches taken with
//!   `try_lock`, so threads unwind in parallel, and does the unwind.
//!
//! Every stack read is aligned and lies between the stack pointer at the capture and the
//! top of the thread's stack. A warm capture allocates nothing and takes no lock but its
//! slot's (and the loader's, inside `dl_iterate_phdr`, when the stack passes through an
//! object that may be unloaded); a miss evaluates one CFI program (about 1 µs).
//!
//! **Memory**, all allocated as tracker code (under the reentrancy guard, so it is counted
//! in `tracker.bytes`): one slot per thread that captures, up to twice the CPUs online and
//! never more than 16, each 64 KiB of rules plus a gimli context of a few KiB (at most
//! about 1.1 MiB in all; 2 CPUs: at most about 280 KiB); and the snapshot of the loaded
//! objects, about 250 bytes per executable segment (an older snapshot lives until every
//! slot has moved on).
//!
//! **Why not framehop**, samply's unwinder, which does the same from the same tables: its
//! unwinder and its rule cache are plain values that every unwind borrows (`&mut` cache,
//! `add_module(&mut self)`), so inside an allocator they would need a lock shared by every
//! sampling thread, or a cache per thread (cold for every new thread, and allocated in
//! its TLS); it leaves finding the loaded objects, and noticing `dlopen`/`dlclose`, to its
//! caller, which is most of [`modules`] and [`pool`] here anyway; and its own
//! documentation calls in-process unwinding "currently unproven". What it does on top
//! (compact unwind info, PE, instruction analysis for prologues and epilogues) buys
//! nothing on a call to the allocator, which is never in a prologue. The rule
//! derivation here is a few dozen lines over gimli, which `backtrace` already brings.
//!
//! On targets other than x86_64 and aarch64 Linux, [`capture`] always returns `None`.

/// Items only for the supported targets: x86_64 and aarch64 Linux.
macro_rules! supported {
    ($($item:item)*) => {$(
        #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
        $item
    )*};
}

/// Items only for the other targets.
macro_rules! unsupported {
    ($($item:item)*) => {$(
        #[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64"))))]
        $item
    )*};
}

supported! {
    mod cache;
    mod modules;
    mod pool;
    mod rules;
    mod start;
    use pool as imp;
    use start::Start;
}

unsupported! {
    mod unsupported;
    use unsupported as imp;
    use unsupported::Start;
}

/// Whether this target has the table unwinder (else [`capture`] always fails).
pub(crate) const SUPPORTED: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

/// Captures the return addresses of the current stack into `out`, innermost first,
/// starting with the return address into this function's caller. Returns how many were
/// written (all of `out` if the stack is deeper), or `None` if the stack cannot be unwound
/// exactly: a frame outside every known object or without an exact rule, a read outside
/// `[stack pointer, stack_top)`, every cache busy, or an unsupported target.
///
/// `stack_top` is the highest address of this thread's stack (exclusive). Must run as
/// tracker code: a cold capture allocates.
#[inline(never)]
pub(crate) fn capture(out: &mut super::Out, stack_top: usize) -> Option<usize> {
    let start = Start::here();
    // `black_box`: not a tail call, so this frame stays as `start` saw it during the unwind.
    std::hint::black_box(imp::unwind(&start, stack_top, out))
}

/// Scans the loaded objects now (else the first [`capture`] does). Runs as tracker code.
pub(crate) fn init() {
    imp::init();
}

/// How many times the loaded objects have been scanned (for tests).
pub(crate) fn scans() -> usize {
    imp::scans()
}

/// Takes every lock of the unwinder, so that a `fork` child finds none held by a thread
/// that does not exist there. Its locks are leaves: nothing else is locked while they are
/// held, so any place in the fork handlers' order works.
pub(crate) fn lock_all() {
    imp::lock_all();
}

/// Releases the locks taken by [`lock_all`] (both fork handlers, parent and child).
///
/// # Safety
/// [`lock_all`] must have been called by this thread (or by the parent, in a fork child).
pub(crate) unsafe fn unlock_all() {
    // SAFETY: forwarded from the caller.
    unsafe { imp::unlock_all() }
}
