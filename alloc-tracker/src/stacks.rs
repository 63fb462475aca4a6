//! The stack table: each distinct stack (raw return addresses) gets an id and running
//! per-stack figures, updated at every sample and every free of a sampled block.
//!
//! Sharded by the stack's hash; a stack id names its shard and its slot, so a free goes
//! straight to its record. The number of stacks is capped ([`crate::config`]'s
//! `ALLOC_TRACKER_MAX_STACKS`): later stacks are pooled in one `[other stacks]` record, so
//! nothing is lost from the sums, and the pooling is counted.
//!
//! **Each thread keeps a part of its own** ([`Local`], one per counter shard): the ids of
//! the stacks it met lately, and its changes to their figures not yet added to the shared
//! records. In exact mode every allocation is a sample, and threads that run the same code
//! sample the same stacks: a shared record changed at each one would pass its lock's and its
//! figures' cache lines from core to core at every allocation (two threads then ran at a
//! third of one thread's speed on cores that share no cache). A thread adds its changes to a
//! record when their live bytes come to [`FLUSH_BYTES`], when another stack needs their
//! slot, and whenever the figures are read: every reader first drains every thread's part
//! (`drain_all`). So sums are exact; a stack's *peak* is raised at each flush by the highest
//! its live bytes reached in the flushing thread's changes, exact with one thread, and with
//! more off by what the other threads held unflushed at that moment (under [`FLUSH_BYTES`]
//! each, as the process's own peak is within a step per thread: see `counters`).

use crate::spin::SpinLock;
use hashbrown::HashTable;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Names a stack: shard in the top bits, slot in the rest; [`OTHER_STACKS`] for the pool.
pub(crate) type StackId = u32;

/// The id of the pooled record for stacks beyond the cap.
pub(crate) const OTHER_STACKS: StackId = u32::MAX;

const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;
const SLOT_BITS: u32 = 32 - SHARD_BITS;

/// A thread adds its changes to a stack's record once their live bytes reach this (either
/// way): the most a stack's peak may miss per other thread.
const FLUSH_BYTES: f64 = (64 << 10) as f64;
/// Stacks a thread's part remembers the ids of (by hash).
const KNOWN: usize = 64;
/// Stacks a thread's part holds changes for at once (by id).
const PENDING: usize = 64;

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
}

/// Sums of samples added and removed: a record's running figures, or a thread's changes
/// to them not yet flushed (which may be negative: a block sampled by one thread may be
/// freed by another).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Sums {
    live_bytes: f64,
    live_allocs: f64,
    alloc_bytes: f64,
    allocs: f64,
    live_samples: i64,
    live_variance: f64,
}

impl Sums {
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
    }

    fn remove(&mut self, size: usize, weight: f64) {
        if weight != 1.0 {
            self.live_variance -= (weight * weight - weight) * bytes(size) * bytes(size);
        }
        self.live_bytes -= weight * bytes(size);
        self.live_allocs -= weight;
        self.live_samples -= 1;
    }

    fn absorb(&mut self, changes: &Sums) {
        self.live_bytes += changes.live_bytes;
        self.live_allocs += changes.live_allocs;
        self.alloc_bytes += changes.alloc_bytes;
        self.allocs += changes.allocs;
        self.live_samples += changes.live_samples;
        self.live_variance += changes.live_variance;
    }
}

/// A stack's figures in its shared record.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Figures {
    sums: Sums,
    peak_live_bytes: f64,
}

impl Figures {
    /// Adds a thread's `changes`, whose live bytes rose at most `rise` above where they
    /// started (so the record's live bytes were about `live_bytes + rise` at that moment).
    fn apply(&mut self, changes: &Sums, rise: f64) {
        self.peak_live_bytes = self.peak_live_bytes.max(self.sums.live_bytes + rise);
        self.sums.absorb(changes);
        self.peak_live_bytes = self.peak_live_bytes.max(self.sums.live_bytes);
    }

    /// Adds one change made without a thread's part.
    fn apply_one(&mut self, change: impl FnOnce(&mut Sums)) {
        let mut changes = Sums::default();
        change(&mut changes);
        self.apply(&changes, 0.0);
    }

