//! Criterion micro-benchmarks of the tracker's overhead, every configuration side by side.
//!
//! Each configuration is a `static` [`Tracker`] called directly through `GlobalAlloc` (the
//! process's own global allocator stays `System`), so one run compares them all:
//!
//! * `pair/<config>/<size>`: one alloc+free pair of 16 B … 64 KiB;
//! * `realloc/<config>`: a block grown from 16 B to 64 KiB by doubling `realloc`s, then freed;
//! * `fast_path/<config>`: the unsampled fast path alone (`off`: counters, countdown and the
//!   free filter, never a sample) against `System`, 64 B pairs;
//! * `sampled_event/<unwinder>/<depth>`: a 64 B pair in exact mode at a stack depth of ~15,
//!   ~20 and ~40 frames (capture, intern, record, remove) with frame pointers, the unwind
//!   tables or DWARF; `off` at the same depth is the baseline to subtract;
//! * `threads/<n>/<config>`: 64 B pairs on `n` threads at once; the time is per pair on each
//!   thread, so a tracker without a shared hot spot keeps its one-thread time.
//!
//! The frame-pointer configurations (`4k-fp`, `exact-fp`, `sampled_event/fp`) exist only in
//! a build with frame pointers (`cfg(frame_pointers)`, see `build.rs`): elsewhere their
//! stacks are a frame or two and their times mean nothing. `run.sh` runs this bench in both
//! builds, the frame-pointer one for those configurations alone.
//!
//! All trackers of a process share one per-thread sampling countdown, so each benchmark
//! calls [`sampler::restart_countdown`] before it starts. Environment variables would
//! override the configurations: run with no `ALLOC_TRACKER_*` set (`run.sh` unsets them).

use alloc_tracker::internals as sampler;
use alloc_tracker_benches::depth::nested;
use criterion::{criterion_group, BenchmarkId, Criterion};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use alloc_tracker_benches::trackers::{
    DEFAULT as R512K, EXACT_DWARF, EXACT_TABLE, OFF, RATE_4K_DWARF as R4K_DWARF, RATE_64K as R64K,
};
#[cfg(frame_pointers)]
use alloc_tracker_benches::trackers::{EXACT_FP, RATE_4K_FP as R4K_FP};

const SIZES: [usize; 6] = [16, 64, 256, 1024, 4096, 64 * 1024];

/// One alloc+free pair.
#[inline(always)]
fn pair<A: GlobalAlloc>(alloc: &A, layout: Layout) {
    // SAFETY: every layout used here has a non-zero size; the block is freed at once by
    // the allocator that made it, with the same layout, and never touched.
    unsafe {
        let ptr = alloc.alloc(layout);
        black_box(ptr);
        if !ptr.is_null() {
            alloc.dealloc(ptr, layout);
        }
    }
}

/// A block grown from 16 B to 64 KiB by doubling, then freed.
#[inline(always)]
fn realloc_growth<A: GlobalAlloc>(alloc: &A) {
    let mut layout = Layout::from_size_align(16, 8).expect("valid layout");
    // SAFETY: non-zero sizes; each realloc passes the block's current layout and a
    // non-zero new size; a null result leaves the old block live, and it is freed with its
    // own layout; the block is never touched.
    unsafe {
        let mut ptr = alloc.alloc(layout);
        while !ptr.is_null() && layout.size() < 64 * 1024 {
            let new_size = layout.size() * 2;
            let new = alloc.realloc(ptr, layout, new_size);
            if new.is_null() {
                break;
            }
            ptr = black_box(new);
            layout = Layout::from_size_align(new_size, 8).expect("valid layout");
        }
        if !ptr.is_null() {
            alloc.dealloc(ptr, layout);
        }
    }
}

/// Calls `$callback(name, &allocator, args…)` for every configuration, `System` first.
macro_rules! each_config {
    ($callback:ident, $($args:expr),*) => {
        $callback("system", &System, $($args),*);
        $callback("off", &OFF, $($args),*);
        $callback("512k", &R512K, $($args),*);
        $callback("64k", &R64K, $($args),*);
        #[cfg(frame_pointers)]
        $callback("4k-fp", &R4K_FP, $($args),*);
        $callback("4k-dwarf", &R4K_DWARF, $($args),*);
        #[cfg(frame_pointers)]
        $callback("exact-fp", &EXACT_FP, $($args),*);
        $callback("exact-table", &EXACT_TABLE, $($args),*);
        $callback("exact-dwarf", &EXACT_DWARF, $($args),*);
    };
}

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group("pair");
    for size in SIZES {
        let layout = Layout::from_size_align(size, 8).expect("valid layout");
        fn bench<A: GlobalAlloc + Sync>(
            name: &str,
            alloc: &'static A,
            group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
            layout: Layout,
        ) {
            group.bench_with_input(BenchmarkId::new(name, layout.size()), &layout, |b, &l| {
                sampler::restart_countdown();
                b.iter(|| pair(alloc, l));
            });
        }
        each_config!(bench, &mut group, layout);
    }
    group.finish();
}

