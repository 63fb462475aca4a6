//! Exact totals, counted on every allocation and free without a contended cache line.
//!
//! Each thread owns one cache-line-padded shard of counters and is its only writer, so an
//! update is a plain load and store (no locked instruction, no line bouncing between cores).
//! A thread claims a shard on its first allocation and hands it back when it exits (through
//! a thread-exit callback, `sys::on_thread_exit`, which does not allocate); the counts stay in the shard
//! and the next owner adds to them, so sums over all shards are always right.
//!
//! There is a shard for every thread alive at once: the first [`STATIC_SHARDS`] are a
//! static table; past them, chunks of [`CHUNK`] shards are allocated as threads need them
//! (up to [`MAX_SHARDS`] threads at once, far beyond tokio's 512-thread blocking pool) and
//! kept for reuse. Shards handed back go on a lock-free free list. Only a thread that
//! allocates after its shard was handed back (in TLS destructors), or that finds no shard
//! at all, counts in the shared shard 0, with atomic read-modify-write operations: slower,
//! still exact.
//!
//! Live bytes are `allocated − freed` summed over shards. Their peak is not tracked on the
//! fast path (that would cost a check on every allocation and free): [`note_peak`] sums the
//! shards each time a thread's sampling countdown runs out — on average once per sampling
//! interval of its allocations, at every allocation in exact mode, at least once per MiB
//! with sampling off. So the peak is exact in exact mode, and otherwise may miss up to
//! about one sampling interval (512 KiB by default) of growth per allocating thread.

use crate::filter;
use crate::report::Stats;
use crate::sampler::ThreadSampler;
use std::cell::Cell;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

/// Shards in the static table (shard 0 is the shared one).
const STATIC_SHARDS: usize = 256;
/// Shards per allocated chunk.
const CHUNK: usize = 256;
/// Chunks that may be allocated.
const MAX_CHUNKS: usize = 255;
/// The most shards, hence threads counting on the fast path at once.
const MAX_SHARDS: usize = STATIC_SHARDS + CHUNK * MAX_CHUNKS;

/// One thread's counters, alone on its cache lines.
#[repr(align(128))]
pub(crate) struct Shard {
    allocs: AtomicU64,
    alloc_bytes: AtomicU64,
    frees: AtomicU64,
    freed_bytes: AtomicU64,
    /// The owner's sampling countdown: the fast path's one test (see `sampler`).
    pub(crate) sampler: ThreadSampler,
    /// The free filter's table (see `filter`): a copy of the one in force, kept here so that
    /// a free reads it from the line it writes anyway; for the stand-in of threads off the
    /// fast path, a table that proves nothing, so that their every free takes the slow path.
    filter: AtomicPtr<u8>,
    /// The owner's own live bytes when it last raised the peak (see [`note_peak`]).
    peak_noted: AtomicI64,
    /// Where the owner's part of the stack table hangs (the stack table's to set and read:
    /// counters sit below it), kept for the shard's next owners; null before its first sample.
    stack_part: AtomicPtr<()>,
    /// Whether a thread owns it (for a fork child, to take back its parent's threads').
    owned: AtomicBool,
    /// The next shard on the free list, plus one (0: the end).
    next_free: AtomicU32,
}

impl Shard {
    /// A shard whose free filter is `filter` (set again when a thread claims it).
    const fn new(filter: filter::Tagged) -> Self {
        Self {
            allocs: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            sampler: ThreadSampler::new(),
            filter: AtomicPtr::new(filter),
            peak_noted: AtomicI64::new(0),
            stack_part: AtomicPtr::new(std::ptr::null_mut()),
            owned: AtomicBool::new(false),
            next_free: AtomicU32::new(0),
        }
    }

    /// Counts an allocation of `size` bytes (the owner only: plain loads and stores).
    #[inline(always)]
    pub(crate) fn count_alloc(&self, size: usize) {
        bump(&self.allocs, 1);
        bump(&self.alloc_bytes, size as u64);
    }

