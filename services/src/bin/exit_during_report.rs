//! `std::process::exit(7)` from one thread while another is writing a report: a program
//! that reports periodically (`alloc_tracker::write_report()` in a loop, as a service might
//! on a timer) and exits from a different thread.
//!
//! Usage: `exit_during_report <percent>`. Once two reports are written (the first loads
//! debug info) the program prints `ready`, waits for the next report to start, waits
//! `percent` % of the time the previous report took (so the exit meets the reporter at a
//! chosen phase: building, or writing the file), prints `exiting` and exits with code 7.
//! The exit status must be 7 and the report file whole.

use services::{noise, say};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static NOISE: Mutex<noise::Kept> = Mutex::new(Vec::new());
static STARTED: AtomicU64 = AtomicU64::new(0);
static FINISHED: AtomicU64 = AtomicU64::new(0);
/// How long the latest report took, in microseconds.
static LAST_TOOK_US: AtomicU64 = AtomicU64::new(0);

/// The program's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

fn main() {
    let percent: u64 = std::env::args()
        .nth(1)
        .and_then(|d| d.parse().ok())
        .expect("usage: exit_during_report <percent>");
    keep_state();
    // With `ALLOC_TRACKER_RATE=1`, 4,096 stacks: each report's JSON is ~28 MiB, so writing
    // it takes a while.
    noise::spread(&mut NOISE.lock().unwrap(), 1);
    std::thread::spawn(|| loop {
        let started = Instant::now();
        STARTED.fetch_add(1, Ordering::AcqRel);
        alloc_tracker::write_report();
        let took = started.elapsed();
        LAST_TOOK_US.store(took.as_micros() as u64, Ordering::Release);
        let done = FINISHED.fetch_add(1, Ordering::AcqRel) + 1;
        if done <= 2 {
            say!("report {done} took {} ms", took.as_millis());
        }
    });
    while FINISHED.load(Ordering::Acquire) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    say!("ready");
    // Waits for the start of the next report (the counter moves past the one under way).
    let under_way = STARTED.load(Ordering::Acquire);
    while STARTED.load(Ordering::Acquire) == under_way {
        std::hint::spin_loop();
    }
    let cycle = LAST_TOOK_US.load(Ordering::Acquire);
    std::thread::sleep(Duration::from_micros(cycle * percent / 100));
    say!("exiting");
    std::process::exit(7);
}
