//! Writing to stderr and to files, from places where `std::io::stderr()` is not safe to use.
//!
//! Warnings and the text report go out with plain `write(2)` calls (`WriteFile` on
//! Windows): no `std` lock that a program thread might hold forever (or that this thread
//! holds already, mid-`eprintln!`), and no allocation. Report files are replaced whole ([`write_file_atomically`]).

use std::io::{self, Write};
use std::path::Path;

/// Writes all of `bytes` to stderr, with no lock and no allocation (see `sys::write_stderr`);
/// gives up silently on an error (there is nowhere left to report it).
pub(crate) fn write_stderr(bytes: &[u8]) {
    crate::sys::write_stderr(bytes);
}

/// Writes one line `alloc-tracker: <message>` to stderr.
pub(crate) fn warn(message: &str) {
    let mut line = String::with_capacity(message.len() + 16);
    line.push_str("alloc-tracker: ");
    line.push_str(message);
    line.push('\n');
    write_stderr(line.as_bytes());
}

/// Writes `bytes` to `path` so that a reader never sees half of it: into a file with no name
/// first (`O_TMPFILE`, where the file system has it), given a temporary name beside `path`
/// only once complete, then renamed over `path`. A process killed while writing (SIGKILL
/// after a grace period) leaves the previous file, or none, and no litter; where
/// `O_TMPFILE` is missing, a named temporary file (`.name.<pid>.tmp`) is written instead, and
/// only a kill in the middle of writing it can leave that behind.
pub(crate) fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = match crate::sys::write_unnamed(dir, bytes, &temporary) {
        Ok(()) => Ok(()),
        Err(_) => write_named(&temporary, bytes),
    };
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// Writes `bytes` to a new file at `temporary`.
fn write_named(temporary: &Path, bytes: &[u8]) -> io::Result<()> {
    let _ = std::fs::remove_file(temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temporary)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_whole_and_leave_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("alloc-tracker-output-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("heap.json");
        write_file_atomically(&path, b"first").unwrap();
        write_file_atomically(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        // The named fallback gives the same result.
        write_named(&dir.join("other"), b"x").unwrap();
        std::fs::rename(dir.join("other"), dir.join("heap.txt")).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
        assert!(write_file_atomically(&dir.join("missing/heap.json"), b"x").is_err());
        if cfg!(target_os = "linux") {
            // The unnamed-file path works here (it is the one that leaves no litter).
            let linked = dir.join("linked");
            crate::sys::write_unnamed(&dir, b"unnamed", &linked).unwrap();
            assert_eq!(std::fs::read(&linked).unwrap(), b"unnamed");
            std::fs::remove_file(&linked).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
