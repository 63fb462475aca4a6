//! Turning return addresses into functions, files and lines — only when a report is made,
//! once per address, and never under a lock the allocation path takes.
//!
//! Each address may expand to several frames (functions inlined into the one that made the
//! call), innermost first. Each frame is classified by where its source lives, or, without
//! a file, by its function's crate ([`Crates`], read from the executable once), which is
//! what picks a stack's *site*: the first frame of the program's own code.
//!
//! **Naming** ([`Naming`]). A report names frames from the debug info where the binary has
//! some; the debug info is freed once the report is built ([`release_debug_info`]), the
//! names found are kept per address. The symbol tables (16 bytes a function) and the
//! program's crates are kept for the life of the process. A report made when memory is
//! short can name frames from the symbol tables alone, loaded ahead of time by
//! [`preload_symbol_tables`].
//!
//! **Fork.** All of it is one value behind one lock ([`SYMBOLIZER`]), which a report holds
//! while it names an address (seconds, when that loads debug info). `fork` does not wait
//! for it ([`try_lock_all`]); a child forked while it was held leaks the half-changed value
//! and starts a fresh one ([`abandon_in_fork_child`]), reading the binaries again.

use crate::origin::{Crates, Origin};
use crate::report::Location;
use crate::spin::SpinLock;
use crate::symbols::{self, Resolver};
use crate::{config, tracker_memory};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One symbolized frame.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) location: Location,
    pub(crate) origin: Origin,
}

/// How a report names the frames of its stacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Naming {
    /// From the debug info where the binary has some: functions (inlined ones too), files
    /// and lines; from the symbol tables elsewhere. The first report of a process reads
    /// the executable's debug info (tens of MiB and up to a second for a large binary) and
    /// frees it once built; later reports read it again only for addresses not named
    /// before. The C runtime (glibc, the dynamic loader) is always named from its symbol
    /// table: its frames are never a site.
    #[default]
    DebugInfo,
    /// From the symbol tables alone: one function per return address, without file, line
    /// or inlined functions; sites are found by the functions' crates. No debug info is
    /// read: the tables of every loaded module take ~2 ms and ~0.1 MiB of heap for a small
    /// program (16 bytes a function; ~10 ms and 0.4 MiB for 24,000 functions), once, and
    /// none at all if [`crate::preload_symbol_tables`] loaded them. For a report made when memory
    /// is short.
    SymbolTables,
}

/// What names frames: the binaries' symbol tables and debug info, the program's crates,
/// and the frames found so far.
struct Symbolizer {
    resolver: Resolver,
    crates: Crates,
    /// Frames named with [`Naming::DebugInfo`], by return address.
    cache: HashMap<usize, Arc<[Frame]>>,
    /// Whether debug info was read since the last [`release_debug_info`].
    debug_info_loaded: bool,
}

impl Symbolizer {
    /// Reads the loaded modules and which crates are the program's (≤ 1 ms for typical
    /// binaries: the executable's symbol table and panic locations).
    fn new() -> Self {
        let mut resolver = Resolver::new();
        let mut crates = resolver.crates(Symbolizer::new as fn() -> Self as usize as u64);
        if let Some(list) = &config::env().program_crates {
            crates.apply_override(list);
        }
        Self {
            resolver,
            crates,
            cache: HashMap::new(),
            debug_info_loaded: false,
        }
    }

    /// The frames at return address `address`, innermost first, named as `naming` says.
    fn name(&mut self, address: usize, naming: Naming) -> Vec<Frame> {
        let debug_info = naming == Naming::DebugInfo;
        self.debug_info_loaded |= debug_info;
        let mut found = Vec::new();
        // A return address points after the call; the call itself is one byte before.
        let call = address.saturating_sub(1) as u64;
        self.resolver.resolve(call, debug_info, &mut found);
        let mut frames: Vec<Frame> = found
            .into_iter()
            .map(|frame| {
                let function = frame.function.unwrap_or_else(|| format!("{address:#x}"));
                let origin = self.crates.classify_frame(&function, frame.file.as_deref());
                let file = frame.file.map(|file| relative_to_workspace(file, origin));
                Frame {
                    location: Location {
                        function,
                        file,
                        line: frame.line,
                        address: Some(address as u64),
                    },
                    origin,
                }
            })
            .collect();
        if frames.is_empty() {
            frames.push(Frame {
                location: Location {
                    address: Some(address as u64),
                    ..Location::named(&format!("{address:#x}"))
                },
                origin: Origin::Unknown,
            });
        }
        frames
    }
}

/// The symbolizer, built at the first report (or by [`preload_symbol_tables`]).
static SYMBOLIZER: SpinLock<Option<Symbolizer>> = SpinLock::new(None);

/// Heap held by the symbolizer: see [`symbol_bytes`].
static SYMBOL_BYTES: AtomicU64 = AtomicU64::new(0);

