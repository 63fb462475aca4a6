//! A service using signal-hook: `signal_hook::flag::register` sets a flag on SIGINT and
//! SIGTERM (chaining to whatever handler was there before); the main loop notices it,
//! cleans up and returns from `main`.
//!
//! Prints `ready` once the handlers are installed and `clean shutdown` at the end.

use services::say;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The service's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

fn main() {
    keep_state();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).expect("register the handler");
    }
    say!("ready");
    let mut served = 0u64;
    let mut recent: Vec<Vec<u8>> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        recent.push(vec![served as u8; 4096]);
        if recent.len() > 64 {
            recent.remove(0);
        }
        served += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    say!("shutting down");
    drop(recent);
    say!("served {served} requests");
    say!("clean shutdown");
}
