//! The table unwinder (`ALLOC_TRACKER_UNWIND=table`) against DWARF unwinding, in this
//! workspace's default build (no frame pointers):
//!
//! - on every sampled allocation of the same program (exact mode), run once with each
//!   unwinder: recursion 5, 20 and 60 deep, inlined frames, a closure, a `dyn Fn`, another
//!   thread, a library loaded with `dlopen` (built without frame pointers, `build.rs`), and
//!   code without unwind tables (a JIT-style trampoline), whose stacks must fall back to
//!   DWARF and be counted;
//! - at the same call points, return address by return address
//!   (`alloc_tracker::internals`);
//! - a library loaded after the first unwind, then unloaded and another copy loaded;
//! - `fork` while other threads capture; no allocation once warm; `auto` taking the unwind
//!   tables, and naming a thread's allocation at its own function.

use alloc_tracker::internals::{dwarf_stack, table_scans, table_stack};
use alloc_tracker::Tracker;
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::{c_void, CString};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;
use tracker_tests::{child_scenario, int, read_report, run_checks, scratch_dir, Scenario};

/// The tracker, behind a wrapper that counts each thread's allocations (the tracker's own
/// included: they come back through the global allocator, under its reentrancy guard).
struct Counting(Tracker);

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(size: usize) {
    ALLOCATIONS.set(ALLOCATIONS.get() + 1);
    BYTES.set(BYTES.get() + size as u64);
}

// SAFETY: forwards every call to the tracker unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded from the caller.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded from the caller.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded from the caller.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting(Tracker::system());

/// Room for any stack the checks make (the deepest is about 80 frames).
const ROOM: usize = 200;
/// Allocations made through the trampoline in the `workload` scenario.
const JIT_ALLOCATIONS: u64 = 5;

// ---------------------------------------------------------------------------------------
// Helpers: call shapes, the library, the trampoline.

/// Recurses `depth` frames, then runs `at_bottom`.
#[inline(never)]
fn recurse(depth: usize, at_bottom: &mut dyn FnMut()) -> usize {
    if depth == 0 {
        at_bottom();
        return black_box(0);
    }
    black_box(recurse(black_box(depth - 1), at_bottom) + 1)
}

#[inline(never)]
fn call_generic<F: FnOnce() -> usize>(f: F) -> usize {
    black_box(f() + 1)
}

#[inline(never)]
fn call_dyn(f: &dyn Fn() -> usize) -> usize {
    black_box(f() + 1)
}

#[inline(always)]
fn inlined_inner(at_bottom: &mut dyn FnMut()) {
    at_bottom();
    black_box(());
}

#[inline(always)]
fn inlined_outer(at_bottom: &mut dyn FnMut()) {
    inlined_inner(at_bottom);
    black_box(());
}

#[inline(never)]
fn not_inlined(at_bottom: &mut dyn FnMut()) {
    inlined_outer(at_bottom);
    black_box(());
}

/// `testlib_nest` in testlib/lib.rs.
type Nest = extern "C" fn(u32, extern "C" fn(*mut c_void), *mut c_void) -> u32;

/// The test library of `build.rs`, loaded with `dlopen`.
struct Library {
    handle: *mut c_void,
    nest: Nest,
}

impl Library {
    /// Loads the library at `path` (`RTLD_NOW | RTLD_LOCAL`).
    fn open(path: &str) -> Self {
        let name = CString::new(path).unwrap();
        // SAFETY: a valid C string; the library has no initialisers.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen {path} failed");
        // SAFETY: `handle` is a live library handle and the name a valid C string.
        let symbol = unsafe { libc::dlsym(handle, c"testlib_nest".as_ptr()) };
        assert!(!symbol.is_null(), "no testlib_nest in {path}");
        // SAFETY: `testlib_nest` has exactly this signature (testlib/lib.rs).
        let nest = unsafe { std::mem::transmute::<*mut c_void, Nest>(symbol) };
        Self { handle, nest }
    }

    /// The library built by `build.rs`.
    fn path() -> &'static str {
        env!("TRACKER_TESTLIB")
    }

    /// Runs `f` from `depth + 1` frames inside the library.
    fn call_through(&self, depth: u32, mut f: impl FnMut()) {
        extern "C" fn trampoline(context: *mut c_void) {
            // SAFETY: `context` is the `&mut dyn FnMut()` passed below, alive during the call.
            let f = unsafe { &mut *context.cast::<&mut dyn FnMut()>() };
            f();
        }
        let mut f: &mut dyn FnMut() = &mut f;
        (self.nest)(depth, trampoline, (&raw mut f).cast());
    }

    /// Unloads the library.
    fn close(self) {
        // SAFETY: `handle` came from dlopen and no code of the library is running.
        assert_eq!(unsafe { libc::dlclose(self.handle) }, 0);
    }
}

