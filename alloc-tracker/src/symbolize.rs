//! Turning return addresses into functions, files and lines — only when a report is made,
//! once per address, and never under a lock the allocation path takes.
//!
//! Each address may expand to several frames (functions inlined into the one that made the
//! call), innermost first. Each frame is classified by where its source lives, which is what
//! picks a stack's *site*: the first frame of the program's own code.

use crate::origin::{classify, Origin};
use crate::report::Location;
use crate::spin::SpinLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One symbolized frame.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) location: Location,
    pub(crate) origin: Origin,
}

static SYMBOL_BYTES: AtomicU64 = AtomicU64::new(0);

/// Whether debug info was loaded since the last [`release_debug_info`].
static DEBUG_INFO_LOADED: AtomicBool = AtomicBool::new(false);

type Cache = HashMap<usize, Arc<[Frame]>>;
static CACHE: SpinLock<Option<Cache>> = SpinLock::new(None);

/// The frames at return address `address`, innermost first (cached).
pub(crate) fn resolve(address: usize) -> Arc<[Frame]> {
    let mut cache = CACHE.lock();
    let cache = cache.get_or_insert_with(HashMap::default);
    if let Some(frames) = cache.get(&address) {
        return Arc::clone(frames);
    }
    let before = crate::tracker_memory::live_bytes();
    let frames: Arc<[Frame]> = resolve_uncached(address).into();
    DEBUG_INFO_LOADED.store(true, Ordering::Relaxed);
    cache.insert(address, Arc::clone(&frames));
    let grown = crate::tracker_memory::live_bytes().saturating_sub(before);
    SYMBOL_BYTES.fetch_add(grown, Ordering::Relaxed);
    frames
}

/// Frees the debug info that naming new addresses loaded (tens of MiB for a typical
/// binary and libc), keeping the names already resolved. Called after each report: a
/// program that reports periodically holds only the per-address cache between reports,
/// and reloads debug info only when a report meets an address it has not named before.
pub(crate) fn release_debug_info() {
    if !DEBUG_INFO_LOADED.swap(false, Ordering::Relaxed) {
        return;
    }
    if BACKTRACE_UNUSABLE.load(Ordering::Relaxed) {
        return;
    }
    let before = crate::tracker_memory::live_bytes();
    backtrace::clear_symbol_cache();
    let freed = before.saturating_sub(crate::tracker_memory::live_bytes());
    let _ = SYMBOL_BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
        Some(held.saturating_sub(freed))
    });
}

/// Heap the tracker holds for symbols between reports (the names resolved so far, and any
/// debug info not yet released), measured from the tracker's growth while symbolizing.
pub(crate) fn symbol_bytes() -> u64 {
    SYMBOL_BYTES.load(Ordering::Relaxed)
}

fn resolve_uncached(address: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    // A return address points after the call; the call itself is one byte before.
    let lookup = address.saturating_sub(1);
    let usable = !BACKTRACE_UNUSABLE.load(Ordering::Relaxed);
    let resolve = |callback: &mut dyn FnMut(&backtrace::Symbol)| {
        if usable {
            backtrace::resolve(lookup as *mut std::ffi::c_void, callback);
        }
    };
    resolve(&mut |symbol| {
        let function = symbol
            .name()
            .map(|name| format!("{name:#}"))
            .unwrap_or_else(|| format!("{address:#x}"));
        let file = symbol
            .filename()
            .map(|path| path.to_string_lossy().into_owned());
        let origin = classify(&function, file.as_deref());
        let file = file.map(|file| relative_to_workspace(file, origin));
        frames.push(Frame {
            location: Location {
                function,
                file,
                line: symbol.lineno(),
                address: Some(address as u64),
            },
            origin,
        });
    });
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

/// Takes the cache lock before `fork` if it is free; `false` when a report holds it (it
/// may for seconds, loading debug info: `fork` must not wait for that).
pub(crate) fn try_lock_all() -> bool {
    CACHE.try_lock_raw()
}

/// Set in a fork child whose parent forked while a report was symbolizing: the state the
/// `backtrace` crate keeps behind its own lock may be half-built (and that lock held by a
/// thread that is not here), so this process names frames without it.
static BACKTRACE_UNUSABLE: AtomicBool = AtomicBool::new(false);

/// In a fork child whose parent forked while a report held the cache lock: starts a fresh
/// cache (the old one may be half-changed, and is leaked) and stops using the `backtrace`
/// crate's resolver, whose lock may be held by a thread that did not come along. Frames are
/// then named by their address alone.
pub(crate) fn abandon_in_fork_child() {
    BACKTRACE_UNUSABLE.store(true, Ordering::Relaxed);
    // SAFETY: called in a fork child, from its atfork handler: its only thread is the one
    // that forked, which did not hold this lock.
    unsafe { CACHE.reset_in_fork_child(None) };
}

/// Releases the lock taken by [`try_lock_all`].
///
/// # Safety
/// [`try_lock_all`] must have taken it, on this thread (or on the parent's, in a fork
/// child).
pub(crate) unsafe fn unlock_all() {
    // SAFETY: the caller guarantees that `try_lock_all` took this lock.
    unsafe { CACHE.unlock_raw() }
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
            origin: classify(function, file),
        }
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
