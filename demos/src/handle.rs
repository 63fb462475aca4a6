//! Pattern 6, handles parked in a collection: an upload service spools each upload to a
//! file, opens it as a `BufReader<File>` with a 256 KiB buffer, tracks it in a map of
//! uploads, and on completion marks it done (and deletes the spool file) but never
//! removes it from the map: every finished upload keeps an open file descriptor (to a
//! deleted file, so the disk space is not freed either) and its buffer (`handle-leak`).
//! The fix removes the upload from the map when it completes, which closes the file
//! (`handle-fixed`).
//!
//! Both open the reader at the same line (`leak-site`). The spool directory is a
//! temporary directory, removed before the demo exits.

use crate::cli::{self, Demo, Knob, Opts, Progress};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// The handle demo's command line.
pub const DEMO: Demo = Demo {
    name: "handle",
    leak: "finished uploads stay in the upload map with their files open",
    fix: "finished uploads are removed from the upload map, closing their files",
    unit: "uploads",
    count: Knob {
        long: "count",
        default: "800",
        help: "Uploads to receive (each opens one file; mind `ulimit -n`)",
    },
    size: Knob {
        long: "size",
        default: "256k",
        help: "Bytes of each upload's read buffer",
    },
    seconds: "6",
    keep: None,
};

/// Bytes of each upload's content.
pub const UPLOAD_BYTES: usize = 4096;

/// An upload the service knows of.
struct Upload {
    reader: BufReader<File>,
    done: bool,
    checksum: u64,
}

/// Opens the spool file at `path` for reading with a `size`-byte buffer.
#[inline(never)]
fn open_upload(path: &Path, size: usize) -> io::Result<BufReader<File>> {
    let file = File::open(path)?;
    Ok(BufReader::with_capacity(size, file)) // leak-site
}

/// Reads the rest of `reader`, returning a checksum of it.
fn checksum(reader: &mut BufReader<File>) -> io::Result<u64> {
    let mut sum = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(sum);
        }
        sum = chunk
            .iter()
            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
        let n = chunk.len();
        reader.consume(n);
    }
}

/// Receives upload `id` into `dir`, processes it, and completes it.
fn receive(
    uploads: &mut HashMap<u64, Upload>,
    dir: &Path,
    id: u64,
    size: usize,
    leaky: bool,
) -> io::Result<()> {
    let path = dir.join(format!("upload-{id}.part"));
    fs::write(&path, vec![cli::fill(id); UPLOAD_BYTES])?;
    let reader = open_upload(&path, size)?;
    let upload = uploads.entry(id).or_insert(Upload {
        reader,
        done: false,
        checksum: 0,
    });
    upload.checksum = checksum(&mut upload.reader)?;
    upload.done = true;
    fs::remove_file(&path)?; // the spool file is cleaned up either way
    if !leaky {
        uploads.remove(&id); // the fix: forget the finished upload, closing its file
    }
    Ok(())
}

/// Receives `opts.count` uploads into a temporary spool directory, then removes the
/// directory and exits with the upload map as it is.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let spool = tempfile::Builder::new()
        .prefix("handle-demo-")
        .tempdir()
        .expect("a temporary spool directory");
    let mut uploads: HashMap<u64, Upload> = HashMap::new();
    let mut progress = Progress::new(&DEMO, opts);
    let baseline = cli::open_fds();
    let describe = |uploads: &HashMap<u64, Upload>| {
        let done = uploads.values().filter(|u| u.done).count();
        format!(
            "Open fds: {} (at start: {baseline}), finished uploads still tracked: {done}",
            cli::open_fds()
        )
    };
    for id in 1..=opts.count {
        if let Err(e) = receive(&mut uploads, spool.path(), id, size, leaky) {
            eprintln!("upload {id} failed: {e} (is `ulimit -n` below --count?)");
            break;
        }
        progress.step(id, || describe(&uploads));
    }
    progress.finish(opts.count, || describe(&uploads));
    let checksum = uploads.values().fold(0u64, |s, u| s ^ u.checksum);
    println!("Checksum of tracked uploads: {checksum:016x}");
    // The spool files are gone already (open descriptors keep the deleted ones' data);
    // remove the directory before exiting, since `exit` skips destructors.
    if let Err(e) = spool.close() {
        eprintln!("could not remove the spool directory: {e}");
    }
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::Scope;

    /// Bytes of each upload's read buffer.
    const SIZE: usize = 64 * 1024;

    /// A spool directory for one test, removed when it ends.
    fn spool() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("handle-test-")
            .tempdir()
            .expect("a temporary spool directory")
    }

    #[test]
    fn leaky_upload_keeps_its_reader() {
        let spool = spool();
        let mut uploads = HashMap::new();
        let scope = Scope::start();
        receive(&mut uploads, spool.path(), 1, SIZE, true).expect("upload 1");
        let usage = scope.finish();
        LeakSite::of("handle.rs").assert_leaks(&usage, SIZE as u64, 1);
        assert!(uploads[&1].done);
    }

    #[test]
    fn fixed_upload_retains_nothing() {
        let spool = spool();
        let mut uploads = HashMap::new();
        // Warm-up: the first upload gives the map its table, which it keeps.
        receive(&mut uploads, spool.path(), 1, SIZE, false).expect("upload 1");
        let scope = Scope::start();
        receive(&mut uploads, spool.path(), 2, SIZE, false).expect("upload 2");
        scope.finish().assert_retains_at_most(0);
        assert!(uploads.is_empty());
    }
}
