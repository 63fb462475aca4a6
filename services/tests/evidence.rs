//! Evidence a service gives with no configuration, and before it is killed: trends from the
//! default checkpoint schedule, the heap at its high-water mark, the emergency report when
//! memory nears the limit — configured, or a real memory cgroup's, where the kernel's OOM
//! killer ends the program — and a report on demand by signal.

use serde_json::Value;
use services::harness::{read_report, serial, site, stderr_and, ReportFile, Scratch, Service};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROGRAM: &str = env!("CARGO_BIN_EXE_evidence_service");
const SOURCE: &str = "src/bin/evidence_service.rs";

/// The suspect at the line marked `marker`, if any.
fn suspect<'a>(report: &'a Value, marker: &str) -> Option<&'a Value> {
    let line = services::harness::marker_line(SOURCE, marker);
    report["suspects"].as_array()?.iter().find(|s| {
        s["site"]["line"].as_u64() == Some(line)
            && s["site"]["file"]
                .as_str()
                .is_some_and(|f| f.ends_with(SOURCE))
    })
}

#[test]
fn trends_need_no_configuration() {
    let _serial = serial();
    let scratch = Scratch::new("evidence-trends");
    let report = stderr_and(&scratch.file("heap.json"));
    let service = Service::start(PROGRAM, &["trends"], &[("ALLOC_TRACKER_REPORT", &report)]);
    let ended = service.finish(Duration::from_secs(60));
    ended.assert_exited_ok();
    let report = read_report(&scratch.file("heap.json"));
    let grows = suspect(&report, "// grows")
        .unwrap_or_else(|| panic!("the growing site is not a suspect: {}", report["suspects"]));
    assert_eq!(grows["severity"], "critical", "{grows}");
    assert!(
        grows["trend"]["points"].as_u64().unwrap_or(0) >= 10,
        "the default schedule took a dozen checkpoints in 3 s: {grows}"
    );
    for marker in ["// cache", "// table"] {
        assert!(
            suspect(&report, marker).is_none(),
            "{marker} is not a leak: {}",
            report["suspects"]
        );
    }
    assert!(
        ended
            .stderr
            .starts_with("== Leak suspects ==\n 1. CRITICAL"),
        "{}",
        &ended.stderr[..ended.stderr.len().min(400)]
    );
}

