//! Which crates are the program's and which are its dependencies, read from the running
//! executable, for frames without a source file (builds without debug info; see
//! [`crate::origin::Crates`] for how a function is then classified).
//!
//! rustc embeds the source path of every panic location (`unwrap`, indexing, `panic!`…),
//! and Cargo passes a dependency's sources as absolute paths
//! (`…/registry/src/…/regex-1.11.0/…`, `…/git/checkouts/…`) but the workspace's relative
//! to its root (`demos/src/cache.rs`). A crate with dependency paths is a dependency; every
//! other crate is the program's — the crate of `main`, the workspace's crates whatever
//! their directories are called, and (the failure mode) a dependency with no panic location
//! at all. Reading them costs about 0.5 ms and ~80 KiB for a typical binary.

use super::modules::Module;
use super::symtab::{demangle, SymbolTable};
use crate::origin::{crate_name, Crates, STD_CRATES};
use object::elf::FileHeader64;
use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;
use std::collections::BTreeSet;

/// The crates as the executable `exe` (with its symbol table `table`) and the library the
/// tracker is linked into, if that is not the executable (a Python extension, a plugin),
/// show them:
/// - dependencies: the crates of absolute panic-location paths (registry and git
///   checkouts by package directory, `regex-automata-0.4.19` → `regex_automata`; other
///   absolute paths by the directory holding `src/`), and of relative paths with a version
///   (`regex-1.11.0/src/…`, Cargo's `trim-paths`);
/// - the program's, known by name: the crate of `main` (the `<crate>::main` symbol
///   matching the executable's name, the only one, else the executable's name:
///   `cache-leak` → `cache_leak`, a test binary's `-<hash>` dropped), and the workspace's
///   crates of relative panic locations (`demos/src/cache.rs` → `demos`; `src/bin/x.rs`,
///   `examples/x.rs`, `tests/x.rs` → `x`) unless also a dependency.
pub(crate) fn detect(exe: &Module, table: &SymbolTable, library: Option<&Module>) -> Crates {
    let mut crates = Crates::default();
    let exe_name = exe
        .path
        .file_name()
        .map(|n| crate_name(&strip_test_hash(&n.to_string_lossy())))
        .unwrap_or_default();
    let mains = main_crates(table);
    let matching: Vec<&String> = mains.iter().filter(|c| **c == exe_name).collect();
    match (matching.as_slice(), mains.len()) {
        ([name], _) => crates.add_program(name),
        ([], 1) => crates.add_program(&mains[0]),
        _ if !exe_name.is_empty() => crates.add_program(&exe_name),
        _ => {}
    }
    let mut workspace = BTreeSet::new();
    for module in std::iter::once(exe).chain(library) {
        for path in panic_location_paths(module) {
            match path_crates(&path) {
                PathCrates::Workspace(names) => workspace.extend(names),
                PathCrates::Dependency(name) => crates.add_dependency(&name),
                PathCrates::Std(Some(name)) => {
                    crates.std.insert(name);
                }
                PathCrates::Std(None) | PathCrates::Unknown => {}
            }
        }
    }
    for name in workspace {
        if !crates.dependencies.contains(&name) {
            crates.add_program(&name);
        }
    }
    crates
}

/// `name` without the `-<16 hex digits>` Cargo appends to test and bench binaries.
fn strip_test_hash(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((stem, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            stem.to_string()
        }
        _ => name.to_string(),
    }
}

