//! Writing to stderr and files from places where `std::io::stderr()` is not safe to use.
//!
//! Warnings and the exit report go out with plain `write(2)` calls: no `std` lock that a
//! program thread might hold forever (or that this thread holds already, mid-`eprintln!`),
//! and no allocation.

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
