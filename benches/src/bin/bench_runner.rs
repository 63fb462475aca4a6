//! Runs every workload variant interleaved over several rounds, measures the tracker's own
//! memory against a large live heap, counts fast-path instructions under callgrind (when
//! valgrind is installed), reads criterion's estimates, and writes `RESULTS.md`.
//!
//! ```text
//! bench-runner [--quick] [--rounds N] [--out PATH] [--criterion DIR] [--criterion-since SECS]
//!              [--no-callgrind] [--command TEXT]
//! ```
//!
//! `benches/run.sh` builds the binaries, runs criterion, then this. The `wl-*` and
//! `fastpath` binaries are found next to this one.

use alloc_tracker_benches::stats::Summary;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Instant, UNIX_EPOCH};

/// Iteration scale of the slow variants (exact mode, dhat-rs) and of their `System`
/// baseline: they run the same work at a fraction of the count, so a round stays short.
fn small_scale(workload: &str) -> f64 {
    match workload {
        "service" => 1.0 / 32.0,
        _ => 1.0 / 8.0,
    }
}

struct Options {
    quick: bool,
    rounds: usize,
    out: PathBuf,
    criterion: Option<PathBuf>,
    criterion_since: u64,
    callgrind: bool,
    command: String,
}

/// One way of running a workload: a binary, its environment, its scale, its baseline.
struct Variant {
    name: &'static str,
    binary: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// `true`: runs at [`small_scale`].
    small: bool,
    /// The variant this one is compared with (`None`: a baseline).
    baseline: Option<&'static str>,
    what: &'static str,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "system",
        binary: "wl-system",
        env: &[],
        small: false,
        baseline: None,
        what: "`std::alloc::System` (glibc malloc)",
    },
    Variant {
        name: "tracker",
        binary: "wl-tracker",
        env: &[],
        small: false,
        baseline: Some("system"),
        what: "tracker around System, default rate (512 KiB), `auto` unwinding",
    },
    Variant {
        name: "tracker-dwarf",
        binary: "wl-tracker",
        env: &[("ALLOC_TRACKER_UNWIND", "dwarf")],
        small: false,
        baseline: Some("system"),
        what: "tracker around System, default rate, DWARF unwinding",
    },
    Variant {
        name: "jemalloc",
        binary: "wl-jemalloc",
        env: &[],
        small: false,
        baseline: Some("system"),
        what: "`tikv_jemallocator::Jemalloc`",
    },
    Variant {
        name: "tracker-jemalloc",
        binary: "wl-tracker-jemalloc",
        env: &[],
        small: false,
        baseline: Some("jemalloc"),
        what: "tracker around jemalloc, default rate",
    },
    Variant {
        name: "system-small",
        binary: "wl-system",
        env: &[],
        small: true,
        baseline: None,
        what: "System, at the small scale",
    },
    Variant {
        name: "exact",
        binary: "wl-tracker",
        env: &[("ALLOC_TRACKER_RATE", "1")],
        small: true,
        baseline: Some("system-small"),
        what: "tracker around System, exact mode (rate 1: every allocation with its stack)",
    },
    Variant {
        name: "exact-table",
        binary: "wl-tracker",
        env: &[
            ("ALLOC_TRACKER_RATE", "1"),
            ("ALLOC_TRACKER_UNWIND", "table"),
        ],
        small: true,
        baseline: Some("system-small"),
        what: "exact mode with the table unwinder (`ALLOC_TRACKER_UNWIND=table`)",
    },
    Variant {
        name: "dhat",
        binary: "wl-dhat",
        env: &[],
        small: true,
        baseline: Some("system-small"),
        what: "`dhat::Alloc` with `dhat::Profiler` running (every allocation with its stack)",
    },
];

