//! The library's modules form layers: each may use only the modules below it, so the data
//! flows one way (allocation → tables → snapshot → model → renderings) and there is no
//! loop. This test reads the sources and fails on any reference that goes up or sideways,
//! and on a module missing from the list. `ARCHITECTURE.md` draws the same layers.

use std::collections::BTreeSet;
use std::path::Path;

/// Every module of `src/`, bottom layer first.
const LAYERS: &[&str] = &[
    // The operating system: every call to it, one file per OS.
    "sys",
    // Plain data and small pure helpers.
    "trim_path",
    "report",
    "units",
    "spin",
    "clock",
    "output",
    "origin",
    "filter",
    "tracker_memory",
    // Reading and rendering the model.
    "trend",
    "export",
    // Configuration and the process around the heap: its binaries, its gauges.
    "config",
    "symbols",
    "process",
    // The recording floor: counters, guard, threads, sampler, stacks, samples.
    "sampler",
    "counters",
    "reentrancy",
    "threads",
    "capture",
    "stacks",
    "samples",
    "checkpoints",
    "peak",
    // From the tables to a report.
    "symbolize",
    "snapshot",
    // Heap assertions in tests.
    "scope",
    // Writing reports, and when: on signals, over HTTP, at the ends of the process.
    "writer",
    "emergency",
    "signals",
    "http",
    "lifecycle",
    // The allocator front, and the crate root.
    "alloc",
    "lib",
];

/// The top-level module a source file belongs to (`export/pprof.rs` → `export`).
fn module_of(path: &Path, src: &Path) -> String {
    let relative = path.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` refers to through `crate::`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = item.trim().split("::").next().unwrap_or("");
                found.insert(name.to_string());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found.retain(|name| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    });
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_only_use_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let layer = |name: &str| LAYERS.iter().position(|&m| m == name);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(file, &src);
        let Some(own) = layer(&module) else {
            violations.push(format!("{module} is not in LAYERS (tests/architecture.rs)"));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        for used in references(&code) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(theirs) if theirs < own => {}
                Some(_) => violations.push(format!(
                    "{} uses {used}, which is not below {module}",
                    file.strip_prefix(&src).unwrap().display()
                )),
                None => {} // a re-exported item, or not a module
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
