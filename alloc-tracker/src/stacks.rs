//! The stack table: each distinct stack (raw return addresses) gets an id and running
//! per-stack figures, updated at every sample and every free of a sampled block.
//!
//! Sharded by the stack's hash; a stack id names its shard and its slot, so a free goes
//! straight to its record. The number of stacks is capped ([`crate::config`]'s
//! `ALLOC_TRACKER_MAX_STACKS`): later stacks are pooled in one `[other stacks]` record, so
//! nothing is lost from the sums, and the pooling is counted.

use crate::spin::SpinLock;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Names a stack: shard in the top bits, slot in the rest; [`OTHER_STACKS`] for the pool.
pub(crate) type StackId = u32;

/// The id of the pooled record for stacks beyond the cap.
pub(crate) const OTHER_STACKS: StackId = u32::MAX;

const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;
const SLOT_BITS: u32 = 32 - SHARD_BITS;

/// Running estimates for one stack (weighted by the samples' Horvitz–Thompson weights).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct StackStats {
    pub(crate) live_bytes: f64,
    pub(crate) live_allocs: f64,
    pub(crate) peak_live_bytes: f64,
    pub(crate) alloc_bytes: f64,
    pub(crate) allocs: f64,
    pub(crate) live_samples: u64,
    /// The variance of `live_bytes` as an estimate: the sum over live samples of
    /// `(w² − w)·s²` (Horvitz–Thompson, one independent Bernoulli draw per allocation); zero
    /// in exact mode.
    pub(crate) live_variance: f64,
}

/// A stack's live bytes at one moment, with the variance of that estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Live {
    /// Estimated live bytes.
    pub(crate) bytes: f64,
    /// Variance of the estimate, in bytes².
    pub(crate) variance: f64,
    /// Estimated live allocations.
    pub(crate) allocs: f64,
}

impl StackStats {
    /// Live bytes now, with their variance.
    pub(crate) fn live(&self) -> Live {
        Live {
            bytes: self.live_bytes,
            variance: self.live_variance,
            allocs: self.live_allocs,
        }
    }

    fn add(&mut self, size: usize, weight: f64) {
        // `(w² − w)·s²` is zero for a weight of 1 (every exact-mode sample): skipped, as
        // adding or taking away `+0.0` changes no sum that started at `+0.0`.
        if weight != 1.0 {
            self.live_variance += (weight * weight - weight) * bytes(size) * bytes(size);
        }
        self.live_bytes += weight * bytes(size);
        self.live_allocs += weight;
        self.alloc_bytes += weight * bytes(size);
        self.allocs += weight;
        self.live_samples += 1;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }

    fn remove(&mut self, size: usize, weight: f64) {
        if weight != 1.0 {
            self.live_variance -= (weight * weight - weight) * bytes(size) * bytes(size);
        }
        self.live_bytes -= weight * bytes(size);
        self.live_allocs -= weight;
        self.live_samples = self.live_samples.saturating_sub(1);
        if self.live_samples == 0 {
            // Clear rounding residue: nothing sampled is live.
            self.live_bytes = 0.0;
            self.live_allocs = 0.0;
            self.live_variance = 0.0;
        }
    }
}

/// A block size as a float. Sizes never exceed `isize::MAX` (a `Layout`'s bound), so the
/// signed conversion is exact, and one instruction where the unsigned one takes several.
#[inline(always)]
fn bytes(size: usize) -> f64 {
    size as isize as f64
}

struct Record {
    hash: u64,
    frames: Box<[usize]>,
    stats: StackStats,
}

struct Shard {
    index: HashTable<u32>,
    records: Vec<Record>,
}

static SHARD_TABLE: [SpinLock<Shard>; SHARDS] = [const {
    SpinLock::new(Shard {
        index: HashTable::new(),
        records: Vec::new(),
    })
}; SHARDS];
static OTHER: SpinLock<StackStats> = SpinLock::new(StackStats {
    live_bytes: 0.0,
    live_allocs: 0.0,
    peak_live_bytes: 0.0,
    alloc_bytes: 0.0,
    allocs: 0.0,
    live_samples: 0,
    live_variance: 0.0,
});
static STACK_COUNT: AtomicUsize = AtomicUsize::new(0);
static POOLED_SAMPLES: AtomicU64 = AtomicU64::new(0);

