//! The live samples: pointer → what was recorded when it was sampled.
//!
//! Sharded by address so that threads sampling and freeing different blocks rarely meet on a
//! lock. Every operation runs under the reentrancy guard: growing a shard allocates, and
//! that allocation goes straight to the inner allocator.

use crate::spin::SpinLock;
use crate::stacks::StackId;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
}

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Most live samples kept; more are dropped and counted (tables cannot grow without bound).
pub(crate) const MAX_LIVE_SAMPLES: usize = 1 << 26;

type Shard = SpinLock<HashTable<(usize, Sample)>>;

static SHARD_TABLE: [Shard; SHARDS] = [const { SpinLock::new(HashTable::new()) }; SHARDS];
static LIVE_SAMPLES: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn hash(ptr: usize) -> u64 {
    (ptr as u64 >> 3).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

fn shard(ptr: usize) -> &'static Shard {
    &SHARD_TABLE[(hash(ptr) >> (64 - SHARD_BITS)) as usize]
}

/// Records a sample at `ptr`; `false` (and the sample counted as dropped) when the table is
/// full or cannot grow.
pub(crate) fn insert(ptr: usize, sample: Sample) -> bool {
    if LIVE_SAMPLES.fetch_add(1, Ordering::Relaxed) >= MAX_LIVE_SAMPLES {
        LIVE_SAMPLES.fetch_sub(1, Ordering::Relaxed);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let mut table = shard(ptr).lock();
    if table.try_reserve(1, |(p, _)| hash(*p)).is_err() {
        drop(table);
        LIVE_SAMPLES.fetch_sub(1, Ordering::Relaxed);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    match table.entry(hash(ptr), |(p, _)| *p == ptr, |(p, _)| hash(*p)) {
        hashbrown::hash_table::Entry::Occupied(mut entry) => {
            // A stale sample at a reused address cannot happen (samples are removed before
            // the block is freed); should one appear, the new block replaces it.
            entry.get_mut().1 = sample;
            LIVE_SAMPLES.fetch_sub(1, Ordering::Relaxed);
        }
        hashbrown::hash_table::Entry::Vacant(entry) => {
            entry.insert((ptr, sample));
        }
    }
    true
}

/// Removes and returns the sample at `ptr`, if there is one.
pub(crate) fn remove(ptr: usize) -> Option<Sample> {
    let mut table = shard(ptr).lock();
    let entry = table.find_entry(hash(ptr), |(p, _)| *p == ptr).ok()?;
    let ((_, sample), _) = entry.remove();
    drop(table);
    LIVE_SAMPLES.fetch_sub(1, Ordering::Relaxed);
    Some(sample)
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
