//! Graceful and default shutdowns of service-shaped programs, with the signal handling of
//! the crates real services use. Each test starts a program with
//! `ALLOC_TRACKER_REPORT=stderr,<dir>/heap.json`, waits for its `ready` line (its handler
//! is installed), sends the signal, and checks the exit status, the program's own stdout
//! and the report.
//!
//! A program that handles the signal must shut down as it was written to: exit 0 after
//! printing `clean shutdown`, with the report written at that exit. A program that has no
//! handler dies by the signal, with the report written first.

use services::harness::{
    assert_names_leak_site, read_report, serial, stderr_and, Ended, Scratch, Service,
};
use std::time::Duration;

/// Start-up of a debug build (48 MiB to fill, a tokio runtime) on a busy 2-core machine.
const READY: Duration = Duration::from_secs(30);
/// From the signal to the end: the work in flight, then a report (well under a second).
const END: Duration = Duration::from_secs(30);

/// Runs `exe args` until `ready`, sends `signal`, and returns how it ended with its report
/// directory.
fn signal_after_ready(
    test: &str,
    exe: &str,
    args: &[&str],
    signal: libc::c_int,
) -> (Ended, Scratch) {
    let scratch = Scratch::new(test);
    let report = stderr_and(&scratch.file("heap.json"));
    let mut service = Service::start(exe, args, &[("ALLOC_TRACKER_REPORT", &report)]);
    service.wait_for_line("ready", READY);
    service.signal(signal);
    (service.finish(END), scratch)
}

/// Exit 0 after `clean shutdown`, one text report, and a JSON report naming the leak site.
fn assert_graceful(program: &str, ended: &Ended, scratch: &Scratch) {
    ended.assert_clean_shutdown();
    assert_eq!(
        ended.text_reports(),
        1,
        "one text report at exit; {}",
        ended.describe()
    );
    assert_names_leak_site(&read_report(&scratch.file("heap.json")), program);
}

/// Killed by `signal` after writing its report (the text one and the JSON one).
fn assert_reported_then_died(program: &str, signal: libc::c_int, ended: &Ended, scratch: &Scratch) {
    ended.assert_killed_by(signal);
    assert!(
        !ended.printed("no signal came"),
        "the program outlived the signal; {}",
        ended.describe()
    );
    assert_eq!(ended.text_reports(), 1, "{}", ended.describe());
    assert_names_leak_site(&read_report(&scratch.file("heap.json")), program);
}

#[test]
fn tokio_ctrl_c_shuts_down_cleanly_on_sigint() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "tokio-ctrl-c",
        env!("CARGO_BIN_EXE_tokio_service"),
        &["ctrl-c"],
        libc::SIGINT,
    );
    assert_graceful("tokio_service", &ended, &scratch);
}

#[test]
fn tokio_signal_terminate_shuts_down_cleanly_on_sigterm() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "tokio-terminate",
        env!("CARGO_BIN_EXE_tokio_service"),
        &["terminate"],
        libc::SIGTERM,
    );
    assert_graceful("tokio_service", &ended, &scratch);
}

#[test]
fn signal_hook_flag_shuts_down_cleanly_on_sigterm() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "signal-hook-term",
        env!("CARGO_BIN_EXE_signal_hook_service"),
        &[],
        libc::SIGTERM,
    );
    assert_graceful("signal_hook_service", &ended, &scratch);
}

#[test]
fn signal_hook_flag_shuts_down_cleanly_on_sigint() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "signal-hook-int",
        env!("CARGO_BIN_EXE_signal_hook_service"),
        &[],
        libc::SIGINT,
    );
    assert_graceful("signal_hook_service", &ended, &scratch);
}

#[test]
fn ctrlc_handler_shuts_down_cleanly_on_sigint() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "ctrlc-int",
        env!("CARGO_BIN_EXE_ctrlc_service"),
        &[],
        libc::SIGINT,
    );
    assert_graceful("ctrlc_service", &ended, &scratch);
}

#[test]
fn ctrlc_handler_shuts_down_cleanly_on_sigterm() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "ctrlc-term",
        env!("CARGO_BIN_EXE_ctrlc_service"),
        &[],
        libc::SIGTERM,
    );
    assert_graceful("ctrlc_service", &ended, &scratch);
}

#[test]
fn sigwait_daemon_takes_its_sigterm_on_the_main_thread() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "sigwait-main",
        env!("CARGO_BIN_EXE_sigwait_daemon"),
        &["main"],
        libc::SIGTERM,
    );
    assert_graceful("sigwait_daemon", &ended, &scratch);
    assert!(
        ended.printed(&format!("got signal {}", libc::SIGTERM)),
        "{}",
        ended.describe()
    );
}

#[test]
fn sigwait_daemon_takes_its_sigterm_on_a_signal_thread() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "sigwait-thread",
        env!("CARGO_BIN_EXE_sigwait_daemon"),
        &["thread"],
        libc::SIGTERM,
    );
    assert_graceful("sigwait_daemon", &ended, &scratch);
    assert!(
        ended.printed(&format!("got signal {}", libc::SIGTERM)),
        "{}",
        ended.describe()
    );
}

#[test]
#[cfg(target_os = "linux")]
fn signalfd_daemon_takes_its_sigterm() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "signalfd",
        env!("CARGO_BIN_EXE_signalfd_daemon"),
        &[],
        libc::SIGTERM,
    );
    assert_graceful("signalfd_daemon", &ended, &scratch);
    assert!(
        ended.printed(&format!("got signal {}", libc::SIGTERM)),
        "{}",
        ended.describe()
    );
}

#[test]
fn an_ignored_sigint_changes_nothing() {
    let _serial = serial();
    let scratch = Scratch::new("ignored-sigint");
    let report = stderr_and(&scratch.file("heap.json"));
    let mut service = Service::start(
        env!("CARGO_BIN_EXE_ignores_sigint"),
        &[],
        &[("ALLOC_TRACKER_REPORT", &report)],
    );
    service.wait_for_line("ready", READY);
    service.signal(libc::SIGINT);
    // An ignored signal is discarded when it is sent, so by now it has been dealt with:
    // the program answering after it shows that it carried on.
    service.send_stdin("after the signal\n");
    service.wait_for_line("ack after the signal", END);
    service.close_stdin();
    let ended = service.finish(END);
    assert_graceful("ignores_sigint", &ended, &scratch);
}

#[test]
fn without_a_handler_sigterm_reports_then_kills() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "no-handler-term",
        env!("CARGO_BIN_EXE_no_handler"),
        &[],
        libc::SIGTERM,
    );
    assert_reported_then_died("no_handler", libc::SIGTERM, &ended, &scratch);
}

#[test]
fn without_a_handler_sigint_reports_then_kills() {
    let _serial = serial();
    let (ended, scratch) = signal_after_ready(
        "no-handler-int",
        env!("CARGO_BIN_EXE_no_handler"),
        &[],
        libc::SIGINT,
    );
    assert_reported_then_died("no_handler", libc::SIGINT, &ended, &scratch);
}
