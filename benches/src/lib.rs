//! Overhead benchmarks of `alloc-tracker`.
//!
//! Two kinds of measurement live here:
//!
//! * **criterion benches** (`benches/micro.rs`): alloc+free pairs, `realloc` growth, the
//!   unsampled fast path, one sampled event at a chosen stack depth, and the same pairs on
//!   several threads. They call each configuration's [`alloc_tracker::Tracker`] directly
//!   through `GlobalAlloc`, so every configuration sits side by side in one process.
//! * **whole-program workloads** ([`workload`]): a service-like loop and a
//!   `HashMap<String, Vec<u8>>` build-and-drop, built once per global allocator (the
//!   `wl-*` binaries), timed in-process, plus a workload that holds a large live heap to
//!   measure the tracker's own memory.
//!
//! `benches/run.sh` builds everything, runs the workloads interleaved over several rounds
//! (`bench-runner`), runs criterion, and writes `benches/RESULTS.md`.

pub mod cli;
pub mod depth;
pub mod stats;
pub mod workload;
