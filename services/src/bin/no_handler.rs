//! A program with no signal handler of its own: SIGINT and SIGTERM take their default
//! action (the process dies by the signal), and the tracker writes its report first.
//!
//! `no_handler slow` also keeps ~200,000 small blocks at 4,096 distinct stacks (see
//! `services::noise`): run with `ALLOC_TRACKER_RATE=1` (every allocation sampled), its
//! report takes a few hundred milliseconds to build and its JSON file is ~28 MiB — the
//! case of an orchestrator that sends SIGKILL after a grace period.
//!
//! Prints `ready` once its state is built; it should never print `no signal came`.

use services::{noise, say};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static NOISE: Mutex<noise::Kept> = Mutex::new(Vec::new());
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
    keep_state();
    if std::env::args().nth(1).as_deref() == Some("slow") {
        noise::spread(&mut NOISE.lock().unwrap(), 48);
    }
    // A worker that keeps allocating, as a service's threads do when the signal comes.
    let worker = std::thread::spawn(|| {
        let mut done = 0u64;
        while !STOP.load(Ordering::Acquire) {
            let job = vec![done as u8; 8 << 10];
            std::hint::black_box(&job);
            done += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    say!("ready");
    std::thread::sleep(Duration::from_secs(60));
    STOP.store(true, Ordering::Release);
    worker.join().expect("worker");
    say!("no signal came");
    std::process::exit(3);
}
