//! Heap assertions in tests: [`Scope`] measures one thread exactly, from `start` to
//! `finish`, and names the lines that retain memory.
//!
//! While a scope is open on a thread, that thread records **every** allocation it makes,
//! with its stack, whatever the process's sampling rate (each at weight 1, so the process's
//! estimates stay unbiased); its sampling countdown is set aside and resumed at the end.
//! Other threads keep the process's rate and cost. So the counts are exact and per thread,
//! and many tests can measure themselves at once in `cargo test`'s parallel threads.
//!
//! What a scope counts (its [`Usage`]):
//! - `allocs`, `alloc_bytes`, `frees`, `freed_bytes`: the calls this thread made between
//!   `start` and `finish`, whoever allocated what it freed. A `realloc` counts as one free of
//!   the old size and one allocation of the new size, so code that frees everything it made
//!   has `allocs == frees`.
//! - `retained_allocs`, `retained_bytes`, `retained_sites`: the blocks this thread
//!   allocated in the scope that are still live at `finish`, wherever they would be freed —
//!   a block handed to another thread that frees it before `finish` is not retained.
//!   Allocations made by threads the test spawns are theirs, not the scope's.
//!
//! Scopes nest: an inner scope measures its own stretch, and the outer one includes it.
//! A `Scope` cannot be sent to another thread (it is `!Send`); dropped without `finish`, it
//! just ends; forgotten (`mem::forget`), it leaves its thread recording every allocation
//! until the thread ends (slower, still correct).

use crate::report::Location;
use crate::samples::{self, Sample};
use crate::stacks::{self, StackId};
use crate::symbolize::{self, Naming};
use crate::units::counted;
use crate::{config, counters, reentrancy, snapshot};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of a scope tag holding the thread's allocation sequence number (the rest: the
/// thread's token).
const SEQ_BITS: u32 = 40;

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Scopes open on this thread (they may be finished out of order).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// This thread's token in scope tags (0 until its first scope).
    static TOKEN: Cell<u64> = const { Cell::new(0) };
    /// Allocations this thread recorded in scopes so far.
    static SEQ: Cell<u64> = const { Cell::new(0) };
    /// The sampling countdown set aside while scopes are open.
    static SAVED_COUNTDOWN: Cell<i64> = const { Cell::new(0) };
}

/// Whether this thread has a scope open: every allocation it makes is recorded.
#[inline]
pub(crate) fn active() -> bool {
    DEPTH.with(Cell::get) > 0
}

/// The tag of the next allocation recorded in a scope on this thread (never 0).
pub(crate) fn next_tag() -> u64 {
    let seq = SEQ.with(|seq| {
        let next = seq.get() + 1;
        seq.set(next);
        next
    });
    (TOKEN.with(Cell::get) << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))
}

/// Exact, per-thread heap accounting for a stretch of code: the heap assertions of tests.
///
/// ```no_run
/// // In a test binary whose global allocator is the tracker:
/// // #[global_allocator]
/// // static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();
/// let scope = alloc_tracker::Scope::start();
/// let kept: Vec<u8> = Vec::with_capacity(4096); // retained at `finish`
/// let usage = scope.finish();
/// assert_eq!(usage.retained_bytes, 4096);
/// drop(kept);
/// ```
///
/// See the module notes for what is counted. Panics at `start` when the tracker is not the
/// global allocator (it would otherwise report nothing).
#[must_use = "a scope measures until `finish`"]
pub struct Scope {
    token: u64,
    first_seq: u64,
    allocs: u64,
    alloc_bytes: u64,
    frees: u64,
    freed_bytes: u64,
    finished: bool,
    /// Not `Send`: a scope measures the thread that started it.
    _thread: PhantomData<*const ()>,
}

/// What a [`Scope`] measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Allocations this thread made (a `realloc` is one, of its new size).
    pub allocs: u64,
    /// Bytes of those allocations.
    pub alloc_bytes: u64,
    /// Frees this thread made (a `realloc` is one, of its old size).
    pub frees: u64,
    /// Bytes of those frees.
    pub freed_bytes: u64,
    /// Blocks allocated in the scope and still live at `finish`.
    pub retained_allocs: u64,
    /// Bytes of those blocks.
    pub retained_bytes: u64,
    /// Where those blocks were allocated, most bytes first.
    pub retained_sites: Vec<RetainedSite>,
}

