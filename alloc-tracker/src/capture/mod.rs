//! Stack capture at a sample: raw return addresses only, no tracker lock.
//!
//! Three unwinders, one per module:
//! - [`fp`], **frame pointers**: follow the saved-frame-pointer chain, about 1 ns a frame,
//!   right only for code built with `-C force-frame-pointers=yes`.
//! - [`table`], **unwind tables**: each return address's CFI rule, cached, applied to the
//!   stack: about 6 ns a frame when warm, right for code built without frame pointers
//!   (Cargo's default). A stack it cannot unwind exactly (code without CFI, a signal frame)
//!   goes to DWARF instead, and is counted ([`dwarf_fallbacks`]).
//! - [`dwarf`], **DWARF** through `backtrace`: 50–200 ns a frame, right for any code with
//!   unwind tables.
//!
//! `auto` is the table unwinder wherever there is one (Linux on x86_64 and aarch64). Checking
//! a frame-pointer walk on some samples cannot vouch for the others: std keeps frame
//! pointers, the program's own code usually does not, and a walk from std into such code
//! skips frames on some paths and not others — seen on a thread's stack (`vec!` → … →
//! `start_thread`, the program's frames gone) after every checked sample had agreed. Where
//! there is no table unwinder, `auto` walks frame pointers (mandatory in Apple's ABI) but
//! checks the walk against DWARF on the first [`VERIFY_FIRST`] samples and one in
//! [`VERIFY_EVERY`] after, switching to DWARF for good at the first disagreement.
//! `ALLOC_TRACKER_UNWIND=fp` asks for frame pointers anyway: about five times cheaper a
//! sample than the tables, and right for a program built entirely with
//! `-C force-frame-pointers=yes`.
//!
//! **By platform.** The table unwinder reads ELF `.eh_frame` (Linux on x86_64 and aarch64);
//! elsewhere DWARF takes its place. On macOS, whose ABI makes frame records mandatory,
//! `auto` walks frame pointers, checked against DWARF as above; on Windows, whose x64 code
//! keeps no frame-pointer chain, `auto` and `fp` both unwind through `backtrace`
//! (`RtlVirtualUnwind`). See `sys::FRAME_POINTER_WALK`.

mod dwarf;
mod fp;
mod table;

