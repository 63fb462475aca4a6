//! A service whose heap tells a story, for the evidence the report gives without any
//! configuration: `evidence_service trends|spike|grow|on-demand`.
//!
//! - `trends`: for ~3 s, one site grows steadily (`// grows`), a bounded cache replaces its
//!   entries (`// cache`), and a table built at start stays (`// table`); then it exits 0.
//! - `spike`: builds a 64 MiB structure (`// spike`), drops it, then keeps 2 MiB
//!   (`// after-spike`) and exits 0: the report's `at_peak` must name the spike.
//! - `grow`: keeps 1 MiB (`// grows until killed`) every 5 ms, saying `grew N MiB` every 16 MiB, until
//!   it is killed — by the kernel's OOM killer in a memory cgroup, or by the test.
//! - `on-demand`: keeps 32 MiB (`// kept`), says `ready`, and waits for a line on stdin;
//!   then says `done` and exits 0 (a report signal must not change any of that).

use services::say;
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("trends") => trends(),
        Some("spike") => spike(),
        Some("grow") => grow(),
        Some("on-demand") => on_demand(),
        _ => {
            eprintln!("usage: evidence_service trends|spike|grow|on-demand");
            std::process::exit(2);
        }
    }
}

#[inline(never)]
fn table() -> Vec<Vec<u8>> {
    (0..16).map(|i| vec![i as u8; 1 << 20]).collect() // table
}

#[inline(never)]
fn grows(kept: &mut Vec<Vec<u8>>) {
    kept.push(vec![1u8; 512 << 10]); // grows
}

#[inline(never)]
fn cache_entry(i: u64) -> Vec<u8> {
    vec![i as u8; 32 << 10] // cache
}

fn trends() {
    let table = table();
    let mut leaked = Vec::new();
    let mut cache: VecDeque<Vec<u8>> = VecDeque::new();
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        grows(&mut leaked);
        for _ in 0..64 {
            cache.push_back(cache_entry(i));
            if cache.len() > 256 {
                cache.pop_front();
            }
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Kept to the end, as a service's state is: the exit report sees it live.
    std::mem::forget(black_box((table, leaked, cache)));
    say!("done");
}

#[inline(never)]
fn build_spike() -> Vec<Vec<u8>> {
    (0..64).map(|i| vec![i as u8; 1 << 20]).collect() // spike
}

#[inline(never)]
fn after_spike() -> Vec<u8> {
    vec![7u8; 2 << 20] // after-spike
}

fn spike() {
    let spike = build_spike();
    black_box(&spike);
    drop(spike);
    std::mem::forget(black_box(after_spike()));
    say!("done");
}

#[inline(never)]
fn grow_one(kept: &mut Vec<Vec<u8>>) {
    kept.push(vec![3u8; 1 << 20]); // grows until killed
}

fn grow() {
    let mut kept = Vec::with_capacity(1 << 16);
    loop {
        grow_one(&mut kept);
        if kept.len() % 16 == 0 {
            say!("grew {} MiB", kept.len());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[inline(never)]
fn keep() -> Vec<Vec<u8>> {
    (0..32).map(|i| vec![i as u8; 1 << 20]).collect() // kept
}

fn on_demand() {
    let kept = keep();
    say!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::mem::forget(black_box(kept));
    say!("done");
}
