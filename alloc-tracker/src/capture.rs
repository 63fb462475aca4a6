//! Stack capture at a sample: raw return addresses only, no allocation, no tracker lock.
//!
//! Two unwinders:
//! - **frame pointers** (`fp`): follow the saved-frame-pointer chain, about 1 ns a frame.
//!   Every frame read is checked to lie between the current stack pointer and the top of
//!   this thread's stack, so a chain broken by code built without frame pointers ends the
//!   walk (or yields wrong addresses) but never reads unmapped memory.
//! - **DWARF** (`dwarf`): `backtrace::trace_unsynchronized`, about 100 ns a frame, right
//!   for any code with unwind tables (which Rust always emits).
//!
//! `auto` walks frame pointers but checks the walk against DWARF on the first
//! [`VERIFY_FIRST`] samples and on one sample in [`VERIFY_EVERY`] after that. One
//! disagreement — a frame the chain skipped, as happens in code built without
//! `-C force-frame-pointers=yes` — switches the process to DWARF for good. So a program
//! built with frame pointers gets the fast walk, and one built without gets correct stacks.

use crate::config::{Unwind, MAX_DEPTH};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Samples checked against DWARF before `auto` trusts frame pointers.
pub const VERIFY_FIRST: u64 = 32;
/// After that, one sample in this many is checked.
pub const VERIFY_EVERY: u64 = 1024;

/// Frames captured beyond the configured depth, to make room for the tracker's own frames
/// at the top of each stack (dropped when the report is made).
const TRACKER_FRAMES: usize = 8;
const BUFFER: usize = MAX_DEPTH + TRACKER_FRAMES;

/// `auto`'s verdict: 0 = still trusting frame pointers, 1 = switched to DWARF.
static AUTO_USES_DWARF: AtomicU8 = AtomicU8::new(0);
static AUTO_CHECKED: AtomicU64 = AtomicU64::new(0);

/// A captured stack, innermost frame first.
pub(crate) struct Frames {
    addresses: [usize; BUFFER],
    len: usize,
}

impl Frames {
    /// The captured return addresses.
    pub(crate) fn as_slice(&self) -> &[usize] {
        &self.addresses[..self.len]
    }
}

/// Captures the current stack: at most `depth` frames of the program (plus the tracker's).
#[inline(never)]
pub(crate) fn capture(unwind: Unwind, depth: usize) -> Frames {
    let limit = depth.min(MAX_DEPTH) + TRACKER_FRAMES;
    let mut frames = Frames {
        addresses: [0; BUFFER],
        len: 0,
    };
    let out = &mut frames.addresses[..limit];
    frames.len = match unwind {
        Unwind::FramePointer => walk_frame_pointers(out).unwrap_or_else(|| walk_dwarf(out)),
        Unwind::Dwarf => walk_dwarf(out),
        Unwind::Auto => capture_auto(out),
    };
    frames
}

fn capture_auto(out: &mut [usize]) -> usize {
    if AUTO_USES_DWARF.load(Ordering::Relaxed) != 0 {
        return walk_dwarf(out);
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
    let Some(len) = walk_frame_pointers(out) else {
        AUTO_USES_DWARF.store(1, Ordering::Relaxed);
        return walk_dwarf(out);
    };
    if checked >= VERIFY_FIRST && checked % VERIFY_EVERY != 0 {
        return len;
    }
    let mut reference = [0usize; BUFFER];
    let reference_len = walk_dwarf(&mut reference[..out.len()]);
    // Both unwinders were called from here at different call sites: skip that first frame.
    if len > 1 && chains_agree(&out[1..len], &reference[..reference_len]) {
        len
    } else {
        AUTO_USES_DWARF.store(1, Ordering::Relaxed);
        out[..reference_len].copy_from_slice(&reference[..reference_len]);
        reference_len
    }
}

/// Frames at the bottom of a stack that the walk may miss.
const ENTRY_FRAMES: usize = 2;

/// Whether a frame-pointer walk saw the same frames as DWARF: after lining both up on the
/// walk's first address, every frame both reach must be the same, and the walk may stop at
/// most [`ENTRY_FRAMES`] frames before DWARF does (glibc's entry code has no frame
/// pointers: `__libc_start_main` and `_start` on the main thread, `clone3` on others).
pub(crate) fn chains_agree(walk: &[usize], dwarf: &[usize]) -> bool {
    let Some(&first) = walk.first() else {
        return false;
    };
    let Some(offset) = dwarf.iter().position(|&a| a == first) else {
        return false;
    };
    let dwarf = &dwarf[offset..];
    let common = walk.len().min(dwarf.len());
    // Both may stop one frame apart at the bottom (thread entry); more is a skipped frame.
    walk[..common] == dwarf[..common] && dwarf.len() <= walk.len() + ENTRY_FRAMES
}

/// The unwinder of the most recent sample (0: none yet), for the report.
static UNWIND_IN_USE: AtomicU8 = AtomicU8::new(0);

/// Notes the unwinder a sample used (stored only on a change, as the rate is).
pub(crate) fn note_unwinder_in_use(unwind: Unwind) {
    if UNWIND_IN_USE.load(Ordering::Relaxed) != unwind.to_code() {
        UNWIND_IN_USE.store(unwind.to_code(), Ordering::Relaxed);
    }
}

/// The unwinder in use, as the report states it (`fp` or `dwarf`).
pub(crate) fn unwinder_in_use() -> &'static str {
    let unwind = Unwind::from_code(UNWIND_IN_USE.load(Ordering::Relaxed))
        .unwrap_or_else(|| crate::config::effective_unwind(None));
    let dwarf = match unwind {
        Unwind::FramePointer => false,
        Unwind::Dwarf => true,
        Unwind::Auto => AUTO_USES_DWARF.load(Ordering::Relaxed) != 0,
    };
    if dwarf {
        "dwarf"
    } else {
        "fp"
    }
}

