//! Start-up and the ends of a process: the exit report, signals, and `fork`.
//!
//! Started by the first sampling decision of a program that uses a [`crate::Tracker`]
//! (normally its very first allocation, before `main`), so a program that links the crate
//! without installing the tracker gets no report. What is covered:
//!
//! | how the program ends | the report |
//! |---|---|
//! | returns from `main` | written (an `atexit` handler) |
//! | `std::process::exit` / `libc::exit`, from any thread | written, on that thread |
//! | a panic that unwinds out of `main` (exit code 101) | written (`atexit`, after the panic message) |
//! | a panic with `panic = "abort"` | written from a panic hook, after the message, before the abort |
//! | SIGINT / SIGTERM with no handler of the program's | written by a watcher thread, then the signal is re-raised with its default action, so the exit status is the signal's |
//! | SIGKILL, `abort()`, `_exit`, other fatal signals | not written: call [`crate::write_report`] beforehand if you need one |
//!
//! The report is written once per process. In a `fork` child, file destinations get the
//! child's pid before the extension (`heap.json` → `heap.<pid>.json`) so that parent and
//! child do not overwrite each other; a child's SIGINT/SIGTERM take their default action.

use crate::config::{self, Destination};
use crate::process::{self, TRACKER_FDS, TRACKER_THREADS};
use crate::{checkpoints, output, reentrancy, samples, snapshot, stacks, symbolize, threads};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const STARTED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(NOT_STARTED);
static REPORTED: AtomicBool = AtomicBool::new(false);
static FIRST_PID: AtomicI32 = AtomicI32::new(0);
/// Write end of the pipe to the signal watcher, -1 when there is none.
static WATCHER_FD: AtomicI32 = AtomicI32::new(-1);
static SIGNAL_SEEN: AtomicBool = AtomicBool::new(false);
static SIGNALS_INSTALLED: AtomicBool = AtomicBool::new(false);

const REPORT_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Starts the tracker's process-wide machinery once. Runs as tracker code.
pub(crate) fn ensure_started() {
    if STATE.load(Ordering::Acquire) == STARTED {
        return;
    }
    if STATE
        .compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return; // another thread is starting it
    }
    crate::clock::mark_start();
    // SAFETY: getpid has no preconditions.
    FIRST_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    // Reads the environment and prints any warning now, at start-up.
    let reporting = !config::destinations().is_empty();
    // SAFETY: the handlers are `extern "C" fn()` with no arguments, valid for the whole
    // life of the process (they live in this binary).
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        );
        if reporting {
            libc::atexit(at_exit);
        }
    }
    if let Some(interval) = config::interval() {
        checkpoints::start_thread(interval);
    }
    #[cfg(feature = "http")]
    if let Some(address) = config::env().http {
        crate::http::start_from_env(address);
    }
    if reporting {
        install_signal_handlers();
        if cfg!(panic = "abort") && !std::thread::panicking() {
            install_abort_panic_hook();
        }
    }
    STATE.store(STARTED, Ordering::Release);
}

extern "C" fn at_exit() {
    write_exit_report();
}

/// Writes the configured report once per process (at exit, on a signal, on an aborting
/// panic).
pub(crate) fn write_exit_report() {
    if REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    write_report_now();
}