/// The crates `X` of the executable's `X::main` functions (binary crates' `main`).
fn main_crates(table: &SymbolTable) -> Vec<String> {
    let mut crates: Vec<String> = table
        .iter()
        // `main` is mangled as `4main` in both manglings: demangle only those.
        .filter(|symbol| symbol.mangled.contains("4main"))
        .filter_map(|symbol| {
            let name = demangle(symbol.mangled);
            let krate = name.strip_suffix("::main")?;
            let is_ident = !krate.is_empty()
                && krate
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            (is_ident && !STD_CRATES.contains(&krate)).then(|| krate.to_string())
        })
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

/// What a panic-location path says about its crate.
#[derive(Debug, PartialEq, Eq)]
enum PathCrates {
    /// Relative to the workspace: the crates it may be (package directory, target name).
    Workspace(Vec<String>),
    /// An absolute path outside the toolchain (registry, git checkout, path dependency
    /// outside the workspace), or a relative `name-1.2.3/…` (Cargo's `trim-paths`).
    Dependency(String),
    /// The toolchain's sources; with the crate for std's vendored dependencies
    /// (`/rust/deps/<crate>-<version>/…`).
    Std(Option<String>),
    /// Not the path of a crate's source.
    Unknown,
}

/// The crate(s) a source path belongs to.
fn path_crates(path: &str) -> PathCrates {
    if let Some(rest) = path.strip_prefix("/rust/deps/") {
        let dir = rest.split('/').next().unwrap_or_default();
        return PathCrates::Std(Some(crate_name(strip_version(dir))).filter(|n| !n.is_empty()));
    }
    if path.starts_with("/rustc/") || path.contains("/lib/rustlib/src/rust/") {
        return PathCrates::Std(None);
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if !path.starts_with('/') {
        return relative_path_crates(&parts);
    }
    // Registry: `…/registry/src/<index>/<name>-<version>/…`.
    if let Some(at) = parts
        .windows(2)
        .position(|pair| pair == ["registry", "src"])
    {
        return match parts.get(at + 3) {
            Some(dir) => PathCrates::Dependency(crate_name(strip_version(dir))),
            None => PathCrates::Unknown,
        };
    }
    // Git: `…/git/checkouts/<repo>-<hash>/<rev>/src/…`, or a crate of the repository
    // `…/<rev>/<crate>/src/…`.
    if let Some(at) = parts.iter().position(|p| *p == "checkouts") {
        let Some(repo) = parts.get(at + 1) else {
            return PathCrates::Unknown;
        };
        let repo = repo.rsplit_once('-').map_or(*repo, |(repo, _)| repo);
        return match parts.get(at + 3..).unwrap_or_default() {
            ["src", ..] => PathCrates::Dependency(crate_name(repo)),
            [dir, "src", ..] => PathCrates::Dependency(crate_name(dir)),
            _ => PathCrates::Unknown,
        };
    }
    // Any other absolute path: a path dependency outside the workspace, `…/<dir>/src/…`.
    match parts.iter().rposition(|p| *p == "src") {
        Some(root) if root > 0 => {
            PathCrates::Dependency(crate_name(strip_version(parts[root - 1])))
        }
        _ => PathCrates::Unknown,
    }
}

/// The crates a path relative to the workspace may be: its package directory (the lib's
/// name, usually) and its target's name (binaries, examples, tests, benches).
fn relative_path_crates(parts: &[&str]) -> PathCrates {
    // The target's root directory: the first `src`, else the last `examples`, `tests` or
    // `benches` (`tests/tests/x.rs` is package `tests`'s test `x`).
    let root = parts.iter().position(|p| *p == "src").or_else(|| {
        parts
            .iter()
            .rposition(|p| ["examples", "tests", "benches"].contains(p))
    });
    let Some(root) = root else {
        return PathCrates::Unknown;
    };
    let package = root.checked_sub(1).map(|i| parts[i]);
    // Cargo's `trim-paths` makes a registry path relative: `<name>-<version>/src/…`.
    if let Some(dir) = package.filter(|dir| strip_version(dir) != *dir) {
        return PathCrates::Dependency(crate_name(strip_version(dir)));
    }
    let mut names: Vec<String> = package.map(crate_name).into_iter().collect();
    // The target's own name: `src/bin/<name>.rs`, `src/bin/<name>/main.rs`,
    // `examples/<name>.rs`, `tests/<name>/main.rs`…
    let target = match parts[root] {
        "src" if parts.get(root + 1) == Some(&"bin") => parts.get(root + 2),
        "src" => None,
        _ => parts.get(root + 1),
    };
    if let Some(target) = target {
        let stem = target.strip_suffix(".rs").unwrap_or(target);
        names.push(crate_name(stem));
    }
    PathCrates::Workspace(names)
}

/// `name-1.2.3` → `name` (a registry package directory); other names unchanged.
fn strip_version(dir: &str) -> &str {
    let mut at = dir.len();
    while let Some(dash) = dir[..at].rfind('-') {
        let version = &dir[dash + 1..];
        if version.starts_with(|c: char| c.is_ascii_digit()) && version.contains('.') {
            return &dir[..dash];
        }
        at = dash;
    }
    dir
}

/// The source paths of the panic locations compiled into the loaded module `module`,
/// read from its memory: every `core::panic::Location` record (`&str` file, `u32`
/// line, `u32` column) in `.data.rel.ro` or `.rodata` whose file points into `.rodata`
/// and ends in `.rs`. The section bounds come from the module's file (headers only), and
/// the paths' bytes from its `.rodata` there (never relocated: the bytes in memory).
fn panic_location_paths(module: &Module) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let Some(map) = super::mmap::Mmap::open(module.open_path()) else {
        return paths;
    };
    let file = map.bytes();
    let Some(sections) = sections(module, file, &[b".rodata", b".data.rel.ro"]) else {
        return paths;
    };
    let [Some(rodata), relro] = sections[..] else {
        return paths;
    };
    let Some(memory) = OwnMemory::open() else {
        return paths;
    };
    // Words are read a chunk at a time; consecutive chunks overlap by a record's three
    // words less one, so that every record lies whole in some chunk.
    const CHUNK_WORDS: u64 = 8192;
    let mut chunk = vec![0u8; CHUNK_WORDS as usize * 8];
    for section in [Some(rodata), relro].into_iter().flatten() {
        let mut at = section.start.next_multiple_of(8);
        loop {
            let words = (section.end.saturating_sub(at) / 8).min(CHUNK_WORDS);
            if words < 3 || !memory.read(at, &mut chunk[..words as usize * 8]) {
                break;
            }
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&chunk[i * 8..i * 8 + 8]);
                u64::from_ne_bytes(w)
            };
            for i in 0..words as usize - 2 {
                let (pointer, len, place) = (word(i), word(i + 1), word(i + 2));
                let (line, column) = (place as u32, (place >> 32) as u32);
                let plausible = (rodata.start..rodata.end).contains(&pointer)
                    && (4..=1024).contains(&len)
                    && pointer + len <= rodata.end
                    && (1..=10_000_000).contains(&line)
                    && (1..=100_000).contains(&column);
                if !plausible {
                    continue;
                }
                // Checked: the section header comes from a file that may be damaged.
                let Some(name) = rodata
                    .file_offset
                    .checked_add(pointer - rodata.start)
                    .and_then(|offset| usize::try_from(offset).ok())
                    .and_then(|offset| file.get(offset..offset.checked_add(len as usize)?))
                else {
                    continue;
                };
                if let Ok(path) = std::str::from_utf8(name) {
                    if path.ends_with(".rs") && !path.contains(|c: char| c.is_control()) {
                        paths.insert(path.to_string());
                    }
                }
            }
            at += (words - 2) * 8;
        }
    }
    paths
}

