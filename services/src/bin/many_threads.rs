//! Hundreds of threads allocating at once: the exact totals must stay exact.
//!
//! Usage: `many_threads <threads>`. The program measures a baseline with
//! `alloc_tracker::stats()` and prints it (`baseline allocs=… alloc_bytes=… frees=…
//! live_bytes=…`), then starts the threads with `pthread_create` (std's spawn allocates,
//! which would blur the figures). All threads wait at a barrier, make the allocations of
//! `services::plan` (keeping some, freeing the rest), wait at a second barrier (so that
//! all of them are alive together), and end. `main` joins them, prints `alloc_tracker::stats()`
//! again (`end …`) and returns: the report at exit must show the baseline plus exactly the
//! plan's totals (plus what std's runtime frees after `main` returns, the same with no
//! threads). Nothing after the baseline allocates but the threads (`say!` does not).

use services::{plan, say};
use std::sync::{Barrier, Mutex, OnceLock};

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static START: OnceLock<Barrier> = OnceLock::new();
static DONE: OnceLock<Barrier> = OnceLock::new();
/// Stack of each thread: room for the tracker's unwinder when an allocation is sampled.
const STACK_BYTES: usize = 256 << 10;

/// The program's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

extern "C" fn allocate(index: *mut libc::c_void) -> *mut libc::c_void {
    let thread = index as usize;
    START.get().expect("barrier").wait();
    for j in 0..plan::ALLOCS_PER_THREAD {
        let (size, kept) = plan::allocation(thread, j);
        let block = Vec::<u8>::with_capacity(size);
        std::hint::black_box(&block);
        if kept {
            std::mem::forget(block);
        }
    }
    DONE.get().expect("barrier").wait();
    std::ptr::null_mut()
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: many_threads <threads>");
    keep_state();
    // Kept to the end of the process: freeing it after the baseline would count.
    let handles: &mut Vec<libc::pthread_t> = Box::leak(Box::new(Vec::with_capacity(threads)));
    START.get_or_init(|| Barrier::new(threads + 1));
    DONE.get_or_init(|| Barrier::new(threads + 1));
    // SAFETY: `attr` is initialised by pthread_attr_init before use and only read after.
    let attr = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_attr_init(&mut attr), 0);
        assert_eq!(libc::pthread_attr_setstacksize(&mut attr, STACK_BYTES), 0);
        attr
    };
    let baseline = alloc_tracker::stats();
    say!(
        "baseline allocs={} alloc_bytes={} frees={} live_bytes={}",
        baseline.allocs,
        baseline.alloc_bytes,
        baseline.frees,
        baseline.live_bytes
    );
    for index in 0..threads {
        // (`pthread_t` is an integer on glibc, a pointer on musl: written before it is read.)
        let mut thread = std::mem::MaybeUninit::<libc::pthread_t>::uninit();
        // SAFETY: `allocate` has the start-routine signature and takes the index as an
        // integer in pointer form; `thread` and `attr` are live locals.
        let created = unsafe {
            libc::pthread_create(
                thread.as_mut_ptr(),
                &attr,
                allocate,
                index as *mut libc::c_void,
            )
        };
        assert_eq!(created, 0, "pthread_create (thread {index})");
        // SAFETY: pthread_create succeeded, so it wrote the thread's id.
        handles.push(unsafe { thread.assume_init() });
    }
    START.get().expect("barrier").wait();
    say!("all {threads} threads allocating");
    DONE.get().expect("barrier").wait();
    for thread in handles.iter().copied() {
        // SAFETY: each handle is a joinable thread created above, joined once.
        let joined = unsafe { libc::pthread_join(thread, std::ptr::null_mut()) };
        assert_eq!(joined, 0, "pthread_join");
    }
    say!("joined {threads} threads");
    let end = alloc_tracker::stats();
    say!(
        "end allocs={} alloc_bytes={} frees={} live_bytes={}",
        end.allocs,
        end.alloc_bytes,
        end.frees,
        end.live_bytes
    );
}
