//! Runs every measurement of `benches/run.sh` and writes `RESULTS.md`: the whole-program
//! workloads under each allocator, the free path with many live samples, pairs on 1 to
//! 1,000 threads, the cost of one sampled event (each in rounds, interleaved, in both
//! builds: without frame pointers, as Cargo builds by default, and with them); the tracker's
//! own memory; instruction counts under callgrind (when valgrind is installed); and
//! criterion's estimates. The goals table comes first.
//!
//! ```text
//! bench-runner [--quick] [--rounds N] [--out PATH] [--fp-bins DIR]
//!              [--criterion DIR] [--fp-criterion DIR] [--criterion-since SECS]
//!              [--criterion-load TEXT] [--no-callgrind] [--command TEXT]
//! ```
//!
//! The binaries of the default build are found next to this one; `--fp-bins` names the
//! frame-pointer build's (without it, that build is left out). Every binary says whether it
//! has frame pointers, and a run whose answer does not match its directory is an error.

mod callgrind;
mod child;
mod criterion;
mod goals;
mod memory;
mod plan;
mod write;

use plan::{Bins, Sizes};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The command line.
pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub out: PathBuf,
    pub fp_bins: Option<PathBuf>,
    pub criterion: Option<PathBuf>,
    pub fp_criterion: Option<PathBuf>,
    pub criterion_since: u64,
    /// The load average when criterion started (`run.sh` tells).
    pub criterion_load: Option<String>,
    pub callgrind: bool,
    pub command: String,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        rounds: 0,
        out: PathBuf::from("benches/RESULTS.md"),
        fp_bins: None,
        criterion: None,
        fp_criterion: None,
        criterion_since: 0,
        criterion_load: None,
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
            "--fp-bins" => options.fp_bins = Some(PathBuf::from(value()?)),
            "--criterion" => options.criterion = Some(PathBuf::from(value()?)),
            "--fp-criterion" => options.fp_criterion = Some(PathBuf::from(value()?)),
            "--criterion-since" => {
                options.criterion_since = value()?
                    .parse()
                    .map_err(|e| format!("--criterion-since: {e}"))?
            }
            "--criterion-load" => options.criterion_load = Some(value()?),
            "--command" => options.command = value()?,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.rounds == 0 {
        options.rounds = if options.quick { 3 } else { 12 };
    }
    Ok(options)
}

/// How much each round does.
fn sizes(options: &Options) -> Sizes {
    if options.quick {
        Sizes {
            rounds: options.rounds,
            scale: 0.25,
            sweep_pairs: 1_000_000,
            thread_pairs: (1_000_000, 5_000),
            exact_thread_pairs: (50_000, 250),
            unwind_iterations: 40_000,
        }
    } else {
        Sizes {
            rounds: options.rounds,
            scale: 1.0,
            sweep_pairs: 4_000_000,
            thread_pairs: (4_000_000, 20_000),
            exact_thread_pairs: (200_000, 1_000),
            unwind_iterations: 100_000,
        }
    }
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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn run(options: &Options) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bins = Bins {
        no_fp: exe.parent().map(PathBuf::from).unwrap_or_default(),
        fp: options.fp_bins.clone(),
    };
    let sizes = sizes(options);
    let started = Instant::now();
    let load_before = loadavg();

    let results = plan::run_rounds(&bins, &sizes)?;
    let memory = memory::run(&bins.no_fp, if options.quick { 64 } else { 200 })?;
    let has_valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    let instructions = if options.callgrind && has_valgrind {
        match callgrind::run(&bins, options.quick) {
            Ok(counts) => Some(counts),
            Err(why) => {
                eprintln!("callgrind skipped: {why}");
                None
            }
        }
    } else {
        None
    };
    let estimates = criterion::read(
        options.criterion.as_deref(),
        options.fp_criterion.as_deref(),
        options.criterion_since,
    );
    let data = write::Data {
        options,
        sizes: &sizes,
        bins: &bins,
        results: &results,
        memory: &memory,
        instructions: instructions.as_ref(),
        criterion: &estimates,
        load: (load_before, loadavg()),
        seconds: started.elapsed().as_secs_f64(),
    };
    let md = write::results_md(&data);
    std::fs::write(&options.out, md).map_err(|e| format!("{}: {e}", options.out.display()))?;
    eprintln!("wrote {}", options.out.display());
    Ok(())
}
