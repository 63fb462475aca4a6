//! Whose code a frame is: the program's, `std`'s, a dependency's or the tracker's. This
//! is what picks a stack's *site* (the first frame of the program's own code) and where
//! exporters start a stack. Pure: used by the symbolizer at report time and by the
//! exporters on any report.
//!
//! A frame with a source file is told by its file ([`classify`]): toolchain paths are
//! `std`'s, registry and git-checkout paths a dependency's, anything else (Cargo passes
//! the workspace's sources relative to its root) the program's. A frame without one (a
//! build without debug info) is told by the crate path of its function ([`Crates`]):
//! `std`'s crates are known by name; which others are dependencies the symbolizer reads
//! from the executable (`symbols::program`); every other crate is the program's.

use std::collections::BTreeSet;

/// Whose code a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The program being profiled: where sites are found.
    Program,
    /// `std`, `alloc`, `core` and the crates they are built from (`/rustc/…`, `/rust/deps/…`),
    /// and the C runtime (C sources, or glibc's `./csu/…`-style paths).
    Std,
    /// A dependency from the cargo registry or a git checkout.
    Dependency,
    /// This tracker (its own frames at the top of every stack, and the allocator shims).
    Tracker,
    /// Neither a file nor a crate path tells (a C function without debug info, an
    /// address without a name).
    Unknown,
}

/// The tracker's own sources: frames from here are the tracker's.
const TRACKER_SOURCES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// Whether `file` is one of this crate's sources: under its manifest directory, or at a
/// path such as `alloc-tracker/src/…` or `…/alloc-tracker-0.1.0/src/…` (workspace builds
/// record relative paths; registry builds versioned ones).
fn is_tracker_source(file: &str) -> bool {
    if file.starts_with(TRACKER_SOURCES) {
        return true;
    }
    let parts: Vec<&str> = file.split('/').collect();
    parts.windows(2).any(|pair| {
        (pair[0] == "alloc-tracker" || pair[0].starts_with("alloc-tracker-")) && pair[1] == "src"
    })
}

/// Whether `function` is one of the allocator shims the compiler generates for
/// `#[global_allocator]` (their debug info points at the program's `static`).
fn is_allocator_shim(function: &str) -> bool {
    let function = function.strip_prefix("__rustc::").unwrap_or(function);
    [
        "__rust_alloc",
        "__rust_dealloc",
        "__rust_realloc",
        "__rg_",
        "__rdl_",
    ]
    .iter()
    .any(|prefix| function.starts_with(prefix))
}

/// Classifies a frame by its file, or by its function's crate path when there is no file
/// (with no knowledge of which crates are dependencies: any crate but `std`'s and the
/// tracker's counts as the program's).
pub(crate) fn classify(function: &str, file: Option<&str>) -> Origin {
    Crates::default().classify_frame(function, file)
}

/// Classifies a frame by its source file.
fn classify_file(file: &str) -> Origin {
    let file = file.replace('\\', "/");
    if is_tracker_source(&file) {
        Origin::Tracker
    } else if file.starts_with("/rustc/")
        || file.contains("/rust/deps/")
        || file.contains("/lib/rustlib/src/rust/")
        || file.starts_with("./")
        || [".c", ".h", ".S", ".s"]
            .iter()
            .any(|ext| file.ends_with(ext))
    {
        Origin::Std
    } else if file.contains("/registry/src/")
        || file.contains("/.cargo/git/checkouts/")
        || file.contains("/cargo/git/checkouts/")
    {
        Origin::Dependency
    } else {
        Origin::Program
    }
}

/// The crates of the standard library as they appear in symbol paths: the ones a program
/// names (`std`, `core`, `alloc`, `proc_macro`, `test`) and the private dependencies std is
/// built from (a panic's backtrace printer alone brings in `addr2line`, `gimli`, `object`,
/// `memchr`, `miniz_oxide`, `adler2`, `rustc_demangle`; `hashbrown` is std's `HashMap`).
/// The list is the toolchain's `lib/rustlib/<target>/lib/lib*.rlib` (a test checks it).
///
/// Some are also common dependencies of programs (`hashbrown`, `memchr`, `libc`,
/// `gimli`…): symbols do not tell the two copies apart, so they count as std. That only
/// moves a stack's exported start from such a dependency's frame to its caller's.
pub(crate) const STD_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "addr2line",
    "adler2",
    "cfg_if",
    "compiler_builtins",
    "getopts",
    "gimli",
    "hashbrown",
    "libc",
    "memchr",
    "miniz_oxide",
    "object",
    "panic_abort",
    "panic_unwind",
    "profiler_builtins",
    "rustc_demangle",
    "rustc_literal_escaper",
    "rustc_std_workspace_alloc",
    "rustc_std_workspace_core",
    "rustc_std_workspace_std",
    "std_detect",
    "sysroot",
    "unwind",
];

