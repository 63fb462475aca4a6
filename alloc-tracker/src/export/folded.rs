//! Folded stacks (`main;handler;leaky 4096` lines, the input of `flamegraph.pl`, inferno
//! and speedscope), from which the `svg` export (feature `svg`) draws flamegraphs.
//!
//! Each line is one stack, root first, with its **live bytes**: the flamegraph shows what
//! holds memory now, wide where the most is held. Stacks start at their first frame outside
//! `std`/`alloc`/`core` (see `export::stacks`). `;` separates frames, so a `;` inside a
//! frame name (Rust types such as `[u8; 4]`) is written as `:`, as `stackcollapse-perf`
//! does.

use super::stacks::{export_stacks, function_name};
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
}
