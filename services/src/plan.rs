//! What each thread of `many_threads` allocates, known to the program and to its test, so
//! that the test can compute the exact totals the report must show.

/// Allocations each thread makes.
pub const ALLOCS_PER_THREAD: usize = 200;

/// The `j`-th allocation of thread `thread`: its size in bytes (16 to 1,032) and whether
/// the thread keeps it (one in four) or frees it at once.
pub fn allocation(thread: usize, j: usize) -> (usize, bool) {
    let size = 16 + ((thread * 31 + j * 7) % 128) * 8;
    let kept = (thread + j) % 4 == 0;
    (size, kept)
}

/// Exact totals that `threads` threads following [`allocation`] add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Allocations made.
    pub allocs: u64,
    /// Bytes allocated.
    pub alloc_bytes: u64,
    /// Allocations freed.
    pub frees: u64,
    /// Bytes still live (the kept allocations).
    pub live_bytes: u64,
}

/// The totals of [`allocation`] over `threads` threads.
pub fn expected(threads: usize) -> Expected {
    let mut expected = Expected::default();
    for thread in 0..threads {
        for j in 0..ALLOCS_PER_THREAD {
            let (size, kept) = allocation(thread, j);
            expected.allocs += 1;
            expected.alloc_bytes += size as u64;
            if kept {
                expected.live_bytes += size as u64;
            } else {
                expected.frees += 1;
            }
        }
    }
    expected
}
