//! Addresses of this process to frames: function, file and line, with the functions
//! inlined at the address first — what `backtrace::resolve` gives, with the naming rules
//! of builds that carry little or no debug info, and with its state in a plain value that
//! its owner locks (and so can abandon in a `fork` child, which `backtrace`'s global state
//! does not allow).
//!
//! Per module, on first use: its symbol table ([`SymbolTable`], small, kept) and, where
//! asked, its debug info ([`Dwarf`], tens of MiB, released after each report). The C
//! runtime's debug info is never read ([`Module::is_c_runtime`]).
//!
//! **Names.** The debug info names every frame, except:
//! - the outermost function at an address takes the symbol table's name where the debug
//!   info has only a short one (`debug = "line-tables-only"` records `render`,
//!   `{closure#0}`, `reserve<u64, …>`: no module path) or none (no debug info at all);
//! - an inlined closure `{closure#N}` takes the full path its caller proves
//!   ([`qualify_closure`]).
//!
//! Other inlined functions keep their short name: they have no symbol of their own, and a
//! module path guessed from the file would be wrong for inline `mod` blocks and `#[path]`;
//! their file and line say where they are.

use super::dwarf::{debug_file_by_build_id, Dwarf, DwarfFrame};
use super::inline::{is_short_name, qualify_closure};
use super::modules::{file_build_id, Module, Modules};
use super::program;
use super::symtab::{demangle, Source, SymbolTable};
use crate::origin::Crates;
use std::path::Path;

/// One frame at an address.
pub(crate) type Frame = DwarfFrame;

/// What is known of one module, each part read on first use (`None`: not tried yet).
#[derive(Default)]
struct Known {
    symbols: Option<Option<SymbolTable>>,
    debug: Option<Option<Dwarf>>,
}

/// The frames at run-time addresses of this process, from the loaded modules' debug info
/// and symbol tables.
pub(crate) struct Resolver {
    modules: Modules,
    /// What is known of each module, in the order of `modules`.
    known: Vec<Known>,
}

impl Resolver {
    /// A resolver for the modules loaded now, nothing read yet.
    pub(crate) fn new() -> Self {
        let modules = Modules::loaded();
        let known = (0..modules.len()).map(|_| Known::default()).collect();
        Self { modules, known }
    }

    /// Appends the frames at `address` to `frames`, innermost first: for a return address,
    /// pass `address - 1` (the call, not the instruction after it). With `debug_info`,
    /// from the debug info where the module has some (inlined functions, files, lines);
    /// otherwise the symbol table's name alone. Nothing where neither knows the address.
    pub(crate) fn resolve(&mut self, address: u64, debug_info: bool, frames: &mut Vec<Frame>) {
        let Some(index) = self.index_of(address) else {
            return;
        };
        let Some(module) = self.modules.get(index) else {
            return;
        };
        let probe = address.wrapping_sub(module.bias);
        let mut found = Vec::new();
        if debug_info && !module.is_c_runtime() {
            let known = &mut self.known[index];
            if let Some(dwarf) = known.debug.get_or_insert_with(|| Dwarf::load(module)) {
                dwarf.frames(probe, &mut found);
            }
        }
        for i in 1..found.len() {
            let (inner, outer) = found.split_at_mut(i);
            let (callee, caller) = (&mut inner[i - 1], &outer[0]);
            if let (Some(name), Some(caller)) = (&callee.function, &caller.function) {
                if let Some(full) = qualify_closure(name, caller) {
                    callee.function = Some(full);
                }
            }
        }
        match found.last_mut() {
            Some(outer) if !outer.function.as_deref().is_none_or(is_short_name) => {}
            Some(outer) => {
                if let Some(name) = self.symbol_name(index, probe) {
                    outer.function = Some(name);
                }
            }
            None => found.extend(self.symbol_name(index, probe).map(|name| Frame {
                function: Some(name),
                file: None,
                line: None,
            })),
        }
        frames.append(&mut found);
    }

    /// Reads every module's symbol table now, so that naming frames by symbol tables
    /// alone reads no file later (ahead of a report made when memory is short).
    pub(crate) fn load_symbol_tables(&mut self) {
        for index in 0..self.known.len() {
            self.symbols(index);
        }
    }

    /// Frees the debug info read so far (symbol tables are kept: they are small).
    pub(crate) fn release_debug_info(&mut self) {
        for known in &mut self.known {
            known.debug = None;
        }
    }

