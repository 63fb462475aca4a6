//! The registers that start an unwind, and the part of the stack it may read.

/// The registers that start an unwind, read at one instruction of `table::capture`.
pub(super) struct Start {
    /// The address of that instruction.
    pub(super) pc: u64,
    /// The stack pointer there: the lowest stack address the unwind may read.
    pub(super) sp: u64,
    /// The frame pointer there (`rbp`, `x29`).
    pub(super) fp: u64,
    /// The link register there (`x30`), which may still hold the return address.
    #[cfg(target_arch = "aarch64")]
    pub(super) lr: u64,
}

#[cfg(target_arch = "x86_64")]
impl Start {
    /// The registers here, in the caller's frame.
    #[inline(always)]
    pub(super) fn here() -> Self {
        let (pc, sp, fp): (u64, u64, u64);
        // SAFETY: reads three registers into locals; no memory access, no side effects.
        unsafe {
            std::arch::asm!(
                "lea {pc}, [rip]", "mov {sp}, rsp", "mov {fp}, rbp",
                pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp,
                options(nomem, nostack, preserves_flags)
            );
        }
        Self { pc, sp, fp }
    }

    /// The return address held in a register at the start, if the architecture has one.
    pub(super) fn link_register(&self) -> Option<u64> {
        None
    }
}

#[cfg(target_arch = "aarch64")]
impl Start {
    /// The registers here, in the caller's frame.
    #[inline(always)]
    pub(super) fn here() -> Self {
        let (pc, sp, fp, lr): (u64, u64, u64, u64);
        // SAFETY: reads four registers into locals; no memory access, no side effects.
        unsafe {
            std::arch::asm!(
                "adr {pc}, .", "mov {sp}, sp", "mov {fp}, x29", "mov {lr}, x30",
                pc = out(reg) pc, sp = out(reg) sp, fp = out(reg) fp, lr = out(reg) lr,
                options(nomem, nostack, preserves_flags)
            );
        }
        Self { pc, sp, fp, lr }
    }

    /// The return address held in a register at the start, if the architecture has one.
    pub(super) fn link_register(&self) -> Option<u64> {
        Some(self.lr)
    }
}

/// The readable part of this thread's stack: `[low, high)`.
pub(super) struct Stack {
    /// The stack pointer at the start of the unwind.
    pub(super) low: u64,
    /// The top of the thread's stack (exclusive).
    pub(super) high: u64,
    /// `high - low - 8`: the word at `address` lies inside when `address - low` (wrapping)
    /// is at most this, one comparison for both bounds.
    span: u64,
}

impl Stack {
    /// The stack from `low` (the stack pointer) to `high`; `None` if it holds no word.
    pub(super) fn new(low: u64, high: u64) -> Option<Self> {
        let span = high.checked_sub(low)?.checked_sub(8)?;
        Some(Self { low, high, span })
    }

    /// The aligned word at `address`, if it lies within the stack.
    #[inline(always)]
    pub(super) fn read(&self, address: u64) -> Option<u64> {
        // Below `low`, the difference wraps past `span` (which is below `2^64 - low`).
        if address.wrapping_sub(self.low) > self.span || address % 8 != 0 {
            return None;
        }
        // SAFETY: `low <= address` and `address + 8 <= high` (checked just above): the word
        // lies between the stack pointer at the start of the unwind and the top of this
        // thread's stack, which is mapped and readable (the unwind runs on this thread,
        // below every frame it reads); the read is aligned.
        Some(unsafe { std::ptr::read(address as *const u64) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_aligned_words_inside() {
        let words = [1u64, 2, 3, 4];
        let low = words.as_ptr() as u64;
        let stack = Stack::new(low, low + 32).expect("four words");
        assert_eq!(stack.read(low), Some(1));
        assert_eq!(stack.read(low + 24), Some(4));
        assert_eq!(stack.read(low + 32), None, "at the top");
        assert_eq!(stack.read(low + 28), None, "straddles the top");
        assert_eq!(stack.read(low + 4), None, "misaligned");
        assert_eq!(stack.read(low - 8), None, "below");
        assert_eq!(stack.read(0), None);
        assert_eq!(stack.read(u64::MAX - 7), None);
        assert!(Stack::new(low, low + 7).is_none());
        assert!(Stack::new(low, low - 8).is_none());
    }
}
