//! The harness shared by the demo tests: runs a real demo binary (built by cargo) with
//! its exit report written as JSON, finds a module's `// leak-site` marker, and checks a
//! leaky/fixed pair against each other.

#![allow(dead_code)] // each test file uses part of it

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The path of a binary of the demos package.
#[macro_export]
macro_rules! bin {
    ($name:literal) => {
        env!(concat!("CARGO_BIN_EXE_", $name))
    };
}

/// How the tracker samples during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `ALLOC_TRACKER_RATE=1`: every allocation is tracked; per-site figures are exact.
    Exact,
    /// The default rate (512 KiB): per-site figures are unbiased estimates.
    Sampled,
}

/// The tracker's default sampling rate, which `Mode::Sampled` runs at.
pub const DEFAULT_RATE: u64 = 524_288;

/// Most bytes a fixed demo may still hold at exit. Every fixed run here keeps at most a
/// few dozen KiB by design (an LRU of 10 entries, 10 audit events, 1 KiB headers, …),
/// plus the runtime's own few KiB (stdout buffer, arguments).
pub const FIXED_BOUND: u64 = 1 << 20;

/// A finished run of a demo.
pub struct Run {
    /// The parsed JSON report.
    pub report: Value,
    /// What the demo printed on stdout (its progress lines).
    pub stdout: String,
}

/// Runs the demo binary `bin` with `args` in `mode`, writing its exit report as JSON to a
/// temporary directory; panics (with the demo's output) unless it succeeds and writes a
/// report.
pub fn run(bin: &str, mode: Mode, args: &[&str]) -> Run {
    run_with_env(bin, mode, args, &[])
}

/// [`run`] with further environment variables for the demo (e.g. `ALLOC_TRACKER_INTERVAL`).
pub fn run_with_env(bin: &str, mode: Mode, args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let json = dir.path().join("report.json");
    let mut cmd = Command::new(bin);
    // From the workspace root, as `cargo run -p demos` is: reports name the program's
    // files relative to the working directory (`demos/src/cache.rs`).
    cmd.current_dir(workspace_root());
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ALLOC_TRACKER_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("ALLOC_TRACKER_REPORT", &json);
    cmd.envs(env.iter().copied());
    if mode == Mode::Exact {
        cmd.env("ALLOC_TRACKER_RATE", "1");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{bin} {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("{bin} wrote no report at {}: {e}\n{stderr}", json.display()));
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    assert_eq!(report["format"], "alloc-tracker");
    assert_eq!(report["version"], 1);
    let rate = match mode {
        Mode::Exact => 1,
        Mode::Sampled => DEFAULT_RATE,
    };
    assert_eq!(report["sample_rate"], rate, "{bin} ran at the wrong rate");
    Run { report, stdout }
}

/// The workspace root (the parent of the demos package).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the demos package is inside the workspace")
}

/// The file (relative to the workspace root) and line of the one `// leak-site` marker in
/// the demo module `module` (e.g. `cache.rs`), read from the source now.
pub fn leak_site(module: &str) -> (String, u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(module);
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let marked: Vec<u64> = source
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim_end().ends_with("// leak-site"))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert_eq!(
        marked.len(),
        1,
        "{} must mark exactly one leak site",
        path.display()
    );
    (format!("demos/src/{module}"), marked[0])
}

/// A figure of a site or of the totals, as a number.
pub fn num(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no number `{field}` in {value}"))
}

/// The `site` location of a report's site, as `file:line`.
pub fn location(site: &Value) -> String {
    format!(
        "{}:{}",
        site["site"]["file"].as_str().unwrap_or("?"),
        site["site"]["line"]
    )
}

/// Whether `site` is at `file` (a path ending) and `line`.
pub fn is_at(site: &Value, file: &str, line: u64) -> bool {
    site["site"]["file"]
        .as_str()
        .is_some_and(|f| f.ends_with(file))
        && site["site"]["line"] == line
}

/// The report's leak suspects.
pub fn suspects(report: &Value) -> &[Value] {
    report["suspects"]
        .as_array()
        .map(Vec::as_slice)
        .expect("the report lists suspects")
}

/// The report's `sites` array.
pub fn sites(report: &Value) -> &[Value] {
    report["sites"].as_array().expect("sites is an array")
}

