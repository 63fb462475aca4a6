//! Bounded memory: a program that allocates from over a million distinct stacks. The stack
//! table stops at its cap (`ALLOC_TRACKER_MAX_STACKS`, 16,384 by default), the rest is
//! pooled in one `[other stacks]` entry and counted, the tracker's tables stay small, and
//! the figures still add up.

use alloc_tracker::Tracker;
use std::hint::black_box;
use tracker_tests::run_checks;

#[global_allocator]
static ALLOC: Tracker = Tracker::system().with_sample_rate(1);

const LEVELS: u32 = 20;

/// Recurses `LEVELS` deep through one of two functions per level, chosen by the bits of
/// `path`: each of the 2^20 paths is a distinct stack. Allocates at the bottom; keeps one
/// allocation in 1024.
#[inline(never)]
fn left(level: u32, path: u32, kept: &mut Vec<Vec<u8>>) {
    descend(level + 1, path, kept);
    black_box(level);
}

#[inline(never)]
fn right(level: u32, path: u32, kept: &mut Vec<Vec<u8>>) {
    descend(level + 1, path, kept);
    black_box(level);
}

fn descend(level: u32, path: u32, kept: &mut Vec<Vec<u8>>) {
    if level == LEVELS {
        let block = vec![level as u8; 64];
        if path % 1024 == 0 {
            kept.push(block);
        }
        return;
    }
    if path >> level & 1 == 0 {
        left(level, path, kept);
    } else {
        right(level, path, kept);
    }
}

fn a_million_stacks_stop_at_the_cap() {
    let mut kept = Vec::with_capacity(2048);
    for path in 0..(1u32 << LEVELS) {
        descend(0, path, &mut kept);
    }
    let report = alloc_tracker::report();
    assert_eq!(report.tracker.stacks, 16_384, "the table stops at its cap");
    assert!(
        report.tracker.pooled_samples > 1_000_000,
        "{:?}",
        report.tracker
    );
    let other = report
        .sites
        .iter()
        .find(|s| s.site.function == "[other stacks]")
        .expect("an [other stacks] entry");
    assert!(other.figures.allocs > 1_000_000);
    assert!(
        other.figures.live_allocs >= 1000,
        "kept blocks from pooled stacks stay live"
    );
    let site_bytes: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    assert_eq!(
        site_bytes, report.totals.live_bytes,
        "the figures still add up"
    );
    // The tables (symbols aside) hold 16,384 stacks of ~30 frames and the live samples.
    let tables = report.tracker.bytes - report.tracker.symbol_bytes;
    assert!(tables < 16 << 20, "tracker tables hold {tables} bytes");
    println!(
        "tracker tables: {tables} bytes for {} stacks",
        report.tracker.stacks
    );
    black_box(kept);
}

fn main() {
    run_checks(
        "stack_cap",
        &[(
            "a_million_stacks_stop_at_the_cap",
            a_million_stacks_stop_at_the_cap,
        )],
    );
}
