//! Reading this process's binaries: which modules are loaded ([`modules`]), their symbol
//! tables ([`symtab`]) and debug info ([`dwarf`]), the frames at an address
//! ([`resolver`], with the naming rules of [`inline`]), and which crates are the program's
//! ([`program`]). No `backtrace`: the state is a plain value its owner locks, so a `fork`
//! child can start afresh (see `symbolize`).
//!
//! Files are mapped read-only ([`mmap`]), never copied: a symbol table costs 16 bytes a
//! function on the heap, its names stay in the page cache. 64-bit ELF, Linux.

pub(crate) mod dwarf;
pub(crate) mod inline;
pub(crate) mod mmap;
pub(crate) mod modules;
pub(crate) mod program;
pub(crate) mod resolver;
pub(crate) mod symtab;