    /// `false` proves that no sample is held at `ptr` (see `filter`): the owner may free it on
    /// the fast path. Always `true` for the stand-in of threads off the fast path.
    #[inline(always)]
    pub(crate) fn may_hold_sample(&self, ptr: *const u8) -> bool {
        filter::may_hold(self.filter.load(Ordering::Relaxed), ptr)
    }

    /// Counts a free of `size` bytes (the owner only).
    #[inline(always)]
    pub(crate) fn count_free(&self, size: usize) {
        bump(&self.frees, 1);
        bump(&self.freed_bytes, size as u64);
    }

    /// (allocations, bytes allocated, frees, bytes freed) counted in this shard so far.
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.allocs.load(Ordering::Relaxed),
            self.alloc_bytes.load(Ordering::Relaxed),
            self.frees.load(Ordering::Relaxed),
            self.freed_bytes.load(Ordering::Relaxed),
        )
    }

    /// Whether this is the stand-in of threads off the fast path (see [`this_thread`]).
    #[inline]
    pub(crate) fn is_off_fast_path(&self) -> bool {
        std::ptr::eq(self, &OFF_FAST_PATH)
    }

    fn live_bytes(&self) -> i64 {
        (self.alloc_bytes.load(Ordering::Relaxed) as i64)
            .wrapping_sub(self.freed_bytes.load(Ordering::Relaxed) as i64)
    }
}

type Chunk = [Shard; CHUNK];

static SHARD_TABLE: [Shard; STATIC_SHARDS] =
    [const { Shard::new(filter::proves_nothing()) }; STATIC_SHARDS];
static CHUNKS: [AtomicPtr<Chunk>; MAX_CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_CHUNKS];
/// One past the highest shard ever handed out: sums go no further.
static SHARDS_IN_USE: AtomicUsize = AtomicUsize::new(1);
/// The free list's head: the tag (bumped at every change, so that a stale head is never
/// mistaken for the current one) in the high half, the shard's index plus one in the low.
static FREE_HEAD: AtomicU64 = AtomicU64::new(0);
static PEAK_LIVE: AtomicI64 = AtomicI64::new(0);

/// This thread's claim: 0 = none yet, 1..MAX_SHARDS = the shard it owns, RETIRED = handed
/// back (it then counts in the shared shard 0).
const UNCLAIMED: usize = 0;
const RETIRED: usize = usize::MAX;

/// The shard at `index`, if it exists (its chunk allocated).
fn shard(index: usize) -> Option<&'static Shard> {
    if index < STATIC_SHARDS {
        return Some(&SHARD_TABLE[index]);
    }
    let beyond = index - STATIC_SHARDS;
    let chunk = CHUNKS.get(beyond / CHUNK)?.load(Ordering::Acquire);
    // SAFETY: a non-null chunk pointer is a mapping of zeroed shards, never unmapped once
    // installed.
    let chunk: &'static Chunk = unsafe { chunk.as_ref()? };
    Some(&chunk[beyond % CHUNK])
}

/// Every shard handed out so far (the shared one included).
fn shards_in_use() -> impl Iterator<Item = &'static Shard> {
    let in_use = SHARDS_IN_USE.load(Ordering::Acquire).min(MAX_SHARDS);
    (0..in_use).filter_map(shard)
}

/// The stand-in shard of every thread off the fast path: one with no shard of its own yet
/// (or any more, in TLS destructors), or running tracker code. Its countdown never runs
/// (see [`ThreadSampler::hold_off`]) and its free filter proves nothing, so such a thread's
/// every allocation and free takes the slow path, which counts it where it belongs; its
/// counters are never written.
static OFF_FAST_PATH: Shard = Shard::new(filter::proves_nothing());

