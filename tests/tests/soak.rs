//! Soak: a fixed (non-leaking) service-like workload under tracking for a long run; the
//! tracker's own memory must stay flat.
//!
//! The child runs what the `cache-fixed` demo does (a request loop rendering responses into
//! a bounded cache) on two worker threads, with the things a long-lived service adds:
//! transient strings and growing vectors (`realloc`), responses rendered at 24 different
//! call depths (a bounded set of distinct stacks), and a short-lived thread every few
//! thousand requests. It samples densely (`ALLOC_TRACKER_RATE=4096`: most responses are
//! sampled, so the live-sample table churns all the time) and takes a checkpoint every
//! 100 ms (`ALLOC_TRACKER_INTERVAL`, so the checkpoint ring fills and thins many times).
//! Twice a second its main thread reads `alloc_tracker::report()` and prints the tracker's
//! own heap bytes without the symbol cache (`tracker.bytes - tracker.symbol_bytes`), the
//! stack count, the program's live bytes and the process RSS.
//!
//! Why the tracker's memory must be flat, and the bound: everything it holds for a fixed
//! program is bounded by that program's steady state — live samples (the blocks the
//! program holds, sampled), distinct stacks (a fixed set of call paths), the checkpoint
//! ring (64 entries, each one figure per stack with live samples) — and its hash tables
//! keep their high-water capacity. So after a warm-up (the first third of the run, at least
//! 8 s: the ring is full after 6.4 s) it may only creep towards a plateau: each of the 64
//! live-sample shards doubles its table when a chance high of live samples lands in it, and
//! rare call paths add their stack late. Measured (150 s, release): 137 KiB at 5 s, 176 KiB
//! at 30 s, 189–196 KiB from 60 s on. The bounds: the peak after the warm-up is at most
//! 1.25 × the warm-up peak + 64 KiB, and the last third of the run grows at most 10% + 32 KiB
//! over the middle third (a creep slows down; a leak does not: one entry per stack per
//! checkpoint would be ~20 KiB/s here, one per sample MB/s).
//!
//! `SOAK_SECONDS` sets the length (default 30, the CI run); the 10-minute run is
//! `SOAK_SECONDS=600 cargo test --release -p tracker-tests --test soak`.

use alloc_tracker::Tracker;
use std::collections::{HashMap, VecDeque};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracker_tests::{
    child_scenario, env_or, int, read_report, run_checks, scratch_dir, xorshift, Scenario,
};

#[global_allocator]
static ALLOC: Tracker = Tracker::system();

/// Responses each worker's cache keeps (the bound that makes this the fixed program).
const CAPACITY: usize = 400;
/// Distinct users requested: a fifth of them fit the cache, so it hits and misses.
const USERS: u64 = 2_000;
/// Call depths responses are rendered at.
const DEPTHS: u64 = 24;
/// A short-lived thread every this many requests of a worker.
const THREAD_EVERY: u64 = 5_000;
/// Reports read per second by the sampling thread.
const SAMPLES_PER_S: u64 = 2;

fn soak_seconds() -> u64 {
    env_or("SOAK_SECONDS", 30)
}

/// Renders a response `depth` calls down: each depth is its own stack.
#[inline(never)]
fn render(depth: u64, key: u64, size: usize) -> Vec<u8> {
    if depth == 0 {
        let mut page = vec![b' '; size];
        page[..8].copy_from_slice(&key.to_le_bytes());
        return page;
    }
    let page = render(depth - 1, key, size);
    black_box(&page);
    page
}

/// The bounded cache of the fixed program: at most `CAPACITY` responses, oldest out first.
struct Cache {
    pages: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

impl Cache {
    fn get_or_render(&mut self, key: u64, size: usize) -> &[u8] {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.pages.entry(key) {
            slot.insert(render(key % DEPTHS, key, size));
            self.order.push_back(key);
            if self.order.len() > CAPACITY {
                let oldest = self.order.pop_front().unwrap();
                self.pages.remove(&oldest);
            }
        }
        &self.pages[&key]
    }
}

/// One worker's request loop; returns how many requests it served.
fn serve(worker: u64, stop: &AtomicBool) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ (worker + 1);
    let mut cache = Cache {
        pages: HashMap::new(),
        order: VecDeque::new(),
    };
    let mut requests = 0u64;
    while !stop.load(Ordering::Relaxed) {
        requests += 1;
        let key = xorshift(&mut state) % USERS;
        let size = 1024 + (xorshift(&mut state) % (15 * 1024)) as usize;
        // The request line, a header map and a body built piece by piece (reallocs).
        let line = format!("GET /users/{key}?worker={worker} HTTP/1.1");
        let mut headers: Vec<(String, String)> = Vec::new();
        for i in 0..xorshift(&mut state) % 8 {
            headers.push((format!("x-header-{i}"), line.repeat(1 + i as usize)));
        }
        let page = cache.get_or_render(key, size);
        let mut body = Vec::new();
        for chunk in page.chunks(1 + (xorshift(&mut state) % 4096) as usize) {
            body.extend_from_slice(chunk);
        }
        black_box((&line, &headers, &body));
        if requests % THREAD_EVERY == 0 {
            std::thread::spawn(move || black_box(vec![key as u8; 64 * 1024]).len())
                .join()
                .unwrap();
        }
    }
    requests
}

