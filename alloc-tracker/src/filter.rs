//! The "was this pointer sampled?" filter every free consults before anything else.
//!
//! A counting filter: one saturating 8-bit counter per bucket of addresses, raised when a
//! sampled block is handed out and lowered when its sample is removed. A zero counter proves
//! the pointer was not sampled — a few instructions and one byte load, no lock — and only a
//! non-zero one sends the free to the exact sample table. A counter that reaches [`STICK`]
//! (128) sticks until the next rebuild (it can no longer prove anything, but it never
//! undercounts): see [`raise`].
//!
//! **It grows with the samples**, so the share of frees that reach the locked table stays
//! small however large the heap: it keeps at least [`BUCKETS_PER_SAMPLE`] buckets per live
//! sample (at most one free in 32 of unsampled blocks then finds its counter non-zero), from
//! 64 Ki buckets (64 KiB, static) up. When the live samples outgrow it, the sample table
//! (`samples`), holding every one of its shard locks, has [`grow`] count them into a table
//! four times larger and publishes it, then sets every counter shard's copy of it (each
//! thread's free reads the table from its own shard, a cache line it touches anyway: see
//! `counters::follow_filter`); frees still reading the old one meanwhile get right answers
//! (nothing changes while every lock is held). It never shrinks, and old tables are
//! never freed (a free may still be reading one): they add up to a third of the current
//! one. The counters change only under the lock of the pointer's sample shard (`samples`),
//! with an atomic add or subtract: pointers of different sample shards share buckets, so
//! up to one thread per sample shard may change the same counter at once.
//!
//! Unlike serving sampled blocks page-aligned (jemalloc's trick), this keeps every block's
//! layout exactly what the program asked for and costs nothing per block, and works in exact
//! mode, where every block is sampled.

use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// Buckets the filter keeps per live sample, at least (the first table excepted).
pub(crate) const BUCKETS_PER_SAMPLE: usize = 32;
const FIRST_BITS: u32 = 16;
/// A counter at or above this is stuck: it no longer counts, and stays non-zero until the
/// next rebuild.
const STICK: u8 = 128;
/// The value an add that finds its counter stuck stores: far enough from both [`STICK`] and
/// 255 that the adds and subtracts other threads have decided on meanwhile (at most one per
/// other sample shard) can neither wrap it nor bring it under [`STICK`].
const PARK: u8 = 192;
/// The value of the counters of [`proves_nothing`]'s table, never written.
const STUCK: u8 = u8::MAX;
/// The most threads that may change one counter at once: one per lock that guards
/// counter changes (the sample table asserts that it has no more shard locks than this).
pub(crate) const CHANGERS: usize = 64;
const _: () = assert!(
    STICK as usize - 1 + CHANGERS <= u8::MAX as usize
        && PARK as usize + (CHANGERS - 1) <= u8::MAX as usize
        && PARK as usize - (CHANGERS - 1) >= STICK as usize
);
/// The low bits of a [`Tagged`] table hold its hash shift; tables are aligned to at least
/// 64 bytes so that these bits are free.
const SHIFT_MASK: usize = 63;

/// A table with its hash shift (`64 − log2 of its buckets`) added in the low bits: one
/// word, so that a reader always gets a size that matches the table. Each counter shard
/// keeps a copy of the table in force (see `counters`), so that a free reads it from a
/// cache line it touches anyway.
pub(crate) type Tagged = *mut u8;

/// The first table, static (aligned so that [`CURRENT`] can carry its shift in the low
/// bits).
#[repr(align(64))]
#[allow(dead_code, reason = "its counters are read through tagged pointers")]
struct Table<const N: usize>([AtomicU8; N]);
static FIRST: Table<{ 1 << FIRST_BITS }> = Table([const { AtomicU8::new(0) }; 1 << FIRST_BITS]);
/// Two counters stuck at "may be sampled", never written: the table of threads off the
/// fast path, whose every free must take the slow path.
static ALL_STUCK: Table<2> = Table([const { AtomicU8::new(STUCK) }; 2]);

/// The table in force.
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(
    (&FIRST as *const Table<{ 1 << FIRST_BITS }> as *mut u8).wrapping_add(64 - FIRST_BITS as usize),
);

/// The table in force, tagged. Read with the strongest ordering: a counter shard that
/// copies it (`counters::follow_filter`) re-reads it to catch a growth in between.
pub(crate) fn in_force() -> Tagged {
    CURRENT.load(Ordering::SeqCst)
}

/// A table that proves nothing (every pointer "may be sampled"): for the stand-in shard of
/// threads off the fast path.
pub(crate) const fn proves_nothing() -> Tagged {
    (&ALL_STUCK as *const Table<2> as *mut u8).wrapping_add(63)
}

/// The table in force, as (first counter, log2 of its size).
fn current() -> (*const AtomicU8, u32) {
    let (base, shift) = untag(in_force());
    (base, 64 - shift)
}

/// A tagged table as (first counter, hash shift).
#[inline(always)]
fn untag(tagged: Tagged) -> (*const AtomicU8, u32) {
    let shift = tagged as usize & SHIFT_MASK;
    (
        tagged.wrapping_sub(shift).cast::<AtomicU8>().cast_const(),
        shift as u32,
    )
}

/// The buckets of the free filter's table in force (it grows with the live samples).
pub fn buckets() -> usize {
    1 << current().1
}

/// The counter of `ptr` in a table of `1 << (64 - shift)` counters at `base`.
#[inline(always)]
fn bucket_at_shift(base: *const AtomicU8, shift: u32, ptr: *const u8) -> &'static AtomicU8 {
    // Multiplicative hashing: the high bits of the product.
    let index = (ptr as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift;
    // SAFETY: `base` is the first of `1 << (64 - shift)` counters of a table that is never
    // freed, and `index` has `64 - shift` bits.
    unsafe { &*base.add(index as usize) }
}