thread_local! {
    /// The shard this thread counts in with plain loads and stores: its own, or
    /// [`OFF_FAST_PATH`]. One load of it, then one test of its countdown (allocations) or of
    /// its filter (frees), decide the fast path.
    static FAST_SHARD: Cell<*const Shard> = const { Cell::new(&OFF_FAST_PATH) };
    static CLAIM: Cell<usize> = const { Cell::new(UNCLAIMED) };
}

/// Adds `delta` to a counter only this thread writes: a plain load and store.
#[inline(always)]
fn bump(counter: &AtomicU64, delta: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Relaxed,
    );
}

/// The shard this thread counts in on the fast path: its own, or the stand-in of threads off
/// the fast path ([`Shard::is_off_fast_path`]), whose countdown sends it to the slow path.
#[inline(always)]
pub(crate) fn this_thread() -> &'static Shard {
    let shard = FAST_SHARD.with(Cell::get);
    // SAFETY: FAST_SHARD always points to a shard, and shards live for the whole process.
    unsafe { &*shard }
}

/// Where the part of the stack table of the shard this thread owns hangs (see `stacks`),
/// also while it runs tracker code (when [`this_thread`] is the stand-in); `None` for a
/// thread that has no shard (yet, or any more). Only the stack table sets and reads it.
pub(crate) fn stack_part_of_this_thread() -> Option<&'static AtomicPtr<()>> {
    match CLAIM.with(Cell::get) {
        UNCLAIMED | RETIRED => None,
        index => shard(index).map(|shard| &shard.stack_part),
    }
}

/// The slow path's shard for a thread off the fast path that is not running tracker code:
/// claims one on the thread's first allocation or free; `None` when it cannot (its shard
/// was handed back at thread exit, or none is left), and the thread counts in the shared
/// shard ([`count_alloc_shared`], [`count_free_shared`]).
#[cold]
pub(crate) fn claim() -> Option<&'static Shard> {
    OFF_FAST_PATH.sampler.hold_off();
    if claim_if_new() {
        Some(this_thread())
    } else {
        None
    }
}

/// Counts an allocation in the shared shard (threads that have no shard: see [`claim`]).
pub(crate) fn count_alloc_shared(size: usize) {
    let shared = &SHARD_TABLE[0];
    shared.allocs.fetch_add(1, Ordering::Relaxed);
    shared.alloc_bytes.fetch_add(size as u64, Ordering::Relaxed);
}

/// Counts a free in the shared shard, as [`count_alloc_shared`].
pub(crate) fn count_free_shared(size: usize) {
    let shared = &SHARD_TABLE[0];
    shared.frees.fetch_add(1, Ordering::Relaxed);
    shared.freed_bytes.fetch_add(size as u64, Ordering::Relaxed);
}

/// Keeps the stand-in's countdown from running (tracker code writes it too).
pub(crate) fn hold_off() {
    OFF_FAST_PATH.sampler.hold_off();
}

/// Makes this thread's next allocation re-read the sampling rate in force and draw a new
/// countdown (after a rate change, or between trackers of different rates in a benchmark).
pub fn restart_countdown() {
    let shard = this_thread();
    if !shard.is_off_fast_path() {
        shard.sampler.restart();
    }
}

/// How far a thread's own live bytes may grow between two sums of every shard (see
/// [`note_peak`]).
const PEAK_STEP: i64 = 64 << 10;

/// Raises the recorded peak to the live bytes now, at a sampling decision of `shard`'s
/// thread: a sum over every shard, taken when the thread's own live bytes grew by at least
/// [`PEAK_STEP`] since it last took one (in exact mode, summing at every allocation would
/// read every other thread's counters each time). So the peak may miss up to `PEAK_STEP`
/// per thread, besides the growth between sampling decisions (see the module notes).
/// Returns the live bytes it summed, if it did.
pub(crate) fn note_peak(shard: &Shard) -> Option<u64> {
    let own = shard.live_bytes();
    let noted = shard.peak_noted.load(Ordering::Relaxed);
    if own < noted {
        // Growth counts from the lowest point since the last sum.
        shard.peak_noted.store(own, Ordering::Relaxed);
        return None;
    }
    if own < noted.saturating_add(PEAK_STEP) {
        return None;
    }
    shard.peak_noted.store(own, Ordering::Relaxed);
    let live = shards_in_use().fold(0i64, |live, shard| live.wrapping_add(shard.live_bytes()));
    PEAK_LIVE.fetch_max(live, Ordering::Relaxed);
    Some(live.max(0) as u64)
}

