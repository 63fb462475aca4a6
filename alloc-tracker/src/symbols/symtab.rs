//! Function names from an ELF file's symbol table (`.symtab`, else `.dynsym`): small,
//! loadable in milliseconds, and complete paths even where the debug info has only short
//! names (`line-tables-only`) or none at all (`debug = false`).
//!
//! The table keeps only function symbols, as one array sorted by address of
//! `(start, size, name offset)`, 16 bytes each, on the heap. The mangled names stay in
//! the file's string table, mapped read-only (page cache, not heap), and are demangled
//! at lookup. Of the file, only the headers, the symbol table and the string table are
//! read, never the debug info.

use super::mmap::Mmap;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::Endianness;
use std::ops::Range;
use std::path::Path;

/// One function symbol: where it starts (a virtual address of the file, before the load
/// bias), how long it is, and where its mangled name starts in the string table.
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u64,
    size: u32,
    name: u32,
}

/// Which of the file's tables the names came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The full symbol table (`.symtab`): every function, local ones included.
    Symtab,
    /// Only the dynamic symbol table (`.dynsym`, the file was stripped): the exported
    /// functions only. A Rust executable exports almost none.
    Dynsym,
}

/// The function symbols of one ELF file, sorted by address.
pub(crate) struct SymbolTable {
    entries: Vec<Entry>,
    /// The mapped file.
    map: Mmap,
    /// Where its string table (mangled names, each ended by a NUL) is.
    strings: Range<usize>,
    source: Source,
}

/// A function symbol found by [`SymbolTable::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Symbol<'t> {
    /// The mangled name, as in the file.
    pub(crate) mangled: &'t str,
    /// Its first address (file virtual address).
    pub(crate) start: u64,
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// `name` demangled without its hash (`{:#}`), as `backtrace` prints names; a name that is
/// not a Rust symbol is returned as it is, without a symbol version
/// (`__libc_start_main@@GLIBC_2.34` → `__libc_start_main`).
pub(crate) fn demangle(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.split('@').next().unwrap_or(name).to_string(),
    }
}

/// What [`SymbolTable::parse`] reads: the function entries, sorted, the range of their
/// string table in the file, and which symbol table they came from.
type Parsed = (Vec<Entry>, Range<usize>, Source);

impl SymbolTable {
    /// Reads the function symbols of the ELF file at `path` (mapping it; reading only its
    /// headers, symbol table and string table). `.symtab` if the file has one, else
    /// `.dynsym`. `None` if the file cannot be opened or is not a 64-bit ELF file. The
    /// table keeps the file mapped for its names.
    pub(crate) fn from_file(path: &Path) -> Option<Self> {
        let map = Mmap::open(path)?;
        let (entries, strings, source) = Self::parse(map.bytes()).ok()?;
        Some(SymbolTable {
            entries,
            map,
            strings,
            source,
        })
    }

    fn parse(data: &[u8]) -> Result<Parsed, object::Error> {
        let header = FileHeader64::<Endianness>::parse(data)?;
        let endian = header.endian()?;
        let sections = header.sections(endian, data)?;
        let (symbols, source) = match sections.symbols(endian, data, elf::SHT_SYMTAB)? {
            table if !table.is_empty() => (table, Source::Symtab),
            _ => (
                sections.symbols(endian, data, elf::SHT_DYNSYM)?,
                Source::Dynsym,
            ),
        };
        let strings = match sections.section(symbols.string_section()) {
            Ok(section) => section.data(endian, data)?,
            Err(_) => &[],
        };
        let range = match strings.len() {
            0 => 0..0,
            len => {
                let start = strings.as_ptr() as usize - data.as_ptr() as usize;
                start..start + len
            }
        };
        let is_function = |symbol: &&elf::Sym64<Endianness>| {
            let kind = symbol.st_type();
            (kind == elf::STT_FUNC || kind == elf::STT_GNU_IFUNC)
                && !symbol.is_undefined(endian)
                && symbol.st_size(endian) > 0
                && nul_terminated(strings, symbol.st_name(endian))
                    .is_some_and(|name| !name.is_empty() && std::str::from_utf8(name).is_ok())
        };
        let count = symbols.symbols().iter().filter(is_function).count();
        let mut entries = Vec::with_capacity(count);
        entries.extend(
            symbols
                .symbols()
                .iter()
                .filter(is_function)
                .map(|symbol| Entry {
                    start: symbol.st_value(endian),
                    size: u32::try_from(symbol.st_size(endian)).unwrap_or(u32::MAX),
                    name: symbol.st_name(endian),
                }),
        );
        // By address; at one address (aliases of a merged function) the longest first,
        // then the first name in the file; keep that one.
        entries.sort_by(|a, b| a.start.cmp(&b.start).then(b.size.cmp(&a.size)));
        entries.dedup_by_key(|entry| entry.start);
        entries.shrink_to_fit();
        Ok((entries, range, source))
    }

