//! What the tracker knows of its process beyond the heap: gauges for the report (threads,
//! open file descriptors, resident memory), and the executable mappings for pprof ([`maps`]).
//!
//! Read from `/proc/self` on Linux; `None` elsewhere (absent, not wrong). The tracker's own
//! thread and file descriptors (the signal watcher and its pipe) are subtracted, so the
//! gauges describe the program.

pub(crate) mod limit;
pub(crate) mod maps;

use crate::export::Context;
use crate::report::{MallocGauges, ProcessGauges};
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
        malloc: malloc(),
        limit_bytes: limit::current().map(|limit| limit.bytes),
        limit_source: limit::current().map(|limit| limit.source_name()),
    }
}

/// glibc's `mallinfo2`: the C allocator's own figures.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc() -> Option<MallocGauges> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct (glibc 2.33 and
    // later, which every supported glibc target has).
    let info = unsafe { libc::mallinfo2() };
    let n = |v: usize| v as u64;
    Some(MallocGauges {
        arena_bytes: n(info.arena),
        mmap_bytes: n(info.hblkhd),
        in_use_bytes: n(info.uordblks) + n(info.hblkhd),
        free_bytes: n(info.fordblks),
    })
}

/// No `mallinfo2` off glibc: absent, never wrong.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc() -> Option<MallocGauges> {
    None
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

/// Resident set size in bytes, from `/proc/self/statm`.
pub(crate) fn rss_bytes() -> Option<u64> {
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
