//! The report model: plain data, one snapshot of exact totals, per-site estimates, process
//! gauges and trends. Built from the live tables by `snapshot`, rendered by `export`, read
//! back from JSON by `export::json`; it depends on nothing else in the crate but
//! `trim_path` (how a file is shown).
//!
//! Serialized, these types are the stable JSON report (version 1): fields may be added,
//! never renamed, so every struct is `#[non_exhaustive]` — build one with `Default` and
//! set its fields, or read one with [`Report::from_json`].

use crate::trim_path::trim_path;
use serde::{Deserialize, Serialize};

/// The `format` field of every report.
pub const FORMAT: &str = "alloc-tracker";
/// The report version this build writes (and the newest it reads).
pub const VERSION: u32 = 1;
/// The site name under which stacks beyond the stack-table cap are pooled.
pub(crate) const OTHER_STACKS_SITE: &str = "[other stacks]";

/// A heap profile: what is live, where it was allocated, and what the process looks like.
///
/// Serialized, this is the stable JSON report (version 1): fields may be added, never
/// renamed. `totals` are exact; per-site figures are estimates from samples (exact when
/// `sample_rate` is 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// Always `"alloc-tracker"`.
    pub format: String,
    /// The report format version, [`VERSION`].
    pub version: u32,
    /// Mean bytes between samples when the report was made (1 = every allocation, 0 = off).
    pub sample_rate: u64,
    /// Milliseconds since the tracker started.
    pub uptime_ms: u64,
    /// Exact totals.
    pub totals: Stats,
    /// Process gauges (absent where the platform does not tell).
    pub process: ProcessGauges,
    /// The tracker's own costs and losses.
    pub tracker: TrackerFigures,
    /// Allocation sites, most live bytes first.
    pub sites: Vec<Site>,
    /// Likely leaks, most serious first (the rule is in the crate docs, "Telling a leak from a cache").
    #[serde(default)]
    pub suspects: Vec<Suspect>,
    /// What was live, per site, when the exact live total was at its high-water mark
    /// (within 10% of it); absent while the heap never passed 1 MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_peak: Option<AtPeak>,
}

/// The heap at its high-water mark.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AtPeak {
    /// When it was captured, in milliseconds since the tracker started.
    pub uptime_ms: u64,
    /// The exact live total then (within 10% of `totals.peak_live_bytes`).
    pub live_bytes: u64,
    /// What each site held then (estimates, like the sites'), most bytes first.
    pub sites: Vec<PeakSite>,
}

/// What one site held when the heap was at its high-water mark.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PeakSite {
    /// The site, as in `sites`.
    pub site: Location,
    /// Its live bytes then.
    pub live_bytes: u64,
    /// Its live allocations then.
    pub live_allocs: u64,
}

/// What the tracker itself costs, and what it could not keep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrackerFigures {
    /// Heap bytes the tracker holds (tables, symbols), not counted in `totals`.
    pub bytes: u64,
    /// Of `bytes`, what symbolizing reports holds between reports (the names of the
    /// addresses seen so far): zero until the first report. The debug info a report loads
    /// to find those names (tens of MiB) is freed once the report is built.
    #[serde(default)]
    pub symbol_bytes: u64,
    /// Distinct stacks kept.
    pub stacks: u64,
    /// Samples not recorded (live-sample table full, or out of memory): estimates are low
    /// by about this many samples.
    pub dropped_samples: u64,
    /// Samples whose stack was pooled in `[other stacks]` because the table was at its cap.
    #[serde(default)]
    pub pooled_samples: u64,
    /// The unwinder in use: `fp` (frame pointers), `table` (unwind tables) or `dwarf`.
    #[serde(default)]
    pub unwinder: String,
    /// How frames were named: `debug info`, or `symbol tables` (a report made at the memory
    /// limit, which reads no debug info: functions only, no file:line).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub naming: String,
    /// Stacks the table unwinder left to DWARF unwinding: code without unwind tables (JIT),
    /// signal frames, and, rarely, a sample taken while all its caches were busy (during a
    /// `fork`).
    #[serde(default)]
    pub dwarf_fallbacks: u64,
}