use crate::config::{Unwind, MAX_DEPTH};
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Samples checked against the reference before `auto` trusts frame pointers (where there
/// is no table unwinder).
pub const VERIFY_FIRST: u64 = 32;
/// After that, one sample in this many is checked.
pub const VERIFY_EVERY: u64 = 1024;

/// Frames captured beyond the configured depth, to make room for the tracker's own frames
/// at the top of each stack (dropped when the report is made).
const TRACKER_FRAMES: usize = 8;
const BUFFER: usize = MAX_DEPTH + TRACKER_FRAMES;

/// `auto`'s verdict: `false` = still trusting frame pointers, `true` = switched to the
/// table unwinder for good.
static AUTO_SWITCHED: AtomicBool = AtomicBool::new(false);
static AUTO_CHECKED: AtomicU64 = AtomicU64::new(0);
/// Stacks the table unwinder could not unwind exactly, captured by DWARF instead.
static DWARF_FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// Where an unwinder writes return addresses, innermost first: it returns how many it wrote,
/// and only those words are initialised (so a capture costs nothing for the room it does not
/// use). Unwinders write only initialised values (`MaybeUninit::new`).
pub(crate) type Out = [MaybeUninit<usize>];

/// Room for one captured stack, filled by [`capture`]. Left uninitialised: a sample pays
/// only for the words its capture writes.
pub(crate) struct Buffer([MaybeUninit<usize>; BUFFER]);

impl Buffer {
    /// An empty buffer (nothing written: no cost).
    pub(crate) fn new() -> Self {
        Self([MaybeUninit::uninit(); BUFFER])
    }
}

/// Captures the current stack into `buffer`: at most `depth` frames of the program (plus
/// the tracker's), innermost first. Runs as tracker code.
#[inline(always)]
pub(crate) fn capture(unwind: Unwind, depth: usize, buffer: &mut Buffer) -> &[usize] {
    let limit = depth.min(MAX_DEPTH) + TRACKER_FRAMES;
    let out = &mut buffer.0[..limit];
    let len = match unwind {
        Unwind::FramePointer => fp::walk(out, stack_top()).unwrap_or_else(|| dwarf::walk(out)),
        Unwind::Table => walk_table(out),
        Unwind::Dwarf => dwarf::walk(out),
        Unwind::Auto => capture_auto(out),
    };
    // SAFETY: the unwinder that returned `len` wrote `out[..len]`.
    unsafe { written(out, len) }
}

/// The first `len` words of `out`, as an unwinder wrote them.
///
/// # Safety
/// `out[..len]` is initialised: an unwinder that returned `len` wrote those words.
unsafe fn written(out: &Out, len: usize) -> &[usize] {
    let out = &out[..len];
    // SAFETY: `MaybeUninit<usize>` has the layout of `usize`, and these words are
    // initialised (the caller's guarantee).
    unsafe { &*(std::ptr::from_ref(out) as *const [usize]) }
}

/// `out` as room for an unwinder. Sound because unwinders write only initialised values
/// (see [`Out`]), so the words stay initialised.
fn room(out: &mut [usize]) -> &mut Out {
    // SAFETY: `MaybeUninit<usize>` has the layout of `usize`; every word is initialised and
    // stays so, since unwinders never write `MaybeUninit::uninit()`.
    unsafe { &mut *(std::ptr::from_mut(out) as *mut Out) }
}

/// The table unwinder, or DWARF for a stack it cannot unwind exactly (counted); DWARF
/// alone where there is no table unwinder.
#[inline(always)]
fn walk_table(out: &mut Out) -> usize {
    if !table::SUPPORTED {
        return dwarf::walk(out);
    }
    if let Some(len) = stack_top().and_then(|top| table::capture(out, top)) {
        return len;
    }
    DWARF_FALLBACKS.fetch_add(1, Ordering::Relaxed);
    dwarf::walk(out)
}

fn capture_auto(out: &mut Out) -> usize {
    if table::SUPPORTED || !crate::sys::FRAME_POINTER_WALK || AUTO_SWITCHED.load(Ordering::Relaxed)
    {
        return walk_table(out);
    }
    // Count globally only while verifying the first samples; after that each thread counts
    // its own (a shared counter bumped at every sample would bounce between cores).
    let checked = if AUTO_CHECKED.load(Ordering::Relaxed) < VERIFY_FIRST {
        AUTO_CHECKED.fetch_add(1, Ordering::Relaxed)
    } else {
        AUTO_SEEN.with(|seen| {
            seen.set(seen.get().wrapping_add(1));
            VERIFY_FIRST + seen.get()
        })
    };
    let Some(len) = fp::walk(out, stack_top()) else {
        AUTO_SWITCHED.store(true, Ordering::Relaxed);
        return walk_table(out);
    };
    if checked >= VERIFY_FIRST && checked % VERIFY_EVERY != 0 {
        return len;
    }
    let mut reference = [MaybeUninit::uninit(); BUFFER];
    let reference_len = walk_table(&mut reference[..out.len()]);
    // SAFETY: each unwinder wrote the words whose count it returned.
    let (walked, referenced) = unsafe { (written(out, len), written(&reference, reference_len)) };
    // Both unwinders were called from here at different call sites: skip that first frame.
    if len > 1 && chains_agree(&walked[1..], referenced) {
        len
    } else {
        AUTO_SWITCHED.store(true, Ordering::Relaxed);
        out[..reference_len].copy_from_slice(&reference[..reference_len]);
        reference_len
    }
}

/// Frames at the bottom of a stack that the walk may miss.
const ENTRY_FRAMES: usize = 2;

/// Whether a frame-pointer walk saw the same frames as the reference: after lining both up
/// on the walk's first address, every frame both reach must be the same, and the walk may
/// stop at most [`ENTRY_FRAMES`] frames before the reference does (glibc's entry code has
/// no frame pointers: `__libc_start_main` and `_start` on the main thread, `clone3` on
/// others).
pub(crate) fn chains_agree(walk: &[usize], reference: &[usize]) -> bool {
    let Some(&first) = walk.first() else {
        return false;
    };
    let Some(offset) = reference.iter().position(|&a| a == first) else {
        return false;
    };
    let reference = &reference[offset..];
    let common = walk.len().min(reference.len());
    // Both may stop one frame apart at the bottom (thread entry); more is a skipped frame.
    walk[..common] == reference[..common] && reference.len() <= walk.len() + ENTRY_FRAMES
}

/// The unwinder of the most recent sample (0: none yet), for the report.
static UNWIND_IN_USE: AtomicU8 = AtomicU8::new(0);

/// Notes the unwinder a sample used (stored only on a change, as the rate is).
pub(crate) fn note_unwinder_in_use(unwind: Unwind) {
    if UNWIND_IN_USE.load(Ordering::Relaxed) != unwind.to_code() {
        UNWIND_IN_USE.store(unwind.to_code(), Ordering::Relaxed);
    }
}

/// The unwinder in use, as the report states it: `fp`, `table` or `dwarf`.
pub(crate) fn unwinder_in_use() -> &'static str {
    let unwind = Unwind::from_code(UNWIND_IN_USE.load(Ordering::Relaxed))
        .unwrap_or_else(|| crate::config::effective_unwind(None));
    let table = if table::SUPPORTED { "table" } else { "dwarf" };
    let walks = crate::sys::FRAME_POINTER_WALK;
    match unwind {
        Unwind::FramePointer if walks => "fp",
        Unwind::FramePointer => "dwarf",
        Unwind::Table => table,
        Unwind::Dwarf => "dwarf",
        Unwind::Auto if walks && !table::SUPPORTED && !AUTO_SWITCHED.load(Ordering::Relaxed) => {
            "fp"
        }
        Unwind::Auto => table,
    }
}