/// The child: the workload, with a sampling loop on the main thread.
fn soak_child() {
    let seconds = soak_seconds();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || {
                served.fetch_add(serve(worker, &stop), Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    let period = Duration::from_millis(1000 / SAMPLES_PER_S);
    let mut next_sample = started;
    while started.elapsed() < Duration::from_secs(seconds) {
        next_sample += period;
        if let Some(wait) = next_sample.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let report = alloc_tracker::report();
        println!(
            "sample {} {} {} {} {} {}",
            started.elapsed().as_millis(),
            report.tracker.bytes - report.tracker.symbol_bytes,
            report.tracker.symbol_bytes,
            report.tracker.stacks,
            report.totals.live_bytes,
            // The tracker's own gauge (0 where the OS gives none).
            report.process.rss_bytes.unwrap_or(0),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let stats = alloc_tracker::stats();
    println!(
        "served {} requests, {} allocations, {} bytes allocated",
        served.load(Ordering::Relaxed),
        stats.allocs,
        stats.alloc_bytes
    );
}

/// One line of the child's series.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at_s: f64,
    tracker: u64,
    symbols: u64,
    stacks: u64,
    live: u64,
    rss: u64,
}

fn parse(stdout: &str) -> Vec<Sample> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("sample "))
        .map(|line| {
            let v: Vec<u64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
            Sample {
                at_s: v[0] as f64 / 1000.0,
                tracker: v[1],
                symbols: v[2],
                stacks: v[3],
                live: v[4],
                rss: v[5],
            }
        })
        .collect()
}

/// Least-squares slope of `y` over `at_s`, per second.
fn slope(samples: &[Sample], y: impl Fn(&Sample) -> u64) -> f64 {
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.at_s).sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| y(s) as f64).sum::<f64>() / n;
    let sxy: f64 = samples
        .iter()
        .map(|s| (s.at_s - mean_t) * (y(s) as f64 - mean_y))
        .sum();
    let sxx: f64 = samples.iter().map(|s| (s.at_s - mean_t).powi(2)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn tracker_memory_stays_flat() {
    let seconds = soak_seconds();
    let dir = scratch_dir("soak");
    let json = dir.join("heap.json");
    let finished = Scenario::new("soak")
        .env("SOAK_SECONDS", seconds.to_string())
        .env("ALLOC_TRACKER_RATE", "4096")
        .env("ALLOC_TRACKER_INTERVAL", "100ms")
        .env("ALLOC_TRACKER_REPORT", json.display().to_string())
        .timeout(Duration::from_secs(seconds + 120))
        .run();
    let stdout = finished.stdout();
    assert_eq!(
        finished.output.status.code(),
        Some(0),
        "{stdout}\n{}",
        finished.stderr()
    );
    let samples = parse(&stdout);
    assert!(
        samples.len() as u64 >= seconds * SAMPLES_PER_S * 3 / 4,
        "too few samples: {stdout}"
    );
    let warm_up_s = (seconds as f64 / 3.0).max(8.0);
    let (warm, rest): (Vec<Sample>, Vec<Sample>) = samples.iter().partition(|s| s.at_s < warm_up_s);
    assert!(
        rest.len() >= 4,
        "run too short for a warm-up of {warm_up_s} s"
    );
    let max = |set: &[Sample], y: fn(&Sample) -> u64| set.iter().map(y).max().unwrap_or(0);
    let warm_peak = max(&warm, |s| s.tracker);
    let rest_peak = max(&rest, |s| s.tracker);
    let third = |k: f64| -> Vec<Sample> {
        let (from, to) = (seconds as f64 * k / 3.0, seconds as f64 * (k + 1.0) / 3.0);
        samples
            .iter()
            .filter(|s| s.at_s >= from && s.at_s < to)
            .copied()
            .collect()
    };
    let (middle_peak, last_peak) = (
        max(&third(1.0), |s| s.tracker),
        max(&third(2.0), |s| s.tracker),
    );
    let growth = slope(&rest, |s| s.tracker);
    let last = rest.last().unwrap();
    println!(
        "  {} s, {}; tracker memory (without symbols): warm-up peak {}, after {}, middle \
         third {}, last third {}, last {}, slope after warm-up {:.1} B/s; symbols {}; stacks \
         {} → {}; program live {} → {} (peak {}); RSS {:.1} → {:.1} MiB",
        seconds,
        stdout.lines().last().unwrap_or_default(),
        kib(warm_peak),
        kib(rest_peak),
        kib(middle_peak),
        kib(last_peak),
        kib(last.tracker),
        growth,
        kib(last.symbols),
        rest[0].stacks,
        last.stacks,
        kib(rest[0].live),
        kib(last.live),
        kib(max(&rest, |s| s.live)),
        rest[0].rss as f64 / (1 << 20) as f64,
        last.rss as f64 / (1 << 20) as f64,
    );
    let bound = warm_peak + warm_peak / 4 + 64 * 1024;
    assert!(
        rest_peak <= bound,
        "tracker memory grew past the warm-up peak: {} > {} (bound)\n{stdout}",
        kib(rest_peak),
        kib(bound)
    );
    let bound = middle_peak + middle_peak / 10 + 32 * 1024;
    assert!(
        last_peak <= bound,
        "tracker memory keeps growing: last third peak {} > {} (bound)\n{stdout}",
        kib(last_peak),
        kib(bound)
    );
    // The workload's stacks are a fixed set: the table stops growing once all were seen.
    assert!(
        last.stacks <= rest[0].stacks + 8,
        "the stack table kept growing: {} → {}",
        rest[0].stacks,
        last.stacks
    );
    // The exit report agrees: nothing dropped, the fixed program's live memory bounded.
    let report = read_report(&json);
    assert_eq!(int(&report["tracker"]["dropped_samples"], "dropped"), 0);
    let live = int(&report["totals"]["live_bytes"], "live");
    assert!(
        live < 64 << 20,
        "2 × {CAPACITY} responses of ≤ 16 KiB: {live} live"
    );
}

fn main() {
    if child_scenario().as_deref() == Some("soak") {
        soak_child();
        return;
    }
    run_checks(
        "soak",
        &[("tracker_memory_stays_flat", tracker_memory_stays_flat)],
    );
}
