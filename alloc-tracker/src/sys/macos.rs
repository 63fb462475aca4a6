//! macOS: POSIX (`unix`) plus the stack bounds from `pthread_get_stackaddr_np` and the
//! gauges from `proc_pidinfo`. Checked by compiling only (no Mac in CI).

pub(crate) use super::unix::{
    at_exit, at_fork, getenv, map_zeroed, monotonic_ns, on_thread_exit, physical_memory,
    pin_module_of, spawn_detached, thread_id, unmap, write_stderr, REPORT_SIGNALS,
};
#[cfg(feature = "http")]
pub(crate) use super::unix::{close_fd, listener_fd};
use super::{Gauges, MallocFigures};
use std::ffi::CStr;
use std::io;
use std::path::Path;

/// Apple's ABI makes frame records mandatory (on x86_64 and arm64 alike): the walk is the
/// natural unwinder here, still checked against DWARF unwinding (see `capture`).
pub(crate) const FRAME_POINTER_WALK: bool = true;

/// The top (highest address, exclusive) of the calling thread's stack: what
/// `pthread_get_stackaddr_np` returns on macOS (the stack grows down from it).
pub(crate) fn stack_top() -> Option<usize> {
    // SAFETY: both calls only read the calling thread's descriptor.
    let (top, size) = unsafe {
        let this = libc::pthread_self();
        (
            libc::pthread_get_stackaddr_np(this) as usize,
            libc::pthread_get_stacksize_np(this),
        )
    };
    (top != 0 && size != 0).then_some(top)
}

/// No coarse clock on the same base: the monotonic clock itself.
pub(crate) use super::unix::monotonic_ns as coarse_monotonic_ns;

/// Names the calling thread (macOS names only the calling thread).
pub(crate) fn name_this_thread(name: &CStr) {
    // SAFETY: `name` is NUL-terminated and shorter than macOS's 64-byte limit.
    unsafe { libc::pthread_setname_np(name.as_ptr()) };
}

/// Both ends of a new pipe, closed on `exec`: `[read, write]` (no `pipe2` on macOS: the
/// flag is set right after, before any thread of ours can `exec`).
pub(crate) fn pipe_cloexec() -> Option<[i32; 2]> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes; fcntl only sets a flag
    // on descriptors just opened, and close releases them on failure.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return None;
        }
        for fd in fds {
            if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
                libc::close(fds[0]);
                libc::close(fds[1]);
                return None;
            }
        }
    }
    Some(fds)
}

/// No `O_TMPFILE` on macOS: the caller writes a named temporary file instead.
pub(crate) fn write_unnamed(_dir: &Path, _bytes: &[u8], _temporary: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// This process's task information (threads, resident bytes).
fn task_info() -> Option<libc::proc_taskinfo> {
    // SAFETY: `info` is a plain struct of integers, valid when zeroed, and proc_pidinfo
    // writes at most `size` bytes into it.
    unsafe {
        let mut info: libc::proc_taskinfo = std::mem::zeroed();
        let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
        let written = libc::proc_pidinfo(
            libc::getpid(),
            libc::PROC_PIDTASKINFO,
            0,
            (&raw mut info).cast(),
            size,
        );
        (written == size).then_some(info)
    }
}

/// Threads, open descriptors and resident bytes, from `proc_pidinfo`.
pub(crate) fn gauges() -> Gauges {
    let task = task_info();
    Gauges {
        threads: task.and_then(|t| u64::try_from(t.pti_threadnum).ok()),
        open_fds: open_fds(),
        rss_bytes: task.map(|t| t.pti_resident_size),
    }
}

/// Open descriptors: `PROC_PIDLISTFDS` lists them (asked first for room, which it
/// overestimates; the second call says how much it filled).
fn open_fds() -> Option<u64> {
    let entry = std::mem::size_of::<libc::proc_fdinfo>();
    // SAFETY: a null buffer asks only for the size needed.
    let room = unsafe {
        libc::proc_pidinfo(
            libc::getpid(),
            libc::PROC_PIDLISTFDS,
            0,
            std::ptr::null_mut(),
            0,
        )
    };
    let room = usize::try_from(room).ok().filter(|&r| r > 0)?;
    let mut list: Vec<libc::proc_fdinfo> = Vec::with_capacity(room / entry + 1);
    let bytes = list.capacity() * entry;
    // SAFETY: the buffer has room for `bytes` bytes, which bounds what proc_pidinfo writes.
    let filled = unsafe {
        libc::proc_pidinfo(
            libc::getpid(),
            libc::PROC_PIDLISTFDS,
            0,
            list.as_mut_ptr().cast(),
            libc::c_int::try_from(bytes).ok()?,
        )
    };
    usize::try_from(filled).ok().map(|f| (f / entry) as u64)
}

/// Resident bytes, from `proc_pidinfo`.
pub(crate) fn rss_bytes() -> Option<u64> {
    task_info().map(|t| t.pti_resident_size)
}

/// No `mallinfo2` here (the malloc zones' statistics do not have its meaning): absent.
pub(crate) fn malloc_figures() -> Option<MallocFigures> {
    None
}

/// No cgroups on macOS: the limit is physical memory (or `ALLOC_TRACKER_LIMIT`).
pub(crate) fn cgroup_files() -> Option<(String, String)> {
    None
}
