//! A daemon in the classic shape: `main` blocks SIGTERM and SIGINT before it starts any
//! thread (so every thread of the program inherits the mask), starts allocating workers,
//! and takes the signal synchronously with `sigwait`; then it stops the workers and
//! returns from `main`.
//!
//! `sigwait_daemon main`: the main thread calls `sigwait`. `sigwait_daemon thread`: a
//! dedicated signal thread does (the main thread waits for it), as many daemons do.
//!
//! Prints `ready` once the signals are blocked and the workers run, `clean shutdown` at the
//! end.

use services::say;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static STOP: AtomicBool = AtomicBool::new(false);

/// The daemon's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

/// A worker: allocates and frees until stopped; returns its iterations.
fn work() -> u64 {
    let mut done = 0u64;
    while !STOP.load(Ordering::Acquire) {
        let job = vec![done as u8; 16 << 10];
        std::hint::black_box(&job);
        done += 1;
        std::thread::sleep(Duration::from_micros(200));
    }
    done
}

fn main() {
    keep_state();
    // SAFETY: `set` is a local sigset_t, initialised by sigemptyset before use; the calls
    // have no other memory preconditions.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let blocked = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        assert_eq!(blocked, 0, "pthread_sigmask");
        set
    };
    let workers: Vec<_> = (0..2).map(|_| std::thread::spawn(work)).collect();
    let wait = move || {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` and `signal` are live locals.
        let waited = unsafe { libc::sigwait(&set, &mut signal) };
        assert_eq!(waited, 0, "sigwait");
        signal
    };
    let signal = match std::env::args().nth(1).as_deref() {
        Some("main") => {
            say!("ready");
            wait()
        }
        Some("thread") => {
            let waiter = std::thread::spawn(wait);
            say!("ready");
            waiter.join().expect("signal thread")
        }
        other => panic!("usage: sigwait_daemon main|thread (got {other:?})"),
    };
    say!("got signal {signal}");
    STOP.store(true, Ordering::Release);
    let done: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    say!("workers did {done} jobs");
    say!("clean shutdown");
}
