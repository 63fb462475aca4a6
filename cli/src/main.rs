//! `alloc-tracker`: ranks, compares and converts the JSON reports that the alloc-tracker
//! library writes (`ALLOC_TRACKER_REPORT=heap.json`).
//!
//! ```text
//! alloc-tracker top heap.json [-n 20] [--by live|peak|allocated]
//! alloc-tracker diff before.json after.json [-n 20]
//! alloc-tracker convert heap.json --to pprof|folded|svg|dhat|json|text -o OUT
//! ```
//!
//! A file that cannot be read as a report (missing, empty, cut short, binary, another
//! program's JSON, a newer report version) gets one line on stderr and exit status 1;
//! usage errors exit with 2.

use alloc_tracker::units::{counted, grouped, human_bytes};
use alloc_tracker::{AtPeak, Figures, Format, Location, ReadError, Report, MIN_SUSPECT_BYTES};
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Ranks, compares and converts alloc-tracker JSON reports.
#[derive(Parser)]
#[command(name = "alloc-tracker", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The allocation sites holding the most memory.
    Top {
        /// A JSON report (ALLOC_TRACKER_REPORT=heap.json).
        file: PathBuf,
        /// How many sites to list.
        #[arg(short = 'n', long = "count", default_value_t = 20)]
        count: usize,
        /// What to rank by.
        #[arg(long, value_enum, default_value_t = By::Live)]
        by: By,
    },
    /// Per-site change from BASE to NEW, largest growth of live bytes first (as
    /// `go tool pprof -base BASE NEW`).
    Diff {
        /// The earlier report.
        base: PathBuf,
        /// The later report.
        new: PathBuf,
        /// How many sites to list.
        #[arg(short = 'n', long = "count", default_value_t = 20)]
        count: usize,
    },
    /// Converts a report for other viewers.
    Convert {
        /// A JSON report.
        file: PathBuf,
        /// The format to write: pprof (go tool pprof, Pyroscope, Parca), folded
        /// (flamegraph.pl, inferno, speedscope), svg (a flamegraph), dhat (DHAT's viewer),
        /// json, or text.
        #[arg(long, value_parser = parse_format)]
        to: Format,
        /// Where to write it (`-` for standard output).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

/// The figure `top` ranks by.
#[derive(Clone, Copy, ValueEnum)]
enum By {
    /// Bytes live now.
    Live,
    /// The most bytes each site held at once.
    Peak,
    /// Bytes allocated in all.
    Allocated,
}

/// Reads `--to`'s value with the library's own list of formats.
fn parse_format(name: &str) -> Result<Format, String> {
    name.parse::<Format>().map_err(|e| {
        if name == "svg" {
            "this alloc-tracker was built without the `svg` feature".to_string()
        } else {
            e.to_string()
        }
    })
}

/// Why a command failed: printed as one line.
#[derive(Debug)]
enum CliError {
    /// A report that could not be read.
    Read { path: PathBuf, why: String },
    /// An output that could not be written.
    Write { path: PathBuf, error: io::Error },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Read { path, why } => write!(f, "{}: {why}", path.display()),
            CliError::Write { path, error } => {
                write!(f, "cannot write {}: {error}", path.display())
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(CliError::Write { error, .. }) if error.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("alloc-tracker: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Top { file, count, by } => {
            let report = load(&file)?;
            print(&top(&file, &report, count, by))
        }
        Command::Diff { base, new, count } => {
            let before = load(&base)?;
            let after = load(&new)?;
            print(&diff(&base, &before, &new, &after, count))
        }
        Command::Convert { file, to, output } => {
            let report = load(&file)?;
            let bytes = report.render(to);
            write_output(&output, &bytes)
        }
    }
}

/// Reads a JSON report, naming what is wrong with a file that is not one.
fn load(path: &Path) -> Result<Report, CliError> {
    let fail = |why: String| CliError::Read {
        path: path.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        fail(match e.kind() {
            io::ErrorKind::NotFound => "no such file".to_string(),
            _ => format!("cannot read: {e}"),
        })
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(fail("the file is empty, not a report".into()));
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(fail(
            "gzip data (a pprof profile?), not a JSON report: open *.pb.gz with `go tool pprof`"
                .into(),
        ));
    }
    let text =
        std::str::from_utf8(&bytes).map_err(|_| fail("binary data, not a JSON report".into()))?;
    Report::from_json(text).map_err(|e| {
        fail(match e {
            ReadError::NotJson(why) if why.starts_with("EOF while parsing") => {
                format!("the report is cut short (truncated JSON: {why})")
            }
            other => other.to_string(),
        })
    })
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| CliError::Write {
            path: PathBuf::from("standard output"),
            error,
        })
}