const WORKLOADS: [&str; 2] = ["service", "hashmap"];
const THREADS: [usize; 2] = [1, 2];
/// Rates of the memory measurement (`hold`).
const MEMORY_RATES: [u64; 4] = [524_288, 65_536, 4096, 1];

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        rounds: 0,
        out: PathBuf::from("benches/RESULTS.md"),
        criterion: None,
        criterion_since: 0,
        callgrind: true,
        command: "bench-runner".to_string(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-callgrind" => options.callgrind = false,
            "--rounds" => {
                options.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?
            }
            "--out" => options.out = PathBuf::from(value()?),
            "--criterion" => options.criterion = Some(PathBuf::from(value()?)),
            "--criterion-since" => {
                options.criterion_since = value()?
                    .parse()
                    .map_err(|e| format!("--criterion-since: {e}"))?
            }
            "--command" => options.command = value()?,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.rounds == 0 {
        options.rounds = if options.quick { 3 } else { 6 };
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("error: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The directory of the `wl-*` binaries: this one's.
fn bin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// Runs `binary` with `args` and `env` (every other `ALLOC_TRACKER_*` variable removed, the
/// exit report off) and returns the JSON line it printed.
fn run_json(binary: &Path, args: &[String], env: &[(&str, &str)]) -> Result<Value, String> {
    let mut command = Command::new(binary);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ALLOC_TRACKER_") {
            command.env_remove(key);
        }
    }
    command.env("ALLOC_TRACKER_REPORT", "off");
    command.envs(env.iter().copied());
    let output = command
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {args:?} failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| format!("{}: bad output {line:?}: {e}", binary.display()))
}

/// Seconds of each (variant, workload, threads), one per round, in round order.
type Times = BTreeMap<(&'static str, &'static str, usize), Vec<f64>>;

fn run_workloads(options: &Options, bins: &Path, scale: f64) -> Result<Times, String> {
    let mut times = Times::new();
    for round in 0..options.rounds {
        let started = Instant::now();
        for workload in WORKLOADS {
            for threads in THREADS {
                // Rotate the order every round, so that no variant always runs first or
                // right after the slowest one.
                let n = VARIANTS.len();
                for i in 0..n {
                    let variant = &VARIANTS[(i + round) % n];
                    let scale = if variant.small {
                        scale * small_scale(workload)
                    } else {
                        scale
                    };
                    let args = vec![
                        workload.to_string(),
                        "--threads".to_string(),
                        threads.to_string(),
                        "--scale".to_string(),
                        scale.to_string(),
                    ];
                    let out = run_json(&bins.join(variant.binary), &args, variant.env)?;
                    let secs = out["secs"].as_f64().ok_or("no secs in output")?;
                    times
                        .entry((variant.name, workload, threads))
                        .or_default()
                        .push(secs);
                }
            }
        }
        eprintln!(
            "round {}/{} of the workloads: {:.1} s",
            round + 1,
            options.rounds,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(times)
}

/// The wall times of `variant` on `workload` with `threads` threads, one per round.
fn times_of<'t>(
    times: &'t Times,
    variant: &str,
    workload: &str,
    threads: usize,
) -> Option<&'t Vec<f64>> {
    times
        .iter()
        .find(|((v, w, t), _)| *v == variant && *w == workload && *t == threads)
        .map(|(_, secs)| secs)
}

/// The per-round ratios of `variant` to its baseline, summarised.
fn ratio(
    times: &Times,
    variant: &str,
    baseline: &str,
    workload: &str,
    threads: usize,
) -> Option<Summary> {
    let find = |name: &str| times_of(times, name, workload, threads);
    let (a, b) = (find(variant)?, find(baseline)?);
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    Summary::of(&ratios)
}

/// The ratio of the fastest run of `variant` to the fastest run of its baseline: on a shared
/// machine, interference only ever adds time, so the minimum is the least disturbed run.
fn ratio_of_minimums(
    times: &Times,
    variant: &str,
    baseline: &str,
    workload: &str,
    threads: usize,
) -> Option<f64> {
    let min = |name: &str| {
        times_of(times, name, workload, threads)
            .and_then(|secs| Summary::of(secs))
            .map(|s| s.min)
    };
    Some(min(variant)? / min(baseline)?)
}

/// "met" when both estimates meet the goal, "missed" when both miss it, else "unclear".
fn verdict_of(by_median: bool, by_minimum: bool) -> &'static str {
    match (by_median, by_minimum) {
        (true, true) => "**met**",
        (false, false) => "**missed**",
        _ => "**unclear** (the two estimates disagree: noise)",
    }
}

struct MemoryRow {
    rate: u64,
    held: u64,
    live: u64,
    tracker: u64,
    symbols: u64,
    stacks: u64,
    rss: u64,
}

