//! The live samples: pointer → what was recorded when it was sampled.
//!
//! Sharded by address *region* (2 MiB windows), so that threads sampling and freeing
//! different blocks rarely meet on a lock or on a cache line: allocators serve each thread
//! from its own arena or thread cache, so a thread's blocks lie in regions of their own, and
//! its samples go to shards (locks, tables) that other threads seldom touch. (Shards by
//! plain address hash sent every thread to every shard: in exact mode each sample moved the
//! shard's lock and table lines from core to core, and two threads ran at a third of one
//! thread's speed on cores that share no cache.) Every operation runs under the reentrancy guard: growing a shard allocates, and
//! that allocation goes straight to the inner allocator. The set of sampled addresses that
//! frees consult (`filter`) changes here too, under the same shard lock, and is rebuilt here,
//! under every shard's lock, when it fills up.

use crate::filter;
use crate::spin::SpinLock;
use crate::stacks::StackId;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One sampled, still-live block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    /// The block's size in bytes.
    pub(crate) size: usize,
    /// Allocations this sample stands for (`1/p(size)` at the rate it was drawn with).
    pub(crate) weight: f64,
    /// The stack that allocated it.
    pub(crate) stack: StackId,
    /// When it was allocated, in nanoseconds since the tracker started.
    pub(crate) born_ns: u64,
    /// The tag of the [`crate::Scope`] that recorded it (see `scope`), 0 outside scopes.
    pub(crate) scope: u64,
}

const SHARD_BITS: u32 = 6;
/// Sample shards (each with its lock).
pub(crate) const SHARDS: usize = 1 << SHARD_BITS;
// Each shard's lock lets one thread change a filter counter at a time: the filter's
// counters are sized for at most `filter::CHANGERS` at once.
const _: () = assert!(SHARDS <= filter::CHANGERS);

/// Most live samples kept; more are dropped and counted (tables cannot grow without bound).
pub(crate) const MAX_LIVE_SAMPLES: usize = 1 << 26;

/// One shard: its samples.
struct ShardState {
    samples: HashTable<(usize, Sample)>,
    /// The size at which this shard next checks whether the filter is outgrown.
    next_check: usize,
}

type Shard = SpinLock<ShardState>;

static SHARD_TABLE: [Shard; SHARDS] = [const {
    SpinLock::new(ShardState {
        samples: HashTable::new(),
        next_check: 0,
    })
}; SHARDS];
/// Whether a thread is growing the filter (others need not).
static GROWING: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn hash(ptr: usize) -> u64 {
    (ptr as u64 >> 3).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// Addresses in one window of `1 << WINDOW_BITS` bytes share a shard.
const WINDOW_BITS: u32 = 21;

fn shard(ptr: usize) -> &'static Shard {
    let window = (ptr >> WINDOW_BITS) as u64;
    &SHARD_TABLE[(window.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> (64 - SHARD_BITS)) as usize]
}

/// What [`insert`] did.
#[derive(Debug, PartialEq)]
pub(crate) enum Inserted {
    /// The sample is in the table.
    New,
    /// The sample replaced one already at `ptr` (which cannot happen while every sample is
    /// removed before its block is freed): the old sample is returned, for its figures to
    /// be released. The filter already counts this address once.
    Replaced(Sample),
    /// The table is full or cannot grow: the sample was dropped (and counted as such).
    Dropped,
}

/// Records a sample at `ptr`, and adds `ptr` to the filter.
pub(crate) fn insert(ptr: usize, sample: Sample) -> Inserted {
    let mut shard = shard(ptr).lock();
    // The cap is per shard (no global counter for every sample to contend on).
    if shard.samples.len() >= MAX_LIVE_SAMPLES / SHARDS
        || shard.samples.try_reserve(1, |(p, _)| hash(*p)).is_err()
    {
        drop(shard);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return Inserted::Dropped;
    }
    let inserted = match shard
        .samples
        .entry(hash(ptr), |(p, _)| *p == ptr, |(p, _)| hash(*p))
    {
        hashbrown::hash_table::Entry::Occupied(mut entry) => {
            debug_assert!(false, "a sample at {ptr:#x} was never removed");
            let old = std::mem::replace(&mut entry.get_mut().1, sample);
            // The filter holds `ptr` already.
            return Inserted::Replaced(old);
        }
        hashbrown::hash_table::Entry::Vacant(entry) => {
            entry.insert((ptr, sample));
            Inserted::New
        }
    };
    filter::add(ptr as *const u8);
    let check = may_outgrow_filter(&mut shard);
    drop(shard);
    if check {
        grow_filter();
    }
    inserted
}

/// Removes and returns the sample at `ptr`, if there is one (and `ptr` from the filter).
pub(crate) fn remove(ptr: usize) -> Option<Sample> {
    let mut shard = shard(ptr).lock();
    let entry = shard
        .samples
        .find_entry(hash(ptr), |(p, _)| *p == ptr)
        .ok()?;
    let ((_, sample), _) = entry.remove();
    filter::remove(ptr as *const u8);
    Some(sample)
}

