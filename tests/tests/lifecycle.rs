//! The ends of a process, configuration, `fork` and thread churn. Each scenario re-runs this
//! binary as a child with its own environment (the tracker reads `ALLOC_TRACKER_*` at its
//! first allocation, before `main`), bounded by a timeout so a hang fails the test.

use alloc_tracker::Tracker;
use serde_json::Value;
use std::hint::black_box;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tracker_tests::{
    child_scenario, int, marker_line, read_report, run_checks, scratch_dir, site_at, Scenario,
};

#[global_allocator]
static ALLOC: Tracker = Tracker::system();

const SOURCE: &str = "tests/lifecycle.rs";
/// What the children keep alive: 64 MiB, so every scenario's report names its site.
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn leak() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..64 {
        kept.push(vec![9u8; 1 << 20]); // site: leak
    }
}

/// The child side: what each scenario does.
fn run_child(scenario: &str) {
    leak();
    match scenario {
        "return" => {}
        "exit-from-thread" => {
            std::thread::spawn(|| std::process::exit(3));
            std::thread::sleep(Duration::from_secs(30));
        }
        "panic" => panic!("the program panics"),
        #[cfg(unix)]
        "sigterm" => {
            // SAFETY: raising a signal has no memory preconditions.
            unsafe { libc::raise(libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(30));
        }
        #[cfg(unix)]
        "sigint" => {
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGINT) };
            std::thread::sleep(Duration::from_secs(30));
        }
        #[cfg(unix)]
        "fork" => fork_while_threads_allocate(),
        "thread-churn" => thread_churn(),
        other => panic!("unknown scenario {other}"),
    }
}

fn leak_line() -> u64 {
    marker_line(SOURCE, "// site: leak")
}

fn assert_names_the_leak(report: &Value) {
    let site = site_at(report, SOURCE, leak_line())
        .unwrap_or_else(|| panic!("leak site missing: {report:#}"));
    let live = int(&site["live_bytes"], "live_bytes");
    assert!(live > 32 << 20, "the leak site holds {live} bytes");
    assert_eq!(
        report["sites"][0]["site"], site["site"],
        "the leak is the top site"
    );
}

fn run_exit(scenario: &str) -> (tracker_tests::Finished, Value) {
    let dir = scratch_dir(scenario);
    let json = dir.join("heap.json");
    let finished = Scenario::new(scenario)
        .env("ALLOC_TRACKER_REPORT", format!("stderr,{}", json.display()))
        .timeout(Duration::from_secs(60))
        .run();
    let report = read_report(&json);
    let stderr = finished.stderr();
    assert_eq!(
        stderr.matches("== alloc-tracker:").count(),
        1,
        "exactly one text report:\n{stderr}"
    );
    assert_names_the_leak(&report);
    (finished, report)
}

fn report_on_return_from_main() {
    let (finished, _) = run_exit("return");
    assert_eq!(finished.output.status.code(), Some(0));
}

#[cfg(unix)]
fn report_on_exit_from_another_thread() {
    let (finished, _) = run_exit("exit-from-thread");
    assert_eq!(
        finished.output.status.code(),
        Some(3),
        "the program's own exit code"
    );
    assert!(
        finished.elapsed < Duration::from_secs(20),
        "did not wait for main's sleep"
    );
}

/// Windows: `std::process::exit` is `ExitProcess`, which runs no exit hook, so no report is
/// written (the README's platform table says so); the program's exit code is its own.
#[cfg(windows)]
fn no_report_on_exit_from_another_thread() {
    let dir = scratch_dir("exit-from-thread");
    let json = dir.join("heap.json");
    let finished = Scenario::new("exit-from-thread")
        .env("ALLOC_TRACKER_REPORT", format!("stderr,{}", json.display()))
        .timeout(Duration::from_secs(60))
        .run();
    assert_eq!(finished.output.status.code(), Some(3));
    assert!(
        !json.exists() && !finished.stderr().contains("== alloc-tracker:"),
        "a report appeared: the README's Windows row is out of date"
    );
}

fn report_after_a_panic_ends_the_program() {
    let (finished, _) = run_exit("panic");
    assert_eq!(finished.output.status.code(), Some(101));
    let stderr = finished.stderr();
    let message = stderr.find("the program panics").expect("panic message");
    assert!(
        message < stderr.find("== alloc-tracker:").unwrap(),
        "report after the message"
    );
}

#[cfg(unix)]
fn report_on_sigterm_and_sigint() {
    use std::os::unix::process::ExitStatusExt;
    for (scenario, signal) in [("sigterm", libc::SIGTERM), ("sigint", libc::SIGINT)] {
        let (finished, _) = run_exit(scenario);
        assert_eq!(
            finished.output.status.signal(),
            Some(signal),
            "{scenario}: killed by the signal"
        );
        assert!(
            finished.elapsed < Duration::from_secs(20),
            "{scenario}: did not wait for the sleep"
        );
    }
}

