//! The command line shared by the `wl-*` binaries: run one workload, print one JSON line.
//!
//! ```text
//! wl-system service [--threads N] [--scale F]   # {"workload":"service","threads":N,"iters":…,"secs":…}
//! wl-system hashmap [--threads N] [--scale F]
//! wl-tracker hold [--mib N]                     # live heap, RSS and (tracker binaries) tracker memory
//! ```
//!
//! `--scale` multiplies the iteration count of scale 1 ([`crate::workload::SERVICE_ITERS`],
//! [`crate::workload::HASHMAP_ITERS`]); each of `--threads` threads does the full count,
//! so the work grows with the threads and a perfectly scaling allocator keeps the same wall
//! time. `secs` is the wall time of the workload alone, measured in-process: starting the
//! process and writing any exit report are not included.

use crate::workload;
use std::process::ExitCode;
use std::time::Instant;

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
    /// `service`, `hashmap` or `hold`.
    pub workload: String,
    /// Threads running the workload at once.
    pub threads: usize,
    /// Multiplier of the scale-1 iteration count.
    pub scale: f64,
    /// Live heap for `hold`, in MiB.
    pub mib: u64,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        workload: String::new(),
        threads: 1,
        scale: 1.0,
        mib: 200,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        match arg.as_str() {
            "--threads" => {
                parsed.threads = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?;
            }
            "--scale" => {
                parsed.scale = value("--scale")?
                    .parse()
                    .map_err(|e| format!("--scale: {e}"))?;
            }
            "--mib" => {
                parsed.mib = value("--mib")?.parse().map_err(|e| format!("--mib: {e}"))?;
            }
            "service" | "hashmap" | "hold" if parsed.workload.is_empty() => {
                parsed.workload = arg.clone();
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if parsed.workload.is_empty() {
        return Err("which workload? service, hashmap or hold".to_string());
    }
    if parsed.threads == 0 || parsed.scale.is_nan() || parsed.scale <= 0.0 {
        return Err("--threads and --scale must be positive".to_string());
    }
    Ok(parsed)
}

/// The `main` of every `wl-*` binary.
pub fn main(allocator: Allocator) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(args) => {
            println!("{}", run(allocator, &args));
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("error: {why}");
            eprintln!("usage: wl-* service|hashmap [--threads N] [--scale F] | hold [--mib N]");
            ExitCode::from(2)
        }
    }
}

/// Runs the workload and returns its result as one line of JSON.
pub fn run(allocator: Allocator, args: &Args) -> serde_json::Value {
    if args.workload == "hold" {
        return run_hold(allocator, args.mib);
    }
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
    let checksum = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|t| scope.spawn(move || work(iters, t as u64 + 1)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("workload thread panicked"))
            .fold(0u64, u64::wrapping_add)
    });
    let secs = start.elapsed().as_secs_f64();
    serde_json::json!({
        "workload": args.workload,
        "threads": args.threads,
        "iters": iters,
        "secs": secs,
        "checksum": checksum,
    })
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
