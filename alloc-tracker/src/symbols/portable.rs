//! Addresses to frames off ELF platforms (Mach-O on macOS, PE on Windows), through
//! `backtrace::resolve`: it reads the DWARF of dSYM bundles or of the object files on
//! macOS, the DWARF a windows-gnu PE carries, and PDBs through dbghelp on MSVC. The same
//! interface as the ELF resolver, with less:
//!
//! - which crates are dependencies is told by the source paths of the debug info only
//!   ([`Resolver::crates`] knows none from the binary): without debug info, every crate but
//!   `std`'s and the tracker's counts as the program's (`ALLOC_TRACKER_PROGRAM_CRATES`
//!   corrects that);
//! - naming from the symbol tables alone still goes through `backtrace`, which reads the
//!   debug info: the name is the outermost function's, without file or line;
//! - `backtrace` keeps its own cache behind its own lock. A `fork` child whose parent forked
//!   while a report was naming frames (that lock possibly held by a thread the child does
//!   not have) names no frame any more ([`abandon_in_fork_child`]): its reports show
//!   addresses rather than hang.

use crate::origin::Crates;
use std::sync::atomic::{AtomicBool, Ordering};

/// One frame at an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The function, demangled, without its hash.
    pub(crate) function: Option<String>,
    /// The source file, as the compiler recorded it.
    pub(crate) file: Option<String>,
    /// The line in that file.
    pub(crate) line: Option<u32>,
}

/// Set in a fork child forked while a report was naming frames: `backtrace` is not called
/// there again.
static UNUSABLE: AtomicBool = AtomicBool::new(false);

/// The frames at run-time addresses of this process, through `backtrace`.
pub(crate) struct Resolver;

impl Resolver {
    /// A resolver; `backtrace` reads the modules on first use.
    pub(crate) fn new() -> Self {
        Resolver
    }

    /// Appends the frames at `address` to `frames`, innermost first: for a return address,
    /// pass `address - 1` (the call, not the instruction after it). With `debug_info`, every
    /// frame (inlined functions too) with its file and line; otherwise the outermost
    /// function's name alone. Nothing where nothing is known of the address.
    pub(crate) fn resolve(&mut self, address: u64, debug_info: bool, frames: &mut Vec<Frame>) {
        if UNUSABLE.load(Ordering::Relaxed) {
            return;
        }
        let mut found = Vec::new();
        // `backtrace::resolve` takes a return address and looks one byte before it.
        let Some(probe) = usize::try_from(address).ok().and_then(|a| a.checked_add(1)) else {
            return;
        };
        backtrace::resolve(probe as *mut std::ffi::c_void, |symbol| {
            found.push(Frame {
                function: symbol.name().map(|name| match name.as_str() {
                    Some(raw) => demangle(raw),
                    None => format!("{name:#}"),
                }),
                file: symbol.filename().map(|path| path.display().to_string()),
                line: symbol.lineno(),
            });
        });
        if !debug_info {
            found = found
                .pop()
                .map(|outer| Frame {
                    file: None,
                    line: None,
                    ..outer
                })
                .into_iter()
                .collect();
        }
        frames.append(&mut found);
    }

    /// Nothing to load ahead: `backtrace` reads what it needs on first use.
    pub(crate) fn load_symbol_tables(&mut self) {}

    /// Frees what `backtrace` has cached (its parsed debug info).
    pub(crate) fn release_debug_info(&mut self) {
        backtrace::clear_symbol_cache();
    }

    /// No crate is known to be a dependency from the binary here: frames are classified by
    /// their files, and by `std`'s and the tracker's crate names.
    pub(crate) fn crates(&mut self, _own: u64) -> Crates {
        Crates::default()
    }
}

/// A symbol's name demangled without its hash (`alloc_tracker::report`), or as it is.
fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.to_string(),
    }
}

/// In a fork child whose parent forked while a report held the symbolizer: `backtrace`'s
/// lock may be held by a thread the child does not have, so it is never called again here.
pub(crate) fn abandon_in_fork_child() {
    UNUSABLE.store(true, Ordering::Relaxed);
}
