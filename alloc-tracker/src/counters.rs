//! Exact totals, counted on every allocation and free without a contended cache line.
//!
//! Each thread owns one cache-line-padded shard of counters and is its only writer, so an
//! update is a plain load and store (no locked instruction, no line bouncing between cores).
//! A thread claims a shard on its first allocation and hands it back when it exits (through
//! a `pthread_key_create` destructor, which does not allocate); the counts stay in the shard
//! and the next owner adds to them, so sums over all shards are always right. A thread that
//! finds no free shard, or allocates after its shard was handed back (in TLS destructors),
//! uses shard 0 with atomic read-modify-write operations instead: slower, still exact.
//!
//! Live bytes are `allocated − freed` summed over shards. Their peak is not tracked on the
//! fast path (that would cost a check on every allocation and free): [`note_peak`] sums the
//! shards each time a thread's sampling countdown runs out — on average once per sampling
//! interval of its allocations, at every allocation in exact mode, at least once per MiB
//! with sampling off. So the peak is exact in exact mode, and otherwise may miss up to
//! about one sampling interval (512 KiB by default) of growth per allocating thread.

use crate::report::Stats;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 256;

/// One thread's counters, alone on its cache lines.
#[repr(align(128))]
pub(crate) struct Shard {
    allocs: AtomicU64,
    alloc_bytes: AtomicU64,
    frees: AtomicU64,
    freed_bytes: AtomicU64,
    owned: AtomicBool,
}

impl Shard {
    const fn new() -> Self {
        Self {
            allocs: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            owned: AtomicBool::new(false),
        }
    }
}

static SHARD_TABLE: [Shard; SHARDS] = [const { Shard::new() }; SHARDS];
/// One past the highest shard ever claimed: [`note_peak`] sums no further.
static SHARDS_IN_USE: AtomicUsize = AtomicUsize::new(1);
static PEAK_LIVE: AtomicI64 = AtomicI64::new(0);
/// The `pthread_key_t` whose destructor returns a thread's shard (`usize::MAX`: none yet).
static RELEASE_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

/// This thread's claim: 0 = none yet, 1..SHARDS = the shard it owns, RETIRED = handed back
/// (it then counts in the shared shard 0).
const UNCLAIMED: usize = 0;
const RETIRED: usize = usize::MAX;

thread_local! {
    /// The shard this thread counts in with plain loads and stores, or null when it must take
    /// the slow path: no shard claimed yet, shard handed back, or tracker code running (the
    /// reentrancy guard suspends it). One load and one test decide the fast path.
    static FAST_SHARD: Cell<*const Shard> = const { Cell::new(std::ptr::null()) };
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

/// This thread's own shard, if it may count on the fast path.
#[inline(always)]
fn fast_shard() -> Option<&'static Shard> {
    let shard = FAST_SHARD.with(Cell::get);
    // SAFETY: FAST_SHARD is null or points into the static SHARD_TABLE.
    unsafe { shard.as_ref() }
}

/// Counts an allocation of `size` bytes on the fast path; `false` if this thread must use
/// [`count_alloc_slow`] (or is running tracker code).
#[inline(always)]
pub(crate) fn count_alloc(size: usize) -> bool {
    let Some(shard) = fast_shard() else {
        return false;
    };
    bump(&shard.allocs, 1);
    bump(&shard.alloc_bytes, size as u64);
    true
}

/// Counts a free of `size` bytes on the fast path; `false` as for [`count_alloc`].
#[inline(always)]
pub(crate) fn count_free(size: usize) -> bool {
    let Some(shard) = fast_shard() else {
        return false;
    };
    bump(&shard.frees, 1);
    bump(&shard.freed_bytes, size as u64);
    true
}

/// Raises the recorded peak to the live bytes now (a sum over the shards in use).
pub(crate) fn note_peak() {
    let in_use = SHARDS_IN_USE.load(Ordering::Relaxed).min(SHARDS);
    let live = SHARD_TABLE[..in_use].iter().fold(0i64, |live, shard| {
        live.wrapping_add(shard.alloc_bytes.load(Ordering::Relaxed) as i64)
            .wrapping_sub(shard.freed_bytes.load(Ordering::Relaxed) as i64)
    });
    PEAK_LIVE.fetch_max(live, Ordering::Relaxed);
}

