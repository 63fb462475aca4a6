//! Nothing lost under concurrency: 4 threads × 10 million mixed allocations, reallocations
//! and frees of random sizes (1 B–256 KiB) and alignments (up to 64 KiB), including blocks
//! freed on another thread than the one that allocated them. In exact mode the totals match
//! an independent count and the per-site sums match the totals; at the default rate the
//! totals are still exact and the estimates consistent.

use alloc_tracker::{Stats, Tracker, DEFAULT_SAMPLE_RATE};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use tracker_tests::{env_or, run_checks, xorshift};

#[global_allocator]
static ALLOC: Tracker = Tracker::system().with_sample_rate(1);

const THREADS: usize = 4;

/// Operations per thread: 10 million, or `LOAD_OPS_PER_THREAD` (for quick local runs or
/// slow instrumented builds).
fn ops_per_thread() -> usize {
    env_or("LOAD_OPS_PER_THREAD", 10_000_000)
}

/// A block the test made through the global allocator.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a Block is a uniquely owned heap allocation; handing it to another thread to free
// is what the global allocator must support.
unsafe impl Send for Block {}

fn random_layout(state: &mut u64) -> Layout {
    let size = match xorshift(state) % 100 {
        0..=69 => 1 + xorshift(state) % 128,
        70..=94 => 1 + xorshift(state) % 8192,
        _ => 1 + xorshift(state) % (256 << 10),
    } as usize;
    // Mostly small alignments, one block in 64 aligned to 256 B–64 KiB.
    let align = if xorshift(state) % 64 == 0 {
        1usize << (8 + xorshift(state) % 9)
    } else {
        1usize << (xorshift(state) % 5)
    };
    Layout::from_size_align(size, align).unwrap()
}

fn free(block: Block) {
    // SAFETY: every Block came from ALLOC with its layout and is freed exactly once (it is
    // consumed here).
    unsafe { ALLOC.dealloc(block.ptr, block.layout) };
}

/// Runs the mixed workload; returns the blocks it still holds and its inbox, where blocks
/// sent after its last look may wait.
#[inline(never)]
fn churn(
    seed: u64,
    inbox: mpsc::Receiver<Block>,
    outbox: mpsc::Sender<Block>,
) -> (Vec<Block>, mpsc::Receiver<Block>) {
    let mut state = seed;
    let mut held: Vec<Block> = Vec::with_capacity(4096);
    for op in 0..ops_per_thread() {
        match xorshift(&mut state) % 10 {
            0..=4 => {
                let layout = random_layout(&mut state);
                // SAFETY: the layout has a non-zero size.
                let ptr = unsafe { ALLOC.alloc(layout) };
                assert!(!ptr.is_null());
                held.push(Block { ptr, layout });
            }
            5..=6 if !held.is_empty() => {
                let i = (xorshift(&mut state) as usize) % held.len();
                let block = &mut held[i];
                let new_size = 1 + (xorshift(&mut state) % 16384) as usize;
                // SAFETY: the block came from ALLOC with this layout; new_size is non-zero
                // and, rounded to the alignment, cannot overflow.
                let ptr = unsafe { ALLOC.realloc(block.ptr, block.layout, new_size) };
                assert!(!ptr.is_null());
                block.ptr = ptr;
                block.layout = Layout::from_size_align(new_size, block.layout.align()).unwrap();
            }
            7 if !held.is_empty() => {
                // Hand a block to the next thread, which frees it.
                let i = (xorshift(&mut state) as usize) % held.len();
                let _ = outbox.send(held.swap_remove(i));
            }
            _ if !held.is_empty() => {
                let i = (xorshift(&mut state) as usize) % held.len();
                free(held.swap_remove(i));
            }
            _ => {}
        }
        if op % 64 == 0 {
            inbox.try_iter().for_each(free);
        }
        if held.len() > 4000 {
            held.drain(..2000).for_each(free);
        }
    }
    (held, inbox)
}

