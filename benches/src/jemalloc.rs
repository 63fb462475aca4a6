//! jemalloc's profiling settings, read back with `mallctl`, so that a result says whether
//! jemalloc's profiler was really on (`wl-jemalloc-prof`) or really absent (`wl-jemalloc`).

use std::ffi::{c_void, CStr};

/// Reads the `mallctl` value `name` into a `T`; `None` when jemalloc does not know it (e.g.
/// `opt.prof` in a build without profiling).
fn read<T: Copy + Default>(name: &CStr) -> Option<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>();
    // SAFETY: `name` is NUL-terminated; `value` is a valid out-buffer of `len` bytes, and `T`
    // is the type jemalloc documents for each name read here (bool or size_t); nothing is
    // written to jemalloc (null new value, length 0).
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (status == 0 && len == std::mem::size_of::<T>()).then_some(value)
}

/// `config.prof` (built with profiling), `opt.prof` (profiling enabled), `prof.active` and
/// `opt.lg_prof_sample` (log2 of the mean bytes between samples), as JSON (`null` where
/// jemalloc has no such setting).
pub fn prof_settings() -> serde_json::Value {
    serde_json::json!({
        "config.prof": read::<bool>(c"config.prof"),
        "opt.prof": read::<bool>(c"opt.prof"),
        "prof.active": read::<bool>(c"prof.active"),
        "opt.lg_prof_sample": read::<usize>(c"opt.lg_prof_sample"),
    })
}