/// Counts an allocation off the fast path (program code only, never tracker code): claims
/// a shard on the thread's first allocation, else counts in the shared shard.
#[cold]
#[inline(never)]
pub(crate) fn count_alloc_slow(size: usize) {
    if claim_if_new() {
        count_alloc(size);
        return;
    }
    let shared = &SHARD_TABLE[0];
    shared.allocs.fetch_add(1, Ordering::Relaxed);
    shared.alloc_bytes.fetch_add(size as u64, Ordering::Relaxed);
}

/// Counts a free off the fast path, as [`count_alloc_slow`].
#[cold]
#[inline(never)]
pub(crate) fn count_free_slow(size: usize) {
    if claim_if_new() {
        count_free(size);
        return;
    }
    let shared = &SHARD_TABLE[0];
    shared.frees.fetch_add(1, Ordering::Relaxed);
    shared.freed_bytes.fetch_add(size as u64, Ordering::Relaxed);
}

/// Claims a shard if this thread never had one; `true` if it now counts on the fast path.
fn claim_if_new() -> bool {
    if CLAIM.with(Cell::get) != UNCLAIMED {
        return false;
    }
    match claim_shard() {
        Some(index) => {
            CLAIM.with(|c| c.set(index));
            FAST_SHARD.with(|s| s.set(&SHARD_TABLE[index]));
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
    FAST_SHARD.with(|s| s.replace(std::ptr::null()))
}

/// Restores what [`suspend_fast_path`] returned.
#[inline]
pub(crate) fn resume_fast_path(saved: *const Shard) {
    FAST_SHARD.with(|s| s.set(saved));
}

/// Claims a free shard for this thread and arranges for its return at thread exit.
fn claim_shard() -> Option<usize> {
    let key = release_key()?;
    let index = (1..SHARDS).find(|&i| {
        SHARD_TABLE[i]
            .owned
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })?;
    SHARDS_IN_USE.fetch_max(index + 1, Ordering::Relaxed);
    // SAFETY: `key` came from pthread_key_create; the value is an integer in pointer form,
    // never dereferenced. glibc stores the first 32 keys' values without allocating.
    if unsafe { libc::pthread_setspecific(key, index as *const libc::c_void) } != 0 {
        SHARD_TABLE[index].owned.store(false, Ordering::Release);
        return None;
    }
    Some(index)
}

fn release_key() -> Option<libc::pthread_key_t> {
    static CREATE: std::sync::Once = std::sync::Once::new();
    CREATE.call_once(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is writable; `release_shard` has the destructor signature.
        if unsafe { libc::pthread_key_create(&mut key, Some(release_shard)) } == 0 {
            RELEASE_KEY.store(key as usize, Ordering::Release);
        }
    });
    let key = RELEASE_KEY.load(Ordering::Acquire);
    (key != usize::MAX).then_some(key as libc::pthread_key_t)
}

/// Thread-exit destructor: hands the shard back.
/// Anything the thread frees after this (in later destructors) goes to the shared shard.
extern "C" fn release_shard(value: *mut libc::c_void) {
    let index = value as usize;
    FAST_SHARD.with(|s| s.set(std::ptr::null()));
    CLAIM.with(|c| c.set(RETIRED));
    if let Some(shard) = SHARD_TABLE.get(index).filter(|_| index != 0) {
        shard.owned.store(false, Ordering::Release);
    }
}

/// Sums every shard. Threads keep running meanwhile, so figures read at different instants
/// may be off by the operations in flight.
pub(crate) fn totals() -> Stats {
    let (mut allocs, mut alloc_bytes, mut frees, mut freed_bytes) = (0u64, 0u64, 0u64, 0u64);
    for shard in &SHARD_TABLE {
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
