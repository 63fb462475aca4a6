//! Running code at a chosen stack depth, to measure stack capture at ~15 and ~40 frames.

use std::hint::black_box;

/// Calls `f` from `extra` nested frames below the caller: each level is a real,
/// `#[inline(never)]` call that keeps its frame (the recursion is not a tail call, so it
/// cannot be turned into a loop).
#[inline(never)]
pub fn nested<R>(extra: usize, f: &mut dyn FnMut() -> R) -> R {
    if extra == 0 {
        return f();
    }
    let result = nested(black_box(extra - 1), f);
    // Work after the call keeps this frame on the stack while `f` runs.
    black_box(extra);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_closure_once() {
        let mut calls = 0;
        let out = nested(10, &mut || {
            calls += 1;
            7
        });
        assert_eq!((out, calls), (7, 1));
    }
}