/// The first few sites by `field`, for failure messages.
pub fn top_sites(report: &Value, field: &str) -> String {
    let mut sites: Vec<&Value> = sites(report).iter().collect();
    sites.sort_by_key(|s| std::cmp::Reverse(num(s, field)));
    sites
        .iter()
        .take(4)
        .map(|s| {
            format!(
                "  {:>12} {} ({})",
                num(s, field),
                location(s),
                s["site"]["function"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The figure of the process gauge watched by a gauge check.
#[derive(Clone, Copy, Debug)]
pub enum Gauge {
    /// `process.threads`.
    Threads,
    /// `process.open_fds`.
    OpenFds,
}

impl Gauge {
    fn read(self, report: &Value) -> u64 {
        let field = match self {
            Gauge::Threads => "threads",
            Gauge::OpenFds => "open_fds",
        };
        report["process"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("no process.{field} in the report"))
    }
}

/// One leaky/fixed pair and what its leaky run must show.
pub struct Case {
    /// The leaky binary's path.
    pub leak: &'static str,
    /// The fixed binary's path.
    pub fixed: &'static str,
    /// The demo module's file under `demos/src/`.
    pub module: &'static str,
    /// Options for both binaries (the scaled-down workload; `--seconds 0` is added).
    pub args: &'static [&'static str],
    /// Further options for the fixed binary only (its bound).
    pub fixed_args: &'static [&'static str],
    /// Bytes the leak site holds in the leaky run by construction (count × size, …).
    pub leaked: u64,
    /// Judge by `peak_live_bytes` instead of `live_bytes` (a leak that ends before exit).
    pub by_peak: bool,
    /// A process gauge that grows by `growth` in the leaky run and stays at its baseline
    /// (the gauge of a `--count 0` run) in the fixed one.
    pub gauge: Option<(Gauge, u64)>,
}

/// Runs `case`'s leaky and fixed binaries in `mode` and checks them:
/// * the leaky run holds (or, `by_peak`, peaked at) at least what it leaks by
///   construction, and its top site by that figure is the `// leak-site` line, with an
///   estimate within sampling error of the truth;
/// * the fixed run did the same work (allocated as much, at the same line) yet holds at
///   most [`FIXED_BOUND`] at exit, and its leak-site line holds at most 1% of what the
///   leaky run's did;
/// * the gauge, if any, grows in the leaky run and is back at baseline in the fixed one.
pub fn check(case: &Case, mode: Mode) {
    let (file, line) = leak_site(case.module);
    let field = if case.by_peak {
        "peak_live_bytes"
    } else {
        "live_bytes"
    };
    // Exact runs are exact to the byte; at 512 KiB a leak of ≥ 100 MB has ≥ 200 samples,
    // so its estimate is within a few percent (±25% is many standard deviations).
    let (low, high) = match mode {
        Mode::Exact => (1.0, 1.01),
        Mode::Sampled => (0.75, 1.33),
    };

    // Paced over one second (the demos' defaults spread it over 6 s): long enough that
    // start-up and exit are a small part of the run, so a leak's live objects are seen
    // aged across the whole run, which is what makes it a suspect without checkpoints.
    let mut args = vec!["--seconds", "1"];
    args.extend_from_slice(case.args);
    let leaky = run(case.leak, mode, &args);
    let report = &leaky.report;
    let held = num(&report["totals"], field);
    // The exact peak is checked at each sampling decision: at the default rate it may miss
    // up to about one sampling interval of growth per allocating thread (see
    // `alloc_tracker::Stats::peak_live_bytes`); live bytes are always exact.
    let slack = match (mode, case.by_peak) {
        (Mode::Sampled, true) => 2 * DEFAULT_RATE,
        _ => 0,
    };
    assert!(
        held + slack >= case.leaked,
        "{}: the leaky run only held {held} bytes ({field}), expected ≥ {}\n{}",
        case.leak,
        case.leaked,
        leaky.stdout
    );
    let top = sites(report)
        .iter()
        .max_by_key(|s| num(s, field))
        .expect("the leaky report has sites");
    assert!(
        is_at(top, &file, line),
        "{}: the top site by {field} is {}, not the leak site {file}:{line}; top sites:\n{}",
        case.leak,
        location(top),
        top_sites(report, field)
    );
    let leaked = num(top, field);
    assert!(
        leaked as f64 >= low * case.leaked as f64 && leaked as f64 <= high * case.leaked as f64,
        "{}: the leak site holds {leaked} bytes ({field}), expected {} ({mode:?})",
        case.leak,
        case.leaked
    );
    if !case.by_peak {
        // Still growing at exit, its objects aged across the whole run: a leak suspect.
        assert!(
            suspects(report).iter().any(|s| is_at(s, &file, line)),
            "{}: the leak site is not among the leak suspects: {:#}",
            case.leak,
            report["suspects"]
        );
    }
    if case.by_peak {
        // It is gone by exit: the exit report alone would not show it.
        let live = num(top, "live_bytes");
        assert!(
            live * 100 <= leaked,
            "{}: {live} bytes still live at exit",
            case.leak
        );
    }

    let mut fixed_args = args.clone();
    fixed_args.extend_from_slice(case.fixed_args);
    let fixed = run(case.fixed, mode, &fixed_args);
    let report = &fixed.report;
    let totals = &report["totals"];
    assert!(
        num(totals, "alloc_bytes") >= case.leaked,
        "{}: the fixed run allocated only {} bytes: it did not do the same work",
        case.fixed,
        num(totals, "alloc_bytes")
    );
    let kept = num(totals, "live_bytes");
    assert!(
        kept <= FIXED_BOUND,
        "{}: the fixed run still holds {kept} bytes at exit (bound {FIXED_BOUND}); top sites:\n{}",
        case.fixed,
        top_sites(report, "live_bytes")
    );
    assert!(
        suspects(report).is_empty(),
        "{}: the fixed run has leak suspects: {:#}",
        case.fixed,
        report["suspects"]
    );
    let site = sites(report).iter().find(|s| is_at(s, &file, line));
    // The same line allocated as much in the fixed run: the fix is in what is kept.
    let allocated = site.map_or(0, |s| num(s, "alloc_bytes"));
    assert!(
        allocated as f64 >= low * case.leaked as f64,
        "{}: the leak-site line allocated {allocated} bytes, expected ≥ {}",
        case.fixed,
        case.leaked
    );
    let at_site = site.map_or(0, |s| num(s, field));
    assert!(
        at_site * 100 <= leaked,
        "{}: the leak-site line still holds {at_site} bytes ({field}), more than 1% of the \
         leaky run's {leaked}; top sites:\n{}",
        case.fixed,
        top_sites(report, field)
    );

    if let Some((gauge, growth)) = case.gauge {
        let baseline = gauge.read(&run(case.leak, mode, &["--count", "0"]).report);
        let grown = gauge.read(&leaky.report);
        assert!(
            grown >= baseline + growth,
            "{}: {gauge:?} is {grown}, expected ≥ {baseline} + {growth}",
            case.leak
        );
        let back = gauge.read(&fixed.report);
        assert_eq!(
            back, baseline,
            "{}: {gauge:?} did not return to baseline",
            case.fixed
        );
    }
}
