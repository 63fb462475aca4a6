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
fn top_opens_with_the_leak_suspects() {
    let dir = fixtures();
    let run = run_in(dir.path(), &["top", "heap.json"]);
    assert!(run.stdout.contains("leak suspects: none"), "{}", run.stdout);
    let mut with_suspect = report(vec![site("app::leaky", 10, 4 * MIB, 4 * MIB, 4 * MIB)]);
    with_suspect["suspects"] = json!([{
        "site": {"function": "app::leaky", "file": "src/main.rs", "line": 10},
        "severity": "critical", "live_bytes": 4 * MIB,
        "evidence": "grew monotonically 1.0 MiB/s over 4 checkpoints"
    }]);
    std::fs::write(dir.path().join("suspect.json"), with_suspect.to_string()).unwrap();
    let run = run_in(dir.path(), &["top", "suspect.json"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let suspects_at = run
        .stdout
        .find("leak suspects:")
        .expect("a suspects section");
    assert!(
        suspects_at < run.stdout.find("sites by").unwrap(),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "1. CRITICAL app::leaky  src/main.rs:10: 4.0 MiB live\n      grew monotonically"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn top_shows_dependency_and_toolchain_paths_shortened() {
    let dir = fixtures();
    let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
    let mut shortened = report(vec![
        site("app::leaky", 10, 4 * MIB, 4 * MIB, 4 * MIB),
        site("crossbeam_epoch::atomic::Owned::new", 20, MIB, MIB, MIB),
        site("std::thread::spawn", 30, MIB / 2, MIB, MIB),
    ]);
    shortened["sites"][1]["site"]["file"] =
        json!(format!("{registry}/crossbeam-epoch-0.9.18/src/atomic.rs"));
    shortened["sites"][2]["site"]["file"] = json!("/rustc/0123abcd/library/std/src/thread/mod.rs");
    std::fs::write(dir.path().join("paths.json"), shortened.to_string()).unwrap();
    let run = run_in(dir.path(), &["top", "paths.json"]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    for shown in [
        "app::leaky  src/main.rs:10",
        "crossbeam_epoch::atomic::Owned::new  crossbeam-epoch-0.9.18/src/atomic.rs:20",
        "std::thread::spawn  std/src/thread/mod.rs:30",
    ] {
        assert!(run.stdout.contains(shown), "{shown}:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains(registry), "{}", run.stdout);
    // The JSON it converts to keeps the recorded paths.
    let run = run_in(
        dir.path(),
        &["convert", "paths.json", "--to", "json", "-o", "same.json"],
    );
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let same = std::fs::read_to_string(dir.path().join("same.json")).unwrap();
    assert!(same.contains(registry), "{same}");
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
    // +3 MiB on 4 MiB: flagged as growth (not doubled).
    assert!(
        leaky_row.trim_start().starts_with("grew     +3.0 MiB"),
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
    let fresh_row = run
        .stdout
        .lines()
        .find(|l| l.contains("app::fresh"))
        .unwrap();
    assert!(
        fresh_row.trim_start().starts_with("+64.0 KiB"),
        "too small to flag: {fresh_row}"
    );
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

/// What a run of the binary cost: its own peak resident memory and wall time.
#[cfg(unix)]
struct Cost {
    run: Run,
    max_rss_bytes: u64,
    elapsed: std::time::Duration,
}

/// Runs `args` and measures the child alone (`wait4` reports the peak RSS of that child).
// The child is reaped by `wait4`, not `Child::wait`: that is what reports its peak RSS.
#[allow(clippy::zombie_processes)]
#[cfg(unix)]
fn run_measured(dir: &Path, args: &[&str]) -> Cost {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_alloc-tracker"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (`child` is never waited on); `status` and
    // `usage` are writable.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4");
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    Cost {
        run: Run {
            status: code,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        // Linux reports ru_maxrss in KiB, macOS in bytes.
        max_rss_bytes: usage.ru_maxrss as u64 * if cfg!(target_os = "macos") { 1 } else { 1024 },
        elapsed: started.elapsed(),
    }
}

/// Writes `head`, then what `fill` appends (whole units, 1 MiB at a time) until the file
/// holds at least `size` bytes, then `tail`.
#[cfg(unix)]
fn write_huge(
    path: &Path,
    size: usize,
    head: &[u8],
    mut fill: impl FnMut(&mut Vec<u8>),
    tail: &[u8],
) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    file.write_all(head).unwrap();
    let mut written = head.len() + tail.len();
    let mut chunk = Vec::with_capacity(2 << 20);
    while written < size {
        chunk.clear();
        while chunk.len() < 1 << 20 {
            fill(&mut chunk);
        }
        file.write_all(&chunk).unwrap();
        written += chunk.len();
    }
    file.write_all(tail).unwrap();
    file.flush().unwrap();
}

/// Files of at least 100 MB that are not reports: one clear line, exit status 1, no panic,
/// within a time and memory bound. The memory bound is 3× the file: the CLI may read the
/// file whole (1×) and parse it, but a file that is not a report must not be expanded into
/// a tree many times its size (a JSON array of 50 million numbers is 1.6 GB as
/// `serde_json::Value`s); the time bound (60 s, debug build) only catches a hang or a
/// quadratic reader.
#[test]
#[cfg(unix)] // the child's peak memory comes from `wait4`
fn huge_files_that_are_not_reports_are_refused_in_bounded_time_and_memory() {
    const SIZE: usize = 100 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    type Maker<'a> = (&'a str, &'a str, Box<dyn FnMut(&Path) + 'a>);
    let cases: Vec<Maker> = vec![
        (
            "random bytes",
            "binary data",
            Box::new(|p: &Path| {
                write_huge(
                    p,
                    SIZE,
                    b"",
                    |c| c.extend_from_slice(&random().to_le_bytes()),
                    b"",
                )
            }),
        ),
        (
            "a JSON array of numbers",
            "not an alloc-tracker report",
            Box::new(|p: &Path| write_huge(p, SIZE, b"[", |c| c.extend_from_slice(b"1,"), b"1]")),
        ),
        (
            "a JSON array of junk strings",
            "not an alloc-tracker report",
            Box::new(|p: &Path| {
                write_huge(
                    p,
                    SIZE,
                    b"[",
                    |c| c.extend_from_slice(b"\"junk\\u00e9\\n junk\",{},"),
                    b"0]",
                )
            }),
        ),
        (
            "a report whose sites are junk",
            "malformed",
            Box::new(|p: &Path| {
                write_huge(
                    p,
                    SIZE,
                    b"{\"format\":\"alloc-tracker\",\"version\":1,\"sites\":[",
                    |c| c.extend_from_slice(b"[1,\"x\",null],"),
                    b"0]}",
                )
            }),
        ),
        (
            "an object of junk before the format",
            "not an alloc-tracker report",
            Box::new(|p: &Path| {
                write_huge(
                    p,
                    SIZE,
                    b"{\"junk\":[",
                    |c| c.extend_from_slice(b"0.5,"),
                    b"0],\"format\":\"pprof\"}",
                )
            }),
        ),
        (
            "a `format` that is a 100 MB array",
            "not an alloc-tracker report",
            Box::new(|p: &Path| {
                write_huge(
                    p,
                    SIZE,
                    b"{\"format\":[",
                    |c| c.extend_from_slice(b"1,"),
                    b"1]}",
                )
            }),
        ),
        (
            "a `version` that is a 100 MB array",
            "malformed",
            Box::new(|p: &Path| {
                write_huge(
                    p,
                    SIZE,
                    b"{\"format\":\"alloc-tracker\",\"version\":[",
                    |c| c.extend_from_slice(b"1,"),
                    b"1]}",
                )
            }),
        ),
        (
            "brackets nested 100 million deep",
            "not a JSON report",
            Box::new(|p: &Path| write_huge(p, SIZE, b"", |c| c.push(b'['), b"")),
        ),
        (
            "whitespace",
            "empty",
            Box::new(|p: &Path| write_huge(p, SIZE, b"", |c| c.extend_from_slice(b" \n\t"), b"")),
        ),
    ];
    let mut failures = Vec::new();
    for (what, expected, mut make) in cases {
        make(&path);
        assert!(std::fs::metadata(&path).unwrap().len() >= SIZE as u64);
        let cost = run_measured(dir.path(), &["top", "huge.json"]);
        let run = &cost.run;
        println!(
            "{what}: exit {:?} in {:.1?}, peak RSS {} MiB: {}",
            run.status,
            cost.elapsed,
            cost.max_rss_bytes >> 20,
            run.stderr.trim_end()
        );
        let clear = run.status == Some(1)
            && run.stderr.lines().count() == 1
            && run.stderr.starts_with("alloc-tracker: error: huge.json: ")
            && run.stderr.contains(expected)
            && !run.stderr.contains("panicked")
            && run.stdout.is_empty();
        if !clear {
            failures.push(format!(
                "{what}: expected one line with {expected:?} and exit 1, got {:?}: {}{}",
                run.status, run.stdout, run.stderr
            ));
        }
        if cost.max_rss_bytes > 3 * SIZE as u64 {
            failures.push(format!(
                "{what}: peak RSS {} MiB for a {} MiB file",
                cost.max_rss_bytes >> 20,
                SIZE >> 20
            ));
        }
        if cost.elapsed > std::time::Duration::from_secs(60) {
            failures.push(format!("{what}: took {:.1?}", cost.elapsed));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The CLI run end to end on damaged reports (the library's reader is fuzzed in-process by
/// `tests/tests/fuzz_report.rs`; this covers the binary's own reading and printing): each
/// run exits 0 (the damage left a readable report) or 1 with one clear line, never a panic.
/// Cases: `CLI_FUZZ_CASES` (default 300, ~2 s; each runs `top`, `diff` and `convert`).
#[test]
fn damaged_reports_never_crash_the_cli() {
    let cases: usize = std::env::var("CLI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = fixtures();
    let good = std::fs::read(dir.path().join("later.json")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below.max(1) as u64) as usize
    };
    const JUNK: &[&str] = &[
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "1e400",
        "1.5",
        "null",
        "\"x\"",
        "[]",
        "{}",
        "\"\\ud800\"",
        "\u{0}",
        "{\"function\":1}",
    ];
    for case in 0..cases {
        let mut bytes = good.clone();
        for _ in 0..1 + random(3) {
            match random(4) {
                0 => bytes.truncate(random(bytes.len() + 1)),
                1 if !bytes.is_empty() => {
                    let at = random(bytes.len());
                    bytes[at] ^= 1 + random(255) as u8;
                }
                2 => {
                    // Replace a number with a junk literal.
                    let digits: Vec<usize> = (0..bytes.len())
                        .filter(|&i| {
                            bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit())
                        })
                        .collect();
                    if let Some(&start) = digits.get(random(digits.len())) {
                        let end = (start..bytes.len())
                            .find(|&i| !bytes[i].is_ascii_digit())
                            .unwrap_or(bytes.len());
                        let junk = JUNK[random(JUNK.len())].as_bytes();
                        bytes.splice(start..end, junk.iter().copied());
                    }
                }
                _ => {
                    let at = random(bytes.len() + 1);
                    let junk = JUNK[random(JUNK.len())].as_bytes();
                    bytes.splice(at..at, junk.iter().copied());
                }
            }
        }
        std::fs::write(dir.path().join("damaged.json"), &bytes).unwrap();
        for args in [
            &["top", "damaged.json"][..],
            &["diff", "heap.json", "damaged.json"],
            &["convert", "damaged.json", "--to", "svg", "-o", "out.svg"],
        ] {
            let run = run_in(dir.path(), args);
            let ok = match run.status {
                Some(0) => true,
                Some(1) => {
                    run.stderr.lines().count() == 1
                        && run
                            .stderr
                            .starts_with("alloc-tracker: error: damaged.json: ")
                }
                _ => false,
            };
            assert!(
                ok && !run.stderr.contains("panicked"),
                "case {case}, {args:?} on {:?}:\nexit {:?}\n{}",
                String::from_utf8_lossy(&bytes),
                run.status,
                run.stderr
            );
        }
    }
}
