//! Poisson sampling over bytes, the scheme of tcmalloc, Go, jemalloc and heapprofd.
//!
//! Think of every allocated byte as a point in time; mark each with probability `1/R`. An
//! allocation is sampled when one of its bytes is marked, which happens with probability
//! `p(s) = 1 − e^(−s/R)` for an allocation of `s` bytes. The gaps between marks are
//! exponential with mean `R`, so each thread keeps a countdown of bytes to the next mark
//! (the fast path only subtracts from it) and draws a new gap when it runs out. Because the
//! exponential distribution is memoryless, the countdown left over after unsampled
//! allocations is still a fresh draw, and the next gap can be drawn from scratch.
//!
//! Each sample carries its Horvitz–Thompson weight `1/p(s)`, computed with the rate its
//! countdown was drawn with: it stands for `1/p(s)` allocations and `s/p(s)` bytes. Sums of
//! weights are unbiased per allocation, so a site that mixes sizes, or a rate changed at run
//! time, still adds up (dividing a site's samples by its *average* size is biased).
//!
//! `R = 1` samples every allocation with weight 1 (exact mode); `R = 0` samples nothing.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The longest countdown: a thread whose countdown runs this far re-reads the configuration
/// (and the peak is checked), so a new rate set at run time reaches every thread, and the
/// peak stays within a MiB per thread. A gap drawn longer than this is cut into a *horizon*:
/// reaching it samples nothing; it only proves that no mark fell in the bytes before it.
const HORIZON_BYTES: i64 = 1 << 20;

/// The probability that an allocation of `size` bytes is sampled at mean interval `rate`.
pub fn sample_probability(size: usize, rate: u64) -> f64 {
    match rate {
        0 => 0.0,
        1 => 1.0,
        _ => -f64::exp_m1(-(size as f64) / rate as f64),
    }
}

/// How many allocations one sample of `size` bytes stands for at mean interval `rate`
/// (`1/p(s)`); the bytes it stands for are `size` times this.
pub(crate) fn sample_weight(size: usize, rate: u64) -> f64 {
    let p = sample_probability(size, rate);
    if p > 0.0 {
        1.0 / p
    } else {
        0.0
    }
}

/// A seeded source of exponential gaps (xorshift64*, enough for sampling decisions).
#[derive(Clone, Debug)]
pub(crate) struct GapSource {
    state: u64,
}

