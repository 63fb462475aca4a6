//! A small stress program for checkers that run a whole process (valgrind's memcheck,
//! helgrind and DRD; AddressSanitizer; ThreadSanitizer): threads allocating, reallocating
//! and freeing random sizes and alignments, blocks freed on another thread, short-lived
//! threads with allocating TLS destructors, `fork` while the others allocate (the child
//! allocates, reports and exits), and reports made while all of that runs.
//!
//! In the normal test run it is a smoke test (child runs of a second or so). Under a checker,
//! run the child directly, e.g. `TRACKER_TEST_SCENARIO=stress STRESS_OPS=20000
//! ALLOC_TRACKER_RATE=1 valgrind --tool=helgrind <this binary>`; `STRESS_FORKS=0` for leak
//! checkers (a fork child holds blocks of threads it does not have). docs/reliability.md has
//! the exact commands and what they found.

use alloc_tracker::Tracker;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::Duration;
use tracker_tests::{child_scenario, env_or, run_checks, scratch_dir, xorshift, Scenario};

#[global_allocator]
static ALLOC: Tracker = Tracker::system();

const THREADS: usize = 3;
/// Forks in the smoke test (none without `fork`).
const FORKS: usize = if cfg!(unix) { 2 } else { 0 };

/// A setting from the environment, or its default.
struct Block {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: a Block is a uniquely owned heap allocation; freeing it on another thread is what
// a global allocator must support.
unsafe impl Send for Block {}

fn free(block: Block) {
    // SAFETY: every Block came from ALLOC with its layout and is freed once (consumed here).
    unsafe { ALLOC.dealloc(block.ptr, block.layout) };
}

thread_local! {
    static ON_EXIT: AllocatesOnDrop = const { AllocatesOnDrop };
}

struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        black_box(vec![0u8; 300]);
        black_box(format!("{:?}", std::thread::current().id()));
    }
}

#[inline(never)]
fn work(
    seed: u64,
    ops: usize,
    inbox: mpsc::Receiver<Block>,
    outbox: mpsc::Sender<Block>,
) -> mpsc::Receiver<Block> {
    let mut state = seed;
    let mut held: Vec<Block> = Vec::new();
    for op in 0..ops {
        match xorshift(&mut state) % 10 {
            0..=4 => {
                let size = 1 + (xorshift(&mut state) % if op % 50 == 0 { 1 << 20 } else { 2048 });
                let align = 1usize << (xorshift(&mut state) % if op % 64 == 0 { 17 } else { 5 });
                let layout = Layout::from_size_align(size as usize, align).unwrap();
                // SAFETY: the layout has a non-zero size.
                let ptr = unsafe {
                    if op % 7 == 0 {
                        ALLOC.alloc_zeroed(layout)
                    } else {
                        ALLOC.alloc(layout)
                    }
                };
                assert!(!ptr.is_null());
                // Touch the block: a checker sees the program use what it was given.
                // SAFETY: `ptr` is valid for `size` bytes.
                unsafe { ptr.write_bytes(op as u8, layout.size()) };
                held.push(Block { ptr, layout });
            }
            5 | 6 if !held.is_empty() => {
                let i = xorshift(&mut state) as usize % held.len();
                let block = &mut held[i];
                let new_size = 1 + (xorshift(&mut state) % 8192) as usize;
                // SAFETY: the block came from ALLOC with this layout; the new size is
                // non-zero and cannot overflow when rounded to the alignment.
                let ptr = unsafe { ALLOC.realloc(block.ptr, block.layout, new_size) };
                assert!(!ptr.is_null());
                block.ptr = ptr;
                block.layout = Layout::from_size_align(new_size, block.layout.align()).unwrap();
                // SAFETY: `ptr` is valid for `new_size` bytes.
                unsafe { ptr.write_bytes(1, new_size) };
            }
            7 if !held.is_empty() => {
                let i = xorshift(&mut state) as usize % held.len();
                let _ = outbox.send(held.swap_remove(i));
            }
            8 if op % 512 == 0 => {
                // A short-lived thread with an allocating TLS destructor.
                std::thread::spawn(|| {
                    ON_EXIT.with(|_| {});
                    black_box(vec![7u8; 4096]);
                })
                .join()
                .unwrap();
            }
            _ if !held.is_empty() => {
                let i = xorshift(&mut state) as usize % held.len();
                free(held.swap_remove(i));
            }
            _ => {}
        }
        if op % 32 == 0 {
            inbox.try_iter().for_each(free);
        }
        if held.len() > 512 {
            held.drain(..256).for_each(free);
        }
    }
    held.into_iter().for_each(free);
    // Blocks sent after this are freed once every worker is done.
    inbox
}

fn stress() {
    // Operations per thread, and forks (0 for a leak checker: a fork child holds blocks of
    // threads that do not exist in it, which LeakSanitizer and memcheck call leaks).
    let (ops, forks) = (env_or("STRESS_OPS", 200_000), env_or("STRESS_FORKS", FORKS));
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
    let workers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(i, inbox)| {
            let outbox = senders[(i + 1) % THREADS].clone();
            std::thread::spawn(move || work(0xA5A5 + i as u64, ops, inbox, outbox))
        })
        .collect();
    drop(senders);
    fork_children(forks);
    let inboxes: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    for inbox in inboxes {
        inbox.try_iter().for_each(free);
    }
    let report = alloc_tracker::report();
    println!(
        "stress ok: {} allocations, {} live, {} stacks",
        report.totals.allocs, report.totals.live_allocs, report.tracker.stacks
    );
}

/// Forks `forks` children while the workers allocate; each allocates, reports and exits.
#[cfg(unix)]
fn fork_children(forks: usize) {
    for _ in 0..forks {
        std::thread::sleep(Duration::from_millis(20));
        // SAFETY: the child only allocates, reports and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mine: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 10_000]).collect();
            black_box(alloc_tracker::report());
            black_box(&mine);
            std::process::exit(0);
        }
        black_box(alloc_tracker::report().to_json());
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}

/// No `fork` here (`FORKS` is 0 unless `STRESS_FORKS` asks): reports are made instead,
/// while the workers allocate.
#[cfg(not(unix))]
fn fork_children(forks: usize) {
    for _ in 0..forks {
        std::thread::sleep(Duration::from_millis(20));
        black_box(alloc_tracker::report().to_json());
    }
}

fn stress_in_a_child() {
    for rate in ["1", "4096"] {
        let dir = scratch_dir(&format!("stress-{rate}"));
        let finished = Scenario::new("stress")
            .env("ALLOC_TRACKER_RATE", rate)
            .env(
                "ALLOC_TRACKER_REPORT",
                dir.join("heap.json").display().to_string(),
            )
            .env("STRESS_OPS", "50000")
            .timeout(Duration::from_secs(90))
            .run();
        assert_eq!(
            finished.output.status.code(),
            Some(0),
            "rate {rate}: {}",
            finished.stderr()
        );
        assert!(
            finished.stdout().contains("stress ok"),
            "{}",
            finished.stdout()
        );
        // The parent's report and one per fork child (`STRESS_FORKS` reaches the child).
        let reports = std::fs::read_dir(&dir).unwrap().count();
        let forks = env_or("STRESS_FORKS", FORKS);
        assert_eq!(reports, 1 + forks, "rate {rate}: reports written");
    }
}

fn main() {
    if child_scenario().as_deref() == Some("stress") {
        stress();
        return;
    }
    run_checks("stress", &[("stress_in_a_child", stress_in_a_child)]);
}