    /// The figures as reports read them. With no sample live the live figures are zero:
    /// what is left is rounding, or, while threads flush, a moment's mismatch between one
    /// thread's changes and another's.
    fn stats(&self) -> StackStats {
        let live = self.sums.live_samples > 0;
        let if_live = |value: f64| if live { value } else { 0.0 };
        StackStats {
            live_bytes: if_live(self.sums.live_bytes),
            live_allocs: if_live(self.sums.live_allocs),
            peak_live_bytes: self.peak_live_bytes,
            alloc_bytes: self.sums.alloc_bytes,
            allocs: self.sums.allocs,
            live_samples: self.sums.live_samples.max(0) as u64,
            live_variance: if_live(self.sums.live_variance),
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
    /// Never freed nor changed, so that threads' parts may compare with them unlocked.
    frames: &'static [usize],
    figures: Figures,
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
static OTHER: SpinLock<Figures> = SpinLock::new(Figures {
    sums: NO_CHANGES,
    peak_live_bytes: 0.0,
});
static STACK_COUNT: AtomicUsize = AtomicUsize::new(0);
static POOLED_SAMPLES: AtomicU64 = AtomicU64::new(0);
/// Every thread's part ever made, newest first (never freed: a part outlives its thread,
/// for the next owner of its counter shard).
static PARTS: AtomicPtr<Local> = AtomicPtr::new(std::ptr::null_mut());
/// Held to add a part to [`PARTS`], and by [`lock_all`] (before `fork`), so that no part
/// appears, unlocked and perhaps held by a thread the child will not have, while the
/// parts are locked.
static ADDING_PART: SpinLock<()> = SpinLock::new(());

/// One thread's part of the table (see the module notes): made at the thread's first
/// sample, kept with its counter shard (`counters::stack_part_of_this_thread`).
pub(crate) struct Local {
    state: SpinLock<LocalState>,
    /// The part made before this one (see [`PARTS`]); set before this one is published.
    older: AtomicPtr<Local>,
}

/// A stack whose id a thread's part remembers.
#[derive(Clone, Copy)]
struct Known {
    hash: u64,
    frames: &'static [usize],
    id: Option<StackId>,
}

/// A thread's changes to one stack's figures, not yet flushed.
#[derive(Clone, Copy)]
struct Pending {
    id: Option<StackId>,
    changes: Sums,
    /// The highest the changes' live bytes reached since the last flush.
    rise: f64,
}

/// Sums with nothing in them: `Sums::default()`, usable in statics.
const NO_CHANGES: Sums = Sums {
    live_bytes: 0.0,
    live_allocs: 0.0,
    alloc_bytes: 0.0,
    allocs: 0.0,
    live_samples: 0,
    live_variance: 0.0,
};

struct LocalState {
    known: [Known; KNOWN],
    pending: [Pending; PENDING],
}

impl Local {
    const fn new() -> Self {
        Self {
            state: SpinLock::new(LocalState {
                known: [Known {
                    hash: 0,
                    frames: &[],
                    id: None,
                }; KNOWN],
                pending: [Pending {
                    id: None,
                    changes: NO_CHANGES,
                    rise: 0.0,
                }; PENDING],
            }),
            older: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

impl LocalState {
    /// The id of `frames` if this part remembers it.
    #[inline]
    fn known(&self, hash: u64, frames: &[usize]) -> Option<StackId> {
        let known = &self.known[known_index(hash)];
        if known.hash == hash && *known.frames == *frames {
            known.id
        } else {
            None
        }
    }

    fn remember(&mut self, hash: u64, frames: &'static [usize], id: StackId) {
        self.known[known_index(hash)] = Known {
            hash,
            frames,
            id: Some(id),
        };
    }

    /// Makes `change` to stack `id`'s figures: in this part, flushed when its live bytes
    /// reach [`FLUSH_BYTES`]; first flushes the changes of the stack whose slot it takes.
    #[inline]
    fn change(&mut self, id: StackId, change: impl FnOnce(&mut Sums)) {
        let pending = &mut self.pending[pending_index(id)];
        if pending.id != Some(id) {
            flush(pending);
            pending.id = Some(id);
        }
        change(&mut pending.changes);
        pending.rise = pending.rise.max(pending.changes.live_bytes);
        if pending.changes.live_bytes.abs() >= FLUSH_BYTES {
            flush(pending);
        }
    }

    fn flush_all(&mut self) {
        self.pending.iter_mut().for_each(flush);
    }
}

/// Adds a part's changes to their stack's record, and clears them.
fn flush(pending: &mut Pending) {
    if let Some(id) = pending.id {
        if pending.changes != NO_CHANGES {
            with_figures(id, |figures| figures.apply(&pending.changes, pending.rise));
        }
    }
    pending.changes = NO_CHANGES;
    pending.rise = 0.0;
}

fn known_index(hash: u64) -> usize {
    (hash >> 32) as usize & (KNOWN - 1)
}

fn pending_index(id: StackId) -> usize {
    (id ^ (id >> SLOT_BITS)) as usize & (PENDING - 1)
}

/// This thread's part: the one of its counter shard, made now if it has none. `None` for
/// a thread without a counter shard (it changes the shared records directly), or when
/// memory is short. Runs as tracker code (its allocation is the tracker's).
fn this_threads_part() -> Option<&'static Local> {
    let slot = crate::counters::stack_part_of_this_thread()?;
    let part = slot.load(Ordering::Acquire).cast::<Local>();
    // SAFETY: only this function sets the slot, to a part from `new_part`: a `Local` never
    // freed.
    if let Some(part) = unsafe { part.as_ref() } {
        return Some(part);
    }
    let part = new_part()?;
    // Only the shard's owner, this thread, sets its slot.
    slot.store(
        std::ptr::from_ref(part).cast_mut().cast(),
        Ordering::Release,
    );
    Some(part)
}

/// Makes a part and adds it to [`PARTS`]. Never inlined: a part is built on this
/// function's stack before it is moved to its block, and that frame must not become every
/// sample's (a frame of several KiB is probed page by page at each call).
#[cold]
#[inline(never)]
fn new_part() -> Option<&'static Local> {
    let layout = std::alloc::Layout::new::<Local>();
    // SAFETY: `Local` is not zero-sized.
    let raw = unsafe { std::alloc::alloc(layout) }.cast::<Local>();
    if raw.is_null() {
        return None;
    }
    // SAFETY: `raw` is a fresh allocation with `Local`'s layout; it is initialised here and
    // never freed, so the reference lives as long as the process.
    let part: &'static Local = unsafe {
        raw.write(Local::new());
        &*raw
    };
    let _adding = ADDING_PART.lock();
    part.older
        .store(PARTS.load(Ordering::Acquire), Ordering::Relaxed);
    PARTS.store(raw, Ordering::Release);
    Some(part)
}

/// Flushes every thread's part into the shared records: what readers do first.
fn drain_all() {
    let mut part = PARTS.load(Ordering::Acquire);
    // SAFETY: parts on the list are never freed.
    while let Some(local) = unsafe { part.as_ref() } {
        local.state.lock().flush_all();
        part = local.older.load(Ordering::Relaxed);
    }
}

/// Runs `f` on the figures of stack `id` (the pool's for [`OTHER_STACKS`]).
fn with_figures(id: StackId, f: impl FnOnce(&mut Figures)) {
    if id == OTHER_STACKS {
        f(&mut OTHER.lock());
        return;
    }
    let shard_index = (id >> SLOT_BITS) as usize;
    let slot = (id & ((1 << SLOT_BITS) - 1)) as usize;
    if let Some(shard) = SHARD_TABLE.get(shard_index) {
        if let Some(record) = shard.lock().records.get_mut(slot) {
            f(&mut record.figures);
        }
    }
}

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
/// the sample must carry to its free. Runs as tracker code.
#[inline]
pub(crate) fn record_alloc(
    frames: &[usize],
    size: usize,
    weight: f64,
    max_stacks: usize,
) -> StackId {
    let hash = hash_frames(frames);
    let Some(part) = this_threads_part() else {
        return match intern(hash, frames, max_stacks) {
            Some((id, _)) => {
                with_figures(id, |figures| figures.apply_one(|s| s.add(size, weight)));
                id
            }
            None => pool(size, weight),
        };
    };
    let mut state = part.state.lock();
    let id = match state.known(hash, frames) {
        Some(id) => id,
        None => match intern(hash, frames, max_stacks) {
            Some((id, kept)) => {
                state.remember(hash, kept, id);
                id
            }
            None => {
                drop(state);
                return pool(size, weight);
            }
        },
    };
    state.change(id, |sums| sums.add(size, weight));
    id
}

/// Counts a sample in the `[other stacks]` pool.
#[cold]
fn pool(size: usize, weight: f64) -> StackId {
    POOLED_SAMPLES.fetch_add(1, Ordering::Relaxed);
    OTHER.lock().apply_one(|sums| sums.add(size, weight));
    OTHER_STACKS
}

/// The id of `frames` (whose hash is `hash`), with the frames as the table keeps them: a
/// new record if the stack is new; `None` past the cap, or when memory is short.
fn intern(hash: u64, frames: &[usize], max_stacks: usize) -> Option<(StackId, &'static [usize])> {
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
        None => add_record(index, records, hash, frames, max_stacks)?,
    };
    Some((
        ((shard_index as u32) << SLOT_BITS) | slot,
        records[slot as usize].frames,
    ))
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
        frames: kept.leak(),
        figures: Figures::default(),
    });
    index.insert_unique(hash, slot, |&slot| records[slot as usize].hash);
    Some(slot)
}

