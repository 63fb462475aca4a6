//! The stacks as exporters see them: each stack of a report from its first frame of the
//! program or of a dependency, with the allocation machinery above it (`RawVec::grow`,
//! `alloc::alloc::alloc`, the tracker's frames) left out — as Go leaves `mallocgc` out of its
//! heap profiles — so that a viewer's "flat" column names the code that asked for memory.

use crate::origin::{classify, Origin};
use crate::report::{Figures, Location, Report};

/// One stack as the exporters see it: frames innermost first, machinery dropped.
pub(crate) struct ExportStack<'a> {
    pub(crate) frames: Vec<&'a Location>,
    pub(crate) figures: Figures,
    /// The median age of the site's live samples, in seconds (0 where not known).
    pub(crate) median_age_s: f64,
    /// (bytes, allocations) live when the heap was at its high-water mark, where the report
    /// captured it.
    pub(crate) at_peak: Option<(u64, u64)>,
}

/// Every stack of `report`, most live bytes first (a site without per-stack detail, as in
/// reports from older writers, counts as one stack of its `frames`).
pub(crate) fn export_stacks(report: &Report) -> Vec<ExportStack<'_>> {
    let mut out = Vec::new();
    for site in &report.sites {
        let median_age_s = site.age.as_ref().map_or(0.0, |age| age.median_s);
        if site.stacks.is_empty() {
            let at_peak = report.at_peak.as_ref().map(|at_peak| {
                at_peak
                    .sites
                    .iter()
                    .find(|peak| peak.site == site.site)
                    .map_or((0, 0), |peak| (peak.live_bytes, peak.live_allocs))
            });
            out.push(ExportStack {
                frames: trim_machinery(&site.frames, &site.site),
                figures: site.figures,
                median_age_s,
                at_peak,
            });
        } else {
            for stack in &site.stacks {
                out.push(ExportStack {
                    frames: trim_machinery(&stack.frames, &site.site),
                    figures: stack.figures,
                    median_age_s,
                    at_peak: report
                        .at_peak
                        .as_ref()
                        .map(|_| (stack.at_peak_bytes, stack.at_peak_allocs)),
                });
            }
        }
    }
    out
}

/// The frames of a stack from its first frame of the program or of a dependency (frames of
/// `std`, of the tracker, and frames without debug info are machinery while none of those
/// came before); failing that, from the site's frame; an empty stack is its site.
fn trim_machinery<'a>(frames: &'a [Location], site: &'a Location) -> Vec<&'a Location> {
    if frames.is_empty() {
        return vec![site];
    }
    let start = frames
        .iter()
        .position(|frame| {
            matches!(
                classify(&frame.function, frame.file.as_deref()),
                Origin::Program | Origin::Dependency
            )
        })
        .or_else(|| {
            frames.iter().position(|frame| {
                (&frame.function, &frame.file, frame.line)
                    == (&site.function, &site.file, site.line)
            })
        })
        .unwrap_or(0);
    frames[start..].iter().collect()
}

/// A frame's function name for a viewer (never empty).
pub(crate) fn function_name(location: &Location) -> &str {
    if location.function.is_empty() {
        "[unknown]"
    } else {
        &location.function
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::{frame, sample_report};

    #[test]
    fn machinery_frames_are_dropped_from_the_top() {
        let report = sample_report();
        let stacks = export_stacks(&report);
        let names: Vec<&str> = stacks[0]
            .frames
            .iter()
            .map(|f| f.function.as_str())
            .collect();
        assert_eq!(names, ["app::leaky::inner", "app::leaky", "app::main"]);
    }

    #[test]
    fn an_all_std_stack_starts_at_its_site_and_an_empty_one_is_its_site() {
        let std_frames = vec![
            frame(
                "alloc::alloc::alloc",
                "/rustc/a/library/alloc/src/alloc.rs",
                1,
                1,
            ),
            frame(
                "std::thread::spawn",
                "/rustc/a/library/std/src/thread/mod.rs",
                2,
                2,
            ),
            frame(
                "std::rt::lang_start",
                "/rustc/a/library/std/src/rt.rs",
                3,
                3,
            ),
        ];
        let site = Location {
            address: None,
            ..std_frames[1].clone()
        };
        let kept = trim_machinery(&std_frames, &site);
        assert_eq!(kept[0].function, "std::thread::spawn");
        // A frame without debug info is machinery too, until the program's first frame.
        let mut frames = std_frames.clone();
        frames[1] = Location::named("<alloc::raw_vec::RawVecInner>::try_allocate_in");
        frames.push(frame("app::main", "src/main.rs", 4, 4));
        assert_eq!(trim_machinery(&frames, &site)[0].function, "app::main");
        let pooled = Location::named("[other stacks]");
        assert_eq!(trim_machinery(&[], &pooled), vec![&pooled]);
    }
}
