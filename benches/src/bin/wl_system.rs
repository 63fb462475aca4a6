//! The workloads with `std::alloc::System` as the global allocator: the baseline.

use alloc_tracker_benches::cli::{self, Allocator};
use std::process::ExitCode;

#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

fn main() -> ExitCode {
    cli::main(Allocator::System)
}