fn run_memory(bins: &Path, mib: u64) -> Result<(u64, Vec<MemoryRow>), String> {
    let args = vec!["hold".to_string(), "--mib".to_string(), mib.to_string()];
    let system = run_json(&bins.join("wl-system"), &args, &[])?;
    let system_rss = system["rss_after"].as_u64().unwrap_or(0);
    let mut rows = Vec::new();
    for rate in MEMORY_RATES {
        let rate_text = rate.to_string();
        let out = run_json(
            &bins.join("wl-tracker"),
            &args,
            &[("ALLOC_TRACKER_RATE", rate_text.as_str())],
        )?;
        let get = |key: &str| out[key].as_u64().unwrap_or(0);
        rows.push(MemoryRow {
            rate,
            held: get("held_bytes"),
            live: get("live_bytes"),
            tracker: get("tracker_bytes"),
            symbols: get("symbol_bytes"),
            stacks: get("stacks"),
            rss: get("rss_after"),
        });
        eprintln!("memory at rate {rate}: {out}");
    }
    Ok((system_rss, rows))
}

/// Instructions counted by callgrind for `binary args` (its exit report off).
fn instructions(binary: &Path, args: &[String], env: &[(&str, &str)]) -> Result<f64, String> {
    let mut command = Command::new("valgrind");
    command
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(binary)
        .args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ALLOC_TRACKER_") {
            command.env_remove(key);
        }
    }
    command.env("ALLOC_TRACKER_REPORT", "off");
    command.envs(env.iter().copied());
    let output = command.output().map_err(|e| format!("valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no instruction count from callgrind: {stderr}"))
}

/// Instruction counts: per 64 B alloc+free pair of each `fastpath` configuration, and per
/// workload iteration of each variant (one thread).
struct Instructions {
    pairs: Vec<(&'static str, f64)>,
    /// (variant, workload, instructions per iteration).
    workloads: Vec<(&'static str, &'static str, f64)>,
}

impl Instructions {
    /// Instructions per iteration of `workload` under `variant`, if counted.
    fn per_iteration(&self, variant: &str, workload: &str) -> Option<f64> {
        self.workloads
            .iter()
            .find(|r| r.0 == variant && r.1 == workload)
            .map(|r| r.2)
    }
}

/// Counts instructions under callgrind. Each figure is the difference between a run of 2N
/// and a run of N operations, divided by N: start-up and exit cancel out.
fn run_callgrind(bins: &Path, with_workloads: bool) -> Result<Instructions, String> {
    let fastpath = bins.join("fastpath");
    let mut pairs = Vec::new();
    for config in [
        "system",
        "off",
        "default",
        "exact-fp",
        "exact-table",
        "exact-dwarf",
    ] {
        let n = if config.starts_with("exact") {
            2_000u64
        } else {
            200_000
        };
        let count = |n: u64| instructions(&fastpath, &[config.to_string(), n.to_string()], &[]);
        pairs.push((config, (count(2 * n)? - count(n)?) / n as f64));
    }
    let mut workloads = Vec::new();
    for workload in WORKLOADS.into_iter().filter(|_| with_workloads) {
        // Iterations of the N run.
        let (n, base) = match workload {
            "service" => (500u64, alloc_tracker_benches::workload::SERVICE_ITERS),
            _ => (1, alloc_tracker_benches::workload::HASHMAP_ITERS),
        };
        for variant in VARIANTS.iter().filter(|v| v.name != "system-small") {
            let count = |iters: u64| {
                let args = [
                    workload.to_string(),
                    "--scale".to_string(),
                    (iters as f64 / base as f64).to_string(),
                ];
                instructions(&bins.join(variant.binary), &args, variant.env)
            };
            let per_iter = (count(2 * n)? - count(n)?) / n as f64;
            eprintln!(
                "callgrind: {} {workload}: {per_iter:.0} instructions per iteration",
                variant.name
            );
            workloads.push((variant.name, workload, per_iter));
        }
    }
    Ok(Instructions { pairs, workloads })
}

/// A criterion result: median time per iteration and its 95 % confidence interval, in ns.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    median: f64,
    low: f64,
    high: f64,
}

/// Every criterion result under `dir` newer than `since` (seconds since the epoch), by
/// full id (`group/function/parameter`).
fn read_criterion(dir: &Path, since: u64) -> BTreeMap<String, Estimate> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !(path.ends_with("new/benchmark.json")) {
                continue;
            }
            let fresh = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|t| t.as_secs() >= since);
            let read = |p: &Path| -> Option<Value> {
                serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
            };
            let (Some(meta), Some(estimates)) =
                (read(&path), read(&path.with_file_name("estimates.json")))
            else {
                continue;
            };
            let median = &estimates["median"];
            let (Some(id), Some(point), Some(low), Some(high)) = (
                meta["full_id"].as_str(),
                median["point_estimate"].as_f64(),
                median["confidence_interval"]["lower_bound"].as_f64(),
                median["confidence_interval"]["upper_bound"].as_f64(),
            ) else {
                continue;
            };
            if fresh {
                found.insert(
                    id.to_string(),
                    Estimate {
                        median: point,
                        low,
                        high,
                    },
                );
            }
        }
    }
    found
}