    /// Which crates are the program's, as the executable (its symbol table, read if it was
    /// not) and the module holding address `own` (the tracker's code: a library when the
    /// tracker is inside one) show them ([`program::detect`]).
    pub(crate) fn crates(&mut self, own: u64) -> Crates {
        let own = self.index_of(own);
        let Some(exe) =
            (0..self.modules.len()).find(|&i| self.modules.get(i).is_some_and(|m| m.is_executable))
        else {
            return Crates::default();
        };
        self.symbols(exe);
        let library = own.filter(|&i| i != exe).and_then(|i| self.modules.get(i));
        match (self.modules.get(exe), &self.known[exe].symbols) {
            (Some(module), Some(Some(table))) => program::detect(module, table, library),
            _ => Crates::default(),
        }
    }

    /// The demangled name of the function covering `probe` in module `index`.
    fn symbol_name(&mut self, index: usize, probe: u64) -> Option<String> {
        Some(demangle(self.symbols(index)?.lookup(probe)?.mangled))
    }

    /// The symbol table of module `index`, read on first use.
    fn symbols(&mut self, index: usize) -> Option<&SymbolTable> {
        let module = self.modules.get(index)?;
        self.known[index]
            .symbols
            .get_or_insert_with(|| load_symbols(module))
            .as_ref()
    }

    /// The index of the module holding `address`; the list of modules is read again when
    /// none does (a library loaded since), keeping what was read of those still there.
    fn index_of(&mut self, address: u64) -> Option<usize> {
        if let Some(index) = self.modules.index_of(address) {
            return Some(index);
        }
        let old = std::mem::replace(&mut self.modules, Modules::loaded());
        let mut old: Vec<(&Module, Known)> = old.iter().zip(self.known.drain(..)).collect();
        self.known = self
            .modules
            .iter()
            .map(|module| match old.iter().position(|(m, _)| *m == module) {
                Some(i) => old.swap_remove(i).1,
                None => Known::default(),
            })
            .collect();
        self.modules.index_of(address)
    }
}

/// A module's symbol table: from its file if that is the file loaded (same build id), with
/// a separate debug file's full `.symtab` preferred to a stripped file's `.dynsym`.
fn load_symbols(module: &Module) -> Option<SymbolTable> {
    if !module.has_file() {
        return None;
    }
    let same_file = |path: &Path| {
        module.build_id.is_empty() || file_build_id(path).as_deref() == Some(&module.build_id[..])
    };
    let from_file = same_file(module.open_path())
        .then(|| SymbolTable::from_file(module.open_path()))
        .flatten();
    if from_file
        .as_ref()
        .is_some_and(|t| t.source() == Source::Symtab)
    {
        return from_file;
    }
    let debug_file = debug_file_by_build_id(&module.build_id)
        .filter(|path| same_file(path))
        .and_then(|path| SymbolTable::from_file(&path))
        .filter(|t| t.source() == Source::Symtab);
    debug_file.or(from_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn resolved_here() -> u64 {
        std::hint::black_box(resolved_here as *const () as u64)
    }

    #[test]
    fn names_a_function_its_file_and_line() {
        let address = resolved_here() + 1;
        let mut resolver = Resolver::new();
        let mut frames = Vec::new();
        resolver.resolve(address, true, &mut frames);
        let outer = frames.last().expect("a frame");
        assert_eq!(
            outer.function.as_deref(),
            Some("alloc_tracker::symbols::resolver::tests::resolved_here")
        );
        assert!(
            outer
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("src/symbols/resolver.rs")),
            "{outer:?}"
        );
        assert!(outer.line.is_some());
        let before = frames.len();
        resolver.resolve(0, true, &mut frames);
        assert_eq!(frames.len(), before, "no module holds address 0");
    }

    #[test]
    fn symbol_tables_alone_name_functions_without_files() {
        let mut resolver = Resolver::new();
        resolver.load_symbol_tables();
        let mut frames = Vec::new();
        resolver.resolve(resolved_here() + 1, false, &mut frames);
        assert_eq!(
            frames,
            [Frame {
                function: Some("alloc_tracker::symbols::resolver::tests::resolved_here".into()),
                file: None,
                line: None,
            }]
        );
        // libc's functions are named (from `.dynsym` at least), never from debug info; a
        // static C library (musl's `crt-static`) is the program's own code.
        if cfg!(target_feature = "crt-static") {
            return;
        }
        frames.clear();
        resolver.resolve(libc::malloc as *const () as u64, true, &mut frames);
        assert!(
            frames.len() == 1
                && frames[0].file.is_none()
                && frames[0]
                    .function
                    .as_deref()
                    .is_some_and(|f| f.contains("malloc")),
            "{frames:?}"
        );
    }

    #[test]
    fn the_program_crates_are_read_from_the_executable() {
        let mut resolver = Resolver::new();
        let crates = resolver.crates(resolved_here());
        assert!(crates.dependencies.contains("serde_json"), "{crates:?}");
    }
}
