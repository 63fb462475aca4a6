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
}

impl Stack {
    /// The aligned word at `address`, if it lies within the stack.
    #[inline]
    pub(super) fn read(&self, address: u64) -> Option<u64> {
        let inside = address >= self.low
            && address % 8 == 0
            && address.checked_add(8).is_some_and(|end| end <= self.high);
        if !inside {
            return None;
        }
        // SAFETY: `address .. address + 8` lies between the stack pointer at the start of
        // the unwind and the top of this thread's stack, which is mapped and readable (the
        // unwind runs on this thread, below every frame it reads); the read is aligned.
        Some(unsafe { std::ptr::read(address as *const u64) })
    }
}