/// Adds the tracker's heap growth since `before` to [`SYMBOL_BYTES`].
fn count_growth(before: u64) {
    let grown = tracker_memory::live_bytes().saturating_sub(before);
    SYMBOL_BYTES.fetch_add(grown, Ordering::Relaxed);
}

/// The frames at return address `address`, innermost first. With [`Naming::DebugInfo`],
/// cached per address; with [`Naming::SymbolTables`], named anew each time (never mixed
/// with frames from debug info, so that a report names each site one way).
pub(crate) fn resolve(address: usize, naming: Naming) -> Arc<[Frame]> {
    let mut slot = SYMBOLIZER.lock();
    let before = tracker_memory::live_bytes();
    let symbolizer = slot.get_or_insert_with(Symbolizer::new);
    if naming == Naming::SymbolTables {
        symbolizer.resolver.load_symbol_tables();
        // The tables are held; the frames go to the caller.
        count_growth(before);
        return symbolizer.name(address, naming).into();
    }
    if let Some(frames) = symbolizer.cache.get(&address) {
        return Arc::clone(frames);
    }
    let frames: Arc<[Frame]> = symbolizer.name(address, naming).into();
    symbolizer.cache.insert(address, Arc::clone(&frames));
    count_growth(before);
    frames
}

/// Reads the symbol tables of every loaded module and which crates are the program's now
/// (see [`Naming::SymbolTables`] for the cost), so that a later report named from symbol
/// tables reads no file.
pub(crate) fn preload_symbol_tables() {
    let mut slot = SYMBOLIZER.lock();
    let before = tracker_memory::live_bytes();
    slot.get_or_insert_with(Symbolizer::new)
        .resolver
        .load_symbol_tables();
    count_growth(before);
}

/// Frees the debug info that naming new addresses loaded (tens of MiB for a typical
/// binary), keeping the names already resolved and the symbol tables. Called after each
/// report: a program that reports periodically holds only the per-address cache between
/// reports, and reloads debug info only when a report meets an address it has not named
/// before.
pub(crate) fn release_debug_info() {
    let mut slot = SYMBOLIZER.lock();
    let Some(symbolizer) = slot.as_mut() else {
        return;
    };
    if !std::mem::take(&mut symbolizer.debug_info_loaded) {
        return;
    }
    let before = tracker_memory::live_bytes();
    symbolizer.resolver.release_debug_info();
    let freed = before.saturating_sub(tracker_memory::live_bytes());
    let _ = SYMBOL_BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
        Some(held.saturating_sub(freed))
    });
}

/// Heap the tracker holds for symbols between reports (the symbol tables, the names
/// resolved so far, and any debug info not yet released), measured from the tracker's
/// growth while symbolizing.
pub(crate) fn symbol_bytes() -> u64 {
    SYMBOL_BYTES.load(Ordering::Relaxed)
}

/// A program file relative to its workspace root (`demos/src/cache.rs` rather than
/// `/home/me/project/demos/src/cache.rs`), wherever the program runs: the root is the
/// nearest directory above the file holding a `Cargo.lock`. Other files, and files whose
/// sources are not on this machine, keep the path the compiler recorded.
fn relative_to_workspace(file: String, origin: Origin) -> String {
    if origin != Origin::Program || !file.starts_with('/') {
        return file;
    }
    let path = std::path::Path::new(&file);
    let root = path
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("Cargo.lock").is_file());
    match root.and_then(|root| path.strip_prefix(root).ok()) {
        Some(relative) => relative.to_string_lossy().into_owned(),
        None => file,
    }
}

/// Drops the tracker's frames (and the allocator shims) from the top of a stack.
pub(crate) fn trim_tracker_frames(frames: &[Frame]) -> &[Frame] {
    match frames.iter().rposition(|f| f.origin == Origin::Tracker) {
        // The tracker's frames are only ever at the top: stop at the first gap of 8 frames.
        Some(last)
            if frames[..=last]
                .iter()
                .filter(|f| f.origin != Origin::Tracker)
                .count()
                < 8 =>
        {
            &frames[last + 1..]
        }
        _ => frames,
    }
}

/// The frame a user would fix: the first of the program's own code; else the first that is
/// not `std`; else (memory `std` allocates for itself) the first `std` frame past the
/// allocation machinery of `alloc`, `core` and the collections; else the first.
pub(crate) fn pick_site(frames: &[Frame]) -> Option<&Frame> {
    let is_machinery = |f: &&Frame| {
        f.location.file.as_deref().is_some_and(|file| {
            ["/library/alloc/", "/library/core/", "/rust/deps/"]
                .iter()
                .any(|dir| file.contains(dir))
        })
    };
    frames
        .iter()
        .find(|f| f.origin == Origin::Program)
        .or_else(|| frames.iter().find(|f| f.origin != Origin::Std))
        .or_else(|| frames.iter().find(|f| !is_machinery(f)))
        .or_else(|| frames.first())
}

