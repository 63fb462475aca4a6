//! Source paths for display, as pprof's `-trim_path` shows them: the part that names the
//! crate and file, without the machine-specific prefix of Cargo's home or the toolchain.
//! Used where a reader sees paths (the text report and the command-line tool, through
//! `Location::file_line`; DHAT's frames); the JSON report and pprof profiles keep the
//! paths the compiler recorded, for tools that look the files up.

use std::borrow::Cow;

/// `file` without its machine-specific prefix:
///
/// | recorded | shown |
/// | --- | --- |
/// | `…/registry/src/<index>/<crate>-<version>/src/a.rs` | `<crate>-<version>/src/a.rs` |
/// | `…/git/checkouts/<repo>-<hash>/<rev>/src/a.rs` | `<repo>-<hash>/<rev>/src/a.rs` |
/// | `/rustc/<hash>/library/std/src/a.rs` | `std/src/a.rs` |
/// | `…/lib/rustlib/src/rust/library/std/src/a.rs` | `std/src/a.rs` |
/// | `/rust/deps/<crate>-<version>/src/a.rs` (std's vendored dependencies) | `<crate>-<version>/src/a.rs` |
///
/// Any other path (the program's own, relative to its workspace, or a C file) is
/// returned as it is. Windows separators are read as `/`.
pub(crate) fn trim_path(file: &str) -> Cow<'_, str> {
    let normalized: Cow<'_, str> = if file.contains('\\') {
        Cow::Owned(file.replace('\\', "/"))
    } else {
        Cow::Borrowed(file)
    };
    match trimmed(&normalized) {
        Some(rest) => Cow::Owned(rest.to_string()),
        None => normalized,
    }
}

/// The displayed part of `file`, if it has a prefix to drop.
fn trimmed(file: &str) -> Option<&str> {
    // Registry sources: `…/registry/src/<index>/` then the crate directory.
    if let Some(at) = file.find("/registry/src/") {
        let after_index = &file[at + "/registry/src/".len()..];
        return non_empty(after_index.split_once('/')?.1);
    }
    // Git dependencies: everything after `…/git/checkouts/`.
    if let Some(at) = file.find("/git/checkouts/") {
        return non_empty(&file[at + "/git/checkouts/".len()..]);
    }
    // The toolchain's sources, as shipped (`/rustc/<commit>/library/…`) or installed by
    // the `rust-src` component (`…/lib/rustlib/src/rust/library/…`).
    if let Some(rest) = file.strip_prefix("/rustc/") {
        let (_commit, rest) = rest.split_once('/')?;
        return non_empty(rest.strip_prefix("library/").unwrap_or(rest));
    }
    if let Some(at) = file.find("/lib/rustlib/src/rust/") {
        let rest = &file[at + "/lib/rustlib/src/rust/".len()..];
        return non_empty(rest.strip_prefix("library/").unwrap_or(rest));
    }
    // std's own dependencies, vendored when the toolchain was built.
    if let Some(rest) = file.strip_prefix("/rust/deps/") {
        return non_empty(rest);
    }
    None
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_paths_keep_the_crate_directory() {
        assert_eq!(
            trim_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-epoch-0.9.18/src/atomic.rs"
            ),
            "crossbeam-epoch-0.9.18/src/atomic.rs"
        );
        assert_eq!(
            trim_path(
                "/home/u/.cargo/registry/src/github.com-1ecc6299db9ec823/libc-0.2.1/src/lib.rs"
            ),
            "libc-0.2.1/src/lib.rs"
        );
        assert_eq!(
            trim_path(
                r"C:\Users\u\.cargo\registry\src\index.crates.io-1949cf8c6b5b557f\regex-1.11.0\src\lib.rs"
            ),
            "regex-1.11.0/src/lib.rs"
        );
    }

    #[test]
    fn git_checkouts_keep_repository_and_revision() {
        assert_eq!(
            trim_path("/root/.cargo/git/checkouts/tokio-3a0b1c2d3e4f5a6b/1a2b3c4/tokio/src/runtime/mod.rs"),
            "tokio-3a0b1c2d3e4f5a6b/1a2b3c4/tokio/src/runtime/mod.rs"
        );
    }

    #[test]
    fn toolchain_paths_start_at_the_crate() {
        assert_eq!(
            trim_path(
                "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/thread/mod.rs"
            ),
            "std/src/thread/mod.rs"
        );
        assert_eq!(
            trim_path("/root/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/lib/rustlib/src/rust/library/alloc/src/vec/mod.rs"),
            "alloc/src/vec/mod.rs"
        );
        assert_eq!(
            trim_path("/rust/deps/hashbrown-0.15.5/src/raw/mod.rs"),
            "hashbrown-0.15.5/src/raw/mod.rs"
        );
    }

    #[test]
    fn other_paths_are_unchanged() {
        for path in [
            "demos/src/cache.rs",
            "src/main.rs",
            "/home/u/project/src/main.rs",
            "./csu/../csu/libc-start.c",
            "crossbeam-epoch-0.9.18/src/atomic.rs",
            "",
            // Prefixes with nothing after them are not trimmed to nothing.
            "/rustc/abc",
            "/x/registry/src/index",
        ] {
            assert_eq!(trim_path(path), path);
        }
        assert!(matches!(trim_path("demos/src/cache.rs"), Cow::Borrowed(_)));
    }
}
