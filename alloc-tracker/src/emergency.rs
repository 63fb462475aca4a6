//! The emergency level: the heap, or the resident memory, near the process's memory limit —
//! and a report written at once, before the kernel's OOM killer acts.
//!
//! At start-up the limit is read (see `process::limit`: `ALLOC_TRACKER_LIMIT`, the memory
//! cgroup's, physical memory). Then, whenever a sampling decision sums the exact live heap
//! (see `counters::note_peak`: at least once per 64 KiB a thread's heap grows, so a big
//! allocation is seen at once), it is compared with [`LEVELS`] of the limit; the resident
//! size is read too, at most every [`RSS_EVERY`] (a `/proc` read costs microseconds). When
//! either crosses the next level, **that thread writes the report to every destination at
//! once** — stderr included, which orchestrators keep — with the sites that hold the most
//! and grow named as suspects of severity `emergency`. No per-allocation work is added: the
//! check runs only where the live total was summed anyway.
//!
//! The report must be cheap at the limit: its sites are named from the symbol tables alone
//! (no debug info is loaded, so sites carry function names, and file:line only where
//! already known), loaded ahead of time once memory passes [`PRELOAD_PERCENT`] of the limit
//! — a few milliseconds and about 16 bytes per function of the program. Each level fires once; after the heap and the resident size fall
//! under [`REARM_PERCENT`] of the limit, the levels are armed again. A later report (another
//! crossing, on demand, at exit) replaces the files whole.

use crate::process;
use crate::process::limit::{self, LEVELS};
use crate::{clock, writer};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Under this share of the limit, the levels are armed again.
pub(crate) const REARM_PERCENT: u64 = 80;
/// From this share of the limit, the symbol tables are loaded ahead of an emergency report.
pub(crate) const PRELOAD_PERCENT: u64 = 50;
/// The resident size is read at most this often.
pub(crate) const RSS_EVERY: Duration = Duration::from_millis(10);

/// The next level to fire (an index into [`LEVELS`]; `LEVELS.len()`: all fired).
static NEXT_LEVEL: AtomicUsize = AtomicUsize::new(0);
static LAST_RSS_NS: AtomicU64 = AtomicU64::new(0);
/// Whether the symbol tables were loaded ahead of an emergency report.
static PRELOADED: AtomicBool = AtomicBool::new(false);
/// Whether a thread is writing an emergency report.
static WRITING: AtomicBool = AtomicBool::new(false);

/// At a sampling decision that summed the live heap: writes the emergency report if memory
/// crossed the next level of the limit. Runs as tracker code.
pub(crate) fn check(heap_bytes: u64) {
    let Some(limit) = limit::current().map(|limit| limit.bytes) else {
        return;
    };
    let next = NEXT_LEVEL.load(Ordering::Relaxed);
    let share = |percent: u64| (limit as u128 * u128::from(percent) / 100) as u64;
    let mut rss = None;
    let now = clock::since_start_ns();
    let last = LAST_RSS_NS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= RSS_EVERY.as_nanos() as u64
        && LAST_RSS_NS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        rss = process::rss_bytes();
    }
    let high = heap_bytes.max(rss.unwrap_or(0));
    if high >= share(PRELOAD_PERCENT) && !PRELOADED.swap(true, Ordering::Relaxed) {
        // Ahead of a crossing, while there is room: the symbol tables that will name the
        // emergency report's sites (milliseconds, ~16 bytes a function).
        crate::symbolize::preload_symbol_tables();
    }
    if next > 0 && high < share(REARM_PERCENT) && rss.is_some() {
        // Both well under the limit again: arm every level.
        NEXT_LEVEL.store(0, Ordering::Relaxed);
        return;
    }
    let Some(&level) = LEVELS.get(next) else {
        return;
    };
    if high < share(level) {
        return;
    }
    if WRITING.swap(true, Ordering::AcqRel) {
        return; // another thread is writing it
    }
    // Every level the memory passed fires now, once.
    let passed = LEVELS.iter().take_while(|&&l| high >= share(l)).count();
    NEXT_LEVEL.store(passed.max(next + 1), Ordering::Relaxed);
    writer::write_emergency();
    WRITING.store(false, Ordering::Release);
}
