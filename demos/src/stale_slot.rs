//! Pattern 8, slots vacated without being cleared: a job queue is a ring buffer of
//! `Option<Arc<Job>>` slots. Its `pop` copies the `Arc` out (a cheap reference-count bump)
//! and moves the head index on, but leaves the `Arc` in the slot, so every finished job
//! stays alive until its slot happens to be reused: once traffic has wrapped the ring,
//! an empty queue holds a full ring of dead jobs (`stale-slot-leak`), however small the
//! real backlog ever was (here, bursts of at most 16 jobs in a ring of 1024 slots). The fix takes the
//! job out of its slot with `Option::take` (`stale-slot-fixed`).
//!
//! Both allocate a job's payload at the same line (`leak-site`).

use crate::cli::{self, Demo, Knob, Opts, Progress};
use std::sync::Arc;

/// The stale-slot demo's command line.
pub const DEMO: Demo = Demo {
    name: "stale-slot",
    leak: "a ring-buffer job queue pops by copying the Arc out and leaving it in its slot",
    fix: "the ring-buffer job queue pops with Option::take, clearing the slot",
    unit: "jobs",
    count: Knob {
        long: "count",
        default: "2000",
        help: "Jobs to queue and run, in bursts of 1 to 16",
    },
    size: Knob {
        long: "size",
        default: "128k",
        help: "Bytes of each job's payload",
    },
    seconds: "6",
    keep: Some(Knob {
        long: "slots",
        default: "1024",
        help: "Slots in the ring buffer",
    }),
};

/// Most jobs in one burst: the queue never holds more than this many at once.
pub const MAX_BURST: u64 = 16;

/// A fixed-capacity FIFO queue in a ring of slots.
pub struct Ring<T> {
    slots: Vec<Option<T>>,
    head: usize,
    len: usize,
}

impl<T: Clone> Ring<T> {
    /// An empty ring of `capacity` slots (at least one).
    pub fn new(capacity: usize) -> Self {
        Ring {
            slots: (0..capacity.max(1)).map(|_| None).collect(),
            head: 0,
            len: 0,
        }
    }

    /// Appends `item`, or gives it back when the ring is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.len == self.slots.len() {
            return Err(item);
        }
        let tail = (self.head + self.len) % self.slots.len();
        self.slots[tail] = Some(item);
        self.len += 1;
        Ok(())
    }

    /// The leaky pop: copies the front item out and moves the head on. The slot still
    /// holds its copy (for an `Arc`, a reference) until a later push overwrites it.
    pub fn pop_leaving_slot(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let item = self.slots[self.head].clone();
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        item
    }

    /// The fixed pop: takes the front item out of its slot, leaving `None`.
    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let item = self.slots[self.head].take();
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        item
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots that hold something, queued or not.
    pub fn occupied_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

/// A unit of work.
pub struct Job {
    id: u64,
    payload: Vec<u8>,
}

/// Creates job `id` with a payload of `size` bytes.
#[inline(never)]
fn new_job(id: u64, size: usize) -> Arc<Job> {
    let payload = vec![cli::fill(id); size]; // leak-site
    Arc::new(Job { id, payload })
}

/// Runs `job` (here, a checksum of its payload's ends).
fn work(job: &Job) -> u64 {
    let last = job.payload.last().copied().unwrap_or(0);
    job.id ^ u64::from(last)
}

/// Queues the jobs `ids`, a burst, and runs the queue until it is empty, popping the leaky
/// way or the fixed one. Returns the jobs' checksum.
fn run_burst(
    queue: &mut Ring<Arc<Job>>,
    ids: std::ops::RangeInclusive<u64>,
    size: usize,
    leaky: bool,
) -> u64 {
    for id in ids {
        let queued = queue.push(new_job(id, size));
        assert!(queued.is_ok(), "a burst never exceeds the ring");
    }
    let pop = |queue: &mut Ring<Arc<Job>>| {
        if leaky {
            queue.pop_leaving_slot()
        } else {
            queue.pop()
        }
    };
    let mut checksum = 0;
    while let Some(job) = pop(queue) {
        checksum ^= work(&job);
    }
    checksum
}

/// Queues `opts.count` jobs in bursts and runs each burst until the queue is empty, then
/// exits with the (empty) queue alive.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let slots = usize::try_from(opts.keep).unwrap_or(usize::MAX).max(1);
    let mut queue: Ring<Arc<Job>> = Ring::new(slots);
    let mut progress = Progress::new(&DEMO, opts);
    let describe = |queue: &Ring<Arc<Job>>| {
        format!(
            "Queue length: {}, slots still holding a job: {}",
            queue.len(),
            queue.occupied_slots()
        )
    };
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut checksum = 0u64;
    let mut done = 0u64;
    while done < opts.count {
        // A burst of 1 to MAX_BURST jobs arrives …
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let burst = (1 + seed % MAX_BURST)
            .min(slots as u64)
            .min(opts.count - done);
        // … is queued, and run until the queue is empty.
        checksum ^= run_burst(&mut queue, done + 1..=done + burst, size, leaky);
        done += burst;
        progress.step(done, || describe(&queue));
    }
    progress.finish(done, || describe(&queue));
    println!("Ran {done} jobs (checksum {checksum:016x})");
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::Scope;

    /// Bytes of each job's payload.
    const SIZE: usize = 64 * 1024;
    /// Jobs in the burst measured.
    const BURST: u64 = 3;

    /// The ring's slots are allocated when it is made, before the scope; the burst's jobs
    /// are the scope's.
    #[test]
    fn leaky_pop_leaves_each_job_in_its_slot() {
        let mut queue = Ring::new(8);
        let scope = Scope::start();
        run_burst(&mut queue, 1..=BURST, SIZE, true);
        let usage = scope.finish();
        LeakSite::of("stale_slot.rs").assert_leaks(&usage, BURST * SIZE as u64, BURST);
        assert_eq!((queue.len(), queue.occupied_slots()), (0, BURST as usize));
    }

    #[test]
    fn fixed_pop_retains_nothing() {
        let mut queue = Ring::new(8);
        let scope = Scope::start();
        run_burst(&mut queue, 1..=BURST, SIZE, false);
        scope.finish().assert_retains_at_most(0);
        assert_eq!((queue.len(), queue.occupied_slots()), (0, 0));
    }
}
