//! `RESULTS.md`: the goals first, then every table they come from.

use crate::callgrind::{self, Instructions};
use crate::criterion::Estimate;
use crate::goals;
use crate::memory::Memory;
use crate::plan::{
    key, small_scale, sweep_case, threads_case, variant, wall_case, workload_case, Bins, Build,
    Results, Sizes, BATCHES, JEMALLOC_PROF_CONF, LIVE, MANY_THREADS, THREADS, VARIANTS, WORKLOADS,
};
use crate::Options;
use alloc_tracker_benches::stats::Summary;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Everything the report is written from.
pub struct Data<'a> {
    pub options: &'a Options,
    pub sizes: &'a Sizes,
    pub bins: &'a Bins,
    pub results: &'a Results,
    pub memory: &'a Memory,
    pub instructions: Option<&'a Instructions>,
    pub criterion: &'a BTreeMap<String, Estimate>,
    /// Load average before and after the rounds.
    pub load: (String, String),
    /// Seconds the runner took.
    pub seconds: f64,
}

/// `1.034× (1.028–1.058)`: median (range) of per-round ratios.
pub fn ratio_text(s: &Summary) -> String {
    format!("{:.3}× ({:.3}–{:.3})", s.median, s.min, s.max)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
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

/// The whole file.
pub fn results_md(data: &Data) -> String {
    let mut md = String::new();
    header(&mut md, data);
    goals_section(&mut md, data);
    checks(&mut md, data);
    workloads(&mut md, data);
    jemalloc(&mut md, data);
    sweep(&mut md, data);
    threads(&mut md, data);
    sampled_event(&mut md, data);
    memory(&mut md, data);
    if let Some(counts) = data.instructions {
        instructions(&mut md, counts);
    }
    micro(&mut md, data);
    let _ = writeln!(
        md,
        "Time of the rounds, memory and callgrind part: {:.0} s.",
        data.seconds
    );
    md
}

fn header(w: &mut String, data: &Data) {
    let date = crate::child::first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(w, "# alloc-tracker overhead: results\n");
    let _ = writeln!(
        w,
        "Written by `benches/run.sh` — do not edit by hand; rerun it. Command: `{}`.\n",
        data.options.command
    );
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| date | {date} |");
    let _ = writeln!(
        w,
        "| machine | {} cores, {} |",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    let _ = writeln!(
        w,
        "| rustc | {} |",
        crate::child::first_line("rustc", &["-V"])
    );
    let _ = writeln!(
        w,
        "| libc | {} |",
        crate::child::first_line("ldd", &["--version"])
    );
    let _ = writeln!(
        w,
        "| builds | {} |",
        match data.bins.fp {
            Some(_) =>
                "**no frame pointers** (Cargo's default release build, what a user who changes \
                 nothing gets: `auto` unwinding uses the unwind tables) and **frame pointers** \
                 (`-C force-frame-pointers=yes`, its own target directory: `auto` uses them); \
                 every run checks which build its binary is",
            None => "no frame pointers only (Cargo's default release build)",
        }
    );
    let _ = writeln!(
        w,
        "| load average | {} before the rounds, {} after |",
        data.load.0, data.load.1
    );
    let _ = writeln!(
        w,
        "| rounds | {} (workloads at scale {}{}) |",
        data.sizes.rounds,
        data.sizes.scale,
        if data.options.quick {
            ", `--quick`"
        } else {
            ""
        }
    );
    let _ = writeln!(
        w,
        "\n**The machine is shared** with other builds and jobs: single timings are noisy. \
         Every variant runs once per round, interleaved with its baseline and with the other \
         build (the order rotates each round); a ratio is computed per round against the \
         baseline run of the same round, and the tables give the median of the rounds and, in \
         parentheses, their range (min–max).\n"
    );
}

fn goals_section(w: &mut String, data: &Data) {
    let _ = writeln!(w, "## Goals\n");
    let _ = writeln!(
        w,
        "Each goal of the issue, measured in this run. \"2026-11-30\" is the figure the issue \
         started from. Workload ratios are of CPU time (the workload threads' own: see the \
         workloads section, which also gives wall time), per round against the baseline of \
         the same round and build; verdicts read the median of the rounds, their range is in \
         parentheses. Default build (no frame pointers) unless said.\n"
    );
    let _ = writeln!(
        w,
        "| measure | goal | 2026-11-30 | measured | verdict |\n|---|---|---|---|---|"
    );
    let goals = goals::goals(data);
    for g in &goals {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} |",
            g.measure,
            g.goal,
            g.before,
            if g.measured.is_empty() {
                "—"
            } else {
                &g.measured
            },
            verdict(g.met)
        );
    }
    let misses: Vec<&goals::Goal> = goals.iter().filter(|g| !g.why.is_empty()).collect();
    if !misses.is_empty() {
        let _ = writeln!(
            w,
            "\nWhy the missed goals are missed, from this run's figures:\n"
        );
        for g in misses {
            let _ = writeln!(w, "* **{}**: {}", g.measure, g.why);
        }
    }
    let _ = writeln!(w);
}

