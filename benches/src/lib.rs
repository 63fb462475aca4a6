//! Overhead benchmarks of `alloc-tracker`.
//!
//! Two kinds of measurement live here:
//!
//! * **criterion benches** (`benches/micro.rs`): alloc+free pairs, `realloc` growth, the
//!   unsampled fast path, one sampled event at a chosen stack depth, and the same pairs on
//!   several threads. They call each configuration's [`alloc_tracker::Tracker`] directly
//!   through `GlobalAlloc`, so every configuration sits side by side in one process.
//! * **whole programs**, built once per global allocator (the `wl-*` binaries, [`cli`]):
//!   a service-like loop and a `HashMap<String, Vec<u8>>` build-and-drop ([`workload`]),
//!   alloc+free pairs on up to 1,000 threads or with up to millions of live samples
//!   ([`pairs`]), and a workload that holds a large live heap to measure the tracker's own
//!   memory. jemalloc's own profiler is one of the allocators (`wl-jemalloc-prof`, feature
//!   `jemalloc-prof`; [`jemalloc`] reads its settings back).
//!
//! `benches/run.sh` builds everything twice (without frame pointers, as Cargo builds by
//! default, and with them; `build.rs` tells each build which it is: `cfg(frame_pointers)`),
//! runs criterion, then `bench-runner`, which runs every measurement interleaved over
//! rounds and writes `benches/RESULTS.md`.

pub mod cli;
pub mod depth;
pub mod jemalloc;
pub mod pairs;
pub mod stats;
pub mod trackers;
pub mod workload;
