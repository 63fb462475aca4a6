//! Lines on standard output, each written with one `write(2)` and no allocation: printing
//! `ready` must not change the heap a program reports (see `many_threads`), and the lines
//! of a forked child and its parent, which share the pipe, must not interleave.

use std::fmt::{self, Write};

/// Prints one line (`format!` syntax) on standard output with one `write(2)`, allocating
/// nothing. Lines longer than 511 bytes are cut.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}

const CAPACITY: usize = 512;

/// A line being formatted, on the stack.
struct Line {
    bytes: [u8; CAPACITY],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // One byte stays free for the newline.
        let room = CAPACITY - 1 - self.len;
        let taken = text.len().min(room);
        self.bytes[self.len..self.len + taken].copy_from_slice(&text.as_bytes()[..taken]);
        self.len += taken;
        if taken < text.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Writes `args` and a newline to standard output (what [`say!`] expands to).
pub fn line(args: fmt::Arguments) {
    let mut line = Line {
        bytes: [0; CAPACITY],
        len: 0,
    };
    // A line too long is cut, not lost.
    let _ = line.write_fmt(args);
    line.bytes[line.len] = b'\n';
    line.len += 1;
    let mut written = 0;
    while written < line.len {
        let rest = &line.bytes[written..line.len];
        // SAFETY: `rest` is a live, initialised buffer of `rest.len()` bytes.
        let n = unsafe { libc::write(libc::STDOUT_FILENO, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            written += n as usize;
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return; // stdout closed: nobody is reading
        }
    }
}
