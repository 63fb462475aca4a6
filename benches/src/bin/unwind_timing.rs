//! Nanoseconds per stack capture and per sampled event, each unwinder side by side in one
//! process:
//!
//! * `capture/<unwinder>`: one capture of 20 frames from ~25 frames deep, alone
//!   (`alloc_tracker::internals`: the table unwinder without its DWARF fallback, and
//!   DWARF), after warm-up; and the table unwinder's first capture in the process (the
//!   scan of the loaded objects, every rule a miss) and on a new thread (a new slot);
//! * `event/<unwinder>`: one 64 B alloc+free pair through a tracker in exact mode at a stack
//!   depth of ~20 frames, minus the same pair through a tracker with sampling off: what one
//!   sampled event costs (capture, intern, record, remove).
//!
//! Each figure is the median of `--rounds` rounds, alternating unwinders, timed on the
//! thread's CPU clock (time lost to other processes on a shared machine does not count).
//! `fp` is measured only in a build with frame pointers (`cfg(frame_pointers)`, see
//! `build.rs`); elsewhere its stacks would be a frame or two.
//!
//! ```text
//! unwind-timing [--iterations N] [--rounds R] [--json]
//! ```
//!
//! `--json`: one line of JSON instead of the text (`bench-runner` reads it).

use alloc_tracker::internals::{dwarf_stack, restart_countdown, table_stack};
use alloc_tracker::Tracker;
use alloc_tracker_benches::depth::nested;
use alloc_tracker_benches::pairs::cpu_time;
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

#[cfg(frame_pointers)]
use alloc_tracker_benches::trackers::EXACT_FP;
use alloc_tracker_benches::trackers::{EXACT_DWARF, EXACT_TABLE, OFF};

const FRAMES: usize = 20;
const DEPTH: usize = 25;
/// Stack depth of the sampled events (frames above the allocation, as DWARF counts them).
const EVENT_DEPTH: usize = 20;

/// A capture: frames written into the buffer.
type Capture = fn(&mut [usize]) -> usize;

fn table(out: &mut [usize]) -> usize {
    table_stack(out).unwrap_or(0)
}

/// Mean ns per call of `unwind` over `iterations`, at depth [`DEPTH`]; and whether every
/// capture was full.
fn time_capture(unwind: Capture, iterations: u32) -> (f64, bool) {
    nested(DEPTH, &mut || {
        let mut out = [0; FRAMES];
        let mut full = true;
        for _ in 0..100 {
            full &= unwind(&mut out) == FRAMES;
        }
        let start = cpu_time();
        for _ in 0..iterations {
            black_box(unwind(black_box(&mut out)));
        }
        let ns = (cpu_time() - start).as_nanos() as f64 / f64::from(iterations);
        (ns, full)
    })
}

/// Frames on the stack at the caller (as DWARF unwinding counts them).
#[inline(never)]
fn stack_depth() -> usize {
    let mut out = [0; 512];
    dwarf_stack(&mut out)
}

