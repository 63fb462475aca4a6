//! What the tracker knows of its process beyond the heap: gauges for the report (threads,
//! open file descriptors, resident memory), and the executable mappings for pprof.
//!
//! Read from `/proc/self` on Linux; `None` elsewhere (absent, not wrong). The tracker's own
//! thread and file descriptors (the signal watcher and its pipe) are subtracted, so the
//! gauges describe the program.

pub(crate) mod limit;

use crate::export::pprof::MemoryMapping;
use crate::export::Context;
use crate::report::{MallocGauges, ProcessGauges};
use crate::symbols::modules::Modules;
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

/// The executable mappings of this process's modules (as `/proc/self/maps` shows them),
/// with each module's GNU build id (read from its notes in memory), for pprof's `Mapping`
/// rows.
fn mappings() -> Vec<MemoryMapping> {
    Modules::loaded()
        .iter()
        .filter(|module| module.has_file())
        .flat_map(|module| {
            let file = module.path.display().to_string();
            let build_id = module.build_id_hex();
            module.mappings().map(move |mapping| MemoryMapping {
                start: mapping.start,
                limit: mapping.limit,
                offset: mapping.offset,
                file: file.clone(),
                build_id: build_id.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
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
