//! POSIX signals (Linux, macOS): the handlers, the pipe to the watcher thread, and the
//! watcher. What they do is told in `signals`.

use crate::config;
use crate::process::TRACKER_FDS;
use crate::{output, threads, writer};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The signals whose default action the tracker reports before.
const EXIT_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Write end of the pipe to the watcher, -1 when there is none.
static WATCHER_FD: AtomicI32 = AtomicI32::new(-1);
/// Read end of that pipe (to close it in a fork child), -1 when there is none.
static READ_FD: AtomicI32 = AtomicI32::new(-1);
/// The report signal (`ALLOC_TRACKER_SIGNAL`) once its handler is installed, 0 otherwise.
static REPORT_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Whether an exit signal is being reported (a second one ends the process at once).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Installs the handlers and starts the watcher (at start-up). `exit_report`: whether
/// SIGINT/SIGTERM should be reported before their default action (there are report
/// destinations).
pub(crate) fn install(exit_report: bool) {
    let report_signal = config::report_signal();
    if !exit_report && report_signal.is_none() {
        return;
    }
    if !start_watcher() {
        return;
    }
    if exit_report {
        for signal in EXIT_SIGNALS {
            install_where_default(signal);
        }
    }
    if let Some(signal) = report_signal {
        if install_where_default(signal) {
            REPORT_SIGNAL.store(signal, Ordering::Release);
        } else {
            output::warn(&format!(
                "ALLOC_TRACKER_SIGNAL: the program handles {} already; no report on it",
                config::signal_name(signal)
            ));
        }
    }
}

/// Starts a new watcher in a fork child that goes on running (its parent's did not come
/// along; the handlers did).
pub(crate) fn restart_after_fork() {
    start_watcher();
}

/// In a fork child: forgets the parent's watcher and closes the pipe the child inherited.
pub(crate) fn after_fork_child() {
    EXITING.store(false, Ordering::Release);
    for fd in [&WATCHER_FD, &READ_FD] {
        let fd = fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: `fd` is one end of the watcher pipe, inherited and ours to close.
            unsafe { libc::close(fd) };
            TRACKER_FDS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Opens the pipe and starts the watcher thread; `false` if either fails.
fn start_watcher() -> bool {
    let Some(fds) = crate::sys::pipe_cloexec() else {
        return false;
    };
    let read_fd = fds[0];
    if threads::spawn(Box::new(move || watch(read_fd))).is_err() {
        // SAFETY: both descriptors were just opened and are ours.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        return false;
    }
    TRACKER_FDS.fetch_add(2, Ordering::Relaxed);
    READ_FD.store(fds[0], Ordering::Release);
    WATCHER_FD.store(fds[1], Ordering::Release);
    true
}

/// Installs [`on_signal`] for `signal` if its disposition is the default; whether it did.
fn install_where_default(signal: libc::c_int) -> bool {
    // SAFETY: `old` is writable; `action` is fully initialised before use. Only a default
    // disposition is replaced, never a handler the program installed or an ignored signal.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
            || old.sa_sigaction != libc::SIG_DFL
        {
            return false;
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
    }
}

/// Whether [`on_signal`] is the handler installed for `signal` right now.
fn ours_is_installed(signal: libc::c_int) -> bool {
    // SAFETY: `current` is writable; sigaction only reads the disposition here, and is
    // async-signal-safe.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == on_signal as extern "C" fn(libc::c_int) as usize
    }
}

/// The signal handler: async-signal-safe only (atomics, `sigaction`, `write`, `raise`).
extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WATCHER_FD.load(Ordering::Acquire);
    if signal == REPORT_SIGNAL.load(Ordering::Acquire) {
        if fd >= 0 {
            notify(fd, signal);
        }
        return;
    }
    if !ours_is_installed(signal) {
        // The program's own handler called us as the previous one: the signal is the
        // program's to act on, and the report will be written at its exit.
        return;
    }
    if fd < 0 || EXITING.swap(true, Ordering::AcqRel) {
        // No watcher (a fork child before its first sampled allocation), or a second signal
        // while the report is written: end now.
        die_by(signal);
        return;
    }
    notify(fd, signal);
}

/// Sends `signal` to the watcher.
fn notify(fd: libc::c_int, signal: libc::c_int) {
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

/// The watcher thread: waits for a signal byte; writes a report on demand, or the exit
/// report and then the signal's default action.
fn watch(fd: libc::c_int) {
    loop {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a live local from a pipe we own.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            let signal = libc::c_int::from(byte);
            if signal == REPORT_SIGNAL.load(Ordering::Acquire) {
                writer::write_on_demand();
            } else {
                writer::write_at_exit();
                die_by(signal);
            }
        } else if n == 0
            || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            return;
        }
    }
}
