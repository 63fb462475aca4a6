//! Reading this process's binaries: which modules are loaded ([`modules`]), their symbol
//! tables ([`symtab`]) and debug info ([`dwarf`]), the frames at an address
//! ([`resolver`], with the naming rules of [`inline`]), and which crates are the program's
//! ([`program`]). No `backtrace`: the state is a plain value its owner locks, so a `fork`
//! child can start afresh (see `symbolize`).
//!
//! Files are mapped read-only ([`mmap`]), never copied: a symbol table costs 16 bytes a
//! function on the heap, its names stay in the page cache. 64-bit ELF, Linux.
//!
//! **Elsewhere** (Mach-O on macOS, PE on Windows) frames are named by `backtrace::resolve`
//! instead ([`portable`]: DWARF from dSYMs or the objects on macOS, from the PE on
//! windows-gnu, PDBs through dbghelp on MSVC), with the same interface; there, which crates
//! are dependencies is told by the source paths of the debug info only, and pprof gets no
//! mappings. This is the one switch between the two.

/// Items only for ELF platforms (Linux).
macro_rules! elf {
    ($($item:item)*) => {$(
        #[cfg(target_os = "linux")]
        $item
    )*};
}

elf! {
    pub(crate) mod dwarf;
    pub(crate) mod inline;
    pub(crate) mod mmap;
    pub(crate) mod modules;
    pub(crate) mod program;
    pub(crate) mod resolver;
    pub(crate) mod symtab;
    pub(crate) use resolver::Resolver;

    /// Nothing to forget: all of the ELF reader's state is the symbolizer's value, which
    /// `symbolize` abandons itself.
    pub(crate) fn abandon_in_fork_child() {}
}

#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::{abandon_in_fork_child, Resolver};

use crate::export::pprof::MemoryMapping;

/// The executable mappings of this process's modules (as `/proc/self/maps` shows them),
/// with each module's GNU build id (read from its notes in memory), for pprof's `Mapping`
/// rows; none off ELF platforms.
pub(crate) fn executable_mappings() -> Vec<MemoryMapping> {
    #[cfg(target_os = "linux")]
    {
        modules::Modules::loaded()
            .iter()
            .filter(|module| module.has_file())
            .flat_map(|module| {
                let file = module.path.display().to_string();
                let build_id = module.build_id_hex();
                module.mappings().map(move |mapping| MemoryMapping {
                    start: mapping.start,
                    limit: mapping.limit,
                    offset: mapping.offset,
                    file: file.clone(),
                    build_id: build_id.clone(),
                })
            })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}