fn shell(command: &str, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

fn fmt_ratio(s: &Summary) -> String {
    format!("{:.3}× ({:.3}–{:.3})", s.median, s.min, s.max)
}

fn run(options: &Options) -> Result<(), String> {
    let bins = bin_dir()?;
    let started = Instant::now();
    let load_before = loadavg();
    let scale = if options.quick { 0.25 } else { 1.0 };
    let hold_mib = if options.quick { 64 } else { 200 };

    let times = run_workloads(options, &bins, scale)?;
    let (system_rss, memory) = run_memory(&bins, hold_mib)?;
    let callgrind =
        if options.callgrind && Command::new("valgrind").arg("--version").output().is_ok() {
            match run_callgrind(&bins, !options.quick) {
                Ok(rows) => Some(rows),
                Err(why) => {
                    eprintln!("callgrind skipped: {why}");
                    None
                }
            }
        } else {
            None
        };
    let criterion = options
        .criterion
        .as_deref()
        .map(|dir| read_criterion(dir, options.criterion_since))
        .unwrap_or_default();
    let load_after = loadavg();

    let mut md = String::new();
    let w = &mut md;
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(w, "# alloc-tracker overhead: results\n");
    let _ = writeln!(
        w,
        "Written by `benches/run.sh` — do not edit by hand; rerun it. Command: `{}`.\n",
        options.command
    );
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| date | {date} |");
    let _ = writeln!(
        w,
        "| machine | {} cores, {} |",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    let _ = writeln!(w, "| rustc | {} |", shell("rustc", &["-V"]));
    let _ = writeln!(w, "| libc | {} |", shell("ldd", &["--version"]));
    let _ = writeln!(
        w,
        "| load average | {load_before} before the workloads, {load_after} after |"
    );
    let _ = writeln!(
        w,
        "| rounds | {} (workloads at scale {scale}{}) |",
        options.rounds,
        if options.quick { ", `--quick`" } else { "" }
    );
    let _ = writeln!(
        w,
        "\n**The machine was shared** with other builds and jobs while this ran: single numbers \
         are noisy. Every workload variant runs once per round, interleaved with its baseline \
         (the order rotates each round); a ratio is computed per round against the baseline \
         run of the same round, and the table gives the median of the rounds and, in \
         parentheses, their range (min–max).\n"
    );

    // Workloads.
    let _ = writeln!(w, "## Whole-program workloads (wall time)\n");
    let _ = writeln!(
        w,
        "Each variant is its own binary (`benches/src/bin/wl_*.rs`): the same workload code, \
         a different `#[global_allocator]`. Time is measured in-process around the workload \
         (threads started and joined; the exit report is off). With 2 threads each thread \
         does the full work, so an allocator that scales keeps its 1-thread time.\n"
    );
    let _ = writeln!(
        w,
        "* `service`: a request loop: format a request, parse it into a map and vectors of \
         strings, answer from a bounded cache (2048 entries, oldest evicted) or build the answer \
         (maps of formatted fields rendered as JSON), format the response. {} requests per \
         thread at scale 1.",
        alloc_tracker_benches::workload::SERVICE_ITERS
    );
    let _ = writeln!(
        w,
        "* `hashmap`: build a `HashMap<String, Vec<u8>>` of {} entries (8–255 B values), read \
         it, drop it; {} times per thread at scale 1.",
        alloc_tracker_benches::workload::HASHMAP_ENTRIES,
        alloc_tracker_benches::workload::HASHMAP_ITERS
    );
    let _ = writeln!(
        w,
        "* Exact mode, dhat-rs and their System baseline (`system-small`) run at 1/{} of the \
         iterations of `service` and 1/{} of `hashmap` (dhat-rs would take minutes otherwise); \
         their ratios are against System at that same scale.\n",
        (1.0 / small_scale("service")) as u64,
        (1.0 / small_scale("hashmap")) as u64
    );
    let _ = writeln!(w, "| variant | what | baseline |\n|---|---|---|");
    for v in VARIANTS {
        let _ = writeln!(
            w,
            "| `{}` | {} | {} |",
            v.name,
            v.what,
            v.baseline.unwrap_or("—")
        );
    }
    let _ = writeln!(w);
    let _ = write!(w, "| variant |");
    for workload in WORKLOADS {
        for threads in THREADS {
            let _ = write!(
                w,
                " {workload}, {threads} thread{} |",
                if threads > 1 { "s" } else { "" }
            );
        }
    }
    let _ = writeln!(w, "\n|---|---|---|---|---|");
    for v in VARIANTS {
        let _ = write!(w, "| `{}` |", v.name);
        for workload in WORKLOADS {
            for threads in THREADS {
                let secs = times
                    .get(&(v.name, workload, threads))
                    .and_then(|s| Summary::of(s));
                let cell = match (v.baseline, secs) {
                    (Some(base), Some(secs)) => {
                        match (
                            ratio(&times, v.name, base, workload, threads),
                            ratio_of_minimums(&times, v.name, base, workload, threads),
                        ) {
                            (Some(r), Some(m)) => {
                                format!("{} · min {m:.3}× · {:.3} s", fmt_ratio(&r), secs.median)
                            }
                            _ => format!("{:.3} s", secs.median),
                        }
                    }
                    (None, Some(secs)) => format!(
                        "{:.3} s (±{:.1} %)",
                        secs.median,
                        50.0 * secs.relative_spread()
                    ),
                    _ => "—".to_string(),
                };
                let _ = write!(w, " {cell} |");
            }
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "\nCells: ratio to the baseline, median of the per-round ratios (their min–max) · ratio \
         of the fastest runs (`min`) · median seconds. \
         Baselines: median seconds (± half the range, as a % of the median).\n"
    );
    // dhat vs exact.
    let _ = writeln!(
        w,
        "Exact mode against dhat-rs: dhat time / exact time, median of the per-round ratios \
         (their min–max). The ceiling is dhat's own ratio to System: no profiler, however \
         cheap, can be more than that many times faster than dhat-rs on a workload.\n"
    );
    let _ = writeln!(
        w,
        "| workload | 1 thread | ceiling (dhat / System) | 2 threads | ceiling |\n|---|---|---|---|---|"
    );
    // (dhat / exact, dhat / system) per cell.
    let mut exact_vs_dhat = Vec::new();
    for workload in WORKLOADS {
        let _ = write!(w, "| {workload} |");
        for threads in THREADS {
            let faster = ratio(&times, "dhat", "exact", workload, threads);
            let ceiling = ratio(&times, "dhat", "system-small", workload, threads);
            match (faster, ceiling) {
                (Some(r), Some(c)) => {
                    exact_vs_dhat.push((workload, threads, r.median, c.median));
                    let _ = write!(
                        w,
                        " {:.1}× faster ({:.1}–{:.1}) | {:.1}× |",
                        r.median, r.min, r.max, c.median
                    );
                }
                _ => {
                    let _ = write!(w, " — | — |");
                }
            }
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w);

    // Memory.
    let _ = writeln!(w, "## The tracker's own memory\n");
    let _ = writeln!(
        w,
        "`wl-tracker hold --mib {hold_mib}`: about {hold_mib} MiB live in blocks of mixed sizes \
         (half the bytes in 16–256 B blocks, half in 256 B–64 KiB), then `alloc_tracker::report()` \
         (which symbolizes the sampled stacks). `tracker` is the report's `tracker.bytes` (the \
         tracker's own heap: sample and stack tables, symbols); `symbols` is its \
         `symbol_bytes` part (the names of the frames seen so far; the debug info loaded to \
         find them is freed once the report is built). Budget: 1 % of live + 4 MiB. RSS is the process's once the heap is built (before the report); \
         the same workload under System has RSS {}.\n",
        mib(system_rss)
    );
    let _ = writeln!(
        w,
        "| rate | live heap | tracker | of which symbols | tracker without symbols | % of live (without / with symbols) | budget | stacks | RSS (vs System) |\n|---|---|---|---|---|---|---|---|---|"
    );
    for row in &memory {
        let live = row.live.max(row.held);
        let budget = live / 100 + (4 << 20);
        let own = row.tracker.saturating_sub(row.symbols);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {:.2} % / {:.2} % | {} | {} | {} (+{}) |",
            if row.rate == 1 {
                "1 (exact)".to_string()
            } else {
                format!("{} KiB", row.rate / 1024)
            },
            mib(live),
            mib(row.tracker),
            mib(row.symbols),
            mib(own),
            100.0 * own as f64 / live as f64,
            100.0 * row.tracker as f64 / live as f64,
            mib(budget),
            row.stacks,
            mib(row.rss),
            mib(row.rss.saturating_sub(system_rss)),
        );
    }
    let _ = writeln!(w);

    // Criterion.
    let ns = |id: &str| criterion.get(id).map(|e| e.median);
    let cell = |id: &str, base: Option<f64>| match criterion.get(id) {
        Some(e) => match base {
            Some(b) if b > 0.0 => format!("{:.1} ({:.2}×)", e.median, e.median / b),
            _ => format!("{:.1}", e.median),
        },
        None => "—".to_string(),
    };
    let configs = [
        "system",
        "off",
        "512k",
        "64k",
        "4k-fp",
        "4k-dwarf",
        "exact-fp",
        "exact-table",
        "exact-dwarf",
    ];
    let _ = writeln!(
        w,
        "## Micro-benchmarks (criterion, `benches/benches/micro.rs`)\n"
    );
    if criterion.is_empty() {
        let _ = writeln!(w, "Not run (`run.sh` runs them before this report).\n");
    } else {
        let _ = writeln!(
            w,
            "Median ns per operation (criterion's median estimate), and the ratio to System. \
             Each configuration is a `static Tracker` called through `GlobalAlloc` directly. \
             `off` = sampling off (counters, countdown, free filter: the fast path alone); \
             `512k`/`64k` = rate, `auto` unwinding; `4k-*`/`exact-*` = rate 4 KiB / every \
             allocation with frame-pointer, unwind-table or DWARF unwinding.\n"
        );
        let _ = writeln!(w, "### Alloc+free pair\n");
        let _ = write!(w, "| size |");
        for c in configs {
            let _ = write!(w, " {c} |");
        }
        let _ = writeln!(w, "\n|---|{}", "---|".repeat(configs.len()));
        for size in [16, 64, 256, 1024, 4096, 65536] {
            let base = ns(&format!("pair/system/{size}"));
            let _ = write!(w, "| {size} B |");
            for c in configs {
                let _ = write!(w, " {} |", cell(&format!("pair/{c}/{size}"), base));
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(
            w,
            "\n### realloc growth (16 B → 64 KiB by doubling, 12 reallocs, then free)\n"
        );
        let base = ns("realloc/system");
        let _ = writeln!(w, "| config | ns |\n|---|---|");
        for c in configs {
            let _ = writeln!(w, "| {c} | {} |", cell(&format!("realloc/{c}"), base));
        }
        let _ = writeln!(w, "\n### Fast path alone (64 B pair)\n");
        let system = ns("fast_path/system");
        let _ = writeln!(
            w,
            "| config | ns per pair | 95 % interval | added over System |\n|---|---|---|---|"
        );
        for c in ["system", "off", "512k"] {
            let id = format!("fast_path/{c}");
            let added = match (ns(&id), system) {
                (Some(x), Some(s)) if c != "system" => format!("{:+.2} ns", x - s),
                _ => "—".to_string(),
            };
            let interval = criterion
                .get(&id)
                .map_or("—".to_string(), |e| format!("{:.2}–{:.2}", e.low, e.high));
            let _ = writeln!(w, "| {c} | {} | {interval} | {added} |", cell(&id, system));
        }
        let _ = writeln!(
            w,
            "\n### One sampled event (64 B pair in exact mode at a stack depth)\n"
        );
        let _ = writeln!(
            w,
            "| depth | off | fp | table | dwarf | sampled event, fp (fp − off) | sampled event, table | sampled event, dwarf |\n|---|---|---|---|---|---|---|---|"
        );
        for depth in [15, 20, 40] {
            let get = |u: &str| ns(&format!("sampled_event/{u}/{depth}"));
            let diff = |u: &str| match (get(u), get("off")) {
                (Some(x), Some(o)) => format!("{:.0} ns", x - o),
                _ => "—".to_string(),
            };
            let _ = writeln!(
                w,
                "| ~{depth} | {} | {} | {} | {} | {} | {} | {} |",
                cell(&format!("sampled_event/off/{depth}"), None),
                cell(&format!("sampled_event/fp/{depth}"), None),
                cell(&format!("sampled_event/table/{depth}"), None),
                cell(&format!("sampled_event/dwarf/{depth}"), None),
                diff("fp"),
                diff("table"),
                diff("dwarf")
            );
        }
        let _ = writeln!(
            w,
            "\n### Threads (64 B pairs on every thread at once; ns per pair on each thread)\n"
        );
        let thread_counts: Vec<usize> = [1, 2, 4]
            .into_iter()
            .filter(|n| {
                criterion
                    .keys()
                    .any(|k| k.starts_with(&format!("threads/{n}/")))
            })
            .collect();
        let _ = write!(w, "| config |");
        for n in &thread_counts {
            let _ = write!(w, " {n} thread{} |", if *n > 1 { "s" } else { "" });
        }
        let _ = writeln!(w, " 2 threads / 1 thread |");
        let _ = writeln!(w, "|---|{}---|", "---|".repeat(thread_counts.len()));
        for c in ["system", "off", "512k", "4k-fp", "exact-fp", "exact-table"] {
            let _ = write!(w, "| {c} |");
            for n in &thread_counts {
                let _ = write!(
                    w,
                    " {} |",
                    cell(
                        &format!("threads/{n}/{c}"),
                        ns(&format!("threads/{n}/system"))
                    )
                );
            }
            let scaling = match (ns(&format!("threads/2/{c}")), ns(&format!("threads/1/{c}"))) {
                (Some(two), Some(one)) => format!("{:.2}×", two / one),
                _ => "—".to_string(),
            };
            let _ = writeln!(w, " {scaling} |");
        }
        let _ = writeln!(w);
    }
    if let Some(counts) = &callgrind {
        let system = counts
            .pairs
            .iter()
            .find(|(c, _)| *c == "system")
            .map_or(0.0, |r| r.1);
        let _ = writeln!(
            w,
            "## Instruction counts (callgrind: repeatable on a shared machine)\n"
        );
        let _ = writeln!(
            w,
            "Instructions are not time (cache misses and stalls are not in them), but they do \
             not move with the machine's load. Each figure is (count at 2N − count at N) / N, so \
             start-up and exit cancel out.\n"
        );
        let _ = writeln!(w, "### Per 64 B alloc+free pair (`fastpath` binary)\n");
        let _ = writeln!(
            w,
            "| config | instructions per pair | added over System |\n|---|---|---|"
        );
        for (config, per_pair) in &counts.pairs {
            let _ = writeln!(
                w,
                "| {config} | {per_pair:.1} | {:+.1} |",
                per_pair - system
            );
        }
        let _ = writeln!(
            w,
            "\n### Per workload iteration, 1 thread (ratio to the baseline)\n"
        );
        let _ = writeln!(w, "| variant | service | hashmap |\n|---|---|---|");
        let get = |variant: &str, workload: &str| counts.per_iteration(variant, workload);
        for v in VARIANTS.iter().filter(|v| v.name != "system-small") {
            let _ = write!(w, "| `{}` |", v.name);
            for workload in WORKLOADS {
                let base = v
                    .baseline
                    .map(|b| if b == "system-small" { "system" } else { b });
                let cell = match (get(v.name, workload), base.and_then(|b| get(b, workload))) {
                    (Some(x), Some(b)) => format!("{:.0} ({:.3}×)", x, x / b),
                    (Some(x), None) => format!("{x:.0}"),
                    _ => "—".to_string(),
                };
                let _ = write!(w, " {cell} |");
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(w);
    }

    // Goals.
    let _ = writeln!(w, "## Goals\n");
    let _ = writeln!(w, "| goal | measured | verdict |\n|---|---|---|");
    for (variant, base, goal) in [
        (
            "tracker",
            "system",
            "default rate ≤ 1.02× System, workloads, 1 and 2 threads",
        ),
        (
            "tracker-jemalloc",
            "jemalloc",
            "(same, tracker around jemalloc vs jemalloc)",
        ),
    ] {
        let mut cells = Vec::new();
        let (mut by_median, mut by_minimum) = (true, true);
        for workload in WORKLOADS {
            for threads in THREADS {
                if let (Some(r), Some(m)) = (
                    ratio(&times, variant, base, workload, threads),
                    ratio_of_minimums(&times, variant, base, workload, threads),
                ) {
                    by_median &= r.median <= 1.02;
                    by_minimum &= m <= 1.02;
                    cells.push(format!(
                        "{workload} {threads}t {:.3}× (min {m:.3}×)",
                        r.median
                    ));
                }
            }
        }
        let _ = writeln!(
            w,
            "| {goal} | {} | {} |",
            cells.join(", "),
            verdict_of(by_median, by_minimum)
        );
    }
    if let (Some(off), Some(system)) = (ns("fast_path/off"), ns("fast_path/system")) {
        let added = off - system;
        let instructions = callgrind.as_ref().map_or(String::new(), |counts| {
            let get = |c: &str| counts.pairs.iter().find(|r| r.0 == c).map_or(0.0, |r| r.1);
            format!(
                "; {:+.0} instructions per pair (callgrind)",
                get("off") - get("system")
            )
        });
        let _ = writeln!(
            w,
            "| unsampled fast path ≤ 2 ns per pair over the inner allocator | {added:+.2} ns ({off:.2} vs {system:.2} ns){instructions} | {} |",
            verdict(added <= 2.0)
        );
    }
    if !exact_vs_dhat.is_empty() {
        let met = exact_vs_dhat.iter().all(|r| r.2 >= 10.0);
        let unreachable: Vec<String> = exact_vs_dhat
            .iter()
            .filter(|r| r.3 < 10.0)
            .map(|r| format!("{} {}t", r.0, r.1))
            .collect();
        let note = if unreachable.is_empty() {
            String::new()
        } else {
            format!(
                " (unreachable on {}: dhat-rs itself is less than 10× System there)",
                unreachable.join(", ")
            )
        };
        let _ = writeln!(
            w,
            "| exact mode ≥ 10× faster than dhat-rs | {} | {}{note} |",
            exact_vs_dhat
                .iter()
                .map(|r| format!("{} {}t {:.1}× (ceiling {:.1}×)", r.0, r.1, r.2, r.3))
                .collect::<Vec<_>>()
                .join(", "),
            verdict(met)
        );
    }
    if let Some(counts) = callgrind.as_ref().filter(|c| !c.workloads.is_empty()) {
        let get = |variant: &str, workload: &str| counts.per_iteration(variant, workload);
        let mut cells = Vec::new();
        let mut met = true;
        for (variant, base) in [("tracker", "system"), ("tracker-jemalloc", "jemalloc")] {
            for workload in WORKLOADS {
                if let (Some(x), Some(b)) = (get(variant, workload), get(base, workload)) {
                    met &= x / b <= 1.02;
                    cells.push(format!("`{variant}` {workload} {:.3}×", x / b));
                }
            }
        }
        let _ = writeln!(
            w,
            "| (same, in instructions, 1 thread) | {} | {} |",
            cells.join(", "),
            verdict(met)
        );
        let mut cells = Vec::new();
        let mut met = true;
        for workload in WORKLOADS {
            if let (Some(d), Some(e)) = (get("dhat", workload), get("exact", workload)) {
                met &= d / e >= 10.0;
                cells.push(format!("{workload} {:.1}×", d / e));
            }
        }
        let _ = writeln!(
            w,
            "| exact mode ≥ 10× fewer instructions than dhat-rs (1 thread) | {} | {} |",
            cells.join(", "),
            verdict(met)
        );
    }
    for (variant, base) in [("tracker", "system"), ("tracker-jemalloc", "jemalloc")] {
        let mut cells = Vec::new();
        let (mut by_median, mut by_minimum) = (true, true);
        for workload in WORKLOADS {
            let both = |threads| {
                Some((
                    ratio(&times, variant, base, workload, threads)?.median,
                    ratio_of_minimums(&times, variant, base, workload, threads)?,
                ))
            };
            if let (Some(one), Some(two)) = (both(1), both(2)) {
                by_median &= two.0 <= one.0 + 0.02;
                by_minimum &= two.1 <= one.1 + 0.02;
                cells.push(format!(
                    "{workload}: {:.3} vs {:.3} (min: {:.3} vs {:.3})",
                    two.0, one.0, two.1, one.1
                ));
            }
        }
        let _ = writeln!(
            w,
            "| 2-thread ratio ≤ 1-thread ratio + 0.02 (`{variant}`) | {} | {} |",
            cells.join("; "),
            verdict_of(by_median, by_minimum)
        );
    }
    if let Some(row) = memory.iter().find(|r| r.rate == 524_288) {
        let live = row.live.max(row.held);
        let budget = live / 100 + (4 << 20);
        let own = row.tracker.saturating_sub(row.symbols);
        let _ = writeln!(
            w,
            "| tracker memory ≤ 1 % of live + 4 MiB at the default rate | {} without symbols, {} with, budget {} for {} live | {} without symbols, {} with |",
            mib(own),
            mib(row.tracker),
            mib(budget),
            mib(live),
            verdict(own <= budget),
            verdict(row.tracker <= budget)
        );
    }
    let _ = writeln!(
        w,
        "\nTotal time of the workload, memory and callgrind part: {:.0} s.",
        started.elapsed().as_secs_f64()
    );

    std::fs::write(&options.out, md).map_err(|e| format!("{}: {e}", options.out.display()))?;
    eprintln!("wrote {}", options.out.display());
    Ok(())
}
