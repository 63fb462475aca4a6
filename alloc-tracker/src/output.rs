//! Writing to stderr and to files, from places where `std::io::stderr()` is not safe to use.
//!
//! Warnings and the text report go out with plain `write(2)` calls: no `std` lock that a
//! program thread might hold forever (or that this thread holds already, mid-`eprintln!`),
//! and no allocation. Report files are replaced whole ([`write_file_atomically`]).

use std::io::{self, Write};
use std::path::Path;

/// Writes all of `bytes` to file descriptor `fd`, retrying on `EINTR`; gives up silently on
/// any other error (there is nowhere left to report it).
pub(crate) fn write_fd(fd: libc::c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice; `write` reads at most `bytes.len()` bytes from it.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if written == 0 {
            return;
        }
        bytes = &bytes[written as usize..];
    }
}

/// Writes one line `alloc-tracker: <message>` to stderr.
pub(crate) fn warn(message: &str) {
    let mut line = String::with_capacity(message.len() + 16);
    line.push_str("alloc-tracker: ");
    line.push_str(message);
    line.push('\n');
    write_fd(libc::STDERR_FILENO, line.as_bytes());
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
    let written = match write_unnamed(dir, bytes, &temporary) {
        Ok(()) => Ok(()),
        Err(_) => write_named(&temporary, bytes),
    };
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// Writes `bytes` to an unnamed file in `dir` and links it as `temporary` when complete.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_unnamed(dir: &Path, bytes: &[u8], temporary: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)?;
    (&file).write_all(bytes)?;
    // The unnamed file gets a name through its /proc entry (no privilege needed, unlike
    // `linkat` with AT_EMPTY_PATH).
    let source = std::ffi::CString::new(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))?;
    let target = std::ffi::CString::new(temporary.as_os_str().as_bytes())?;
    let _ = std::fs::remove_file(temporary);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Without `O_TMPFILE`: always falls back to a named temporary file.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn write_unnamed(_dir: &Path, _bytes: &[u8], _temporary: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
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
            write_unnamed(&dir, b"unnamed", &linked).unwrap();
            assert_eq!(std::fs::read(&linked).unwrap(), b"unnamed");
            std::fs::remove_file(&linked).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
