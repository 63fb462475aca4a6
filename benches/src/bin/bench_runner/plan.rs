//! What is measured, in which build, and the rounds that measure it: every workload variant,
//! the free-path sweep over live samples, the pairs on 1 to 1,000 threads, and the sampled
//! event, each once per round, interleaved, so that a ratio compares runs of one round.

use crate::child::run_json;
use alloc_tracker_benches::stats::Summary;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the bench binaries were built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Build {
    /// Cargo's default release build: no frame pointers. What a user who changes nothing gets.
    NoFp,
    /// Built with `-C force-frame-pointers=yes` (in its own target directory).
    Fp,
}

impl Build {
    /// Both builds, the default one first.
    pub const ALL: [Build; 2] = [Build::NoFp, Build::Fp];

    /// Its name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Build::NoFp => "no frame pointers",
            Build::Fp => "frame pointers",
        }
    }
}

/// Where each build's binaries are.
pub struct Bins {
    /// The default build's (this runner's own directory unless told otherwise).
    pub no_fp: PathBuf,
    /// The frame-pointer build's, if there is one.
    pub fp: Option<PathBuf>,
}

impl Bins {
    /// The directory of `build`'s binaries, if it was built.
    pub fn dir(&self, build: Build) -> Option<&Path> {
        match build {
            Build::NoFp => Some(&self.no_fp),
            Build::Fp => self.fp.as_deref(),
        }
    }

    /// The builds there are binaries of.
    pub fn builds(&self) -> Vec<Build> {
        Build::ALL
            .into_iter()
            .filter(|b| self.dir(*b).is_some())
            .collect()
    }
}

/// One way of running a workload: a binary, its environment, its scale, its baseline.
pub struct Variant {
    pub name: &'static str,
    pub binary: &'static str,
    pub env: Env,
    /// `true`: runs at [`small_scale`] (the slow variants and their baseline).
    pub small: bool,
    /// The variant this one is compared with (`None`: a baseline).
    pub baseline: Option<&'static str>,
    pub what: &'static str,
    /// Measured in the default build only (frame pointers change nothing it does).
    pub no_fp_only: bool,
}

/// jemalloc's profiler on, sampling once per 512 KiB on average (2^19), like the tracker.
pub const JEMALLOC_PROF_CONF: &str = "prof:true,prof_active:true,lg_prof_sample:19";

/// The whole-program variants.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "system",
        binary: "wl-system",
        env: &[],
        small: false,
        baseline: None,
        what: "`std::alloc::System` (glibc malloc)",
        no_fp_only: false,
    },
    Variant {
        name: "tracker",
        binary: "wl-tracker",
        env: &[],
        small: false,
        baseline: Some("system"),
        what: "tracker around System, default rate (512 KiB), `auto` unwinding (unwind tables without frame pointers, frame pointers with)",
        no_fp_only: false,
    },
    Variant {
        name: "tracker-off",
        binary: "wl-tracker",
        env: &[("ALLOC_TRACKER_RATE", "0")],
        small: false,
        baseline: Some("system"),
        what: "tracker around System, sampling off (rate 0): exact counts and the fast path alone",
        no_fp_only: false,
    },
    Variant {
        name: "jemalloc",
        binary: "wl-jemalloc",
        env: &[],
        small: false,
        baseline: Some("system"),
        what: "`tikv_jemallocator::Jemalloc` (stock build, no profiler)",
        no_fp_only: false,
    },
    Variant {
        name: "tracker-jemalloc",
        binary: "wl-tracker-jemalloc",
        env: &[],
        small: false,
        baseline: Some("jemalloc"),
        what: "tracker around the stock jemalloc, default rate",
        no_fp_only: false,
    },
    Variant {
        name: "jemalloc-prof",
        binary: "wl-jemalloc-prof",
        env: &[("_RJEM_MALLOC_CONF", JEMALLOC_PROF_CONF)],
        small: false,
        baseline: Some("jemalloc"),
        what: "jemalloc built with its profiler (`--enable-prof`), run with `_RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19` (one sample per 512 KiB)",
        no_fp_only: false,
    },
    Variant {
        name: "system-small",
        binary: "wl-system",
        env: &[],
        small: true,
        baseline: None,
        what: "System, at the small scale",
        no_fp_only: false,
    },
    Variant {
        name: "exact",
        binary: "wl-tracker",
        env: &[("ALLOC_TRACKER_RATE", "1")],
        small: true,
        baseline: Some("system-small"),
        what: "tracker around System, exact mode (rate 1: every allocation with its stack), `auto` unwinding",
        no_fp_only: false,
    },
    Variant {
        name: "dhat",
        binary: "wl-dhat",
        env: &[],
        small: true,
        baseline: Some("system-small"),
        what: "`dhat::Alloc` with `dhat::Profiler` running (every allocation with its stack)",
        no_fp_only: true,
    },
];

/// The variant called `name`.
pub fn variant(name: &str) -> &'static Variant {
    VARIANTS
        .iter()
        .find(|v| v.name == name)
        .expect("a known variant")
}

