//! Exact mode (`with_sample_rate(1)`): totals and per-site figures equal the truth.

use alloc_tracker::{Report, Site, Tracker};
use std::hint::black_box;
use std::sync::mpsc;
use tracker_tests::{marker_line, run_checks};

#[global_allocator]
static ALLOC: Tracker = Tracker::system().with_sample_rate(1);

const SOURCE: &str = "tests/exact.rs";

fn site<'a>(report: &'a Report, marker: &str) -> &'a Site {
    let line = marker_line(SOURCE, marker);
    report
        .sites
        .iter()
        .find(|s| {
            s.site.file.as_deref().is_some_and(|f| f.ends_with(SOURCE))
                && s.site.line == Some(line as u32)
        })
        .unwrap_or_else(|| {
            panic!(
                "no site at {SOURCE}:{line}; sites: {:#?}",
                report.sites.iter().map(|s| &s.site).collect::<Vec<_>>()
            )
        })
}

/// `n` separate 1000-byte blocks (boxed on purpose: each is its own allocation).
#[allow(clippy::vec_box)]
#[inline(never)]
fn make_boxes(n: usize) -> Vec<Box<[u8; 1000]>> {
    let mut boxes = Vec::with_capacity(n); // site: boxes-vec
    for _ in 0..n {
        boxes.push(Box::new([7u8; 1000])); // site: boxes
    }
    boxes
}

fn known_allocations_are_counted_exactly() {
    let before = alloc_tracker::stats();
    let boxes = black_box(make_boxes(1000));
    let after = alloc_tracker::stats();
    assert_eq!(after.live_bytes - before.live_bytes, 1000 * 1000 + 1000 * 8);
    assert_eq!(after.live_allocs - before.live_allocs, 1001);
    assert_eq!(after.allocs - before.allocs, 1001);
    assert_eq!(
        after.alloc_bytes - before.alloc_bytes,
        1000 * 1000 + 1000 * 8
    );

    let report = alloc_tracker::report();
    assert_eq!(report.sample_rate, 1);
    let boxes_site = site(&report, "// site: boxes");
    assert_eq!(boxes_site.figures.live_bytes, 1_000_000);
    assert_eq!(boxes_site.figures.live_allocs, 1000);
    assert_eq!(boxes_site.figures.live_samples, 1000);
    assert!(
        boxes_site.site.function.ends_with("make_boxes"),
        "{}",
        boxes_site.site.function
    );
    let vec_site = site(&report, "// site: boxes-vec");
    assert_eq!(vec_site.figures.live_bytes, 8000);
    assert_eq!(vec_site.figures.live_allocs, 1);
    // The top site is the boxes: everything else live in this process is smaller.
    assert_eq!(report.sites[0].site, boxes_site.site);
    // The whole stack is kept, from the site down to this check.
    let functions: Vec<&str> = boxes_site
        .frames
        .iter()
        .map(|f| f.function.as_str())
        .collect();
    assert!(
        functions
            .iter()
            .any(|f| f.ends_with("known_allocations_are_counted_exactly")),
        "{functions:?}"
    );

    drop(boxes);
    let report = alloc_tracker::report();
    let boxes_site = site(&report, "// site: boxes");
    assert_eq!(boxes_site.figures.live_bytes, 0);
    assert_eq!(boxes_site.figures.alloc_bytes, 1_000_000);
    // A site's peak is capped at the process's, which is summed each time a thread's own
    // live bytes grew by 64 KiB (`counters::PEAK_STEP`): it may miss up to that much of
    // the growth since (on Windows, with a small heap before the boxes, it does).
    assert!(
        boxes_site.figures.peak_live_bytes >= 1_000_000 - (64 << 10),
        "{:?} {:?}",
        boxes_site.figures,
        report.totals
    );
}

#[inline(never)]
fn grow_by_realloc() -> Vec<u64> {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..100_000 {
        v.push(i); // site: realloc
    }
    v
}

