//! Folded stacks (`main;handler;leaky 4096` lines, the input of `flamegraph.pl`, inferno
//! and speedscope) and, with the `svg` feature, an SVG flamegraph drawn by `inferno`.
//!
//! Each line is one stack, root first, with its **live bytes**: the flamegraph shows what
//! holds memory now, wide where the most is held. Stacks start at their first frame outside
//! `std`/`alloc`/`core` (see [`crate::export`]). `;` separates frames, so a `;` inside a
//! frame name (Rust types such as `[u8; 4]`) is written as `:`, as `stackcollapse-perf`
//! does.

use super::{export_stacks, function_name};
use crate::report::Report;
use std::collections::BTreeMap;

impl Report {
    /// The live bytes of every stack as folded stacks, root first, one stack a line, sorted
    /// (stacks that fold to the same line are summed; stacks holding nothing are left out).
    pub fn to_folded(&self) -> String {
        let mut out = String::new();
        for (stack, bytes) in folded_lines(self) {
            out.push_str(&stack);
            out.push(' ');
            out.push_str(&bytes.to_string());
            out.push('\n');
        }
        out
    }

    /// A flamegraph of live bytes, as SVG (drawn by `inferno` from [`Report::to_folded`]).
    /// A report with nothing live gives a small SVG that says so.
    #[cfg(feature = "svg")]
    pub fn to_flamegraph_svg(&self) -> String {
        use inferno::flamegraph::{color::BasicPalette, Options, Palette};
        let folded = self.to_folded();
        if folded.is_empty() {
            return empty_svg("no sampled allocation is live");
        }
        let mut options = Options::default();
        options.title = "alloc-tracker: live heap".to_string();
        options.subtitle = Some(format!(
            "{} live after {:.1} s; widths are estimated live bytes by stack",
            super::text::human_bytes(self.totals.live_bytes),
            self.uptime_ms as f64 / 1000.0
        ));
        options.count_name = "bytes".to_string();
        options.name_type = "Function:".to_string();
        options.colors = Palette::Basic(BasicPalette::Mem);
        options.deterministic = true;
        let mut svg = Vec::new();
        match inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg) {
            Ok(()) => String::from_utf8(svg).unwrap_or_else(|_| empty_svg("flamegraph failed")),
            Err(e) => empty_svg(&format!("flamegraph failed: {e}")),
        }
    }
}

/// The folded lines and their live bytes, merged and sorted.
fn folded_lines(report: &Report) -> BTreeMap<String, u64> {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for stack in export_stacks(report) {
        if stack.figures.live_bytes == 0 {
            continue;
        }
        let names: Vec<String> = stack
            .frames
            .iter()
            .rev()
            .map(|frame| fold_name(function_name(frame)))
            .collect();
        let line = lines.entry(names.join(";")).or_default();
        *line = line.saturating_add(stack.figures.live_bytes);
    }
    // Flamegraph tools add every line up (in 64 bits, or less): a report whose figures sum
    // past 2^62 (only a damaged one) is scaled down so that they never overflow.
    let total: u128 = lines.values().map(|&v| u128::from(v)).sum();
    let divisor = (total >> 62) + 1;
    if divisor > 1 {
        for value in lines.values_mut() {
            *value = (u128::from(*value) / divisor) as u64;
        }
    }
    lines
}

/// A frame name safe inside a folded line: no `;` (the frame separator) and no line breaks.
fn fold_name(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// A valid, small SVG that shows `message`.
#[cfg(feature = "svg")]
fn empty_svg(message: &str) -> String {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"60\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"600\" y=\"34\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"14\">\
         alloc-tracker: {escaped}</text></svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use crate::export::tests::sample_report;

    #[test]
    fn folded_lines_are_root_first_with_live_bytes() {
        let folded = sample_report().to_folded();
        let lines: Vec<&str> = folded.lines().collect();
        assert_eq!(
            lines,
            [
                "app::main;app::cache<[u8: 4]> 1024",
                "app::main;app::leaky;app::leaky::inner 4096",
            ]
        );
    }

    #[test]
    fn stacks_holding_nothing_are_left_out() {
        let mut report = sample_report();
        for site in &mut report.sites {
            for stack in &mut site.stacks {
                stack.figures.live_bytes = 0;
            }
        }
        assert_eq!(report.to_folded(), "");
    }

    #[cfg(feature = "svg")]
    #[test]
    fn the_svg_names_the_functions() {
        let svg = sample_report().to_flamegraph_svg();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
        assert!(svg.contains("app::leaky::inner"));
        assert!(svg.contains("app::cache&lt;[u8: 4]&gt;") || svg.contains("app::cache<[u8: 4]>"));
        let mut report = sample_report();
        report.sites.clear();
        let empty = report.to_flamegraph_svg();
        assert!(empty.contains("no sampled allocation is live"));
    }
}
