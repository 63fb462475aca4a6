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
//! | `ALLOC_TRACKER_PROGRAM_CRATES` | comma list of crates (or packages) that are the program's, `-name` for a dependency (`myproj-core,-md5`): corrects which crates count as the program's for frames without debug info | read from the executable |
//!
//! A bad value prints one line on stderr and the default is used.
//!
//! ## Names, with little or no debug info
//!
//! Frames are named by the crate's own symbolizer (no `backtrace::resolve`): from the
//! debug info where the binary has some (functions, inlined calls, files, lines), from the
//! symbol tables elsewhere. With `debug = "line-tables-only"` the debug info has short
//! names (`render`, `{closure#0}`): the outermost function at each address takes its full
//! path from the symbol table, an inlined closure the one its caller proves. With no debug
//! info at all (Cargo's default release profile), frames have full names but no files, and
//! whose code a frame is — the program's, a dependency's, `std`'s — is told by its crate:
//! the crates that are dependencies are read from the paths of the executable's panic
//! locations (Cargo compiles dependencies with absolute paths, the workspace with relative
//! ones); `ALLOC_TRACKER_PROGRAM_CRATES` corrects that where it reads wrong. The C runtime
//! (glibc, the dynamic loader) is named from its symbol table only: its frames are never a
//! site, and its debug info (where `libc6-dbg` installs it) would cost ~30 MiB per report.
//!
//! Debug info is read when a report meets an address it has not named before and freed
//! once the report is built. A program that may need a report when its memory is short can
//! call [`preload_symbol_tables`] at start-up (a few milliseconds; 16 bytes of heap a
//! function, ~0.1 MiB for a small program) and [`report_with`]`(`[`Naming::SymbolTables`]`)`
//! then: function names only, no debug info read.
//!
//! Paths are shown shortened where a reader sees them ([`Location::file_line`]: the text
//! report, the CLI, DHAT's viewer), as pprof's `-trim_path` shows them; the JSON report and
//! pprof profiles keep the paths the compiler recorded.
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
//! **Platforms**: Linux (glibc, musl) and macOS as above. Windows has no POSIX signals and
//! no `fork`, and its `std::process::exit` runs no exit hook: the report is written on
//! return from `main` and after a panic that ends the program; call [`write_report`] before
//! `std::process::exit` or from a Ctrl-C handler. Any other OS fails to build, naming
//! what a port must provide.
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
mod emergency;
mod export;
mod filter;
#[cfg(feature = "http")]
mod http;
mod lifecycle;
mod origin;
mod output;
mod peak;
mod process;
mod reentrancy;
mod report;
mod sampler;
mod samples;
mod scope;
mod signals;
mod snapshot;
mod spin;
mod stacks;
mod symbolize;
mod symbols;
mod sys;
mod threads;
mod tracker_memory;
mod trend;
mod trim_path;
pub mod units;
mod writer;

pub use crate::alloc::Tracker;
pub use crate::config::{Unwind, DEFAULT_SAMPLE_RATE};
pub use crate::export::json::ReadError;
pub use crate::export::{Format, UnknownFormat};
#[cfg(feature = "http")]
pub use crate::http::{serve, MAX_CONNECTIONS};
pub use crate::report::{
    Age, AtPeak, Figures, Location, MallocGauges, PeakSite, ProcessGauges, Report, Severity, Site,
    Stack, Stats, Suspect, TrackerFigures, Trend, FORMAT, VERSION,
};
pub use crate::scope::{RetainedSite, Scope, Usage};
pub use crate::symbolize::Naming;
pub use crate::trend::MIN_SUSPECT_BYTES;

/// Internals for the project's own benchmarks and tests. **Not part of the API**: hidden
/// from the docs, and free to change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::capture::internals::{dwarf_stack, table_scans, table_stack};
    pub use crate::counters::restart_countdown;
    pub use crate::filter::buckets as filter_buckets;
    pub use crate::sampler::sample_probability;
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
    counters::restart_countdown();
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
    report_with(Naming::DebugInfo)
}

/// [`report()`], its frames named as `naming` says: [`Naming::SymbolTables`] reads no debug
/// info (function names only, no files or lines), for a report made when memory is short.
///
/// ```
/// use alloc_tracker::Naming;
/// alloc_tracker::preload_symbol_tables(); // ahead of time: ~2 ms, ~0.1 MiB
/// let report = alloc_tracker::report_with(Naming::SymbolTables);
/// eprintln!("{}", report.to_text());
/// ```
pub fn report_with(naming: Naming) -> Report {
    let internal = reentrancy::untracked(|| snapshot::take_with(naming));
    let report = internal.clone();
    reentrancy::untracked(move || drop(internal));
    report
}

/// Reads the symbol tables of the executable and its libraries now, and which crates are
/// the program's (milliseconds, and 16 bytes of heap a function: ~0.1 MiB for a small
/// program), so that a later [`report_with`]`(`[`Naming::SymbolTables`]`)` reads no file:
/// call it at start-up in a program that may need a report when its memory is short.
/// Without it, the first report reads them.
pub fn preload_symbol_tables() {
    reentrancy::untracked(symbolize::preload_symbol_tables);
}

/// The process gauges now — threads, open file descriptors, resident memory, the C
/// allocator's figures, the memory limit — without the tracker's own threads and
/// descriptors. Cheap next to [`report()`] (a few `/proc` reads on Linux, a few calls
/// elsewhere; nothing symbolized). A gauge the platform does not tell is `None`.
///
/// ```
/// let gauges = alloc_tracker::gauges();
/// # let _ = gauges.threads;
/// ```
pub fn gauges() -> ProcessGauges {
    let internal = reentrancy::untracked(process::read);
    let gauges = internal.clone();
    reentrancy::untracked(move || drop(internal));
    gauges
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