/// Estimated figures for a site or a stack (Horvitz–Thompson sums over its samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Figures {
    /// Bytes allocated here and still live.
    pub live_bytes: u64,
    /// Allocations made here and still live.
    pub live_allocs: u64,
    /// The most bytes this site held live at once (for a site with several stacks, the sum
    /// of their peaks: an upper bound when they peaked at different times).
    pub peak_live_bytes: u64,
    /// Bytes allocated here in all.
    pub alloc_bytes: u64,
    /// Allocations made here in all.
    pub allocs: u64,
    /// Live samples behind these estimates (their precision grows with this number).
    pub live_samples: u64,
}

impl Figures {
    /// Adds `other`'s figures to these (saturating: a damaged report read back from disk
    /// may hold any numbers).
    pub fn add(&mut self, other: &Figures) {
        self.live_bytes = self.live_bytes.saturating_add(other.live_bytes);
        self.live_allocs = self.live_allocs.saturating_add(other.live_allocs);
        self.peak_live_bytes = self.peak_live_bytes.saturating_add(other.peak_live_bytes);
        self.alloc_bytes = self.alloc_bytes.saturating_add(other.alloc_bytes);
        self.allocs = self.allocs.saturating_add(other.allocs);
        self.live_samples = self.live_samples.saturating_add(other.live_samples);
    }
}

/// One allocation site: the line of the program that allocated, with every stack that
/// reached it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Site {
    /// The site's figures (sums over its stacks).
    #[serde(flatten)]
    pub figures: Figures,
    /// The line a user would fix: the first frame of the program's own code.
    pub site: Location,
    /// The whole stack with the most live bytes at this site, innermost frame first
    /// (inlined frames included, the tracker's own frames left out).
    pub frames: Vec<Location>,
    /// Every stack that allocated at this site, most live bytes first.
    #[serde(default)]
    pub stacks: Vec<Stack>,
    /// How its live bytes moved across the checkpoints (absent without checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    /// The ages of its live samples (absent when none is live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<Age>,
}

/// One distinct stack and its figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stack {
    /// This stack's figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Innermost frame first.
    pub frames: Vec<Location>,
    /// Its live bytes when the heap was at its high-water mark (see [`AtPeak`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_peak_bytes: u64,
    /// Its live allocations then.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_peak_allocs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Default for Report {
    /// An empty report of this format and version.
    fn default() -> Self {
        Self {
            format: FORMAT.to_string(),
            version: VERSION,
            sample_rate: 0,
            uptime_ms: 0,
            totals: Stats::default(),
            process: ProcessGauges::default(),
            tracker: TrackerFigures::default(),
            sites: Vec::new(),
            suspects: Vec::new(),
            at_peak: None,
        }
    }
}

impl Report {
    /// The sites ordered by `key`, largest first (ties by live bytes, then by name).
    pub fn ranked_by(&self, key: impl Fn(&Figures) -> u64) -> Vec<&Site> {
        let mut sites: Vec<&Site> = self.sites.iter().collect();
        sites.sort_by(|a, b| {
            key(&b.figures)
                .cmp(&key(&a.figures))
                .then(b.figures.live_bytes.cmp(&a.figures.live_bytes))
                .then(a.site.cmp(&b.site))
        });
        sites
    }
}

/// Exact totals over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes allocated and not yet freed.
    pub live_bytes: u64,
    /// Allocations not yet freed.
    pub live_allocs: u64,
    /// The most bytes live at once: exact in exact mode; otherwise checked at each sampling
    /// decision, so it may miss up to about one sampling interval of growth per thread.
    pub peak_live_bytes: u64,
    /// Bytes allocated in all (a `realloc` counts as a new allocation of its new size).
    pub alloc_bytes: u64,
    /// Allocations made in all.
    pub allocs: u64,
    /// Allocations freed.
    pub frees: u64,
}

/// A source location: a function and, where debug info tells, its file and line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Location {
    /// The demangled function name, without the trailing hash.
    pub function: String,
    /// The source file, as the compiler recorded it (relative to the workspace for the
    /// program's own crates).
    pub file: Option<String>,
    /// The line in `file`.
    pub line: Option<u32>,
    /// The return address this frame was resolved from (frames inlined at one call share
    /// it, innermost first). Absent for sites, which name a line, not an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<u64>,
}

impl Location {
    /// A location with a function name only.
    pub fn named(function: &str) -> Self {
        Self {
            function: function.to_string(),
            file: None,
            line: None,
            address: None,
        }
    }