/// Takes the symbolizer's lock before `fork` if it is free; `false` when a report holds it
/// (it may for seconds, loading debug info: `fork` must not wait for that).
pub(crate) fn try_lock_all() -> bool {
    SYMBOLIZER.try_lock_raw()
}

/// In a fork child whose parent forked while a report held the symbolizer's lock: the
/// symbolizer may be half-changed (a table half-read, the cache half-grown), so it is
/// leaked, never dropped, and the child builds a fresh one at its next report.
pub(crate) fn abandon_in_fork_child() {
    symbols::abandon_in_fork_child();
    // SAFETY: called in a fork child, from its atfork handler: its only thread is the one
    // that forked, which did not hold this lock.
    unsafe { SYMBOLIZER.reset_in_fork_child(None) };
}

/// Releases the lock taken by [`try_lock_all`].
///
/// # Safety
/// [`try_lock_all`] must have taken it, on this thread (or on the parent's, in a fork
/// child).
pub(crate) unsafe fn unlock_all() {
    // SAFETY: the caller guarantees that `try_lock_all` took this lock.
    unsafe { SYMBOLIZER.unlock_raw() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: Option<&str>) -> Frame {
        Frame {
            location: Location {
                function: function.into(),
                file: file.map(Into::into),
                line: Some(1),
                address: None,
            },
            origin: crate::origin::classify(function, file),
        }
    }

    #[inline(never)]
    fn named_here() -> usize {
        std::hint::black_box(named_here as fn() -> usize as usize)
    }

    #[test]
    fn a_return_address_names_the_call_one_byte_before_it() {
        // A "return address" one byte into the function: the call is its first byte (one
        // byte before that is another function, or padding).
        let address = named_here() + 1;
        let name = "alloc_tracker::symbolize::tests::named_here";
        let full = resolve(address, Naming::DebugInfo);
        let outer = full.last().expect("a frame");
        assert_eq!(outer.location.function, name, "{full:?}");
        assert!(
            outer
                .location
                .file
                .as_deref()
                .is_some_and(|file| file.ends_with("src/symbolize.rs")),
            "{full:?}"
        );
        assert_eq!(outer.origin, Origin::Tracker);
        assert!(full
            .iter()
            .all(|f| f.location.address == Some(address as u64)));
        // Freeing the debug info keeps the names found.
        release_debug_info();
        assert!(Arc::ptr_eq(&full, &resolve(address, Naming::DebugInfo)));
        // From the symbol table alone: the function, no file, its origin by its crate.
        preload_symbol_tables();
        let names = resolve(address, Naming::SymbolTables);
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(names[0].location.function, name);
        assert_eq!(names[0].location.file, None);
        assert_eq!(names[0].origin, Origin::Tracker);
    }

    #[test]
    fn an_address_outside_every_module_is_named_by_itself() {
        let frames = resolve(8, Naming::SymbolTables);
        assert_eq!(frames[0].location.function, "0x8");
        assert_eq!(frames[0].origin, Origin::Unknown);
    }

    #[test]
    fn program_files_are_shown_from_their_workspace_root() {
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        let file = workspace.join("demos/src/cache.rs").display().to_string();
        assert_eq!(
            relative_to_workspace(file.clone(), Origin::Program),
            "demos/src/cache.rs"
        );
        assert_eq!(relative_to_workspace(file.clone(), Origin::Std), file);
        let elsewhere = "/nonexistent/src/main.rs".to_string();
        assert_eq!(
            relative_to_workspace(elsewhere.clone(), Origin::Program),
            elsewhere
        );
    }

    #[test]
    fn site_is_the_first_program_frame_after_the_tracker() {
        let stack = [
            frame(
                "alloc_tracker::capture",
                Some(concat!(env!("CARGO_MANIFEST_DIR"), "/src/capture.rs")),
            ),
            frame("__rust_alloc", None),
            frame(
                "alloc::raw_vec::grow",
                Some("/rustc/h/library/alloc/src/raw_vec.rs"),
            ),
            frame(
                "regex::compile",
                Some("/r/.cargo/registry/src/x/regex-1/src/lib.rs"),
            ),
            frame("app::handler", Some("src/main.rs")),
            frame("app::main", Some("src/main.rs")),
        ];
        let trimmed = trim_tracker_frames(&stack);
        assert_eq!(trimmed[0].location.function, "alloc::raw_vec::grow");
        assert_eq!(
            pick_site(trimmed).unwrap().location.function,
            "app::handler"
        );
        // Without program frames: the first frame outside std (the dependency).
        assert_eq!(
            pick_site(&trimmed[..2]).unwrap().location.function,
            "regex::compile"
        );
    }
}
