//! The "was this pointer sampled?" filter every free consults before anything else.
//!
//! A counting filter: one saturating 8-bit counter per bucket of addresses, raised when a
//! sampled block is handed out and lowered when its sample is removed. A zero counter proves
//! the pointer was not sampled — one relaxed byte load, no lock — and only a non-zero one
//! sends the free to the exact sample table. A counter that reaches 255 sticks there
//! (it can no longer prove anything, but it never undercounts).
//!
//! Unlike serving sampled blocks page-aligned (jemalloc's trick), this keeps every block's
//! layout exactly what the program asked for, costs no memory per sample, and works in exact
//! mode, where every block is sampled.

use std::sync::atomic::{AtomicU8, Ordering};

const BUCKET_BITS: u32 = 16;
const BUCKETS: usize = 1 << BUCKET_BITS;
const STUCK: u8 = u8::MAX;

static COUNTS: [AtomicU8; BUCKETS] = [const { AtomicU8::new(0) }; BUCKETS];

#[inline(always)]
fn bucket(ptr: *const u8) -> &'static AtomicU8 {
    // Blocks are at least 8-aligned: drop the low bits, then multiplicative hashing.
    let hash = ((ptr as usize as u64) >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    &COUNTS[(hash >> (64 - BUCKET_BITS)) as usize]
}

/// `false` proves `ptr` holds no sample; `true` means it may.
#[inline(always)]
pub(crate) fn may_be_sampled(ptr: *const u8) -> bool {
    bucket(ptr).load(Ordering::Relaxed) != 0
}

/// Notes a sample at `ptr`. Call before the block is handed to the program.
pub(crate) fn add(ptr: *const u8) {
    let _ = bucket(ptr).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
        (count != STUCK).then(|| count + 1)
    });
}

/// Forgets a sample at `ptr`. Call only after removing a sample that [`add`] noted.
pub(crate) fn remove(ptr: *const u8) {
    let _ = bucket(ptr).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
        (count != STUCK && count != 0).then(|| count - 1)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_forgets_a_sample() {
        // Many pointers share buckets; the counter must stay non-zero while any is present.
        // (Fewer under Miri, which checks the atomics for undefined behaviour, not the
        // sharing, and interprets each access slowly.)
        let n: usize = if cfg!(miri) { 200 } else { 300_000 };
        let ptrs: Vec<*const u8> = (0..n)
            .map(|i| std::ptr::without_provenance(i * 16))
            .collect();
        let (gone, kept) = ptrs.split_at(n / 2);
        for &p in &ptrs {
            add(p);
        }
        for &p in gone {
            remove(p);
        }
        assert!(kept.iter().all(|&p| may_be_sampled(p)));
        for &p in kept {
            remove(p);
        }
    }
}
