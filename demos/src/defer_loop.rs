//! Pattern 7, cleanup deferred to the end of a loop: an importer stages each record of a
//! batch in a buffer and pushes the buffer onto a `cleanup` vector "to release when the
//! batch is done", the way Go code `defer`s a close inside a loop. Every buffer of the
//! batch stays alive until the function returns, so memory peaks at the whole batch
//! (`defer-loop-leak`). Nothing is left at exit: the exit report does not show it, the
//! per-site peak does. The fix scopes each iteration: the buffer is dropped at the end
//! of its iteration (`defer-loop-fixed`).
//!
//! Both stage at the same line (`leak-site`).

use crate::cli::{self, Demo, Knob, Opts, Progress};

/// The defer-loop demo's command line.
pub const DEMO: Demo = Demo {
    name: "defer-loop",
    leak: "each record's staging buffer is kept until the whole batch is imported",
    fix: "each record's staging buffer is dropped at the end of its iteration",
    unit: "records",
    count: Knob {
        long: "count",
        default: "2000",
        help: "Records in each batch (each staged in one buffer)",
    },
    size: Knob {
        long: "size",
        default: "64k",
        help: "Bytes of each record's staging buffer",
    },
    seconds: "6",
    keep: Some(Knob {
        long: "batches",
        default: "3",
        help: "Batches to import, one after the other",
    }),
};

/// A record staged for the store.
struct Staged {
    record: u64,
    data: Vec<u8>,
}

/// A store that the importer writes records to (here, a running checksum).
#[derive(Default)]
struct Store {
    written: u64,
    checksum: u64,
}

impl Store {
    fn write(&mut self, staged: &Staged) {
        self.written += 1;
        let first = staged.data.first().copied().unwrap_or(0);
        self.checksum = self.checksum.rotate_left(5) ^ staged.record ^ u64::from(first);
    }
}

/// Stages `record` in a buffer of `size` bytes (decoding, validation, …).
#[inline(never)]
fn stage(record: u64, size: usize) -> Staged {
    let data = vec![cli::fill(record); size]; // leak-site
    Staged { record, data }
}

/// One iteration of the import: stages `record`, writes it to `store`, and reports
/// progress. The leaky importer defers the buffer's release to `cleanup`; the fixed one
/// (no `cleanup`) drops it at the end of the iteration.
fn import_record(
    store: &mut Store,
    record: u64,
    size: usize,
    cleanup: Option<&mut Vec<Staged>>,
    progress: &mut Progress,
) {
    let staged = stage(record, size);
    store.write(&staged);
    if let Some(cleanup) = cleanup {
        cleanup.push(staged);
        let held = cleanup.len();
        progress.step(record, || format!("Staging buffers held: {held}"));
    } else {
        progress.step(record, || "Staging buffers held: 1".to_string());
    } // the fix: `staged` is dropped here, every iteration
}

/// Imports records `first..first + count` into `store`.
#[inline(never)]
fn import_batch(
    store: &mut Store,
    first: u64,
    count: u64,
    size: usize,
    leaky: bool,
    progress: &mut Progress,
) {
    let records = first..first + count;
    if leaky {
        let mut cleanup: Vec<Staged> = Vec::new(); // released when the batch is done
        for record in records {
            import_record(store, record, size, Some(&mut cleanup), progress);
        }
    } else {
        for record in records {
            import_record(store, record, size, None, progress);
        }
    }
}

/// Imports `--batches` batches of `opts.count` records, then exits.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let batches = opts.keep;
    let total = Opts {
        count: opts.count * batches,
        ..opts.clone()
    };
    println!("{batches} batches of {} records", opts.count);
    let mut progress = Progress::new(&DEMO, &total);
    let mut store = Store::default();
    for batch in 0..batches {
        import_batch(
            &mut store,
            1 + batch * opts.count,
            opts.count,
            size,
            leaky,
            &mut progress,
        );
    }
    progress.finish(total.count, || {
        "Staging buffers held: 0 (all batches done)".into()
    });
    println!(
        "Imported {} records (checksum {:016x}); peak heap {}",
        store.written,
        store.checksum,
        cli::human_bytes(alloc_tracker::stats().peak_live_bytes)
    );
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::Scope;

    /// Bytes of each record's staging buffer.
    const SIZE: usize = 64 * 1024;

    /// A progress that prints nothing (and so allocates nothing).
    fn quiet() -> Progress {
        let opts = Opts {
            count: 1,
            size: SIZE as u64,
            seconds: 0.0,
            keep: 1,
            every: Some(u64::MAX),
        };
        Progress::new(&DEMO, &opts)
    }

    /// What leaks here is held until the batch returns, then freed: measured over a whole
    /// batch, both importers retain nothing (the leak is in the peak). So the step is one
    /// iteration, which must not hold on to its buffer.
    #[test]
    fn leaky_iteration_keeps_its_buffer() {
        let (mut store, mut progress) = (Store::default(), quiet());
        let mut cleanup = Vec::new();
        let scope = Scope::start();
        import_record(&mut store, 1, SIZE, Some(&mut cleanup), &mut progress);
        let usage = scope.finish();
        LeakSite::of("defer_loop.rs").assert_leaks(&usage, SIZE as u64, 1);
        assert_eq!(store.written, 1);
    }

    #[test]
    fn fixed_iteration_retains_nothing() {
        let (mut store, mut progress) = (Store::default(), quiet());
        let scope = Scope::start();
        import_record(&mut store, 1, SIZE, None, &mut progress);
        scope.finish().assert_retains_at_most(0);
        assert_eq!(store.written, 1);
    }
}
