//! Alloc+free pairs through the global allocator, on many threads at once, with many live
//! samples held: what a free costs as the sample table grows, and what a pair costs as the
//! threads multiply.
//!
//! Each thread makes its first allocation (which claims its counter shard and starts its
//! sampling countdown), waits for the others, then runs `pairs` 64 B pairs, in batches of
//! `batch` allocations followed by their frees (`batch` 1: the plain pair, one address over
//! and over; larger batches spread the frees over as many addresses). Its CPU time is read
//! on its own thread clock, so time lost to other processes on a shared machine does not
//! count; the wall time runs from the first thread's start to the last thread's end.

use std::alloc::Layout;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Bytes of each block of the pair loop, and of each block held live.
pub const BLOCK: usize = 64;

/// What [`run`] measured.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The threads' CPU time, summed, per pair.
    pub cpu_ns_per_pair: f64,
    /// Wall time from the start signal to the last thread's end, per pair made by all
    /// threads together (throughput; on `c` cores, `c` threads in parallel halve it).
    pub wall_ns_per_pair: f64,
    /// The wall time, in seconds.
    pub wall_secs: f64,
}

/// This thread's CPU time.
pub fn cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid out-pointer for the duration of the call.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    assert!(ok, "no thread CPU clock");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Holds `count` live 64 B blocks (allocated through the global allocator).
pub fn hold(count: usize) -> Vec<Box<[u8; BLOCK]>> {
    (0..count).map(|i| Box::new([i as u8; BLOCK])).collect()
}

/// One thread's loop: `pairs` pairs in batches of `batch`; its CPU time, and when it started
/// and ended.
fn pair_loop(pairs: u64, batch: usize, start: &Barrier) -> (Duration, Instant, Instant) {
    let layout = Layout::from_size_align(BLOCK, 8).expect("valid layout");
    let mut blocks = vec![std::ptr::null_mut::<u8>(); batch];
    let rounds = (pairs / batch as u64).max(1);
    let mut run = |rounds: u64| {
        for _ in 0..rounds {
            for slot in blocks.iter_mut() {
                // SAFETY: `layout` has a non-zero size.
                *slot = black_box(unsafe { std::alloc::alloc(layout) });
            }
            for &ptr in blocks.iter() {
                if !ptr.is_null() {
                    // SAFETY: `ptr` was allocated just above with `layout` and not freed.
                    unsafe { std::alloc::dealloc(ptr, layout) };
                }
            }
        }
    };
    // The first allocation claims the thread's shard and draws its countdown.
    run(1);
    start.wait();
    let (began, begin) = (Instant::now(), cpu_time());
    run(rounds);
    let cpu = cpu_time() - begin;
    (cpu, began, Instant::now())
}

/// Runs `pairs` pairs (rounded down to whole batches) on each of `threads` threads at once.
pub fn run(threads: usize, pairs: u64, batch: usize) -> Timing {
    let batch = batch.max(1);
    let per_thread = (pairs / batch as u64).max(1) * batch as u64;
    let start = Barrier::new(threads);
    let (cpu, wall) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(scope, || pair_loop(per_thread, batch, &start))
                    .expect("a thread starts")
            })
            .collect();
        let ends: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("pair thread panicked"))
            .collect();
        let cpu: Duration = ends.iter().map(|e| e.0).sum();
        let first = ends.iter().map(|e| e.1).min().expect("a thread");
        let last = ends.iter().map(|e| e.2).max().expect("a thread");
        (cpu, last - first)
    });
    let total = (per_thread * threads as u64) as f64;
    Timing {
        cpu_ns_per_pair: cpu.as_nanos() as f64 / total,
        wall_ns_per_pair: wall.as_nanos() as f64 / total,
        wall_secs: wall.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_several_threads() {
        let timing = run(3, 1000, 7);
        assert!(timing.cpu_ns_per_pair > 0.0 && timing.wall_ns_per_pair > 0.0);
        assert_eq!(hold(5).len(), 5);
    }
}
