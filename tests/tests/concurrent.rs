//! Nothing lost under concurrency: threads allocating, reallocating and freeing blocks of
//! random sizes and alignments in exact mode, including blocks freed on another thread than
//! the one that allocated them. Afterwards the exact totals match an independent count and
//! the per-site sums match the totals.

use alloc_tracker::Tracker;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use tracker_tests::run_checks;

#[global_allocator]
static ALLOC: Tracker = Tracker::system().with_sample_rate(1);

const THREADS: usize = 4;
const OPS_PER_THREAD: usize = 1_000_000;

/// A block the test made through the global allocator.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a Block is a uniquely owned heap allocation; handing it to another thread to free
// is what the global allocator must support.
unsafe impl Send for Block {}

/// xorshift64: deterministic per-thread choices.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn random_layout(state: &mut u64) -> Layout {
    let size = match next(state) % 100 {
        0..=69 => 1 + next(state) % 128,
        70..=94 => 1 + next(state) % 8192,
        _ => 1 + next(state) % (256 << 10),
    } as usize;
    let align = 1usize << (next(state) % 8); // up to 128
    Layout::from_size_align(size, align).unwrap()
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
    for op in 0..OPS_PER_THREAD {
        match next(&mut state) % 10 {
            0..=4 => {
                let layout = random_layout(&mut state);
                // SAFETY: the layout has a non-zero size.
                let ptr = unsafe { ALLOC.alloc(layout) };
                assert!(!ptr.is_null());
                held.push(Block { ptr, layout });
            }
            5..=6 if !held.is_empty() => {
                let i = (next(&mut state) as usize) % held.len();
                let block = &mut held[i];
                let new_size = 1 + (next(&mut state) % 16384) as usize;
                // SAFETY: the block came from ALLOC with this layout; new_size is non-zero.
                let ptr = unsafe { ALLOC.realloc(block.ptr, block.layout, new_size) };
                assert!(!ptr.is_null());
                block.ptr = ptr;
                block.layout = Layout::from_size_align(new_size, block.layout.align()).unwrap();
            }
            7 if !held.is_empty() => {
                // Hand a block to the next thread, which frees it.
                let i = (next(&mut state) as usize) % held.len();
                let _ = outbox.send(held.swap_remove(i));
            }
            _ if !held.is_empty() => {
                let i = (next(&mut state) as usize) % held.len();
                let block = held.swap_remove(i);
                // SAFETY: the block came from ALLOC with this layout and is freed once.
                unsafe { ALLOC.dealloc(block.ptr, block.layout) };
            }
            _ => {}
        }
        if op % 64 == 0 {
            for block in inbox.try_iter() {
                // SAFETY: another thread allocated it from ALLOC with this layout and gave it up.
                unsafe { ALLOC.dealloc(block.ptr, block.layout) };
            }
        }
        if held.len() > 4000 {
            for block in held.drain(..2000) {
                // SAFETY: as above.
                unsafe { ALLOC.dealloc(block.ptr, block.layout) };
            }
        }
    }
    (held, inbox)
}

fn totals_and_sites_add_up_after_a_threaded_run() {
    let before = alloc_tracker::stats();
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
    let mut receivers: Vec<Option<mpsc::Receiver<Block>>> =
        receivers.into_iter().map(Some).collect();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let inbox = receivers[i].take().unwrap();
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
    let held_bytes: u64 = held.iter().map(|b| b.layout.size() as u64).sum();
    let held_vec_bytes = (held.capacity() * std::mem::size_of::<Block>()) as u64;

    let after = alloc_tracker::stats();
    let report = alloc_tracker::report();
    let site_bytes: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    let site_allocs: u64 = report.sites.iter().map(|s| s.figures.live_allocs).sum();
    assert_eq!(report.tracker.dropped_samples, 0);
    assert_eq!(
        site_bytes, report.totals.live_bytes,
        "site sums vs exact total"
    );
    assert_eq!(site_allocs, report.totals.live_allocs);
    // The independent count: what the threads still hold, plus the vector holding it.
    let grown = after.live_bytes as i64 - before.live_bytes as i64;
    let expected = (held_bytes + held_vec_bytes) as i64;
    // Thread handles, channels and thread-locals of exited threads come and go; they are
    // small against the ~10 MB held.
    assert!(
        (grown - expected).abs() < 64 * 1024,
        "grew {grown}, threads hold {expected}"
    );
    assert!(after.allocs - before.allocs >= (THREADS * OPS_PER_THREAD / 2) as u64);

    for block in held.drain(..) {
        // SAFETY: every block came from ALLOC with its layout and is freed once.
        unsafe { ALLOC.dealloc(block.ptr, block.layout) };
    }
    let report = alloc_tracker::report();
    let site_bytes: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    assert_eq!(
        site_bytes, report.totals.live_bytes,
        "after freeing everything"
    );
}

fn main() {
    run_checks(
        "concurrent",
        &[(
            "totals_and_sites_add_up_after_a_threaded_run",
            totals_and_sites_add_up_after_a_threaded_run,
        )],
    );
}
