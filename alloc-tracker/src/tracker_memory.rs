//! The tracker's own heap: what it allocates while the reentrancy guard is up (tables,
//! symbols, reports), counted apart from the program's memory.

use std::sync::atomic::{AtomicI64, Ordering};

static LIVE: AtomicI64 = AtomicI64::new(0);

/// Counts a tracker allocation.
#[inline]
pub(crate) fn on_alloc(size: usize) {
    LIVE.fetch_add(size as i64, Ordering::Relaxed);
}

/// Counts a tracker free.
#[inline]
pub(crate) fn on_free(size: usize) {
    LIVE.fetch_sub(size as i64, Ordering::Relaxed);
}

/// Bytes the tracker holds on the heap now.
pub(crate) fn live_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed).max(0) as u64
}
