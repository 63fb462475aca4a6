//! A report being written while the process is ended some other way: SIGKILL after a
//! grace period, `exit` from another thread, a second signal, a panic. Whatever happens,
//! the report file is either absent or whole: never a truncated file that a reader (or an
//! upload to a profiling service) chokes on.
//!
//! The slow programs run at `ALLOC_TRACKER_RATE=1` with 4,096 distinct stacks kept, so a
//! report takes a few hundred milliseconds to build and its JSON file is ~28 MiB: a signal
//! or an exit has room to land in the middle of the write. Two kinds of checks:
//!
//! * deterministic: a signal sent the instant `heap.json` appears (the moment a writer
//!   that writes in place has just created it) — a file written elsewhere and renamed into
//!   place appears only whole;
//! * sweeps over timings (grace periods, phases of a report): each run may or may not meet
//!   the write, so these catch a fault with a probability, never a false failure.
//!   `SERVICES_SWEEP=<n>` repeats them `n` times.

use services::harness::{
    assert_absent_or_whole, assert_names_leak_site, read_report, serial, stderr_and, sweep, Ended,
    Scratch, Service,
};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// Start-up: 200,000 blocks at 4,096 stacks, each one sampled, in a debug build.
const READY: Duration = Duration::from_secs(60);
/// From the last signal to the end: one report (about 0.3 s here), with a wide margin.
const END: Duration = Duration::from_secs(60);
/// Every allocation sampled: thousands of stacks in the report.
const EXACT: (&str, &str) = ("ALLOC_TRACKER_RATE", "1");

fn no_handler() -> &'static str {
    env!("CARGO_BIN_EXE_no_handler")
}

/// Starts `no_handler slow` reporting to `stderr,<scratch>/heap.json`, and waits for
/// `ready`.
fn start_slow(scratch: &Scratch) -> Service {
    let report = stderr_and(&scratch.file("heap.json"));
    let mut service = Service::start(
        no_handler(),
        &["slow"],
        &[EXACT, ("ALLOC_TRACKER_REPORT", &report)],
    );
    service.wait_for_line("ready", READY);
    service
}

/// The signal that ended `ended`, which must be one of `allowed`.
fn assert_died_by_one_of(ended: &Ended, allowed: &[libc::c_int]) {
    let signal = ended.status.signal();
    assert!(
        signal.is_some_and(|s| allowed.contains(&s)),
        "expected death by one of {allowed:?}; {}",
        ended.describe()
    );
}

/// An orchestrator's stop: SIGTERM, then SIGKILL if the process is still there after the
/// grace period. For each grace period, the report file is absent or whole.
#[test]
fn sigkill_after_a_grace_period_never_leaves_a_truncated_report() {
    let _serial = serial();
    let mut outcomes = Vec::new();
    for round in 0..sweep() {
        // The brief's periods, and more around the end of a report (~0.3 s here), where
        // the file is written.
        for grace_ms in [0u64, 5, 20, 100, 200, 250, 300, 350, 400, 500] {
            let scratch = Scratch::new(&format!("grace-{round}-{grace_ms}"));
            let mut service = start_slow(&scratch);
            service.signal(libc::SIGTERM);
            std::thread::sleep(Duration::from_millis(grace_ms));
            service.kill();
            let ended = service.finish(END);
            assert_died_by_one_of(&ended, &[libc::SIGTERM, libc::SIGKILL]);
            let context = format!("grace {grace_ms} ms");
            let written =
                assert_absent_or_whole(&scratch.file("heap.json"), "no_handler", &context);
            outcomes.push(format!(
                "{context}: {:?}, report {}",
                ended.status.signal(),
                if written { "whole" } else { "absent" }
            ));
        }
    }
    println!("{outcomes:#?}");
}

/// SIGKILL the instant the report file is created, while the report to SIGTERM is being
/// written: the worst moment an orchestrator's grace period can end.
#[test]
fn sigkill_as_the_report_file_appears_leaves_it_absent_or_whole() {
    let _serial = serial();
    for round in 0..2 * sweep() {
        let scratch = Scratch::new(&format!("kill-at-file-{round}"));
        let json = scratch.file("heap.json");
        let mut service = start_slow(&scratch);
        service.signal(libc::SIGTERM);
        service.signal_when_file_appears(&json, libc::SIGKILL, END);
        let ended = service.finish(END);
        assert_died_by_one_of(&ended, &[libc::SIGTERM, libc::SIGKILL]);
        assert_absent_or_whole(&json, "no_handler", &format!("round {round}"));
    }
}

