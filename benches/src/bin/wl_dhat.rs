//! The workloads under `dhat::Alloc` with a heap profiler running (dhat-rs records every
//! allocation with its stack). Its profile is written to `/dev/null` after the timed part.

use alloc_tracker_benches::cli::{self, Allocator};
use std::process::ExitCode;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    let _profiler = dhat::Profiler::builder().file_name("/dev/null").build();
    cli::main(Allocator::Dhat)
}
