//! A program whose report `tests/symbol_names.rs` reads after building it as users build
//! theirs: with Cargo's default release profile (no debug info at all) and with
//! `debug = "line-tables-only"` (short names in the debug info). Its sites must still be
//! its own functions, with their full paths:
//!
//! - a regex cache that compiles a pattern per user and keeps every `Regex`: the memory is
//!   allocated deep inside `regex-automata`, the site is `Patterns::compile_for`;
//! - a response cache filled through `entry().or_insert_with`, by a closure that calls
//!   `render` (`get_or_render`) and by a closure that allocates itself (`get_or_fill`),
//!   the shape of `demos/src/cache.rs`.
//!
//! The exit report goes where `ALLOC_TRACKER_REPORT` says, with everything still live; a
//! report named from the symbol tables alone (`Naming::SymbolTables`, loaded at start-up),
//! made just before, is printed on stdout as JSON.

use alloc_tracker::Naming;
use regex::Regex;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

mod cache {
    use std::collections::HashMap;

    /// Renders the response for `key`.
    #[inline(never)]
    pub fn render(key: u64, size: usize) -> Vec<u8> {
        let mut page = vec![b' '; size];
        page[..8].copy_from_slice(&key.to_le_bytes());
        page
    }

    /// A response cache that never evicts.
    #[derive(Default)]
    pub struct Cache {
        pages: HashMap<u64, Vec<u8>>,
    }

    impl Cache {
        /// The cached response for `key`, rendered on a miss.
        pub fn get_or_render(&mut self, key: u64, size: usize) -> usize {
            self.pages
                .entry(key)
                .or_insert_with(|| render(key, size))
                .len()
        }

        /// The same, with the rendering written in the closure.
        pub fn get_or_fill(&mut self, key: u64, size: usize) -> usize {
            self.pages
                .entry(key)
                .or_insert_with(|| {
                    let mut page = Vec::with_capacity(size);
                    page.resize(size, b'.');
                    page
                })
                .len()
        }
    }
}

/// Compiled patterns, never evicted.
#[derive(Default)]
struct Patterns {
    kept: Vec<Regex>,
}

impl Patterns {
    /// Compiles the pattern for `user` and keeps it.
    #[inline(never)]
    fn compile_for(&mut self, user: u32) -> &Regex {
        let pattern = format!("^user-{user}-[a-z]+(\\d{{2,4}})?$");
        self.kept
            .push(Regex::new(&pattern).expect("a valid pattern"));
        self.kept.last().expect("just pushed")
    }
}

fn main() {
    alloc_tracker::preload_symbol_tables();
    let mut patterns = Patterns::default();
    let mut matched = 0;
    for user in 0..100 {
        let line = format!("user-{user}-abc12");
        matched += usize::from(patterns.compile_for(user).is_match(&line));
    }
    let mut cache = cache::Cache::default();
    let mut served = 0;
    for request in 0..400u64 {
        let key = request.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        served += if request % 2 == 0 {
            cache.get_or_render(key, 5000)
        } else {
            cache.get_or_fill(key, 3000)
        };
    }
    eprintln!("{matched} patterns matched, {served} bytes served");
    println!(
        "{}",
        alloc_tracker::report_with(Naming::SymbolTables).to_json()
    );
    // Exits with the patterns and the cache still live: the exit report shows them.
    std::process::exit(0);
}