impl GapSource {
    /// A source with a fixed seed (any value; zero is remapped).
    pub const fn new(seed: u64) -> Self {
        Self {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// A uniform draw in (0, 1].
    fn next_unit(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let bits = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// The bytes until the next mark at mean interval `rate`: exponential with mean `rate`
    /// (at least 1, saturating at `i64::MAX`); always 1 in exact mode; never (`i64::MAX`)
    /// when sampling is off.
    pub(crate) fn next_gap(&mut self, rate: u64) -> i64 {
        match rate {
            0 => i64::MAX,
            1 => 1,
            _ => {
                let gap = -self.next_unit().ln() * rate as f64;
                // `as` saturates: a float past i64::MAX becomes i64::MAX.
                (gap.ceil() as i64).max(1)
            }
        }
    }
}

/// A thread's sampling state, stepped by `Countdown::decide` (in tests; the allocator runs the
/// same steps split across its fast and slow paths): the pure logic behind the
/// thread-local countdown, testable with a fixed seed.
#[derive(Clone, Debug)]
pub(crate) struct Countdown {
    /// Bytes left before the next mark, or before the horizon.
    left: i64,
    /// The rate `left` was drawn with, or `None` before the first draw.
    rate: Option<u64>,
    /// Whether `left` ends at a horizon (the gap drawn was longer than a MiB) rather than
    /// at a mark.
    horizon: bool,
    /// The gap source.
    gaps: GapSource,
}

impl Countdown {
    /// A countdown that draws its first gap on the first allocation.
    #[cfg(test)]
    pub(crate) const fn new(seed: u64) -> Self {
        Self {
            left: 0,
            rate: None,
            horizon: false,
            gaps: GapSource::new(seed),
        }
    }

    /// Takes an allocation of `size` bytes at the rate now in force; returns the sample's
    /// weight (allocations it stands for) if it is sampled. (The allocator runs the same
    /// steps split across its fast and slow paths.)
    #[cfg(test)]
    pub(crate) fn decide(&mut self, size: usize, rate_now: u64) -> Option<f64> {
        self.left -= size as i64;
        if self.left > 0 {
            return None;
        }
        self.expired(size, rate_now)
    }

    /// The slow half of `Countdown::decide`: the countdown reached zero at an allocation of
    /// `size` bytes (already subtracted).
    pub(crate) fn expired(&mut self, size: usize, rate_now: u64) -> Option<f64> {
        let weight = match self.rate {
            // A mark drawn at `rate` fell in this allocation: sampled with that rate's weight.
            Some(rate) if rate != 0 && !self.horizon => Some(sample_weight(size, rate)),
            // Sampling was off: this was only a re-check.
            Some(_) if !self.horizon => None,
            // A horizon, or the thread's first allocation (counted down from 0): no mark
            // fell before the `rest` bytes of this allocation that lie past it. The gaps
            // are memoryless, so whether one falls in those is a fresh draw at the rate now
            // in force.
            _ => {
                let rest = self.left.saturating_neg();
                let gap = self.gaps.next_gap(rate_now);
                (rate_now != 0 && gap <= rest).then(|| sample_weight(size, rate_now))
            }
        };
        self.rate = Some(rate_now);
        // Memoryless again: the next gap starts afresh after this allocation.
        let gap = self.gaps.next_gap(rate_now);
        self.horizon = gap > HORIZON_BYTES;
        self.left = gap.min(HORIZON_BYTES);
        weight
    }
}

/// The rate of the most recent sampling decision (`u64::MAX`: none yet), for the report.
static RATE_IN_USE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Notes the rate a sampling decision used. Stores only on a change: in exact mode every
/// allocation passes here, on every thread, and a store to a shared line each time would
/// bounce it between cores.
pub(crate) fn note_rate_in_use(rate: u64) {
    if RATE_IN_USE.load(Ordering::Relaxed) != rate {
        RATE_IN_USE.store(rate, Ordering::Relaxed);
    }
}

/// The sampling rate in force, as the report states it: the rate of the latest sampling
/// decision, or the configured one before any.
pub(crate) fn rate_in_use() -> u64 {
    match RATE_IN_USE.load(Ordering::Relaxed) {
        u64::MAX => crate::config::effective_rate(None),
        rate => rate,
    }
}

static SEEDS: AtomicU64 = AtomicU64::new(0x853C_49E6_748F_EA9B);

/// One thread's sampling state, one of its counter shard's fields (see `counters`): written
/// only by the thread that owns the shard, read by nobody else. The fast path only
/// subtracts from [`ThreadSampler::left`]; the rest is the slow path's.
///
/// A shard handed back at thread exit keeps its state for the next thread that claims it:
/// the countdown left over is still a valid draw (the gaps are memoryless) at the rate it
/// records.
pub(crate) struct ThreadSampler {
    /// Bytes left before the next sampling decision. Never positive in the shared shards of
    /// threads off the fast path, so that their every allocation takes the slow path: the
    /// one test of the fast path is this countdown.
    left: AtomicI64,
    /// The rate `left` was drawn with, `u64::MAX` before the first draw.
    rate: AtomicU64,
    /// Whether `left` ends at a horizon rather than a mark (see [`Countdown::horizon`]).
    horizon: AtomicBool,
    /// The gap source's state, 0 before it is seeded.
    gaps: AtomicU64,
}

impl ThreadSampler {
    /// A state whose first allocation takes the slow path and draws a gap.
    pub(crate) const fn new() -> Self {
        Self {
            left: AtomicI64::new(0),
            rate: AtomicU64::new(u64::MAX),
            horizon: AtomicBool::new(false),
            gaps: AtomicU64::new(0),
        }
    }

    /// The fast path: subtracts `size` from the countdown; `false` when it ran out (or this
    /// is a shared state off the fast path) and the slow path must run.
    #[inline(always)]
    pub(crate) fn take(&self, size: usize) -> bool {
        // Written as a subtraction whose result is not reused, then a fresh load: the
        // compiler emits one subtraction in memory and a compare with memory (two
        // instructions fewer than a load, subtraction, store and test).
        self.left.store(
            self.left.load(Ordering::Relaxed).wrapping_sub(size as i64),
            Ordering::Relaxed,
        );
        self.left.load(Ordering::Relaxed) > 0
    }

    /// Keeps a shared state's countdown from ever running: written by every thread off the
    /// fast path, it only decreases, and is put back to zero long before it could wrap.
    pub(crate) fn hold_off(&self) {
        if self.left.load(Ordering::Relaxed) < i64::MIN / 2 {
            self.left.store(0, Ordering::Relaxed);
        }
    }

    /// The slow path after [`ThreadSampler::take`] ran out: the sample's weight if this
    /// allocation of `size` bytes is sampled. Draws the next gap at `rate_now`.
    pub(crate) fn expired(&self, size: usize, rate_now: u64) -> Option<f64> {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate_now == 1 && rate == 1 {
            // Exact mode, still in force: every allocation is a sample of weight 1.
            self.left.store(1, Ordering::Relaxed);
            return Some(1.0);
        }
        let mut seed = self.gaps.load(Ordering::Relaxed);
        if seed == 0 {
            // A distinct seed per state: a global Weyl sequence mixed with the clock.
            seed = SEEDS.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                ^ crate::clock::monotonic_ns().rotate_left(32);
        }
        let mut countdown = Countdown {
            left: self.left.load(Ordering::Relaxed),
            rate: (rate != u64::MAX).then_some(rate),
            horizon: self.horizon.load(Ordering::Relaxed),
            gaps: GapSource::new(seed),
        };
        let weight = countdown.expired(size, rate_now);
        self.left.store(countdown.left, Ordering::Relaxed);
        self.rate
            .store(countdown.rate.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.horizon.store(countdown.horizon, Ordering::Relaxed);
        self.gaps.store(countdown.gaps.state, Ordering::Relaxed);
        weight
    }

    /// Stops the countdown (every allocation of the owner then takes the slow path, as a
    /// [`crate::Scope`] needs) and returns what was left of it, for [`Self::resume`].
    pub(crate) fn set_aside(&self) -> i64 {
        self.left.swap(0, Ordering::Relaxed)
    }

    /// Keeps the countdown stopped after an allocation recorded in a scope.
    pub(crate) fn keep_aside(&self) {
        self.left.store(0, Ordering::Relaxed);
    }

    /// Resumes a countdown set aside (the gaps are memoryless: the bytes allocated meanwhile
    /// were all recorded, and sampling goes on as if they had not been allocated).
    pub(crate) fn resume(&self, left: i64) {
        self.left.store(left, Ordering::Relaxed);
    }

    /// Makes the next allocation re-read the rate in force and draw a new countdown.
    pub(crate) fn restart(&self) {
        self.left.store(0, Ordering::Relaxed);
        self.rate.store(u64::MAX, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_and_weight() {
        assert_eq!(sample_probability(100, 0), 0.0);
        assert_eq!(sample_weight(100, 1), 1.0);
        let p = sample_probability(512 * 1024, 512 * 1024);
        assert!((p - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        // Tiny allocations: p ≈ s/R, so the weight in bytes ≈ R.
        let bytes = 16.0 * sample_weight(16, 1 << 19);
        assert!((bytes - (1 << 19) as f64).abs() < 16.0, "{bytes}");
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "millions of draws: too slow interpreted, and no unsafe code"
    )]
    fn gaps_have_the_configured_mean() {
        // Exponential with mean R has standard deviation R: the mean of n draws has standard
        // error R/sqrt(n). With n = 200_000 and a 6-sigma tolerance the false-failure rate is
        // about 2e-9; the seed is fixed, so the test is deterministic anyway.
        let rate = 4096u64;
        let n = 200_000;
        let mut gaps = GapSource::new(42);
        let mean = (0..n).map(|_| gaps.next_gap(rate) as f64).sum::<f64>() / n as f64;
        let tolerance = 6.0 * rate as f64 / (n as f64).sqrt();
        // `ceil` adds half a byte on average.
        assert!(
            (mean - rate as f64 - 0.5).abs() < tolerance,
            "mean gap {mean}"
        );
    }

    #[test]
    fn exact_mode_samples_everything_and_off_samples_nothing() {
        let mut exact = Countdown::new(1);
        assert!((0..1000).all(|i| exact.decide(1 + i % 64, 1) == Some(1.0)));
        let mut off = Countdown::new(1);
        assert!((0..1000).all(|_| off.decide(1 << 20, 0).is_none()));
    }

    #[test]
    fn a_new_rate_is_picked_up_at_the_next_expiry() {
        let mut countdown = Countdown::new(7);
        for _ in 0..10_000 {
            countdown.decide(64, 1 << 20);
        }
        // Switch to exact mode: at most one interval of the old rate passes before it holds.
        let mut allocated = 0;
        while countdown.rate != Some(1) {
            countdown.decide(64, 1);
            allocated += 64;
            assert!(allocated < 64 << 20, "never switched");
        }
        assert_eq!(countdown.decide(64, 1), Some(1.0));
    }

    /// Horvitz–Thompson: whatever the sizes, the sum of the weights of the sampled
    /// allocations estimates the number of allocations (and bytes) without bias — also at
    /// rates where most gaps are longer than the 1 MiB horizon (512 KiB: 14% of them;
    /// 4 MiB: 78%), which must not count as samples.
    #[test]
    #[cfg_attr(
        miri,
        ignore = "millions of draws: too slow interpreted, and no unsafe code"
    )]
    fn weighted_sums_are_unbiased_for_mixed_sizes() {
        let sizes = [16usize, 200, 3000, 48_000, 250_000];
        for (rate, n_allocs) in [(64 << 10, 20_000), (512 << 10, 40_000), (4 << 20, 100_000)] {
            let true_bytes: f64 = (0..n_allocs).map(|i| sizes[i % sizes.len()] as f64).sum();
            let trials = 200;
            let mut estimates = Vec::new();
            let mut countdown = Countdown::new(2024);
            for _ in 0..trials {
                let mut bytes = 0.0;
                for i in 0..n_allocs {
                    let size = sizes[i % sizes.len()];
                    if let Some(weight) = countdown.decide(size, rate) {
                        bytes += weight * size as f64;
                    }
                }
                estimates.push(bytes);
            }
            let mean = estimates.iter().sum::<f64>() / trials as f64;
            let var =
                estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (trials - 1) as f64;
            let standard_error = (var / trials as f64).sqrt();
            // 5 standard errors: a false failure about once in 1.7 million seeds.
            assert!(
                (mean - true_bytes).abs() < 5.0 * standard_error,
                "rate {rate}: mean {mean} vs truth {true_bytes}, standard error {standard_error}"
            );
            // And the estimate is useful: each trial within 10% of the truth on average.
            assert!(standard_error * (trials as f64).sqrt() < 0.1 * true_bytes);
        }
    }

    /// Small allocations are marked once per `rate` bytes on average, whatever the horizon:
    /// n marks in B bytes is Poisson with mean B/R, standard error sqrt(B/R).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "millions of draws: too slow interpreted, and no unsafe code"
    )]
    fn marks_come_once_per_rate_bytes() {
        for rate in [256u64 << 10, 512 << 10, 2 << 20, 16 << 20] {
            let mut countdown = Countdown::new(99);
            let allocations = 20_000_000u64;
            let samples = (0..allocations)
                .filter(|_| countdown.decide(64, rate).is_some())
                .count() as f64;
            // Each 64-byte allocation holds at most one sample: expect B/R marks, minus the
            // rare second mark inside one allocation (about 64/(2R) of them).
            let expected = (allocations * 64) as f64 / rate as f64;
            let tolerance = 5.0 * expected.sqrt() + expected * 64.0 / rate as f64;
            assert!(
                (samples - expected).abs() < tolerance,
                "rate {rate}: {samples} samples, expected {expected} ± {tolerance}"
            );
        }
    }
}
