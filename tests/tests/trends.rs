//! Leak suspects from checkpoints taken through the API (deterministic: no timers): a site
//! that keeps growing is a suspect; a bounded cache, a table built once at start-up, and a
//! site that grew and was then freed are not.

use alloc_tracker::{Report, Severity, Tracker};
use std::collections::VecDeque;
use std::hint::black_box;
use tracker_tests::{marker_line, run_checks};

#[global_allocator]
static ALLOC: Tracker = Tracker::system();

const SOURCE: &str = "tests/trends.rs";

fn is_suspect(report: &Report, marker: &str) -> Option<Severity> {
    let line = marker_line(SOURCE, marker) as u32;
    report
        .suspects
        .iter()
        .find(|s| {
            s.site.file.as_deref().is_some_and(|f| f.ends_with(SOURCE)) && s.site.line == Some(line)
        })
        .map(|s| s.severity)
}

#[inline(never)]
fn leak_more(kept: &mut Vec<Vec<u8>>) {
    for _ in 0..32 {
        kept.push(vec![1u8; 128 << 10]); // site: leak
    }
}

#[inline(never)]
fn build_startup_table() -> Vec<Vec<u8>> {
    (0..256).map(|_| vec![2u8; 128 << 10]).collect() // site: startup
}

#[inline(never)]
fn churn_cache(cache: &mut VecDeque<Vec<u8>>) {
    for _ in 0..64 {
        cache.push_back(vec![3u8; 64 << 10]); // site: cache
        if cache.len() > 256 {
            cache.pop_front();
        }
    }
}

#[inline(never)]
fn grow_then_free(held: &mut Vec<Vec<u8>>, step: usize) {
    if step < 6 {
        for _ in 0..32 {
            held.push(vec![4u8; 128 << 10]); // site: transient
        }
    } else {
        held.clear();
        held.shrink_to_fit();
    }
}

fn growth_makes_suspects_and_steady_state_does_not() {
    let startup = black_box(build_startup_table());
    let mut cache = VecDeque::new();
    for _ in 0..8 {
        churn_cache(&mut cache); // fill the cache before the checkpoints
    }
    let mut leaked = Vec::new();
    let mut transient = Vec::new();
    for step in 0..8 {
        leak_more(&mut leaked);
        churn_cache(&mut cache);
        grow_then_free(&mut transient, step);
        std::thread::sleep(std::time::Duration::from_millis(20));
        alloc_tracker::checkpoint();
    }
    let report = alloc_tracker::report();
    let text = report.to_text();
    assert_eq!(
        is_suspect(&report, "// site: leak"),
        Some(Severity::Critical),
        "the growing site is a critical suspect:\n{text}"
    );
    let suspect = &report.suspects[0];
    assert!(
        suspect.evidence.starts_with("grew monotonically"),
        "{}",
        suspect.evidence
    );
    assert!(
        text.starts_with("== Leak suspects ==\n 1. CRITICAL"),
        "{text}"
    );
    assert_eq!(
        is_suspect(&report, "// site: startup"),
        None,
        "start-up state:\n{text}"
    );
    assert_eq!(
        is_suspect(&report, "// site: cache"),
        None,
        "bounded cache:\n{text}"
    );
    assert_eq!(
        is_suspect(&report, "// site: transient"),
        None,
        "grew then freed:\n{text}"
    );
    // The trend and ages are in the sites too.
    let leak_line = marker_line(SOURCE, "// site: leak") as u32;
    let site = report
        .sites
        .iter()
        .find(|s| s.site.line == Some(leak_line))
        .unwrap();
    let trend = site.trend.as_ref().expect("trend");
    assert!(
        trend.points >= 8 && trend.monotonic && trend.bytes_per_s > 0.0,
        "{trend:?}"
    );
    let age = site.age.as_ref().expect("age");
    assert!(
        age.oldest_s >= age.median_s && age.median_s >= age.youngest_s,
        "{age:?}"
    );
    black_box((startup, cache, leaked));
}

fn main() {
    run_checks(
        "trends",
        &[(
            "growth_makes_suspects_and_steady_state_does_not",
            growth_makes_suspects_and_steady_state_does_not,
        )],
    );
}
