//! The allocator front: the only `GlobalAlloc` implementation. It forwards every call to
//! the inner allocator, then runs the tracker's hooks: exact counters and the sampling
//! countdown on the fast path, the sample tables only when the countdown runs out or when a
//! freed pointer may have been sampled.

use crate::config::{self, Unwind};
use crate::samples::{self, Inserted, Sample};
use crate::{
    capture, clock, counters, emergency, filter, lifecycle, peak, reentrancy, sampler, scope,
    stacks, tracker_memory,
};
use std::alloc::{GlobalAlloc, Layout, System};

/// Marks a code setting that was not given.
const UNSET_RATE: u64 = u64::MAX;

/// A global allocator that wraps another (`A`, the system allocator by default), counts
/// every allocation exactly, samples some with their stacks, and reports at exit which
/// lines of the program hold memory.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();
///
/// fn main() {
///     let kept: Vec<Vec<u8>> = (0..100).map(|_| vec![0u8; 1 << 20]).collect();
///     println!("live: {} bytes", alloc_tracker::stats().live_bytes);
///     # drop(kept);
/// } // on exit, the report goes to stderr (see ALLOC_TRACKER_REPORT)
/// ```
///
/// Any `GlobalAlloc` can be wrapped, e.g. `Tracker::new(tikv_jemallocator::Jemalloc)`.
/// Settings given in code (`with_sample_rate`, `with_unwind`) are defaults: the
/// `ALLOC_TRACKER_*` environment variables override them, and the runtime setters
/// ([`crate::set_sample_rate`], [`crate::set_unwind`]) override both.
pub struct Tracker<A = System> {
    inner: A,
    code_rate: u64,
    code_unwind: u8,
}

impl Tracker<System> {
    /// A tracker around [`std::alloc::System`].
    pub const fn system() -> Self {
        Self::new(System)
    }
}

impl<A> Tracker<A> {
    /// A tracker around `inner`.
    pub const fn new(inner: A) -> Self {
        Self {
            inner,
            code_rate: UNSET_RATE,
            code_unwind: 0,
        }
    }

    /// The same tracker sampling once per `bytes` allocated on average (`1`: every
    /// allocation; `0`: none), unless `ALLOC_TRACKER_RATE` says otherwise.
    pub const fn with_sample_rate(mut self, bytes: u64) -> Self {
        self.code_rate = bytes;
        self
    }

