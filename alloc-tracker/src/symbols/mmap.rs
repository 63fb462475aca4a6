//! Read-only mappings of whole files: ELF files are read in place (headers, symbol tables,
//! debug sections), without copying them to the heap. Their pages are the page cache's,
//! clean and reclaimable under memory pressure.

use std::path::Path;

/// A read-only private mapping of a whole file.
pub(crate) struct Mmap {
    pointer: *mut libc::c_void,
    len: usize,
}

impl Mmap {
    /// Maps the file at `path` (`None` if it cannot be opened, is empty or cannot be
    /// mapped).
    pub(crate) fn open(path: &Path) -> Option<Mmap> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: mapping a file we opened read-only, private; the result is checked.
        let pointer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        // `then`: an `Mmap` of a failed map must not exist, even briefly (its drop unmaps).
        (pointer != libc::MAP_FAILED).then(|| Mmap { pointer, len })
    }

    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `pointer` maps `len` readable bytes until `self` is dropped. (A file
        // truncated by another process meanwhile would fault: the same risk as
        // `backtrace`'s mappings.)
        unsafe { std::slice::from_raw_parts(self.pointer.cast(), self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping this value made, once.
        unsafe {
            libc::munmap(self.pointer, self.len);
        }
    }
}

// SAFETY: the mapping is read-only memory owned by this value; reading it from any thread
// is sound, and unmapping happens once, on drop.
unsafe impl Send for Mmap {}
// SAFETY: as above: shared access only ever reads.
unsafe impl Sync for Mmap {}
