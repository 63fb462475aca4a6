//! Linux, glibc and musl: POSIX (`unix`) plus `/proc`, `pthread_getattr_np`, `pipe2`,
//! `O_TMPFILE`, and glibc's `mallinfo2`.

pub(crate) use super::unix::{
    at_exit, at_fork, getenv, map_zeroed, monotonic_ns, on_thread_exit, physical_memory,
    pin_module_of, spawn_detached, thread_id, unmap, write_stderr, REPORT_SIGNALS,
};
#[cfg(feature = "http")]
pub(crate) use super::unix::{close_fd, listener_fd};
use super::{Gauges, MallocFigures};
use std::ffi::CStr;
use std::io::{self, Write};
use std::path::Path;

/// Every frame keeps a frame record where the code was built with frame pointers; the
/// walk is checked against the unwind tables (see `capture`).
pub(crate) const FRAME_POINTER_WALK: bool = true;

/// The top (highest address, exclusive) of the calling thread's stack. Works for the main
/// thread too (glibc and musl both find its bounds without allocating through us).
pub(crate) fn stack_top() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before use and destroyed after;
    // the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut base: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| base as usize + size)
    }
}

/// Nanoseconds on the monotonic clock to within a few milliseconds (`CLOCK_MONOTONIC_COARSE`,
/// on the same base as [`monotonic_ns`]: a few nanoseconds to read instead of tens).
pub(crate) fn coarse_monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32.
    super::unix::clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// Names the calling thread (at most 15 bytes are kept).
pub(crate) fn name_this_thread(name: &CStr) {
    // SAFETY: `name` is NUL-terminated; Linux truncates nothing and refuses (harmlessly) a
    // name longer than 15 bytes.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
}

/// Both ends of a new pipe, closed on `exec`: `[read, write]`.
pub(crate) fn pipe_cloexec() -> Option<[i32; 2]> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    (unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0).then_some(fds)
}

/// Writes `bytes` to an unnamed file in `dir` (`O_TMPFILE`) and links it as `temporary`
/// once complete.
pub(crate) fn write_unnamed(dir: &Path, bytes: &[u8], temporary: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)?;
    (&file).write_all(bytes)?;
    // The unnamed file gets a name through its /proc entry (no privilege needed, unlike
    // `linkat` with AT_EMPTY_PATH).
    let source = std::ffi::CString::new(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))?;
    let target = std::ffi::CString::new(temporary.as_os_str().as_bytes())?;
    let _ = std::fs::remove_file(temporary);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Threads, open descriptors and resident bytes, from `/proc/self`.
pub(crate) fn gauges() -> Gauges {
    Gauges {
        threads: threads(),
        open_fds: open_fds(),
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

/// Resident set size in bytes, from `/proc/self/statm` (a few microseconds).
pub(crate) fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    pages.checked_mul(page_size)
}

/// glibc's `mallinfo2`: the C allocator's own figures.
#[cfg(target_env = "gnu")]
pub(crate) fn malloc_figures() -> Option<MallocFigures> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct (glibc 2.33 and
    // later, which every supported glibc target has).
    let info = unsafe { libc::mallinfo2() };
    Some(MallocFigures {
        arena: info.arena as u64,
        mmap: info.hblkhd as u64,
        arena_in_use: info.uordblks as u64,
        free: info.fordblks as u64,
    })
}

/// musl has no `mallinfo2` (nor a `mallinfo` with figures): absent, never wrong.
#[cfg(not(target_env = "gnu"))]
pub(crate) fn malloc_figures() -> Option<MallocFigures> {
    None
}

/// The texts of `/proc/self/cgroup` and `/proc/self/mountinfo`, which say where this
/// process's memory cgroups are.
pub(crate) fn cgroup_files() -> Option<(String, String)> {
    Some((
        std::fs::read_to_string("/proc/self/cgroup").ok()?,
        std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    ))
}
