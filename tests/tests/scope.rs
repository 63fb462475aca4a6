//! `alloc_tracker::Scope`: exact, per-thread heap accounting inside the default (parallel)
//! test harness. This binary installs the tracker as its global allocator — the two lines a
//! crate adds to a test binary of its own — and runs under libtest, whose threads allocate
//! alongside: each scope must see only its own thread.

use alloc_tracker::{Scope, Usage};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use tracker_tests::marker_line;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

const SOURCE: &str = "tests/scope.rs";

/// Allocates `n` blocks of `size` bytes into a pre-sized vector, frees every other one,
/// and returns what is left: allocations `n + 1`, frees `n / 2`, retained `n - n / 2`
/// blocks plus the vector.
#[inline(never)]
fn churn(n: usize, size: usize) -> Vec<Option<Box<[u8]>>> {
    let mut blocks: Vec<Option<Box<[u8]>>> = Vec::with_capacity(n); // kept: the vector
    for i in 0..n {
        blocks.push(Some(vec![i as u8; size].into_boxed_slice())); // kept: blocks
    }
    for block in blocks.iter_mut().step_by(2) {
        *block = None;
    }
    blocks
}

/// What [`churn`] must measure.
fn expected(n: usize, size: usize) -> (u64, u64, u64, u64, u64, u64) {
    let slot = std::mem::size_of::<Option<Box<[u8]>>>();
    let (n, size, slot) = (n as u64, size as u64, slot as u64);
    let freed = n.div_ceil(2);
    (
        n + 1,
        n * slot + n * size,
        freed,
        freed * size,
        n - freed + 1,
        n * slot + (n - freed) * size,
    )
}

fn measured(usage: &Usage) -> (u64, u64, u64, u64, u64, u64) {
    (
        usage.allocs,
        usage.alloc_bytes,
        usage.frees,
        usage.freed_bytes,
        usage.retained_allocs,
        usage.retained_bytes,
    )
}

/// One scope around a heavy churn, with exact expectations.
fn exact_churn(n: usize, size: usize) {
    let scope = Scope::start();
    let kept = churn(n, size);
    let usage = scope.finish();
    assert_eq!(measured(&usage), expected(n, size), "{usage}");
    drop(kept);
}

// Eight tests that libtest runs in parallel with one another (and with the rest).
#[test]
fn exact_in_parallel_1() {
    exact_churn(20_000, 24);
}
#[test]
fn exact_in_parallel_2() {
    exact_churn(30_000, 40);
}
#[test]
fn exact_in_parallel_3() {
    exact_churn(10_000, 1_000);
}
#[test]
fn exact_in_parallel_4() {
    exact_churn(25_000, 8);
}
#[test]
fn exact_in_parallel_5() {
    exact_churn(5_000, 4_096);
}
#[test]
fn exact_in_parallel_6() {
    exact_churn(40_000, 16);
}
#[test]
fn exact_in_parallel_7() {
    exact_churn(15_000, 100);
}
#[test]
fn exact_in_parallel_8() {
    exact_churn(20_000, 64);
}

/// Eight threads in scopes at the very same time (a barrier lines them up), each churning
/// heavily while the others do: each is exact.
#[test]
fn eight_threads_measure_themselves_at_once() {
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let (n, size) = (10_000 + 1_000 * t, 16 + 8 * t);
                start.wait();
                let scope = Scope::start();
                let kept = churn(n, size);
                let usage = scope.finish();
                drop(kept);
                (measured(&usage), expected(n, size), usage.to_string())
            })
        })
        .collect();
    for thread in threads {
        let (measured, expected, usage) = thread.join().expect("thread");
        assert_eq!(measured, expected, "{usage}");
    }
}

#[inline(never)]
fn leak_for_the_message() -> Vec<u8> {
    vec![7u8; 3_000] // retained here
}

