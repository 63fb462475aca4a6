//! A service using ctrlc: `ctrlc::set_handler` (with the `termination` feature: SIGINT,
//! SIGTERM and SIGHUP) sends on a channel; the main loop serves until a message comes,
//! then cleans up and returns from `main`.
//!
//! Prints `ready` once the handler is installed and `clean shutdown` at the end.

use services::say;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
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
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .expect("install the handler");
    say!("ready");
    let mut served = 0u64;
    loop {
        match rx.recv_timeout(Duration::from_millis(1)) {
            Ok(()) => break,
            Err(RecvTimeoutError::Timeout) => {
                let request = vec![served as u8; 4096];
                std::hint::black_box(&request);
                served += 1;
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the handler's sender is gone"),
        }
    }
    say!("shutting down");
    say!("served {served} requests");
    say!("clean shutdown");
}