/// Executable code in an anonymous mapping, with no unwind tables: `fn(callback, fake)` that
/// calls `callback()` with the frame pointer aimed at a fake frame record (saved frame
/// pointer 0, return address `fake`), as JIT code may leave it. A frame-pointer guess at
/// the trampoline yields a complete but wrong stack; the table unwinder must fail instead.
struct Trampoline {
    code: *mut c_void,
}

impl Trampoline {
    #[cfg(target_arch = "x86_64")]
    const CODE: &[u8] = &[
        0x55, // push rbp
        0x48, 0x83, 0xec, 0x10, // sub rsp, 16
        0x48, 0xc7, 0x04, 0x24, 0, 0, 0, 0, // mov qword [rsp], 0
        0x48, 0x89, 0x74, 0x24, 0x08, // mov [rsp + 8], rsi
        0x48, 0x89, 0xe5, // mov rbp, rsp
        0xff, 0xd7, // call rdi
        0x48, 0x83, 0xc4, 0x10, // add rsp, 16
        0x5d, // pop rbp
        0xc3, // ret
    ];
    #[cfg(target_arch = "aarch64")]
    const CODE: &[u8] = &[
        0xfd, 0x7b, 0xbe, 0xa9, // stp x29, x30, [sp, #-32]!
        0xff, 0x0b, 0x00, 0xf9, // str xzr, [sp, #16]
        0xe1, 0x0f, 0x00, 0xf9, // str x1, [sp, #24]
        0xfd, 0x43, 0x00, 0x91, // add x29, sp, #16
        0x00, 0x00, 0x3f, 0xd6, // blr x0
        0xfd, 0x7b, 0xc2, 0xa8, // ldp x29, x30, [sp], #32
        0xc0, 0x03, 0x5f, 0xd6, // ret
    ];

    fn new() -> Self {
        // SAFETY: a fresh private anonymous mapping, written, then made executable.
        unsafe {
            let code = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(code, libc::MAP_FAILED);
            std::ptr::copy_nonoverlapping(Self::CODE.as_ptr(), code.cast(), Self::CODE.len());
            assert_eq!(
                libc::mprotect(code, 4096, libc::PROT_READ | libc::PROT_EXEC),
                0
            );
            #[cfg(target_arch = "aarch64")]
            std::arch::asm!(
                "dc cvau, {0}", "dsb ish", "ic ivau, {0}", "dsb ish", "isb", in(reg) code
            );
            Self { code }
        }
    }

    fn call(&self, callback: extern "C" fn()) {
        // SAFETY: getauxval has no preconditions.
        let entry = unsafe { libc::getauxval(libc::AT_ENTRY) } as usize;
        // SAFETY: the mapping holds `CODE`, a function of a function pointer and a word.
        let f = unsafe {
            std::mem::transmute::<*mut c_void, extern "C" fn(extern "C" fn(), usize)>(self.code)
        };
        f(callback, entry + 4);
    }
}

// ---------------------------------------------------------------------------------------
// Both unwinders at one call point.

type Unwinder = fn(&mut [usize]) -> Option<usize>;

fn dwarf(out: &mut [usize]) -> Option<usize> {
    Some(dwarf_stack(out))
}

/// Runs `unwind` from a single call site, so that every unwinder passed here starts with the
/// same return address (into this function).
#[inline(never)]
fn at_point(unwind: Unwinder, out: &mut [usize]) -> Option<usize> {
    black_box(unwind(out))
}

/// The stacks the table unwinder and DWARF see from the same call point, each with room for
/// `room` frames; `None` for the table unwinder's if it failed.
#[inline(never)]
fn both(room: usize) -> (Option<Vec<usize>>, Vec<usize>) {
    let unwinders: [Unwinder; 2] = [table_stack, dwarf];
    let mut lists = Vec::new();
    // One call site for both (the slice is opaque, so the loop is not unrolled).
    for &unwind in black_box(&unwinders[..]) {
        let mut out = vec![0; room];
        let len = at_point(unwind, &mut out);
        lists.push(len.map(|len| {
            out.truncate(len);
            out
        }));
    }
    let dwarf = lists.pop().unwrap().expect("DWARF always answers");
    (lists.pop().unwrap(), dwarf)
}

