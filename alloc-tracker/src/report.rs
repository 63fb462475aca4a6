//! The report model: one snapshot of exact totals, per-site estimates and process gauges,
//! rendered by [`crate::export`] as text, JSON and other formats.

use crate::checkpoints::Checkpoint;
use crate::counters::Stats;
use crate::process::ProcessGauges;
use crate::samples::Births;
use crate::stacks::{StackId, StackSnapshot, StackStats, OTHER_STACKS};
use crate::symbolize::{self, Location};
use crate::trend::{self, Age, Candidate, Point, Suspect, Trend};
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
    /// Likely leaks, most serious first (see [`crate::trend`] for the rule).
    #[serde(default)]
    pub suspects: Vec<Suspect>,
}

/// What the tracker itself costs, and what it could not keep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
        // Bytes as the rounded count times the mean size, so that `bytes / objects` is the
        // stack's mean allocation size to within a byte whatever the count (pprof's `bytes`
        // label): rounding both estimates apart made a fixed 5000-byte stack read 5001 in
        // one report and 5000 in the next, and `pprof -base` kept both.
        let bytes_of = |count: u64, bytes: f64, objects: f64| {
            if objects > 0.0 {
                round(count as f64 * (bytes / objects))
            } else {
                round(bytes)
            }
        };
        let allocs = round(stats.allocs);
        let alloc_bytes = bytes_of(allocs, stats.alloc_bytes, stats.allocs);
        // Live never exceeds allocated, nor peak live, after rounding either.
        let live_allocs = round(stats.live_allocs).min(allocs);
        let live_bytes =
            bytes_of(live_allocs, stats.live_bytes, stats.live_allocs).min(alloc_bytes);
        Self {
            live_bytes,
            live_allocs,
            peak_live_bytes: round(stats.peak_live_bytes).max(live_bytes),
            alloc_bytes,
            allocs,
            live_samples: stats.live_samples,
        }
    }

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
    /// How its live bytes moved across the checkpoints (absent without checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<Trend>,
    /// The ages of its live samples (absent when none is live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<Age>,
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

/// What a report is built from: the tables, copied out under their locks.
pub(crate) struct Inputs {
    pub(crate) sample_rate: u64,
    pub(crate) now_ns: u64,
    pub(crate) totals: Stats,
    pub(crate) process: ProcessGauges,
    pub(crate) tracker: TrackerFigures,
    pub(crate) stacks: Vec<StackSnapshot>,
    pub(crate) births: HashMap<StackId, Births>,
    pub(crate) checkpoints: Vec<Checkpoint>,
    /// Return addresses of the program kept per stack.
    pub(crate) depth: usize,
}

/// Builds a report. Runs as tracker code (under the reentrancy guard): symbolizes each new
/// address once.
pub(crate) fn build(inputs: Inputs) -> Report {
    let Inputs {
        sample_rate,
        now_ns,
        totals,
        process,
        tracker,
        stacks,
        births,
        checkpoints,
        depth,
    } = inputs;
    let mut by_site: HashMap<Location, Vec<(StackId, Stack)>> = HashMap::new();
    for snapshot in stacks {
        let figures = Figures::from_stats(&snapshot.stats);
        let (site, frames) = if snapshot.id == OTHER_STACKS {
            (Location::named(OTHER_STACKS_SITE), Vec::new())
        } else {
            symbolize_stack(&snapshot.frames, depth)
        };
        by_site
            .entry(site)
            .or_default()
            .push((snapshot.id, Stack { figures, frames }));
    }
    let mut sites: Vec<Site> = by_site
        .into_iter()
        .map(|(site, stacks)| {
            let ids: Vec<StackId> = stacks.iter().map(|(id, _)| *id).collect();
            let mut stacks: Vec<Stack> = stacks.into_iter().map(|(_, stack)| stack).collect();
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
                trend: site_trend(&ids, &checkpoints, now_ns, figures.live_bytes),
                age: site_age(&ids, &births, now_ns),
            }
        })
        .collect();
    sites.sort_by(|a, b| {
        (b.figures.live_bytes, b.figures.alloc_bytes)
            .cmp(&(a.figures.live_bytes, a.figures.alloc_bytes))
            .then(a.site.cmp(&b.site))
    });
    let uptime_s = now_ns as f64 / 1e9;
    let mut suspects: Vec<Suspect> = sites
        .iter()
        .filter(|site| site.site.function != OTHER_STACKS_SITE)
        .filter_map(|site| {
            let candidate = Candidate {
                site: &site.site,
                live_bytes: site.figures.live_bytes,
                trend: site.trend.as_ref(),
                age: site.age.as_ref(),
                live_samples: site.figures.live_samples,
            };
            trend::judge(&candidate, totals.live_bytes, uptime_s)
        })
        .collect();
    trend::rank(&mut suspects);
    Report {
        format: FORMAT.to_string(),
        version: VERSION,
        sample_rate,
        uptime_ms: now_ns / 1_000_000,
        totals,
        process,
        tracker,
        sites,
        suspects,
    }
}

