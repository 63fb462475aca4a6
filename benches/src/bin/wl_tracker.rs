//! The workloads under `alloc_tracker::Tracker` around `System`. The rate and unwinder come
//! from `ALLOC_TRACKER_RATE` / `ALLOC_TRACKER_UNWIND` (default 512 KiB, `auto`; `1` = exact).

use alloc_tracker_benches::cli::{self, Allocator};
use std::process::ExitCode;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() -> ExitCode {
    cli::main(Allocator::Tracker)
}
