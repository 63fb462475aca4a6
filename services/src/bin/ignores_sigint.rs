//! A program that sets SIGINT to SIG_IGN (as `nohup`-style tools and some workers do): a
//! SIGINT changes nothing. It answers each line of stdin with `ack <line>` and ends by
//! itself at end of input, returning from `main`.
//!
//! Prints `ready` once SIGINT is ignored and `clean shutdown` at the end.

use services::say;
use std::io::BufRead;
use std::sync::Mutex;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

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
    // SAFETY: setting a disposition has no memory preconditions.
    let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    assert_ne!(previous, libc::SIG_ERR, "signal(SIGINT, SIG_IGN)");
    say!("ready");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        let answer = format!("ack {line}");
        say!("{answer}");
    }
    say!("clean shutdown");
}