/// A line that allocated memory still live at the end of a [`Scope`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetainedSite {
    /// The function, as the report names sites (the first frame of the program's code).
    pub function: String,
    /// Its source file, where debug info tells.
    pub file: Option<String>,
    /// Its line.
    pub line: Option<u32>,
    /// Bytes retained from here.
    pub bytes: u64,
    /// Blocks retained from here.
    pub allocs: u64,
}

impl Scope {
    /// Starts measuring the current thread.
    ///
    /// # Panics
    /// When the tracker is not this program's global allocator: add
    /// `#[global_allocator] static ALLOC: alloc_tracker::Tracker =
    /// alloc_tracker::Tracker::system();` to the test binary (for example in
    /// `tests/heap.rs`, since each integration test is its own binary).
    pub fn start() -> Scope {
        let counts = if active() {
            // An open scope proved already that the tracker counts this thread.
            Some(counters::this_thread().counts())
        } else {
            tracked_counts()
        };
        let Some(counts) = counts else {
            panic!(
                "alloc_tracker::Scope needs the tracker as the global allocator of this \
                 binary: add `#[global_allocator] static ALLOC: alloc_tracker::Tracker = \
                 alloc_tracker::Tracker::system();` (in a test binary of its own, e.g. \
                 tests/heap.rs)"
            );
        };
        if TOKEN.with(Cell::get) == 0 {
            TOKEN.with(|token| token.set(NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)));
        }
        let depth = DEPTH.with(|depth| {
            depth.set(depth.get() + 1);
            depth.get()
        });
        if depth == 1 {
            // From here on every allocation of this thread takes the slow path.
            let shard = counters::this_thread();
            SAVED_COUNTDOWN.with(|saved| saved.set(shard.sampler.set_aside()));
        }
        let (allocs, alloc_bytes, frees, freed_bytes) = counts;
        Scope {
            token: TOKEN.with(Cell::get),
            first_seq: SEQ.with(Cell::get) + 1,
            allocs,
            alloc_bytes,
            frees,
            freed_bytes,
            finished: false,
            _thread: PhantomData,
        }
    }

    /// Stops measuring and returns what the thread did meanwhile, and what it retains.
    pub fn finish(mut self) -> Usage {
        let (allocs, alloc_bytes, frees, freed_bytes) = counters::this_thread().counts();
        let mut usage = Usage {
            allocs: allocs.wrapping_sub(self.allocs),
            alloc_bytes: alloc_bytes.wrapping_sub(self.alloc_bytes),
            frees: frees.wrapping_sub(self.frees),
            freed_bytes: freed_bytes.wrapping_sub(self.freed_bytes),
            ..Usage::default()
        };
        let (first, last) = (self.first_seq, SEQ.with(Cell::get));
        self.end();
        let mine = |tag: u64| {
            tag >> SEQ_BITS == self.token && (first..=last).contains(&(tag & ((1 << SEQ_BITS) - 1)))
        };
        let internal = reentrancy::untracked(|| retained(mine));
        usage.retained_allocs = internal.iter().map(|s| s.allocs).sum();
        usage.retained_bytes = internal.iter().map(|s| s.bytes).sum();
        // The caller's memory, as `crate::report` hands its result over.
        usage.retained_sites = internal.clone();
        reentrancy::untracked(move || drop(internal));
        usage
    }

    /// Ends this scope's share of the thread's exact recording.
    fn end(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let depth = DEPTH.with(|depth| {
            depth.set(depth.get().saturating_sub(1));
            depth.get()
        });
        if depth == 0 {
            let shard = counters::this_thread();
            shard.sampler.resume(SAVED_COUNTDOWN.with(Cell::get));
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.end();
    }
}

/// This thread's (allocations, bytes allocated, frees, bytes freed) so far, once a probe
/// allocation shows that the tracker counts them; `None` when it does not (the tracker is
/// not the global allocator).
fn tracked_counts() -> Option<(u64, u64, u64, u64)> {
    let before = counters::this_thread().counts();
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    let shard = counters::this_thread();
    if shard.is_off_fast_path() {
        return None;
    }
    let after = shard.counts();
    (after.0 > before.0).then_some(after)
}

