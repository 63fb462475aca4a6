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
        for (i, record) in records.enumerate() {
            let staged = stage(record, size);
            store.write(&staged);
            cleanup.push(staged);
            let held = cleanup.len();
            progress.step(first + i as u64, || format!("Staging buffers held: {held}"));
        }
    } else {
        for (i, record) in records.enumerate() {
            let staged = stage(record, size);
            store.write(&staged);
            progress.step(first + i as u64, || "Staging buffers held: 1".to_string());
        } // the fix: `staged` is dropped here, every iteration
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
