//! Renderings of a [`Report`]: text for the terminal, the stable JSON, and the formats other
//! tools open: pprof ([`pprof`]), folded stacks ([`folded`]), SVG flamegraphs (`svg`, with
//! the `svg` feature) and DHAT's viewer ([`dhat`]). Each format is one file and only reads
//! the model; [`Format`] is the one list of them, used by the configuration, the exit
//! report and the command-line tool.

pub mod dhat;
pub mod folded;
pub mod json;
pub mod pprof;
mod stacks;
#[cfg(feature = "svg")]
pub mod svg;
pub mod text;

use crate::report::Report;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A rendering of a report.
///
/// ```
/// use alloc_tracker::Format;
/// assert_eq!(Format::from_path("heap.pb.gz".as_ref()), Some(Format::Pprof));
/// assert_eq!(Format::from_path("heap.dhat.json".as_ref()), Some(Format::Dhat));
/// assert_eq!("folded".parse::<Format>(), Ok(Format::Folded));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The text report for a terminal (`.txt`, or `stderr`).
    Text,
    /// The stable JSON report (`.json`).
    Json,
    /// DHAT's JSON, for DHAT's viewer (`.dhat.json`).
    Dhat,
    /// A gzip-compressed pprof profile (`.pb.gz`).
    Pprof,
    /// Folded stacks of live bytes, for flamegraph tools (`.folded`).
    Folded,
    /// An SVG flamegraph of live bytes (`.svg`; needs the `svg` feature).
    #[cfg(feature = "svg")]
    Svg,
}

impl Format {
    /// Every format this build can write.
    pub const ALL: &'static [Format] = &[
        Format::Text,
        Format::Json,
        Format::Dhat,
        Format::Pprof,
        Format::Folded,
        #[cfg(feature = "svg")]
        Format::Svg,
    ];

    /// The format's short name, as `FromStr` reads it (`text`, `json`, `dhat`, `pprof`,
    /// `folded`, `svg`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Dhat => "dhat",
            Format::Pprof => "pprof",
            Format::Folded => "folded",
            #[cfg(feature = "svg")]
            Format::Svg => "svg",
        }
    }

    /// The file ending that picks this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Text => ".txt",
            Format::Json => ".json",
            Format::Dhat => ".dhat.json",
            Format::Pprof => ".pb.gz",
            Format::Folded => ".folded",
            #[cfg(feature = "svg")]
            Format::Svg => ".svg",
        }
    }

    /// The format a file's name picks by its ending, if any (the longest ending wins:
    /// `heap.dhat.json` is DHAT's, not the JSON report).
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        Format::ALL
            .iter()
            .copied()
            .filter(|format| name.ends_with(format.extension()))
            .max_by_key(|format| format.extension().len())
    }

    /// The file endings this build accepts, for messages: `.txt, .json, …`.
    pub fn endings() -> String {
        Format::ALL
            .iter()
            .map(|format| format.extension())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Format::ALL.iter().map(|format| format.name()).collect();
        write!(
            f,
            "unknown format {:?} (expected one of: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .iter()
            .copied()
            .find(|format| format.name() == name)
            .ok_or_else(|| UnknownFormat(name.to_string()))
    }
}

/// What a rendering says beyond the report itself, for a report of a live process: its
/// executable mappings (pprof `Mapping` rows), its command line and pid (DHAT), the time.
/// Empty (the default) for a report read from a file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Context {
    pub(crate) mappings: Vec<pprof::MemoryMapping>,
    pub(crate) command: String,
    pub(crate) pid: u32,
    pub(crate) time_nanos: i64,
}

impl Report {
    /// The report rendered in `format` (the bytes of a file of that format).
    ///
    /// ```
    /// let report = alloc_tracker::Report::default();
    /// let json = report.render(alloc_tracker::Format::Json);
    /// assert!(json.starts_with(b"{"));
    /// ```
    pub fn render(&self, format: Format) -> Vec<u8> {
        self.render_with(format, &Context::default())
    }

    /// [`Report::render`] for a report of a live process, with its `context`.
    pub(crate) fn render_with(&self, format: Format, context: &Context) -> Vec<u8> {
        match format {
            Format::Text => self.to_text().into_bytes(),
            Format::Json => self.to_json().into_bytes(),
            Format::Dhat => self
                .to_dhat_json_with(&context.command, context.pid)
                .into_bytes(),
            Format::Pprof => self.to_pprof_gz_with(&pprof::PprofOptions {
                mappings: context.mappings.clone(),
                time_nanos: context.time_nanos,
                ..pprof::PprofOptions::default()
            }),
            Format::Folded => self.to_folded().into_bytes(),
            #[cfg(feature = "svg")]
            Format::Svg => self.to_flamegraph_svg().into_bytes(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::Location;
    use serde_json::json;

    #[test]
    fn formats_are_picked_by_ending_and_by_name() {
        let pick = |name: &str| Format::from_path(Path::new(name));
        assert_eq!(pick("out/heap.json"), Some(Format::Json));
        assert_eq!(pick("heap.dhat.json"), Some(Format::Dhat));
        assert_eq!(pick("heap.txt"), Some(Format::Text));
        assert_eq!(pick("heap.pb.gz"), Some(Format::Pprof));
        assert_eq!(pick("heap.folded"), Some(Format::Folded));
        assert_eq!(pick("heap.gz"), None);
        assert_eq!(pick("json"), None);
        for &format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
            assert_eq!(pick(&format!("x{}", format.extension())), Some(format));
        }
        let err = "png".parse::<Format>().unwrap_err();
        assert!(err.to_string().contains("json"), "{err}");
    }

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
}