/// What the binaries said about themselves: the rate and unwinder in force, whether the
/// samples account for the bytes allocated, jemalloc's profiling settings.
fn checks(w: &mut String, data: &Data) {
    let _ = writeln!(w, "## Checks: what each run said about itself\n");
    let _ = writeln!(
        w,
        "After its timed part, each tracker binary makes a report and prints the rate and the \
         unwinder in force and the bytes its samples account for (the sum of the sites' \
         estimated allocated bytes) against the exact total; each jemalloc binary reads its \
         profiling settings back with `mallctl`. From the last round's `service` 1-thread run \
         (`pairs`: the 1 M live-sample run).\n"
    );
    let _ = writeln!(
        w,
        "| build | variant | rate | unwinder | samples' estimate / exact bytes | stacks | jemalloc `config.prof` / `opt.prof` / `prof.active` / `opt.lg_prof_sample` |\n|---|---|---|---|---|---|---|"
    );
    let case = workload_case("service", 1);
    let mut rows: Vec<(Build, &'static str, String)> = Vec::new();
    for build in data.bins.builds() {
        for v in VARIANTS {
            rows.push((build, v.name, case.clone()));
        }
    }
    rows.push((Build::NoFp, "tracker", sweep_case(1_000_000, 1)));
    for (build, name, case) in rows {
        let Some(facts) = data.results.facts(&key(build, name, &case)) else {
            continue;
        };
        let tracker = &facts["tracker"];
        let jemalloc = &facts["jemalloc"];
        if tracker.is_null() && jemalloc.is_null() {
            continue;
        }
        let text = |v: &Value| match v {
            Value::Null => "—".to_string(),
            Value::String(s) => format!("`{s}`"),
            other => other.to_string(),
        };
        let estimate = match (
            tracker["estimated_alloc_bytes"].as_f64(),
            tracker["alloc_bytes"].as_f64(),
        ) {
            (Some(e), Some(x)) if x > 0.0 => format!("{:.3}", e / x),
            _ => "—".to_string(),
        };
        let label = if case.starts_with("live") {
            format!(
                "`{name}` (pairs with {} live samples held)",
                text(&tracker["live_samples"])
            )
        } else {
            format!("`{name}`")
        };
        let jem = if jemalloc.is_null() {
            "—".to_string()
        } else {
            format!(
                "{} / {} / {} / {}",
                text(&jemalloc["config.prof"]),
                text(&jemalloc["opt.prof"]),
                text(&jemalloc["prof.active"]),
                text(&jemalloc["opt.lg_prof_sample"])
            )
        };
        // Nothing sampled, no unwinder used (the report names its default).
        let unwinder = if tracker["sample_rate"] == 0 {
            "—".to_string()
        } else {
            text(&tracker["unwinder"])
        };
        let _ = writeln!(
            w,
            "| {} | {label} | {} | {unwinder} | {estimate} | {} | {jem} |",
            build.label(),
            text(&tracker["sample_rate"]),
            text(&tracker["stacks"]),
        );
    }
    let _ = writeln!(
        w,
        "\n`jemalloc-prof` runs with `_RJEM_MALLOC_CONF={JEMALLOC_PROF_CONF}`; `opt.prof` \
         `true` above is jemalloc saying its profiler is on (in the stock build, `—`: the \
         setting does not exist).\n"
    );
}

fn workloads(w: &mut String, data: &Data) {
    let _ = writeln!(w, "## Whole-program workloads (CPU time and wall time)\n");
    let _ = writeln!(
        w,
        "Each variant is its own binary (`benches/src/bin/wl_*.rs`): the same workload code, \
         a different `#[global_allocator]`. Time is measured in-process around the workload \
         (threads started and joined; the exit report is off): **CPU time**, the workload \
         threads' own (each read on its thread clock, summed), which time spent waiting for a \
         core on this shared machine does not inflate, and **wall time**. The comparisons \
         (goals, jemalloc, the cost of frame pointers) read CPU time. With 2 threads each \
         thread does the full work, so an allocator that scales keeps its 1-thread wall time \
         and doubles its CPU time.\n"
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
         iterations of `service` and 1/{} of `hashmap`; their ratios are against System at \
         that same scale. dhat-rs runs in the default build only.\n",
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
    for (clock, case_of) in [
        ("CPU time", workload_case as fn(&str, usize) -> String),
        ("wall time", wall_case),
    ] {
        for build in data.bins.builds() {
            workload_table(w, data, build, clock, case_of);
        }
    }
    let _ = writeln!(
        w,
        "Cells: ratio to the baseline, median of the per-round ratios (their min–max) · ratio \
         of the fastest runs (`min`) · median seconds. Baselines: median seconds (± half the \
         range, as a % of the median).\n"
    );
    if data.bins.fp.is_some() {
        let _ = writeln!(
            w,
            "What frame pointers cost the program itself (the frame-pointer build's time over \
             the default build's, same variant, same round):\n"
        );
        let _ = writeln!(
            w,
            "| variant | service, 1 thread | service, 2 threads | hashmap, 1 thread | hashmap, 2 threads |\n|---|---|---|---|---|"
        );
        for name in ["system", "tracker", "exact"] {
            let _ = write!(w, "| `{name}` |");
            for workload in WORKLOADS {
                for threads in THREADS {
                    let case = workload_case(workload, threads);
                    let cell = data
                        .results
                        .ratio(&key(Build::Fp, name, &case), &key(Build::NoFp, name, &case))
                        .map_or("—".to_string(), |r| ratio_text(&r));
                    let _ = write!(w, " {cell} |");
                }
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(w);
    }
}

/// One build's workload table on one clock.
fn workload_table(
    w: &mut String,
    data: &Data,
    build: Build,
    clock: &str,
    case_of: fn(&str, usize) -> String,
) {
    let _ = writeln!(w, "### {clock}, built with {}\n", build.label());
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
    for v in VARIANTS
        .iter()
        .filter(|v| build == Build::NoFp || !v.no_fp_only)
    {
        let _ = write!(w, "| `{}` |", v.name);
        for workload in WORKLOADS {
            for threads in THREADS {
                let case = case_of(workload, threads);
                let this = key(build, v.name, &case);
                let secs = data.results.summary(&this);
                let cell = match (v.baseline, secs) {
                    (Some(base), Some(secs)) => {
                        let base = key(build, variant(base).name, &case);
                        match (
                            data.results.ratio(&this, &base),
                            data.results.ratio_of_minimums(&this, &base),
                        ) {
                            (Some(r), Some(m)) => {
                                format!("{} · min {m:.3}× · {:.3} s", ratio_text(&r), secs.median)
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
    let _ = writeln!(w);
}

fn jemalloc(w: &mut String, data: &Data) {
    let _ = writeln!(
        w,
        "## jemalloc: the tracker around it against its own profiler\n"
    );
    let _ = writeln!(
        w,
        "Both sample once per 512 KiB on average with a stack each. Ratios of CPU time per \
         round against the stock jemalloc of the same round, and the two profilers against \
         each other (below 1: the tracker is the cheaper).\n"
    );
    let _ = writeln!(
        w,
        "| build | workload | threads | tracker-jemalloc / jemalloc | jemalloc-prof / jemalloc | tracker-jemalloc / jemalloc-prof |\n|---|---|---|---|---|---|"
    );
    for build in data.bins.builds() {
        for workload in WORKLOADS {
            for threads in THREADS {
                let case = workload_case(workload, threads);
                let r = |a: &'static str, b: &'static str| {
                    data.results
                        .ratio(&key(build, a, &case), &key(build, b, &case))
                        .map_or("—".to_string(), |r| ratio_text(&r))
                };
                let _ = writeln!(
                    w,
                    "| {} | {workload} | {threads} | {} | {} | {} |",
                    build.label(),
                    r("tracker-jemalloc", "jemalloc"),
                    r("jemalloc-prof", "jemalloc"),
                    r("tracker-jemalloc", "jemalloc-prof")
                );
            }
        }
    }
    let _ = writeln!(w);
}

fn sweep(w: &mut String, data: &Data) {
    let _ = writeln!(w, "## The free path with many live samples\n");
    let _ = writeln!(
        w,
        "`wl-tracker pairs --live N`: N live 64 B blocks are allocated in exact mode (every one \
         a sample) and kept; then {} 64 B alloc+free pairs through the global allocator at the \
         default rate, timed on the thread's CPU clock. Batch 1: each block is freed at once \
         (one address over and over); batch 4096: 4096 allocations, then their frees (the free \
         filter is read at 4096 addresses). `wl-system` holds the same N blocks. Default build.\n",
        data.sizes.sweep_pairs
    );
    let _ = writeln!(
        w,
        "| live samples | batch | System, ns per pair | tracker, ns per pair | tracker / System | tracker / tracker with none live |\n|---|---|---|---|---|---|"
    );
    for batch in BATCHES {
        for live in LIVE {
            let case = sweep_case(live, batch);
            let sys = key(Build::NoFp, "system", &case);
            let tr = key(Build::NoFp, "tracker", &case);
            let none = key(Build::NoFp, "tracker", &sweep_case(0, batch));
            let ns = |k| {
                data.results.summary(k).map_or("—".to_string(), |s| {
                    format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max)
                })
            };
            let ratio = |a, b| {
                data.results
                    .ratio(a, b)
                    .map_or("—".to_string(), |r| ratio_text(&r))
            };
            let _ = writeln!(
                w,
                "| {live} | {batch} | {} | {} | {} | {} |",
                ns(&sys),
                ns(&tr),
                ratio(&tr, &sys),
                if live == 0 {
                    "—".to_string()
                } else {
                    ratio(&tr, &none)
                }
            );
        }
    }
    let _ = writeln!(w);
}

fn threads(w: &mut String, data: &Data) {
    let _ = writeln!(w, "## Pairs on many threads\n");
    let _ = writeln!(
        w,
        "`wl-* pairs --threads T`: every thread makes its first allocation, waits for the \
         others, then runs its 64 B alloc+free pairs through the global allocator ({} pairs \
         over all threads at the default rate or with System, {} in exact mode; at least {} / \
         {} per thread). **CPU ns per pair**: the threads' CPU time summed, over the pairs: \
         a tracker without a contended line keeps its 1-thread figure. **Wall ns per pair**: \
         wall time over all pairs (throughput: with 2 cores, at best half the CPU figure). \
         Ratios are per round against System at the same thread count.\n",
        data.sizes.thread_pairs.0,
        data.sizes.exact_thread_pairs.0,
        data.sizes.thread_pairs.1,
        data.sizes.exact_thread_pairs.1
    );
    for build in data.bins.builds() {
        let _ = writeln!(w, "### Built with {}\n", build.label());
        let _ = write!(w, "| measure | variant |");
        for t in MANY_THREADS {
            let _ = write!(w, " {t} |");
        }
        let _ = writeln!(w, "\n|---|---|{}", "---|".repeat(MANY_THREADS.len()));
        for (measure, suffix) in [("CPU ns per pair", "cpu"), ("wall ns per pair", "wall")] {
            for name in ["system", "tracker", "exact"] {
                let _ = write!(w, "| {measure} | `{name}` |");
                for t in MANY_THREADS {
                    let case = format!("{}/{suffix}", threads_case(t));
                    let this = key(build, name, &case);
                    let sys = key(build, "system", &case);
                    let cell = match (data.results.summary(&this), data.results.ratio(&this, &sys))
                    {
                        (Some(s), Some(r)) if name != "system" => {
                            format!("{:.1} ({:.2}×)", s.median, r.median)
                        }
                        (Some(s), _) => format!("{:.1}", s.median),
                        _ => "—".to_string(),
                    };
                    let _ = write!(w, " {cell} |");
                }
                let _ = writeln!(w);
            }
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(
        w,
        "Scaling normalised by System: (variant / System at T threads) / (variant / System \
         at 1 thread), per round, CPU time; 1.00× = the variant scales as well as System does.\n"
    );
    let _ = write!(w, "| build | variant |");
    for t in &MANY_THREADS[1..] {
        let _ = write!(w, " {t} |");
    }
    let _ = writeln!(w, "\n|---|---|{}", "---|".repeat(MANY_THREADS.len() - 1));
    for build in data.bins.builds() {
        for name in ["tracker", "exact"] {
            let _ = write!(w, "| {} | `{name}` |", build.label());
            for t in &MANY_THREADS[1..] {
                let at =
                    |v: &'static str, t: usize| key(build, v, &format!("{}/cpu", threads_case(t)));
                let cell = data
                    .results
                    .ratio_of_ratios(
                        &at(name, *t),
                        &at("system", *t),
                        &at(name, 1),
                        &at("system", 1),
                    )
                    .map_or("—".to_string(), |r| ratio_text(&r));
                let _ = write!(w, " {cell} |");
            }
            let _ = writeln!(w);
        }
    }
    let _ = writeln!(w);
}

fn sampled_event(w: &mut String, data: &Data) {
    let _ = writeln!(w, "## One sampled event (`unwind-timing`)\n");
    let _ = writeln!(
        w,
        "`unwind-timing --rounds 3 --iterations {}` once per round in each build, on the \
         thread's CPU clock. `capture/*`: one capture of 20 frames from ~25 deep, alone. \
         `event/*`: a 64 B pair in exact mode at ~20 frames minus the same pair with sampling \
         off: capture, intern, record, remove. Median of the rounds (range). The frame-pointer \
         unwinder is measured only in the frame-pointer build.\n",
        data.sizes.unwind_iterations
    );
    let _ = writeln!(w, "| build | measure | ns |\n|---|---|---|");
    for build in data.bins.builds() {
        for name in [
            "capture/table",
            "capture/dwarf",
            "pair/off",
            "event/fp",
            "event/table",
            "event/dwarf",
        ] {
            if let Some(s) = data.results.summary(&key(build, "unwind", name)) {
                let _ = writeln!(
                    w,
                    "| {} | `{name}` | {:.1} ({:.1}–{:.1}) |",
                    build.label(),
                    s.median,
                    s.min,
                    s.max
                );
            }
        }
    }
    let _ = writeln!(w);
}

fn memory(w: &mut String, data: &Data) {
    let m = data.memory;
    let _ = writeln!(w, "## The tracker's own memory\n");
    let _ = writeln!(
        w,
        "`wl-tracker hold --mib {}`: about {} MiB live in blocks of mixed sizes (half the \
         bytes in 16–256 B blocks, half in 256 B–64 KiB), then `alloc_tracker::report()` \
         (which symbolizes the sampled stacks). `tracker` is the report's `tracker.bytes` (the \
         tracker's own heap: sample and stack tables, symbols); `symbols` is its \
         `symbol_bytes` part (the names of the frames seen so far; the debug info loaded to \
         find them is freed once the report is built). Budget: 1 % of live + 4 MiB. RSS is the \
         process's once the heap is built (before the report); the same workload under System \
         has RSS {}. Default build.\n",
        m.mib,
        m.mib,
        mib(m.system_rss)
    );
    let _ = writeln!(
        w,
        "| rate | live heap | tracker | of which symbols | tracker without symbols | % of live (without / with symbols) | budget | stacks | RSS (vs System) |\n|---|---|---|---|---|---|---|---|---|"
    );
    for row in &m.rows {
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
            mib(row.rss.saturating_sub(m.system_rss)),
        );
    }
    let _ = writeln!(w);
}

fn instructions(w: &mut String, counts: &Instructions) {
    let _ = writeln!(
        w,
        "## Instruction counts (callgrind: repeatable on a shared machine)\n"
    );
    let _ = writeln!(
        w,
        "Instructions are not time (cache misses and stalls are not in them), but they do not \
         move with the machine's load. Each figure is (count at 2N − count at N) / N, so \
         start-up and exit cancel out. Default build (the `exact-fp` row: frame-pointer build).\n"
    );
    let _ = writeln!(w, "### Per 64 B alloc+free pair (`fastpath` binary)\n");
    let system = counts.pair("system").unwrap_or(0.0);
    let _ = writeln!(
        w,
        "| config | instructions per pair | added over System |\n|---|---|---|"
    );
    for (config, _, per_pair) in &counts.pairs {
        let _ = writeln!(
            w,
            "| {config} | {per_pair:.1} | {:+.1} |",
            per_pair - system
        );
    }
    let _ = writeln!(
        w,
        "\n### `service` workload, 1 thread (`wl-* service --scale {}` and `{}`)\n",
        callgrind::UNIT,
        2.0 * callgrind::UNIT
    );
    let pairs = counts.service("tracker").and_then(|c| c.pairs);
    let _ = writeln!(
        w,
        "One unit = {} requests{}. Pairs are the allocations the tracker counted exactly \
         (a `realloc` counts as a free and an allocation).\n",
        callgrind::unit_requests(),
        pairs.map_or(String::new(), |p| format!(
            " = {p:.0} alloc+free pairs ({:.1} per request)",
            p / callgrind::unit_requests() as f64
        ))
    );
    let _ = writeln!(
        w,
        "| variant | instructions per unit | vs baseline | added per pair |\n|---|---|---|---|"
    );
    for c in &counts.service {
        let base = variant(c.variant).baseline.and_then(|b| counts.service(b));
        let (ratio, added) = match (base, pairs) {
            (Some(b), Some(p)) => (
                format!("{:.4}× {}", c.per_unit / b.per_unit, b.variant),
                format!("{:+.1}", (c.per_unit - b.per_unit) / p),
            ),
            (Some(b), None) => (
                format!("{:.4}× {}", c.per_unit / b.per_unit, b.variant),
                "—".to_string(),
            ),
            _ => ("—".to_string(), "—".to_string()),
        };
        let _ = writeln!(
            w,
            "| `{}` | {:.1} M | {ratio} | {added} |",
            c.variant,
            c.per_unit / 1e6
        );
    }
    if !counts.entry_points.is_empty() {
        let _ = writeln!(
            w,
            "\n### Where the instructions go\n\nInclusive instructions per call of the \
             allocator's entry points (the tracker's hooks are inlined in them, the inner \
             allocator's call included), from callgrind's profile of the same runs (two units \
             minus one).\n"
        );
        let _ = write!(w, "| entry point | calls per unit |");
        for (name, _) in &counts.entry_points {
            let _ = write!(w, " `{name}` |");
        }
        let _ = writeln!(
            w,
            " tracker − System |\n|---|---|{}---|",
            "---|".repeat(counts.entry_points.len())
        );
        for entry in callgrind::ENTRY_POINTS {
            let per_call = |name: &str| {
                counts
                    .entry_points(name)
                    .and_then(|e| e.get(entry))
                    .filter(|c| c.calls >= 1.0)
                    .map(|c| c.inclusive / c.calls)
            };
            let calls = counts
                .entry_points("system")
                .and_then(|e| e.get(entry))
                .map_or(0.0, |c| c.calls);
            if calls < 1.0 {
                continue;
            }
            let _ = write!(w, "| `{entry}` | {calls:.0} |");
            for (name, _) in &counts.entry_points {
                let _ = write!(
                    w,
                    " {} |",
                    per_call(name).map_or("—".to_string(), |x| format!("{x:.1}"))
                );
            }
            let added = match (per_call("tracker"), per_call("system")) {
                (Some(t), Some(s)) => format!("{:+.1}", t - s),
                _ => "—".to_string(),
            };
            let _ = writeln!(w, " {added} |");
        }
        if !counts.lines.is_empty() {
            let totals: Vec<String> = counts
                .path_totals
                .iter()
                .map(|(name, per_pair)| format!("`{name}` {per_pair:.1}"))
                .collect();
            let _ = writeln!(
                w,
                "\nThe instructions of the entry points themselves and of the tracker's \
                 functions, `malloc`/`free`/`realloc` excluded, per alloc+free pair of \
                 `service`: {}. The `tracker` run's, by the source line they come from (code \
                 inlined from the standard library included; its source is not on this machine), \
                 the {} lines that cost most:\n",
                totals.join(", "),
                counts.lines.len().min(16)
            );
            let _ = writeln!(
                w,
                "| line | instructions per pair | source |\n|---|---|---|"
            );
            for line in counts.lines.iter().take(16) {
                let _ = writeln!(
                    w,
                    "| `{}` | {:.2} | {} |",
                    line.place(),
                    line.per_pair,
                    line.text()
                        .map_or(String::new(), |t| format!("`{}`", t.replace('|', "\\|")))
                );
            }
        }
    }
    let _ = writeln!(w);
}

fn micro(w: &mut String, data: &Data) {
    let criterion = data.criterion;
    let _ = writeln!(
        w,
        "## Micro-benchmarks (criterion, `benches/benches/micro.rs`)\n"
    );
    if criterion.is_empty() {
        let _ = writeln!(w, "Not run (`run.sh` runs them before this report).\n");
        return;
    }
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
        "Median ns per operation (criterion's median estimate), and the ratio to System. \
         Each configuration is a `static Tracker` called through `GlobalAlloc` directly. \
         `off` = sampling off (counters, countdown, free filter: the fast path alone); \
         `512k`/`64k` = rate, `auto` unwinding (the unwind tables: default build); \
         `4k-*`/`exact-*` = rate 4 KiB / every allocation with frame-pointer, unwind-table or \
         DWARF unwinding. Default build, except the `fp` configurations: frame-pointer build. \
         These are wall times, taken before the rounds{}: on this shared machine they move \
         with its load more than the CPU times of the sections above (e.g. one sampled event: \
         compare `unwind-timing`).\n",
        data.options
            .criterion_load
            .as_ref()
            .map_or(String::new(), |load| format!(
                " (load average {load} when they started)"
            ))
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
        "\n### One sampled event (64 B pair in exact mode at a stack depth; wall time)\n"
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
        "\n### Threads (64 B pairs on every thread at once; wall ns per pair on each thread)\n"
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
