//! Checkpoints: each stack's live bytes recorded over time, from which trends are computed.
//!
//! Taken every `ALLOC_TRACKER_INTERVAL` by a background thread, and on demand with
//! [`crate::checkpoint`]. The ring holds at most [`CAPACITY`] checkpoints however long the
//! program runs: when it is full, every other checkpoint of its older half is dropped, so
//! recent history stays dense and old history thins out (the span covered keeps growing).

use crate::spin::SpinLock;
use crate::stacks::{self, StackId};
use crate::{clock, reentrancy};
use std::time::Duration;

/// The most checkpoints kept.
pub const CAPACITY: usize = 64;

/// Each stack's live bytes at one moment.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Checkpoint {
    /// Nanoseconds since the tracker started.
    pub(crate) at_ns: u64,
    /// (stack, live bytes) for stacks with live samples, sorted by stack.
    pub(crate) live: Vec<(StackId, f64)>,
}

impl Checkpoint {
    /// The live bytes of `stack` at this checkpoint (0 if it held nothing).
    pub(crate) fn live_bytes(&self, stack: StackId) -> f64 {
        self.live
            .binary_search_by_key(&stack, |&(id, _)| id)
            .map_or(0.0, |i| self.live[i].1)
    }
}

static RING: SpinLock<Vec<Checkpoint>> = SpinLock::new(Vec::new());

/// Records a checkpoint now. Runs as tracker code.
pub(crate) fn take() {
    let _guard = reentrancy::enter();
    let mut live = stacks::live_bytes_by_stack();
    live.sort_unstable_by_key(|&(id, _)| id);
    let checkpoint = Checkpoint {
        at_ns: clock::since_start_ns(),
        live,
    };
    let mut ring = RING.lock();
    push_thinning(&mut ring, checkpoint, CAPACITY);
}

/// Appends `checkpoint`, first dropping every other entry of the older half when full.
fn push_thinning<T>(ring: &mut Vec<T>, item: T, capacity: usize) {
    if ring.len() >= capacity {
        let older = ring.len() / 2;
        let mut index = 0;
        ring.retain(|_| {
            let keep = index >= older || index % 2 == 0;
            index += 1;
            keep
        });
    }
    ring.push(item);
}

/// A copy of the checkpoints, oldest first. Runs as tracker code.
pub(crate) fn all() -> Vec<Checkpoint> {
    RING.lock().clone()
}

/// Starts the background thread that takes a checkpoint every `interval`.
pub(crate) fn start_thread(interval: Duration) {
    let interval = interval.max(Duration::from_millis(1));
    let started = crate::threads::spawn(Box::new(move || loop {
        std::thread::sleep(interval);
        take();
    }));
    if started.is_err() {
        crate::output::warn(
            "could not start the checkpoint thread; trends need alloc_tracker::checkpoint()",
        );
    }
}

/// Takes the ring's lock (before `fork`).
pub(crate) fn lock_all() {
    RING.lock_raw();
}

/// Releases the lock taken by [`lock_all`].
///
/// # Safety
/// [`lock_all`] must have been called by this thread (or by the parent, in a fork child).
pub(crate) unsafe fn unlock_all() {
    // SAFETY: the caller guarantees that `lock_all` took this lock.
    unsafe { RING.unlock_raw() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_stays_bounded_and_keeps_recent_points_dense() {
        let mut ring = Vec::new();
        for i in 0..10_000u32 {
            push_thinning(&mut ring, i, 16);
            assert!(ring.len() <= 16);
        }
        assert_eq!(ring.first(), Some(&0), "the start of the run is kept");
        assert_eq!(ring.last(), Some(&9_999));
        // The newest entries are consecutive.
        let tail = &ring[ring.len() - 4..];
        assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{ring:?}");
        assert!(ring.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn missing_stacks_read_as_zero() {
        let checkpoint = Checkpoint {
            at_ns: 0,
            live: vec![(1, 10.0), (5, 50.0)],
        };
        assert_eq!(checkpoint.live_bytes(5), 50.0);
        assert_eq!(checkpoint.live_bytes(3), 0.0);
    }
}
