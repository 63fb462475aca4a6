//! The `alloc-tracker` binary, run for real: each subcommand, and each kind of file that is
//! not a report (one line on stderr, exit status 1, never a panic).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_in(dir: &Path, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_alloc-tracker"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the binary runs");
    Run {
        status: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn frame(function: &str, file: &str, line: u32, address: u64) -> Value {
    json!({"function": function, "file": file, "line": line, "address": address})
}

/// A site with one stack: `live` bytes in `live / 1024` objects, `peak` and `allocated`.
fn site(function: &str, line: u32, live: u64, peak: u64, allocated: u64) -> Value {
    let figures = json!({
        "live_bytes": live, "live_allocs": live / 1024, "peak_live_bytes": peak,
        "alloc_bytes": allocated, "allocs": allocated / 1024, "live_samples": live / 1024,
    });
    let frames = json!([
        frame(
            "alloc::raw_vec::finish_grow",
            "/rustc/abc/library/alloc/src/raw_vec.rs",
            9,
            0x1000
        ),
        frame(function, "src/main.rs", line, 0x2000 + u64::from(line)),
        frame("app::main", "src/main.rs", 100, 0x3000),
    ]);
    let mut site = figures.clone();
    site["site"] = json!({"function": function, "file": "src/main.rs", "line": line});
    site["frames"] = frames.clone();
    let mut stack = figures;
    stack["frames"] = frames;
    site["stacks"] = json!([stack]);
    site
}

fn report(sites: Vec<Value>) -> Value {
    let live: u64 = sites
        .iter()
        .map(|s| s["live_bytes"].as_u64().unwrap())
        .sum();
    let allocated: u64 = sites
        .iter()
        .map(|s| s["alloc_bytes"].as_u64().unwrap())
        .sum();
    json!({
        "format": "alloc-tracker", "version": 1, "sample_rate": 1, "uptime_ms": 2000,
        "totals": {"live_bytes": live, "live_allocs": live / 1024, "peak_live_bytes": live * 2,
                   "alloc_bytes": allocated, "allocs": allocated / 1024, "frees": 0},
        "process": {"threads": 1},
        "tracker": {"bytes": 0, "stacks": 3, "dropped_samples": 0},
        "sites": sites,
    })
}

const MIB: u64 = 1 << 20;

/// `heap.json` (leaky 4 MiB, cache 1 MiB, transient 0 live but 10 MiB allocated, 8 MiB
/// peak) and `later.json` (leaky grew to 7 MiB, cache shrank to 512 KiB, a new site).
fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let before = report(vec![
        site("app::leaky", 10, 4 * MIB, 4 * MIB, 4 * MIB),
        site("app::cache", 20, MIB, MIB, 2 * MIB),
        site("app::transient", 30, 0, 8 * MIB, 10 * MIB),
    ]);
    let after = report(vec![
        site("app::leaky", 10, 7 * MIB, 7 * MIB, 7 * MIB),
        site("app::cache", 20, MIB / 2, MIB, 2 * MIB),
        site("app::transient", 30, 0, 8 * MIB, 10 * MIB),
        site("app::fresh", 40, 64 * 1024, 64 * 1024, 64 * 1024),
    ]);
    std::fs::write(dir.path().join("heap.json"), before.to_string()).unwrap();
    std::fs::write(dir.path().join("later.json"), after.to_string()).unwrap();
    dir
}

