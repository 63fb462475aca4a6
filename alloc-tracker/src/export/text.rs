//! The terminal report: a header of totals and gauges, then the sites ranked by live bytes,
//! then the stacks of the top few.

use crate::origin::{classify, Origin};
use crate::report::{AtPeak, Location, Report, Site};
use crate::units::{counted, grouped, human_bytes};
use std::collections::HashMap;
use std::fmt::Write;

/// Sites listed in the table.
const TABLE_ROWS: usize = 20;
/// Sites whose stack is printed below the table.
const STACKS_SHOWN: usize = 3;
/// Frames printed per stack.
const FRAMES_SHOWN: usize = 12;

impl Report {
    /// The "Leak suspects" section that opens the text report.
    fn write_suspects(&self, out: &mut String) {
        let checkpoints = self
            .sites
            .iter()
            .find_map(|s| s.trend.as_ref())
            .map(|t| t.points);
        if self.suspects.is_empty() {
            let _ = match checkpoints {
                Some(points) => {
                    writeln!(out, "== Leak suspects: none (over {points} checkpoints) ==")
                }
                None => writeln!(
                    out,
                    "== Leak suspects: none (no checkpoint yet: a run under 100 ms, or ALLOC_TRACKER_INTERVAL=off) =="
                ),
            };
            return;
        }
        let _ = writeln!(out, "== Leak suspects ==");
        for (rank, suspect) in self.suspects.iter().enumerate() {
            let severity = suspect.severity.label();
            let _ = writeln!(
                out,
                "{:>2}. {severity} {}: {} live",
                rank + 1,
                describe(&suspect.site),
                human_bytes(suspect.live_bytes)
            );
            let _ = writeln!(out, "    {}", suspect.evidence);
        }
    }
}

/// Sites in the peak table: at least this share of the peak, and now holding less than half
/// of their own peak (what is still live is in the main table).
const PEAK_SHARE: f64 = 0.05;
const PEAK_ROWS: usize = 5;

impl Report {
    /// Sites that held much more at their peak than now: memory held until the end of a
    /// phase (a loop that frees only when it finishes) shows here, not among the live.
    fn write_peaks(&self, out: &mut String) {
        if let Some(at_peak) = &self.at_peak {
            return self.write_at_peak(at_peak, out);
        }
        let floor = (self.totals.peak_live_bytes as f64 * PEAK_SHARE) as u64;
        let peaked: Vec<&Site> = self
            .ranked_by(|f| f.peak_live_bytes)
            .into_iter()
            .filter(|s| {
                let f = &s.figures;
                f.peak_live_bytes >= floor.max(1 << 20) && f.live_bytes < f.peak_live_bytes / 2
            })
            .take(PEAK_ROWS)
            .collect();
        if peaked.is_empty() {
            return;
        }
        let _ = writeln!(out, "\nheld most at their peak, since freed:");
        write_peak_header(out);
        for (rank, site) in peaked.iter().enumerate() {
            let f = &site.figures;
            write_peak_row(
                out,
                rank,
                f.peak_live_bytes,
                self.totals.peak_live_bytes,
                f.live_bytes,
                &site.site,
            );
        }
    }
}

impl Report {
    /// The heap at its high-water mark, when it was well above what is live now: the sites
    /// that filled it, with what they hold now.
    fn write_at_peak(&self, at_peak: &AtPeak, out: &mut String) {
        if (at_peak.live_bytes as f64) < self.totals.live_bytes as f64 * 1.25 {
            return; // the heap is at (or near) its peak now: the main table says it all
        }
        let live_now: HashMap<&Location, u64> = self
            .sites
            .iter()
            .map(|site| (&site.site, site.figures.live_bytes))
            .collect();
        let floor = (at_peak.live_bytes as f64 * PEAK_SHARE) as u64;
        let _ = writeln!(
            out,
            "\nat the heap's peak, {} live after {:.1} s (now {}):",
            human_bytes(at_peak.live_bytes),
            at_peak.uptime_ms as f64 / 1000.0,
            human_bytes(self.totals.live_bytes),
        );
        write_peak_header(out);
        let shown = at_peak.sites.iter().filter(|site| site.live_bytes >= floor);
        if shown.clone().next().is_none() {
            let _ = writeln!(
                out,
                "      (no sample fell in what was live then: its allocations were smaller than the sampling interval)"
            );
        }
        for (rank, site) in shown.take(PEAK_ROWS).enumerate() {
            let now = live_now.get(&site.site).copied().unwrap_or(0);
            write_peak_row(
                out,
                rank,
                site.live_bytes,
                at_peak.live_bytes,
                now,
                &site.site,
            );
        }
    }
}

