//! Pattern 3, a global accumulator: every request appends an audit event (with a copy of
//! the request body) to a `static` log behind `LazyLock<Mutex<Vec<_>>>` "for the admin
//! page", and nothing ever trims it (`global-leak`). The fix keeps a bounded window: the
//! log is a `VecDeque` that drops its oldest event once it holds `--retain` of them
//! (`global-fixed`).
//!
//! Both copy the body at the same line (`leak-site`); only the retention differs.

use crate::cli::{self, Demo, Knob, Opts, Progress};
use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex, PoisonError};

/// The global demo's command line.
pub const DEMO: Demo = Demo {
    name: "global",
    leak: "every request appends to a static audit log that only grows",
    fix: "the static audit log keeps only the most recent events",
    unit: "requests",
    count: Knob {
        long: "count",
        default: "100000",
        help: "Requests to handle (each appends one audit event)",
    },
    size: Knob {
        long: "size",
        default: "2k",
        help: "Bytes of each request body (the audit event keeps a copy)",
    },
    seconds: "6",
    keep: Some(Knob {
        long: "retain",
        default: "1000",
        help: "Events the audit log of global-fixed retains at most",
    }),
};

/// One audit event.
struct AuditEvent {
    /// The request it records.
    request_id: u64,
    /// A copy of the request's body.
    body: Vec<u8>,
}

/// The leak: every event of the process's life.
static AUDIT_LOG: LazyLock<Mutex<Vec<AuditEvent>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// The fix: the most recent events only.
static RECENT_AUDIT: LazyLock<Mutex<VecDeque<AuditEvent>>> =
    LazyLock::new(|| Mutex::new(VecDeque::new()));

/// An incoming request.
struct Request {
    id: u64,
    body: Vec<u8>,
}

/// Records `request` in the audit log: all of them (leaky) or the last `retain` (fixed).
#[inline(never)]
fn audit(request: &Request, leaky: bool, retain: usize) {
    let body = request.body.clone(); // leak-site
    let event = AuditEvent {
        request_id: request.id,
        body,
    };
    if leaky {
        AUDIT_LOG
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    } else {
        let mut log = RECENT_AUDIT.lock().unwrap_or_else(PoisonError::into_inner);
        while log.len() >= retain {
            if log.pop_front().is_none() {
                return; // retain == 0: keep nothing
            }
        }
        log.push_back(event);
    }
}

/// Events in the audit log now, their bodies' bytes, and the oldest request logged.
fn logged(leaky: bool) -> (usize, usize, u64) {
    fn sum<'a>(events: impl Iterator<Item = &'a AuditEvent>) -> (usize, usize, u64) {
        events.fold((0, 0, u64::MAX), |(n, bytes, oldest), e| {
            (n + 1, bytes + e.body.len(), oldest.min(e.request_id))
        })
    }
    if leaky {
        sum(AUDIT_LOG
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter())
    } else {
        sum(RECENT_AUDIT
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter())
    }
}

fn describe(leaky: bool) -> String {
    match logged(leaky) {
        (0, _, _) => "Events in audit log: 0".to_string(),
        (events, bytes, oldest) => format!(
            "Events in audit log: {events} ({} of bodies, oldest: request {oldest})",
            cli::human_bytes(bytes as u64)
        ),
    }
}

/// Handles `opts.count` requests, auditing each, then exits with the log as it is.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let retain = usize::try_from(opts.keep).unwrap_or(usize::MAX);
    let mut progress = Progress::new(&DEMO, opts);
    let mut handled = 0u64;
    for id in 1..=opts.count {
        let request = Request {
            id,
            body: vec![cli::fill(id); size],
        };
        audit(&request, leaky, retain);
        handled += request.body.len() as u64;
        progress.step(id, || describe(leaky));
    }
    progress.finish(opts.count, || describe(leaky));
    println!("Handled {} of request bodies", cli::human_bytes(handled));
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::{Scope, Usage};

    /// Bytes of each request body.
    const SIZE: usize = 2048;
    /// Events the fixed log retains.
    const RETAIN: usize = 4;
    /// Requests measured: many times the window.
    const REQUESTS: usize = 16 * RETAIN;

    /// Requests `ids`, with their bodies.
    fn requests(ids: std::ops::Range<usize>) -> Vec<Request> {
        ids.map(|id| Request {
            id: id as u64,
            body: vec![cli::fill(id as u64); SIZE],
        })
        .collect()
    }

    /// Audits `requests`, as `run` does, in a scope (the requests are the caller's).
    fn audit_in_scope(requests: &[Request], leaky: bool) -> Usage {
        let scope = Scope::start();
        for request in requests {
            audit(request, leaky, RETAIN);
        }
        scope.finish()
    }

    // Each test touches one of the two statics, so they do not disturb one another.

    #[test]
    fn leaky_audit_log_keeps_every_body() {
        let usage = audit_in_scope(&requests(0..REQUESTS), true);
        let n = REQUESTS as u64;
        LeakSite::of("global.rs").assert_leaks(&usage, n * SIZE as u64, n);
    }

    /// The fixed log keeps what it is for: its last `RETAIN` events, whose bodies the scope
    /// copied. So its pin is its bound, not 0: however many requests come, it retains
    /// `RETAIN` bodies at most (exactly that here), where the leaky log retains them all.
    #[test]
    fn fixed_audit_log_keeps_at_most_its_window() {
        // Warm-up: fill the window, which gives the log its capacity (kept from then on).
        for request in &requests(0..RETAIN) {
            audit(request, false, RETAIN);
        }
        let usage = audit_in_scope(&requests(RETAIN..RETAIN + REQUESTS), false);
        let bound = (RETAIN * SIZE) as u64;
        usage.assert_retains_at_most(bound);
        assert_eq!(
            LeakSite::of("global.rs").retained(&usage),
            (bound, RETAIN as u64),
            "{usage}"
        );
    }
}
