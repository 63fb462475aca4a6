//! The tracker's own threads (the signal watcher, the checkpoint timer, the HTTP server and
//! its connections): one spawner for all of them.
//!
//! Each thread
//! - **blocks every signal** from its first instruction (on Unix): a program that blocks
//!   SIGTERM in its threads and takes it with `sigwait` or `signalfd` must never have it
//!   delivered to a thread of ours instead (see `sys::spawn_detached`);
//! - is **tracker code for its whole life**: the reentrancy guard is up from start to end,
//!   thread-local destructors included, so nothing it allocates counts as the program's;
//! - is detached, named `alloc-tracker` (visible in `top -H`, debuggers and `/proc`), and
//!   counted in the gauges' tracker threads while it runs; a panic in its body ends the
//!   thread, never the program.
//!
//! An OS thread started by `sys` (`pthread_create`, `CreateThread`), not
//! `std::thread::spawn`: spawning may happen inside the allocator at start-up, where std's
//! thread machinery must not be entered.

use crate::process::TRACKER_THREADS;
use crate::{reentrancy, sys};
use std::io;
use std::sync::atomic::Ordering;

/// What a tracker thread runs.
pub(crate) type Body = Box<dyn FnOnce() + Send>;

/// Runs `body` on a new detached tracker thread with every signal blocked.
///
/// # Errors
/// When the thread cannot be created (the error the OS returned).
pub(crate) fn spawn(body: Body) -> io::Result<()> {
    let raw = Box::into_raw(Box::new(body));
    if let Err(e) = sys::spawn_detached::<TrackerThread>(raw.cast()) {
        // SAFETY: no thread was created, so `raw` is still ours alone.
        drop(unsafe { Box::from_raw(raw) });
        return Err(e);
    }
    TRACKER_THREADS.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The first code a tracker thread runs.
struct TrackerThread;

impl sys::ThreadMain for TrackerThread {
    fn run(arg: *mut ()) {
        // Everything this thread allocates is the tracker's, until its very end
        // (thread-local destructors included): the guard is never released.
        std::mem::forget(reentrancy::enter());
        sys::name_this_thread(c"alloc-tracker");
        // SAFETY: `arg` is the `Box<Body>` that `spawn` leaked for this thread alone.
        let body = unsafe { Box::from_raw(arg.cast::<Body>()) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        TRACKER_THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Whether the calling thread blocks the signals a program may be sent.
    #[cfg(unix)]
    fn blocks_signals() -> bool {
        // SAFETY: `mask` is written by pthread_sigmask before it is read.
        unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
            [libc::SIGINT, libc::SIGTERM, libc::SIGUSR2, libc::SIGHUP]
                .iter()
                .all(|&signal| libc::sigismember(&mask, signal) == 1)
        }
    }

    #[test]
    fn tracker_threads_are_tracker_code_and_block_every_signal() {
        let (sender, receiver) = mpsc::channel();
        spawn(Box::new(move || {
            #[cfg(unix)]
            assert!(blocks_signals(), "signals are blocked in tracker threads");
            let _ = sender.send(reentrancy::is_busy());
        }))
        .expect("spawn");
        let busy = receiver
            .recv()
            .expect("the thread ran (a failed assertion drops the sender)");
        assert!(busy, "tracker threads run as tracker code");
        // The spawning thread's own mask is untouched.
        #[cfg(unix)]
        assert!(!blocks_signals());
    }
}