pub const WORKLOADS: [&str; 2] = ["service", "hashmap"];
pub const THREADS: [usize; 2] = [1, 2];

/// Iteration scale of the slow variants (exact mode, dhat-rs) and of their `System`
/// baseline: the same work at a fraction of the count, so that a round stays short.
pub fn small_scale(workload: &str) -> f64 {
    match workload {
        "service" => 1.0 / 32.0,
        _ => 1.0 / 8.0,
    }
}

/// Live samples of the free-path sweep.
pub const LIVE: [usize; 4] = [0, 10_000, 100_000, 1_000_000];
/// Batches of the sweep: the plain pair (one address), and 4096 allocations then their frees.
pub const BATCHES: [usize; 2] = [1, 4096];
/// Thread counts of the pairs on many threads.
pub const MANY_THREADS: [usize; 5] = [1, 2, 64, 300, 1000];
/// Environment variables a run sets.
pub type Env = &'static [(&'static str, &'static str)];

/// Variants of the pairs: (name, binary, environment).
pub const PAIR_VARIANTS: [(&str, &str, Env); 3] = [
    ("system", "wl-system", &[]),
    ("tracker", "wl-tracker", &[]),
    ("exact", "wl-tracker", &[("ALLOC_TRACKER_RATE", "1")]),
];

/// The case name of a workload's CPU time (its threads', summed): what the comparisons
/// read, since time spent waiting for a core on a loaded machine is not in it.
pub fn workload_case(workload: &str, threads: usize) -> String {
    format!("{workload}/{threads}")
}

/// The case name of a workload's wall time.
pub fn wall_case(workload: &str, threads: usize) -> String {
    format!("{workload}/{threads}/wall")
}

/// The case name of a sweep run.
pub fn sweep_case(live: usize, batch: usize) -> String {
    format!("live/{live}/batch/{batch}")
}

/// The case name of a many-threads run.
pub fn threads_case(threads: usize) -> String {
    format!("threads/{threads}")
}

/// Identifies a series of measurements: one value per round.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub build: Build,
    pub variant: &'static str,
    pub case: String,
}

/// Shorthand for a [`Key`].
pub fn key(build: Build, variant: &'static str, case: &str) -> Key {
    Key {
        build,
        variant,
        case: case.to_string(),
    }
}

/// Every measurement of the rounds, one value per round, and the last JSON line of each
/// series (what the binary said about itself).
#[derive(Default)]
pub struct Results {
    values: BTreeMap<Key, Vec<f64>>,
    facts: BTreeMap<Key, Value>,
}

impl Results {
    /// Adds this round's `value` of `key`.
    pub fn push(&mut self, key: Key, value: f64, facts: Value) {
        self.values.entry(key.clone()).or_default().push(value);
        self.facts.insert(key, facts);
    }

    /// The values of `key`, one per round.
    pub fn values(&self, key: &Key) -> Option<&[f64]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// Median and range of `key`'s values.
    pub fn summary(&self, key: &Key) -> Option<Summary> {
        Summary::of(self.values(key)?)
    }

    /// The last JSON line of `key`'s runs.
    pub fn facts(&self, key: &Key) -> Option<&Value> {
        self.facts.get(key)
    }

    /// `a / b` in each round, summarised.
    pub fn ratio(&self, a: &Key, b: &Key) -> Option<Summary> {
        let (a, b) = (self.values(a)?, self.values(b)?);
        let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        Summary::of(&ratios)
    }

    /// `(a / b) / (c / d)` in each round, summarised: a ratio normalised by another measured
    /// in the same round.
    pub fn ratio_of_ratios(&self, a: &Key, b: &Key, c: &Key, d: &Key) -> Option<Summary> {
        let (a, b, c, d) = (
            self.values(a)?,
            self.values(b)?,
            self.values(c)?,
            self.values(d)?,
        );
        let n = a.len().min(b.len()).min(c.len()).min(d.len());
        let ratios: Vec<f64> = (0..n).map(|i| (a[i] / b[i]) / (c[i] / d[i])).collect();
        Summary::of(&ratios)
    }

    /// The fastest `a` over the fastest `b`: on a shared machine interference only adds
    /// time, so the minimum is each side's least disturbed run.
    pub fn ratio_of_minimums(&self, a: &Key, b: &Key) -> Option<f64> {
        Some(self.summary(a)?.min / self.summary(b)?.min)
    }
}

/// Sizes of the rounds.
pub struct Sizes {
    pub rounds: usize,
    /// Scale of the workloads.
    pub scale: f64,
    /// Pairs per round of the sweep (per thread: it runs on one).
    pub sweep_pairs: u64,
    /// Pairs per round at the default rate or with System, over all threads, and the
    /// least per thread.
    pub thread_pairs: (u64, u64),
    /// The same in exact mode.
    pub exact_thread_pairs: (u64, u64),
    /// `unwind-timing --iterations`.
    pub unwind_iterations: u32,
}

