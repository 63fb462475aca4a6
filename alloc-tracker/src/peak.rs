//! The heap at its high-water mark: what was live, per stack, when the exact live total
//! peaked.
//!
//! Per-site peaks (`peak_live_bytes`) are each site's own maximum, reached at different
//! moments; a service that spikes and comes back needs the other view — what filled the
//! heap at the top. Whenever a sampling decision sums the live total (see
//! `counters::note_peak`) and finds it more than [`MARGIN_PERCENT`]% above the last capture,
//! each stack's live bytes are captured (a copy of the stack table's live figures). So the
//! capture kept describes a moment when the total was within that margin of its final
//! peak: the report's `at_peak`. Captures happen at most a few hundred times in a run (each
//! 10% higher than the last, from [`FLOOR`] up), never per allocation, and each costs a
//! copy of the stacks holding live samples.

use crate::spin::SpinLock;
use crate::stacks::{self, Live, StackId};
use std::sync::atomic::{AtomicU64, Ordering};

/// A new capture is taken when the live total exceeds the last one's by this share.
pub(crate) const MARGIN_PERCENT: u64 = 10;
/// No capture below this live total (start-up is not a peak worth showing).
pub(crate) const FLOOR: u64 = 1 << 20;

/// What was live per stack at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Capture {
    /// Nanoseconds since the tracker started.
    pub(crate) at_ns: u64,
    /// The exact live total then.
    pub(crate) live_bytes: u64,
    /// Each stack holding live samples then.
    pub(crate) stacks: Vec<(StackId, Live)>,
}

/// The live total of the last capture (0: none yet).
static CAPTURED: AtomicU64 = AtomicU64::new(0);
static LAST: SpinLock<Option<Capture>> = SpinLock::new(None);

/// Captures the stacks if `live` (the exact live total, just summed) is a new high-water
/// mark by more than the margin. Runs as tracker code.
pub(crate) fn consider(live: u64, now_ns: u64) {
    let captured = CAPTURED.load(Ordering::Relaxed);
    let threshold = captured
        .saturating_add(captured / 100 * MARGIN_PERCENT)
        .max(FLOOR);
    if live <= threshold
        || CAPTURED
            .compare_exchange(captured, live, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let capture = Capture {
        at_ns: now_ns,
        live_bytes: live,
        stacks: stacks::live_by_stack(),
    };
    let mut last = LAST.lock();
    if last
        .as_ref()
        .is_none_or(|l| l.live_bytes < capture.live_bytes)
    {
        *last = Some(capture);
    }
}

/// The last capture, if the heap ever passed [`FLOOR`].
pub(crate) fn last() -> Option<Capture> {
    LAST.lock().clone()
}

/// Takes the capture's lock (before `fork`).
pub(crate) fn lock_all() {
    LAST.lock_raw();
}

/// Releases the lock taken by [`lock_all`].
///
/// # Safety
/// [`lock_all`] must have been called by this thread (or by the parent, in a fork child).
pub(crate) unsafe fn unlock_all() {
    // SAFETY: the caller guarantees that `lock_all` took this lock.
    unsafe { LAST.unlock_raw() }
}
