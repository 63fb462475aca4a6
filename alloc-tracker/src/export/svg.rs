//! SVG flamegraphs of live bytes (feature `svg`), drawn by `inferno` from the folded stacks.
//!
//! inferno is licensed CDDL-1.0, which some license policies (`cargo deny`'s defaults)
//! reject: that is why this rendering is an opt-in feature, as in pprof-rs and
//! jemalloc_pprof.

use crate::report::Report;

impl Report {
    /// A flamegraph of live bytes, as SVG (drawn by `inferno` from [`Report::to_folded`]).
    /// A report with nothing live gives a small SVG that says so.
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
            crate::units::human_bytes(self.totals.live_bytes),
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

/// A valid, small SVG that shows `message`.
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
