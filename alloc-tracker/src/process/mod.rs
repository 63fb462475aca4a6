//! What the tracker knows of its process beyond the heap: gauges for the report (threads,
//! open file descriptors, resident memory), and the executable mappings for pprof ([`maps`]).
//!
//! Read from `/proc/self` on Linux; `None` elsewhere (absent, not wrong). The tracker's own
//! thread and file descriptors (the signal watcher and its pipe) are subtracted, so the
//! gauges describe the program.

pub(crate) mod maps;

use crate::export::Context;
use crate::report::ProcessGauges;
use std::sync::atomic::{AtomicU64, Ordering};

/// Threads and file descriptors the tracker itself holds open.
pub(crate) static TRACKER_THREADS: AtomicU64 = AtomicU64::new(0);
pub(crate) static TRACKER_FDS: AtomicU64 = AtomicU64::new(0);

/// Reads the gauges now.
pub(crate) fn read() -> ProcessGauges {
    ProcessGauges {
        threads: threads().map(|n| n.saturating_sub(TRACKER_THREADS.load(Ordering::Relaxed))),
        open_fds: open_fds().map(|n| n.saturating_sub(TRACKER_FDS.load(Ordering::Relaxed))),
        rss_bytes: rss_bytes(),
    }
}

fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory being listed holds one descriptor of its own.
    Some((entries.count() as u64).saturating_sub(1))
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// What a rendering of a report of this process made now needs: its executable mappings,
/// command line, pid and the time.
pub(crate) fn render_context() -> Context {
    Context {
        mappings: maps::process_mappings(),
        // `args_os`: `args` panics on an argument that is not UTF-8.
        command: std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        pid: std::process::id(),
        time_nanos: crate::clock::unix_nanos_now(),
    }
}
