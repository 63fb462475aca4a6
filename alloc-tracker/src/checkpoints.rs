//! Checkpoints: each stack's live bytes recorded over time, from which trends are computed.
//!
//! Taken by a background thread, and on demand with [`crate::checkpoint`]. By default the
//! thread adapts to the run's length: it waits a twentieth of the time run so far between
//! two checkpoints, from [`FIRST_WAIT`] (a run of seconds gets a dozen points) up to
//! [`LONGEST_WAIT`] (a run of weeks, one every ten minutes); `ALLOC_TRACKER_INTERVAL` sets a
//! fixed period instead, or `off`. The ring holds at most [`CAPACITY`] checkpoints however
//! long the program runs: when it is full, every other checkpoint of its older half is
//! dropped, so recent history stays dense and old history thins out (the span covered keeps
//! growing).
//!
//! Cost: nothing per allocation. A checkpoint copies each stack's live bytes under the
//! stack table's locks — a few microseconds for a few hundred stacks, about a millisecond at
//! the 16,384-stack cap — at most ten times a second, then more rarely; the ring holds at
//! most 64 × (stacks with live samples) × 16 bytes.

use crate::config::Schedule;
use crate::spin::SpinLock;
use crate::stacks::{self, Live, StackId};
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
    pub(crate) live: Vec<(StackId, Live)>,
}

impl Checkpoint {
    /// The live bytes of `stack` at this checkpoint (none if it held nothing).
    pub(crate) fn live(&self, stack: StackId) -> Live {
        self.live
            .binary_search_by_key(&stack, |&(id, _)| id)
            .map_or(Live::default(), |i| self.live[i].1)
    }
}

static RING: SpinLock<Vec<Checkpoint>> = SpinLock::new(Vec::new());

/// Records a checkpoint now. Runs as tracker code.
pub(crate) fn take() {
    let _guard = reentrancy::enter();
    let mut live = stacks::live_by_stack();
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

/// The adaptive schedule's first wait, and its shortest.
pub(crate) const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The adaptive schedule's longest wait.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(600);

/// The adaptive schedule's wait after a checkpoint taken `uptime` into the run.
fn adaptive_wait(uptime: Duration) -> Duration {
    (uptime / 20).clamp(FIRST_WAIT, LONGEST_WAIT)
}

/// Starts the background thread that takes checkpoints on `schedule`.
pub(crate) fn start_thread(schedule: Schedule) {
    if schedule == Schedule::Off {
        return;
    }
    let started = crate::threads::spawn(Box::new(move || loop {
        let wait = match schedule {
            Schedule::Every(period) => period.max(Duration::from_millis(1)),
            _ => adaptive_wait(Duration::from_nanos(clock::since_start_ns())),
        };
        std::thread::sleep(wait);
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
    fn the_adaptive_schedule_suits_seconds_and_weeks() {
        let wait = |seconds: u64| adaptive_wait(Duration::from_secs(seconds));
        assert_eq!(wait(0), FIRST_WAIT);
        assert_eq!(wait(6), Duration::from_millis(300));
        assert_eq!(wait(3600), Duration::from_secs(180));
        assert_eq!(wait(14 * 24 * 3600), LONGEST_WAIT);
        // A 6-second run gets a dozen checkpoints or more.
        let (mut at, mut points) = (Duration::ZERO, 0);
        while at < Duration::from_secs(6) {
            at += adaptive_wait(at);
            points += 1;
        }
        assert!(points >= 12, "{points}");
    }

    #[test]
    fn missing_stacks_read_as_zero() {
        let live = |bytes| Live {
            bytes,
            ..Live::default()
        };
        let checkpoint = Checkpoint {
            at_ns: 0,
            live: vec![(1, live(10.0)), (5, live(50.0))],
        };
        assert_eq!(checkpoint.live(5).bytes, 50.0);
        assert_eq!(checkpoint.live(3), Live::default());
    }
}
