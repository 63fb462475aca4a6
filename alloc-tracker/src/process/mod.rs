//! What the tracker knows of its process beyond the heap: gauges for the report (threads,
//! open file descriptors, resident memory), and the executable mappings for pprof.
//!
//! Read as the OS tells them (`sys::gauges`: `/proc/self` on Linux, `proc_pidinfo` on
//! macOS, the process's own counters on Windows); `None` where it does not (absent, never
//! wrong). The tracker's own threads and file descriptors (the signal watcher and its
//! pipe) are subtracted, so the gauges describe the program.

pub(crate) mod limit;

use crate::export::pprof::MemoryMapping;
use crate::export::Context;
use crate::report::{MallocGauges, ProcessGauges};
use crate::sys;
use std::sync::atomic::{AtomicU64, Ordering};

/// Threads and file descriptors the tracker itself holds open.
pub(crate) static TRACKER_THREADS: AtomicU64 = AtomicU64::new(0);
pub(crate) static TRACKER_FDS: AtomicU64 = AtomicU64::new(0);

/// Reads the gauges now.
pub(crate) fn read() -> ProcessGauges {
    let gauges = sys::gauges();
    ProcessGauges {
        threads: gauges
            .threads
            .map(|n| n.saturating_sub(TRACKER_THREADS.load(Ordering::Relaxed))),
        open_fds: gauges
            .open_fds
            .map(|n| n.saturating_sub(TRACKER_FDS.load(Ordering::Relaxed))),
        rss_bytes: gauges.rss_bytes,
        malloc: sys::malloc_figures().map(|m| MallocGauges {
            arena_bytes: m.arena,
            mmap_bytes: m.mmap,
            in_use_bytes: m.arena_in_use + m.mmap,
            free_bytes: m.free,
        }),
        limit_bytes: limit::current().map(|limit| limit.bytes),
        limit_source: limit::current().map(|limit| limit.source_name()),
    }
}

/// Resident set size in bytes (cheap: a `/proc` read on Linux, one call elsewhere).
pub(crate) fn rss_bytes() -> Option<u64> {
    sys::rss_bytes()
}

/// What a rendering of a report of this process made now needs: its executable mappings,
/// command line, pid and the time.
pub(crate) fn render_context() -> Context {
    Context {
        mappings: mappings(),
        // `args_os`: `args` panics on an argument that is not UTF-8.
        command: std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        pid: std::process::id(),
        time_nanos: crate::clock::unix_nanos_now(),
    }
}

/// The executable mappings of this process's modules, for pprof's `Mapping` rows (see
/// `symbols::executable_mappings`: none off Linux).
fn mappings() -> Vec<MemoryMapping> {
    crate::symbols::executable_mappings()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauges_this_os_has_are_read() {
        let gauges = read();
        assert!(gauges.threads.is_some_and(|n| n >= 1), "{gauges:?}");
        assert!(gauges.rss_bytes.is_some_and(|b| b > 1 << 20), "{gauges:?}");
        // No descriptor count on Windows; the C allocator's figures on glibc only.
        assert_eq!(gauges.open_fds.is_some(), cfg!(unix), "{gauges:?}");
        assert_eq!(
            gauges.malloc.is_some(),
            cfg!(all(target_os = "linux", target_env = "gnu")),
            "{gauges:?}"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    #[cfg_attr(
        miri,
        ignore = "reads the loader's module list and memory, which under Miri are the interpreter's"
    )]
    fn the_executable_is_mapped_with_its_build_id() {
        let exe = std::env::current_exe().unwrap();
        let all = mappings();
        let own = all
            .iter()
            .find(|m| std::path::Path::new(&m.file) == exe)
            .expect("the test binary is mapped executable");
        assert!(own.build_id.len() >= 16, "build id {:?}", own.build_id);
        assert!(own.build_id.chars().all(|c| c.is_ascii_hexdigit()));
        let here = mappings as fn() -> Vec<MemoryMapping> as usize as u64;
        assert!(all
            .iter()
            .any(|m| m.file == own.file && (m.start..m.limit).contains(&here)));
    }
}
