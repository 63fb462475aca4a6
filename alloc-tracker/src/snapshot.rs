//! A snapshot of the live tables, built into a [`Report`]: exact totals from the counters,
//! each stack's figures, the samples' birth times and the checkpoints, copied out under
//! their locks, then symbolized and grouped by site, with trends and suspects. Every
//! report — at exit, on demand, over HTTP — is made here. Runs as tracker code.

use crate::checkpoints::{self, Checkpoint};
use crate::peak::{self, Capture};
use crate::report::{
    Age, AtPeak, Figures, Location, PeakSite, ProcessGauges, Report, Site, Stack, Stats, Suspect,
    TrackerFigures, Trend, FORMAT, OTHER_STACKS_SITE, VERSION,
};
use crate::samples::{self, Births};
use crate::stacks::{self, Live, StackId, StackSnapshot, StackStats, OTHER_STACKS};
use crate::symbolize::{self, Naming};
use crate::trend::{self, Candidate, Point};
use crate::{capture, clock, config, counters, process, sampler, tracker_memory};
use std::collections::HashMap;
use std::sync::Arc;

/// Builds a report of the heap now, its frames named as `naming` says (see [`Naming`]:
/// [`Naming::SymbolTables`] reads no debug info, for a report made when memory is short).
/// Must run as tracker code (under the reentrancy guard).
pub(crate) fn take_with(naming: Naming) -> Report {
    // The tracker's own memory, without the report being built: its tables now, plus what
    // symbolizing this report adds to the symbol caches once its debug info is released.
    let tables_and_symbols = tracker_memory::live_bytes();
    let symbols_before = symbolize::symbol_bytes();
    let totals = counters::totals();
    let tracker = TrackerFigures {
        bytes: 0,
        symbol_bytes: 0,
        stacks: stacks::count() as u64,
        dropped_samples: samples::dropped(),
        pooled_samples: stacks::pooled_samples(),
        unwinder: capture::unwinder_in_use().to_string(),
        naming: match naming {
            Naming::DebugInfo => "debug info",
            Naming::SymbolTables => "symbol tables",
        }
        .to_string(),
        dwarf_fallbacks: capture::dwarf_fallbacks(),
    };
    let mut report = build(Inputs {
        sample_rate: sampler::rate_in_use(),
        now_ns: clock::since_start_ns(),
        totals,
        process: process::read(),
        tracker,
        stacks: stacks::snapshot(),
        births: samples::births_by_stack(),
        checkpoints: checkpoints::all(),
        peak: peak::last(),
        depth: config::depth(),
        naming,
    });
    symbolize::release_debug_info();
    let symbols_added = symbolize::symbol_bytes().saturating_sub(symbols_before);
    report.tracker.bytes = tables_and_symbols + symbols_added;
    report.tracker.symbol_bytes = symbolize::symbol_bytes().min(report.tracker.bytes);
    report
}

/// What a report is built from: the tables, copied out under their locks.
struct Inputs {
    sample_rate: u64,
    now_ns: u64,
    totals: Stats,
    process: ProcessGauges,
    tracker: TrackerFigures,
    stacks: Vec<StackSnapshot>,
    births: HashMap<StackId, Births>,
    checkpoints: Vec<Checkpoint>,
    /// What was live when the heap was at its high-water mark.
    peak: Option<Capture>,
    /// Return addresses of the program kept per stack.
    depth: usize,
    /// How frames are named.
    naming: Naming,
}