#[test]
fn the_assertion_names_the_retaining_line() {
    let scope = Scope::start();
    let kept = leak_for_the_message();
    let usage = scope.finish();
    let message = std::panic::catch_unwind(|| usage.assert_retains_at_most(0))
        .expect_err("3000 bytes retained")
        .downcast::<String>()
        .expect("a formatted message");
    let line = marker_line(SOURCE, "// retained here");
    assert!(
        message.contains(&format!("{SOURCE}:{line}")) && message.contains("3000 bytes"),
        "{message}"
    );
    assert!(message.contains("leak_for_the_message"), "{message}");
    usage.assert_retains_at_most(3_000);
    let line = marker_line(SOURCE, "// retained here") as u32;
    assert_eq!(usage.retained_at(SOURCE, line), 3_000);
    assert_eq!(usage.growth_bytes(), 3_000);
    assert!(std::panic::catch_unwind(|| usage.assert_grows_at_most(2_999)).is_err());
    usage.assert_grows_at_most(3_000);
    drop(kept);
}

#[test]
fn code_that_frees_what_it_made_retains_nothing() {
    let scope = Scope::start();
    let mut text = String::new();
    for i in 0..1_000 {
        text.push_str(&format!("{i},"));
    }
    let words: Vec<&str> = text.split(',').collect();
    black_box(&words);
    drop(words);
    drop(text);
    let usage = scope.finish();
    assert_eq!(usage.allocs, usage.frees, "{usage}");
    assert_eq!(usage.alloc_bytes, usage.freed_bytes, "{usage}");
    usage.assert_retains_at_most(0);
    assert!(usage.retained_sites.is_empty());
}

/// What a scope counts when its test spawns a thread: the scope's own thread's calls; a
/// block it made and another thread freed is not retained; the other thread's allocations
/// are not counted.
#[test]
fn a_spawned_thread_is_not_the_scopes() {
    let scope = Scope::start();
    let handed_over = vec![1u8; 5_000];
    let from_thread = std::thread::spawn(move || {
        drop(handed_over);
        vec![2u8; 7_000]
    })
    .join()
    .expect("thread");
    let usage = scope.finish();
    // This thread made `handed_over` (and the spawn's own bookkeeping), not `from_thread`.
    assert!(usage.alloc_bytes >= 5_000, "{usage}");
    assert!(usage.alloc_bytes < 5_000 + 7_000, "{usage}");
    assert!(
        usage.retained_sites.iter().all(|site| site.bytes != 5_000),
        "freed by the other thread: {usage}"
    );
    drop(from_thread);
}

/// The bytes `usage` says are retained from the line of this file marked `marker`.
fn retained_at(usage: &Usage, marker: &str) -> u64 {
    let line = marker_line(SOURCE, marker);
    usage
        .retained_sites
        .iter()
        .filter(|site| {
            site.line == Some(line as u32)
                && site.file.as_deref().is_some_and(|f| f.ends_with(SOURCE))
        })
        .map(|site| site.bytes)
        .sum()
}

/// An inner scope measures its own stretch; the outer one includes it (and the inner
/// scope's result, which the outer stretch keeps: the caller's memory, like any other).
#[test]
fn scopes_nest_and_end_when_dropped() {
    let outer = Scope::start();
    let a = vec![0u8; 1_000]; // nest: a
    let inner = Scope::start();
    let b = vec![0u8; 2_000]; // nest: b
    let inner_usage = inner.finish();
    let c = vec![0u8; 4_000]; // nest: c
    let outer_usage = outer.finish();
    assert_eq!(inner_usage.retained_bytes, 2_000, "{inner_usage}");
    assert_eq!(inner_usage.allocs, 1, "{inner_usage}");
    assert_eq!(retained_at(&inner_usage, "// nest: b"), 2_000);
    assert_eq!(retained_at(&inner_usage, "// nest: a"), 0);
    for (marker, bytes) in [
        ("// nest: a", 1_000),
        ("// nest: b", 2_000),
        ("// nest: c", 4_000),
    ] {
        assert_eq!(retained_at(&outer_usage, marker), bytes, "{outer_usage}");
    }
    // Finished out of order, or dropped unfinished: each still measures its own stretch.
    let first = Scope::start();
    let second = Scope::start();
    let d = vec![0u8; 8_000];
    let first_usage = first.finish();
    drop(second);
    assert_eq!(first_usage.retained_bytes, 8_000, "{first_usage}");
    let after = Scope::start();
    let e = vec![0u8; 16];
    assert_eq!(after.finish().retained_bytes, 16);
    drop((a, b, c, d, e));
}