    /// The same tracker capturing stacks with `unwind`, unless `ALLOC_TRACKER_UNWIND` says
    /// otherwise.
    pub const fn with_unwind(mut self, unwind: Unwind) -> Self {
        self.code_unwind = unwind.to_code();
        self
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    fn code_rate(&self) -> Option<u64> {
        (self.code_rate != UNSET_RATE).then_some(self.code_rate)
    }

    /// Counts an allocation and runs the sampling countdown: the fast path is one load of
    /// this thread's shard, one test of its countdown, two counter updates.
    #[inline(always)]
    fn after_alloc(&self, ptr: *mut u8, size: usize) {
        let shard = counters::this_thread();
        if shard.sampler.take(size) {
            shard.count_alloc(size);
        } else {
            self.after_alloc_slow(ptr, size);
        }
    }

    /// [`Self::after_alloc`] when the countdown ran out, or for a thread off the fast path:
    /// tracker code, or a thread without a counter shard of its own (yet, or any more).
    #[cold]
    #[inline(never)]
    fn after_alloc_slow(&self, ptr: *mut u8, size: usize) {
        if reentrancy::is_busy() {
            counters::hold_off();
            tracker_memory::on_alloc(size);
            return;
        }
        let mut shard = counters::this_thread();
        if shard.is_off_fast_path() {
            let Some(claimed) = counters::claim() else {
                // In TLS destructors, after the thread handed its shard back: counted, not
                // sampled.
                counters::count_alloc_shared(size);
                return;
            };
            shard = claimed;
            // The thread's first allocation starts its countdown.
            if shard.sampler.take(size) {
                shard.count_alloc(size);
                return;
            }
        }
        shard.count_alloc(size);
        self.decide(shard, ptr, size);
    }

    /// Counts a free, and removes its sample if it has one, for a thread off the fast path
    /// or a pointer the filter cannot clear. Runs before the inner free, so that the address
    /// cannot be handed out (and sampled) again while its old sample is still in the table.
    #[cold]
    #[inline(never)]
    fn before_free_slow(&self, ptr: *mut u8, size: usize) {
        if reentrancy::is_busy() {
            counters::hold_off();
            tracker_memory::on_free(size);
            return;
        }
        let shard = counters::this_thread();
        if !shard.is_off_fast_path() {
            shard.count_free(size);
        } else if let Some(claimed) = counters::claim() {
            claimed.count_free(size);
        } else {
            counters::count_free_shared(size);
        }
        if filter::may_be_sampled(ptr) {
            forget_sample(ptr);
        }
    }

    /// The countdown of `shard`'s thread ran out: record the allocation if a scope is open on
    /// this thread, else decide whether it is a sample.
    #[inline]
    fn decide(&self, shard: &counters::Shard, ptr: *mut u8, size: usize) {
        if scope::active() {
            self.record_in_scope(shard, ptr, size);
        } else {
            self.at_sample_point(shard, ptr, size);
        }
    }

    /// Records an allocation made while a [`crate::Scope`] is open on this thread: every
    /// one, at weight 1 (see `scope`).
    #[cold]
    #[inline(never)]
    fn record_in_scope(&self, shard: &counters::Shard, ptr: *mut u8, size: usize) {
        let _guard = reentrancy::enter();
        lifecycle::ensure_started();
        shard.sampler.keep_aside();
        let unwind = config::effective_unwind(Unwind::from_code(self.code_unwind));
        record_sample(ptr, size, 1.0, unwind, scope::next_tag());
        watch_the_heap(shard);
    }

    /// The countdown of `shard`'s thread ran out: decide, and record the sample if this
    /// allocation is one.
    #[cold]
    #[inline(never)]
    fn at_sample_point(&self, shard: &counters::Shard, ptr: *mut u8, size: usize) {
        let _guard = reentrancy::enter();
        lifecycle::ensure_started();
        let rate = config::effective_rate(self.code_rate());
        sampler::note_rate_in_use(rate);
        if let Some(weight) = shard.sampler.expired(size, rate) {
            let unwind = config::effective_unwind(Unwind::from_code(self.code_unwind));
            record_sample(ptr, size, weight, unwind, 0);
        }
        // After the sample: a capture of the heap at its peak, or an emergency report,
        // must see the allocation that made the peak (one big block may be all of it).
        watch_the_heap(shard);
    }

    /// `realloc` for the cases the fast path leaves: tracker code, a thread off the fast
    /// path, an old block that may hold a sample.
    #[cold]
    #[inline(never)]
    unsafe fn realloc_slow(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8
    where
        A: GlobalAlloc,
    {
        if reentrancy::is_busy() {
            counters::hold_off();
            // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
            let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                tracker_memory::on_free(layout.size());
                tracker_memory::on_alloc(new_size);
            }
            return new;
        }
        // Take the old block's sample out first: once `inner` frees the old address, another
        // thread may be handed it and sample it.
        let old_sample = if filter::may_be_sampled(ptr) {
            take_sample(ptr)
        } else {
            None
        };
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new.is_null() {
            // The old block is still the program's: put its sample back.
            if let Some(sample) = old_sample {
                restore_sample(ptr, sample);
            }
            return new;
        }
        if let Some(sample) = old_sample {
            settle_sample(sample);
        }
        let shard = counters::this_thread();
        if shard.is_off_fast_path() {
            match counters::claim() {
                Some(claimed) => {
                    claimed.count_free(layout.size());
                    if claimed.sampler.take(new_size) {
                        claimed.count_alloc(new_size);
                    } else {
                        claimed.count_alloc(new_size);
                        self.decide(claimed, new, new_size);
                    }
                }
                None => {
                    counters::count_free_shared(layout.size());
                    counters::count_alloc_shared(new_size);
                }
            }
            return new;
        }
        shard.count_free(layout.size());
        shard.count_alloc(new_size);
        if !shard.sampler.take(new_size) {
            self.decide(shard, new, new_size);
        }
        new
    }

    /// `dealloc` for the cases the fast path leaves (see [`Self::before_free_slow`]).
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout)
    where
        A: GlobalAlloc,
    {
        self.before_free_slow(ptr, layout.size());
        // SAFETY: the caller guarantees `ptr` came from this allocator with `layout`; we
        // passed both to `inner` unchanged when it was allocated.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
}

/// At a sampling decision: the live total, summed when this thread grew enough (see
/// `counters::note_peak`), raises the peak and may capture the heap at its high-water mark.
fn watch_the_heap(shard: &counters::Shard) {
    if let Some(live) = counters::note_peak(shard) {
        peak::consider(live, clock::since_start_ns());
        emergency::check(live);
    }
}

/// Captures the stack and records a sample of the block at `ptr`. Runs as tracker code.
#[inline(always)]
fn record_sample(ptr: *mut u8, size: usize, weight: f64, unwind: Unwind, scope: u64) {
    capture::note_unwinder_in_use(unwind);
    let mut buffer = capture::Buffer::new();
    let frames = capture::capture(unwind, config::depth(), &mut buffer);
    let stack = stacks::record_alloc(frames, size, weight, config::max_stacks());
    let sample = Sample {
        size,
        weight,
        stack,
        born_ns: clock::coarse_since_start_ns(),
        scope,
    };
    match samples::insert(ptr as usize, sample) {
        Inserted::New => {}
        // The stale sample's figures are released.
        Inserted::Replaced(old) => stacks::record_free(old.stack, old.size, old.weight),
        // Keep the stack's figures consistent with the table: the sample was not kept.
        Inserted::Dropped => stacks::record_free(stack, size, weight),
    }
}

/// Removes the sample at `ptr`, if there is one, and updates its stack's figures.
#[cold]
#[inline(never)]
fn forget_sample(ptr: *mut u8) {
    let _guard = reentrancy::enter();
    if let Some(sample) = samples::remove(ptr as usize) {
        stacks::record_free(sample.stack, sample.size, sample.weight);
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged, so the
// inner allocator's guarantees (alignment, size, validity) are what the caller gets. The
// hooks only read the pointer's address and the layout's size: they never touch the block.
// They cannot panic, and they cannot re-enter themselves: tracker code runs under the
// reentrancy guard, whose allocations go straight to `inner`.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Tracker<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            self.after_alloc(ptr, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract for `layout`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.after_alloc(ptr, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let shard = counters::this_thread();
        if shard.may_hold_sample(ptr) {
            // SAFETY: forwarded from the caller.
            return unsafe { self.dealloc_slow(ptr, layout) };
        }
        shard.count_free(layout.size());
        // SAFETY: the caller guarantees `ptr` came from this allocator with `layout`; we
        // passed both to `inner` unchanged when it was allocated.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let shard = counters::this_thread();
        if shard.may_hold_sample(ptr) {
            // SAFETY: forwarded from the caller.
            return unsafe { self.realloc_slow(ptr, layout, new_size) };
        }
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if new.is_null() {
            return new;
        }
        shard.count_free(layout.size());
        if shard.sampler.take(new_size) {
            shard.count_alloc(new_size);
        } else {
            shard.count_alloc(new_size);
            self.decide(shard, new, new_size);
        }
        new
    }
}

/// Takes the sample at `ptr` out of the table (its figures stay until [`settle_sample`] or
/// [`restore_sample`]).
#[cold]
#[inline(never)]
fn take_sample(ptr: *mut u8) -> Option<Sample> {
    let _guard = reentrancy::enter();
    samples::remove(ptr as usize)
}

/// Finishes removing a sample taken by [`take_sample`]: its block is gone.
#[cold]
#[inline(never)]
fn settle_sample(sample: Sample) {
    let _guard = reentrancy::enter();
    stacks::record_free(sample.stack, sample.size, sample.weight);
}

/// Puts back a sample taken by [`take_sample`]: its block is still live.
#[cold]
#[inline(never)]
fn restore_sample(ptr: *mut u8, sample: Sample) {
    let _guard = reentrancy::enter();
    match samples::insert(ptr as usize, sample) {
        Inserted::New => {}
        Inserted::Replaced(old) => settle_sample(old),
        Inserted::Dropped => settle_sample(sample),
    }
}