/// A block grown by `realloc` is attributed to the line of its last (re)allocation, with
/// its current size; each earlier size was freed by the `realloc` that replaced it.
fn realloc_moves_the_sample_with_the_block() {
    let before = alloc_tracker::stats();
    let v = black_box(grow_by_realloc());
    let after = alloc_tracker::stats();
    let bytes = (v.capacity() * 8) as u64;
    assert_eq!(after.live_bytes - before.live_bytes, bytes);
    assert_eq!(after.live_allocs - before.live_allocs, 1);
    let report = alloc_tracker::report();
    let site = site(&report, "// site: realloc");
    assert_eq!(site.figures.live_bytes, bytes);
    assert_eq!(site.figures.live_allocs, 1);
    // Doubling from 4 elements to 131072: 16 reallocations after the first allocation.
    assert_eq!(site.figures.allocs, 16);
    drop(v);
    let report = alloc_tracker::report();
    assert_eq!(
        self::site(&report, "// site: realloc").figures.live_bytes,
        0
    );
}

fn peak_is_seen() {
    let before = alloc_tracker::stats();
    let big: Vec<Vec<u8>> = (0..32).map(|_| vec![1u8; 1 << 20]).collect();
    let during = alloc_tracker::stats();
    drop(black_box(big));
    let after = alloc_tracker::stats();
    assert!(during.live_bytes >= before.live_bytes + (32 << 20));
    // Allocations of 1 MiB are each published at once: the peak is exact for them.
    assert!(
        after.peak_live_bytes >= during.live_bytes,
        "{after:?} vs {during:?}"
    );
    assert!(after.live_bytes < during.live_bytes);
}

fn site_sums_equal_totals() {
    let keep = black_box(make_boxes(500));
    let report = alloc_tracker::report();
    let sum: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    let allocs: u64 = report.sites.iter().map(|s| s.figures.live_allocs).sum();
    assert_eq!(sum, report.totals.live_bytes);
    assert_eq!(allocs, report.totals.live_allocs);
    assert_eq!(report.tracker.dropped_samples, 0);
    assert!(
        report.tracker.bytes > 0,
        "the tracker's own tables are reported"
    );
    drop(keep);
}

/// `n` separate 8-byte blocks, each its own allocation.
#[allow(clippy::vec_box)]
#[inline(never)]
fn small_boxes(n: usize) -> Vec<Box<u64>> {
    let mut boxes = Vec::with_capacity(n);
    for i in 0..n {
        boxes.push(Box::new(i as u64)); // site: small-boxes
    }
    boxes
}

/// The free filter grows four times while samples pile up (every allocation is one here),
/// and each thread's free reads its own shard's copy of the table. Threads that start while
/// it grows free blocks sampled into the new table: a thread left with the old table would
/// miss their samples, and the site would keep blocks that are gone.
fn frees_stay_exact_while_the_filter_grows() {
    const BATCHES: usize = 200;
    const BATCH: usize = 2_000;
    let (batches, to_free) = mpsc::channel::<Vec<Box<u64>>>();
    // Each batch is freed by a thread of its own, started while the main thread goes on
    // sampling (and growing the filter).
    let freer = std::thread::spawn(move || {
        for batch in to_free {
            std::thread::spawn(move || drop(black_box(batch)))
                .join()
                .expect("freeing thread");
        }
    });
    let mut kept = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        batches.send(small_boxes(BATCH)).expect("freer alive");
        kept.push(small_boxes(BATCH));
    }
    drop(batches);
    freer.join().expect("freer");
    assert!(
        alloc_tracker::internals::filter_buckets() >= 1 << 22,
        "the filter grew from 64 Ki buckets to at least 4 Mi for {} live samples",
        BATCHES * BATCH
    );
    let report = alloc_tracker::report();
    let boxes = site(&report, "small-boxes");
    assert_eq!(boxes.figures.live_allocs, (BATCHES * BATCH) as u64);
    assert_eq!(boxes.figures.live_bytes, (BATCHES * BATCH * 8) as u64);
    drop(black_box(kept));
    let report = alloc_tracker::report();
    let sum: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    assert_eq!(
        sum, report.totals.live_bytes,
        "no sample outlived its block"
    );
}

/// Naming frames loads the debug info of the binary and libc (tens of MiB); a report frees
/// it once built and keeps only the names, so a program that reports periodically does not
/// carry it. Reports over stacks already named take their names from the cache. (Each
/// report's copy handed to the caller is program memory with stacks of its own, named by
/// the next report: the loop settles from its second round on.)
fn debug_info_is_freed_after_each_report() {
    let keep = black_box(make_boxes(10));
    let symbols: Vec<u64> = (0..4)
        .map(|_| alloc_tracker::report().tracker.symbol_bytes)
        .collect();
    assert!(
        symbols.iter().all(|&bytes| bytes < 4 << 20),
        "symbols held after each report: {symbols:?} B"
    );
    assert_eq!(symbols[2], symbols[3], "{symbols:?}");
    let report = alloc_tracker::report();
    assert!(site(&report, "// site: boxes")
        .site
        .function
        .ends_with("make_boxes"));
    drop(keep);
}

