//! The tracker configurations the benchmarks compare, one `static` each, called directly
//! through `GlobalAlloc` so that they sit side by side in one process.
//!
//! All trackers of a process share one per-thread sampling countdown: a benchmark switching
//! between them calls `alloc_tracker::internals::restart_countdown` first. The
//! frame-pointer configurations give right stacks only in a frame-pointer build
//! (`cfg(frame_pointers)`, see `build.rs`); the benches measure them only there.

use alloc_tracker::{Tracker, Unwind};

/// Sampling off: exact counts, the countdown and the free filter (the fast path alone).
pub static OFF: Tracker = Tracker::system().with_sample_rate(0);
/// The default: one sample per 512 KiB, `auto` unwinding.
pub static DEFAULT: Tracker = Tracker::system();
/// One sample per 64 KiB, `auto` unwinding.
pub static RATE_64K: Tracker = Tracker::system().with_sample_rate(64 * 1024);
/// One sample per 4 KiB, frame-pointer unwinding.
pub static RATE_4K_FP: Tracker = Tracker::system()
    .with_sample_rate(4096)
    .with_unwind(Unwind::FramePointer);
/// One sample per 4 KiB, DWARF unwinding through `backtrace`.
pub static RATE_4K_DWARF: Tracker = Tracker::system()
    .with_sample_rate(4096)
    .with_unwind(Unwind::Dwarf);
/// Every allocation sampled, frame-pointer unwinding.
pub static EXACT_FP: Tracker = Tracker::system()
    .with_sample_rate(1)
    .with_unwind(Unwind::FramePointer);
/// Every allocation sampled, the table unwinder.
pub static EXACT_TABLE: Tracker = Tracker::system()
    .with_sample_rate(1)
    .with_unwind(Unwind::Table);
/// Every allocation sampled, DWARF unwinding through `backtrace`.
pub static EXACT_DWARF: Tracker = Tracker::system()
    .with_sample_rate(1)
    .with_unwind(Unwind::Dwarf);
