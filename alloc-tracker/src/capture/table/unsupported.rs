//! Targets without the table unwinder: every capture fails, nothing is held.

/// No registers to read.
pub(super) struct Start;

impl Start {
    /// Nothing.
    #[inline(always)]
    pub(super) fn here() -> Self {
        Start
    }
}

/// Always `None`: the caller uses its DWARF unwinder.
pub(super) fn unwind(_start: &Start, _stack_top: usize, _out: &mut crate::capture::Out) -> Option<usize> {
    None
}

/// Nothing to scan.
pub(super) fn init() {}

/// Never scans.
pub(super) fn scans() -> usize {
    0
}

/// No locks.
pub(super) fn lock_all() {}

/// No locks.
///
/// # Safety
/// None needed; `unsafe` to match the supported targets' signature.
pub(super) unsafe fn unlock_all() {}
