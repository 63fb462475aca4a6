//! Signals: the report on a SIGINT/SIGTERM that the program does not handle, and the report
//! on demand (`ALLOC_TRACKER_SIGNAL`).
//!
//! **The program's signals are the program's.** At start-up the tracker installs its handler
//! for SIGINT and SIGTERM only where their disposition is the default. What it does when one
//! arrives is decided then, by what is installed at that moment:
//!
//! | at the signal | the tracker |
//! |---|---|
//! | its own handler is the one installed (the program has none) | writes the report (on its watcher thread), then ends the process by the signal's default action, so the exit status is the signal's |
//! | the program installed a handler that calls the previous one (signal-hook, `tokio::signal`, `ctrlc`'s chain) | nothing: the program shuts down its own way, and the report is written at its real exit |
//! | the program replaced the handler, ignores the signal, or blocks it and takes it with `sigwait`/`signalfd` | never called (its own threads block every signal, so a blocked signal is never delivered to them instead) |
//!
//! A second exit signal while the report is being written ends the process at once (the
//! report file is then whole or absent, never cut short: see `writer`).
//!
//! **The report signal** (`ALLOC_TRACKER_SIGNAL=usr2`, opt-in) writes the report to the
//! destinations while the program carries on, for programs that cannot call
//! [`crate::write_report`]. It is installed only where the program has no handler for that
//! signal at start-up; a program's handler that chains to the previous one still gets the
//! report written.
//!
//! The handler itself only does async-signal-safe things (`sigaction` to look, one `write`
//! to a pipe, `raise`); the watcher thread, reading the pipe, writes the reports.
//!
//! **Windows** has no POSIX signals: nothing is installed there, and a Ctrl-C ends the
//! process without a report (a program that needs one calls [`crate::write_report`] from
//! its own Ctrl-C handler).

#[cfg(unix)]
mod posix;

#[cfg(unix)]
pub(crate) use posix::{after_fork_child, install, restart_after_fork};

/// No signals to install (Windows).
#[cfg(not(unix))]
pub(crate) fn install(_exit_report: bool) {}

/// No `fork`, so never called (Windows).
#[cfg(not(unix))]
pub(crate) fn restart_after_fork() {}

/// No `fork`, so never called (Windows).
#[cfg(not(unix))]
pub(crate) fn after_fork_child() {}