/// This process's own memory, read through `/proc/self/mem`: the kernel copies the bytes,
/// so a scan may cross from one static into the next (a direct read across a section
/// would read many objects through one pointer, and trip AddressSanitizer's redzones
/// between globals). Unavailable (a hardened kernel): no panic locations are read.
struct OwnMemory(std::fs::File);

impl OwnMemory {
    fn open() -> Option<Self> {
        std::fs::File::open("/proc/self/mem").ok().map(Self)
    }

    /// Fills `buf` with the bytes at `address`; `false` if any of them is not mapped.
    fn read(&self, address: u64, buf: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        self.0.read_exact_at(buf, address).is_ok()
    }
}

/// Where a section of a loaded module is: its run-time addresses and its place in the file.
#[derive(Clone, Copy)]
struct Section {
    start: u64,
    end: u64,
    file_offset: u64,
}

/// The named sections of `module` (`None` for one it does not have, or one not loaded
/// where its segments say), from its file's section headers (`file`, its bytes). `None`
/// if the headers cannot be read.
fn sections(module: &Module, file: &[u8], names: &[&[u8]]) -> Option<Vec<Option<Section>>> {
    let header = FileHeader64::<Endianness>::parse(file).ok()?;
    let endian = header.endian().ok()?;
    let headers = header.sections(endian, file).ok()?;
    Some(
        names
            .iter()
            .map(|name| {
                let (_, section) = headers.section_by_name(endian, name)?;
                let start = module.bias.wrapping_add(section.sh_addr(endian));
                let end = start.wrapping_add(section.sh_size(endian));
                (module.contains(start) && module.contains(end.saturating_sub(1))).then_some(
                    Section {
                        start,
                        end,
                        file_offset: section.sh_offset(endian),
                    },
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::Origin;

    #[test]
    fn source_paths_name_workspace_and_dependency_crates() {
        let ws =
            |names: &[&str]| PathCrates::Workspace(names.iter().map(|s| s.to_string()).collect());
        let dep = |name: &str| PathCrates::Dependency(name.to_string());
        assert_eq!(path_crates("demos/src/cache.rs"), ws(&["demos"]));
        assert_eq!(path_crates("crates/foo-core/src/lib.rs"), ws(&["foo_core"]));
        assert_eq!(
            path_crates("demos/src/bin/cache_leak.rs"),
            ws(&["demos", "cache_leak"])
        );
        assert_eq!(
            path_crates("src/bin/cache-leak/main.rs"),
            ws(&["cache_leak"])
        );
        assert_eq!(path_crates("src/main.rs"), ws(&[]));
        assert_eq!(path_crates("examples/regex_cache.rs"), ws(&["regex_cache"]));
        assert_eq!(
            path_crates("tests/tests/sampling.rs"),
            ws(&["tests", "sampling"])
        );
        assert_eq!(path_crates("src/tests/helpers.rs"), ws(&[]));
        assert_eq!(
            path_crates("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/regex-automata-0.4.19/src/nfa/thompson/compiler.rs"),
            dep("regex_automata")
        );
        assert_eq!(
            path_crates("/root/.cargo/git/checkouts/tokio-3a0b1c2d3e4f5a6b/1a2b3c4/src/lib.rs"),
            dep("tokio")
        );
        assert_eq!(
            path_crates(
                "/root/.cargo/git/checkouts/tokio-3a0b1c2d3e4f5a6b/1a2b3c4/tokio-util/src/lib.rs"
            ),
            dep("tokio_util")
        );
        assert_eq!(
            path_crates("/home/u/elsewhere/mylib/src/lib.rs"),
            dep("mylib")
        );
        // Cargo's `trim-paths` makes registry paths relative, with the version kept.
        assert_eq!(
            path_crates("regex-syntax-0.8.12/src/ast/parse.rs"),
            dep("regex_syntax")
        );
        assert_eq!(
            path_crates("/rustc/abc/library/core/src/option.rs"),
            PathCrates::Std(None)
        );
        assert_eq!(
            path_crates("/rust/deps/hashbrown-0.15.5/src/raw/mod.rs"),
            PathCrates::Std(Some("hashbrown".into()))
        );
        assert_eq!(path_crates("lib.rs"), PathCrates::Unknown);
    }

    #[test]
    fn test_binaries_lose_their_hash() {
        assert_eq!(
            strip_test_hash("alloc_tracker-0123456789abcdef"),
            "alloc_tracker"
        );
        assert_eq!(strip_test_hash("cache-leak"), "cache-leak");
        assert_eq!(strip_version("regex-automata-0.4.19"), "regex-automata");
        assert_eq!(strip_version("foo-core"), "foo-core");
    }

    #[test]
    fn this_test_binarys_dependencies_are_read_from_it() {
        let modules = super::super::modules::Modules::loaded();
        let exe = modules.iter().find(|m| m.is_executable).unwrap();
        let table = SymbolTable::from_file(exe.open_path()).unwrap();
        let paths = panic_location_paths(exe);
        assert!(
            paths.iter().any(|p| p.ends_with("src/symbols/program.rs")),
            "{paths:?}"
        );
        assert!(
            paths.iter().any(|p| p.contains("/serde_json-1.")),
            "a dependency's absolute path: {paths:?}"
        );
        let crates = detect(exe, &table, None);
        assert!(crates.dependencies.contains("serde_json"), "{crates:?}");
        assert_eq!(
            crates.classify("serde_json::de::from_str"),
            Origin::Dependency
        );
        // The tracker is never the program, even in its own tests.
        assert!(!crates.program.contains("alloc_tracker"), "{crates:?}");
        assert_eq!(crates.classify("alloc_tracker::stats"), Origin::Tracker);
        assert_eq!(crates.classify("rustc_demangle::demangle"), Origin::Std);
        // The tracker's dependency `object` is one of std's too: std wins.
        assert_eq!(crates.classify("object::read::File::parse"), Origin::Std);
        assert!(!crates.dependencies.contains("object"), "{crates:?}");
    }
}