#[test]
fn the_heap_at_its_peak_names_a_spike_gone_by_exit() {
    let _serial = serial();
    let scratch = Scratch::new("evidence-spike");
    let json = scratch.file("heap.json");
    let service = Service::start(
        PROGRAM,
        &["spike"],
        &[("ALLOC_TRACKER_REPORT", &json.display().to_string())],
    );
    service.finish(Duration::from_secs(60)).assert_exited_ok();
    let report = read_report(&json);
    let at_peak = &report["at_peak"];
    let peak = report["totals"]["peak_live_bytes"].as_u64().unwrap_or(0);
    let captured = at_peak["live_bytes"].as_u64().unwrap_or(0);
    assert!(peak >= 64 << 20, "{}", report["totals"]);
    // Captured when the live total was within 10% of its peak.
    assert!(
        captured * 10 >= peak * 9,
        "at_peak {captured} of a {peak}-byte peak"
    );
    let line_of = |marker| services::harness::marker_line(SOURCE, marker);
    let at = |marker| {
        at_peak["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["site"]["line"].as_u64() == Some(line_of(marker)))
    };
    let spike = at("// spike").unwrap_or_else(|| panic!("the spike is not at the peak: {at_peak}"));
    // 64 blocks of 1 MiB at the default rate: each is sampled with p = 1 − e⁻², weight
    // 1.156, so the estimate's standard error is √(64 · (w² − w)) MiB ≈ 3.4 MiB; the
    // capture holds at least 90% of the spike. 5 standard errors either side (a false
    // failure about once in 1.7 million runs).
    let bytes = spike["live_bytes"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
    assert!(
        (57.6 - 17.0..=64.0 + 17.0).contains(&bytes),
        "spike {bytes:.1} MiB at the peak"
    );
    assert!(
        at("// after-spike").is_none(),
        "allocated after the peak: {at_peak}"
    );
    // And the site is gone from what is live now.
    let now = site(&report, SOURCE, "// spike");
    assert!(now.is_none_or(|s| s["live_bytes"] == 0), "{now:?}");
}

/// Waits (at most `timeout`) until `path` holds a whole report.
fn wait_for_report(path: &Path, timeout: Duration) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let ReportFile::Whole(report) = ReportFile::read(path) {
            return Some(report);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The report names the growing line's function as the emergency, first. Written at the
/// limit, it names sites from the symbol tables alone (no debug info read), so it has the
/// function but no file:line, and says so.
fn assert_emergency_at_the_growth(report: &Value) {
    let first = &report["suspects"][0];
    assert_eq!(first["severity"], "emergency", "{}", report["suspects"]);
    if let Some(line) = first["site"]["line"].as_u64() {
        assert_eq!(
            line,
            services::harness::marker_line(SOURCE, "// grows until killed"),
            "{first}"
        );
    } else {
        assert_eq!(
            report["tracker"]["naming"], "symbol tables",
            "{}",
            report["tracker"]
        );
    }
    assert!(
        first["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("of the memory limit")),
        "{first}"
    );
    assert!(
        first["site"]["function"]
            .as_str()
            .is_some_and(|f| f.contains("grow_one")),
        "named by function: {first}"
    );
}

#[test]
fn a_configured_limit_gets_a_report_before_the_kill() {
    let _serial = serial();
    let scratch = Scratch::new("evidence-limit");
    let json = scratch.file("heap.json");
    let report = stderr_and(&json);
    let mut service = Service::start(
        PROGRAM,
        &["grow"],
        &[
            ("ALLOC_TRACKER_REPORT", &report),
            ("ALLOC_TRACKER_LIMIT", "96m"),
        ],
    );
    // 90% of 96 MiB is 86.4 MiB: by 96 MiB grown, the report was written (on the
    // allocating thread itself, before it went on).
    service.wait_for_line("grew 96 MiB", Duration::from_secs(60));
    let written = wait_for_report(&json, Duration::from_secs(10))
        .expect("an emergency report on disk while the program runs");
    assert_emergency_at_the_growth(&written);
    service.kill();
    let ended = service.finish(Duration::from_secs(30));
    ended.assert_killed_by(libc::SIGKILL);
    assert!(
        ended.stderr.contains(" EMERGENCY "),
        "on stderr too: {}",
        ended.stderr
    );
}

/// A memory cgroup (v1) of this test's own, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    /// A new group limited to `bytes`, or why it cannot be made here.
    fn new(bytes: u64) -> Result<Cgroup, String> {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/memory/alloc-tracker-oom-{}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let group = Cgroup(dir);
        std::fs::write(group.0.join("memory.limit_in_bytes"), bytes.to_string())
            .map_err(|e| format!("set the limit: {e}"))?;
        // No swap to escape to (there is none here; this makes it so elsewhere).
        let _ = std::fs::write(group.0.join("memory.swappiness"), "0");
        Ok(group)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The group can be removed once its process is gone (it may take a moment).
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

#[test]
fn oom_killed_in_a_memory_cgroup_leaves_a_report() {
    let _serial = serial();
    let group = match Cgroup::new(256 << 20) {
        Ok(group) => group,
        Err(why) => {
            eprintln!(
                "\n!!! SKIPPED oom_killed_in_a_memory_cgroup_leaves_a_report: no memory \
                 cgroup can be made here ({why}); it needs root and cgroup v1's memory \
                 controller at /sys/fs/cgroup/memory\n"
            );
            return;
        }
    };
    let scratch = Scratch::new("evidence-oom");
    let json = scratch.file("heap.json");
    let report = stderr_and(&json);
    let service = Service::start_in(
        PROGRAM,
        &["grow"],
        &[("ALLOC_TRACKER_REPORT", &report)],
        Some(&group.0.join("cgroup.procs")),
    );
    let ended = service.finish(Duration::from_secs(120));
    ended.assert_killed_by(libc::SIGKILL);
    let report = read_report(&json);
    assert_emergency_at_the_growth(&report);
    let limit = report["process"]["limit_bytes"].as_u64();
    assert_eq!(
        limit,
        Some(256 << 20),
        "the cgroup's limit: {}",
        report["process"]
    );
    assert!(
        report["process"]["limit_source"]
            .as_str()
            .is_some_and(|s| s.contains("alloc-tracker-oom")),
        "{}",
        report["process"]
    );
    assert!(ended.stderr.contains(" EMERGENCY "), "{}", ended.stderr);
    drop(group);
}

#[test]
fn a_report_signal_writes_while_the_program_carries_on() {
    let _serial = serial();
    let scratch = Scratch::new("evidence-signal");
    let json = scratch.file("heap.json");
    let mut service = Service::start(
        PROGRAM,
        &["on-demand"],
        &[
            ("ALLOC_TRACKER_REPORT", &json.display().to_string()),
            ("ALLOC_TRACKER_SIGNAL", "usr2"),
        ],
    );
    service.wait_for_line("ready", Duration::from_secs(60));
    service.signal(libc::SIGUSR2);
    let written = wait_for_report(&json, Duration::from_secs(30)).expect("a report on demand");
    let kept = site(&written, SOURCE, "// kept").expect("the kept site");
    assert!(
        kept["live_bytes"].as_u64().unwrap_or(0) >= 24 << 20,
        "{kept}"
    );
    std::fs::remove_file(&json).expect("remove the on-demand report");
    service.close_stdin();
    let ended = service.finish(Duration::from_secs(60));
    ended.assert_exited_ok();
    assert_eq!(ended.stdout, ["ready", "done"], "the program's own output");
    // The exit report is written too.
    assert!(matches!(ReportFile::read(&json), ReportFile::Whole(_)));
}