/// Stacks the table unwinder handed to DWARF so far (it could not unwind them exactly).
pub(crate) fn dwarf_fallbacks() -> u64 {
    DWARF_FALLBACKS.load(Ordering::Relaxed)
}

/// Prepares the unwinder `unwind` may use (the table unwinder's scan of the loaded
/// objects), so that the first sample does not pay for it. Runs as tracker code.
pub(crate) fn init(unwind: Unwind) {
    if matches!(unwind, Unwind::Table | Unwind::Auto) {
        table::init();
    }
}

/// Takes the unwinders' locks (before `fork`); they nest in no other lock.
pub(crate) fn lock_all() {
    table::lock_all();
}

/// Releases the locks taken by [`lock_all`].
///
/// # Safety
/// [`lock_all`] must have been called by this thread (or by the parent, in a fork child).
pub(crate) unsafe fn unlock_all() {
    // SAFETY: forwarded from the caller.
    unsafe { table::unlock_all() }
}

/// For the project's own tests and benchmarks (`alloc_tracker::internals`): the stack
/// above the caller, by one unwinder alone, starting with the return address into the
/// caller; at most [`internals::MAX_FRAMES`] frames. Each runs as tracker code.
pub(crate) mod internals {
    use super::{dwarf, stack_top, table};
    use crate::reentrancy;

    /// The most frames these functions capture.
    pub const MAX_FRAMES: usize = 256;

    /// The table unwinder alone: `None` where it cannot unwind exactly (no DWARF fallback).
    #[inline(never)]
    pub fn table_stack(out: &mut [usize]) -> Option<usize> {
        let _guard = reentrancy::enter();
        let mut all = [0; MAX_FRAMES + 1];
        let all = &mut all[..=out.len().min(MAX_FRAMES)];
        let len = table::capture(super::room(all), stack_top()?)?;
        Some(without_first(all, len, out))
    }

    /// DWARF unwinding (`backtrace`) alone.
    #[inline(never)]
    pub fn dwarf_stack(out: &mut [usize]) -> usize {
        let _guard = reentrancy::enter();
        let mut all = [0; MAX_FRAMES + 1];
        let all = &mut all[..=out.len().min(MAX_FRAMES)];
        let len = dwarf::walk(super::room(all));
        without_first(all, len, out)
    }