/// Records the free of a sample taken at stack `id`. Runs as tracker code.
pub(crate) fn record_free(id: StackId, size: usize, weight: f64) {
    match this_threads_part() {
        Some(part) if id != OTHER_STACKS => part
            .state
            .lock()
            .change(id, |sums| sums.remove(size, weight)),
        _ => with_figures(id, |figures| figures.apply_one(|s| s.remove(size, weight))),
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
/// Runs as tracker code.
pub(crate) fn snapshot() -> Vec<StackSnapshot> {
    drain_all();
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
                    stats: record.figures.stats(),
                }),
        );
    }
    if POOLED_SAMPLES.load(Ordering::Relaxed) > 0 {
        stacks.push(StackSnapshot {
            id: OTHER_STACKS,
            frames: Vec::new(),
            stats: OTHER.lock().stats(),
        });
    }
    stacks
}

/// Every stack holding live samples (the pool included), with its live bytes. Runs as
/// tracker code.
pub(crate) fn live_by_stack() -> Vec<(StackId, Live)> {
    drain_all();
    let mut live = Vec::new();
    for (shard_index, shard) in SHARD_TABLE.iter().enumerate() {
        let shard = shard.lock();
        live.extend(
            shard
                .records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.figures.sums.live_samples > 0)
                .map(|(slot, record)| {
                    (
                        ((shard_index as u32) << SLOT_BITS) | slot as u32,
                        record.figures.stats().live(),
                    )
                }),
        );
    }
    let other = OTHER.lock().stats();
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

