//! Start-up and the ends of a process: the exit report, `fork`, and unloading.
//!
//! Started by the first sampling decision of a program that uses a [`crate::Tracker`]
//! (normally its very first allocation, before `main`), so a program that links the crate
//! without installing the tracker gets no report. When the report is written:
//!
//! | how the program ends | the report |
//! |---|---|
//! | returns from `main` | written (an `atexit` handler), after any report in progress (see `writer`) |
//! | `std::process::exit` / `libc::exit`, from any thread | written, on that thread; the exit status is the program's (Unix: on Windows `std::process::exit` is `ExitProcess`, which runs no exit hook, so nothing is written) |
//! | a panic that unwinds out of `main` (exit code 101) | written (`atexit`, after the panic message) |
//! | a panic with `panic = "abort"` | written from a panic hook, after the message, before the abort |
//! | SIGINT / SIGTERM the program does not handle | written by the watcher thread, then the signal's default action: the exit status is the signal's (see `signals`; Unix only) |
//! | SIGINT / SIGTERM the program handles (tokio, signal-hook, ctrlc, `sigwait`, ignored) | nothing at the signal; written at the program's own exit |
//! | SIGKILL, `abort()`, `_exit`, other fatal signals | not written: call [`crate::write_report`] beforehand if you need one |
//!
//! **Fork** (Unix). The fork handlers hold every table lock across `fork` (never waiting for a
//! report that is symbolizing: see `symbolize`), so the child's tables are whole. A child
//! names its files with its pid (`heap.json` → `heap.<pid>.json`). A child that goes on
//! running (a daemon, a pre-fork worker) gets the tracker's threads back — the signal
//! watcher, the checkpoint timer, the live endpoint on a port of its own — at its first
//! sampled allocation, and writes its own report at its exit; a child that calls `exec`
//! pays nothing.
//!
//! **Unloading.** A tracker inside a shared library (a `cdylib` loaded with `dlopen`: a
//! Python extension, a plugin) leaves code behind that must stay mapped — the `atexit`
//! handler, the signal handler, its threads, the thread-exit callback of the counters. At
//! start-up the library pins itself (`dlopen` with `RTLD_NODELETE`; on Windows
//! `GetModuleHandleExW` with `…_PIN`), so unloading never unmaps it: the program may unload
//! the plugin, and the report is still written at exit.

use crate::{
    capture, checkpoints, clock, config, counters, peak, reentrancy, samples, signals, stacks,
    symbolize, sys, writer,
};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

const NOT_STARTED: u8 = 0;
const STARTING: u8 = 1;
const STARTED: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(NOT_STARTED);
/// Set in a fork child: its tracker threads are started again at its next sampling
/// decision.
static RESTART: AtomicBool = AtomicBool::new(false);
/// Whether `before_fork` took the symbolizer's lock (it does not wait for it).
static SYMBOLIZER_HELD: AtomicBool = AtomicBool::new(false);

/// Starts the tracker's process-wide machinery once (and again in a fork child that goes on
/// running). Runs as tracker code.
#[inline]
pub(crate) fn ensure_started() {
    if STATE.load(Ordering::Acquire) == STARTED {
        if RESTART.load(Ordering::Relaxed) && RESTART.swap(false, Ordering::AcqRel) {
            start_threads(true);
        }
        return;
    }
    start();
}

#[cold]
fn start() {
    if STATE
        .compare_exchange(NOT_STARTED, STARTING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return; // another thread is starting it
    }
    clock::mark_start();
    writer::note_first_process();
    crate::process::limit::init(config::limit());
    pin_this_module();
    // Reads the environment and prints any warning now, at start-up.
    let reporting = !config::destinations().is_empty();
    sys::at_fork(before_fork, after_fork_parent, after_fork_child);
    if reporting {
        sys::at_exit(at_exit);
    }
    signals::install(reporting);
    // The table unwinder's scan of the loaded objects, now rather than at the first sample.
    capture::init(config::effective_unwind(None));
    start_threads(false);
    if reporting && cfg!(panic = "abort") && !std::thread::panicking() {
        install_abort_panic_hook();
    }
    STATE.store(STARTED, Ordering::Release);
}

/// Starts the checkpoint timer and the live endpoint, as configured; in a fork child
/// (`after_fork`), the signal watcher too.
fn start_threads(after_fork: bool) {
    if after_fork {
        signals::restart_after_fork();
    }
    checkpoints::start_thread(config::schedule());
    #[cfg(feature = "http")]
    if after_fork {
        crate::http::restart_after_fork();
    } else if let Some(address) = config::env().http {
        crate::http::start_from_env(address);
    }
}

extern "C" fn at_exit() {
    let _guard = reentrancy::enter();
    writer::write_at_exit();
}

fn install_abort_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let _guard = reentrancy::enter();
        writer::write_at_exit();
    }));
}

/// Keeps the object this code lives in mapped for the life of the process, however often
/// the program unloads it (nothing to do in an executable, where it is pinned anyway).
fn pin_this_module() {
    sys::pin_module_of(pin_this_module as fn() as usize);
}

extern "C" fn before_fork() {
    // Hold every lock the child could need, so that none is held by a thread that will not
    // exist in the child. The symbolizer's lock is only tried: a report may hold it for
    // seconds while it loads debug info, and waiting for it here would stall every thread
    // that samples meanwhile (they would queue on the locks below). Then: the unwinders'
    // (leaves, held only during a capture), samples, stacks, checkpoints (the order nothing
    // else nests in).
    SYMBOLIZER_HELD.store(symbolize::try_lock_all(), Ordering::Relaxed);
    capture::lock_all();
    samples::lock_all();
    stacks::lock_all();
    checkpoints::lock_all();
    peak::lock_all();
}

extern "C" fn after_fork_parent() {
    // SAFETY: `before_fork` took these locks on this thread.
    unsafe { release_fork_locks() }
}

extern "C" fn after_fork_child() {
    // SAFETY: `before_fork` took these locks in the parent on the thread that is now the
    // child's only thread.
    unsafe { release_fork_locks() }
    if !SYMBOLIZER_HELD.load(Ordering::Relaxed) {
        // A report was symbolizing in the parent: its state is half-built here.
        symbolize::abandon_in_fork_child();
    }
    crate::process::TRACKER_THREADS.store(0, Ordering::Relaxed);
    counters::reclaim_in_fork_child();
    writer::after_fork_child();
    signals::after_fork_child();
    #[cfg(feature = "http")]
    crate::http::after_fork_child();
    RESTART.store(true, Ordering::Release);
}

/// # Safety
/// The locks must have been taken by `before_fork`.
unsafe fn release_fork_locks() {
    // SAFETY: forwarded from the caller.
    unsafe {
        peak::unlock_all();
        checkpoints::unlock_all();
        stacks::unlock_all();
        samples::unlock_all();
        capture::unlock_all();
        if SYMBOLIZER_HELD.load(Ordering::Relaxed) {
            symbolize::unlock_all();
        }
    }
}
