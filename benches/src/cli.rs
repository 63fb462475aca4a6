//! The command line shared by the `wl-*` binaries: run one workload, print one JSON line.
//!
//! ```text
//! wl-system service [--threads N] [--scale F]   # {"workload":"service","threads":N,"iters":…,"secs":…}
//! wl-system hashmap [--threads N] [--scale F]
//! wl-system pairs [--threads N] [--pairs P] [--batch B] [--live L]
//! wl-tracker hold [--mib N]                     # live heap, RSS and (tracker binaries) tracker memory
//! ```
//!
//! `--scale` multiplies the iteration count of scale 1 ([`crate::workload::SERVICE_ITERS`],
//! [`crate::workload::HASHMAP_ITERS`]); each of `--threads` threads does the full count,
//! so the work grows with the threads and a perfectly scaling allocator keeps the same wall
//! time. `secs` is the wall time of the workload alone, measured in-process: starting the
//! process and writing any exit report are not included; `cpu_secs` is the CPU time of the
//! workload's threads, summed (each read on its own thread clock: time the thread waited for
//! a core on a loaded machine is not in it).
//!
//! `pairs` ([`crate::pairs`]): `P` 64 B alloc+free pairs on each thread, in batches of `B`,
//! after `L` live 64 B blocks were allocated and kept. Under a tracker those `L` blocks are
//! allocated in exact mode (so `L` samples stay live) and the pairs then run at the default
//! rate ([`alloc_tracker::DEFAULT_SAMPLE_RATE`]); with `L` = 0 the rate is the configured one.
//!
//! Every line also says how the binary was built (`frame_pointers`) and, after the timed
//! part, what the allocator was doing: for a tracker, the rate and unwinder in force and the
//! bytes its samples account for against the exact total (`--no-report` leaves out the
//! report that tells these, for instruction counts); for jemalloc, its profiling settings
//! ([`main_with`]).

use crate::{pairs, workload};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What a `wl-*` binary needs to tell the shared code about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocator {
    /// `std::alloc::System`.
    System,
    /// `alloc_tracker::Tracker` around `System` (rate from `ALLOC_TRACKER_RATE`).
    Tracker,
    /// `dhat::Alloc`, with a `dhat::Profiler` running.
    Dhat,
    /// `tikv_jemallocator::Jemalloc`.
    Jemalloc,
    /// `tikv_jemallocator::Jemalloc` built with its profiler (`_RJEM_MALLOC_CONF` turns it on).
    JemallocProf,
    /// `alloc_tracker::Tracker` around `tikv_jemallocator::Jemalloc`.
    TrackerJemalloc,
}

impl Allocator {
    /// Whether the global allocator is an `alloc_tracker::Tracker`.
    pub fn is_tracker(self) -> bool {
        matches!(self, Allocator::Tracker | Allocator::TrackerJemalloc)
    }
}

