//! Pattern 2, a small view keeping a big buffer alive: a loader reads each input whole
//! (a file into a `Vec<u8>`, a network frame into `bytes::Bytes`) and keeps only its 1 KiB
//! header. `Vec::truncate` keeps the capacity, and `Bytes::slice` shares (and so keeps)
//! the whole buffer, so every kept header holds its input's full size (`reslice-leak`).
//! The fix keeps a copy of what is kept: `Vec::shrink_to_fit`, `Bytes::copy_from_slice`
//! (`reslice-fixed`).
//!
//! Inputs alternate between the two forms; both are read at the same line (`leak-site`).

use crate::cli::{self, Demo, Knob, Opts, Progress};
use bytes::Bytes;

/// The reslice demo's command line.
pub const DEMO: Demo = Demo {
    name: "reslice",
    leak: "keeps 1 KiB headers as views (Vec::truncate, Bytes::slice) of whole inputs",
    fix: "keeps 1 KiB headers as copies (Vec::shrink_to_fit, Bytes::copy_from_slice)",
    unit: "files",
    count: Knob {
        long: "count",
        default: "100",
        help:
            "Inputs to read (even ones as files into a Vec, odd ones as network frames into Bytes)",
    },
    size: Knob {
        long: "size",
        default: "10m",
        help: "Bytes of each input",
    },
    seconds: "6",
    keep: None,
};

/// Bytes of each input that the loader keeps.
pub const HEADER: usize = 1024;

/// A kept header, in the form its input came in.
enum Header {
    /// From a file read into a `Vec`.
    File(Vec<u8>),
    /// From a network frame read into `Bytes`.
    Frame(Bytes),
}

impl Header {
    fn len(&self) -> usize {
        match self {
            Header::File(v) => v.len(),
            Header::Frame(b) => b.len(),
        }
    }
}

/// Reads input number `i` whole (stands for `fs::read` or a socket read).
#[inline(never)]
fn read_input(i: u64, size: usize) -> Vec<u8> {
    let mut data = vec![cli::fill(i); size]; // leak-site
    let id = i.to_le_bytes();
    let n = id.len().min(data.len());
    data[..n].copy_from_slice(&id[..n]);
    data
}

/// Keeps the header of `data`: as a view of it (leaky) or as a copy (fixed).
fn keep_header(i: u64, data: Vec<u8>, leaky: bool) -> Header {
    let end = HEADER.min(data.len());
    if i % 2 == 0 {
        let mut file = data;
        file.truncate(end); // the length shrinks; the 10 MB capacity stays
        if !leaky {
            file.shrink_to_fit(); // the fix: give the rest back
        }
        Header::File(file)
    } else {
        let frame = Bytes::from(data);
        if leaky {
            Header::Frame(frame.slice(..end)) // shares, and keeps, the whole frame
        } else {
            Header::Frame(Bytes::copy_from_slice(&frame[..end])) // the fix: a copy
        }
    }
}

/// Reads `opts.count` inputs of `opts.size` bytes and keeps the header of each, then exits
/// with the headers still kept.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let mut headers: Vec<Header> = Vec::new();
    let mut progress = Progress::new(&DEMO, opts);
    let kept = |headers: &[Header]| {
        let bytes: usize = headers.iter().map(Header::len).sum();
        format!(
            "Headers kept: {} ({} of header data)",
            headers.len(),
            cli::human_bytes(bytes as u64)
        )
    };
    for i in 1..=opts.count {
        let data = read_input(i, size);
        headers.push(keep_header(i, data, leaky));
        progress.step(i, || kept(&headers));
    }
    progress.finish(opts.count, || kept(&headers));
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::{Scope, Usage};

    /// Bytes of each input.
    const SIZE: usize = 256 * 1024;

    /// Reads input `i` and keeps its header, as `run` does for each input, in a scope; the
    /// header is kept until the scope has finished.
    fn load(i: u64, leaky: bool) -> Usage {
        let scope = Scope::start();
        let header = keep_header(i, read_input(i, SIZE), leaky);
        let usage = scope.finish();
        assert_eq!(header.len(), HEADER);
        usage
    }

    #[test]
    fn leaky_header_keeps_its_whole_input() {
        let site = LeakSite::of("reslice.rs");
        // Input 2 is a file (a truncated `Vec`), input 3 a frame (a `Bytes` slice).
        for i in [2, 3] {
            site.assert_leaks(&load(i, true), SIZE as u64, 1);
        }
    }

    /// The loader keeps a header per input by design: the fix keeps it as a 1 KiB copy.
    /// So its pin is `HEADER` bytes, the copy, where the leaky loader keeps the whole input.
    #[test]
    fn fixed_header_keeps_only_its_copy() {
        let site = LeakSite::of("reslice.rs");
        for i in [2, 3] {
            let usage = load(i, false);
            usage.assert_retains_at_most(HEADER as u64);
            assert_eq!(usage.retained_bytes, HEADER as u64, "{usage}");
            assert_eq!(site.retained(&usage), (0, 0), "{usage}");
        }
    }
}