/// Writes the configured report now.
pub(crate) fn write_report_now() {
    let _guard = reentrancy::enter();
    let destinations = config::destinations();
    if destinations.is_empty() {
        return;
    }
    let report = snapshot::take();
    let context = process::render_context();
    for destination in destinations {
        match destination {
            Destination::Stderr => {
                output::write_fd(libc::STDERR_FILENO, report.to_text().as_bytes())
            }
            Destination::File { path, format } => {
                let bytes = report.render_with(format, &context);
                let path = per_process_path(&path);
                if let Err(e) = std::fs::write(&path, bytes) {
                    output::warn(&format!(
                        "could not write the report to {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
}

/// `heap.json` in the first process; `heap.<pid>.json` in a fork child.
fn per_process_path(path: &Path) -> PathBuf {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let first = FIRST_PID.load(Ordering::Relaxed);
    if first == 0 || pid == first {
        return path.to_path_buf();
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match name.split_once('.') {
        Some((stem, ext)) => format!("{stem}.{pid}.{ext}"),
        None => format!("{name}.{pid}"),
    };
    path.with_file_name(renamed)
}

fn install_abort_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        write_exit_report();
    }));
}

/// Installs SIGINT/SIGTERM handlers where the program has none, with a watcher thread that
/// writes the report outside signal context.
fn install_signal_handlers() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let read_fd = fds[0];
    if threads::spawn(Box::new(move || watch_signals(read_fd))).is_err() {
        // SAFETY: both descriptors were just opened by pipe2 and are ours.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        return;
    }
    TRACKER_FDS.fetch_add(2, Ordering::Relaxed);
    WATCHER_FD.store(fds[1], Ordering::Release);
    for signal in REPORT_SIGNALS {
        // SAFETY: `action` is fully initialised before use; `old` is writable. We only
        // replace the default disposition, never a handler the program installed.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    SIGNALS_INSTALLED.store(true, Ordering::Release);
}

/// The signal handler: async-signal-safe only (an atomic, `write`, `signal`, `raise`).
extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WATCHER_FD.load(Ordering::Acquire);
    if fd < 0 || SIGNAL_SEEN.swap(true, Ordering::AcqRel) {
        // No watcher, or a second signal while the report is written: end now.
        die_by(signal);
    }
    let byte = signal as u8;
    // SAFETY: writes one byte from a live local to a pipe we own; async-signal-safe.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// Ends the process by `signal` with its default action. The calling thread may be a
/// tracker thread, which blocks every signal: it unblocks this one first, so that the
/// raised signal is delivered to it, at once.
fn die_by(signal: libc::c_int) {
    // SAFETY: sigemptyset/sigaddset write a local set; pthread_sigmask, signal and raise are
    // async-signal-safe and have no memory preconditions.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
        libc::raise(signal);
    }
}

/// The watcher thread: waits for a signal byte, writes the report, re-raises the signal.
fn watch_signals(fd: libc::c_int) {
    loop {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a live local from a pipe we own.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            write_exit_report();
            die_by(libc::c_int::from(byte));
        } else if n == 0
            || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            return;
        }
    }
}

extern "C" fn before_fork() {
    // Hold every lock the child could need, so that none is held by a thread that will not
    // exist in the child. Order: samples, stacks, symbols (the order nothing else nests in).
    samples::lock_all();
    stacks::lock_all();
    checkpoints::lock_all();
    symbolize::lock_all();
}

extern "C" fn after_fork_parent() {
    // SAFETY: `before_fork` took these locks on this thread.
    unsafe { release_fork_locks() }
}

extern "C" fn after_fork_child() {
    // SAFETY: `before_fork` took these locks in the parent on the thread that is now the
    // child's only thread.
    unsafe { release_fork_locks() }
    REPORTED.store(false, Ordering::Release);
    SIGNAL_SEEN.store(false, Ordering::Release);
    TRACKER_THREADS.store(0, Ordering::Relaxed);
    let fd = WATCHER_FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        // The watcher thread did not survive the fork: close its pipe, restore defaults.
        // SAFETY: `fd` is the pipe's write end, inherited and ours to close.
        unsafe { libc::close(fd) };
        TRACKER_FDS.store(1, Ordering::Relaxed); // the read end stays open in the child
    }
    if SIGNALS_INSTALLED.swap(false, Ordering::AcqRel) {
        for signal in REPORT_SIGNALS {
            // SAFETY: resets a disposition; no memory preconditions.
            unsafe {
                let mut current: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut current) == 0
                    && current.sa_sigaction == on_signal as extern "C" fn(libc::c_int) as usize
                {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
        }
    }
}

/// # Safety
/// The locks must have been taken by `before_fork`.
unsafe fn release_fork_locks() {
    // SAFETY: forwarded from the caller.
    unsafe {
        symbolize::unlock_all();
        checkpoints::unlock_all();
        stacks::unlock_all();
        samples::unlock_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_paths_carry_the_pid() {
        FIRST_PID.store(1, Ordering::Relaxed);
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        assert_eq!(
            per_process_path(Path::new("out/heap.json")),
            PathBuf::from(format!("out/heap.{pid}.json"))
        );
        assert_eq!(
            per_process_path(Path::new("report")),
            PathBuf::from(format!("report.{pid}"))
        );
        FIRST_PID.store(pid, Ordering::Relaxed);
        assert_eq!(
            per_process_path(Path::new("heap.json")),
            PathBuf::from("heap.json")
        );
    }
}