fn write_output(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if path == Path::new("-") {
        let mut out = io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|error| CliError::Write {
                path: PathBuf::from("standard output"),
                error,
            });
    }
    std::fs::write(path, bytes).map_err(|error| CliError::Write {
        path: path.to_path_buf(),
        error,
    })
}

fn sampling(report: &Report) -> String {
    match report.sample_rate {
        0 => "sampling was off: no per-site figures".to_string(),
        1 => "every allocation recorded".to_string(),
        rate => format!(
            "per-site figures estimated from one sample per {}",
            human_bytes(rate)
        ),
    }
}

/// `top`: the ranked table.
fn top(path: &Path, report: &Report, count: usize, by: By) -> String {
    let t = &report.totals;
    let mut out = format!(
        "{}: {} live in {} (peak {}), {} allocated in all, after {:.1} s; {}\n",
        path.display(),
        human_bytes(t.live_bytes),
        counted(t.live_allocs, "allocation"),
        human_bytes(t.peak_live_bytes),
        human_bytes(t.alloc_bytes),
        report.uptime_ms as f64 / 1000.0,
        sampling(report)
    );
    out.push_str(&suspects(report));
    if let (By::Peak, Some(at_peak)) = (by, &report.at_peak) {
        out.push_str(&top_at_peak(report, at_peak, count));
        return out;
    }
    // The ranking figure, the exact total it is a share of, and their names.
    let (key, total, what, share): (fn(&Figures) -> u64, u64, &str, &str) = match by {
        By::Live => (|f| f.live_bytes, t.live_bytes, "live bytes", "% live"),
        By::Peak => (
            |f| f.peak_live_bytes,
            t.peak_live_bytes,
            "peak bytes",
            "% peak",
        ),
        By::Allocated => (
            |f| f.alloc_bytes,
            t.alloc_bytes,
            "bytes allocated",
            "% alloc",
        ),
    };
    let ranked: Vec<_> = report
        .ranked_by(key)
        .into_iter()
        .filter(|site| key(&site.figures) > 0)
        .collect();
    if ranked.is_empty() {
        out.push_str(&format!("no site has any {what}\n"));
        return out;
    }
    out.push_str(&format!(
        "sites by {what}:\n{:>4}  {:>10}  {:>7}  {:>10}  {:>10}  {:>10}  site\n",
        "rank", "live", share, "objects", "peak", "allocated"
    ));
    for (rank, site) in ranked.iter().take(count).enumerate() {
        let f = &site.figures;
        out.push_str(&format!(
            "{:>4}  {:>10}  {:>6.1}%  {:>10}  {:>10}  {:>10}  {}\n",
            rank + 1,
            human_bytes(f.live_bytes),
            100.0 * key(f) as f64 / total.max(1) as f64,
            grouped(f.live_allocs),
            human_bytes(f.peak_live_bytes),
            human_bytes(f.alloc_bytes),
            describe(&site.site)
        ));
    }
    if ranked.len() > count {
        out.push_str(&format!(
            "… {} more sites (-n to list more)\n",
            ranked.len() - count
        ));
    }
    out
}

/// The sites that filled the heap at its high-water mark (the report's `at_peak`), with what
/// they hold now.
fn top_at_peak(report: &Report, at_peak: &AtPeak, count: usize) -> String {
    let mut out = format!(
        "the heap at its peak: {} live after {:.1} s; sites then:\n{:>4}  {:>10}  {:>7}  {:>10}  {:>10}  site\n",
        human_bytes(at_peak.live_bytes),
        at_peak.uptime_ms as f64 / 1000.0,
        "rank",
        "at peak",
        "% peak",
        "objects",
        "live now"
    );
    let live_now: HashMap<&Location, u64> = report
        .sites
        .iter()
        .map(|site| (&site.site, site.figures.live_bytes))
        .collect();
    for (rank, site) in at_peak.sites.iter().take(count).enumerate() {
        out.push_str(&format!(
            "{:>4}  {:>10}  {:>6.1}%  {:>10}  {:>10}  {}\n",
            rank + 1,
            human_bytes(site.live_bytes),
            100.0 * site.live_bytes as f64 / at_peak.live_bytes.max(1) as f64,
            grouped(site.live_allocs),
            human_bytes(live_now.get(&site.site).copied().unwrap_or(0)),
            describe(&site.site)
        ));
    }
    if at_peak.sites.len() > count {
        out.push_str(&format!(
            "… {} more sites (-n to list more)\n",
            at_peak.sites.len() - count
        ));
    }
    out
}