/// Takes every lock of the table (before `fork`): the threads' parts first (a thread
/// holding its part's lock may take a shard's, never the other way round).
pub(crate) fn lock_all() {
    // No part is added until `unlock_all`.
    ADDING_PART.lock_raw();
    let mut part = PARTS.load(Ordering::Acquire);
    // SAFETY: parts on the list are never freed.
    while let Some(local) = unsafe { part.as_ref() } {
        local.state.lock_raw();
        part = local.older.load(Ordering::Relaxed);
    }
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
    // SAFETY: the caller guarantees that `lock_all` took these locks: the shards', those of
    // every part on the list (parts are never freed, and none was added since: `lock_all`
    // holds `ADDING_PART`), and `ADDING_PART`.
    unsafe {
        OTHER.unlock_raw();
        for shard in &SHARD_TABLE {
            shard.unlock_raw();
        }
        let mut part = PARTS.load(Ordering::Acquire);
        while let Some(local) = part.as_ref() {
            local.state.unlock_raw();
            part = local.older.load(Ordering::Relaxed);
        }
        ADDING_PART.unlock_raw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_follow_samples() {
        let mut figures = Figures::default();
        figures.apply_one(|s| s.add(100, 2.0));
        figures.apply_one(|s| s.add(50, 1.0));
        assert_eq!(figures.stats().live_bytes, 250.0);
        assert_eq!(figures.stats().peak_live_bytes, 250.0);
        figures.apply_one(|s| s.remove(100, 2.0));
        assert_eq!(figures.stats().live_bytes, 50.0);
        assert_eq!(figures.stats().alloc_bytes, 250.0);
        figures.apply_one(|s| s.remove(50, 1.0));
        let stats = figures.stats();
        assert_eq!((stats.live_bytes, stats.live_samples), (0.0, 0));
        assert_eq!(stats.peak_live_bytes, 250.0);
    }

    /// The figures of stack `id`'s shared record, as reports read them (no part drained).
    fn stats_of(id: StackId) -> StackStats {
        let mut figures = Figures::default();
        with_figures(id, |f| figures = *f);
        figures.stats()
    }

    /// A thread's part: its changes reach the record at a flush, with the peak its own
    /// changes reached in between (exact, with no other thread changing the record); the
    /// changes flush by themselves once their live bytes reach `FLUSH_BYTES`, or when
    /// another stack takes their slot.
    #[test]
    fn a_part_flushes_its_changes_and_their_peak() {
        let frames = [0x51, 0x52, 0x53];
        let (id, kept) = intern(hash_frames(&frames), &frames, usize::MAX).unwrap();
        let mut state = Local::new().state.into_inner();
        state.remember(hash_frames(&frames), kept, id);
        assert_eq!(state.known(hash_frames(&frames), &frames), Some(id));
        assert_eq!(state.known(hash_frames(&frames), &[0x51, 0x52]), None);
        // Up to 3 × 1000 live, down to 1000: nothing in the record until the flush.
        (0..3).for_each(|_| state.change(id, |s| s.add(1000, 1.0)));
        (0..2).for_each(|_| state.change(id, |s| s.remove(1000, 1.0)));
        assert_eq!(stats_of(id).allocs, 0.0);
        state.flush_all();
        let stats = stats_of(id);
        assert_eq!((stats.live_bytes, stats.live_samples), (1000.0, 1));
        assert_eq!((stats.peak_live_bytes, stats.allocs), (3000.0, 3.0));
        // A large sample flushes at once.
        state.change(id, |s| s.add(FLUSH_BYTES as usize, 1.0));
        assert_eq!(stats_of(id).live_bytes, 1000.0 + FLUSH_BYTES);
        // A free of a sample taken elsewhere, then a stack sharing the slot: flushed.
        state.change(id, |s| s.remove(1000, 1.0));
        let other = id ^ PENDING as u32;
        assert_eq!(pending_index(other), pending_index(id));
        state.change(other, |s| s.add(1, 1.0));
        let stats = stats_of(id);
        assert_eq!((stats.live_bytes, stats.live_samples), (FLUSH_BYTES, 1));
        assert_eq!(stats.peak_live_bytes, 1000.0 + FLUSH_BYTES);
    }

    /// Changes flushed from two parts in either order sum right, and a record whose
    /// flushed frees ran ahead of their allocations for a moment reads as nothing live.
    #[test]
    fn parts_sum_in_any_order() {
        let frames = [0x61, 0x62];
        let (id, _) = intern(hash_frames(&frames), &frames, usize::MAX).unwrap();
        let mut sampler = Local::new().state.into_inner();
        let mut freer = Local::new().state.into_inner();
        sampler.change(id, |s| s.add(10, 1.0));
        sampler.change(id, |s| s.add(20, 1.0));
        freer.change(id, |s| s.remove(10, 1.0));
        freer.flush_all();
        let early = stats_of(id);
        assert_eq!((early.live_bytes, early.live_samples), (0.0, 0));
        sampler.flush_all();
        let stats = stats_of(id);
        assert_eq!((stats.live_bytes, stats.live_samples), (20.0, 1));
        assert_eq!((stats.alloc_bytes, stats.allocs), (30.0, 2.0));
    }

    /// Two stacks with one hash: the lookup after a probe that found the other one finds
    /// the right record by its frames.
    #[test]
    fn stacks_sharing_a_hash_are_told_apart() {
        let record = |frames: &[usize]| Record {
            hash: 42,
            frames: frames.to_vec().leak(),
            figures: Figures::default(),
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
