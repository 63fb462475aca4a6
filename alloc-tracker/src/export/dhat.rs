//! DHAT's JSON format (`dhatFileVersion` 2, mode `rust-heap`, as dhat-rs writes it), so
//! that DHAT's viewer (`dh_view.html`, from Valgrind) opens the report.
//!
//! Each program point is one stack (innermost frame first, from the first frame outside
//! `std`/`alloc`/`core`). What each of its fields holds here:
//!
//! | field | DHAT's meaning | here |
//! |---|---|---|
//! | `tb`, `tbk` | bytes and blocks allocated in all | the stack's `alloc_bytes`, `allocs` |
//! | `eb`, `ebk` | bytes and blocks live at the end ("at t-end") | `live_bytes`, `live_allocs`: what is live when the report is made |
//! | `mb`, `mbk` | the program point's own peak | `peak_live_bytes`; blocks at that peak estimated as `mb` divided by the stack's average block size |
//! | `gb`, `gbk` | what the point held when the **whole heap** peaked ("at t-gmax") | the stack's live bytes and blocks in the report's `at_peak` capture (taken when the live total was within 10% of its peak); for a report without one, **approximated** by the point's own peak (`mb`, `mbk`) |
//! | `tl` | total lifetime of its blocks | **approximation**: each live block counted at the median age of its site's live blocks, each freed block as 0 (the lifetimes of freed blocks are not recorded): a lower bound, so "short-lived" (average under `tuth` = 10 µs) reads as "mostly freed" |
//!
//! `tg` (when the heap peaked) is the `at_peak` capture's time (the report's time without
//! one).
//!
//! Figures are the report's estimates (exact when the sampling rate is 1).

use super::stacks::{export_stacks, function_name};
use crate::report::{Figures, Location, Report};
use crate::trim_path::trim_path;
use serde::Serialize;
use std::collections::HashMap;

/// The file, with dhat-rs's field names.
#[derive(Serialize)]
#[allow(non_snake_case)]
struct DhatJson<'a> {
    dhatFileVersion: u32,
    mode: &'static str,
    verb: &'static str,
    bklt: bool,
    bkacc: bool,
    tu: &'static str,
    Mtu: &'static str,
    tuth: u64,
    cmd: &'a str,
    pid: u32,
    tg: u64,
    te: u64,
    pps: Vec<ProgramPoint>,
    ftbl: Vec<String>,
}

/// A program point being built: its frames, figures, the lifetime (µs) of its live blocks
/// so far, and (bytes, blocks) at the heap's peak where known.
type Point = (Vec<usize>, Figures, f64, Option<(u64, u64)>);

/// One program point: a stack and its figures.
#[derive(Serialize)]
struct ProgramPoint {
    tb: u64,
    tbk: u64,
    tl: u64,
    mb: u64,
    mbk: u64,
    gb: u64,
    gbk: u64,
    eb: u64,
    ebk: u64,
    fs: Vec<usize>,
}

impl Report {
    /// The report in DHAT's JSON format, for DHAT's viewer (`dh_view.html`), with a generic
    /// command line and pid 0 (right for a report read from a file). DHAT's "at t-gmax"
    /// figures are each stack's own peak here (an upper bound of what it held when the
    /// whole heap peaked), and lifetimes count live blocks at their site's median age.
    pub fn to_dhat_json(&self) -> String {
        self.to_dhat_json_with("alloc-tracker report", 0)
    }

