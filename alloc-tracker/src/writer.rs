//! Writing reports to their destinations (`ALLOC_TRACKER_REPORT`): one at a time, each file
//! replaced whole, and the exit report last.
//!
//! Reports are asked for on demand ([`crate::write_report`], the report signal) and at exit
//! (return from `main`, `exit` from any thread, an aborting panic, a SIGINT/SIGTERM the
//! program does not handle). The rules:
//!
//! - **One writer at a time.** A report asked for while another is being written waits for
//!   it, at most [`WAIT_FOR_OTHER`]; past that (a report stuck, say, symbolizing on a
//!   thread that the program has stopped) it goes ahead on its own.
//! - **The exit report is written once, and last.** The first exit path claims it; another
//!   exit path that arrives meanwhile (a thread calling `exit` while the signal watcher
//!   writes) waits for it to be finished — bounded the same way — so that the process does
//!   not end under it. On-demand reports asked for after that are skipped.
//! - **Files are replaced whole** (see [`output::write_file_atomically`]): a reader, or a
//!   process killed mid-write, never leaves half a report.
//! - A fork child writes its own files (`heap.<pid>.json`) and starts with no report in
//!   progress.

use crate::config::{self, Destination};
use crate::symbolize::Naming;
use crate::{output, process, reentrancy, snapshot};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The longest a report waits for another one to finish before it goes ahead.
pub(crate) const WAIT_FOR_OTHER: Duration = Duration::from_secs(10);

/// Whether a report is being written, and by which thread (`sys::thread_id`).
static BUSY: AtomicBool = AtomicBool::new(false);
static OWNER: AtomicU64 = AtomicU64::new(0);

const EXIT_NOT_CLAIMED: u8 = 0;
const EXIT_WRITING: u8 = 1;
const EXIT_DONE: u8 = 2;
/// Where the exit report stands.
static EXIT: AtomicU8 = AtomicU8::new(EXIT_NOT_CLAIMED);

/// The pid of the process the tracker started in: its files keep their names; a fork child
/// puts its own pid in them.
static FIRST_PID: AtomicU32 = AtomicU32::new(0);

/// Notes the process the tracker started in (once, at start-up).
pub(crate) fn note_first_process() {
    let pid = std::process::id();
    let _ = FIRST_PID.compare_exchange(0, pid, Ordering::Relaxed, Ordering::Relaxed);
}

/// Writes a report now, unless the exit report has begun. Returns whether it was written.
pub(crate) fn write_on_demand() -> bool {
    if EXIT.load(Ordering::Acquire) != EXIT_NOT_CLAIMED {
        return false;
    }
    let Some(_turn) = Turn::take() else {
        return false;
    };
    if EXIT.load(Ordering::Acquire) != EXIT_NOT_CLAIMED {
        return false;
    }
    write_now(Naming::DebugInfo);
    true
}

/// Writes the exit report, once per process; an exit path that finds it claimed waits for
/// it to be finished (at most [`WAIT_FOR_OTHER`]).
pub(crate) fn write_at_exit() {
    if EXIT
        .compare_exchange(
            EXIT_NOT_CLAIMED,
            EXIT_WRITING,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        wait_until(|| EXIT.load(Ordering::Acquire) == EXIT_DONE);
        return;
    }
    // Wait for an on-demand report in progress (bounded), then write ours regardless: the
    // exit report describes the heap at exit.
    let turn = Turn::take();
    write_now(Naming::DebugInfo);
    drop(turn);
    EXIT.store(EXIT_DONE, Ordering::Release);
}

/// Writes the emergency report now, on this thread (see `emergency`); skipped when the exit
/// report has begun or another report is being written — the next crossing tries again.
pub(crate) fn write_emergency() {
    if EXIT.load(Ordering::Acquire) != EXIT_NOT_CLAIMED {
        return;
    }
    let Some(_turn) = Turn::try_take() else {
        return;
    };
    // Named from the symbol tables: at the limit, loading debug info could be what ends
    // the process.
    write_now(Naming::SymbolTables);
}