/// One run: the binary of a build, its arguments and environment, and where its results go.
struct Job {
    build: Build,
    variant: &'static str,
    binary: &'static str,
    args: Vec<String>,
    env: Env,
    /// (case, field of the JSON line that is its measurement).
    outputs: Vec<(String, &'static str)>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Every run of one round, in groups whose members are compared with each other; the
/// order inside each group rotates with the round.
fn groups(bins: &Bins, sizes: &Sizes) -> Vec<Vec<Job>> {
    let builds = bins.builds();
    let mut groups = Vec::new();
    for workload in WORKLOADS {
        for threads in THREADS {
            let mut group = Vec::new();
            for &build in &builds {
                for v in VARIANTS
                    .iter()
                    .filter(|v| build == Build::NoFp || !v.no_fp_only)
                {
                    let scale = if v.small {
                        sizes.scale * small_scale(workload)
                    } else {
                        sizes.scale
                    };
                    group.push(Job {
                        build,
                        variant: v.name,
                        binary: v.binary,
                        args: strings(&[
                            workload,
                            "--threads",
                            &threads.to_string(),
                            "--scale",
                            &scale.to_string(),
                        ]),
                        env: v.env,
                        outputs: vec![
                            (workload_case(workload, threads), "cpu_secs"),
                            (wall_case(workload, threads), "secs"),
                        ],
                    });
                }
            }
            groups.push(group);
        }
    }
    // The sweep: the free filter does not depend on the unwinder, so the default build only.
    for batch in BATCHES {
        let mut group = Vec::new();
        for live in LIVE {
            for (variant, binary, _) in &PAIR_VARIANTS[..2] {
                group.push(Job {
                    build: Build::NoFp,
                    variant,
                    binary,
                    args: strings(&[
                        "pairs",
                        "--pairs",
                        &sizes.sweep_pairs.to_string(),
                        "--batch",
                        &batch.to_string(),
                        "--live",
                        &live.to_string(),
                    ]),
                    env: &[],
                    outputs: vec![(sweep_case(live, batch), "cpu_ns_per_pair")],
                });
            }
        }
        groups.push(group);
    }
    for threads in MANY_THREADS {
        let mut group = Vec::new();
        for &build in &builds {
            for (variant, binary, env) in PAIR_VARIANTS {
                let (total, least) = if variant == "exact" {
                    sizes.exact_thread_pairs
                } else {
                    sizes.thread_pairs
                };
                let per_thread = (total / threads as u64).max(least);
                let case = threads_case(threads);
                group.push(Job {
                    build,
                    variant,
                    binary,
                    args: strings(&[
                        "pairs",
                        "--threads",
                        &threads.to_string(),
                        "--pairs",
                        &per_thread.to_string(),
                    ]),
                    env,
                    outputs: vec![
                        (format!("{case}/cpu"), "cpu_ns_per_pair"),
                        (format!("{case}/wall"), "wall_ns_per_pair"),
                    ],
                });
            }
        }
        groups.push(group);
    }
    groups
}

/// Checks that a binary was built as its directory says.
fn check_build(out: &Value, build: Build, binary: &str) -> Result<(), String> {
    let has = out["frame_pointers"].as_bool();
    if has != Some(build == Build::Fp) {
        return Err(format!(
            "{binary} of the {} build says frame_pointers = {has:?}",
            build.label()
        ));
    }
    Ok(())
}

/// Runs every group of [`groups`] once per round, and `unwind-timing` once per round per
/// build, and returns what they measured.
pub fn run_rounds(bins: &Bins, sizes: &Sizes) -> Result<Results, String> {
    let mut results = Results::default();
    let groups = groups(bins, sizes);
    for round in 0..sizes.rounds {
        let started = Instant::now();
        for group in &groups {
            let n = group.len();
            for k in 0..n {
                let job = &group[(k + round) % n];
                let dir = bins.dir(job.build).expect("a build that exists");
                let out = run_json(&dir.join(job.binary), &job.args, job.env)?;
                check_build(&out, job.build, job.binary)?;
                for (case, field) in &job.outputs {
                    let value = out[*field].as_f64().ok_or_else(|| {
                        format!("{} {:?}: no {field} in {out}", job.binary, job.args)
                    })?;
                    results.push(key(job.build, job.variant, case), value, out.clone());
                }
            }
        }
        for build in bins.builds() {
            let dir = bins.dir(build).expect("a build that exists");
            let args = strings(&[
                "--json",
                "--rounds",
                "3",
                "--iterations",
                &sizes.unwind_iterations.to_string(),
            ]);
            let out = run_json(&dir.join("unwind-timing"), &args, &[])?;
            check_build(&out, build, "unwind-timing")?;
            if let Some(fields) = out.as_object() {
                for (name, value) in fields {
                    if let (Some(value), true) = (value.as_f64(), name.contains('/')) {
                        results.push(key(build, "unwind", name), value, out.clone());
                    }
                }
            }
        }
        eprintln!(
            "round {}/{}: {:.1} s",
            round + 1,
            sizes.rounds,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(results)
}
