//! The "was this pointer sampled?" filter every free consults before anything else.
//!
//! A counting filter: one saturating 8-bit counter per bucket of addresses, raised when a
//! sampled block is handed out and lowered when its sample is removed. A zero counter proves
//! the pointer was not sampled — a few instructions and one byte load, no lock — and only a
//! non-zero one sends the free to the exact sample table. A counter that reaches 255 sticks
//! there until the next rebuild (it can no longer prove anything, but it never undercounts).
//!
//! **It grows with the samples**, so the share of frees that reach the locked table stays
//! small however large the heap: it keeps at least [`BUCKETS_PER_SAMPLE`] buckets per live
//! sample (at most one free in 32 of unsampled blocks then finds its counter non-zero), from
//! 64 Ki buckets (64 KiB, static) up. When the live samples outgrow it, the sample table
//! (`samples`), holding every one of its shard locks, has [`grow`] count them into a table
//! four times larger and publishes it; frees still reading the old one meanwhile get right
//! answers (nothing changes while every lock is held). It never shrinks, and old tables are
//! never freed (a free may still be reading one): they add up to a third of the current
//! one. The counters change only under the lock of the pointer's sample shard (`samples`),
//! with atomic read-modify-writes since other shards change other counters at once.
//!
//! Unlike serving sampled blocks page-aligned (jemalloc's trick), this keeps every block's
//! layout exactly what the program asked for and costs nothing per block, and works in exact
//! mode, where every block is sampled.

use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// Buckets the filter keeps per live sample, at least (the first table excepted).
pub(crate) const BUCKETS_PER_SAMPLE: usize = 32;
const FIRST_BITS: u32 = 16;
const STUCK: u8 = u8::MAX;
/// The low bits of [`CURRENT`] hold the table's size as a bit count; tables are aligned to
/// at least 64 bytes so that these bits are free.
const BITS_MASK: usize = 63;

/// The first table, static (aligned so that [`CURRENT`] can carry its size in the low bits).
#[repr(align(64))]
#[allow(dead_code, reason = "its counters are read through CURRENT's pointer")]
struct FirstTable([AtomicU8; 1 << FIRST_BITS]);
static FIRST: FirstTable = FirstTable([const { AtomicU8::new(0) }; 1 << FIRST_BITS]);

/// The table in force: its address, with its size (log2 of its buckets) added in the low
/// bits (one load reads both, so they always match).
static CURRENT: AtomicPtr<u8> =
    AtomicPtr::new((&FIRST as *const FirstTable as *mut u8).wrapping_add(FIRST_BITS as usize));

/// The table in force, as (first counter, log2 of its size).
#[inline(always)]
fn current() -> (*const AtomicU8, u32) {
    let tagged = CURRENT.load(Ordering::Acquire);
    let bits = tagged as usize & BITS_MASK;
    (
        tagged.wrapping_sub(bits).cast::<AtomicU8>().cast_const(),
        bits as u32,
    )
}

/// The buckets of the table in force.
pub(crate) fn buckets() -> usize {
    1 << current().1
}

/// The counter of `ptr` in a table of `1 << bits` counters at `base`.
#[inline(always)]
fn bucket(base: *const AtomicU8, bits: u32, ptr: *const u8) -> &'static AtomicU8 {
    // Multiplicative hashing: the high bits of the product.
    let index = (ptr as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits);
    // SAFETY: `base` is the first of `1 << bits` counters of a table that is never freed,
    // and `index < 1 << bits`.
    unsafe { &*base.add(index as usize) }
}

/// `false` proves `ptr` holds no sample; `true` means it may.
#[inline(always)]
pub(crate) fn may_be_sampled(ptr: *const u8) -> bool {
    let (base, bits) = current();
    bucket(base, bits, ptr).load(Ordering::Relaxed) != 0
}

/// Notes a sample at `ptr`. The caller holds the lock of `ptr`'s sample shard, before the
/// block is handed to the program.
pub(crate) fn add(ptr: *const u8) {
    let (base, bits) = current();
    let _ = bucket(base, bits, ptr).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
        (count != STUCK).then(|| count + 1)
    });
}

/// Forgets a sample at `ptr`. The caller holds the lock of `ptr`'s sample shard, and
/// removed a sample that [`add`] noted.
pub(crate) fn remove(ptr: *const u8) {
    let (base, bits) = current();
    let _ = bucket(base, bits, ptr).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
        (count != STUCK && count != 0).then(|| count - 1)
    });
}

/// Replaces the table with one of about `4 × BUCKETS_PER_SAMPLE × live` counters holding
/// `pointers` (every live sample), and returns the bytes it took. The caller holds every
/// sample shard's lock, so nothing else changes the filter meanwhile; `None` (and the old
/// table kept) when memory is short.
pub(crate) fn grow(live: usize, pointers: impl Iterator<Item = usize>) -> Option<usize> {
    let wanted = live
        .saturating_mul(4 * BUCKETS_PER_SAMPLE)
        .checked_next_power_of_two()?;
    let bits = wanted.trailing_zeros().max(current().1 + 1);
    if bits > 40 {
        return None;
    }
    let bytes = 1usize << bits;
    // Zeroed bytes are valid counters, and the mapping is page-aligned (so its low bits
    // are free).
    let mapped = crate::sys::map_zeroed(bytes)?;
    let base = mapped.cast::<AtomicU8>().cast_const();
    for ptr in pointers {
        let counter = bucket(base, bits, ptr as *const u8);
        let count = counter.load(Ordering::Relaxed);
        if count != STUCK {
            counter.store(count + 1, Ordering::Relaxed);
        }
    }
    CURRENT.store(
        base.cast::<u8>().cast_mut().wrapping_add(bits as usize),
        Ordering::Release,
    );
    Some(bytes)
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
        // A table of its own: the process's filter is shared with the other tests.
        let table: Vec<AtomicU8> = (0..1 << FIRST_BITS).map(|_| AtomicU8::new(0)).collect();
        let (base, bits) = (table.as_ptr(), FIRST_BITS);
        let counter = |i: usize| bucket(base, bits, std::ptr::without_provenance(i * 16));
        for i in 0..n {
            let _ = counter(i).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c != STUCK).then(|| c + 1)
            });
        }
        for i in 0..n / 2 {
            let _ = counter(i).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c != STUCK && c != 0).then(|| c - 1)
            });
        }
        assert!((n / 2..n).all(|i| counter(i).load(Ordering::Relaxed) != 0));
    }

    #[test]
    fn the_table_in_force_is_read_whole() {
        let (base, bits) = current();
        assert!((FIRST_BITS..=40).contains(&bits));
        assert_eq!(base as usize % 64, 0);
        assert_eq!(buckets(), 1 << bits);
    }
}
