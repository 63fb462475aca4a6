//! The workloads under `alloc_tracker::Tracker` wrapping `tikv_jemallocator::Jemalloc`.

use alloc_tracker_benches::cli::{self, Allocator};
use alloc_tracker_benches::jemalloc;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker<tikv_jemallocator::Jemalloc> =
    alloc_tracker::Tracker::new(tikv_jemallocator::Jemalloc);

fn main() -> ExitCode {
    cli::main_with(Allocator::TrackerJemalloc, Some(jemalloc::prof_settings))
}
