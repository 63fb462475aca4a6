//! The report model: one snapshot of exact totals, per-site estimates and process gauges,
//! rendered by [`crate::export`] as text, JSON and other formats.

use crate::counters::Stats;
use crate::process::ProcessGauges;
use crate::stacks::{StackSnapshot, StackStats, OTHER_STACKS};
use crate::symbolize::{self, Location};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The `format` field of every report.
pub const FORMAT: &str = "alloc-tracker";
/// The report version this build writes (and the newest it reads).
pub const VERSION: u32 = 1;
/// The site name under which stacks beyond the stack-table cap are pooled.
pub const OTHER_STACKS_SITE: &str = "[other stacks]";

/// A heap profile: what is live, where it was allocated, and what the process looks like.
///
/// Serialized, this is the stable JSON report (version 1): fields may be added, never
/// renamed. `totals` are exact; per-site figures are estimates from samples (exact when
/// `sample_rate` is 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

/// What the tracker itself costs, and what it could not keep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerFigures {
    /// Heap bytes the tracker holds (tables, symbols), not counted in `totals`.
    pub bytes: u64,
    /// Of `bytes`, what symbolizing reports holds (debug info loaded once, names): zero
    /// until the first report, then roughly constant.
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
    /// The unwinder in use: `fp` or `dwarf`.
    #[serde(default)]
    pub unwinder: String,
}

/// Estimated figures for a site or a stack (Horvitz–Thompson sums over its samples).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    fn from_stats(stats: &StackStats) -> Self {
        let round = |x: f64| x.max(0.0).round() as u64;
        Self {
            live_bytes: round(stats.live_bytes),
            live_allocs: round(stats.live_allocs),
            peak_live_bytes: round(stats.peak_live_bytes),
            alloc_bytes: round(stats.alloc_bytes),
            allocs: round(stats.allocs),
            live_samples: stats.live_samples,
        }
    }

    fn add(&mut self, other: &Figures) {
        self.live_bytes += other.live_bytes;
        self.live_allocs += other.live_allocs;
        self.peak_live_bytes += other.peak_live_bytes;
        self.alloc_bytes += other.alloc_bytes;
        self.allocs += other.allocs;
        self.live_samples += other.live_samples;
    }
}

/// One allocation site: the line of the program that allocated, with every stack that
/// reached it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

/// One distinct stack and its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stack {
    /// This stack's figures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Innermost frame first.
    pub frames: Vec<Location>,
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

/// Builds a report from the tracker's tables. Runs as tracker code (under the reentrancy
/// guard): symbolizes each new address once.
pub(crate) fn build(
    sample_rate: u64,
    uptime_ms: u64,
    totals: Stats,
    process: ProcessGauges,
    tracker: TrackerFigures,
    stacks: Vec<StackSnapshot>,
) -> Report {
    let mut by_site: HashMap<Location, Vec<Stack>> = HashMap::new();
    for snapshot in stacks {
        let figures = Figures::from_stats(&snapshot.stats);
        let (site, frames) = if snapshot.id == OTHER_STACKS {
            (Location::named(OTHER_STACKS_SITE), Vec::new())
        } else {
            symbolize_stack(&snapshot.frames)
        };
        by_site
            .entry(site)
            .or_default()
            .push(Stack { figures, frames });
    }
    let mut sites: Vec<Site> = by_site
        .into_iter()
        .map(|(site, mut stacks)| {
            stacks.sort_by(|a, b| {
                (b.figures.live_bytes, b.figures.alloc_bytes)
                    .cmp(&(a.figures.live_bytes, a.figures.alloc_bytes))
            });
            let mut figures = Figures::default();
            for stack in &stacks {
                figures.add(&stack.figures);
            }
            Site {
                figures,
                site,
                frames: stacks.first().map(|s| s.frames.clone()).unwrap_or_default(),
                stacks,
            }
        })
        .collect();
    sites.sort_by(|a, b| {
        (b.figures.live_bytes, b.figures.alloc_bytes)
            .cmp(&(a.figures.live_bytes, a.figures.alloc_bytes))
            .then(a.site.cmp(&b.site))
    });
    Report {
        format: FORMAT.to_string(),
        version: VERSION,
        sample_rate,
        uptime_ms,
        totals,
        process,
        tracker,
        sites,
    }
}

/// Symbolizes a stack: its site and its frames without the tracker's.
fn symbolize_stack(addresses: &[usize]) -> (Location, Vec<Location>) {
    let frames: Vec<symbolize::Frame> = addresses
        .iter()
        .flat_map(|&address| symbolize::resolve(address).to_vec())
        .collect();
    let kept = symbolize::trim_tracker_frames(&frames);
    let site = symbolize::pick_site(kept)
        .map(|frame| Location {
            address: None,
            ..frame.location.clone()
        })
        .unwrap_or_else(|| Location::named("[unknown]"));
    (site, kept.iter().map(|f| f.location.clone()).collect())
}