/// The tracker's crate.
const TRACKER_CRATE: &str = "alloc_tracker";

/// The namespace rustc gives the functions it generates for std (`__rustc::rust_begin_unwind`;
/// the allocator shims `__rustc::__rust_alloc`… are the tracker's).
const RUSTC_SHIMS: &str = "__rustc";

/// Which crates are the program's and which are dependencies, for frames without a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Crates {
    /// Crates known to be the program's (the crate of `main`, workspace crates seen in
    /// relative panic locations, `ALLOC_TRACKER_PROGRAM_CRATES`). Any crate that is not
    /// std's nor a dependency is the program's too; this set wins over `dependencies`.
    pub(crate) program: BTreeSet<String>,
    /// Crates known to be dependencies: seen in absolute panic-location paths (registry,
    /// git checkouts, path dependencies outside the workspace) or named by the override.
    pub(crate) dependencies: BTreeSet<String>,
    /// std's private dependencies seen in its paths (`/rust/deps/<crate>-<version>/…`),
    /// beyond [`STD_CRATES`].
    pub(crate) std: BTreeSet<String>,
}

impl Crates {
    /// Classifies a frame: by its file where it has one, else by its function's crate path
    /// ([`Crates::classify`]). The allocator shims are the tracker's either way.
    pub(crate) fn classify_frame(&self, function: &str, file: Option<&str>) -> Origin {
        match file {
            _ if is_allocator_shim(function) => Origin::Tracker,
            Some(file) => classify_file(file),
            None => self.classify(function),
        }
    }

    /// Applies an override list (`ALLOC_TRACKER_PROGRAM_CRATES`): crate or package names
    /// separated by commas; a name is the program's, `-name` a dependency's.
    pub(crate) fn apply_override(&mut self, value: &str) {
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.strip_prefix('-') {
                Some(name) => {
                    let name = crate_name(name);
                    self.program.remove(&name);
                    self.add_dependency(&name);
                }
                None => {
                    let name = crate_name(item);
                    self.dependencies.remove(&name);
                    self.add_program(&name);
                }
            }
        }
    }

    /// Counts crate (or package) `name` as the program's, unless it is std's or the
    /// tracker's.
    pub(crate) fn add_program(&mut self, name: &str) {
        let name = crate_name(name);
        if !name.is_empty() && !is_std_or_tracker(&name) {
            self.program.insert(name);
        }
    }

    /// Counts crate (or package) `name` as a dependency, unless it is std's, the
    /// tracker's or already the program's.
    pub(crate) fn add_dependency(&mut self, name: &str) {
        let name = crate_name(name);
        if !name.is_empty() && !is_std_or_tracker(&name) && !self.program.contains(&name) {
            self.dependencies.insert(name);
        }
    }

    /// The origin of a function by its demangled name (`{:#}`).
    ///
    /// A path `a::b::c` is crate `a`'s. A trait method `<S as T>::m` is code of the crate
    /// of the impl, which Rust's orphan rule puts in `S`'s crate or `T`'s: it is the
    /// program's if either is, else a dependency's if either is, else std's. (A blanket
    /// impl of std for a program type, `<app::X as alloc::string::ToString>::to_string`,
    /// thus counts as the program's; it calls the program's `Display` impl anyway.)
    /// Allocator shims (`__rust_alloc`, `__rg_alloc`…) are the tracker's; a name with no
    /// crate path (C functions) is `Unknown`.
    pub(crate) fn classify(&self, function: &str) -> Origin {
        if is_allocator_shim(function) {
            return Origin::Tracker;
        }
        let (first, second) = owning_crates(function);
        let origins = [first, second].map(|name| name.map(|name| self.crate_origin(name)));
        let any = |origin: Origin| origins.contains(&Some(origin));
        if any(Origin::Tracker) {
            Origin::Tracker
        } else if any(Origin::Program) {
            Origin::Program
        } else if any(Origin::Dependency) {
            Origin::Dependency
        } else if any(Origin::Std) {
            Origin::Std
        } else {
            Origin::Unknown
        }
    }

    /// The origin of the crate `name`.
    fn crate_origin(&self, name: &str) -> Origin {
        if name == TRACKER_CRATE {
            Origin::Tracker
        } else if STD_CRATES.contains(&name) || name == RUSTC_SHIMS || self.std.contains(name) {
            Origin::Std
        } else if self.dependencies.contains(name) && !self.program.contains(name) {
            Origin::Dependency
        } else {
            Origin::Program
        }
    }
}