/// Multiplicative mixing of the return addresses (one xor and one multiply per frame, as
/// in rustc's FxHash, then a final fold of the high half into the low), good enough to
/// spread stacks over shards and buckets (equality is always checked on the frames
/// themselves).
///
/// Each multiply carries a frame's bits only upward, so the final step folds the well-mixed
/// high half down before one more multiply: the shard (top bits), hashbrown's tag (top
/// bits) and bucket (low bits) all depend on every frame.
pub(crate) fn hash_frames(frames: &[usize]) -> u64 {
    const K: u64 = 0xF135_7AEA_2E62_A9C5;
    let mix = |hash: u64, frame: usize| (hash ^ frame as u64).wrapping_mul(K);
    let mut hash = (frames.len() as u64).wrapping_mul(K);
    // Two frames a turn: a plain loop is unrolled eight times over, and the short stacks
    // of most programs then run its remainder loop, one frame and one branch at a time.
    let mut pairs = frames.chunks_exact(2);
    for pair in &mut pairs {
        hash = mix(mix(hash, pair[0]), pair[1]);
    }
    if let [last] = *pairs.remainder() {
        hash = mix(hash, last);
    }
    (hash ^ (hash >> 32)).wrapping_mul(K)
}

/// Records a sample of `size` bytes and `weight` allocations at `frames`; returns the id
/// the sample must carry to its free.
#[inline]
pub(crate) fn record_alloc(
    frames: &[usize],
    size: usize,
    weight: f64,
    max_stacks: usize,
) -> StackId {
    let hash = hash_frames(frames);
    let shard_index = (hash >> (64 - SHARD_BITS)) as usize;
    let mut shard = SHARD_TABLE[shard_index].lock();
    let Shard { index, records } = &mut *shard;
    // The probe compares hashes only, and the frames are compared once after it: a call
    // to `bcmp` inside the probe loop would make it save and reload its registers around
    // each candidate. Two stacks with one 64-bit hash are looked up again, frames and all.
    let found = match index.find(hash, |&slot| records[slot as usize].hash == hash) {
        Some(&slot) if *records[slot as usize].frames == *frames => Some(slot),
        Some(_) => find_colliding(index, records, hash, frames),
        None => None,
    };
    let slot = match found {
        Some(slot) => slot,
        None => match add_record(index, records, hash, frames, max_stacks) {
            Some(slot) => slot,
            None => {
                drop(shard);
                POOLED_SAMPLES.fetch_add(1, Ordering::Relaxed);
                OTHER.lock().add(size, weight);
                return OTHER_STACKS;
            }
        },
    };
    records[slot as usize].stats.add(size, weight);
    ((shard_index as u32) << SLOT_BITS) | slot
}

/// The record of `frames` among the stacks whose hash is `hash`, which are more than one.
#[cold]
fn find_colliding(
    index: &HashTable<u32>,
    records: &[Record],
    hash: u64,
    frames: &[usize],
) -> Option<u32> {
    index
        .find(hash, |&slot| {
            let record = &records[slot as usize];
            record.hash == hash && *record.frames == *frames
        })
        .copied()
}