/// Parsed command-line arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    /// `service`, `hashmap`, `pairs` or `hold`.
    pub workload: String,
    /// Threads running the workload at once.
    pub threads: usize,
    /// Multiplier of the scale-1 iteration count.
    pub scale: f64,
    /// Live heap for `hold`, in MiB.
    pub mib: u64,
    /// Pairs per thread (`pairs`).
    pub pairs: u64,
    /// Allocations before their frees (`pairs`).
    pub batch: usize,
    /// Live blocks held during the pairs (`pairs`): live samples under a tracker.
    pub live: usize,
    /// Leave out the report that tells the tracker's rate, unwinder and samples.
    pub no_report: bool,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        workload: String::new(),
        threads: 1,
        scale: 1.0,
        mib: 200,
        pairs: 1_000_000,
        batch: 1,
        live: 0,
        no_report: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        fn number<T: std::str::FromStr>(name: &str, text: String) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            text.parse().map_err(|e| format!("{name}: {e}"))
        }
        match arg.as_str() {
            "--threads" => parsed.threads = number("--threads", value("--threads")?)?,
            "--scale" => parsed.scale = number("--scale", value("--scale")?)?,
            "--mib" => parsed.mib = number("--mib", value("--mib")?)?,
            "--pairs" => parsed.pairs = number("--pairs", value("--pairs")?)?,
            "--batch" => parsed.batch = number("--batch", value("--batch")?)?,
            "--live" => parsed.live = number("--live", value("--live")?)?,
            "--no-report" => parsed.no_report = true,
            "service" | "hashmap" | "pairs" | "hold" if parsed.workload.is_empty() => {
                parsed.workload = arg.clone();
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if parsed.workload.is_empty() {
        return Err("which workload? service, hashmap, pairs or hold".to_string());
    }
    if parsed.threads == 0 || parsed.scale.is_nan() || parsed.scale <= 0.0 {
        return Err("--threads and --scale must be positive".to_string());
    }
    if parsed.pairs == 0 || parsed.batch == 0 {
        return Err("--pairs and --batch must be positive".to_string());
    }
    Ok(parsed)
}

/// Reads what the allocator says about itself (jemalloc's profiling settings: see
/// [`crate::jemalloc::prof_settings`]). Passed in by the binaries that have it, so that the
/// others do not link jemalloc (whose constructor would initialise it in every process).
pub type Settings = fn() -> serde_json::Value;

/// The `main` of every `wl-*` binary.
pub fn main(allocator: Allocator) -> ExitCode {
    main_with(allocator, None)
}

/// [`main`], adding `settings()` to every result line as `"jemalloc"`.
pub fn main_with(allocator: Allocator, settings: Option<Settings>) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(args) => {
            let mut out = run(allocator, &args);
            if let Some(settings) = settings {
                out["jemalloc"] = settings();
            }
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("error: {why}");
            eprintln!(
                "usage: wl-* service|hashmap [--threads N] [--scale F] \
                 | pairs [--threads N] [--pairs P] [--batch B] [--live L] | hold [--mib N] \
                 [--no-report]"
            );
            ExitCode::from(2)
        }
    }
}

/// Runs the workload and returns its result as one line of JSON.
pub fn run(allocator: Allocator, args: &Args) -> serde_json::Value {
    let mut out = match args.workload.as_str() {
        "hold" => run_hold(allocator, args.mib),
        "pairs" => run_pairs(allocator, args),
        _ => run_workload(args),
    };
    out["frame_pointers"] = cfg!(frame_pointers).into();
    if allocator.is_tracker() && matches!(args.workload.as_str(), "service" | "hashmap") {
        out["tracker"] = tracker_facts(!args.no_report);
    }
    out
}

fn run_workload(args: &Args) -> serde_json::Value {
    let base = match args.workload.as_str() {
        "service" => workload::SERVICE_ITERS,
        _ => workload::HASHMAP_ITERS,
    };
    let iters = ((base as f64 * args.scale).round() as u64).max(1);
    let work = if args.workload == "service" {
        workload::service
    } else {
        workload::hashmap
    };
    let start = Instant::now();
    let (checksum, cpu) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|t| {
                scope.spawn(move || {
                    let begin = pairs::cpu_time();
                    let checksum = work(iters, t as u64 + 1);
                    (checksum, pairs::cpu_time() - begin)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("workload thread panicked"))
            .fold((0u64, Duration::ZERO), |(sum, cpu), (checksum, took)| {
                (sum.wrapping_add(checksum), cpu + took)
            })
    });
    let secs = start.elapsed().as_secs_f64();
    serde_json::json!({
        "workload": args.workload,
        "threads": args.threads,
        "iters": iters,
        "secs": secs,
        "cpu_secs": cpu.as_secs_f64(),
        "checksum": checksum,
    })
}

fn run_pairs(allocator: Allocator, args: &Args) -> serde_json::Value {
    let setup = Instant::now();
    let held = if allocator.is_tracker() && args.live > 0 {
        // Every held block a sample, then the pairs at the default rate.
        alloc_tracker::set_sample_rate(1);
        let held = pairs::hold(args.live);
        alloc_tracker::set_sample_rate(alloc_tracker::DEFAULT_SAMPLE_RATE);
        held
    } else {
        pairs::hold(args.live)
    };
    let setup_secs = setup.elapsed().as_secs_f64();
    let timing = pairs::run(args.threads, args.pairs, args.batch);
    let mut out = serde_json::json!({
        "workload": "pairs",
        "threads": args.threads,
        "pairs": args.pairs,
        "batch": args.batch,
        "live": held.len(),
        "setup_secs": setup_secs,
        "secs": timing.wall_secs,
        "cpu_ns_per_pair": timing.cpu_ns_per_pair,
        "wall_ns_per_pair": timing.wall_ns_per_pair,
    });
    if allocator.is_tracker() {
        // While the held blocks are live: their samples are counted.
        out["tracker"] = tracker_facts(!args.no_report);
    }
    drop(held);
    out
}

