//! The reentrancy guard: while a thread runs tracker code, its allocations go straight to
//! the inner allocator, uncounted and unsampled.
//!
//! The tracker allocates for itself (its tables, symbols, the report). Those allocations
//! re-enter the global allocator; the guard sends them past every table and lock, which is
//! what makes the slow path free of recursion and self-deadlock, and keeps the tracker's own
//! memory out of the program's figures (it is counted separately, see [`crate::tracker_memory`]).

use std::cell::Cell;

thread_local! {
    /// Whether this thread is inside tracker code. `const`, no destructor: readable at any
    /// point of a thread's life, including TLS teardown.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside tracker code right now.
#[inline(always)]
pub(crate) fn is_busy() -> bool {
    BUSY.with(Cell::get)
}

/// Marks this thread as inside tracker code until the returned guard is dropped.
/// Nesting is allowed: the outermost guard restores the thread to "not busy".
#[inline]
pub(crate) fn enter() -> Guard {
    Guard {
        was_busy: BUSY.with(|busy| busy.replace(true)),
        // Tracker code must not count on the program's fast path.
        fast_shard: crate::counters::suspend_fast_path(),
    }
}

/// Runs `f` as tracker code: every allocation it makes is the tracker's, not the program's.
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    let _guard = enter();
    f()
}

/// Restores the thread's previous state on drop (also when unwinding).
pub(crate) struct Guard {
    was_busy: bool,
    fast_shard: *const crate::counters::Shard,
}

impl Drop for Guard {
    fn drop(&mut self) {
        BUSY.with(|busy| busy.set(self.was_busy));
        crate::counters::resume_fast_path(self.fast_shard);
    }
}
