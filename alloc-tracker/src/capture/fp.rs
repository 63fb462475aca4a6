//! The frame-pointer walk: follow the chain of saved frame pointers, about 1 ns a frame,
//! right only where every frame keeps a frame pointer (`-C force-frame-pointers=yes`).
//! Every frame read is checked to lie between the current stack pointer and the top of
//! this thread's stack, so a chain broken by code built without frame pointers ends the
//! walk (or yields wrong addresses) but never reads unmapped memory.

use super::Out;
use std::mem::MaybeUninit;

/// Walks the frame-pointer chain from this function's caller; `None` where frame pointers
/// cannot be walked (no known stack bounds, or an architecture without a walker).
#[inline(never)]
pub(super) fn walk(out: &mut Out, stack_top: Option<usize>) -> Option<usize> {
    let (fp, sp) = registers()?;
    Some(follow(fp, sp, stack_top?, out))
}

/// Follows the chain of frame records from `fp`, reading only inside `[low, top)`.
fn follow(mut fp: usize, mut low: usize, top: usize, out: &mut Out) -> usize {
    let word = std::mem::size_of::<usize>();
    let mut len = 0;
    while len < out.len() {
        // A frame record is [saved frame pointer, return address], two words at `fp`.
        if fp < low || fp % word != 0 || fp.checked_add(2 * word).is_none_or(|end| end > top) {
            break;
        }
        // SAFETY: `fp .. fp + 2 words` lies between the stack pointer and the top of this
        // thread's stack (the caller's bounds), which is mapped and readable; both reads are
        // aligned.
        let (next, ret) = unsafe {
            (
                std::ptr::read(fp as *const usize),
                std::ptr::read((fp + word) as *const usize),
            )
        };
        if ret == 0 {
            break;
        }
        out[len] = MaybeUninit::new(ret);
        len += 1;
        // Frames grow towards higher addresses as we go up: anything else ends the chain.
        low = fp + 2 * word;
        fp = next;
    }
    len
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

    /// The words a walk wrote (every word here was initialised by the test).
    fn written(out: &Out) -> Vec<usize> {
        // SAFETY: the tests initialise every word before the walk, which writes only
        // initialised values.
        out.iter().map(|w| unsafe { w.assume_init() }).collect()
    }

    /// A stack laid out by hand: three frame records chained upwards, the last one ending
    /// the chain with a null frame pointer.
    #[test]
    fn follows_a_hand_built_chain() {
        let mut stack = [0usize; 16];
        // Every write goes through this pointer, whose address the walk reads from.
        let words = stack.as_mut_ptr();
        let at = |i: usize| words.wrapping_add(i) as usize;
        let set = |i: usize, value: usize| {
            assert!(i < 16);
            // SAFETY: `i` is inside `stack`, which outlives every use of `words`.
            unsafe { words.add(i).write(value) }
        };
        // Records at words 2, 6 and 11: [next record, return address].
        set(2, at(6));
        set(3, 0x1111);
        set(6, at(11));
        set(7, 0x2222);
        set(11, 0);
        set(12, 0x3333);
        let top = at(16);
        let mut out = [MaybeUninit::new(0); 8];
        let len = follow(at(2), at(0), top, &mut out);
        assert_eq!(written(&out[..len]), [0x1111, 0x2222, 0x3333]);

        // A full buffer stops the walk.
        let mut short = [MaybeUninit::new(0); 2];
        assert_eq!(follow(at(2), at(0), top, &mut short), 2);
        assert_eq!(written(&short), [0x1111, 0x2222]);

        // A record pointing down the stack (a broken chain) ends the walk there.
        set(6, at(1));
        let len = follow(at(2), at(0), top, &mut out);
        assert_eq!(written(&out[..len]), [0x1111, 0x2222]);

        // So does one past the top, or misaligned.
        set(6, top);
        assert_eq!(follow(at(2), at(0), top, &mut out), 2);
        set(6, at(11) + 1);
        assert_eq!(follow(at(2), at(0), top, &mut out), 2);
        // And a record below the starting stack pointer is never read.
        assert_eq!(follow(at(2), at(3), top, &mut out), 0);
    }
}