/// Whether the filter may now be outgrown (the total over all shards then decides, in
/// [`grow_filter`]). Samples spread over the shards unevenly (a thread's blocks lie in few
/// regions), so a shard checks when it alone would outgrow its even share, and then only
/// after growing by a quarter (at least 64 samples) since its last check: the total is
/// summed under every lock at most once per 64 samples a shard gains, and never while its
/// size swings under a height it has reached.
fn may_outgrow_filter(shard: &mut ShardState) -> bool {
    let len = shard.samples.len();
    if len < shard.next_check || len * SHARDS * filter::BUCKETS_PER_SAMPLE <= filter::buckets() {
        return false;
    }
    shard.next_check = len + (len / 4).max(64);
    true
}

/// Grows the filter for the samples live now, holding every shard's lock meanwhile (the
/// sampling and freeing of sampled blocks wait; other frees read the old filter).
#[cold]
fn grow_filter() {
    if GROWING.swap(true, Ordering::AcqRel) {
        return;
    }
    lock_all();
    // SAFETY: this thread took every shard's lock just above and holds them until
    // `unlock_all` below; nothing else reads or writes the shards meanwhile.
    let shards: Vec<&ShardState> = SHARD_TABLE
        .iter()
        .map(|shard| &*unsafe { shard.get_mut_unchecked() })
        .collect();
    let live: usize = shards.iter().map(|s| s.samples.len()).sum();
    if live * filter::BUCKETS_PER_SAMPLE > filter::buckets() {
        let pointers = shards
            .iter()
            .flat_map(|s| s.samples.iter().map(|(p, _)| *p));
        if let Some(bytes) = filter::grow(live, pointers) {
            crate::tracker_memory::on_alloc(bytes);
            // Before any sample goes into the new table (the locks are still held).
            crate::counters::follow_filter();
        }
    }
    drop(shards);
    // SAFETY: `lock_all` above took these locks on this thread.
    unsafe { unlock_all() };
    GROWING.store(false, Ordering::Release);
}

/// Live samples per stack whose birth times are kept for the median age.
pub(crate) const AGE_RESERVOIR: usize = 256;

/// When each stack's live samples were born: the extremes, and a bounded reservoir of
/// birth times for the median.
#[derive(Clone, Debug, Default)]
pub(crate) struct Births {
    pub(crate) earliest_ns: u64,
    pub(crate) latest_ns: u64,
    /// Up to [`AGE_RESERVOIR`] birth times, a uniform draw of the live ones.
    pub(crate) reservoir: Vec<u64>,
    seen: u64,
}

impl Births {
    fn add(&mut self, born_ns: u64) {
        if self.seen == 0 {
            self.earliest_ns = born_ns;
            self.latest_ns = born_ns;
        }
        self.earliest_ns = self.earliest_ns.min(born_ns);
        self.latest_ns = self.latest_ns.max(born_ns);
        self.seen += 1;
        if self.reservoir.len() < AGE_RESERVOIR {
            self.reservoir.push(born_ns);
        } else {
            // Reservoir sampling with a fixed hash of the count: deterministic, uniform enough.
            let slot = (self.seen.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % self.seen;
            if let Some(kept) = self.reservoir.get_mut(slot as usize) {
                *kept = born_ns;
            }
        }
    }
}

/// The birth times of the live samples, per stack. Runs as tracker code; holds each shard's
/// lock while it reads it.
pub(crate) fn births_by_stack() -> std::collections::HashMap<StackId, Births> {
    let mut births: std::collections::HashMap<StackId, Births> = std::collections::HashMap::new();
    for shard in &SHARD_TABLE {
        let shard = shard.lock();
        for (_, sample) in shard.samples.iter() {
            births.entry(sample.stack).or_default().add(sample.born_ns);
        }
    }
    births
}

/// Calls `f` on every live sample, holding each shard's lock while it reads it. Runs as
/// tracker code; `f` must not take a lock the sampling path takes.
pub(crate) fn for_each(mut f: impl FnMut(&Sample)) {
    for shard in &SHARD_TABLE {
        let shard = shard.lock();
        for (_, sample) in shard.samples.iter() {
            f(sample);
        }
    }
}

/// Samples not recorded because the table was full or out of memory.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Takes every shard lock (before `fork`).
pub(crate) fn lock_all() {
    for shard in &SHARD_TABLE {
        shard.lock_raw();
    }
}

/// Releases every shard lock taken by [`lock_all`].
///
/// # Safety
/// [`lock_all`] must have been called by this thread (or by the parent, in a fork child).
pub(crate) unsafe fn unlock_all() {
    for shard in &SHARD_TABLE {
        // SAFETY: the caller guarantees that `lock_all` took this lock.
        unsafe { shard.unlock_raw() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(size: usize) -> Sample {
        Sample {
            size,
            weight: 1.0,
            stack: 7,
            born_ns: 0,
            scope: 0,
        }
    }

    #[test]
    fn a_sample_is_found_once_and_removed() {
        let ptr = 0x7000_0000_1000;
        assert_eq!(insert(ptr, sample(10)), Inserted::New);
        assert_eq!(remove(ptr), Some(sample(10)));
        assert_eq!(remove(ptr), None);
    }

    /// A duplicate means a free was missed: debug builds stop there; release builds hand
    /// back the stale sample so that its bytes are released, not leaked for good.
    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "was never removed"))]
    fn a_duplicate_hands_back_the_stale_sample() {
        let ptr = 0x7000_0000_2000;
        assert_eq!(insert(ptr, sample(10)), Inserted::New);
        assert_eq!(insert(ptr, sample(20)), Inserted::Replaced(sample(10)));
        assert_eq!(remove(ptr), Some(sample(20)));
    }
}
