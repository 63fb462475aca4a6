//! Exact totals with up to ten thousand threads allocating at once (every thread gets a
//! counter shard of its own: past the first 256 the tracker maps more, up to 65,536, and a
//! thread that ends gives its shard back).
//!
//! `many_threads <n>` prints `alloc_tracker::stats()` before its threads start (`baseline`)
//! and after they are joined (`end`); its threads follow `services::plan`. The end must be
//! the baseline plus exactly the plan, and so must the exit report, give or take what
//! std's runtime frees after `main` returns — measured by the same program with no thread.

use serde_json::Value;
use services::harness::{read_report, serial, Scratch, Service};
use services::plan::{self, Expected};
use std::sync::OnceLock;
use std::time::Duration;

/// Exact totals as the program printed them (`key=value` words).
fn printed_totals(line: &str) -> Expected {
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
    };
    Expected {
        allocs: field("allocs"),
        alloc_bytes: field("alloc_bytes"),
        frees: field("frees"),
        live_bytes: field("live_bytes"),
    }
}

fn report_totals(report: &Value) -> Expected {
    let field = |key: &str| {
        report["totals"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no totals.{key}: {}", report["totals"]))
    };
    Expected {
        allocs: field("allocs"),
        alloc_bytes: field("alloc_bytes"),
        frees: field("frees"),
        live_bytes: field("live_bytes"),
    }
}

/// `later − earlier`, field by field (live bytes may fall: signed).
fn delta(later: Expected, earlier: Expected) -> [i128; 4] {
    [
        i128::from(later.allocs) - i128::from(earlier.allocs),
        i128::from(later.alloc_bytes) - i128::from(earlier.alloc_bytes),
        i128::from(later.frees) - i128::from(earlier.frees),
        i128::from(later.live_bytes) - i128::from(earlier.live_bytes),
    ]
}

fn fields(e: Expected) -> [i128; 4] {
    delta(e, Expected::default())
}

/// One run: (baseline, end, the report's totals).
fn run(threads: usize) -> (Expected, Expected, Expected) {
    let scratch = Scratch::new(&format!("threads-{threads}"));
    let json = scratch.file("heap.json");
    let service = Service::start(
        env!("CARGO_BIN_EXE_many_threads"),
        &[&threads.to_string()],
        &[("ALLOC_TRACKER_REPORT", &json.display().to_string())],
    );
    let ended = service.finish(Duration::from_secs(120));
    assert_eq!(ended.status.code(), Some(0), "{}", ended.describe());
    let baseline = ended
        .line_starting("baseline ")
        .unwrap_or_else(|| panic!("no baseline; {}", ended.describe()));
    let end = ended
        .line_starting("end ")
        .unwrap_or_else(|| panic!("no end; {}", ended.describe()));
    (
        printed_totals(baseline),
        printed_totals(end),
        report_totals(&read_report(&json)),
    )
}

/// What the report adds to `end` when no thread runs: std's runtime after `main`.
fn after_main() -> [i128; 4] {
    static DELTA: OnceLock<[i128; 4]> = OnceLock::new();
    *DELTA.get_or_init(|| {
        let (baseline, end, report) = run(0);
        assert_eq!(
            end, baseline,
            "nothing counted between the two stats() calls"
        );
        delta(report, end)
    })
}

fn exact_totals_with(threads: usize) {
    let _serial = serial();
    let after_main = after_main();
    let (baseline, end, report) = run(threads);
    let planned = fields(plan::expected(threads));
    assert_eq!(
        delta(end, baseline),
        planned,
        "stats() after {threads} threads: [allocs, alloc_bytes, frees, live_bytes] over the baseline"
    );
    let mut expected = planned;
    for (e, a) in expected.iter_mut().zip(after_main) {
        *e += a;
    }
    assert_eq!(
        delta(report, baseline),
        expected,
        "report after {threads} threads: [allocs, alloc_bytes, frees, live_bytes] over the baseline"
    );
}

#[test]
fn exact_totals_with_10_threads() {
    exact_totals_with(10);
}

#[test]
fn exact_totals_with_300_threads() {
    exact_totals_with(300);
}

#[test]
fn exact_totals_with_1000_threads() {
    exact_totals_with(1000);
}

/// Ten thousand threads alive together (2 s here: their stacks are 256 KiB).
#[test]
fn exact_totals_with_10000_threads() {
    exact_totals_with(10_000);
}
