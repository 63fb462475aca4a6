//! `fork` and the tracker: a fork while the first report symbolizes, with allocating
//! threads running; and a forked worker that keeps serving, takes SIGTERM with its own
//! handler, and writes its own report with trends from its own checkpoints.

use services::harness::{
    assert_names_leak_site, read_report, serial, site, stderr_and, Ended, ReportFile, Scratch,
    Service,
};
use std::sync::OnceLock;
use std::time::Duration;

/// A fork that took at least this long is judged: the allocating threads must have kept
/// making progress during it. Shorter forks are left alone: while any fork runs, the
/// tracker's fork handler holds its table locks (as it must) and the kernel copies the
/// page tables, so the threads wait a few milliseconds (2–45 ms measured here, at load
/// averages up to 6). Waiting for the first report's debug info took 94–750 ms.
const JUDGED_FORK: Duration = Duration::from_millis(75);
/// During a judged fork the threads must make at least this share of the iterations
/// their baseline rate predicts. Blocked threads make almost none (~0.1% measured here);
/// threads sharing two cores with a report and a fork make well over a third of it.
const MIN_PROGRESS_SHARE: f64 = 0.1;

/// What one run of `fork_during_report` did.
struct ForkRun {
    ended: Ended,
    /// The parent's report.
    parent: ReportFile,
    /// Each child's pid, and its report (`heap.<pid>.json`).
    children: Vec<(String, ReportFile)>,
}

/// One run of `fork_during_report`, shared by the tests that judge it.
fn fork_run() -> &'static ForkRun {
    static RUN: OnceLock<ForkRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let scratch = Scratch::new("fork-during-report");
        let json = scratch.file("heap.json");
        let service = Service::start(
            env!("CARGO_BIN_EXE_fork_during_report"),
            &[],
            &[("ALLOC_TRACKER_REPORT", &json.display().to_string())],
        );
        // The children may take up to 20 s together (the program's own bound).
        let ended = service.finish(Duration::from_secs(90));
        let children = ended
            .stdout
            .iter()
            .filter_map(|line| line.strip_prefix("child "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|pid| {
                let file = scratch.file(&format!("heap.{pid}.json"));
                (pid.to_string(), ReportFile::read(&file))
            })
            .collect();
        ForkRun {
            parent: ReportFile::read(&json),
            ended,
            children,
        }
    })
}

/// The number after `key=` in `line`.
fn field(line: &str, key: &str) -> f64 {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn allocating_threads_progress_while_a_fork_waits_for_a_report() {
    let _serial = serial();
    let run = fork_run();
    let ended = &run.ended;
    ended.assert_clean_shutdown();
    let baseline = ended
        .line_starting("baseline ")
        .unwrap_or_else(|| panic!("no baseline; {}", ended.describe()));
    let per_ms: f64 = baseline
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("baseline rate");
    let forks: Vec<(f64, f64)> = ended
        .stdout
        .iter()
        .filter(|l| l.starts_with("fork "))
        .map(|l| (field(l, "took_us") / 1e3, field(l, "progress")))
        .collect();
    assert!(
        !forks.is_empty(),
        "no fork during the report; {}",
        ended.describe()
    );
    // The measurements, for `--nocapture`.
    println!("{baseline}; (fork ms, iterations meanwhile): {forks:?}");
    let stalled: Vec<String> = forks
        .iter()
        .filter(|&&(took_ms, _)| took_ms >= JUDGED_FORK.as_secs_f64() * 1e3)
        .filter(|&&(took_ms, progress)| progress < MIN_PROGRESS_SHARE * per_ms * took_ms)
        .map(|(took_ms, progress)| {
            format!(
                "fork took {took_ms:.0} ms; the threads made {progress} iterations, {:.0} expected",
                per_ms * took_ms
            )
        })
        .collect();
    assert!(
        stalled.is_empty(),
        "allocating threads stalled during a fork (baseline {per_ms:.0}/ms): {stalled:#?}"
    );
}

#[test]
fn children_forked_during_a_report_exit_cleanly_with_their_own_reports() {
    let _serial = serial();
    let run = fork_run();
    let ended = &run.ended;
    ended.assert_clean_shutdown();
    let child_lines: Vec<&String> = ended
        .stdout
        .iter()
        .filter(|l| l.starts_with("child "))
        .collect();
    assert!(!child_lines.is_empty(), "no child; {}", ended.describe());
    let bad: Vec<&&String> = child_lines
        .iter()
        .filter(|l| !l.ends_with(" exited 0"))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} children did not exit cleanly: {bad:?}",
        bad.len(),
        child_lines.len()
    );
    for (pid, report) in &run.children {
        match report {
            ReportFile::Whole(report) => assert_names_leak_site(report, "fork_during_report"),
            other => panic!("child {pid}: no whole report: {other:?}"),
        }
    }
    match &run.parent {
        ReportFile::Whole(report) => assert_names_leak_site(report, "fork_during_report"),
        other => panic!("parent: no whole report: {other:?}"),
    }
}

#[test]
fn a_forked_worker_reports_its_own_trends_after_sigterm() {
    let _serial = serial();
    let scratch = Scratch::new("prefork");
    let report = stderr_and(&scratch.file("heap.json"));
    let mut service = Service::start(
        env!("CARGO_BIN_EXE_prefork_worker"),
        &[],
        &[
            ("ALLOC_TRACKER_INTERVAL", "100ms"),
            ("ALLOC_TRACKER_REPORT", &report),
        ],
    );
    let ready = service.wait_for_line("worker ", Duration::from_secs(60));
    let pid: libc::pid_t = ready
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {ready:?}"));
    // The worker grows for ~1 s (20 steps of 50 ms), then says so.
    service.wait_for_line(&format!("worker {pid} grown"), Duration::from_secs(60));
    // SAFETY: kill has no memory preconditions; `pid` is the worker, which waits for this
    // signal and whose parent reaps it only after it has ended.
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill the worker");
    let ended = service.finish(Duration::from_secs(60));
    ended.assert_clean_shutdown();
    assert!(
        ended.printed("worker clean shutdown"),
        "{}",
        ended.describe()
    );
    assert!(ended.printed("worker exited 0"), "{}", ended.describe());
    assert_names_leak_site(&read_report(&scratch.file("heap.json")), "prefork_worker");

    let worker = read_report(&scratch.file(&format!("heap.{pid}.json")));
    assert_names_leak_site(&worker, "prefork_worker");
    let growth = site(&worker, "src/bin/prefork_worker.rs", "// worker-growth")
        .unwrap_or_else(|| panic!("the worker's report does not name its growth: {worker:#}"));
    let live = growth["live_bytes"].as_u64().unwrap_or(0);
    assert!(
        live >= 30 << 20,
        "the growth site holds {live} bytes (40 MiB kept)"
    );
    let trend = &growth["trend"];
    // ~1.1 s of the worker's life at one checkpoint per 100 ms: about 11 of its own
    // checkpoints. The parent took 3 before the fork: a trend from those and the report's
    // own moment alone has 4 points.
    let points = trend["points"].as_u64().unwrap_or(0);
    let fit = trend["fit"].as_f64().unwrap_or(0.0);
    let rate = trend["bytes_per_s"].as_f64().unwrap_or(0.0);
    assert!(
        points >= 8 && fit >= 0.8 && rate > 0.0 && trend["monotonic"] == true,
        "the worker's trend is not from its own checkpoints: {trend}"
    );
}
