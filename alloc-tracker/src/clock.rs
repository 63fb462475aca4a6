//! A monotonic clock readable from the allocator (`sys::monotonic_ns`: `clock_gettime`
//! through the vDSO on Linux), no allocation, no lock.

use std::sync::atomic::{AtomicU64, Ordering};

static START_NS: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds on the monotonic clock.
pub(crate) fn monotonic_ns() -> u64 {
    crate::sys::monotonic_ns()
}

/// Nanoseconds since the tracker started, to within a few milliseconds (`sys::coarse_monotonic_ns`:
/// on Linux the kernel's coarse clock, a few nanoseconds to read instead of tens), for the birth time of every sample —
/// ages are shown to a tenth of a second. Never before the start.
pub(crate) fn coarse_since_start_ns() -> u64 {
    let now = crate::sys::coarse_monotonic_ns();
    mark_start();
    now.saturating_sub(START_NS.load(Ordering::Relaxed))
}

/// Records the tracker's start time (the first call wins). Reads before it writes: called
/// at every sample, a write to the shared line each time would bounce it between cores.
pub(crate) fn mark_start() {
    if START_NS.load(Ordering::Relaxed) == 0 {
        let _ = START_NS.compare_exchange(0, monotonic_ns(), Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Nanoseconds since the tracker started.
pub(crate) fn since_start_ns() -> u64 {
    mark_start();
    monotonic_ns().saturating_sub(START_NS.load(Ordering::Relaxed))
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_nanos_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