/// Runs the "return" scenario with `env`; returns (stderr, report if a JSON path was given).
fn run_config(env: &[(&str, &str)], json: Option<&Path>) -> (String, Option<Value>) {
    let mut scenario = Scenario::new("return").timeout(Duration::from_secs(60));
    for (key, value) in env {
        scenario = scenario.env(key, value);
    }
    if let Some(json) = json {
        scenario = scenario.env("ALLOC_TRACKER_REPORT", json.display().to_string());
    }
    let finished = scenario.run();
    assert_eq!(
        finished.output.status.code(),
        Some(0),
        "{}",
        finished.stderr()
    );
    (finished.stderr(), json.map(read_report))
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("alloc-tracker: "))
        .collect()
}

fn good_configuration_values_are_used() {
    let dir = scratch_dir("config-good");
    let json = dir.join("r.json");
    let (stderr, report) = run_config(
        &[
            ("ALLOC_TRACKER_RATE", "1"),
            ("ALLOC_TRACKER_UNWIND", "dwarf"),
            ("ALLOC_TRACKER_DEPTH", "100"),
        ],
        Some(&json),
    );
    assert!(warnings(&stderr).is_empty(), "{stderr}");
    let report = report.unwrap();
    assert_eq!(report["sample_rate"], 1);
    assert_eq!(report["tracker"]["unwinder"], "dwarf");
    assert_names_the_leak(&report);
    let site = site_at(&report, SOURCE, leak_line()).unwrap();
    // The line allocates 64 blocks of 1 MiB and grows `KEPT` to 64 entries of 24 bytes.
    assert_eq!(
        int(&site["live_bytes"], "live_bytes"),
        (64 << 20) + 64 * 24,
        "exact mode is exact"
    );

    // Frame pointers name the leak only in a build that keeps them (not this workspace's
    // default); the unwind tables in any.
    let unwinders: &[&str] = if cfg!(forced_frame_pointers) {
        &["table", "fp"]
    } else {
        &["table"]
    };
    for &unwind in unwinders {
        let (stderr, report) = run_config(
            &[
                ("ALLOC_TRACKER_RATE", "64k"),
                ("ALLOC_TRACKER_UNWIND", unwind),
            ],
            Some(&json),
        );
        assert!(warnings(&stderr).is_empty(), "{stderr}");
        let report = report.unwrap();
        assert_eq!(report["sample_rate"], 65536);
        // Where there is no table unwinder (off Linux), `table` unwinds by DWARF.
        let used = if cfg!(target_os = "linux") {
            unwind
        } else {
            "dwarf"
        };
        assert_eq!(report["tracker"]["unwinder"], used);
        assert_eq!(report["tracker"]["dwarf_fallbacks"], 0);
        assert_names_the_leak(&report);
    }

    // A shallow stack keeps fewer frames.
    let (_, deep) = run_config(&[("ALLOC_TRACKER_RATE", "1")], Some(&json));
    let (_, shallow) = run_config(
        &[("ALLOC_TRACKER_RATE", "1"), ("ALLOC_TRACKER_DEPTH", "2")],
        Some(&json),
    );
    let frames =
        |r: &Value| site_at(r, SOURCE, leak_line()).map(|s| s["frames"].as_array().unwrap().len());
    assert!(
        frames(&shallow.unwrap()).is_none(),
        "with 2 frames the stack ends inside std: no site in this file"
    );
    assert!(frames(&deep.unwrap()).unwrap() > 5);

    let (stderr, _) = run_config(&[("ALLOC_TRACKER_REPORT", "off")], None);
    assert!(stderr.is_empty(), "off prints nothing: {stderr}");
}

fn bad_configuration_values_warn_once_and_fall_back() {
    let dir = scratch_dir("config-bad");
    let json = dir.join("r.json");
    for (name, value) in [
        ("ALLOC_TRACKER_RATE", "lots"),
        ("ALLOC_TRACKER_RATE", "-5"),
        ("ALLOC_TRACKER_RATE", ""),
        ("ALLOC_TRACKER_RATE", "99999999999999999999999999"),
        ("ALLOC_TRACKER_DEPTH", "0"),
        ("ALLOC_TRACKER_DEPTH", "1000000"),
        ("ALLOC_TRACKER_UNWIND", "sideways"),
        ("ALLOC_TRACKER_MAX_STACKS", "many"),
    ] {
        let (stderr, report) = run_config(&[(name, value)], Some(&json));
        let warnings = warnings(&stderr);
        assert_eq!(warnings.len(), 1, "{name}={value:?}: {stderr}");
        assert!(warnings[0].contains(name), "{}", warnings[0]);
        let report = report.unwrap();
        assert_eq!(report["sample_rate"], 524288, "{name}={value:?}");
        assert_names_the_leak(&report);
    }
    // An unwritable destination: one warning, the program unaffected, the rest written.
    let (stderr, _) = run_config(
        &[(
            "ALLOC_TRACKER_REPORT",
            &format!("/nonexistent/dir/heap.json,{}", json.display()),
        )],
        None,
    );
    assert_eq!(warnings(&stderr).len(), 1, "{stderr}");
    assert!(stderr.contains("could not write the report to /nonexistent/dir/heap.json"));
    assert_names_the_leak(&read_report(&json));
}