/// The live samples `mine` accepts the tag of, grouped by site, most bytes first. Runs as
/// tracker code.
fn retained(mine: impl Fn(u64) -> bool) -> Vec<RetainedSite> {
    let mut by_stack: HashMap<StackId, (u64, u64)> = HashMap::new();
    samples::for_each(|sample: &Sample| {
        if sample.scope != 0 && mine(sample.scope) {
            let entry = by_stack.entry(sample.stack).or_default();
            entry.0 += sample.size as u64;
            entry.1 += 1;
        }
    });
    let mut by_site: HashMap<Location, (u64, u64)> = HashMap::new();
    for (stack, (bytes, allocs)) in by_stack {
        let site = match stacks::frames_of(stack) {
            Some(frames) => {
                snapshot::symbolize_stack(&frames, config::depth(), |address| {
                    symbolize::resolve(address, Naming::DebugInfo)
                })
                .0
            }
            None => Location::named("[other stacks]"),
        };
        let entry = by_site.entry(site).or_default();
        entry.0 += bytes;
        entry.1 += allocs;
    }
    // The debug info stays loaded: a test binary finishes many scopes, and naming each
    // one's sites afresh would reload it every time (a tenth of a second or more).
    let mut sites: Vec<RetainedSite> = by_site
        .into_iter()
        .map(|(site, (bytes, allocs))| RetainedSite {
            function: site.function,
            file: site.file,
            line: site.line,
            bytes,
            allocs,
        })
        .collect();
    sites.sort_by(|a, b| {
        (b.bytes, b.allocs)
            .cmp(&(a.bytes, a.allocs))
            .then_with(|| a.function.cmp(&b.function))
    });
    sites
}

impl Usage {
    /// Bytes allocated minus bytes freed by this thread in the scope: how much its heap
    /// grew. Unlike [`Usage::retained_bytes`], a bounded cache that replaced old entries
    /// (made before the scope) with new ones did not grow.
    pub fn growth_bytes(&self) -> i64 {
        self.alloc_bytes as i64 - self.freed_bytes as i64
    }

    /// The bytes retained from line `line` of a file whose path ends with `file` (say
    /// `"src/cache.rs"`): what a test pins a leak to.
    pub fn retained_at(&self, file: &str, line: u32) -> u64 {
        self.retained_sites
            .iter()
            .filter(|site| {
                site.line == Some(line) && site.file.as_deref().is_some_and(|f| f.ends_with(file))
            })
            .map(|site| site.bytes)
            .sum()
    }

    /// Panics unless this thread's heap grew by at most `bytes` in the scope (see
    /// [`Usage::growth_bytes`]), naming the lines that retain memory.
    #[track_caller]
    pub fn assert_grows_at_most(&self, bytes: u64) {
        if self.growth_bytes() > bytes as i64 {
            panic!(
                "the scope's heap grew by {} bytes (at most {bytes} allowed):\n{self}",
                self.growth_bytes()
            );
        }
    }

    /// Panics unless the scope retained at most `bytes`, naming each line that retains
    /// memory (function, `file:line`, bytes and blocks).
    ///
    /// ```no_run
    /// let scope = alloc_tracker::Scope::start();
    /// // ... code that must not keep anything ...
    /// scope.finish().assert_retains_at_most(0);
    /// ```
    #[track_caller]
    pub fn assert_retains_at_most(&self, bytes: u64) {
        if self.retained_bytes > bytes {
            panic!(
                "the scope retains {} bytes in {} (at most {bytes} allowed):\n{self}",
                self.retained_bytes,
                counted(self.retained_allocs, "block")
            );
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({} bytes), {} ({} bytes); retained {} bytes in {}",
            counted(self.allocs, "allocation"),
            self.alloc_bytes,
            counted(self.frees, "free"),
            self.freed_bytes,
            self.retained_bytes,
            counted(self.retained_allocs, "block")
        )?;
        for site in &self.retained_sites {
            let place = match (&site.file, site.line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                (Some(file), None) => file.clone(),
                _ => "(no debug info)".to_string(),
            };
            writeln!(
                f,
                "  {} bytes in {} at {}  {place}",
                site.bytes,
                counted(site.allocs, "block"),
                site.function
            )?;
        }
        Ok(())
    }
}
