//! What the demos' unit tests share: the `// leak-site` line of a demo module, read from
//! its source when the test runs, and the check that a [`Scope`](alloc_tracker::Scope)'s
//! usage retains memory from that line and that its assertion names it.

use alloc_tracker::Usage;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

/// The line of a demo module marked `// leak-site`.
pub struct LeakSite {
    /// The module's file, as sites name it (`demos/src/cache.rs`), or its ending.
    file: String,
    /// The marked line.
    line: u32,
}

impl LeakSite {
    /// The leak site of the demo module `module` (`cache.rs`): its one line ending in
    /// `// leak-site`.
    pub fn of(module: &str) -> LeakSite {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(module);
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let marked: Vec<u32> = (1..)
            .zip(source.lines())
            .filter(|(_, line)| line.trim_end().ends_with("// leak-site"))
            .map(|(number, _)| number)
            .collect();
        assert_eq!(
            marked.len(),
            1,
            "{} must mark exactly one leak site",
            path.display()
        );
        LeakSite {
            file: format!("demos/src/{module}"),
            line: marked[0],
        }
    }

    /// Bytes and blocks that `usage` retains from this line.
    pub fn retained(&self, usage: &Usage) -> (u64, u64) {
        usage
            .retained_sites
            .iter()
            .filter(|site| {
                site.line == Some(self.line)
                    && site
                        .file
                        .as_deref()
                        .is_some_and(|f| f.ends_with(&self.file))
            })
            .fold((0, 0), |(bytes, blocks), site| {
                (bytes + site.bytes, blocks + site.allocs)
            })
    }

    /// Asserts that `usage` retains exactly `bytes` in `blocks` from this line, and that
    /// `usage.assert_retains_at_most(0)` fails with a message naming it (its `file:line`,
    /// bytes and blocks).
    #[track_caller]
    pub fn assert_leaks(&self, usage: &Usage, bytes: u64, blocks: u64) {
        assert_eq!(
            self.retained(usage),
            (bytes, blocks),
            "retained from {}:{} (bytes, blocks): {usage}",
            self.file,
            self.line
        );
        let message = panic::catch_unwind(AssertUnwindSafe(|| usage.assert_retains_at_most(0)))
            .expect_err("a scope that retains memory fails `assert_retains_at_most(0)`")
            .downcast::<String>()
            .expect("a formatted message");
        let count = if blocks == 1 {
            "1 block".to_string()
        } else {
            format!("{blocks} blocks")
        };
        let named = message.lines().any(|line| {
            line.contains(&format!("{bytes} bytes in {count} at "))
                && line.ends_with(&format!("{}:{}", self.file, self.line))
        });
        assert!(
            named,
            "the message does not name {}:{} ({bytes} bytes in {blocks} blocks):\n{message}",
            self.file, self.line
        );
    }
}
