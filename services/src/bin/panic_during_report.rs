//! Panics while another thread is writing a report (`alloc_tracker::write_report()` in a
//! loop, as a service reporting on a timer).
//!
//! * `panic_during_report thread`: 20 short-lived threads panic one after the other (each
//!   joined), then the reporter stops and `main` returns: exit 0, `clean shutdown`.
//! * `panic_during_report main <percent>`: `main` itself panics while a report is being
//!   written, `percent` % of the previous report's duration after the report started (so
//!   the panic meets the reporter at a chosen phase): the panic ends the program (exit
//!   101) with the report thread still at work.
//!
//! Prints `ready` once two reports are written (the first loads debug info). The report
//! file must be whole.

use services::{noise, say};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
static STOP: AtomicBool = AtomicBool::new(false);

/// The program's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let percent: u64 = std::env::args()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or(50);
    keep_state();
    // With `ALLOC_TRACKER_RATE=1`, 4,096 stacks: each report's JSON is ~28 MiB, so writing
    // it takes a while.
    noise::spread(&mut NOISE.lock().unwrap(), 1);
    let reporter = std::thread::spawn(|| {
        while !STOP.load(Ordering::Acquire) {
            let started = Instant::now();
            STARTED.fetch_add(1, Ordering::AcqRel);
            alloc_tracker::write_report();
            LAST_TOOK_US.store(started.elapsed().as_micros() as u64, Ordering::Release);
            FINISHED.fetch_add(1, Ordering::AcqRel);
        }
    });
    while FINISHED.load(Ordering::Acquire) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    say!("ready");
    match mode.as_str() {
        "thread" => {
            let before = FINISHED.load(Ordering::Acquire);
            for i in 0..20 {
                let failed = std::thread::spawn(move || panic!("worker {i} fails"))
                    .join()
                    .is_err();
                assert!(failed, "worker {i} did not panic");
                std::thread::sleep(Duration::from_millis(5));
            }
            say!(
                "20 panics during {} reports",
                FINISHED.load(Ordering::Acquire) - before
            );
            STOP.store(true, Ordering::Release);
            reporter.join().expect("reporter");
            say!("clean shutdown");
        }
        "main" => {
            // Waits for the start of the next report, then for the chosen phase of it.
            let under_way = STARTED.load(Ordering::Acquire);
            while STARTED.load(Ordering::Acquire) == under_way {
                std::hint::spin_loop();
            }
            let cycle = LAST_TOOK_US.load(Ordering::Acquire);
            std::thread::sleep(Duration::from_micros(cycle * percent / 100));
            say!("panicking");
            panic!("main fails while a report is being written");
        }
        other => panic!("usage: panic_during_report thread|main <percent> (got {other:?})"),
    }
}