/// Forgets reports in progress and the exit report's state (in a fork child, whose parent's
/// writers did not come along).
pub(crate) fn after_fork_child() {
    BUSY.store(false, Ordering::Release);
    OWNER.store(0, Ordering::Relaxed);
    EXIT.store(EXIT_NOT_CLAIMED, Ordering::Release);
}

/// This thread's turn to write: held while a report is written.
struct Turn;

impl Turn {
    /// Waits for the writer in progress (at most [`WAIT_FOR_OTHER`]) and takes the turn.
    /// `None` when this very thread is the writer in progress (a report asked for from
    /// inside one, e.g. by a panic hook while it was being written): it cannot wait for
    /// itself.
    fn take() -> Option<Turn> {
        let me = this_thread();
        if BUSY.load(Ordering::Acquire) && OWNER.load(Ordering::Relaxed) == me {
            return None;
        }
        let claimed = wait_until(|| {
            BUSY.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        if !claimed {
            // The other writer is stuck: go ahead without the turn (the files are still
            // replaced whole; the last rename wins).
            return Some(Turn);
        }
        OWNER.store(me, Ordering::Relaxed);
        Some(Turn)
    }
}

impl Turn {
    /// The turn if nobody is writing, without waiting.
    fn try_take() -> Option<Turn> {
        BUSY.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        OWNER.store(this_thread(), Ordering::Relaxed);
        Some(Turn)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if OWNER.load(Ordering::Relaxed) == this_thread() {
            OWNER.store(0, Ordering::Relaxed);
            BUSY.store(false, Ordering::Release);
        }
    }
}

fn this_thread() -> u64 {
    crate::sys::thread_id()
}

/// Polls `done` every millisecond for at most [`WAIT_FOR_OTHER`]; whether it became true.
fn wait_until(done: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if done() {
            return true;
        }
        if started.elapsed() >= WAIT_FOR_OTHER {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Builds the report, its frames named as `naming` says, and writes it to every destination.
fn write_now(naming: Naming) {
    let _guard = reentrancy::enter();
    let destinations = config::destinations();
    if destinations.is_empty() {
        return;
    }
    let report = snapshot::take_with(naming);
    let context = process::render_context();
    for destination in destinations {
        match destination {
            Destination::Stderr => output::write_stderr(report.to_text().as_bytes()),
            Destination::File { path, format } => {
                let path = per_process_path(&path);
                let bytes = report.render_with(format, &context);
                if let Err(e) = output::write_file_atomically(&path, &bytes) {
                    output::warn(&format!(
                        "could not write the report to {}: {e}",
                        path.display()
                    ));
                }
            }
        }
    }
}

/// `heap.json` in the first process; `heap.<pid>.json` in a fork child.
fn per_process_path(path: &Path) -> PathBuf {
    let pid = std::process::id();
    let first = FIRST_PID.load(Ordering::Relaxed);
    if first == 0 || pid == first {
        return path.to_path_buf();
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = match name.split_once('.') {
        Some((stem, ext)) => format!("{stem}.{pid}.{ext}"),
        None => format!("{name}.{pid}"),
    };
    path.with_file_name(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_paths_carry_the_pid() {
        FIRST_PID.store(1, Ordering::Relaxed);
        let pid = std::process::id();
        assert_eq!(
            per_process_path(Path::new("out/heap.json")),
            PathBuf::from(format!("out/heap.{pid}.json"))
        );
        assert_eq!(
            per_process_path(Path::new("report")),
            PathBuf::from(format!("report.{pid}"))
        );
        FIRST_PID.store(pid, Ordering::Relaxed);
        assert_eq!(
            per_process_path(Path::new("heap.json")),
            PathBuf::from("heap.json")
        );
    }

    #[test]
    fn a_writer_waits_for_another_and_not_for_itself() {
        let first = Turn::take().expect("the turn is free");
        assert!(Turn::take().is_none(), "a thread never waits for itself");
        let waiter = std::thread::spawn(|| {
            let started = Instant::now();
            let turn = Turn::take().expect("a turn");
            let waited = started.elapsed();
            drop(turn);
            waited
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(40), "waited {waited:?}");
        assert!(!BUSY.load(Ordering::Acquire), "the turn is handed back");
    }
}