/// Two signals in a row on a program without a handler, the second sent at once or the
/// instant the report file appears: the process dies by a signal, and the file is absent
/// or whole.
#[test]
fn a_second_signal_never_leaves_a_truncated_report() {
    let _serial = serial();
    let pairs = [
        (libc::SIGTERM, libc::SIGTERM),
        (libc::SIGINT, libc::SIGTERM),
    ];
    for round in 0..sweep() {
        for (first, second) in pairs {
            for at_file in [false, true] {
                let name = format!("two-signals-{round}-{first}-{second}-{at_file}");
                let scratch = Scratch::new(&name);
                let json = scratch.file("heap.json");
                let mut service = start_slow(&scratch);
                service.signal(first);
                if at_file {
                    service.signal_when_file_appears(&json, second, END);
                } else {
                    service.signal(second);
                }
                let ended = service.finish(END);
                assert_died_by_one_of(&ended, &[first, second]);
                assert_absent_or_whole(&json, "no_handler", &name);
            }
        }
    }
}

/// The phases of a report (in % of the previous report's duration) at which the exit or
/// the panic is made: spread over the whole report, so some runs meet the file write.
/// Measured here: one run in about five meets it.
const PHASES: [u64; 12] = [0, 8, 17, 25, 33, 42, 50, 58, 67, 75, 83, 92];

/// `std::process::exit(7)` while another thread writes a report (in a loop): the exit
/// status is 7, and the file is a whole report.
#[test]
fn exit_from_another_thread_during_a_report() {
    let _serial = serial();
    for round in 0..sweep() {
        for percent in PHASES {
            let scratch = Scratch::new(&format!("exit-{round}-{percent}"));
            let json = scratch.file("heap.json");
            let mut service = Service::start(
                env!("CARGO_BIN_EXE_exit_during_report"),
                &[&percent.to_string()],
                &[EXACT, ("ALLOC_TRACKER_REPORT", &json.display().to_string())],
            );
            service.wait_for_line("ready", READY);
            let ended = service.finish(END);
            assert_eq!(
                ended.status.code(),
                Some(7),
                "phase {percent}%: {}",
                ended.describe()
            );
            assert!(ended.printed("exiting"), "{}", ended.describe());
            let context = format!("exit at {percent}% of a report");
            assert!(
                assert_absent_or_whole(&json, "exit_during_report", &context),
                "{context}: no report"
            );
        }
    }
}

/// Twenty threads panic (each joined) while another thread writes reports in a loop; then
/// the program ends normally: exit 0, and a whole report.
#[test]
fn panics_on_other_threads_during_reports() {
    let _serial = serial();
    let scratch = Scratch::new("panic-threads");
    let json = scratch.file("heap.json");
    let mut service = Service::start(
        env!("CARGO_BIN_EXE_panic_during_report"),
        &["thread"],
        &[EXACT, ("ALLOC_TRACKER_REPORT", &json.display().to_string())],
    );
    service.wait_for_line("ready", READY);
    let ended = service.finish(END);
    ended.assert_clean_shutdown();
    assert_eq!(
        ended.stderr.matches("panicked at").count(),
        20,
        "{}",
        ended.describe()
    );
    assert_names_leak_site(&read_report(&json), "panic_during_report");
}

/// `main` panics (ending the program, exit 101) while another thread writes a report: the
/// file is a whole report.
#[test]
fn a_panic_ending_the_program_during_a_report() {
    let _serial = serial();
    for round in 0..sweep() {
        for percent in PHASES {
            let scratch = Scratch::new(&format!("panic-main-{round}-{percent}"));
            let json = scratch.file("heap.json");
            let mut service = Service::start(
                env!("CARGO_BIN_EXE_panic_during_report"),
                &["main", &percent.to_string()],
                &[EXACT, ("ALLOC_TRACKER_REPORT", &json.display().to_string())],
            );
            service.wait_for_line("ready", READY);
            let ended = service.finish(END);
            assert_eq!(
                ended.status.code(),
                Some(101),
                "phase {percent}%: {}",
                ended.describe()
            );
            let context = format!("panic at {percent}% of a report");
            assert!(
                assert_absent_or_whole(&json, "panic_during_report", &context),
                "{context}: no report"
            );
        }
    }
}