/// Asserts that the table unwinder sees exactly DWARF's stack here.
#[track_caller]
fn assert_same_stack() {
    let (table, dwarf) = both(ROOM);
    let table = table.expect("the table unwinder failed");
    assert!(table.len() >= 3, "suspiciously short: {table:x?}");
    assert_eq!(table, dwarf, "table (left) vs DWARF (right)");
}

// ---------------------------------------------------------------------------------------
// Scenarios (children).

/// What the children keep alive, so that every sampled allocation stays in the report.
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

#[inline(never)]
fn keep(size: usize) {
    let block = vec![size as u8; size];
    KEPT.lock().unwrap().push(block);
}

/// Keeps `size` bytes, allocated from a thread (see the "auto" scenario).
#[inline(never)]
fn keep_from_a_thread(size: usize) {
    let block = vec![3u8; size];
    KEPT.lock().unwrap().push(black_box(block));
}

extern "C" fn allocate_in_jit_code() {
    for _ in 0..JIT_ALLOCATIONS {
        // Exactly one allocation each (leaked: freeing is not the point).
        black_box(Box::leak(Box::new([7u8; 40])));
    }
}

/// Allocations from every shape of stack the checks care about; the same in every run.
fn workload() {
    KEPT.lock().unwrap().reserve(64);
    for depth in [5, 20, 60] {
        recurse(depth, &mut || keep(100 + depth));
    }
    not_inlined(&mut || keep(48));
    let captured = black_box(7);
    call_generic(|| {
        keep(56);
        captured
    });
    call_dyn(&|| {
        keep(64);
        3
    });
    std::thread::spawn(|| recurse(7, &mut || keep(72)))
        .join()
        .unwrap();
    // Never closed: the report symbolizes its frames at exit.
    let library = Library::open(Library::path());
    library.call_through(4, || {
        recurse(3, &mut || keep(80));
    });
    Trampoline::new().call(allocate_in_jit_code);
}

/// Checks the stack from inside `library`, always from this one call site.
#[inline(never)]
fn through(library: &Library) {
    library.call_through(5, assert_same_stack);
}

/// A library loaded after the first unwind is noticed and unwound through; after it is
/// unloaded, a copy (a new object for the loader, likely mapped where the first one was)
/// is too. At the same place, every address of the second stack is a cache hit, whose
/// rule (the first library's) must be found stale.
fn dlopen_later() {
    recurse(4, &mut assert_same_stack); // the first unwind: no library in the snapshot
    assert!(table_scans() >= 1);
    let copy = std::env::temp_dir().join(format!("tracker_testlib_{}.so", std::process::id()));
    std::fs::copy(Library::path(), &copy).unwrap();
    let mut places = Vec::new();
    for path in [Library::path(), copy.to_str().unwrap()] {
        let scans = table_scans();
        let library = Library::open(path);
        through(&library);
        assert!(table_scans() > scans, "loading {path} was not noticed");
        places.push(library.nest as usize);
        library.close();
    }
    std::fs::remove_file(copy).unwrap();
    let same_place = places[0] == places[1];
    println!("dlopen-later ok (the copy at the same address: {same_place})");
}

/// Forks while two threads allocate (every allocation sampled, so they are capturing with
/// the table unwinder most of the time); each child checks its stacks, including through a
/// library it loads (a new snapshot), and exits.
fn fork_while_capturing() {
    // libgcc initialises its DWARF unwinder once (`pthread_once`). A fork while another thread
    // is inside that initialisation leaves the child waiting for it forever under
    // ThreadSanitizer, whose `pthread_once` does not reset in a fork child as glibc's does:
    // the parent finishes it before its threads start.
    assert_same_stack();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    recurse(10, &mut || {
                        black_box(vec![1u8; 32]);
                    });
                }
            });
        }
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(5));
            // SAFETY: the child only allocates, unwinds and loads a library (the tracker's
            // fork handlers make that safe), then leaves with `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = std::panic::catch_unwind(|| {
                    for _ in 0..100 {
                        recurse(3, &mut assert_same_stack);
                    }
                    let library = Library::open(Library::path());
                    library.call_through(2, assert_same_stack);
                })
                .is_ok();
                // SAFETY: ends the child without the parent's exit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: waits for the child just forked; `status` is writable.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child status {status:#x}"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    println!("fork ok");
}

