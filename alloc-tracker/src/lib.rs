//! # alloc-tracker
//!
//! A heap profiler that lives inside a Rust program: install [`Tracker`] as the global
//! allocator, run the program, and read on exit which lines of it still hold memory, how
//! much, and through which stack. It is built to find *long-lived reference leaks*: memory
//! the program can still reach but no longer needs.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();
//!
//! fn main() {
//!     // ... the program ...
//! } // the report is written to stderr at exit
//! ```
//!
//! ## How it works
//!
//! * **Exact totals** ([`stats`]): every allocation and free is counted in per-thread
//!   counters (no lock, no shared cache line on the hot path).
//! * **Sampling**: about one allocation per [`DEFAULT_SAMPLE_RATE`] bytes (512 KiB) is
//!   sampled with its stack, Poisson over bytes like Go and tcmalloc. Each sample carries
//!   its own weight, so per-site estimates are unbiased. Rate `1` records every allocation
//!   exactly; `0` turns sampling off.
//! * **Cheap frees**: a free checks one byte of a counting filter; only pointers that may
//!   have been sampled reach the sample table.
//! * **Symbols at report time only**: stacks are raw addresses until a report is made.
//! * **The site** of a stack is its first frame in the program's own code (not the tracker,
//!   not `std`/`alloc`/`core`, not a dependency from the registry): the line to fix.
//!
//! ## Configuration (the environment overrides code)
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ALLOC_TRACKER_RATE` | mean bytes between samples (`512k`, `1m` work); `1` = every allocation; `0` = off | `524288` |
//! | `ALLOC_TRACKER_REPORT` | comma list of exit-report destinations: `stderr` (text), `off`, or file paths whose ending picks the format: `.json` (the JSON report), `.dhat.json` (DHAT's viewer), `.pb.gz` (pprof), `.folded` (folded stacks), `.svg` (flamegraph) | `stderr` |
//! | `ALLOC_TRACKER_DEPTH` | most frames kept per stack (1–128) | `64` |
//! | `ALLOC_TRACKER_UNWIND` | `fp`, `table`, `dwarf` or `auto` (see [`Unwind`]) | `auto` |
//! | `ALLOC_TRACKER_MAX_STACKS` | distinct stacks kept; the rest pool in `[other stacks]` | `16384` |
//! | `ALLOC_TRACKER_HTTP` | with the `http` feature: address to serve `/debug/pprof/heap` on, e.g. `127.0.0.1:6060` (or call `serve`) | unset |
//!
//! A bad value prints one line on stderr and the default is used.
//!
//! ## Other viewers, the CLI, the live endpoint
//!
//! The same report opens in `go tool pprof`, Pyroscope and Parca ([`Report::to_pprof_gz`]),
//! as a flamegraph ([`Report::to_folded`], and `to_flamegraph_svg` with the `svg` feature),
//! and in DHAT's viewer ([`Report::to_dhat_json`]); [`Report::render`] takes any
//! [`Format`]. The `alloc-tracker` command (its own package, `cli/` in this repository:
//! `cargo install --path cli`) ranks a JSON report (`top`), compares two (`diff`) and
//! converts one (`convert`).
//!
//! | cargo feature | default | adds |
//! |---|---|---|
//! | `svg` | off | SVG flamegraphs (depends on `inferno`, licensed CDDL-1.0) |
//! | `http` | off | the live `/debug/pprof/heap` endpoint (no dependency) |
//!
//! The default build holds what an allocator needs and nothing more.
//!
//! ## When the report is written
//!
//! On return from `main`, `std::process::exit` from any thread, a panic that ends the
//! program, and SIGINT/SIGTERM (when the program installs no handler of its own). Programs
//! that end otherwise can call [`write_report`] first. `fork` children write their own
//! report, with their pid in file names.
//!
//! ## Safety of the host
//!
//! The allocation path never panics, never blocks on anything but the tracker's short
//! sharded locks, and never recurses: the tracker's own allocations bypass it (and are
//! reported as `tracker.bytes`, not as the program's memory).

#![warn(missing_docs)]

mod alloc;
mod capture;
mod checkpoints;
mod clock;
mod config;
mod counters;
mod export;
mod filter;
#[cfg(feature = "http")]
mod http;
mod lifecycle;
mod origin;
mod output;
mod process;
mod reentrancy;
mod report;
mod sampler;
mod samples;
mod signals;
mod snapshot;
mod spin;
mod stacks;
mod symbolize;
mod threads;
mod tracker_memory;
mod trend;
pub mod units;
mod writer;

pub use crate::alloc::Tracker;
pub use crate::config::{Unwind, DEFAULT_SAMPLE_RATE};
pub use crate::export::json::ReadError;
pub use crate::export::{Format, UnknownFormat};
#[cfg(feature = "http")]
pub use crate::http::{serve, MAX_CONNECTIONS};
pub use crate::report::{
    Age, Figures, Location, ProcessGauges, Report, Severity, Site, Stack, Stats, Suspect,
    TrackerFigures, Trend, FORMAT, VERSION,
};
pub use crate::trend::MIN_SUSPECT_BYTES;

/// Internals for the project's own benchmarks and tests. **Not part of the API**: hidden
/// from the docs, and free to change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::capture::internals::{dwarf_stack, table_scans, table_stack};
    pub use crate::sampler::{restart_countdown, sample_probability};
}

/// The exact totals so far: live bytes and allocations, peak, bytes and allocations made,
/// frees. Cheap (a sum over per-thread counters); allocates nothing.
///
/// ```
/// let stats = alloc_tracker::stats();
/// assert!(stats.live_allocs <= stats.allocs);
/// ```
pub fn stats() -> Stats {
    counters::totals()
}

/// Sets the sampling rate of every tracker: mean bytes between samples, `1` for every
/// allocation, `0` for none. Overrides code and `ALLOC_TRACKER_RATE`. Takes effect at once
/// on this thread; other threads switch at their next sampling decision (on average after
/// the old rate's worth of their allocations). Samples keep the weight of the rate they
/// were taken at, so estimates stay unbiased across the change.
pub fn set_sample_rate(bytes: u64) {
    config::set_runtime_rate(bytes);
    sampler::restart_countdown();
}

/// The sampling rate in force (mean bytes between samples).
pub fn sample_rate() -> u64 {
    sampler::rate_in_use()
}

/// Sets the unwinder of every tracker, overriding code and `ALLOC_TRACKER_UNWIND`.
pub fn set_unwind(unwind: Unwind) {
    config::set_runtime_unwind(unwind);
}

/// A report of the heap now: exact totals, every allocation site with its estimated live
/// and allocated bytes and objects, its stacks, and process gauges.
///
/// The first report of a process loads debug info to symbolize (milliseconds); later ones
/// reuse what they resolved. The returned value is the caller's memory (it is counted as
/// the program's, at the caller's line).
pub fn report() -> Report {
    let internal = reentrancy::untracked(snapshot::take);
    let report = internal.clone();
    reentrancy::untracked(move || drop(internal));
    report
}

/// Records each site's live bytes now, as one point of the trends that tell leaks from
/// caches. `ALLOC_TRACKER_INTERVAL` takes checkpoints on a timer; call this
/// where the program has natural phases (after each batch, request, or test step).
pub fn checkpoint() {
    checkpoints::take();
}

/// Writes the report to the destinations of `ALLOC_TRACKER_REPORT` now (stderr by
/// default), for programs that end in a way the exit report does not cover. The exit
/// report is still written at exit.
pub fn write_report() {
    let _guard = reentrancy::enter();
    writer::write_on_demand();
}