    /// `file:line` as a reader is shown it, or the function name where there is no file.
    /// The file is shortened as pprof's `-trim_path` shows paths: without the prefix of
    /// Cargo's registry or git checkouts (`crossbeam-epoch-0.9.18/src/atomic.rs`) or of the
    /// toolchain (`std/src/thread/mod.rs`); the program's own files, relative to its
    /// workspace, unchanged. [`Location::file`] keeps the path the compiler recorded.
    ///
    /// ```
    /// let mut frame = alloc_tracker::Location::named("std::thread::spawn");
    /// frame.file = Some("/rustc/0123abc/library/std/src/thread/mod.rs".into());
    /// frame.line = Some(7);
    /// assert_eq!(frame.file_line(), "std/src/thread/mod.rs:7");
    /// ```
    pub fn file_line(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{}:{line}", trim_path(file)),
            (Some(file), None) => trim_path(file).into_owned(),
            _ => self.function.clone(),
        }
    }
}

/// Process-wide gauges at the moment of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessGauges {
    /// Threads of the program (the tracker's own excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    /// Open file descriptors of the program (the tracker's own excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_fds: Option<u64>,
    /// Resident set size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// The C allocator's own view of its heap (glibc's `mallinfo2`), beside the exact Rust
    /// heap in `totals`: memory in C libraries (FFI) or held by the allocator shows here.
    /// Absent where the platform has no such call, and always glibc's `malloc`, also when
    /// the tracker wraps another allocator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malloc: Option<MallocGauges>,
    /// The memory limit the emergency level is judged against, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    /// Where that limit comes from (`ALLOC_TRACKER_LIMIT`, a cgroup file, physical memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_source: Option<String>,
}

/// The C allocator's view of its heap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MallocGauges {
    /// Bytes its arenas took from the system (`arena`).
    pub arena_bytes: u64,
    /// Bytes in blocks it mapped on their own (`hblkhd`): large allocations.
    pub mmap_bytes: u64,
    /// Bytes in use by allocations, of both (`uordblks` + `hblkhd`).
    pub in_use_bytes: u64,
    /// Bytes free inside its arenas, held rather than returned (`fordblks`): fragmentation.
    pub free_bytes: u64,
}

/// How a site's live bytes moved across the checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Trend {
    /// Checkpoints the trend is computed from (the report's own moment included).
    pub points: usize,
    /// Seconds between the first and the last point.
    pub span_s: f64,
    /// Live bytes at the first point.
    pub first_bytes: u64,
    /// Least-squares growth rate, bytes per second.
    pub bytes_per_s: f64,
    /// That rate as a share of the site's current live bytes per hour.
    pub percent_per_hour: f64,
    /// Whether live bytes never fell across the recent points and rose overall.
    pub monotonic: bool,
    /// R² of the straight-line fit (1 = a perfect line).
    pub fit: f64,
    /// Live bytes at the last point.
    #[serde(default)]
    pub last_bytes: u64,
    /// The standard error of the growth from the first point to the last due to sampling
    /// alone (0 in exact mode): growth within a few of these is noise, not a trend.
    #[serde(default)]
    pub growth_stderr: f64,
}

/// The ages of a site's live samples, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Age {
    /// The oldest live sample's age.
    pub oldest_s: f64,
    /// The median age (of a bounded uniform draw of the live samples: 256 per stack).
    pub median_s: f64,
    /// The youngest live sample's age.
    pub youngest_s: f64,
}

/// How serious a suspect is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// Grows steadily (or has accumulated since start), by the 10%-per-hour rule.
    #[default]
    Warning,
    /// Doubled over the observed window.
    Critical,
    /// Holds the most, and grows, while memory is near the process's limit (90% and up):
    /// the crossing is the evidence.
    Emergency,
}

impl Severity {
    /// How the text report and the command-line tool write it: `CRITICAL`, `warning`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "CRITICAL",
            Severity::Emergency => "EMERGENCY",
        }
    }
}

/// A site the rule above flags as a likely leak.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Suspect {
    /// The site, as in `sites`.
    pub site: Location,
    /// How serious.
    pub severity: Severity,
    /// Its live bytes now.
    pub live_bytes: u64,
    /// Its growth, where checkpoints measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    /// The ages of its live samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<Age>,
    /// The evidence, in words.
    pub evidence: String,
}