fn is_std_or_tracker(name: &str) -> bool {
    STD_CRATES.contains(&name) || name == TRACKER_CRATE || name == RUSTC_SHIMS
}

/// A crate name from a package or file name: `-` read as `_`.
pub(crate) fn crate_name(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// The crate(s) whose code a demangled function name is: `(path crate, None)` for a
/// plain path, `(self type's crate, trait's crate)` for `<S as T>::m` (`None` where that
/// part is not a path, as in `<&T as …>` or `<[u8]>`).
fn owning_crates(function: &str) -> (Option<&str>, Option<&str>) {
    let name = function.trim();
    let Some(rest) = name.strip_prefix('<') else {
        return (path_crate(name), None);
    };
    let Some(close) = matching_close(rest) else {
        return (None, None);
    };
    let inner = &rest[..close];
    match split_as(inner) {
        Some((self_type, trait_path)) => (path_crate(self_type), path_crate(trait_path)),
        None => (path_crate(inner), None),
    }
}

/// The first segment of a path `krate::…`, if `s` starts with one.
fn path_crate(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let (krate, rest) = s.split_at(end);
    let starts_ident = krate
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (starts_ident && rest.starts_with("::")).then_some(krate)
}

/// The index in `s` of the `>` that closes an already opened `<` (a `->` is not one).
fn matching_close(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut previous = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if previous != '-' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        previous = c;
    }
    None
}

