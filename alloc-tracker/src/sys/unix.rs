//! What Linux and macOS share: POSIX threads, keys, `mmap`, `clock_gettime`, `write`,
//! `atexit`, `pthread_atfork`, `dladdr`/`dlopen`, signals. Each OS file re-exports these
//! beside its own items (see the table in `sys`).

use super::ThreadMain;
use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Starts a detached thread that runs `M::run(arg)`, with every signal blocked from its
/// first instruction: the mask is set on the calling thread around `pthread_create`, so the
/// new thread inherits it and never runs unmasked (a program that blocks SIGTERM in its
/// threads and takes it with `sigwait` or `signalfd` must never have it delivered to a
/// thread of ours instead). The caller's own mask is restored.
///
/// # Errors
/// When the thread cannot be created (what `pthread_create` returned); `arg` is then still
/// the caller's.
pub(crate) fn spawn_detached<M: ThreadMain>(arg: *mut ()) -> io::Result<()> {
    extern "C" fn entry<M: ThreadMain>(arg: *mut libc::c_void) -> *mut libc::c_void {
        M::run(arg.cast());
        std::ptr::null_mut()
    }
    // SAFETY: `all` and `previous` are writable sigset_t values, initialised by sigfillset
    // and pthread_sigmask before they are read.
    let previous = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        previous
    };
    let mut thread = std::mem::MaybeUninit::<libc::pthread_t>::uninit();
    // SAFETY: `entry::<M>` has the start-routine signature; `thread` is writable.
    let rc = unsafe {
        libc::pthread_create(
            thread.as_mut_ptr(),
            std::ptr::null(),
            entry::<M>,
            arg.cast(),
        )
    };
    // SAFETY: restores the calling thread's own mask, saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: pthread_create succeeded, so it wrote the new thread's id; it is never joined.
    unsafe { libc::pthread_detach(thread.assume_init()) };
    Ok(())
}

/// A number that identifies the calling thread among the live ones.
pub(crate) fn thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions. (`pthread_t` is an integer on glibc and a
    // pointer on musl and macOS: either way, a distinct value per live thread.)
    unsafe { libc::pthread_self() as usize as u64 }
}

/// The key whose destructor calls [`EXIT_CALLBACK`] (`usize::MAX`: none could be made).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);
static EXIT_CALLBACK: OnceLock<fn(usize)> = OnceLock::new();

/// Arranges for `callback(value)` to run when the calling thread ends. One callback per
/// process: the first one given is used for every thread. `value` must not be 0 (a
/// destructor is only called for a non-null value). Whether it was arranged.
pub(crate) fn on_thread_exit(value: usize, callback: fn(usize)) -> bool {
    static CREATE: Once = Once::new();
    CREATE.call_once(|| {
        let _ = EXIT_CALLBACK.set(callback);
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is writable; `at_thread_exit` has the destructor signature.
        if unsafe { libc::pthread_key_create(&mut key, Some(at_thread_exit)) } == 0 {
            EXIT_KEY.store(key as usize, Ordering::Release);
        }
    });
    let key = EXIT_KEY.load(Ordering::Acquire);
    // SAFETY: `key` came from pthread_key_create; the value is an integer in pointer form,
    // never dereferenced. glibc stores the first 32 keys' values without allocating.
    key != usize::MAX
        && unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, value as *const _) } == 0
}

/// The key's destructor: a thread with a value is ending.
extern "C" fn at_thread_exit(value: *mut libc::c_void) {
    if let Some(callback) = EXIT_CALLBACK.get() {
        callback(value as usize);
    }
}

/// `len` zeroed, page-aligned bytes mapped straight from the OS; `None` if it refuses.
pub(crate) fn map_zeroed(len: usize) -> Option<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    (mapped != libc::MAP_FAILED).then_some(mapped.cast())
}