/// The sites named in the table rows of `top`/`diff` output, in order.
fn row_sites(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|line| line.contains("src/main.rs:"))
        .map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with("app::"))
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn top_ranks_by_live_bytes_by_default() {
    let dir = fixtures();
    let run = run_in(dir.path(), &["top", "heap.json"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(
        row_sites(&run.stdout),
        ["app::leaky", "app::cache"],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("5.0 MiB live"), "{}", run.stdout);
    assert!(run.stdout.contains("src/main.rs:10"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn top_ranks_by_peak_or_allocated_and_limits_rows() {
    let dir = fixtures();
    let run = run_in(
        dir.path(),
        &["top", "heap.json", "--by", "allocated", "-n", "2"],
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(
        row_sites(&run.stdout),
        ["app::transient", "app::leaky"],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 more sites"), "{}", run.stdout);
    let run = run_in(dir.path(), &["top", "heap.json", "--by", "peak"]);
    assert_eq!(
        row_sites(&run.stdout)[0],
        "app::transient",
        "{}",
        run.stdout
    );
}

#[test]
fn diff_puts_the_largest_growth_first() {
    let dir = fixtures();
    let run = run_in(dir.path(), &["diff", "heap.json", "later.json"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_eq!(
        row_sites(&run.stdout),
        ["app::leaky", "app::fresh", "app::cache"],
        "{}",
        run.stdout
    );
    let leaky_row = run
        .stdout
        .lines()
        .find(|l| l.contains("app::leaky"))
        .unwrap();
    assert!(
        leaky_row.trim_start().starts_with("+3.0 MiB"),
        "{leaky_row}"
    );
    let cache_row = run
        .stdout
        .lines()
        .find(|l| l.contains("app::cache"))
        .unwrap();
    assert!(
        cache_row.trim_start().starts_with("-512.0 KiB"),
        "{cache_row}"
    );
    assert!(run.stdout.contains("live +2.6 MiB"), "{}", run.stdout);
    let same = run_in(dir.path(), &["diff", "heap.json", "heap.json"]);
    assert!(same.stdout.contains("no site changed"), "{}", same.stdout);
}

#[test]
fn convert_writes_every_format() {
    let dir = fixtures();
    let out = |name: &str| dir.path().join(name);
    for (format, name) in [
        ("pprof", "heap.pb.gz"),
        ("folded", "heap.folded"),
        ("svg", "heap.svg"),
        ("dhat", "heap.dhat.json"),
    ] {
        let run = run_in(
            dir.path(),
            &["convert", "heap.json", "--to", format, "-o", name],
        );
        assert_eq!(run.status, Some(0), "{format}: {}", run.stderr);
        assert!(
            run.stdout.is_empty() && run.stderr.is_empty(),
            "{format}: {}{}",
            run.stdout,
            run.stderr
        );
    }
    let pprof = std::fs::read(out("heap.pb.gz")).unwrap();
    assert_eq!(&pprof[..2], &[0x1f, 0x8b]);
    let folded = std::fs::read_to_string(out("heap.folded")).unwrap();
    assert!(
        folded.contains("app::main;app::leaky 4194304\n"),
        "{folded}"
    );
    let svg = std::fs::read_to_string(out("heap.svg")).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(&svg, options).expect("the SVG is XML");
    assert!(svg.contains("app::leaky"));
    let dhat: Value =
        serde_json::from_str(&std::fs::read_to_string(out("heap.dhat.json")).unwrap()).unwrap();
    assert_eq!(dhat["dhatFileVersion"], 2);
    // `-o -` writes to standard output.
    let run = run_in(
        dir.path(),
        &["convert", "heap.json", "--to", "folded", "-o", "-"],
    );
    assert_eq!(run.stdout, folded);
}

/// Runs `args` with `{}` replaced by a file holding `content`; expects one clear line.
fn rejects(content: Option<&[u8]>, args: &[&str], expected: &str) {
    let dir = fixtures();
    let path: PathBuf = dir.path().join("bad.json");
    if let Some(content) = content {
        std::fs::write(&path, content).unwrap();
    }
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "{}" { "bad.json" } else { a })
        .collect();
    let run = run_in(dir.path(), &args);
    assert_eq!(
        run.status,
        Some(1),
        "{args:?}: {}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "{args:?}: one line, got:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.starts_with("alloc-tracker: error: "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(expected),
        "{args:?}: expected {expected:?} in {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn files_that_are_not_reports_get_one_clear_line() {
    let good = std::fs::read(fixtures().path().join("heap.json")).unwrap();
    let future = report(vec![])
        .to_string()
        .replace("\"version\":1", "\"version\":99");
    let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
        (None, "no such file"),
        (Some(Vec::new()), "empty"),
        (Some(good[..good.len() / 2].to_vec()), "cut short"),
        (Some(vec![0, 159, 146, 150, 0xff, 0xfe]), "binary data"),
        (Some(vec![0x1f, 0x8b, 8, 0, 0, 0]), "gzip data"),
        (
            Some(b"{\"hello\": \"world\"}".to_vec()),
            "not an alloc-tracker report",
        ),
        (Some(b"[1, 2, 3]".to_vec()), "not an alloc-tracker report"),
        (Some(future.into_bytes()), "version 99 is newer"),
        (
            Some(b"{\"format\": \"alloc-tracker\", \"version\": 1, \"sites\": 7}".to_vec()),
            "malformed",
        ),
        (Some(b"not json at all".to_vec()), "not a JSON report"),
    ];
    for (content, expected) in &cases {
        for args in [
            &["top", "{}"][..],
            &["convert", "{}", "--to", "pprof", "-o", "out.pb.gz"],
            &["diff", "heap.json", "{}"],
        ] {
            rejects(content.as_deref(), args, expected);
        }
    }
    // The base of a diff is checked too.
    rejects(None, &["diff", "{}", "heap.json"], "no such file");
}

#[test]
fn unwritable_outputs_and_bad_usage_fail_cleanly() {
    let dir = fixtures();
    let run = run_in(
        dir.path(),
        &[
            "convert",
            "heap.json",
            "--to",
            "dhat",
            "-o",
            "no/such/dir/x.json",
        ],
    );
    assert_eq!(run.status, Some(1));
    assert!(
        run.stderr
            .starts_with("alloc-tracker: error: cannot write no/such/dir/x.json"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    let run = run_in(
        dir.path(),
        &["convert", "heap.json", "--to", "png", "-o", "x"],
    );
    assert_eq!(
        run.status,
        Some(2),
        "usage errors exit with 2: {}",
        run.stderr
    );
    let run = run_in(dir.path(), &["top"]);
    assert_eq!(run.status, Some(2), "{}", run.stderr);
    let run = run_in(dir.path(), &["--help"]);
    assert_eq!(run.status, Some(0));
    for command in ["top", "diff", "convert"] {
        assert!(run.stdout.contains(command), "{}", run.stdout);
    }
}
