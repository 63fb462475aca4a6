//! A daemon that takes its signals through a `signalfd`: `main` blocks SIGTERM and SIGINT
//! before it starts any thread (so every thread of the program inherits the mask), starts
//! allocating workers, and reads the signal from the descriptor; then it stops the workers
//! and returns from `main`.
//!
//! Prints `ready` once the signals are blocked and the workers run, `clean shutdown` at the
//! end. `signalfd` is Linux's: elsewhere the program only says so.

#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

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

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("signalfd_daemon: signalfd is Linux's");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn main() {
    keep_state();
    // SAFETY: `set` is a local sigset_t, initialised by sigemptyset before use; the calls
    // have no other memory preconditions.
    let fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let blocked = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        assert_eq!(blocked, 0, "pthread_sigmask");
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    assert!(fd >= 0, "signalfd: {}", std::io::Error::last_os_error());
    let workers: Vec<_> = (0..2).map(|_| std::thread::spawn(work)).collect();
    say!("ready");
    // SAFETY: signalfd_siginfo is plain data; all-zero is a valid value.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: reads at most `size` bytes into `info`, a live local of that size.
        let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n == size as isize {
            break;
        }
        let error = std::io::Error::last_os_error();
        assert!(
            n < 0 && error.kind() == std::io::ErrorKind::Interrupted,
            "read signalfd: {n} {error}"
        );
    }
    say!("got signal {}", info.ssi_signo);
    STOP.store(true, Ordering::Release);
    let done: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    say!("workers did {done} jobs");
    // SAFETY: `fd` is the signalfd opened above, closed once.
    unsafe { libc::close(fd) };
    say!("clean shutdown");
}
