//! Pattern 5, a background timer never stopped: every request starts a heartbeat thread
//! that refreshes the request's lease every 100 ms, holding the request's state, and
//! nothing stops it when the request ends; threads and their state pile up
//! (`ticker-leak`). The fix is a [`Ticker`] that signals its thread to stop and joins it
//! when dropped, held for the request's life (`ticker-fixed`).
//!
//! Both allocate a request's state at the same line (`leak-site`).

use crate::cli::{self, Demo, Knob, Opts, Progress};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The ticker demo's command line.
pub const DEMO: Demo = Demo {
    name: "ticker",
    leak: "each request starts a heartbeat thread that is never stopped",
    fix: "each request's heartbeat is stopped and joined when the request ends",
    unit: "requests",
    count: Knob {
        long: "count",
        default: "300",
        help: "Requests to handle (each starts one heartbeat thread)",
    },
    size: Knob {
        long: "size",
        default: "512k",
        help: "Bytes of each request's state (held by its heartbeat)",
    },
    seconds: "6",
    keep: None,
};

/// How often a heartbeat ticks.
pub const PERIOD: Duration = Duration::from_millis(100);

/// A background thread that runs a closure every period until the `Ticker` is dropped;
/// dropping it stops the thread and waits for it.
pub struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts a thread that calls `tick` every `period`.
    pub fn start(period: Duration, mut tick: impl FnMut() + Send + 'static) -> Ticker {
        let (stop, stopped) = mpsc::channel::<()>();
        // Ticks until a message comes or the sender is dropped.
        let thread = thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                tick();
            }
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take()); // wakes the thread at once
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The state of one request, refreshed by its heartbeat.
struct RequestState {
    /// The request's buffers.
    buffer: Vec<u8>,
    /// Lease refreshes so far.
    beats: AtomicU64,
}

impl RequestState {
    fn heartbeat(&self) {
        if !self.buffer.is_empty() {
            self.beats.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Allocates the state of request `id`.
#[inline(never)]
fn new_state(id: u64, size: usize) -> Arc<RequestState> {
    let buffer = vec![cli::fill(id); size]; // leak-site
    Arc::new(RequestState {
        buffer,
        beats: AtomicU64::new(0),
    })
}

/// Handles request `id` with a heartbeat running for its duration.
fn handle_request(id: u64, size: usize, leaky: bool) {
    let state = new_state(id, size);
    if leaky {
        let state = Arc::clone(&state);
        // Nothing keeps a way to stop this thread: it beats (and holds `state`) forever.
        thread::spawn(move || loop {
            thread::sleep(PERIOD);
            state.heartbeat();
        });
    } else {
        let beating = Arc::clone(&state);
        let _heartbeat = Ticker::start(PERIOD, move || beating.heartbeat());
        // … the request's work …
    } // the fix: `_heartbeat` is dropped here, stopping and joining its thread
    state.heartbeat();
}

/// Handles `opts.count` requests, then exits with whatever threads are still running.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let mut progress = Progress::new(&DEMO, opts);
    let baseline = cli::threads();
    let describe = || format!("Threads: {} (at start: {baseline})", cli::threads());
    for id in 1..=opts.count {
        handle_request(id, size, leaky);
        progress.step(id, describe);
    }
    progress.finish(opts.count, describe);
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::Scope;

    /// Bytes of each request's state.
    const SIZE: usize = 64 * 1024;

    /// The leaky request's thread keeps its state as long as this test binary runs (it
    /// beats every 100 ms, harmlessly). The scope counts this thread's allocations only:
    /// the state, and the spawn's bookkeeping, which that thread keeps too; a block the
    /// new thread frees before `finish` (its start closure) may or may not be counted, so
    /// the check is on the leak-site line, which is exact.
    #[test]
    fn leaky_request_leaves_its_state_to_a_thread() {
        let scope = Scope::start();
        handle_request(1, SIZE, true);
        let usage = scope.finish();
        LeakSite::of("ticker.rs").assert_leaks(&usage, SIZE as u64, 1);
    }

    /// The ticker's thread is joined before the request returns, so everything this
    /// thread allocated for it (the state, the channel, the thread's handle and its start
    /// closure) is freed by then, whichever thread frees it.
    #[test]
    fn fixed_request_retains_nothing() {
        let scope = Scope::start();
        handle_request(1, SIZE, false);
        scope.finish().assert_retains_at_most(0);
    }
}