/// The column heads of a table of sites at the heap's peak.
fn write_peak_header(out: &mut String) {
    let _ = writeln!(
        out,
        "{:>4}  {:>10}  {:>6}  {:>10}  site",
        "rank", "peak MiB", "% peak", "live MiB"
    );
}

/// One row of a table of sites at the heap's peak: what `site` held then (`at_peak` bytes,
/// as a share of the heap's `peak`) and holds now (`live`).
fn write_peak_row(
    out: &mut String,
    rank: usize,
    at_peak: u64,
    peak: u64,
    live: u64,
    site: &Location,
) {
    const MIB: f64 = 1024.0 * 1024.0;
    let _ = writeln!(
        out,
        "{:>4}  {:>10.3}  {:>5.1}%  {:>10.3}  {}",
        rank + 1,
        at_peak as f64 / MIB,
        100.0 * at_peak as f64 / peak.max(1) as f64,
        live as f64 / MIB,
        describe(site)
    );
}

/// `function  file:line`, or just the function where debug info has no file.
fn describe(location: &Location) -> String {
    match location.file {
        Some(_) => format!("{}  {}", location.function, location.file_line()),
        None => location.function.clone(),
    }
}

fn rate_line(rate: u64) -> String {
    match rate {
        0 => "sampling off: per-site figures are empty".to_string(),
        1 => "exact mode: every allocation recorded".to_string(),
        r => format!(
            "one sample per {} allocated on average: per-site figures are estimates",
            human_bytes(r)
        ),
    }
}

