//! Whose code a frame is: the program's, `std`'s, a dependency's or the tracker's, told
//! from its source path (or, without one, from its function name). This is what picks a
//! stack's *site* (the first frame of the program's own code) and where exporters start a
//! stack. Pure: used by the symbolizer at report time and by the exporters on any report.

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
    /// No file known (no debug info).
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

/// Classifies a frame by its file, or by its name when there is no file.
pub(crate) fn classify(function: &str, file: Option<&str>) -> Origin {
    if is_allocator_shim(function) {
        return Origin::Tracker;
    }
    match file {
        Some(file) => {
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
        None if function.starts_with("alloc_tracker::")
            || function.starts_with("<alloc_tracker::") =>
        {
            Origin::Tracker
        }
        None => Origin::Unknown,
    }
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
    }
}
