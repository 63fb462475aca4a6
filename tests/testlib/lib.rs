//! A small shared library for the unwinding tests, built by `build.rs` without frame
//! pointers and loaded with `dlopen`: it calls back into the test from frames of its own.
#![no_std]

use core::ffi::c_void;
use core::hint::black_box;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Calls `callback(context)` from `depth + 1` nested frames of this library; returns `depth`.
#[no_mangle]
pub extern "C" fn testlib_nest(
    depth: u32,
    callback: extern "C" fn(*mut c_void),
    context: *mut c_void,
) -> u32 {
    nest(black_box(depth), callback, context)
}

#[inline(never)]
fn nest(depth: u32, callback: extern "C" fn(*mut c_void), context: *mut c_void) -> u32 {
    if depth == 0 {
        callback(context);
        return black_box(0);
    }
    // Not a tail call: the result is used after the call returns.
    black_box(nest(black_box(depth - 1), callback, context) + 1)
}