/// The report's leak suspects, most serious first, with their evidence.
fn suspects(report: &Report) -> String {
    if report.suspects.is_empty() {
        return "leak suspects: none\n".to_string();
    }
    let mut out = String::from("leak suspects:\n");
    for (rank, suspect) in report.suspects.iter().enumerate() {
        let severity = suspect.severity.label();
        out.push_str(&format!(
            "{:>4}. {severity} {}: {} live\n      {}\n",
            rank + 1,
            describe(&suspect.site),
            human_bytes(suspect.live_bytes),
            suspect.evidence
        ));
    }
    out
}

/// How a site's live bytes moved between two reports, flagged the way the leak rule reads
/// growth: `DOUBLED` (at least twice the base, or from nothing to a noticeable size) or
/// `grew` (by 10% and at least `MIN_SUSPECT_BYTES`).
fn growth_flag(base: u64, new: u64) -> &'static str {
    let grown = new.saturating_sub(base);
    if grown < MIN_SUSPECT_BYTES {
        ""
    } else if new >= base.saturating_mul(2) {
        "DOUBLED"
    } else if grown * 10 >= base {
        "grew"
    } else {
        ""
    }
}

fn describe(site: &Location) -> String {
    match &site.file {
        Some(_) => format!("{}  {}", site.function, site.file_line()),
        None => site.function.clone(),
    }
}

/// A signed difference of two counts.
fn delta(new: u64, base: u64) -> i128 {
    i128::from(new) - i128::from(base)
}

fn signed_bytes(d: i128) -> String {
    let sign = if d < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        human_bytes(u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX))
    )
}

fn signed_count(d: i128) -> String {
    let sign = if d < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        grouped(u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX))
    )
}

/// `diff`: per-site changes, largest growth of live bytes first.
fn diff(base_path: &Path, base: &Report, new_path: &Path, new: &Report, count: usize) -> String {
    let (tb, tn) = (&base.totals, &new.totals);
    let mut out = format!(
        "{} → {}: live {} ({} → {}), live allocations {}, allocated {}\n",
        base_path.display(),
        new_path.display(),
        signed_bytes(delta(tn.live_bytes, tb.live_bytes)),
        human_bytes(tb.live_bytes),
        human_bytes(tn.live_bytes),
        signed_count(delta(tn.live_allocs, tb.live_allocs)),
        signed_bytes(delta(tn.alloc_bytes, tb.alloc_bytes)),
    );
    if base.sample_rate != new.sample_rate {
        out.push_str(&format!(
            "note: the reports were sampled at different rates ({} and {}); per-site figures are estimates\n",
            base.sample_rate, new.sample_rate
        ));
    }
    // Sites are matched by function, file and line.
    let mut figures: HashMap<&Location, (Figures, Figures)> = HashMap::new();
    for site in &base.sites {
        Figures::add(&mut figures.entry(&site.site).or_default().0, &site.figures);
    }
    for site in &new.sites {
        Figures::add(&mut figures.entry(&site.site).or_default().1, &site.figures);
    }
    let mut rows: Vec<(&Location, Figures, Figures)> = figures
        .into_iter()
        .map(|(site, (b, n))| (site, b, n))
        .filter(|(_, b, n)| {
            b.live_bytes != n.live_bytes
                || b.live_allocs != n.live_allocs
                || b.alloc_bytes != n.alloc_bytes
        })
        .collect();
    rows.sort_by(|(sa, ba, na), (sb, bb, nb)| {
        delta(nb.live_bytes, bb.live_bytes)
            .cmp(&delta(na.live_bytes, ba.live_bytes))
            .then(delta(nb.alloc_bytes, bb.alloc_bytes).cmp(&delta(na.alloc_bytes, ba.alloc_bytes)))
            .then(sa.cmp(sb))
    });
    if rows.is_empty() {
        out.push_str("no site changed\n");
        return out;
    }
    out.push_str(&format!(
        "sites by growth of live bytes:\n{:>7}  {:>11}  {:>10}  {:>10}  {:>10}  {:>11}  site\n",
        "", "Δ live", "base live", "new live", "Δ objects", "Δ allocated"
    ));
    for (site, b, n) in rows.iter().take(count) {
        out.push_str(&format!(
            "{:>7}  {:>11}  {:>10}  {:>10}  {:>10}  {:>11}  {}\n",
            growth_flag(b.live_bytes, n.live_bytes),
            signed_bytes(delta(n.live_bytes, b.live_bytes)),
            human_bytes(b.live_bytes),
            human_bytes(n.live_bytes),
            signed_count(delta(n.live_allocs, b.live_allocs)),
            signed_bytes(delta(n.alloc_bytes, b.alloc_bytes)),
            describe(site)
        ));
    }
    if rows.len() > count {
        out.push_str(&format!(
            "… {} more sites changed (-n to list more)\n",
            rows.len() - count
        ));
    }
    out
}
