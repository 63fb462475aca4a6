//! Windows (checked under Wine): threads through `CreateThread`, the thread-exit callback
//! through fiber-local storage, memory through `VirtualAlloc`, the gauges the process
//! itself reports. No POSIX signals, no `fork`, no frame-pointer walk.

use super::{Gauges, MallocFigures, ThreadMain};
use std::ffi::{c_void, CStr};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use windows_sys::Win32::Foundation::{CloseHandle, HMODULE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::FileSystem::WriteFile;
use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::LibraryLoader::{
    GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_PIN,
};
use windows_sys::Win32::System::Memory::{
    VirtualAlloc, VirtualFree, MEM_COMMIT, MEM_RELEASE, MEM_RESERVE, PAGE_READWRITE,
};
use windows_sys::Win32::System::Performance::{QueryPerformanceCounter, QueryPerformanceFrequency};
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
use windows_sys::Win32::System::Threading::{
    CreateThread, FlsAlloc, FlsSetValue, GetCurrentProcess, GetCurrentProcessId, GetCurrentThread,
    GetCurrentThreadId, SetThreadDescription, FLS_OUT_OF_INDEXES,
};

/// x64 Windows code keeps no frame-pointer chain (and the stack bounds are not looked up):
/// stacks are unwound by `backtrace` (`RtlVirtualUnwind`).
pub(crate) const FRAME_POINTER_WALK: bool = false;

/// Not needed: there is no frame-pointer walk to bound.
pub(crate) fn stack_top() -> Option<usize> {
    None
}

/// Starts a detached thread that runs `M::run(arg)` (there are no signals to block).
///
/// # Errors
/// When the thread cannot be created; `arg` is then still the caller's.
pub(crate) fn spawn_detached<M: ThreadMain>(arg: *mut ()) -> io::Result<()> {
    unsafe extern "system" fn entry<M: ThreadMain>(arg: *mut c_void) -> u32 {
        M::run(arg.cast());
        0
    }
    // SAFETY: `entry::<M>` has the thread-routine signature; default attributes and stack
    // size; the handle is closed at once (the thread is never waited for).
    unsafe {
        let handle = CreateThread(
            std::ptr::null(),
            0,
            Some(entry::<M>),
            arg.cast_const().cast(),
            0,
            std::ptr::null_mut(),
        );
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        CloseHandle(handle);
    }
    Ok(())
}

/// Names the calling thread (what debuggers and Process Explorer show).
pub(crate) fn name_this_thread(name: &CStr) {
    let mut wide = [0u16; 32];
    for (slot, &byte) in wide.iter_mut().zip(name.to_bytes().iter().take(31)) {
        *slot = u16::from(byte);
    }
    // SAFETY: `wide` is a NUL-terminated UTF-16 string (ASCII widened) that outlives the
    // call; the pseudo-handle names the calling thread.
    unsafe { SetThreadDescription(GetCurrentThread(), wide.as_ptr()) };
}

/// A number that identifies the calling thread among the live ones.
pub(crate) fn thread_id() -> u64 {
    // SAFETY: GetCurrentThreadId has no preconditions.
    u64::from(unsafe { GetCurrentThreadId() })
}

/// The fiber-local slot whose callback calls [`EXIT_CALLBACK`].
static EXIT_SLOT: AtomicU32 = AtomicU32::new(FLS_OUT_OF_INDEXES);
static EXIT_CALLBACK: OnceLock<fn(usize)> = OnceLock::new();

/// Arranges for `callback(value)` to run when the calling thread ends (a fiber-local slot's
/// callback: called at thread exit for a non-null value). One callback per process: the
/// first one given is used for every thread. `value` must not be 0. Whether it was arranged.
pub(crate) fn on_thread_exit(value: usize, callback: fn(usize)) -> bool {
    static CREATE: Once = Once::new();
    CREATE.call_once(|| {
        let _ = EXIT_CALLBACK.set(callback);
        // SAFETY: `at_thread_exit` has the callback signature and lives for the process.
        EXIT_SLOT.store(unsafe { FlsAlloc(Some(at_thread_exit)) }, Ordering::Release);
    });
    let slot = EXIT_SLOT.load(Ordering::Acquire);
    // SAFETY: `slot` came from FlsAlloc; the value is an integer in pointer form, never
    // dereferenced.
    slot != FLS_OUT_OF_INDEXES && unsafe { FlsSetValue(slot, value as *const c_void) } != 0
}

/// The slot's callback: a thread with a value is ending.
unsafe extern "system" fn at_thread_exit(value: *const c_void) {
    if let Some(callback) = EXIT_CALLBACK.get() {
        callback(value as usize);
    }
}

/// `len` zeroed, page-aligned bytes committed straight from the OS; `None` if it refuses.
pub(crate) fn map_zeroed(len: usize) -> Option<*mut u8> {
    // SAFETY: a new reservation with no address hint has no preconditions.
    let mapped = unsafe {
        VirtualAlloc(
            std::ptr::null(),
            len,
            MEM_COMMIT | MEM_RESERVE,
            PAGE_READWRITE,
        )
    };
    (!mapped.is_null()).then_some(mapped.cast())
}

/// Gives back memory that [`map_zeroed`] committed.
///
/// # Safety
/// `pointer` is what [`map_zeroed`] returned, and nothing refers to it.
pub(crate) unsafe fn unmap(pointer: *mut u8, _len: usize) {
    // SAFETY: forwarded from the caller: the whole reservation is ours and unused.
    unsafe { VirtualFree(pointer.cast(), 0, MEM_RELEASE) };
}

/// Nanoseconds on the monotonic clock (the performance counter).
pub(crate) fn monotonic_ns() -> u64 {
    static FREQUENCY: AtomicU64 = AtomicU64::new(0);
    let mut frequency = FREQUENCY.load(Ordering::Relaxed);
    if frequency == 0 {
        let mut read = 0i64;
        // SAFETY: writes one integer; never fails on Windows XP and later.
        unsafe { QueryPerformanceFrequency(&mut read) };
        frequency = u64::try_from(read).unwrap_or(1).max(1);
        FREQUENCY.store(frequency, Ordering::Relaxed);
    }
    let mut counter = 0i64;
    // SAFETY: as above.
    unsafe { QueryPerformanceCounter(&mut counter) };
    let ticks = u128::from(u64::try_from(counter).unwrap_or(0));
    u64::try_from(ticks * 1_000_000_000 / u128::from(frequency)).unwrap_or(u64::MAX)
}

/// No coarse clock on the same base: the performance counter itself.
pub(crate) use monotonic_ns as coarse_monotonic_ns;

/// Writes all of `bytes` to the standard error handle, with no lock and no allocation;
/// gives up silently on an error.
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    // SAFETY: GetStdHandle has no preconditions.
    let handle = unsafe { GetStdHandle(STD_ERROR_HANDLE) };
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return;
    }
    while !bytes.is_empty() {
        let chunk = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let mut written = 0u32;
        // SAFETY: `bytes` holds at least `chunk` readable bytes; `written` is writable; a
        // synchronous write (no OVERLAPPED).
        let ok = unsafe {
            WriteFile(
                handle,
                bytes.as_ptr(),
                chunk,
                &mut written,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || written == 0 {
            return;
        }
        bytes = &bytes[written as usize..];
    }
}

/// The variable `name` of the environment (std reads it without a lock on Windows, and
/// sees what `set_var` changed, which the C runtime's `getenv` does not).
pub(crate) fn getenv(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

/// Writes a file with no name: Windows has no such file; the caller writes a named
/// temporary file.
pub(crate) fn write_unnamed(_dir: &Path, _bytes: &[u8], _temporary: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Runs `hook` through the C runtime's `atexit`: on return from `main` only.
/// `std::process::exit` calls `ExitProcess`, which runs no such hook (see the README).
pub(crate) fn at_exit(hook: extern "C" fn()) -> bool {
    // SAFETY: `hook` is a function valid for the life of the process (the module is
    // pinned: see `pin_module_of`).
    unsafe { libc::atexit(hook) == 0 }
}

/// No `fork` on Windows: nothing to hook.
pub(crate) fn at_fork(_before: extern "C" fn(), _parent: extern "C" fn(), _child: extern "C" fn()) {
}

/// Keeps the module (executable or DLL) holding `address` loaded for the life of the
/// process, however often the program calls `FreeLibrary` on it.
pub(crate) fn pin_module_of(address: usize) {
    let mut module: HMODULE = std::ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the name argument is an address inside the module; PIN
    // takes a reference that is never released; `module` is writable.
    unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
            address as *const u16,
            &mut module,
        );
    }
}

/// No `fork` to close sockets in: no descriptor is kept.
#[cfg(feature = "http")]
pub(crate) fn listener_fd(_listener: &std::net::TcpListener) -> Option<i32> {
    None
}

/// Never called: [`listener_fd`] hands out no descriptor here.
///
/// # Safety
/// None needed; `unsafe` to match the other systems.
#[cfg(feature = "http")]
pub(crate) unsafe fn close_fd(_fd: i32) {}

/// No POSIX signals: `ALLOC_TRACKER_SIGNAL` names none.
pub(crate) const REPORT_SIGNALS: &[(&str, i32)] = &[];

/// Threads (a Toolhelp snapshot) and resident bytes (the working set); no descriptor count:
/// a Windows handle count is not one.
pub(crate) fn gauges() -> Gauges {
    Gauges {
        threads: threads(),
        open_fds: None,
        rss_bytes: rss_bytes(),
    }
}

fn threads() -> Option<u64> {
    // SAFETY: GetCurrentProcessId has no preconditions; the snapshot handle is checked,
    // walked with a correctly sized entry, and closed.
    unsafe {
        let me = GetCurrentProcessId();
        let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
        if snapshot == INVALID_HANDLE_VALUE {
            return None;
        }
        let mut entry: THREADENTRY32 = std::mem::zeroed();
        entry.dwSize = std::mem::size_of::<THREADENTRY32>() as u32;
        let mut count = 0u64;
        let mut more = Thread32First(snapshot, &mut entry) != 0;
        while more {
            count += u64::from(entry.th32OwnerProcessID == me);
            more = Thread32Next(snapshot, &mut entry) != 0;
        }
        CloseHandle(snapshot);
        (count > 0).then_some(count)
    }
}

/// Resident bytes: the process's working set.
pub(crate) fn rss_bytes() -> Option<u64> {
    // SAFETY: `counters` is a plain struct, writable, whose size is passed along; the
    // pseudo-handle names this process.
    unsafe {
        let mut counters: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        (K32GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, size) != 0)
            .then_some(counters.WorkingSetSize as u64)
    }
}

/// No `mallinfo2` (the process heap has no figures of that meaning): absent.
pub(crate) fn malloc_figures() -> Option<MallocFigures> {
    None
}

/// The machine's physical memory, in bytes.
pub(crate) fn physical_memory() -> Option<u64> {
    // SAFETY: `status` is a plain struct whose length field is set as the call requires.
    unsafe {
        let mut status: MEMORYSTATUSEX = std::mem::zeroed();
        status.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
        (GlobalMemoryStatusEx(&mut status) != 0 && status.ullTotalPhys > 0)
            .then_some(status.ullTotalPhys)
    }
}

/// No cgroups on Windows (and `/proc` paths must never be read here: under Wine they are
/// the Linux host's).
pub(crate) fn cgroup_files() -> Option<(String, String)> {
    None
}
