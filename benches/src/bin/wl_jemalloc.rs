//! The workloads with `tikv_jemallocator::Jemalloc` as the global allocator: the baseline
//! of `wl-tracker-jemalloc`.

use alloc_tracker_benches::cli::{self, Allocator};
use alloc_tracker_benches::jemalloc;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::main_with(Allocator::Jemalloc, Some(jemalloc::prof_settings))
}