fn walk_dwarf(out: &mut [usize]) -> usize {
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
            if let Some(slot) = out.get_mut(len) {
                *slot = ip;
                len += 1;
            }
            len < out.len()
        });
    }
    // The first frame is inside the unwinder itself, not a return address; drop it so that
    // both unwinders list return addresses only.
    if len > 0 {
        out.copy_within(1..len, 0);
        len -= 1;
    }
    len
}

thread_local! {
    /// Samples this thread took under `auto` after the first checked ones.
    static AUTO_SEEN: Cell<u64> = const { Cell::new(0) };
    /// The top (highest address) of this thread's stack, 0 until looked up.
    static STACK_TOP: Cell<usize> = const { Cell::new(0) };
}

fn stack_top() -> Option<usize> {
    let known = STACK_TOP.with(Cell::get);
    if known != 0 {
        return Some(known);
    }
    // SAFETY: `attr` is initialised by pthread_getattr_np before use and destroyed after;
    // the out-pointers are valid locals.
    let top = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut base: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        if !ok {
            return None;
        }
        base as usize + size
    };
    STACK_TOP.with(|t| t.set(top));
    Some(top)
}

/// Walks the frame-pointer chain from this function's caller; `None` where frame pointers
/// cannot be walked (no known stack bounds, or an architecture without a walker).
#[inline(never)]
fn walk_frame_pointers(out: &mut [usize]) -> Option<usize> {
    let (mut fp, sp) = registers()?;
    let top = stack_top()?;
    let word = std::mem::size_of::<usize>();
    let mut len = 0;
    let mut low = sp;
    while len < out.len() {
        // A frame record is [saved frame pointer, return address], two words at `fp`.
        if fp < low || fp % word != 0 || fp.checked_add(2 * word).is_none_or(|end| end > top) {
            break;
        }
        // SAFETY: `fp .. fp + 2 words` lies between the stack pointer and the top of this
        // thread's stack, which is mapped and readable; both reads are aligned.
        let (next, ret) = unsafe {
            (
                std::ptr::read(fp as *const usize),
                std::ptr::read((fp + word) as *const usize),
            )
        };
        if ret == 0 {
            break;
        }
        out[len] = ret;
        len += 1;
        // Frames grow towards higher addresses as we go up: anything else ends the chain.
        low = fp + 2 * word;
        fp = next;
    }
    Some(len)
}

/// The current frame pointer and stack pointer.
#[inline(always)]
fn registers() -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        let (fp, sp): (usize, usize);
        // SAFETY: reads two registers into locals; no memory access, no side effects.
        unsafe {
            std::arch::asm!("mov {fp}, rbp", "mov {sp}, rsp", fp = out(reg) fp, sp = out(reg) sp,
                options(nomem, nostack, preserves_flags));
        }
        Some((fp, sp))
    }
    #[cfg(target_arch = "aarch64")]
    {
        let (fp, sp): (usize, usize);
        // SAFETY: reads two registers into locals; no memory access, no side effects.
        unsafe {
            std::arch::asm!("mov {fp}, x29", "mov {sp}, sp", fp = out(reg) fp, sp = out(reg) sp,
                options(nomem, nostack, preserves_flags));
        }
        Some((fp, sp))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
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

    #[test]
    fn both_unwinders_see_the_same_stack_here() {
        // This crate is built with frame pointers (see .cargo/config.toml): the walk and
        // DWARF must agree on this test's own stack.
        let walked = capture(Unwind::FramePointer, 32);
        let unwound = capture(Unwind::Dwarf, 32);
        assert!(walked.as_slice().len() >= 3, "walk too short");
        // The first two walked frames are return addresses into `capture` and into this
        // test at the first call site; DWARF's are at the second call site.
        assert!(
            chains_agree(&walked.as_slice()[2..], unwound.as_slice()),
            "fp {:x?}\ndwarf {:x?}",
            walked.as_slice(),
            unwound.as_slice()
        );
    }
}