/// What a threaded run left: the blocks still held, and the totals before it started.
struct Run {
    held: Vec<Block>,
    before: Stats,
}

fn threaded_run() -> Run {
    let before = alloc_tracker::stats();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, inbox)| {
            let outbox = senders[(i + 1) % THREADS].clone();
            std::thread::spawn(move || churn(0x9E37_79B9 + i as u64, inbox, outbox))
        })
        .collect();
    drop(senders);
    let mut held: Vec<Block> = Vec::new();
    let mut inboxes = Vec::new();
    for handle in handles {
        let (blocks, inbox) = handle.join().unwrap();
        held.extend(blocks);
        inboxes.push(inbox);
    }
    for inbox in &inboxes {
        held.extend(inbox.try_iter());
    }
    Run { held, before }
}

/// The live bytes the test itself accounts for: the blocks held and the vector holding them.
fn independent_count(held: &Vec<Block>) -> i64 {
    let blocks: u64 = held.iter().map(|b| b.layout.size() as u64).sum();
    (blocks + (held.capacity() * std::mem::size_of::<Block>()) as u64) as i64
}

/// Checks the exact totals against the independent count. Thread handles, channels and the
/// thread-locals of exited threads come and go: they are small against the ~100 MB held.
fn assert_totals_match(before: &Stats, held: &Vec<Block>) {
    let after = alloc_tracker::stats();
    let grown = after.live_bytes as i64 - before.live_bytes as i64;
    let expected = independent_count(held);
    assert!(
        (grown - expected).abs() < 64 * 1024,
        "grew {grown}, threads hold {expected}"
    );
    assert!(after.allocs - before.allocs >= (THREADS * ops_per_thread() / 2) as u64);
}

fn exact_mode_totals_and_sites_add_up() {
    let Run { held, before } = threaded_run();
    assert_totals_match(&before, &held);
    let report = alloc_tracker::report();
    let site_bytes: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    let site_allocs: u64 = report.sites.iter().map(|s| s.figures.live_allocs).sum();
    assert_eq!(report.tracker.dropped_samples, 0);
    assert_eq!(
        site_bytes, report.totals.live_bytes,
        "site sums vs exact total"
    );
    assert_eq!(site_allocs, report.totals.live_allocs);

    held.into_iter().for_each(free);
    let report = alloc_tracker::report();
    let site_bytes: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    assert_eq!(
        site_bytes, report.totals.live_bytes,
        "after freeing everything"
    );
}

fn default_rate_totals_stay_exact_and_estimates_consistent() {
    alloc_tracker::set_sample_rate(DEFAULT_SAMPLE_RATE);
    let Run { held, before } = threaded_run();
    assert_totals_match(&before, &held);
    let report = alloc_tracker::report();
    assert_eq!(report.sample_rate, DEFAULT_SAMPLE_RATE);
    assert_eq!(report.tracker.dropped_samples, 0);
    for site in &report.sites {
        let f = &site.figures;
        assert!(
            f.live_allocs <= f.allocs && f.live_bytes <= f.alloc_bytes,
            "{site:?}"
        );
        assert!(f.live_bytes <= f.peak_live_bytes, "{site:?}");
        assert_eq!(f.live_samples == 0, f.live_bytes == 0, "{site:?}");
    }
    // Everything sampled, across sites, estimates the exact total: within a factor of two
    // (the run holds ~100 MB, several hundred samples).
    let estimated: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    let truth = report.totals.live_bytes as f64;
    assert!(
        (estimated as f64 - truth).abs() < 0.5 * truth,
        "estimated {estimated} of {truth}"
    );
    held.into_iter().for_each(free);
}

fn main() {
    run_checks(
        "concurrent",
        &[
            (
                "exact_mode_totals_and_sites_add_up",
                exact_mode_totals_and_sites_add_up,
            ),
            (
                "default_rate_totals_stay_exact_and_estimates_consistent",
                default_rate_totals_stay_exact_and_estimates_consistent,
            ),
        ],
    );
}