/// Mean ns per 64 B alloc+free pair through `tracker` at a stack depth of [`EVENT_DEPTH`].
fn time_pairs(tracker: &'static Tracker, iterations: u32) -> f64 {
    let layout = Layout::from_size_align(64, 8).expect("valid layout");
    let base = nested(0, &mut stack_depth);
    nested(EVENT_DEPTH.saturating_sub(base + 1), &mut || {
        restart_countdown();
        let pair = || {
            // SAFETY: a non-zero size; the block is freed at once by the allocator that
            // made it, with the same layout, and never touched.
            unsafe {
                let ptr = tracker.alloc(layout);
                black_box(ptr);
                if !ptr.is_null() {
                    tracker.dealloc(ptr, layout);
                }
            }
        };
        for _ in 0..100 {
            pair();
        }
        let start = cpu_time();
        for _ in 0..iterations {
            pair();
        }
        (cpu_time() - start).as_nanos() as f64 / f64::from(iterations)
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut iterations: u32 = 200_000;
    let mut rounds = 5;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok()).expect(&arg);
        match arg.as_str() {
            "--iterations" => iterations = value(),
            "--rounds" => rounds = value() as usize,
            "--json" => json = true,
            other => panic!("unknown argument {other:?} (--iterations N, --rounds R, --json)"),
        }
    }
    if std::env::var_os("ALLOC_TRACKER_REPORT").is_none() {
        std::env::set_var("ALLOC_TRACKER_REPORT", "off");
    }
    // The first capture in the process scans the loaded objects; a new thread then takes
    // a new slot, whose every rule is a miss.
    let mut first = Vec::new();
    for what in ["in the process", "on a new thread (new slot)"] {
        let (took, len) = std::thread::spawn(|| {
            nested(DEPTH, &mut || {
                let mut out = [0; FRAMES];
                let start = cpu_time();
                let len = table(&mut out);
                (cpu_time() - start, len)
            })
        })
        .join()
        .expect("first capture");
        first.push(took.as_nanos() as f64);
        if !json {
            println!(
                "table, first capture {what}: {} ns ({len} frames)",
                took.as_nanos()
            );
        }
    }

    let captures: [(&str, Capture, u32); 2] = [
        ("table", table, iterations),
        ("dwarf", |out| dwarf_stack(out), (iterations / 20).max(1)),
    ];
    let events: &[(&str, &'static Tracker, u32)] = &[
        ("off", &OFF, iterations * 5),
        #[cfg(frame_pointers)]
        ("fp", &EXACT_FP, iterations),
        ("table", &EXACT_TABLE, iterations),
        ("dwarf", &EXACT_DWARF, (iterations / 10).max(1)),
    ];
    let mut capture_ns = vec![Vec::new(); captures.len()];
    let mut event_ns = vec![Vec::new(); events.len()];
    let mut all_full = true;
    for _ in 0..rounds {
        for (i, &(_, unwind, n)) in captures.iter().enumerate() {
            let (ns, full) = time_capture(unwind, n);
            capture_ns[i].push(ns);
            all_full &= full;
        }
        for (i, &(_, tracker, n)) in events.iter().enumerate() {
            event_ns[i].push(time_pairs(tracker, n));
        }
    }
    let off = median(event_ns[0].clone());
    if json {
        let mut out = serde_json::json!({
            "frame_pointers": cfg!(frame_pointers),
            "frames": FRAMES,
            "event_depth": EVENT_DEPTH,
            "rounds": rounds,
            "first_capture_ns": first[0],
            "first_capture_new_thread_ns": first[1],
            "all_captures_full": all_full,
        });
        for (i, (name, _, _)) in captures.iter().enumerate() {
            out[format!("capture/{name}")] = median(capture_ns[i].clone()).into();
        }
        for (i, (name, _, _)) in events.iter().enumerate() {
            let pair = median(event_ns[i].clone());
            out[format!("pair/{name}")] = pair.into();
            if *name != "off" {
                out[format!("event/{name}")] = (pair - off).into();
            }
        }
        println!("{out}");
        return;
    }
    println!("capture of {FRAMES} frames from ~{DEPTH} deep, ns (median of {rounds} rounds):");
    for (i, (name, _, _)) in captures.iter().enumerate() {
        println!("  capture/{name:5} {:8.1}", median(capture_ns[i].clone()));
    }
    if !all_full {
        println!("  (some captures were short or failed)");
    }
    println!("64 B pair at stack depth ~{EVENT_DEPTH}, ns (median of {rounds} rounds):");
    for (i, (name, _, _)) in events.iter().enumerate() {
        let pair = median(event_ns[i].clone());
        if *name == "off" {
            println!("  pair/off       {pair:8.1}");
        } else {
            println!(
                "  pair/{name:5}    {pair:8.1}   sampled event (− off): {:8.1}",
                pair - off
            );
        }
    }
}
