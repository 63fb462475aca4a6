//! Alloc+free pairs through one allocator configuration, for instruction counting:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null fastpath off 1000000
//! ```
//!
//! `bench-runner` runs it with N and 2N pairs and divides the difference in instructions by
//! N, which cancels start-up and exit: instructions per pair, repeatable on a noisy machine.
//! Configurations: `system`, `off` (tracker, sampling off: the unsampled fast path alone),
//! `default` (tracker at 512 KiB), `exact-fp` / `exact-table` / `exact-dwarf` (every pair
//! sampled: capture, intern, record, remove). The tracker is called directly through `GlobalAlloc`.

use alloc_tracker_benches::trackers::{DEFAULT, EXACT_DWARF, EXACT_FP, EXACT_TABLE, OFF};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::ExitCode;

/// `pairs` alloc+free pairs of 64 bytes through `alloc` (monomorphised, so the allocator's
/// code is inlined as it is behind `#[global_allocator]`).
#[inline(never)]
fn pairs<A: GlobalAlloc>(alloc: &A, pairs: u64) {
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    for _ in 0..pairs {
        // SAFETY: `layout` has a non-zero size; the block is freed with the same layout by
        // the allocator that made it, and never used otherwise.
        unsafe {
            let ptr = alloc.alloc(layout);
            black_box(ptr);
            if !ptr.is_null() {
                alloc.dealloc(ptr, layout);
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(config), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: fastpath system|off|default|exact-fp|exact-table|exact-dwarf PAIRS");
        return ExitCode::from(2);
    };
    match config.as_str() {
        "system" => pairs(&System, n),
        "off" => pairs(&OFF, n),
        "default" => pairs(&DEFAULT, n),
        "exact-fp" => pairs(&EXACT_FP, n),
        "exact-table" => pairs(&EXACT_TABLE, n),
        "exact-dwarf" => pairs(&EXACT_DWARF, n),
        other => {
            eprintln!("unknown configuration {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