impl Report {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_suspects(&mut out);
        let t = &self.totals;
        let _ = writeln!(
            out,
            "== alloc-tracker: {} live in {} (peak {}) after {:.1} s ==",
            human_bytes(t.live_bytes),
            counted(t.live_allocs, "allocation"),
            human_bytes(t.peak_live_bytes),
            self.uptime_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "allocated {} in {}, {} freed; {}",
            human_bytes(t.alloc_bytes),
            counted(t.allocs, "allocation"),
            grouped(t.frees),
            rate_line(self.sample_rate)
        );
        let gauge = |v: Option<u64>, f: &dyn Fn(u64) -> String| v.map(f).unwrap_or("n/a".into());
        let limit = match (self.process.limit_bytes, &self.process.limit_source) {
            (Some(limit), Some(source)) => format!(" of a {} limit ({source})", human_bytes(limit)),
            (Some(limit), None) => format!(" of a {} limit", human_bytes(limit)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "process: {}, {}, {} resident{limit}",
            gauge(self.process.threads, &|n| counted(n, "thread")),
            gauge(self.process.open_fds, &|n| counted(n, "open fd")),
            gauge(self.process.rss_bytes, &human_bytes),
        );
        let _ = writeln!(
            out,
            "tracker: {} ({} of it symbols) in {} ({} unwinding{}){}",
            human_bytes(self.tracker.bytes),
            human_bytes(self.tracker.symbol_bytes),
            counted(self.tracker.stacks, "stack"),
            if self.tracker.unwinder.is_empty() {
                "?"
            } else {
                &self.tracker.unwinder
            },
            match self.tracker.dwarf_fallbacks {
                0 => String::new(),
                n => format!(", {} by DWARF", counted(n, "stack")),
            },
            match (self.tracker.dropped_samples, self.tracker.pooled_samples) {
                (0, 0) => String::new(),
                (d, p) => format!("; {d} samples dropped, {p} pooled in [other stacks]"),
            }
        );
        if self.tracker.naming == "symbol tables" {
            let _ = writeln!(
                out,
                "sites named from the symbol tables alone (made near the memory limit, without \
                 reading debug info): functions, no file:line"
            );
        }
        if let Some(malloc) = &self.process.malloc {
            let _ = writeln!(
                out,
                "C allocator (mallinfo2): {} in use, {} free held in {} of arenas, {} mapped apart",
                human_bytes(malloc.in_use_bytes),
                human_bytes(malloc.free_bytes),
                human_bytes(malloc.arena_bytes),
                human_bytes(malloc.mmap_bytes),
            );
        }
        let live: Vec<&Site> = self
            .sites
            .iter()
            .filter(|s| s.figures.live_bytes > 0)
            .collect();
        if live.is_empty() {
            let _ = writeln!(out, "\nno sampled allocation is live");
            self.write_peaks(&mut out);
            return out;
        }
        let _ = writeln!(
            out,
            "\n{:>4}  {:>10}  {:>6}  {:>11}  site",
            "rank", "live MiB", "% live", "objects"
        );
        let total_live = t.live_bytes.max(1) as f64;
        for (rank, site) in live.iter().take(TABLE_ROWS).enumerate() {
            let _ = writeln!(
                out,
                "{:>4}  {:>10.3}  {:>5.1}%  {:>11}  {}",
                rank + 1,
                site.figures.live_bytes as f64 / (1024.0 * 1024.0),
                100.0 * site.figures.live_bytes as f64 / total_live,
                grouped(site.figures.live_allocs),
                describe(&site.site)
            );
        }
        if live.len() > TABLE_ROWS {
            let rest: u64 = live[TABLE_ROWS..]
                .iter()
                .map(|s| s.figures.live_bytes)
                .sum();
            let _ = writeln!(
                out,
                "      … {} more sites hold {}",
                live.len() - TABLE_ROWS,
                human_bytes(rest)
            );
        }
        self.write_peaks(&mut out);
        for (rank, site) in live.iter().take(STACKS_SHOWN).enumerate() {
            let _ = writeln!(
                out,
                "\n#{} {}, called from:",
                rank + 1,
                describe(&site.site)
            );
            // Start below the site: the frames above it are the allocator's own machinery,
            // and the site itself is on the heading line already.
            let callers = site
                .frames
                .iter()
                .position(|frame| {
                    (&frame.function, &frame.file, frame.line)
                        == (&site.site.function, &site.site.file, site.site.line)
                })
                .map_or(&site.frames[..], |at_site| &site.frames[at_site + 1..]);
            // End at the program's last frame: below it are the runtime and libc calling
            // `main`.
            let is_program =
                |f: &Location| classify(&f.function, f.file.as_deref()) == Origin::Program;
            let end = callers
                .iter()
                .rposition(is_program)
                .map_or(callers.len(), |last| last + 1);
            let shown = &callers[..end.min(FRAMES_SHOWN)];
            for frame in shown {
                let _ = writeln!(out, "     {}", describe(frame));
            }
            if callers.len() > shown.len() {
                let _ = writeln!(out, "     … {} more frames", callers.len() - shown.len());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::export::tests::sample_report;

    #[test]
    fn paths_are_shown_shortened_and_kept_whole_in_the_model() {
        let mut report = sample_report();
        let registry = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        let file = format!("{registry}/crossbeam-epoch-0.9.18/src/atomic.rs");
        report.sites[1].site.file = Some(file.clone());
        let text = report.to_text();
        assert!(
            text.contains("app::cache<[u8; 4]>  crossbeam-epoch-0.9.18/src/atomic.rs:3"),
            "{text}"
        );
        assert!(!text.contains(registry), "{text}");
        assert_eq!(report.sites[1].site.file.as_deref(), Some(file.as_str()));
        // The stacks' frames too: a std frame between the site and `app::main`.
        let caller = &mut report.sites[0].frames[3];
        caller.file = Some("/rustc/abc/library/std/src/rt.rs".into());
        caller.function = "std::rt::lang_start".into();
        let text = report.to_text();
        assert!(
            text.contains(
                "     std::rt::lang_start  std/src/rt.rs:12\n     app::main  src/main.rs:30\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn each_stack_lists_the_callers_below_its_site() {
        let text = sample_report().to_text();
        let stack = text
            .split("\n#1 app::leaky::inner  src/main.rs:7, called from:\n")
            .nth(1)
            .expect("the top site's stack is shown");
        let lines: Vec<&str> = stack.lines().take_while(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            [
                "     app::leaky  src/main.rs:12",
                "     app::main  src/main.rs:30"
            ],
            "{text}"
        );
    }
}
