//! A host that loads a plugin with the tracker inside (`tracked-plugin`, a cdylib), calls it,
//! unloads it, and goes on: `plugin_host <path to libtracked_plugin.so> exit|sigterm`.
//!
//! The host itself has no tracker (its allocator is the system's): only the plugin's
//! allocations are tracked. After `dlclose`, the tracker's code must still be mapped —
//! the exit report runs from an `atexit` hook, SIGTERM reaches its handler, its watcher
//! thread is still running — or the host crashes. `exit`: prints `unloaded`, then
//! `clean shutdown`, returns 0. `sigterm`: prints `ready` once unloaded and waits for
//! SIGTERM, which it does not handle.

use services::say;
use std::ffi::CString;
use std::time::Duration;

/// Runs the plugin's `plugin_keep(48)` (passed as the argument) on a host thread.
extern "C" fn call_plugin(keep: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: the argument is the plugin's `extern "C" fn(usize)`, passed by `main`.
    let keep: extern "C" fn(usize) = unsafe { std::mem::transmute(keep) };
    keep(48);
    std::ptr::null_mut()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(mode)) = (args.next(), args.next()) else {
        eprintln!("usage: plugin_host <libtracked_plugin.so> exit|sigterm");
        std::process::exit(2);
    };
    let path = CString::new(path).expect("a path without NUL");
    // SAFETY: `path` is a NUL-terminated path; the symbol is looked up by a NUL-terminated
    // name and has the signature the plugin exports (`extern "C" fn(usize)`); the handle is
    // closed once, after the last call.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!handle.is_null(), "dlopen failed");
        let symbol = libc::dlsym(handle, c"plugin_keep".as_ptr());
        assert!(!symbol.is_null(), "no plugin_keep");
        let keep: extern "C" fn(usize) = std::mem::transmute(symbol);
        // The plugin's code runs on a thread of the host's that ends before `dlclose`: the
        // thread-local destructors Rust registered there are gone with it, and nothing
        // else holds the library, so `dlclose` unmaps it unless it pinned itself.
        // (`pthread_t` is an integer on glibc, a pointer on musl: written before it is read.)
        let mut thread = std::mem::MaybeUninit::<libc::pthread_t>::uninit();
        let started = libc::pthread_create(
            thread.as_mut_ptr(),
            std::ptr::null(),
            call_plugin,
            keep as *mut libc::c_void,
        );
        assert_eq!(started, 0, "pthread_create failed");
        assert_eq!(
            libc::pthread_join(thread.assume_init(), std::ptr::null_mut()),
            0
        );
        assert_eq!(libc::dlclose(handle), 0, "dlclose failed");
    }
    let mapped = std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .contains("libtracked_plugin");
    say!("unloaded (still mapped: {mapped})");
    // The host goes on with its own work (its own allocations are not the plugin's).
    let work: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
    std::hint::black_box(&work);
    match mode.as_str() {
        "exit" => say!("clean shutdown"),
        _ => {
            say!("ready");
            std::thread::sleep(Duration::from_secs(60));
            say!("no signal came");
            std::process::exit(3);
        }
    }
}
