//! The tracker's own threads (the signal watcher, the checkpoint timer, the HTTP server and
//! its connections): one spawner for all of them.
//!
//! Each thread
//! - **blocks every signal** from its first instruction: a program that blocks SIGTERM in
//!   its threads and takes it with `sigwait` or `signalfd` must never have it delivered to a
//!   thread of ours instead (the mask is set on the creating thread around
//!   `pthread_create`, so the new thread inherits it and never runs unmasked);
//! - is **tracker code for its whole life**: the reentrancy guard is up from start to end,
//!   thread-local destructors included, so nothing it allocates counts as the program's;
//! - is detached, named `alloc-tracker` (visible in `top -H`, debuggers and `/proc`), and
//!   counted in the gauges' tracker threads while it runs; a panic in its body ends the
//!   thread, never the program.
//!
//! A raw `pthread_create`, not `std::thread::spawn`: spawning may happen inside the
//! allocator at start-up, where std's thread machinery must not be entered.

use crate::process::TRACKER_THREADS;
use crate::reentrancy;
use std::io;
use std::sync::atomic::Ordering;

/// What a tracker thread runs.
pub(crate) type Body = Box<dyn FnOnce() + Send>;

/// Runs `body` on a new detached tracker thread with every signal blocked.
///
/// # Errors
/// When the thread cannot be created (the error `pthread_create` returned).
pub(crate) fn spawn(body: Body) -> io::Result<()> {
    let raw = Box::into_raw(Box::new(body));
    // SAFETY: `all` and `previous` are writable sigset_t values, initialised by sigfillset
    // and pthread_sigmask before they are read.
    let previous = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        previous
    };
    let mut thread: libc::pthread_t = 0;
    // SAFETY: `start` has the start-routine signature and takes ownership of `raw` (a
    // leaked `Box<Body>`) as its argument; `thread` is writable.
    let rc = unsafe { libc::pthread_create(&mut thread, std::ptr::null(), start, raw.cast()) };
    // SAFETY: restores the creating thread's own mask, saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    if rc != 0 {
        // SAFETY: no thread was created, so `raw` is still ours alone.
        drop(unsafe { Box::from_raw(raw) });
        return Err(io::Error::from_raw_os_error(rc));
    }
    TRACKER_THREADS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `thread` was just created and is never joined.
    unsafe { libc::pthread_detach(thread) };
    Ok(())
}

extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
    // Everything this thread allocates is the tracker's, until its very end (thread-local
    // destructors included): the guard is never released.
    std::mem::forget(reentrancy::enter());
    name_this_thread();
    // SAFETY: `arg` is the `Box<Body>` that `spawn` leaked for this thread alone.
    let body = unsafe { Box::from_raw(arg.cast::<Body>()) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    TRACKER_THREADS.fetch_sub(1, Ordering::Relaxed);
    std::ptr::null_mut()
}

/// Names the calling thread `alloc-tracker` where the platform allows it.
fn name_this_thread() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: the name is a NUL-terminated string of at most 16 bytes, as Linux requires.
    unsafe {
        libc::pthread_setname_np(libc::pthread_self(), c"alloc-tracker".as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn tracker_threads_block_every_signal_and_are_tracker_code() {
        let (sender, receiver) = mpsc::channel();
        spawn(Box::new(move || {
            // SAFETY: `mask` is written by pthread_sigmask before it is read.
            let blocked = unsafe {
                let mut mask: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
                [libc::SIGINT, libc::SIGTERM, libc::SIGUSR2, libc::SIGHUP]
                    .iter()
                    .all(|&signal| libc::sigismember(&mask, signal) == 1)
            };
            let _ = sender.send((blocked, reentrancy::is_busy()));
        }))
        .expect("spawn");
        let (blocked, busy) = receiver.recv().expect("the thread ran");
        assert!(blocked, "signals are blocked in tracker threads");
        assert!(busy, "tracker threads run as tracker code");
        // The spawning thread's own mask is untouched.
        // SAFETY: as above.
        let unblocked = unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
            libc::sigismember(&mask, libc::SIGTERM) == 0
        };
        assert!(unblocked);
    }
}