/// Claims a shard if this thread never had one; `true` if it now counts on the fast path.
fn claim_if_new() -> bool {
    if CLAIM.with(Cell::get) != UNCLAIMED {
        return false;
    }
    match claim_shard() {
        Some(index) => {
            CLAIM.with(|c| c.set(index));
            let claimed = shard(index).unwrap_or(&OFF_FAST_PATH);
            if !claimed.is_off_fast_path() {
                copy_filter_in_force(claimed);
            }
            FAST_SHARD.with(|s| s.set(claimed));
            true
        }
        None => {
            CLAIM.with(|c| c.set(RETIRED));
            false
        }
    }
}

/// Takes this thread off the fast path (while tracker code runs); returns what
/// [`resume_fast_path`] must restore.
#[inline]
pub(crate) fn suspend_fast_path() -> *const Shard {
    FAST_SHARD.with(|s| s.replace(&OFF_FAST_PATH))
}

/// Restores what [`suspend_fast_path`] returned.
#[inline]
pub(crate) fn resume_fast_path(saved: *const Shard) {
    FAST_SHARD.with(|s| s.set(saved));
}

/// Sets a claimed shard's copy of the free filter to the table in force, and again if the
/// table grew meanwhile: a growth sets every shard's copy (see [`follow_filter`]), but may
/// have passed this one before the copy below. Every access is sequentially consistent, so
/// a growth that published its table before this copy is seen by the second read.
fn copy_filter_in_force(shard: &Shard) {
    loop {
        let table = filter::in_force();
        shard.filter.store(table, Ordering::SeqCst);
        if filter::in_force() == table {
            return;
        }
    }
}

/// After the filter grew (`samples` holds every sample lock): every shard handed out so far
/// copies the new table, before any sample is added to it. A thread freeing a sampled
/// block learned of the block after its sample was added, hence after this copy (the
/// sample locks order them), so it reads the new table or a newer one.
pub(crate) fn follow_filter() {
    let table = filter::in_force();
    for shard in shards_in_use().skip(1) {
        shard.filter.store(table, Ordering::SeqCst);
    }
}

/// Claims a free shard for this thread and arranges for its return at thread exit.
fn claim_shard() -> Option<usize> {
    let index = pop_free().or_else(new_shard)?;
    let claimed = shard(index)?;
    claimed.owned.store(true, Ordering::Relaxed);
    // `index` is never 0 (the shared shard is never handed out), as the hook requires.
    if !crate::sys::on_thread_exit(index, release_shard) {
        hand_back(index);
        return None;
    }
    Some(index)
}