/// The counter of `ptr` in a table of `1 << bits` counters at `base`.
#[inline(always)]
fn bucket(base: *const AtomicU8, bits: u32, ptr: *const u8) -> &'static AtomicU8 {
    bucket_at_shift(base, 64 - bits, ptr)
}

/// `false` proves `ptr` holds no sample, by the table `tagged` (the table in force, or one
/// in force a moment ago: see `counters::follow_filter`); `true` means it may.
#[inline(always)]
pub(crate) fn may_hold(tagged: Tagged, ptr: *const u8) -> bool {
    let (base, shift) = untag(tagged);
    bucket_at_shift(base, shift, ptr).load(Ordering::Relaxed) != 0
}

/// `false` proves `ptr` holds no sample; `true` means it may.
pub(crate) fn may_be_sampled(ptr: *const u8) -> bool {
    may_hold(in_force(), ptr)
}

/// Counts one more sample at `counter`, unless it is stuck. The caller holds a sample
/// shard's lock, so at most [`CHANGERS`] threads (this one included) change the counter at
/// once; one load and one atomic add, no compare-and-swap loop. Why it never undercounts:
/// - while no add found it stuck, every add and subtract was applied, so it counts exactly;
///   the adds that pass the test (they saw it under [`STICK`]) can take it no higher than
///   `STICK − 1 + CHANGERS`, which does not wrap;
/// - an add that finds it stuck does not count its sample but stores [`PARK`] before its
///   block is handed out; from then on a subtract applies only if its test saw the counter
///   under [`STICK`], and only the ≤ `CHANGERS − 1` subtracts decided before the store can
///   (each later test sees it stuck), so it stays at least `PARK − (CHANGERS − 1) ≥ STICK`:
///   stuck for good, never zero. The adds decided before the store take it at most to
///   `PARK + CHANGERS − 1 ≤ 255`.
#[inline(always)]
fn raise(counter: &AtomicU8) {
    if counter.load(Ordering::Relaxed) < STICK {
        counter.fetch_add(1, Ordering::Relaxed);
    } else {
        counter.store(PARK, Ordering::Relaxed);
    }
}

/// Counts one sample fewer at `counter`, unless it is stuck (see [`raise`]). The caller
/// holds a sample shard's lock and removes a sample that [`raise`] was called for.
#[inline(always)]
fn lower(counter: &AtomicU8) {
    if counter.load(Ordering::Relaxed) < STICK {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Notes a sample at `ptr`. The caller holds the lock of `ptr`'s sample shard, before the
/// block is handed to the program.
pub(crate) fn add(ptr: *const u8) {
    let (base, bits) = current();
    raise(bucket(base, bits, ptr));
}

/// Forgets a sample at `ptr`. The caller holds the lock of `ptr`'s sample shard, and
/// removed a sample that [`add`] noted.
pub(crate) fn remove(ptr: *const u8) {
    let (base, bits) = current();
    lower(bucket(base, bits, ptr));
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
        // Nothing else changes the new table yet: the single-threaded form of `raise`.
        let counter = bucket(base, bits, ptr as *const u8);
        let count = counter.load(Ordering::Relaxed);
        counter.store(
            if count < STICK { count + 1 } else { PARK },
            Ordering::Relaxed,
        );
    }
    CURRENT.store(
        base.cast::<u8>()
            .cast_mut()
            .wrapping_add(64 - bits as usize),
        Ordering::SeqCst,
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
        (0..n).for_each(|i| raise(counter(i)));
        (0..n / 2).for_each(|i| lower(counter(i)));
        assert!((n / 2..n).all(|i| counter(i).load(Ordering::Relaxed) != 0));
    }

    /// A counter that goes past [`STICK`] sticks: more samples than a byte counts, then
    /// all but one removed, leave it non-zero.
    #[test]
    fn a_full_counter_sticks() {
        let counter = AtomicU8::new(0);
        (0..300).for_each(|_| raise(&counter));
        (0..299).for_each(|_| lower(&counter));
        assert!(counter.load(Ordering::Relaxed) >= STICK);
    }

    /// As many threads as there are sample shards change one counter at once: it never reads
    /// zero while a thread holds a sample in it. (The interleavings that matter — a change
    /// decided before another thread parks the counter — are rare here; this checks that
    /// concurrent use neither wraps nor loses a count, the argument in [`raise`] the rest.)
    #[test]
    fn a_shared_counter_never_undercounts() {
        let threads = if cfg!(miri) { 4 } else { CHANGERS };
        let rounds = if cfg!(miri) { 20 } else { 20_000 };
        let counter = AtomicU8::new(0);
        let start = std::sync::Barrier::new(threads);
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (counter, start) = (&counter, &start);
                scope.spawn(move || {
                    start.wait();
                    let mut live = 0usize;
                    for round in 0..rounds {
                        // Each thread swings between 0 and 15 samples (64 × 15 > 255).
                        let target = (round * (t + 3)) % 16;
                        while live < target {
                            raise(counter);
                            live += 1;
                        }
                        while live > target {
                            assert_ne!(counter.load(Ordering::Relaxed), 0);
                            lower(counter);
                            live -= 1;
                        }
                        if live > 0 {
                            assert_ne!(counter.load(Ordering::Relaxed), 0);
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn the_table_in_force_is_read_whole() {
        let (base, bits) = current();
        assert!((FIRST_BITS..=40).contains(&bits));
        assert_eq!(base as usize % 64, 0);
        assert_eq!(buckets(), 1 << bits);
    }
}
