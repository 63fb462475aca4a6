//! `fork` while the first report symbolizes (it loads debug info, the slowest part of any
//! report), with allocating threads running: the shape of a pre-fork server that writes
//! reports.
//!
//! Two workers allocate in a loop, counting their iterations. Their rate alone is measured
//! first (`baseline`). Then one thread calls `alloc_tracker::write_report()` and the main
//! thread forks repeatedly while it runs, recording for each `fork` how long it took and
//! how many iterations the workers made meanwhile (`fork took_us=… progress=…`). Each
//! child allocates like a worker, waits until the parent has finished measuring (end of
//! file on a pipe), then exits with `std::process::exit(0)` (writing its own report); the
//! parent prints how each child ended and `clean shutdown`.

use services::say;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

const WORKERS: usize = 2;
const MAX_FORKS: usize = 8;
/// How long the children may take, all together, to write their reports and exit before
/// those still running count as hung (each needs well under a second alone).
const CHILDREN_TIMEOUT: Duration = Duration::from_secs(20);

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static ITERATIONS: [AtomicU64; WORKERS] = [const { AtomicU64::new(0) }; WORKERS];
static STOP: AtomicBool = AtomicBool::new(false);
static REPORTING: AtomicBool = AtomicBool::new(false);

/// The program's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

/// A worker: 4 KiB allocations (one sampled in ~128 at the default rate, so it meets the
/// tracker's tables often) until stopped.
fn allocate_until_stopped(worker: usize) {
    while !STOP.load(Ordering::Acquire) {
        let block = vec![worker as u8; 4096];
        black_box(&block);
        ITERATIONS[worker].fetch_add(1, Ordering::Relaxed);
    }
}

fn iterations() -> u64 {
    ITERATIONS.iter().map(|i| i.load(Ordering::Relaxed)).sum()
}

/// One `fork` as the parent saw it.
struct Fork {
    pid: libc::pid_t,
    took: Duration,
    progress: u64,
}

/// The child: allocates like a worker, waits for end of file on `wait_fd`, exits.
fn child(wait_fd: libc::c_int, parent_end: libc::c_int) -> ! {
    // SAFETY: closes this process's copy of the pipe's write end, which it never uses.
    unsafe { libc::close(parent_end) };
    let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
    black_box(&blocks);
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into a live local.
    while unsafe { libc::read(wait_fd, (&mut byte as *mut u8).cast(), 1) } != 0 {}
    drop(blocks);
    std::process::exit(0);
}

/// Waits until `deadline` for `pid`; kills it if it has not ended by then.
fn reap(pid: libc::pid_t, deadline: Instant) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a live local; `pid` is our child.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        assert!(
            done == 0,
            "waitpid({pid}): {}",
            std::io::Error::last_os_error()
        );
        if Instant::now() > deadline {
            // SAFETY: `pid` is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            say!("child {pid} hung");
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if libc::WIFEXITED(status) {
        say!("child {pid} exited {}", libc::WEXITSTATUS(status));
    } else {
        say!("child {pid} ended with status {status:#x}");
    }
}

fn main() {
    keep_state();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| std::thread::spawn(move || allocate_until_stopped(w)))
        .collect();
    while ITERATIONS.iter().any(|i| i.load(Ordering::Relaxed) == 0) {
        std::thread::yield_now();
    }
    let (started, before) = (Instant::now(), iterations());
    std::thread::sleep(Duration::from_millis(200));
    let per_ms = (iterations() - before) as f64 / started.elapsed().as_secs_f64() / 1e3;
    say!("baseline {per_ms:.1} iterations/ms");

    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0, "pipe");
    let reporter = std::thread::spawn(|| {
        REPORTING.store(true, Ordering::Release);
        let started = Instant::now();
        alloc_tracker::write_report();
        REPORTING.store(false, Ordering::Release);
        started.elapsed()
    });
    while !REPORTING.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let mut forks = Vec::with_capacity(MAX_FORKS);
    while REPORTING.load(Ordering::Acquire) && forks.len() < MAX_FORKS {
        let (started, before) = (Instant::now(), iterations());
        // SAFETY: the child only allocates (the tracker's fork handlers leave its locks
        // free), reads a pipe and exits; it never returns into this loop.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            child(pipe[0], pipe[1]);
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        forks.push(Fork {
            pid,
            took: started.elapsed(),
            progress: iterations() - before,
        });
        std::thread::sleep(Duration::from_millis(2));
    }
    let report_took = reporter.join().expect("reporter");
    STOP.store(true, Ordering::Release);
    for worker in workers {
        worker.join().expect("worker");
    }
    say!("report took {} ms", report_took.as_millis());
    for fork in &forks {
        say!(
            "fork took_us={} progress={}",
            fork.took.as_micros(),
            fork.progress
        );
    }
    // The children may end now.
    // SAFETY: closes both ends of the pipe, ours, once.
    unsafe {
        libc::close(pipe[1]);
        libc::close(pipe[0]);
    }
    let deadline = Instant::now() + CHILDREN_TIMEOUT;
    for fork in &forks {
        reap(fork.pid, deadline);
    }
    say!("clean shutdown");
}