    /// How many times the table unwinder has scanned the loaded objects.
    pub fn table_scans() -> usize {
        table::scans()
    }

    /// Copies `all[1..len]` to `out`: without the return address into this module.
    fn without_first(all: &[usize], len: usize, out: &mut [usize]) -> usize {
        let kept = &all[len.min(1)..len];
        out[..kept.len()].copy_from_slice(kept);
        kept.len()
    }
}

thread_local! {
    /// Samples this thread took under `auto` after the first checked ones.
    static AUTO_SEEN: Cell<u64> = const { Cell::new(0) };
    /// The top (highest address) of this thread's stack, 0 until looked up.
    static STACK_TOP: Cell<usize> = const { Cell::new(0) };
}

/// The top of this thread's stack (looked up once per thread: `sys::stack_top`).
fn stack_top() -> Option<usize> {
    let known = STACK_TOP.with(Cell::get);
    if known != 0 {
        return Some(known);
    }
    let top = crate::sys::stack_top()?;
    STACK_TOP.with(|t| t.set(top));
    Some(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_rules() {
        assert!(chains_agree(&[3, 4, 5], &[1, 2, 3, 4, 5]));
        assert!(chains_agree(&[3, 4, 5], &[1, 3, 4, 5, 6]));
        assert!(
            !chains_agree(&[3, 5, 6], &[1, 3, 4, 5, 6]),
            "a skipped frame"
        );
        assert!(chains_agree(&[3, 4], &[1, 3, 4, 5, 6]), "entry frames");
        assert!(!chains_agree(&[3], &[1, 3, 4, 5, 6, 7]), "stopped short");
        assert!(!chains_agree(&[], &[1, 2]));
        assert!(!chains_agree(&[9], &[1, 2]));
    }

    /// An unwinder as the tests call it.
    type Unwinder = fn(&mut [usize]) -> Option<usize>;

    /// Runs an unwinder from one call site, so that every unwinder passed here starts with
    /// the same return address (into this function).
    #[inline(never)]
    fn at_point(unwind: Unwinder, out: &mut [usize]) -> Option<usize> {
        std::hint::black_box(unwind(out))
    }

    fn dwarf(out: &mut [usize]) -> Option<usize> {
        Some(internals::dwarf_stack(out))
    }

    /// The table unwinder's and DWARF's stacks from the same call site.
    #[inline(never)]
    fn both(room: usize) -> (Vec<usize>, Vec<usize>) {
        let unwinders: [Unwinder; 2] = [internals::table_stack, dwarf];
        let mut lists = Vec::new();
        // One call site for both (the slice is opaque, so the loop is not unrolled).
        for &unwind in std::hint::black_box(&unwinders[..]) {
            let mut out = vec![0; room];
            let len = at_point(unwind, &mut out).expect("the unwind failed");
            out.truncate(len);
            lists.push(out);
        }
        let dwarf = lists.pop().unwrap();
        (lists.pop().unwrap(), dwarf)
    }

    #[inline(never)]
    fn recurse(depth: usize, at_bottom: &mut dyn FnMut()) -> usize {
        if depth == 0 {
            at_bottom();
            return std::hint::black_box(0);
        }
        std::hint::black_box(recurse(std::hint::black_box(depth - 1), at_bottom) + 1)
    }

    #[test]
    #[cfg_attr(
        not(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )),
        ignore = "no table unwinder on this target"
    )]
    fn table_and_dwarf_see_the_same_stacks() {
        for depth in [0, 5, 40] {
            recurse(depth, &mut || {
                let (table, dwarf) = both(256);
                assert!(table.len() > depth + 2, "depth {depth}: {table:x?}");
                assert_eq!(table, dwarf, "depth {depth}: table (left) vs DWARF (right)");
            });
        }
        // A full buffer: both stop at its length.
        recurse(30, &mut || {
            let (table, dwarf) = both(20);
            assert_eq!((table.len(), &table), (20, &dwarf));
        });
        std::thread::spawn(|| {
            recurse(3, &mut || {
                let (table, dwarf) = both(256);
                assert_eq!(table, dwarf, "on another thread");
            })
        })
        .join()
        .unwrap();
    }
}