fn reallocs(c: &mut Criterion) {
    let mut group = c.benchmark_group("realloc");
    fn bench<A: GlobalAlloc + Sync>(
        name: &str,
        alloc: &'static A,
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    ) {
        group.bench_function(name, |b| {
            sampler::restart_countdown();
            b.iter(|| realloc_growth(alloc));
        });
    }
    each_config!(bench, &mut group);
    group.finish();
}

fn fast_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("fast_path");
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    group.bench_function("system", |b| b.iter(|| pair(&System, layout)));
    group.bench_function("off", |b| {
        sampler::restart_countdown();
        b.iter(|| pair(&OFF, layout));
    });
    group.bench_function("512k", |b| {
        sampler::restart_countdown();
        b.iter(|| pair(&R512K, layout));
    });
    group.finish();
}

/// Frames on the stack at the caller (as DWARF unwinding counts them).
#[inline(never)]
fn stack_depth() -> usize {
    let mut frames = 0usize;
    backtrace::trace(|_| {
        frames += 1;
        true
    });
    // Not counting `stack_depth` itself.
    frames.saturating_sub(1)
}

fn sampled_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("sampled_event");
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    fn bench<A: GlobalAlloc + Sync>(
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
        alloc: &'static A,
        layout: Layout,
        target: usize,
    ) {
        let shown = std::cell::Cell::new(false);
        group.bench_function(BenchmarkId::new(name, target), |b| {
            b.iter_custom(|iters| {
                // `base` frames are below `nested(0)`; the closure adds one, and so does each
                // extra level of `nested`.
                let base = nested(0, &mut stack_depth);
                let extra = target.saturating_sub(base + 1);
                nested(extra, &mut || {
                    if !shown.replace(true) && std::env::var_os("BENCH_SHOW_DEPTH").is_some() {
                        eprintln!("{name}: allocating at stack depth {}", stack_depth());
                    }
                    sampler::restart_countdown();
                    let start = Instant::now();
                    for _ in 0..iters {
                        pair(alloc, layout);
                    }
                    start.elapsed()
                })
            });
        });
    }
    for target in [15, 20, 40] {
        bench(&mut group, "off", &OFF, layout, target);
        #[cfg(frame_pointers)]
        bench(&mut group, "fp", &EXACT_FP, layout, target);
        bench(&mut group, "table", &EXACT_TABLE, layout, target);
        bench(&mut group, "dwarf", &EXACT_DWARF, layout, target);
    }
    group.finish();
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1, 2];
    if cores >= 4 {
        counts.push(4);
    }
    fn bench<A: GlobalAlloc + Sync>(
        name: &str,
        alloc: &'static A,
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        threads: usize,
        layout: Layout,
    ) {
        group.bench_function(BenchmarkId::new(threads.to_string(), name), |b| {
            b.iter_custom(|iters| {
                let start = Barrier::new(threads);
                std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..threads)
                        .map(|_| {
                            scope.spawn(|| {
                                // A new thread draws its own countdown at its first
                                // allocation; start timing after that.
                                pair(alloc, layout);
                                start.wait();
                                let begin = Instant::now();
                                for _ in 0..iters {
                                    pair(alloc, layout);
                                }
                                begin.elapsed()
                            })
                        })
                        .collect();
                    workers
                        .into_iter()
                        .map(|w| w.join().expect("bench thread panicked"))
                        .max()
                        .unwrap_or(Duration::ZERO)
                })
            });
        });
    }
    for n in counts {
        bench("system", &System, &mut group, n, layout);
        bench("off", &OFF, &mut group, n, layout);
        bench("512k", &R512K, &mut group, n, layout);
        #[cfg(frame_pointers)]
        bench("4k-fp", &R4K_FP, &mut group, n, layout);
        #[cfg(frame_pointers)]
        bench("exact-fp", &EXACT_FP, &mut group, n, layout);
        bench("exact-table", &EXACT_TABLE, &mut group, n, layout);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2));
    targets = pairs, reallocs, fast_path, sampled_event, threads
}

fn main() {
    for name in ["ALLOC_TRACKER_RATE", "ALLOC_TRACKER_UNWIND"] {
        if std::env::var_os(name).is_some() {
            eprintln!("warning: {name} is set and overrides every configuration of this bench");
        }
    }
    if std::env::var_os("ALLOC_TRACKER_REPORT").is_none() {
        // No exit report: the samples of a bench describe nothing worth reading.
        std::env::set_var("ALLOC_TRACKER_REPORT", "off");
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