    /// The report in DHAT's JSON format, naming the command and process it describes (see
    /// the module docs for what each field holds).
    pub(crate) fn to_dhat_json_with(&self, command: &str, pid: u32) -> String {
        let mut ftbl = vec!["[root]".to_string()];
        let mut frame_ids: HashMap<String, usize> = HashMap::new();
        // Each point: its frames, figures and the lifetime (µs) of its live blocks so far.
        let mut points: Vec<Point> = Vec::new();
        let mut point_ids: HashMap<Vec<usize>, usize> = HashMap::new();
        for stack in export_stacks(self) {
            let fs: Vec<usize> = stack
                .frames
                .iter()
                .map(|frame| {
                    let text = frame_text(frame);
                    *frame_ids.entry(text).or_insert_with_key(|text| {
                        ftbl.push(text.clone());
                        ftbl.len() - 1
                    })
                })
                .collect();
            let lifetime_us = stack.figures.live_allocs as f64 * stack.median_age_s * 1e6;
            // DH view needs every program point's frames to differ: merge equal ones.
            match point_ids.get(&fs) {
                Some(&i) => {
                    Figures::add(&mut points[i].1, &stack.figures);
                    points[i].2 += lifetime_us;
                    if let (Some(sum), Some(more)) = (&mut points[i].3, stack.at_peak) {
                        sum.0 = sum.0.saturating_add(more.0);
                        sum.1 = sum.1.saturating_add(more.1);
                    }
                }
                None => {
                    point_ids.insert(fs.clone(), points.len());
                    points.push((fs, stack.figures, lifetime_us, stack.at_peak));
                }
            }
        }
        let pps = points
            .into_iter()
            .map(|(fs, f, lifetime_us, at_peak)| {
                let peak_blocks = blocks_at(f.peak_live_bytes, &f);
                let (gb, gbk) = at_peak.unwrap_or((f.peak_live_bytes, peak_blocks));
                ProgramPoint {
                    tb: f.alloc_bytes,
                    tbk: f.allocs,
                    tl: lifetime_us.max(0.0).round() as u64,
                    mb: f.peak_live_bytes,
                    mbk: peak_blocks,
                    gb,
                    gbk,
                    eb: f.live_bytes,
                    ebk: f.live_allocs,
                    fs,
                }
            })
            .collect();
        let end_us = self.uptime_ms.saturating_mul(1000);
        let json = DhatJson {
            dhatFileVersion: 2,
            mode: "rust-heap",
            verb: "Allocated",
            bklt: true,
            bkacc: false,
            tu: "µs",
            Mtu: "s",
            tuth: 10,
            cmd: command,
            pid,
            tg: self
                .at_peak
                .as_ref()
                .map_or(end_us, |at_peak| at_peak.uptime_ms.saturating_mul(1000)),
            te: end_us,
            pps,
            ftbl,
        };
        // Plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }
}

/// Blocks in `bytes` at the stack's average block size (at least the live blocks when the
/// bytes are at least the live bytes).
fn blocks_at(bytes: u64, f: &Figures) -> u64 {
    let estimate = if f.alloc_bytes > 0 {
        (bytes as f64 * f.allocs as f64 / f.alloc_bytes as f64).round() as u64
    } else {
        0
    };
    if bytes >= f.live_bytes {
        estimate.max(f.live_allocs)
    } else {
        estimate
    }
}

/// A frame as dhat-rs writes it: `0xADDR: function (file:line:column)`, the file shortened
/// for display (`trim_path`: DHAT's viewer only shows it).
fn frame_text(frame: &Location) -> String {
    let place = match (&frame.file, frame.line) {
        (Some(file), Some(line)) => format!("{}:{line}:0", trim_path(file)),
        (Some(file), None) => format!("{}:0:0", trim_path(file)),
        _ => "???:0:0".to_string(),
    };
    format!(
        "{:#x}: {} ({place})",
        frame.address.unwrap_or(0),
        function_name(frame)
    )
}

#[cfg(test)]
mod tests {
    use crate::export::tests::{frame, sample_report};
    use serde_json::Value;

    #[test]
    fn frames_show_shortened_paths() {
        let file =
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/lru-0.19.1/src/lib.rs";
        assert_eq!(
            super::frame_text(&frame("lru::LruCache::put", file, 9, 0x10)),
            "0x10: lru::LruCache::put (lru-0.19.1/src/lib.rs:9:0)"
        );
    }

    #[test]
    fn has_the_fields_dh_view_reads() {
        let json: Value =
            serde_json::from_str(&sample_report().to_dhat_json_with("app --x", 7)).unwrap();
        assert_eq!(json["dhatFileVersion"], 2);
        assert_eq!(json["mode"], "rust-heap");
        assert_eq!(json["verb"], "Allocated");
        assert_eq!(json["bklt"], true);
        assert_eq!(json["bkacc"], false);
        assert_eq!(json["tu"], "µs");
        assert_eq!(json["Mtu"], "s");
        assert_eq!(json["cmd"], "app --x");
        assert_eq!(json["pid"], 7);
        assert_eq!(json["te"], 1_500_000);
        for field in ["tuth", "tg"] {
            assert!(json[field].is_u64(), "{field}");
        }
        let ftbl = json["ftbl"].as_array().unwrap();
        assert_eq!(ftbl[0], "[root]");
        let pps = json["pps"].as_array().unwrap();
        assert_eq!(pps.len(), 2);
        let leak = &pps[0];
        for field in ["tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk"] {
            assert!(leak[field].is_u64(), "{field}");
        }
        assert_eq!(
            (leak["eb"].as_u64(), leak["ebk"].as_u64()),
            (Some(4096), Some(4))
        );
        assert_eq!(
            (leak["tb"].as_u64(), leak["tbk"].as_u64()),
            (Some(8192), Some(8))
        );
        assert_eq!(leak["mb"], 4196);
        let fs: Vec<usize> = leak["fs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            ftbl[fs[0]].as_str().unwrap(),
            "0x3000: app::leaky::inner (src/main.rs:7:0)"
        );
        assert_eq!(fs.len(), 3);
    }

    #[test]
    fn live_blocks_count_at_their_sites_median_age() {
        let mut report = sample_report();
        report.sites[0].age = Some(crate::report::Age {
            median_s: 2.0,
            ..Default::default()
        });
        let json: Value = serde_json::from_str(&report.to_dhat_json()).unwrap();
        assert_eq!(json["pps"][0]["tl"], 8_000_000, "4 live blocks aged 2 s");
        assert_eq!(json["pps"][1]["tl"], 0, "no age known");
        assert_eq!(json["tuth"], 10);
    }

    #[test]
    fn program_points_have_distinct_frames() {
        let mut report = sample_report();
        // Two stacks that differ only in machinery frames fold into one program point.
        let mut twin = report.sites[0].stacks[0].clone();
        twin.frames[0].address = Some(0x9999);
        report.sites[0].stacks.push(twin);
        let json: Value = serde_json::from_str(&report.to_dhat_json()).unwrap();
        let pps = json["pps"].as_array().unwrap();
        assert_eq!(pps.len(), 2);
        assert_eq!(pps[0]["eb"], 8192);
    }
}