/// What the tracker was doing: the exact totals, and (with `report`) the rate and unwinder
/// in force, the live samples, and the bytes allocated as the samples estimate them (their
/// ratio to the exact total is near 1 when sampling works at the rate said).
fn tracker_facts(report: bool) -> serde_json::Value {
    let stats = alloc_tracker::stats();
    let mut facts = serde_json::json!({
        "allocs": stats.allocs,
        "frees": stats.frees,
        "alloc_bytes": stats.alloc_bytes,
    });
    if report {
        let report = alloc_tracker::report_with(alloc_tracker::Naming::SymbolTables);
        let mut sampled = alloc_tracker::Figures::default();
        for site in &report.sites {
            sampled.add(&site.figures);
        }
        facts["sample_rate"] = report.sample_rate.into();
        facts["unwinder"] = report.tracker.unwinder.clone().into();
        facts["stacks"] = report.tracker.stacks.into();
        facts["dwarf_fallbacks"] = report.tracker.dwarf_fallbacks.into();
        facts["dropped_samples"] = report.tracker.dropped_samples.into();
        facts["live_samples"] = sampled.live_samples.into();
        facts["estimated_alloc_bytes"] = sampled.alloc_bytes.into();
    }
    facts
}

fn run_hold(allocator: Allocator, mib: u64) -> serde_json::Value {
    let rss_before = rss_bytes();
    let held = workload::hold(mib << 20, 1);
    let held_bytes: u64 = held.iter().map(|b| b.len() as u64).sum();
    let rss_after = rss_bytes();
    let mut out = serde_json::json!({
        "workload": "hold",
        "blocks": held.len(),
        "held_bytes": held_bytes,
        "rss_before": rss_before,
        "rss_after": rss_after,
    });
    if allocator.is_tracker() {
        let report = alloc_tracker::report();
        out["sample_rate"] = report.sample_rate.into();
        out["live_bytes"] = report.totals.live_bytes.into();
        out["tracker_bytes"] = report.tracker.bytes.into();
        out["symbol_bytes"] = report.tracker.symbol_bytes.into();
        out["stacks"] = report.tracker.stacks.into();
        out["rss_after_report"] = rss_bytes().into();
    }
    drop(held);
    out
}

/// This process's resident set size in bytes (`VmRSS` of `/proc/self/status`; 0 where
/// there is none).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_arguments() {
        let args = parse(&strings(&["hashmap", "--threads", "2", "--scale", "0.5"])).unwrap();
        assert_eq!(
            (args.workload.as_str(), args.threads, args.scale),
            ("hashmap", 2, 0.5)
        );
        assert!(parse(&strings(&[])).is_err());
        assert!(parse(&strings(&["service", "--threads", "0"])).is_err());
        assert!(parse(&strings(&["service", "--bogus"])).is_err());
        let args = parse(&strings(&[
            "pairs",
            "--live",
            "10",
            "--batch",
            "4",
            "--no-report",
        ]));
        let args = args.unwrap();
        assert_eq!((args.live, args.batch, args.no_report), (10, 4, true));
        assert!(parse(&strings(&["pairs", "--batch", "0"])).is_err());
    }

    #[test]
    fn runs_a_tiny_workload() {
        let args = parse(&strings(&["service", "--scale", "0.0001"])).unwrap();
        let out = run(Allocator::System, &args);
        let expected = (workload::SERVICE_ITERS as f64 * 0.0001).round() as u64;
        assert_eq!(out["iters"], expected.max(1));
        assert!(out["secs"].as_f64().unwrap() >= 0.0);
        assert!(rss_bytes() > 0);
    }
}