/// Adds a record for a new stack, unless the cap is reached or memory is short.
fn add_record(
    index: &mut HashTable<u32>,
    records: &mut Vec<Record>,
    hash: u64,
    frames: &[usize],
    max_stacks: usize,
) -> Option<u32> {
    if STACK_COUNT.fetch_add(1, Ordering::Relaxed) >= max_stacks
        || records.len() >= (1 << SLOT_BITS) - 1
    {
        STACK_COUNT.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    let mut kept: Vec<usize> = Vec::new();
    let reserved = kept.try_reserve_exact(frames.len()).is_ok()
        && records.try_reserve(1).is_ok()
        && index
            .try_reserve(1, |&slot| records[slot as usize].hash)
            .is_ok();
    if !reserved {
        STACK_COUNT.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    kept.extend_from_slice(frames);
    let slot = records.len() as u32;
    records.push(Record {
        hash,
        frames: kept.into_boxed_slice(),
        stats: StackStats::default(),
    });
    index.insert_unique(hash, slot, |&slot| records[slot as usize].hash);
    Some(slot)
}

/// Records the free of a sample taken at stack `id`.
pub(crate) fn record_free(id: StackId, size: usize, weight: f64) {
    if id == OTHER_STACKS {
        OTHER.lock().remove(size, weight);
        return;
    }
    let shard_index = (id >> SLOT_BITS) as usize;
    let slot = (id & ((1 << SLOT_BITS) - 1)) as usize;
    if let Some(shard) = SHARD_TABLE.get(shard_index) {
        if let Some(record) = shard.lock().records.get_mut(slot) {
            record.stats.remove(size, weight);
        }
    }
}

/// The frames of stack `id` (`None` for the `[other stacks]` pool). Runs as tracker code.
pub(crate) fn frames_of(id: StackId) -> Option<Vec<usize>> {
    if id == OTHER_STACKS {
        return None;
    }
    let shard_index = (id >> SLOT_BITS) as usize;
    let slot = (id & ((1 << SLOT_BITS) - 1)) as usize;
    let shard = SHARD_TABLE.get(shard_index)?.lock();
    shard.records.get(slot).map(|record| record.frames.to_vec())
}

/// One stack's frames and figures, copied out of the table.
pub(crate) struct StackSnapshot {
    pub(crate) id: StackId,
    pub(crate) frames: Vec<usize>,
    pub(crate) stats: StackStats,
}

/// Copies every stack out (and the `[other stacks]` pool, with no frames, if it was used).
pub(crate) fn snapshot() -> Vec<StackSnapshot> {
    let mut stacks = Vec::new();
    for (shard_index, shard) in SHARD_TABLE.iter().enumerate() {
        let shard = shard.lock();
        stacks.extend(
            shard
                .records
                .iter()
                .enumerate()
                .map(|(slot, record)| StackSnapshot {
                    id: ((shard_index as u32) << SLOT_BITS) | slot as u32,
                    frames: record.frames.to_vec(),
                    stats: record.stats,
                }),
        );
    }
    if POOLED_SAMPLES.load(Ordering::Relaxed) > 0 {
        stacks.push(StackSnapshot {
            id: OTHER_STACKS,
            frames: Vec::new(),
            stats: *OTHER.lock(),
        });
    }
    stacks
}

/// Every stack holding live samples (the pool included), with its live bytes.
pub(crate) fn live_by_stack() -> Vec<(StackId, Live)> {
    let mut live = Vec::new();
    for (shard_index, shard) in SHARD_TABLE.iter().enumerate() {
        let shard = shard.lock();
        live.extend(
            shard
                .records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.stats.live_samples > 0)
                .map(|(slot, record)| {
                    (
                        ((shard_index as u32) << SLOT_BITS) | slot as u32,
                        record.stats.live(),
                    )
                }),
        );
    }
    let other = OTHER.lock();
    if other.live_samples > 0 {
        live.push((OTHER_STACKS, other.live()));
    }
    live
}

/// Distinct stacks kept.
pub(crate) fn count() -> usize {
    STACK_COUNT.load(Ordering::Relaxed)
}

/// Samples pooled in `[other stacks]` because the table was at its cap.
pub(crate) fn pooled_samples() -> u64 {
    POOLED_SAMPLES.load(Ordering::Relaxed)
}

/// Takes every lock of the table (before `fork`).
pub(crate) fn lock_all() {
    for shard in &SHARD_TABLE {
        shard.lock_raw();
    }
    OTHER.lock_raw();
}

/// Releases every lock taken by [`lock_all`].
///
/// # Safety
/// [`lock_all`] must have been called by this thread (or by the parent, in a fork child).
pub(crate) unsafe fn unlock_all() {
    // SAFETY: the caller guarantees that `lock_all` took these locks.
    unsafe {
        OTHER.unlock_raw();
        for shard in &SHARD_TABLE {
            shard.unlock_raw();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_follow_samples() {
        let mut stats = StackStats::default();
        stats.add(100, 2.0);
        stats.add(50, 1.0);
        assert_eq!(stats.live_bytes, 250.0);
        assert_eq!(stats.peak_live_bytes, 250.0);
        stats.remove(100, 2.0);
        assert_eq!(stats.live_bytes, 50.0);
        assert_eq!(stats.alloc_bytes, 250.0);
        stats.remove(50, 1.0);
        assert_eq!((stats.live_bytes, stats.live_samples), (0.0, 0));
        assert_eq!(stats.peak_live_bytes, 250.0);
    }

    /// Two stacks with one hash: the lookup after a probe that found the other one finds
    /// the right record by its frames.
    #[test]
    fn stacks_sharing_a_hash_are_told_apart() {
        let record = |frames: &[usize]| Record {
            hash: 42,
            frames: frames.into(),
            stats: StackStats::default(),
        };
        let records = vec![record(&[1, 2]), record(&[1, 3])];
        let mut index = HashTable::new();
        for slot in 0..records.len() as u32 {
            index.insert_unique(42, slot, |_| 42);
        }
        assert_eq!(find_colliding(&index, &records, 42, &[1, 3]), Some(1));
        assert_eq!(find_colliding(&index, &records, 42, &[1, 2]), Some(0));
        assert_eq!(find_colliding(&index, &records, 42, &[1, 4]), None);
    }

    #[test]
    fn same_frames_same_id_and_cap_pools_the_rest() {
        let a = [1usize, 2, 3];
        let id = record_alloc(&a, 10, 1.0, usize::MAX);
        assert_eq!(record_alloc(&a, 10, 1.0, usize::MAX), id);
        assert_ne!(record_alloc(&[1, 2, 4], 10, 1.0, usize::MAX), id);
        // Past the cap, new stacks pool; known ones are still found.
        let cap = count();
        assert_eq!(record_alloc(&[9, 9, 9], 10, 1.0, cap), OTHER_STACKS);
        assert_eq!(record_alloc(&a, 10, 1.0, cap), id);
        record_free(OTHER_STACKS, 10, 1.0);
        let snap = snapshot();
        let mine = snap.iter().find(|s| s.id == id).unwrap();
        assert_eq!(mine.stats.live_bytes, 30.0);
        assert!(snap.iter().any(|s| s.id == OTHER_STACKS));
    }
}
