//! Sites are the program's own functions, with their full paths, however the program was
//! built: with Cargo's default release profile (no debug info at all: frames are named
//! from the symbol tables, and whose code they are is told by their crate), and with
//! `debug = "line-tables-only"` (the debug info names functions by their last path segment
//! only). Also the report named from the symbol tables alone (`Naming::SymbolTables`).
//!
//! Each test builds `src/bin/symbol_names.rs` with its profile into its own target
//! directory (`target/tmp/symbol-names`): the first run compiles the tracker and `regex`
//! in release twice (about a minute each on two cores), later runs only what changed.
//!
//! Linux only: these are the naming rules of the ELF symbolizer; elsewhere frames are named
//! through `backtrace` (see `symbols::portable` in the library), which has no such rules.

#![cfg(target_os = "linux")]

use alloc_tracker::{Location, Report};
use std::path::PathBuf;
use std::process::Command;

/// The program's source.
const SOURCE: &str = "tests/src/bin/symbol_names.rs";
/// Sites holding less are not judged (the runtime's own few allocations).
const JUDGED_BYTES: u64 = 1024;

/// Builds the program with a profile `profile` that is Cargo's release profile with
/// `debug = <debug>`, and returns its path.
fn build(profile: &str, debug: &str) -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("symbol-names");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "tracker-tests",
            "--bin",
            "symbol_names",
        ])
        .args(["--profile", profile, "--target-dir"])
        .arg(&target)
        .arg("--config")
        .arg(format!("profile.{profile}.inherits = \"release\""))
        .arg("--config")
        .arg(format!("profile.{profile}.debug = {debug}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building symbol_names ({profile})");
    target.join(profile).join("symbol_names")
}

/// Runs the program with every allocation recorded: its exit report, and the report it
/// printed, named from the symbol tables alone.
fn run(exe: &PathBuf) -> (Report, Report) {
    let json = exe.with_extension("heap.json");
    let output = Command::new(exe)
        .env("ALLOC_TRACKER_RATE", "1")
        .env("ALLOC_TRACKER_REPORT", &json)
        .env_remove("ALLOC_TRACKER_PROGRAM_CRATES")
        .output()
        .expect("the program runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exit = std::fs::read_to_string(&json).expect("the exit report");
    let symbol_tables = String::from_utf8(output.stdout).expect("UTF-8");
    (
        Report::from_json(&exit).expect("a report"),
        Report::from_json(&symbol_tables).expect("a report"),
    )
}

/// The sites holding at least [`JUDGED_BYTES`].
fn judged(report: &Report) -> Vec<&Location> {
    report
        .sites
        .iter()
        .filter(|site| site.figures.live_bytes >= JUDGED_BYTES)
        .map(|site| &site.site)
        .collect()
}

/// The live bytes of the site named `function`.
fn live_bytes(report: &Report, function: &str) -> u64 {
    report
        .sites
        .iter()
        .filter(|site| site.site.function == function)
        .map(|site| site.figures.live_bytes)
        .sum()
}

/// Every judged site is one of the program's functions (`is_programs`), and the regex
/// cache's memory (allocated inside `regex-automata`) is at the function that calls
/// `Regex::new`.
fn assert_program_sites(report: &Report, what: &str, is_programs: fn(&Location) -> bool) {
    let sites = judged(report);
    assert!(
        sites.iter().all(|site| is_programs(site)),
        "{what}: sites outside the program: {sites:#?}"
    );
    let regexes = live_bytes(report, "symbol_names::Patterns::compile_for");
    assert!(regexes >= 1 << 20, "{what}: {regexes} B at compile_for");
}

/// A function of the program's crate (its full path known).
fn in_program_crate(site: &Location) -> bool {
    site.function.starts_with("symbol_names::")
}

fn assert_no_files(report: &Report, what: &str) {
    let with_file: Vec<&Location> = report
        .sites
        .iter()
        .flat_map(|site| site.stacks.iter().flat_map(|stack| &stack.frames))
        .filter(|frame| frame.file.is_some())
        .collect();
    assert!(
        with_file.is_empty(),
        "{what}: frames with files: {with_file:#?}"
    );
}

#[test]
fn without_debug_info_sites_are_the_programs_functions() {
    let (exit, symbol_tables) = run(&build("no-debug-info", "false"));
    // Cargo's default release profile strips std's debug info too: no file anywhere.
    assert_no_files(&exit, "exit report");
    assert_program_sites(&exit, "exit report", in_program_crate);
    assert!(
        live_bytes(&exit, "symbol_names::cache::render") >= 1_000_000,
        "{:#?}",
        judged(&exit)
    );
    assert_no_files(&symbol_tables, "symbol tables");
    assert_program_sites(&symbol_tables, "symbol tables", in_program_crate);
}

#[test]
fn with_line_tables_only_sites_have_full_paths() {
    let (exit, symbol_tables) = run(&build("line-tables-only", "\"line-tables-only\""));
    // Every site is in the program's source; functions inlined into another keep the
    // debug info's short name (`get_or_render`: nothing proves their path), the others
    // have their full paths.
    assert_program_sites(&exit, "exit report", |site| {
        site.file.as_deref() == Some(SOURCE) && site.line.is_some()
    });
    let sites = judged(&exit);
    for function in [
        "symbol_names::Patterns::compile_for",
        "symbol_names::cache::render",
        // An inlined closure: named by the closure type its caller takes.
        "symbol_names::cache::{impl#0}::get_or_fill::{closure#0}",
    ] {
        assert!(
            sites.iter().any(|site| site.function == function),
            "no site {function}: {sites:#?}"
        );
    }
    // The same program named from its symbol tables: functions only.
    assert_no_files(&symbol_tables, "symbol tables");
    assert_program_sites(&symbol_tables, "symbol tables", in_program_crate);
}
