//! Pattern 4, listeners never removed: every session registers a closure on a shared
//! event bus, capturing an `Arc` of its state, and nothing removes it when the session
//! ends, so the bus keeps every session's state alive (and every event is dispatched to
//! every dead session: the process also gets slower) (`listener-leak`). The fix is a
//! subscription handle that unsubscribes on `Drop`, held for the session's life
//! (`listener-fixed`).
//!
//! Both allocate a session's state at the same line (`leak-site`).

use crate::cli::{self, Demo, Knob, Opts, Progress};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// The listener demo's command line.
pub const DEMO: Demo = Demo {
    name: "listener",
    leak: "each session subscribes a closure to an event bus and never unsubscribes",
    fix: "each session holds a subscription handle that unsubscribes on drop",
    unit: "sessions",
    count: Knob {
        long: "count",
        default: "3000",
        help: "Sessions to open and close (each registers one listener)",
    },
    size: Knob {
        long: "size",
        default: "64k",
        help: "Bytes of each session's state (captured by its listener)",
    },
    seconds: "6",
    keep: None,
};

/// An event on the bus.
pub struct Event {
    /// The session that raised it.
    pub session: u64,
}

type Listener = Box<dyn Fn(&Event) + Send + Sync>;

/// A publish/subscribe event bus shared by every session.
#[derive(Default)]
pub struct Bus {
    next_id: AtomicU64,
    listeners: Mutex<Vec<(u64, Listener)>>,
}

impl Bus {
    /// Registers `listener` for the life of the bus: there is no way to remove it.
    pub fn on(&self, listener: impl Fn(&Event) + Send + Sync + 'static) {
        self.add(Box::new(listener));
    }

    /// Registers `listener` until the returned [`Subscription`] is dropped.
    pub fn subscribe(
        self: &Arc<Self>,
        listener: impl Fn(&Event) + Send + Sync + 'static,
    ) -> Subscription {
        Subscription {
            bus: Arc::downgrade(self),
            id: self.add(Box::new(listener)),
        }
    }

    fn add(&self, listener: Listener) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, listener));
        id
    }

    /// Calls every listener with `event`.
    pub fn publish(&self, event: &Event) {
        for (_, listener) in self.lock().iter() {
            listener(event);
        }
    }

    /// Listeners registered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no listener is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Listener)>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A registration on a [`Bus`]; dropping it removes the listener.
pub struct Subscription {
    bus: Weak<Bus>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.lock().retain(|(id, _)| *id != self.id);
        }
    }
}

/// One client session's state.
struct Session {
    id: u64,
    /// Per-session buffers (rendering scratch, recent messages, …).
    scratch: Vec<u8>,
    /// Events this session has been told of.
    seen: AtomicU64,
}

impl Session {
    fn on_event(&self, event: &Event) {
        if event.session != self.id && !self.scratch.is_empty() {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens session `id` with `size` bytes of state.
#[inline(never)]
fn open_session(id: u64, size: usize) -> Arc<Session> {
    let scratch = vec![cli::fill(id); size]; // leak-site
    Arc::new(Session {
        id,
        scratch,
        seen: AtomicU64::new(0),
    })
}

/// Runs one session: it listens to the bus, announces itself, and ends.
fn serve_session(bus: &Arc<Bus>, id: u64, size: usize, leaky: bool) {
    let session = open_session(id, size);
    let listener = {
        let session = Arc::clone(&session);
        move |event: &Event| session.on_event(event)
    };
    if leaky {
        bus.on(listener); // registered for good: the closure keeps `session` alive
        bus.publish(&Event { session: id });
    } else {
        let _subscription = bus.subscribe(listener);
        bus.publish(&Event { session: id });
    } // the fix: `_subscription` is dropped here and takes the listener with it
}

/// Opens and closes `opts.count` sessions on one bus, then exits with the bus alive.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let bus = Arc::new(Bus::default());
    let mut progress = Progress::new(&DEMO, opts);
    for id in 1..=opts.count {
        serve_session(&bus, id, size, leaky);
        progress.step(id, || format!("Listeners registered: {}", bus.len()));
    }
    progress.finish(opts.count, || {
        format!("Listeners registered: {}", bus.len())
    });
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::Scope;

    /// Bytes of each session's state.
    const SIZE: usize = 64 * 1024;

    #[test]
    fn leaky_session_stays_on_the_bus() {
        let bus = Arc::new(Bus::default());
        let scope = Scope::start();
        serve_session(&bus, 1, SIZE, true);
        let usage = scope.finish();
        LeakSite::of("listener.rs").assert_leaks(&usage, SIZE as u64, 1);
        assert_eq!(bus.len(), 1);
    }

    #[test]
    fn fixed_session_retains_nothing() {
        let bus = Arc::new(Bus::default());
        // Warm-up: the first subscription gives the bus's listener list its capacity,
        // which it keeps (the bus outlives the sessions).
        serve_session(&bus, 1, SIZE, false);
        let scope = Scope::start();
        serve_session(&bus, 2, SIZE, false);
        scope.finish().assert_retains_at_most(0);
        assert!(bus.is_empty());
    }
}