fn run_child(scenario: &str) {
    match scenario {
        "workload" => workload(),
        "dlopen-later" => dlopen_later(),
        "fork" => fork_while_capturing(),
        "auto" => {
            recurse(10, &mut || keep(24));
            // From a thread: std's frames keep frame pointers, the test's own do not — a
            // frame-pointer walk from `vec!` here used to jump to `start_thread`.
            std::thread::spawn(|| keep_from_a_thread(64 << 10))
                .join()
                .expect("thread");
        }
        other => panic!("unknown scenario {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Checks (the parent).

/// Every stack of a JSON report (frames as function, file and line; unresolved addresses as
/// `?`, since they move between runs), with its allocation count and bytes summed.
fn stacks_of(report: &Value) -> BTreeMap<Vec<String>, (u64, u64)> {
    let mut stacks = BTreeMap::new();
    for site in report["sites"].as_array().expect("sites") {
        for stack in site["stacks"].as_array().expect("stacks") {
            let frames: Vec<String> = stack["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| {
                    let function = f["function"].as_str().unwrap_or("");
                    if f["file"].is_null() && function.starts_with("0x") {
                        "?".to_string()
                    } else {
                        format!("{function} {} {}", f["file"], f["line"])
                    }
                })
                .collect();
            let entry = stacks.entry(frames).or_insert((0, 0));
            entry.0 += int(&stack["allocs"], "allocs");
            entry.1 += int(&stack["alloc_bytes"], "alloc_bytes");
        }
    }
    stacks
}

fn run_workload(unwind: &str) -> Value {
    let dir = scratch_dir(&format!("unwind-{unwind}"));
    let json = dir.join("report.json");
    let finished = Scenario::new("workload")
        .env("ALLOC_TRACKER_RATE", "1")
        .env("ALLOC_TRACKER_DEPTH", "128")
        .env("ALLOC_TRACKER_UNWIND", unwind)
        .env("ALLOC_TRACKER_REPORT", json.to_str().unwrap())
        .run();
    assert!(finished.output.status.success(), "{}", finished.stderr());
    let report = read_report(&json);
    let _ = std::fs::remove_dir_all(dir);
    report
}

fn same_stacks_as_dwarf_on_every_sampled_allocation() {
    let table = run_workload("table");
    let dwarf = run_workload("dwarf");
    assert_eq!(table["tracker"]["unwinder"], "table");
    assert_eq!(dwarf["tracker"]["unwinder"], "dwarf");
    assert_eq!(table["totals"], dwarf["totals"], "not the same allocations");
    // Only the stacks through code without unwind tables went to DWARF.
    assert_eq!(table["tracker"]["dwarf_fallbacks"], JIT_ALLOCATIONS);
    assert_eq!(dwarf["tracker"]["dwarf_fallbacks"], 0);
    let (table, dwarf) = (stacks_of(&table), stacks_of(&dwarf));
    // The library's frames and the 60-deep recursion are in there.
    let seen = |what: &str| {
        table
            .keys()
            .any(|frames| frames.iter().any(|f| f.contains(what)))
    };
    assert!(seen("testlib_nest"), "no stack through the library");
    let deepest = table.keys().map(Vec::len).max().unwrap_or(0);
    assert!(deepest > 60, "deepest stack {deepest} frames");
    for (frames, figures) in &table {
        assert_eq!(
            dwarf.get(frames),
            Some(figures),
            "a stack of the table run that DWARF saw otherwise:\n{}",
            frames.join("\n")
        );
    }
    assert_eq!(
        table.len(),
        dwarf.len(),
        "DWARF saw stacks the table run did not"
    );
}

fn same_stacks_at_the_same_call_points() {
    for depth in [0, 5, 20, 60] {
        recurse(depth, &mut assert_same_stack);
    }
    // A full buffer: both stop at its length.
    recurse(30, &mut || {
        let (table, dwarf) = both(20);
        assert_eq!(table.as_deref(), Some(&dwarf[..]));
        assert_eq!(dwarf.len(), 20);
    });
    not_inlined(&mut assert_same_stack);
    let captured = black_box(7);
    call_generic(|| {
        assert_same_stack();
        captured
    });
    call_dyn(&|| {
        assert_same_stack();
        3
    });
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                for round in 0..300 {
                    recurse(i + round % 7, &mut assert_same_stack);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

fn a_library_loaded_later_is_unwound() {
    // Sampling off: the checks' own unwinds are the only ones that may scan.
    let finished = Scenario::new("dlopen-later")
        .env("ALLOC_TRACKER_RATE", "0")
        .run();
    assert!(finished.output.status.success(), "{}", finished.stderr());
    assert!(finished.stdout().contains("dlopen-later ok"));
    println!("  {}", finished.stdout().trim());
}

thread_local! {
    /// What `capture_into_last` captured on this thread.
    static LAST: Cell<Option<usize>> = const { Cell::new(None) };
}

extern "C" fn capture_into_last() {
    let mut out = [0; ROOM];
    LAST.set(table_stack(&mut out));
}

fn code_without_unwind_tables_fails_the_table_unwinder() {
    let trampoline = Trampoline::new();
    assert_same_stack(); // warm
    let scans = table_scans();
    for _ in 0..50 {
        LAST.set(Some(0));
        trampoline.call(capture_into_last);
        assert_eq!(LAST.get(), None, "a stack through unknown code must fail");
    }
    assert_eq!(
        table_scans(),
        scans,
        "an unknown address is not a reason to rescan"
    );
}

#[inline(never)]
fn capture_20(out: &mut [usize; 20]) -> Option<usize> {
    table_stack(out)
}

fn no_allocation_when_warm() {
    std::thread::spawn(|| {
        // A new thread may take a new slot (its rule cache and gimli context: about 70 KiB
        // on x86_64, the bound stated in the unwinder's docs) and nothing else.
        let mut out = [0; 20];
        let bytes = BYTES.get();
        recurse(25, &mut || {
            assert_eq!(capture_20(&mut out), Some(20));
        });
        let cold = BYTES.get() - bytes;
        assert!(cold <= 80 * 1024, "a first capture allocated {cold} bytes");
        recurse(25, &mut || {
            let _ = capture_20(&mut out); // this call point's addresses
            let before = ALLOCATIONS.get();
            for _ in 0..1000 {
                assert_eq!(black_box(capture_20(&mut out)), Some(20));
            }
            assert_eq!(ALLOCATIONS.get() - before, 0, "a warm capture allocated");
        });
    })
    .join()
    .unwrap();
}

fn fork_while_other_threads_capture() {
    let finished = Scenario::new("fork")
        .env("ALLOC_TRACKER_RATE", "1")
        .env("ALLOC_TRACKER_UNWIND", "table")
        .env("ALLOC_TRACKER_REPORT", "off")
        .run();
    assert!(finished.output.status.success(), "{}", finished.stderr());
    assert!(finished.stdout().contains("fork ok"));
}

fn auto_uses_the_unwind_tables() {
    let dir = scratch_dir("unwind-auto");
    let json = dir.join("report.json");
    let finished = Scenario::new("auto")
        .env("ALLOC_TRACKER_RATE", "1")
        .env("ALLOC_TRACKER_REPORT", json.to_str().unwrap())
        .run();
    assert!(finished.output.status.success(), "{}", finished.stderr());
    let report = read_report(&json);
    assert_eq!(report["tracker"]["unwinder"], "table");
    // The thread's allocation is at its own function, with the thread's stack behind it.
    let from_thread = report["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .find(|site| site["live_bytes"] == 64 << 10)
        .unwrap_or_else(|| panic!("no 64 KiB site: {report:#}"));
    assert!(
        from_thread["site"]["function"]
            .as_str()
            .is_some_and(|f| f.ends_with("keep_from_a_thread")),
        "{}",
        from_thread["site"]
    );
    let _ = std::fs::remove_dir_all(dir);
}

pub fn main() {
    if let Some(scenario) = child_scenario() {
        run_child(&scenario);
        return;
    }
    run_checks(
        "unwind",
        &[
            (
                "same_stacks_as_dwarf_on_every_sampled_allocation",
                same_stacks_as_dwarf_on_every_sampled_allocation,
            ),
            (
                "same_stacks_at_the_same_call_points",
                same_stacks_at_the_same_call_points,
            ),
            (
                "a_library_loaded_later_is_unwound",
                a_library_loaded_later_is_unwound,
            ),
            (
                "code_without_unwind_tables_fails_the_table_unwinder",
                code_without_unwind_tables_fails_the_table_unwinder,
            ),
            ("no_allocation_when_warm", no_allocation_when_warm),
            (
                "fork_while_other_threads_capture",
                fork_while_other_threads_capture,
            ),
            ("auto_uses_the_unwind_tables", auto_uses_the_unwind_tables),
        ],
    );
}