/// A site's live bytes at each checkpoint and now, as a trend (`None` without checkpoints).
fn site_trend(
    ids: &[StackId],
    checkpoints: &[Checkpoint],
    now_ns: u64,
    live_now: u64,
) -> Option<Trend> {
    if checkpoints.is_empty() {
        return None;
    }
    let mut series: Vec<Point> = checkpoints
        .iter()
        .map(|checkpoint| Point {
            at_s: checkpoint.at_ns as f64 / 1e9,
            live_bytes: ids.iter().map(|&id| checkpoint.live_bytes(id)).sum(),
        })
        .collect();
    // The report's own moment is the latest point, unless a checkpoint was just taken.
    if checkpoints
        .last()
        .is_some_and(|c| now_ns > c.at_ns + 1_000_000)
    {
        series.push(Point {
            at_s: now_ns as f64 / 1e9,
            live_bytes: live_now as f64,
        });
    }
    trend::trend(&series)
}

/// The ages of a site's live samples (`None` when none is live).
fn site_age(ids: &[StackId], births: &HashMap<StackId, Births>, now_ns: u64) -> Option<Age> {
    let mut earliest = u64::MAX;
    let mut latest = 0;
    let mut reservoir: Vec<u64> = Vec::new();
    for births in ids.iter().filter_map(|id| births.get(id)) {
        earliest = earliest.min(births.earliest_ns);
        latest = latest.max(births.latest_ns);
        reservoir.extend_from_slice(&births.reservoir);
    }
    if reservoir.is_empty() {
        return None;
    }
    reservoir.sort_unstable();
    let median = reservoir[reservoir.len() / 2];
    let age = |born: u64| now_ns.saturating_sub(born) as f64 / 1e9;
    Some(Age {
        oldest_s: age(earliest),
        median_s: age(median),
        youngest_s: age(latest),
    })
}

/// Symbolizes a stack: its site and its frames without the tracker's.
/// Keeps at most `depth` return addresses of the program (the tracker's frames, captured on
/// top of them, are dropped first).
fn symbolize_stack(addresses: &[usize], depth: usize) -> (Location, Vec<Location>) {
    let frames: Vec<symbolize::Frame> = addresses
        .iter()
        .flat_map(|&address| symbolize::resolve(address).to_vec())
        .collect();
    let kept = symbolize::trim_tracker_frames(&frames);
    let mut seen = 0;
    let mut previous = None;
    let end = kept
        .iter()
        .position(|frame| {
            if frame.location.address != previous {
                previous = frame.location.address;
                seen += 1;
            }
            seen > depth
        })
        .unwrap_or(kept.len());
    let kept = &kept[..end];
    let site = symbolize::pick_site(kept)
        .map(|frame| Location {
            address: None,
            ..frame.location.clone()
        })
        .unwrap_or_else(|| Location::named("[unknown]"));
    (site, kept.iter().map(|f| f.location.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocated_bytes_over_allocations_is_the_mean_size() {
        for allocs in [1.0, 2.6, 2738.6, 2739.4, 1e9 + 0.5] {
            let stats = StackStats {
                allocs,
                alloc_bytes: allocs * 5000.0,
                ..StackStats::default()
            };
            let figures = Figures::from_stats(&stats);
            let mean = figures.alloc_bytes as f64 / figures.allocs as f64;
            assert!((mean - 5000.0).abs() < 0.5, "{allocs}: {figures:?}");
            // Some of them still live: the same holds, and live stays within allocated.
            let live = allocs * 0.8;
            let figures = Figures::from_stats(&StackStats {
                live_allocs: live,
                live_bytes: live * 5000.0,
                peak_live_bytes: live * 5000.0,
                ..stats
            });
            let mean = figures.live_bytes as f64 / figures.live_allocs as f64;
            assert!((mean - 5000.0).abs() < 0.5, "{allocs}: {figures:?}");
            assert!(figures.live_bytes <= figures.alloc_bytes, "{figures:?}");
            assert!(figures.live_bytes <= figures.peak_live_bytes, "{figures:?}");
        }
        let exact = Figures::from_stats(&StackStats {
            allocs: 3.0,
            alloc_bytes: 14_999.0,
            ..StackStats::default()
        });
        assert_eq!((exact.allocs, exact.alloc_bytes), (3, 14_999));
    }
}