/// Builds a report. Runs as tracker code (under the reentrancy guard): symbolizes each new
/// address once.
fn build(inputs: Inputs) -> Report {
    let Inputs {
        sample_rate,
        now_ns,
        totals,
        process,
        tracker,
        stacks,
        births,
        checkpoints,
        peak,
        depth,
        naming,
    } = inputs;
    let at_peak_of: HashMap<StackId, Live> = peak
        .as_ref()
        .map(|capture| capture.stacks.iter().copied().collect())
        .unwrap_or_default();
    let mut site_of: HashMap<StackId, Location> = HashMap::new();
    // Each stack with its id and its live bytes unrounded (the trend's latest point must be
    // on the checkpoints' scale: a rounded figure a byte below the last checkpoint would
    // read as a fall).
    let mut by_site: HashMap<Location, Vec<(StackId, Stack, Live)>> = HashMap::new();
    // Each address's frames, named once for this report.
    let mut named: HashMap<usize, Arc<[symbolize::Frame]>> = HashMap::new();
    for snapshot in stacks {
        let figures = figures_of(&snapshot.stats, totals.peak_live_bytes);
        let (site, frames) = if snapshot.id == OTHER_STACKS {
            (Location::named(OTHER_STACKS_SITE), Vec::new())
        } else {
            symbolize_stack(&snapshot.frames, depth, |address| {
                Arc::clone(
                    named
                        .entry(address)
                        .or_insert_with(|| symbolize::resolve(address, naming)),
                )
            })
        };
        let at_peak = at_peak_of.get(&snapshot.id).copied().unwrap_or_default();
        let stack = Stack {
            figures,
            frames,
            at_peak_bytes: at_peak.bytes.max(0.0).round() as u64,
            at_peak_allocs: at_peak.allocs.max(0.0).round() as u64,
        };
        site_of.insert(snapshot.id, site.clone());
        by_site
            .entry(site)
            .or_default()
            .push((snapshot.id, stack, snapshot.stats.live()));
    }
    let mut sites: Vec<Site> = by_site
        .into_iter()
        .map(|(site, stacks)| {
            let ids: Vec<StackId> = stacks.iter().map(|(id, ..)| *id).collect();
            let live_now = stacks.iter().fold(Live::default(), |sum, (.., live)| Live {
                bytes: sum.bytes + live.bytes.max(0.0),
                variance: sum.variance + live.variance.max(0.0),
                allocs: sum.allocs + live.allocs.max(0.0),
            });
            let mut stacks: Vec<Stack> = stacks.into_iter().map(|(_, stack, _)| stack).collect();
            stacks.sort_by(|a, b| {
                (b.figures.live_bytes, b.figures.alloc_bytes)
                    .cmp(&(a.figures.live_bytes, a.figures.alloc_bytes))
            });
            let mut figures = Figures::default();
            for stack in &stacks {
                figures.add(&stack.figures);
            }
            figures.peak_live_bytes = peak_within(
                figures.peak_live_bytes,
                totals.peak_live_bytes,
                figures.live_bytes,
            );
            Site {
                figures,
                site,
                frames: stacks.first().map(|s| s.frames.clone()).unwrap_or_default(),
                stacks,
                trend: site_trend(&ids, &checkpoints, now_ns, live_now),
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
    if let Some(crossing) = process::limit::crossing(totals.live_bytes, process.rss_bytes) {
        let candidates: Vec<Candidate> = sites
            .iter()
            .filter(|site| site.site.function != OTHER_STACKS_SITE)
            .map(|site| Candidate {
                site: &site.site,
                live_bytes: site.figures.live_bytes,
                trend: site.trend.as_ref(),
                age: site.age.as_ref(),
                live_samples: site.figures.live_samples,
            })
            .collect();
        let named = trend::emergency(&candidates, totals.live_bytes, &crossing.describe());
        suspects.retain(|suspect| named.iter().all(|n| n.site != suspect.site));
        suspects.extend(named);
    }
    trend::rank(&mut suspects);
    let at_peak = peak.map(|capture| at_peak(&capture, &site_of));
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
        at_peak,
    }
}

/// The peak capture grouped by site, most bytes first.
fn at_peak(capture: &Capture, site_of: &HashMap<StackId, Location>) -> AtPeak {
    let mut by_site: HashMap<&Location, (f64, f64)> = HashMap::new();
    for (id, live) in &capture.stacks {
        if let Some(site) = site_of.get(id) {
            let entry = by_site.entry(site).or_default();
            entry.0 += live.bytes.max(0.0);
            entry.1 += live.allocs.max(0.0);
        }
    }
    let mut sites: Vec<PeakSite> = by_site
        .into_iter()
        .map(|(site, (bytes, allocs))| PeakSite {
            site: site.clone(),
            // No site held more than the whole heap then (see `peak_within`).
            live_bytes: (bytes.round() as u64).min(capture.live_bytes),
            live_allocs: allocs.round() as u64,
        })
        .filter(|site| site.live_bytes > 0)
        .collect();
    sites.sort_by(|a, b| b.live_bytes.cmp(&a.live_bytes).then(a.site.cmp(&b.site)));
    AtPeak {
        uptime_ms: capture.at_ns / 1_000_000,
        live_bytes: capture.live_bytes,
        sites,
    }
}

/// A site's live bytes at each checkpoint and now, as a trend (`None` without checkpoints).
fn site_trend(
    ids: &[StackId],
    checkpoints: &[Checkpoint],
    now_ns: u64,
    live_now: Live,
) -> Option<Trend> {
    if checkpoints.is_empty() {
        return None;
    }
    let mut series: Vec<Point> = checkpoints
        .iter()
        .map(|checkpoint| {
            let (bytes, variance) = ids.iter().fold((0.0, 0.0), |(b, v), &id| {
                let live = checkpoint.live(id);
                (b + live.bytes, v + live.variance)
            });
            Point {
                at_s: checkpoint.at_ns as f64 / 1e9,
                live_bytes: bytes,
                variance,
            }
        })
        .collect();
    // The report's own moment is the latest point, unless a checkpoint was just taken.
    if checkpoints
        .last()
        .is_some_and(|c| now_ns > c.at_ns + 1_000_000)
    {
        series.push(Point {
            at_s: now_ns as f64 / 1e9,
            live_bytes: live_now.bytes,
            variance: live_now.variance,
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

/// Symbolizes a stack with `resolve`: its site and its frames without the tracker's.
/// Keeps at most `depth` return addresses of the program (the tracker's frames, captured on
/// top of them, are dropped first).
pub(crate) fn symbolize_stack(
    addresses: &[usize],
    depth: usize,
    mut resolve: impl FnMut(usize) -> Arc<[symbolize::Frame]>,
) -> (Location, Vec<Location>) {
    let frames: Vec<symbolize::Frame> = addresses
        .iter()
        .flat_map(|&address| resolve(address).to_vec())
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

/// An estimated peak no higher than the process's exact peak (`process_peak`): a few
/// samples of a small heap weigh far more than it held (three 64 KiB samples at 512 KiB
/// stand for 1.5 MiB), and no site can have held more than the whole heap. Never below
/// `live` either.
fn peak_within(estimate: u64, process_peak: u64, live: u64) -> u64 {
    estimate.min(process_peak).max(live)
}

/// A stack's estimates, rounded for the report; its peak within the process's exact peak
/// (`process_peak`).
fn figures_of(stats: &StackStats, process_peak: u64) -> Figures {
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
    let live_bytes = bytes_of(live_allocs, stats.live_bytes, stats.live_allocs).min(alloc_bytes);
    Figures {
        live_bytes,
        live_allocs,
        peak_live_bytes: peak_within(round(stats.peak_live_bytes), process_peak, live_bytes),
        alloc_bytes,
        allocs,
        live_samples: stats.live_samples,
    }
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
            let figures = figures_of(&stats, u64::MAX);
            let mean = figures.alloc_bytes as f64 / figures.allocs as f64;
            assert!((mean - 5000.0).abs() < 0.5, "{allocs}: {figures:?}");
            // Some of them still live: the same holds, and live stays within allocated.
            let live = allocs * 0.8;
            let figures = figures_of(
                &StackStats {
                    live_allocs: live,
                    live_bytes: live * 5000.0,
                    peak_live_bytes: live * 5000.0,
                    ..stats
                },
                u64::MAX,
            );
            let mean = figures.live_bytes as f64 / figures.live_allocs as f64;
            assert!((mean - 5000.0).abs() < 0.5, "{allocs}: {figures:?}");
            assert!(figures.live_bytes <= figures.alloc_bytes, "{figures:?}");
            assert!(figures.live_bytes <= figures.peak_live_bytes, "{figures:?}");
        }
        let exact = figures_of(
            &StackStats {
                allocs: 3.0,
                alloc_bytes: 14_999.0,
                ..StackStats::default()
            },
            u64::MAX,
        );
        assert_eq!((exact.allocs, exact.alloc_bytes), (3, 14_999));
    }

    #[test]
    fn no_stack_peaks_above_the_process() {
        // Three 64 KiB samples at 512 KiB, all live at once, in a heap that peaked at 67 KiB.
        let weight = 1.0 / (1.0 - (-1.0f64 / 8.0).exp());
        let stats = StackStats {
            allocs: 3.0 * weight,
            alloc_bytes: 3.0 * weight * 65_536.0,
            peak_live_bytes: 3.0 * weight * 65_536.0,
            ..StackStats::default()
        };
        assert_eq!(figures_of(&stats, 68_608).peak_live_bytes, 68_608);
        // Never below what is live now, whatever the bound.
        let live = StackStats {
            live_allocs: weight,
            live_bytes: weight * 65_536.0,
            ..stats
        };
        let figures = figures_of(&live, 68_608);
        assert_eq!(figures.peak_live_bytes, figures.live_bytes);
    }
}