    /// The function covering `address` (a virtual address of the file: a run-time address
    /// minus the module's load bias).
    pub(crate) fn lookup(&self, address: u64) -> Option<Symbol<'_>> {
        let after = self.entries.partition_point(|entry| entry.start <= address);
        // A symbol nested in another one (rare: a local label typed as a function) ends
        // before the outer one does: look a few entries back for one that covers.
        self.entries[..after]
            .iter()
            .rev()
            .take(4)
            .find(|entry| address - entry.start < u64::from(entry.size))
            .map(|entry| self.symbol(entry))
    }

    fn symbol(&self, entry: &Entry) -> Symbol<'_> {
        let strings = self
            .map
            .bytes()
            .get(self.strings.clone())
            .unwrap_or_default();
        let bytes = nul_terminated(strings, entry.name).unwrap_or_default();
        Symbol {
            // Only valid UTF-8 names were stored.
            mangled: std::str::from_utf8(bytes).unwrap_or_default(),
            start: entry.start,
            size: u64::from(entry.size),
        }
    }

    /// Which of the file's tables the names came from.
    pub(crate) fn source(&self) -> Source {
        self.source
    }

    /// Every function symbol, in address order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Symbol<'_>> {
        self.entries.iter().map(|entry| self.symbol(entry))
    }
}

/// The bytes at `offset` in `strings` up to (without) the next NUL.
fn nul_terminated(strings: &[u8], offset: u32) -> Option<&[u8]> {
    let rest = strings.get(usize::try_from(offset).ok()?..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_of_this_test() -> usize {
        std::hint::black_box(a_function_of_this_test as *const () as usize)
    }

    #[test]
    fn names_this_tests_own_functions() {
        let exe = std::env::current_exe().unwrap();
        let table = SymbolTable::from_file(&exe).unwrap();
        assert_eq!(table.source(), Source::Symtab);
        assert!(
            table.iter().count() > 1000,
            "{} functions",
            table.iter().count()
        );
        let modules = super::super::modules::Modules::loaded();
        let main = modules
            .iter()
            .find(|m| m.is_executable)
            .expect("the executable is loaded");
        let address = a_function_of_this_test() as u64 + 3;
        let symbol = table.lookup(address - main.bias).expect("covered");
        assert_eq!(
            demangle(symbol.mangled),
            "alloc_tracker::symbols::symtab::tests::a_function_of_this_test"
        );
        assert!(
            symbol.start + main.bias <= address && address < symbol.start + main.bias + symbol.size
        );
    }

    #[test]
    fn lookups_outside_every_function_find_nothing() {
        let exe = std::env::current_exe().unwrap();
        let table = SymbolTable::from_file(&exe).unwrap();
        assert!(table.lookup(0).is_none());
        let last = table.iter().last().unwrap();
        assert!(table.lookup(last.start + last.size).is_none());
        assert_eq!(table.lookup(last.start + last.size - 1), Some(last));
        // Sorted, without two entries at one address.
        let starts: Vec<u64> = table.iter().map(|s| s.start).collect();
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn non_rust_names_are_kept_as_they_are() {
        assert_eq!(demangle("malloc"), "malloc");
        assert_eq!(
            demangle("__libc_start_main@@GLIBC_2.34"),
            "__libc_start_main"
        );
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        assert!(SymbolTable::parse(b"not an elf file").is_err());
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for cut in [16, 64, 1000, exe.len() / 2] {
            let _ = SymbolTable::parse(&exe[..cut]);
        }
        assert!(SymbolTable::from_file(Path::new("/nonexistent")).is_none());
    }
}