/// A shard never handed out before (allocating its chunk if it is the chunk's first).
fn new_shard() -> Option<usize> {
    let index = SHARDS_IN_USE.fetch_add(1, Ordering::AcqRel);
    if index >= MAX_SHARDS {
        SHARDS_IN_USE.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    if index >= STATIC_SHARDS {
        let slot = &CHUNKS[(index - STATIC_SHARDS) / CHUNK];
        if slot.load(Ordering::Acquire).is_null() {
            let chunk = map_chunk()?;
            if slot
                .compare_exchange(
                    std::ptr::null_mut(),
                    chunk,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                // SAFETY: another thread installed its chunk first; ours, just mapped, was
                // never shared.
                unsafe { unmap_chunk(chunk) };
            }
        }
    }
    Some(index)
}

/// Maps a zeroed chunk of shards straight from the kernel (all-zero bytes are valid
/// shards, and page alignment satisfies theirs): not through the global allocator, whose
/// fast path this module is. Counted as the tracker's memory.
fn map_chunk() -> Option<*mut Chunk> {
    let size = std::mem::size_of::<Chunk>();
    let mapped = crate::sys::map_zeroed(size)?;
    crate::tracker_memory::on_alloc(size);
    Some(mapped.cast())
}

/// Unmaps a chunk that [`map_chunk`] made.
///
/// # Safety
/// `chunk` came from [`map_chunk`] and nothing refers to it.
unsafe fn unmap_chunk(chunk: *mut Chunk) {
    let size = std::mem::size_of::<Chunk>();
    // SAFETY: forwarded from the caller: the whole mapping is ours and unused.
    unsafe { crate::sys::unmap(chunk.cast(), size) };
    crate::tracker_memory::on_free(size);
}

/// Takes a shard off the free list.
fn pop_free() -> Option<usize> {
    let mut head = FREE_HEAD.load(Ordering::Acquire);
    loop {
        let first = (head & u64::from(u32::MAX)) as usize;
        let index = first.checked_sub(1)?;
        let next = u64::from(shard(index)?.next_free.load(Ordering::Relaxed));
        let new = ((head >> 32).wrapping_add(1) << 32) | next;
        match FREE_HEAD.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(index),
            Err(current) => head = current,
        }
    }
}

/// Puts a shard on the free list.
fn hand_back(index: usize) {
    let Some(returned) = shard(index).filter(|_| index != 0) else {
        return;
    };
    returned.owned.store(false, Ordering::Relaxed);
    let mut head = FREE_HEAD.load(Ordering::Acquire);
    loop {
        returned
            .next_free
            .store((head & u64::from(u32::MAX)) as u32, Ordering::Relaxed);
        let new = ((head >> 32).wrapping_add(1) << 32) | (index as u64 + 1);
        match FREE_HEAD.compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(current) => head = current,
        }
    }
}

/// In a fork child: the shards of the parent's other threads (which did not come along)
/// go back on the free list.
pub(crate) fn reclaim_in_fork_child() {
    let mine = CLAIM.with(Cell::get);
    let in_use = SHARDS_IN_USE.load(Ordering::Acquire).min(MAX_SHARDS);
    for index in 1..in_use {
        if index != mine && shard(index).is_some_and(|s| s.owned.load(Ordering::Relaxed)) {
            hand_back(index);
        }
    }
}

/// At thread exit: hands the shard back. Anything the thread frees after this (in later
/// destructors) goes to the shared shard.
fn release_shard(index: usize) {
    FAST_SHARD.with(|s| s.set(&OFF_FAST_PATH));
    CLAIM.with(|c| c.set(RETIRED));
    hand_back(index);
}

/// Sums every shard. Threads keep running meanwhile, so figures read at different instants
/// may be off by the operations in flight.
pub(crate) fn totals() -> Stats {
    let (mut allocs, mut alloc_bytes, mut frees, mut freed_bytes) = (0u64, 0u64, 0u64, 0u64);
    for shard in shards_in_use() {
        allocs = allocs.wrapping_add(shard.allocs.load(Ordering::Relaxed));
        alloc_bytes = alloc_bytes.wrapping_add(shard.alloc_bytes.load(Ordering::Relaxed));
        frees = frees.wrapping_add(shard.frees.load(Ordering::Relaxed));
        freed_bytes = freed_bytes.wrapping_add(shard.freed_bytes.load(Ordering::Relaxed));
    }
    let live_bytes = alloc_bytes.saturating_sub(freed_bytes);
    let peak = PEAK_LIVE.load(Ordering::Relaxed).max(0) as u64;
    Stats {
        live_bytes,
        live_allocs: allocs.saturating_sub(frees),
        peak_live_bytes: peak.max(live_bytes),
        alloc_bytes,
        allocs,
        frees,
    }
}