/// `S as T` split at its ` as ` outside any brackets.
fn split_as(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    let mut previous = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' if previous != '-' => depth -= 1,
            ')' | ']' => depth -= 1,
            ' ' if depth == 0 && s[i..].starts_with(" as ") => {
                return Some((&s[..i], &s[i + " as ".len()..]));
            }
            _ => {}
        }
        previous = c;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_source_path() {
        assert_eq!(
            classify("x", Some("/rustc/abc/library/alloc/src/vec/mod.rs")),
            Origin::Std
        );
        assert_eq!(
            classify("x", Some("/rust/deps/hashbrown-0.15.2/src/raw.rs")),
            Origin::Std
        );
        assert_eq!(
            classify(
                "x",
                Some("/home/u/.cargo/registry/src/index.crates.io-1/regex-1.0/src/lib.rs")
            ),
            Origin::Dependency
        );
        assert_eq!(classify("x", Some("demos/src/cache.rs")), Origin::Program);
        assert_eq!(
            classify("x", Some("./csu/../csu/libc-start.c")),
            Origin::Std
        );
        assert_eq!(
            classify(
                "x",
                Some(concat!(env!("CARGO_MANIFEST_DIR"), "/src/alloc.rs"))
            ),
            Origin::Tracker
        );
        assert_eq!(
            classify("x", Some("alloc-tracker/src/alloc.rs")),
            Origin::Tracker
        );
        assert_eq!(classify("__rust_alloc", None), Origin::Tracker);
        assert_eq!(
            classify("__rust_alloc", Some("src/main.rs")),
            Origin::Tracker
        );
        assert_eq!(
            classify("__rustc::__rust_realloc", Some("src/main.rs")),
            Origin::Tracker
        );
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/smoke.rs");
        assert_eq!(classify("x", Some(example)), Origin::Program);
        assert_eq!(classify("main", None), Origin::Unknown);
        // Without a file, by the function's crate path: unknown crates are the program's.
        assert_eq!(classify("alloc::raw_vec::finish_grow", None), Origin::Std);
        assert_eq!(classify("alloc_tracker::capture", None), Origin::Tracker);
        assert_eq!(classify("app::main", None), Origin::Program);
    }

    fn crates() -> Crates {
        let mut crates = Crates::default();
        crates.apply_override("app,demos,-regex_automata,-serde,-regex");
        crates
    }

    #[test]
    fn paths_name_their_crate() {
        assert_eq!(owning_crates("app::cache::Cache::get"), (Some("app"), None));
        assert_eq!(
            owning_crates("<regex::regex::string::Regex as core::fmt::Debug>::fmt"),
            (Some("regex"), Some("core"))
        );
        assert_eq!(
            owning_crates("<alloc::vec::Vec<u8>>::push"),
            (Some("alloc"), None)
        );
        assert_eq!(
            owning_crates("<&T as core::fmt::Display>::fmt"),
            (None, Some("core"))
        );
        assert_eq!(
            owning_crates("<fn() -> u8 as core::ops::function::FnOnce<()>>::call_once"),
            (None, Some("core"))
        );
        assert_eq!(
            owning_crates("<app::main::{closure#0} as core::ops::function::FnOnce<()>>::call_once::{shim:vtable#0}"),
            (Some("app"), Some("core"))
        );
        assert_eq!(
            owning_crates("<[regex::Regex] as core::fmt::Debug>::fmt"),
            (None, Some("core"))
        );
        assert_eq!(
            owning_crates("alloc::slice::<impl [T]>::to_vec"),
            (Some("alloc"), None)
        );
        assert_eq!(owning_crates("malloc"), (None, None));
        assert_eq!(owning_crates("<unclosed"), (None, None));
        assert_eq!(owning_crates(""), (None, None));
    }

    #[test]
    fn functions_are_classified_by_their_crates() {
        let c = crates();
        assert_eq!(c.classify("app::main"), Origin::Program);
        assert_eq!(
            c.classify("demos::cache::Cache::get_or_render::{{closure}}"),
            Origin::Program
        );
        assert_eq!(
            c.classify("regex_automata::nfa::thompson::nfa::Inner::into_nfa"),
            Origin::Dependency
        );
        assert_eq!(
            c.classify("alloc::raw_vec::RawVec<T,A>::grow_one"),
            Origin::Std
        );
        assert_eq!(
            c.classify("hashbrown::raw::RawTable<T,A>::reserve_rehash"),
            Origin::Std
        );
        assert_eq!(
            c.classify("<app::Config as serde::ser::Serialize>::serialize"),
            Origin::Program
        );
        assert_eq!(
            c.classify("<alloc::vec::Vec<T> as serde::ser::Serialize>::serialize"),
            Origin::Dependency
        );
        assert_eq!(
            c.classify("<alloc::string::String as core::clone::Clone>::clone"),
            Origin::Std
        );
        assert_eq!(
            c.classify("<alloc_tracker::Tracker as core::alloc::global::GlobalAlloc>::alloc"),
            Origin::Tracker
        );
        assert_eq!(c.classify("__rustc::__rust_alloc"), Origin::Tracker);
        assert_eq!(c.classify("__rustc::rust_begin_unwind"), Origin::Std);
        // A crate with no dependency path is the program's (a workspace crate whose
        // directory is named otherwise).
        assert_eq!(c.classify("myproj_core::Engine::run"), Origin::Program);
        assert_eq!(c.classify("__rg_alloc"), Origin::Tracker);
        assert_eq!(c.classify("malloc"), Origin::Unknown);
        assert_eq!(c.classify("0x7f00"), Origin::Unknown);
    }

    #[test]
    fn the_override_names_program_crates_and_dependencies() {
        let mut c = crates();
        c.apply_override("regex, -demos,,std, -md5");
        assert_eq!(c.classify("regex::Regex::new"), Origin::Program);
        assert_eq!(c.classify("demos::x"), Origin::Dependency);
        assert_eq!(c.classify("md5::compute"), Origin::Dependency);
        assert!(!c.program.contains("std"), "std is never the program's");
        assert_eq!(c.classify("std::x"), Origin::Std);
    }

    #[test]
    fn program_evidence_wins_over_dependency_evidence() {
        let mut c = Crates::default();
        c.add_program("cli");
        c.add_dependency("cli");
        c.add_dependency("other");
        assert_eq!(c.crate_origin("cli"), Origin::Program);
        assert_eq!(c.crate_origin("other"), Origin::Dependency);
    }

    #[test]
    fn std_crates_are_the_toolchains_rlibs() {
        let Ok(output) = std::process::Command::new("rustc")
            .args(["--print", "target-libdir"])
            .output()
        else {
            eprintln!("no rustc: skipped");
            return;
        };
        let libdir = String::from_utf8(output.stdout).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(libdir.trim())
            .unwrap()
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let stem = name.strip_prefix("lib")?.strip_suffix(".rlib")?;
                Some(stem.split_once('-').map_or(stem, |(n, _)| n).to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        assert!(names.len() > 10, "{names:?}");
        for name in &names {
            assert!(
                STD_CRATES.contains(&name.as_str()),
                "{name} is missing from STD_CRATES"
            );
        }
    }
}
