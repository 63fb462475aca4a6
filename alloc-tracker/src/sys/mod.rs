//! The operating system, in one place: every call the tracker makes to it goes through
//! here, and each supported OS provides the whole contract below in its own file, so a
//! missing piece fails to compile by name. Everything above this module is the same code
//! on every OS. (Two parts of the tracker exist only where the binary format allows them,
//! each switched at its own root: the ELF symbolizer in `symbols`, the `.eh_frame`
//! unwinder in `capture::table`.)
//!
//! | item | what it does | Linux (glibc, musl) | macOS | Windows |
//! |---|---|---|---|---|
//! | [`FRAME_POINTER_WALK`], [`stack_top`] | whether the frame-pointer walk can run; this thread's stack top, the walk's bound | yes; `pthread_getattr_np` | yes (frame pointers are Apple's ABI); `pthread_get_stackaddr_np` | no (x64 Windows keeps no frame-pointer chain: `backtrace` unwinds); none |
//! | [`spawn_detached`] | a detached thread running a [`ThreadMain`], every signal blocked from its first instruction | `pthread_create` inside `pthread_sigmask` | as Linux | `CreateThread` (no signals) |
//! | [`name_this_thread`], [`thread_id`] | the name debuggers show; a number unique among live threads | `pthread_setname_np`, `pthread_self` | as Linux (own-thread `pthread_setname_np`) | `SetThreadDescription`, `GetCurrentThreadId` |
//! | [`on_thread_exit`] | one callback per process, called with a thread's value when it ends | `pthread_key_create` destructor | as Linux | `FlsAlloc` callback |
//! | [`map_zeroed`], [`unmap`] | zeroed, page-aligned memory straight from the OS (not through the global allocator) | `mmap` anonymous | as Linux | `VirtualAlloc` |
//! | [`monotonic_ns`] | a monotonic clock, no lock, no allocation | `clock_gettime(CLOCK_MONOTONIC)` | as Linux | `QueryPerformanceCounter` |
//! | [`coarse_monotonic_ns`] | the same clock to within a few milliseconds, cheaper | `clock_gettime(CLOCK_MONOTONIC_COARSE)` | [`monotonic_ns`] | [`monotonic_ns`] |
//! | [`write_stderr`] | all of the bytes to stderr, no lock, no allocation | `write(2)` | as Linux | `WriteFile` on the standard error handle |
//! | [`getenv`] | an environment variable | `getenv(3)` (std's takes a lock a program thread may hold) | as Linux | `std::env::var_os` (takes no lock there) |
//! | [`write_unnamed`] | a file with no name until complete, linked at a temporary name | `O_TMPFILE` + `linkat` | unsupported (the caller writes a named file) | unsupported |
//! | [`at_exit`] | a hook at the process's normal exit | `atexit` | as Linux | the C runtime's `atexit`: runs on return from `main`, **not** on `std::process::exit` (`ExitProcess`) |
//! | [`at_fork`] | hooks around `fork` | `pthread_atfork` | as Linux | nothing (no `fork`) |
//! | [`pin_module_of`] | keeps the module holding an address loaded for good | `dladdr` + `dlopen(RTLD_NOLOAD \| RTLD_NODELETE)` | as Linux | `GetModuleHandleExW(…_PIN)` |
//! | `listener_fd`, `close_fd` (with the `http` feature) | a listening socket's descriptor, to close it in a fork child | the socket's fd; `close` | as Linux | none (no `fork`) |
//! | [`REPORT_SIGNALS`] | the signals `ALLOC_TRACKER_SIGNAL` may name | `SIGUSR1`, `SIGUSR2`, `SIGHUP` | as Linux | none (no POSIX signals) |
//! | [`pipe_cloexec`] (Unix only, for `signals`) | a pipe closed on `exec` | `pipe2(O_CLOEXEC)` | `pipe` + `FD_CLOEXEC` | — |
//! | [`gauges`], [`rss_bytes`] | threads, open descriptors, resident bytes; `None` where unknown, never a guess | `/proc/self` | `proc_pidinfo` | Toolhelp threads, working set; no descriptor count (a handle count is not one) |
//! | [`malloc_figures`] | the C allocator's own figures | `mallinfo2` on glibc; none on musl | none | none |
//! | [`physical_memory`], [`cgroup_files`] | the machine's memory; the memory cgroup files (`/proc/self/cgroup`, `mountinfo`) | `sysconf`; yes | `sysconf`; none | `GlobalMemoryStatusEx`; none |
//!
//! A port to another OS adds a file here providing all of it; until then the crate does
//! not build there, with an error naming this module.

#[cfg(unix)]
mod unix;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
compile_error!(
    "alloc-tracker supports Linux, macOS and Windows. A port to this OS provides, in \
     alloc-tracker/src/sys/: stack bounds (or no frame-pointer walk), detached threads with \
     signals blocked, a thread-exit callback, zeroed page mappings, a monotonic clock, \
     unlocked stderr writes, an exit hook, fork hooks, module pinning and the process \
     gauges (see the table in src/sys/mod.rs)."
);

#[cfg(unix)]
pub(crate) use os::pipe_cloexec;
pub(crate) use os::{
    at_exit, at_fork, cgroup_files, coarse_monotonic_ns, gauges, getenv, malloc_figures,
    map_zeroed, monotonic_ns, name_this_thread, on_thread_exit, physical_memory, pin_module_of,
    rss_bytes, spawn_detached, stack_top, thread_id, unmap, write_stderr, write_unnamed,
    FRAME_POINTER_WALK, REPORT_SIGNALS,
};
#[cfg(feature = "http")]
pub(crate) use os::{close_fd, listener_fd};

/// The body of a thread started by [`spawn_detached`]: a plain function of one pointer,
/// called on the new thread before anything else runs there.
pub(crate) trait ThreadMain {
    /// Runs the thread; `arg` is what [`spawn_detached`] was given.
    fn run(arg: *mut ());
}

/// Process gauges as the OS tells them; `None` where it does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Gauges {
    /// Threads of the process.
    pub(crate) threads: Option<u64>,
    /// Open file descriptors.
    pub(crate) open_fds: Option<u64>,
    /// Resident memory, in bytes.
    pub(crate) rss_bytes: Option<u64>,
}

/// The C allocator's own figures (glibc's `mallinfo2`), in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MallocFigures {
    /// Bytes of the main arena (`arena`).
    pub(crate) arena: u64,
    /// Bytes in chunks mapped on their own (`hblkhd`).
    pub(crate) mmap: u64,
    /// Bytes handed out, in the arena (`uordblks`).
    pub(crate) arena_in_use: u64,
    /// Bytes free in the arena (`fordblks`).
    pub(crate) free: u64,
}
