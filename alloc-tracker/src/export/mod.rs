//! Renderings of a [`crate::Report`]: text for the terminal, the stable JSON, and the
//! formats other tools open: pprof ([`pprof`]), folded stacks and SVG flamegraphs
//! ([`folded`]), and DHAT's viewer ([`dhat`]).
//!
//! The exporters other than text and JSON start each stack at its first frame outside
//! `std`/`alloc`/`core`: the allocation machinery (`RawVec::grow`, `alloc::alloc::alloc`,
//! …) is left out, as Go leaves `mallocgc` out of its heap profiles, so that a viewer's
//! "flat" column names the code that asked for the memory.

pub mod dhat;
pub mod folded;
pub mod json;
pub mod pprof;
pub mod text;

use crate::config::Destination;
use crate::report::{Figures, Report};
use crate::symbolize::{classify, Location, Origin};
use std::path::Path;

/// One stack as the exporters see it: frames innermost first, machinery dropped.
pub(crate) struct ExportStack<'a> {
    pub(crate) frames: Vec<&'a Location>,
    pub(crate) figures: Figures,
    /// The median age of the site's live samples, in seconds (0 where not known).
    pub(crate) median_age_s: f64,
}

/// Every stack of `report`, most live bytes first (a site without per-stack detail, as in
/// reports from older writers, counts as one stack of its `frames`).
pub(crate) fn export_stacks(report: &Report) -> Vec<ExportStack<'_>> {
    let mut out = Vec::new();
    for site in &report.sites {
        let median_age_s = site.age.as_ref().map_or(0.0, |age| age.median_s);
        if site.stacks.is_empty() {
            out.push(ExportStack {
                frames: trim_machinery(&site.frames, &site.site),
                figures: site.figures,
                median_age_s,
            });
        } else {
            for stack in &site.stacks {
                out.push(ExportStack {
                    frames: trim_machinery(&stack.frames, &site.site),
                    figures: stack.figures,
                    median_age_s,
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

/// The file `destination` names and the report rendered for it; `None` for stderr (or a
/// format this build leaves out). The exit report and [`crate::write_report`] use this.
pub(crate) fn render_for_file<'d>(
    report: &Report,
    destination: &'d Destination,
) -> Option<(&'d Path, Vec<u8>)> {
    Some(match destination {
        Destination::Stderr => return None,
        Destination::Json(path) => (path.as_path(), report.to_json().into_bytes()),
        Destination::Dhat(path) => {
            // `args_os`: `args` panics on an argument that is not UTF-8.
            let command = std::env::args_os()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            let json = report.to_dhat_json_with(&command, std::process::id());
            (path.as_path(), json.into_bytes())
        }
        Destination::Pprof(path) => (
            path.as_path(),
            report.to_pprof_gz_with(&pprof::PprofOptions::for_this_process()),
        ),
        Destination::Folded(path) => (path.as_path(), report.to_folded().into_bytes()),
        #[cfg(feature = "svg")]
        Destination::Svg(path) => (path.as_path(), report.to_flamegraph_svg().into_bytes()),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn frame(function: &str, file: &str, line: u32, address: u64) -> Location {
        Location {
            function: function.into(),
            file: Some(file.into()),
            line: Some(line),
            address: Some(address),
        }
    }

    /// A report with two sites: `app::leaky::inner` (one stack through `Vec::push`, inlined
    /// into `app::leaky`) and `app::cache<[u8; 4]>` (a Rust type name with `;`). Built from
    /// JSON, as a reader of the stable format would.
    pub(crate) fn sample_report() -> Report {
        let std_file = "/rustc/abc/library/alloc/src/raw_vec.rs";
        let f = |function: &str, file: &str, line: u32, address: u64| json!({"function": function, "file": file, "line": line, "address": address});
        let leaky_frames = json!([
            f("alloc::raw_vec::finish_grow", std_file, 10, 0x1000),
            f(
                "alloc::vec::Vec<T>::push",
                "/rustc/abc/library/alloc/src/vec/mod.rs",
                20,
                0x2000
            ),
            f("app::leaky::inner", "src/main.rs", 7, 0x3000),
            f("app::leaky", "src/main.rs", 12, 0x3000),
            f("app::main", "src/main.rs", 30, 0x4000),
        ]);
        let cache_frames = json!([
            f("alloc::alloc::alloc", std_file, 5, 0x1100),
            f("app::cache<[u8; 4]>", "src/cache.rs", 3, 0x5000),
            f("app::main", "src/main.rs", 31, 0x4010),
        ]);
        let figures = |live: u64, objects: u64| {
            json!({"live_bytes": live, "live_allocs": objects, "peak_live_bytes": live + 100,
                   "alloc_bytes": live * 2, "allocs": objects * 2, "live_samples": objects})
        };
        let site = |figures: serde_json::Value,
                    function: &str,
                    file: &str,
                    line: u32,
                    frames: &serde_json::Value| {
            let mut site = figures.clone();
            site["site"] = json!({"function": function, "file": file, "line": line});
            site["frames"] = frames.clone();
            let mut stack = figures;
            stack["frames"] = frames.clone();
            site["stacks"] = json!([stack]);
            site
        };
        let report = json!({
            "format": "alloc-tracker", "version": 1, "sample_rate": 1, "uptime_ms": 1500,
            "totals": {"live_bytes": 7000, "live_allocs": 30, "peak_live_bytes": 8000,
                       "alloc_bytes": 14000, "allocs": 60, "frees": 30},
            "process": {},
            "tracker": {"bytes": 0, "stacks": 2, "dropped_samples": 0},
            "sites": [
                site(figures(4096, 4), "app::leaky::inner", "src/main.rs", 7, &leaky_frames),
                site(figures(1024, 16), "app::cache<[u8; 4]>", "src/cache.rs", 3, &cache_frames),
            ],
        });
        Report::from_json(&report.to_string()).expect("the sample report reads")
    }

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
