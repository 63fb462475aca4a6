//! A pre-fork server: the parent serves for a while, then forks a worker that keeps
//! serving (and growing) until SIGTERM, which it takes with a signal-hook handler; the
//! parent waits for it and returns from `main`. Run with `ALLOC_TRACKER_INTERVAL` set, the
//! worker's own report (`heap.<pid>.json`) must show its growth as a trend computed from
//! its own checkpoints.
//!
//! Prints `worker <pid> ready`, then `worker <pid> grown` after ~1 s of growth (the moment
//! to send SIGTERM to that pid), `worker clean shutdown`, `worker exited <code>` and
//! `clean shutdown`.

use services::say;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// What the worker accumulates (and still holds when it exits).
static GROWN: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Steps of the worker's growth, one every [`STEP`].
const STEPS: usize = 20;
const STEP: Duration = Duration::from_millis(50);

/// The parent's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

/// Allocates and frees for `period`, like a server handling requests.
fn serve_for(period: Duration) {
    let started = Instant::now();
    let mut served = 0u64;
    while started.elapsed() < period {
        let request = vec![served as u8; 8 << 10];
        std::hint::black_box(&request);
        served += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One step of the worker's growth: 2 MiB kept.
#[inline(never)]
fn grow(held: &mut Vec<Vec<u8>>) {
    held.push(vec![2u8; 2 << 20]); // worker-growth
}

/// The forked worker: grows for ~1 s, then serves until SIGTERM.
fn worker() {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
        .expect("register the handler");
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    say!("worker {pid} ready");
    GROWN.lock().unwrap().reserve(STEPS);
    for _ in 0..STEPS {
        grow(&mut GROWN.lock().unwrap());
        serve_for(STEP);
    }
    say!("worker {pid} grown");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stop.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "worker {pid}: no SIGTERM came");
        serve_for(Duration::from_millis(5));
    }
    say!("worker clean shutdown");
}

fn main() {
    keep_state();
    // The parent serves first: several checkpoints are taken before the fork.
    serve_for(Duration::from_millis(350));
    // SAFETY: the child runs `worker` and returns from `main`; the parent only waits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        worker();
        return;
    }
    say!("forked worker {pid}");
    let mut status = 0;
    // SAFETY: `status` is a live local; `pid` is our child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        let error = std::io::Error::last_os_error();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::Interrupted,
            "waitpid: {error}"
        );
    }
    if libc::WIFEXITED(status) {
        say!("worker exited {}", libc::WEXITSTATUS(status));
    } else {
        say!("worker ended with status {status:#x}");
    }
    say!("clean shutdown");
}