/// Children forked while three threads allocate.
#[cfg(unix)]
const FORKS: usize = 10;

#[cfg(unix)]
fn fork_while_threads_allocate() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The forks start once every worker runs: a fork while std itself starts a thread (its
    // thread-info lock held) leaves that lock held in the child, whose `exit` then waits
    // for it for ever — std's, not the tracker's (seen once on musl).
    let running = std::sync::Arc::new(std::sync::Barrier::new(4));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            let running = running.clone();
            std::thread::spawn(move || {
                running.wait();
                let mut held = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    held.push(vec![1u8; 4096]);
                    if held.len() > 1000 {
                        held.clear();
                    }
                }
            })
        })
        .collect();
    running.wait();
    for _ in 0..FORKS {
        // SAFETY: the child only allocates (the tracker's fork handlers make that safe),
        // writes its report through the exit path, and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mine: Vec<Vec<u8>> = (0..100).map(|_| vec![2u8; 100_000]).collect();
            black_box(&mine);
            std::process::exit(0);
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is writable.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
}

#[cfg(unix)]
fn fork_in_a_threaded_program() {
    let dir = scratch_dir("fork");
    let json = dir.join("heap.json");
    let finished = Scenario::new("fork")
        .env("ALLOC_TRACKER_REPORT", json.display().to_string())
        .env("ALLOC_TRACKER_RATE", "4096")
        .timeout(Duration::from_secs(90))
        .run();
    assert_eq!(
        finished.output.status.code(),
        Some(0),
        "{}",
        finished.stderr()
    );
    assert_names_the_leak(&read_report(&json));
    let children: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &json)
        .collect();
    assert_eq!(children.len(), FORKS, "one report per child: {children:?}");
    for child in children {
        let name = child.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("heap.") && name.ends_with(".json"),
            "{name}"
        );
        let report = read_report(&child);
        // The child inherited the leak, and counted its own 10 MB.
        assert_names_the_leak(&report);
        assert!(int(&report["totals"]["live_bytes"], "live") > (64 << 20) + 10_000_000);
    }
}

thread_local! {
    /// A thread-local whose destructor allocates and frees.
    static ON_EXIT: AllocatesOnDrop = const { AllocatesOnDrop };
}

struct AllocatesOnDrop;

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        black_box(vec![0u8; 256]);
        black_box(format!("{}", 42));
    }
}

fn thread_churn() {
    let before = alloc_tracker::stats();
    for _ in 0..1250 {
        let batch: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    ON_EXIT.with(|_| {});
                    let v: Vec<Vec<u8>> = (0..16).map(|j| vec![i as u8; 64 * (j + 1)]).collect();
                    black_box(v);
                })
            })
            .collect();
        for thread in batch {
            thread.join().unwrap();
        }
    }
    let after = alloc_tracker::stats();
    let report = alloc_tracker::report();
    let site_bytes: u64 = report.sites.iter().map(|s| s.figures.live_bytes).sum();
    assert_eq!(
        site_bytes, report.totals.live_bytes,
        "exact mode: sites add up to the total"
    );
    assert!(after.allocs - before.allocs > 10_000 * 17);
    let grown = after.live_bytes as i64 - before.live_bytes as i64;
    assert!(
        grown.abs() < 64 * 1024,
        "10,000 threads came and went; live bytes moved by {grown}"
    );
    println!("thread-churn ok");
}

fn ten_thousand_threads_come_and_go() {
    let finished = Scenario::new("thread-churn")
        .env("ALLOC_TRACKER_RATE", "1")
        .env("ALLOC_TRACKER_REPORT", "off")
        .timeout(Duration::from_secs(120))
        .run();
    assert_eq!(
        finished.output.status.code(),
        Some(0),
        "{}",
        finished.stderr()
    );
    assert!(finished.stdout().contains("thread-churn ok"));
}

fn main() {
    if let Some(scenario) = child_scenario() {
        run_child(&scenario);
        return;
    }
    let mut checks: Vec<(&str, fn())> = vec![
        ("report_on_return_from_main", report_on_return_from_main),
        (
            "report_after_a_panic_ends_the_program",
            report_after_a_panic_ends_the_program,
        ),
        (
            "good_configuration_values_are_used",
            good_configuration_values_are_used,
        ),
        (
            "bad_configuration_values_warn_once_and_fall_back",
            bad_configuration_values_warn_once_and_fall_back,
        ),
        (
            "ten_thousand_threads_come_and_go",
            ten_thousand_threads_come_and_go,
        ),
    ];
    // Signals, `fork` and an exit hook on `std::process::exit` are Unix's.
    #[cfg(unix)]
    checks.extend([
        (
            "report_on_exit_from_another_thread",
            report_on_exit_from_another_thread as fn(),
        ),
        ("report_on_sigterm_and_sigint", report_on_sigterm_and_sigint),
        ("fork_in_a_threaded_program", fork_in_a_threaded_program),
    ]);
    #[cfg(windows)]
    checks.push((
        "no_report_on_exit_from_another_thread",
        no_report_on_exit_from_another_thread,
    ));
    run_checks("lifecycle", &checks);
}