fn json_has_the_contract_fields() {
    let report = alloc_tracker::report();
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["format"], "alloc-tracker");
    assert_eq!(json["version"], 1);
    for field in [
        "live_bytes",
        "live_allocs",
        "peak_live_bytes",
        "alloc_bytes",
        "allocs",
        "frees",
    ] {
        assert!(json["totals"][field].is_u64(), "totals.{field}");
    }
    for field in ["threads", "open_fds", "rss_bytes"] {
        // Windows has no descriptor count: the gauge is absent there, never a guess.
        if field == "open_fds" && cfg!(windows) {
            assert!(json["process"][field].is_null(), "process.{field}");
            continue;
        }
        assert!(json["process"][field].is_u64(), "process.{field}");
    }
    for field in ["bytes", "stacks", "dropped_samples"] {
        assert!(json["tracker"][field].is_u64(), "tracker.{field}");
    }
    let site = &json["sites"][0];
    for field in [
        "live_bytes",
        "live_allocs",
        "peak_live_bytes",
        "alloc_bytes",
        "allocs",
        "live_samples",
    ] {
        assert!(site[field].is_u64(), "sites[0].{field}");
    }
    assert!(site["site"]["function"].is_string());
    assert!(site["frames"].as_array().is_some_and(|f| !f.is_empty()));
    let back = Report::from_json(&report.to_json()).expect("reads its own JSON");
    assert_eq!(back, report);
}

/// `n` blocks of 100 bytes from one line (each thread's changes to a stack's figures stay
/// in its own part of the table until they come to 64 KiB: these stay there). Boxed on
/// purpose: each is its own allocation.
#[allow(clippy::vec_box)]
#[inline(never)]
fn small_blocks(n: usize) -> Vec<Box<[u8; 100]>> {
    (0..n).map(|_| Box::new([3u8; 100])).collect() // site: small-blocks
}

/// Threads keep their changes to a site's figures to themselves for a while (see
/// `stacks::Local`); a report still sees every one: those of a thread that is waiting,
/// of one that has exited, and frees made on a thread other than the one that allocated.
/// The site's peak is the two threads' blocks together, seen when the report drained both.
fn threads_changes_reach_every_report() {
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    // A thread that allocates 200 blocks and waits, holding them.
    let waiting = std::thread::spawn(move || {
        let blocks = small_blocks(200);
        held_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        blocks
    });
    held_rx.recv().unwrap();
    // A thread that allocates 300 blocks and exits, handing them over.
    let handed_over = std::thread::spawn(|| small_blocks(300)).join().unwrap();
    let report = alloc_tracker::report();
    let figures = &site(&report, "// site: small-blocks").figures;
    assert_eq!((figures.live_bytes, figures.live_allocs), (50_000, 500));
    assert!(figures.peak_live_bytes >= 50_000, "{figures:?}");
    // Frees on this thread, of blocks that the others allocated.
    go_tx.send(()).unwrap();
    drop(black_box(waiting.join().unwrap()));
    drop(black_box(handed_over));
    let report = alloc_tracker::report();
    let figures = &site(&report, "// site: small-blocks").figures;
    assert_eq!((figures.live_bytes, figures.live_allocs), (0, 0));
    assert_eq!((figures.alloc_bytes, figures.allocs), (50_000, 500));
    assert!(figures.peak_live_bytes >= 50_000, "{figures:?}");
}

fn main() {
    run_checks(
        "exact",
        &[
            (
                "known_allocations_are_counted_exactly",
                known_allocations_are_counted_exactly,
            ),
            (
                "realloc_moves_the_sample_with_the_block",
                realloc_moves_the_sample_with_the_block,
            ),
            ("peak_is_seen", peak_is_seen),
            ("site_sums_equal_totals", site_sums_equal_totals),
            (
                "frees_stay_exact_while_the_filter_grows",
                frees_stay_exact_while_the_filter_grows,
            ),
            (
                "debug_info_is_freed_after_each_report",
                debug_info_is_freed_after_each_report,
            ),
            ("json_has_the_contract_fields", json_has_the_contract_fields),
            (
                "threads_changes_reach_every_report",
                threads_changes_reach_every_report,
            ),
        ],
    );
}