/// Gives back a mapping that [`map_zeroed`] made.
///
/// # Safety
/// `pointer` and `len` are a mapping [`map_zeroed`] returned, and nothing refers to it.
pub(crate) unsafe fn unmap(pointer: *mut u8, len: usize) {
    // SAFETY: forwarded from the caller: the whole mapping is ours and unused.
    unsafe { libc::munmap(pointer.cast(), len) };
}

/// Nanoseconds on the monotonic clock (through the vDSO on Linux: no system call).
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds on `clock`, which must be a clock this system supports.
pub(crate) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the caller names a supported clock.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Writes all of `bytes` to stderr with plain `write(2)` calls, retrying on `EINTR`; gives
/// up silently on any other error (there is nowhere left to report it).
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice; `write` reads at most `bytes.len()` bytes of it.
        let written =
            unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        if written < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if written == 0 {
            return;
        }
        bytes = &bytes[written as usize..];
    }
}

/// The variable `name` of the environment, through `getenv(3)`: std's reader takes a lock
/// that a program thread may hold (mid-`set_var`) while this thread is in the allocator.
pub(crate) fn getenv(name: &str) -> Option<String> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is NUL-terminated; getenv returns NULL or a NUL-terminated string that
    // stays valid while nobody calls setenv for the same name, and it is copied out at once.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: non-null results of getenv are NUL-terminated C strings.
    Some(
        unsafe { CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Runs `hook` at the process's normal exit (return from `main`, `exit` from any thread).
/// Whether it was registered.
pub(crate) fn at_exit(hook: extern "C" fn()) -> bool {
    // SAFETY: `hook` is a function valid for the life of the process (the tracker's module
    // is pinned: see `pin_module_of`).
    unsafe { libc::atexit(hook) == 0 }
}

/// Runs `before` in the forking thread before every `fork`, then `parent` in the parent
/// and `child` in the child after it.
pub(crate) fn at_fork(before: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: the handlers are functions valid for the whole life of the process (the
    // tracker's module is pinned).
    unsafe { libc::pthread_atfork(Some(before), Some(parent), Some(child)) };
}

/// Keeps the object that holds `address` mapped for the life of the process, however
/// often the program `dlclose`s it (nothing changes for an executable, pinned anyway).
pub(crate) fn pin_module_of(address: usize) {
    // SAFETY: `info` is writable; dladdr fills it for an address inside a loaded object.
    // `dli_fname` is a NUL-terminated path that lives as long as the object is loaded,
    // which it is while the caller runs. dlopen with RTLD_NOLOAD only takes a new reference
    // to an object already loaded (never loads one), and RTLD_NODELETE makes that object
    // stay for good; the handle is deliberately never closed.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address as *const libc::c_void, &mut info) != 0 && !info.dli_fname.is_null()
        {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            );
        }
    }
}

/// The descriptor of a listening socket (so that a fork child can close its copy).
#[cfg(feature = "http")]
pub(crate) fn listener_fd(listener: &std::net::TcpListener) -> Option<i32> {
    Some(std::os::fd::AsRawFd::as_raw_fd(listener))
}

/// Closes descriptor `fd`.
///
/// # Safety
/// `fd` is open and nothing else will use it.
#[cfg(feature = "http")]
pub(crate) unsafe fn close_fd(fd: i32) {
    // SAFETY: forwarded from the caller.
    unsafe { libc::close(fd) };
}

/// The signals `ALLOC_TRACKER_SIGNAL` may name: those a program can be sent for its own
/// purposes, whose default action would otherwise end it.
pub(crate) const REPORT_SIGNALS: &[(&str, i32)] = &[
    ("usr1", libc::SIGUSR1),
    ("usr2", libc::SIGUSR2),
    ("hup", libc::SIGHUP),
];

/// The machine's physical memory, in bytes.
pub(crate) fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    u64::try_from(pages)
        .ok()?
        .checked_mul(u64::try_from(page).ok()?)
        .filter(|&bytes| bytes > 0)
}
