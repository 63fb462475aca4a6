//! What every demo shares: its options (`--count`, `--size`, `--seconds`, …), the pacing
//! of its work, and the seed-style progress lines
//! (`[AFTER 2s] Heap Alloc: 48 MB, Objects cached: 10000`).
//!
//! Every demo takes the same options; each sets its own defaults and help text through a
//! [`Demo`], so `cache-leak --help` speaks of requests and cached responses and
//! `handle-leak --help` of uploads and read buffers.

use alloc_tracker::units::counted;
use clap::{CommandFactory, FromArgMatches, Parser};
use std::time::{Duration, Instant};

/// The options every demo takes (parsed by [`start`], with the demo's own defaults).
#[derive(Parser, Clone, Debug, PartialEq)]
pub struct Opts {
    /// How many units of work to do (each demo says what a unit is).
    #[arg(long, value_name = "N")]
    pub count: u64,
    /// Bytes per unit of work (suffixes k, m, g count in KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub size: u64,
    /// Spread the work evenly over this many seconds; 0 runs it as fast as it goes.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub seconds: f64,
    /// The demo's own bound (each demo names this option and says what it bounds).
    #[arg(long, value_name = "N")]
    pub keep: u64,
    /// Print a progress line every N units instead of every 2 seconds (the default when
    /// --seconds is 0 is three lines in all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
}

/// A default value and the help text of one option of a demo.
#[derive(Clone, Copy, Debug)]
pub struct Knob {
    /// The option's name on the command line, without the dashes (only for [`Demo::keep`];
    /// `--count` and `--size` keep theirs).
    pub long: &'static str,
    /// The default, as it would be typed.
    pub default: &'static str,
    /// What the option means for this demo.
    pub help: &'static str,
}

/// What a demo tells the command line: its name, story, and defaults.
#[derive(Clone, Copy, Debug)]
pub struct Demo {
    /// The pattern's name: the binaries are `<name>-leak` and `<name>-fixed`.
    pub name: &'static str,
    /// One line on what the leaky binary does.
    pub leak: &'static str,
    /// One line on what the fixed binary does instead.
    pub fix: &'static str,
    /// The unit of work, plural (`requests`), for progress lines when not paced by time.
    pub unit: &'static str,
    /// `--count`.
    pub count: Knob,
    /// `--size`.
    pub size: Knob,
    /// `--seconds` by default.
    pub seconds: &'static str,
    /// The demo's bound (`--capacity`, `--slots`, …), or `None` when it has none.
    pub keep: Option<Knob>,
}

impl Demo {
    /// The binary's name: `<name>-leak` or `<name>-fixed`.
    pub fn binary(&self, leaky: bool) -> String {
        format!("{}-{}", self.name, if leaky { "leak" } else { "fixed" })
    }
}

/// Parses the command line of `demo`'s leaky or fixed binary (exits on `--help` or a bad
/// option) and prints the line that says what is about to run.
pub fn start(demo: &Demo, leaky: bool) -> Opts {
    let opts = parse_from(demo, leaky, std::env::args_os());
    println!(
        "{}: {} — {} {} of {} over {}",
        demo.binary(leaky),
        if leaky { demo.leak } else { demo.fix },
        opts.count,
        demo.unit,
        human_bytes(opts.size),
        if opts.seconds > 0.0 {
            format!("{} s", opts.seconds)
        } else {
            "no fixed time (--seconds 0)".to_string()
        },
    );
    opts
}

/// Parses `args` (the first being the program name) as `demo`'s options.
pub fn parse_from<I, T>(demo: &Demo, leaky: bool, args: I) -> Opts
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command(demo, leaky).get_matches_from(args);
    Opts::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The clap command of `demo`'s leaky or fixed binary.
pub fn command(demo: &Demo, leaky: bool) -> clap::Command {
    let name = demo.binary(leaky);
    let (this, other) = if leaky {
        (demo.leak, format!("{}-fixed: {}", demo.name, demo.fix))
    } else {
        (demo.fix, format!("{}-leak: {}", demo.name, demo.leak))
    };
    let mut cmd = Opts::command()
        .name(name.clone())
        .bin_name(name)
        .about(this)
        .after_help(format!(
            "The other side: {other}\n\n\
             The exit report (stderr by default; ALLOC_TRACKER_REPORT=stderr,heap.json) names \
             the line that holds the memory. ALLOC_TRACKER_RATE=1 tracks every allocation."
        ))
        .mut_arg("count", |a| {
            default(a, demo.count.default).help(demo.count.help)
        })
        .mut_arg("size", |a| {
            default(a, demo.size.default).help(demo.size.help)
        })
        .mut_arg("seconds", |a| default(a, demo.seconds));
    cmd = match demo.keep {
        Some(keep) => cmd.mut_arg("keep", |a| {
            default(a, keep.default).long(keep.long).help(keep.help)
        }),
        None => cmd.mut_arg("keep", |a| default(a, "0").hide(true)),
    };
    cmd
}

/// Gives `arg` (required as derived, since every demo has a value for it) a default.
fn default(arg: clap::Arg, value: &'static str) -> clap::Arg {
    arg.required(false).default_value(value)
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, shift) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 10),
        Some('m') => (&lower[..lower.len() - 1], 20),
        Some('g') => (&lower[..lower.len() - 1], 30),
        _ => (lower, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 5000, 64k, 10m)"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds ≥ 0")),
    }
}

/// Bytes as the seed prints them: MiB written `MB` (`48 MB`; one decimal below 10 MB), and
/// KiB written `KB` below 1 MB.
pub fn human_bytes(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= 10.0 * MIB {
        format!("{:.0} MB", b / MIB)
    } else if b >= MIB {
        format!("{:.1} MB", b / MIB)
    } else if b >= 10.0 * KIB {
        format!("{:.0} KB", b / KIB)
    } else if b >= KIB {
        format!("{:.1} KB", b / KIB)
    } else {
        format!("{bytes} B")
    }
}

/// The byte that unit `id`'s data is filled with: never 0, so the data is written like
/// data read (not left to `calloc`'s zero pages), and every unit takes the same allocation
/// path (`vec![0; n]` calls `alloc_zeroed`: another stack for the same line).
pub fn fill(id: u64) -> u8 {
    1 + (id % 251) as u8
}

/// Threads of this program now, the tracker's own left out (0 where the platform does not
/// tell).
pub fn threads() -> u64 {
    alloc_tracker::gauges().threads.unwrap_or(0)
}

/// Open file descriptors of this program now, the tracker's own left out (0 where the
/// platform does not tell).
pub fn open_fds() -> u64 {
    alloc_tracker::gauges().open_fds.unwrap_or(0)
}

/// Paces a demo's units of work over `--seconds` and prints progress lines: every 2 s of
/// the run when paced (`[AFTER 2s] …`), else every `--every` units (`[AFTER 500 uploads] …`).
pub struct Progress {
    start: Instant,
    count: u64,
    seconds: f64,
    unit: &'static str,
    every: Option<u64>,
    next_mark: u64,
    stepped: u64,
    last_printed: Option<u64>,
}

impl Progress {
    /// Starts the clock for `opts.count` units of `demo`.
    pub fn new(demo: &Demo, opts: &Opts) -> Self {
        let every = match opts.every {
            Some(n) => Some(n),
            None if opts.seconds > 0.0 => None,
            None => Some(opts.count.div_ceil(3).max(1)),
        };
        Self {
            start: Instant::now(),
            count: opts.count,
            seconds: opts.seconds,
            unit: demo.unit,
            every,
            next_mark: 2,
            stepped: 0,
            last_printed: None,
        }
    }

    /// Call after unit number `done` (counting from 1; steps may skip units): waits until
    /// that unit is due (when paced), then prints a progress line if one is due. `what`
    /// says what grows (`Objects cached: 10000`).
    pub fn step(&mut self, done: u64, what: impl FnOnce() -> String) {
        // When this unit is due (paced runs wait for it): progress marks go by this, so
        // the line at 2 s of a 5000-a-second run says 10000, not 9995.
        let mut due = 0.0;
        if self.seconds > 0.0 && self.count > 0 {
            due = self.seconds * done as f64 / self.count as f64;
            if let Some(wait) = Duration::from_secs_f64(due).checked_sub(self.start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let previous = std::mem::replace(&mut self.stepped, done);
        let label = match self.every {
            // A multiple of `every` reached since the last step.
            Some(every) if done / every > previous / every => Some(format!("{done} {}", self.unit)),
            Some(_) => None,
            None => {
                // The mark at the end of the run is left to `finish`.
                let before_end = (self.next_mark as f64) < self.seconds - 1e-9;
                if before_end && due + 1e-9 >= self.next_mark as f64 {
                    let label = format!("{}s", self.next_mark);
                    while self.next_mark as f64 <= due + 1e-9 {
                        self.next_mark += 2;
                    }
                    Some(label)
                } else {
                    None
                }
            }
        };
        if let Some(label) = label {
            self.print(&label, what());
            self.last_printed = Some(done);
        }
    }

    /// Prints the closing line after unit number `done`, unless [`Progress::step`] just
    /// printed one for it.
    pub fn finish(&mut self, done: u64, what: impl FnOnce() -> String) {
        if self.last_printed == Some(done) && done > 0 {
            return;
        }
        let label = if self.every.is_some() || self.seconds == 0.0 {
            format!("{done} {}", self.unit)
        } else {
            format!("{:.0}s", self.start.elapsed().as_secs_f64())
        };
        self.print(&label, what());
        self.last_printed = Some(done);
    }

    fn print(&self, label: &str, what: String) {
        let heap = human_bytes(alloc_tracker::stats().live_bytes);
        println!("[AFTER {label}] Heap Alloc: {heap}, {what}");
    }
}

/// Ends the demo the way a service is stopped: `std::process::exit`, with everything it
/// still holds alive, so the exit report shows what a long-running process would keep.
pub fn exit() -> ! {
    let stats = alloc_tracker::stats();
    println!(
        "At exit: Heap Alloc: {}, peak {}, {}, {}",
        human_bytes(stats.live_bytes),
        human_bytes(stats.peak_live_bytes),
        counted(threads(), "thread"),
        counted(open_fds(), "open fd"),
    );
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: Demo = Demo {
        name: "x",
        leak: "leaks",
        fix: "does not",
        unit: "things",
        count: Knob {
            long: "count",
            default: "10",
            help: "things",
        },
        size: Knob {
            long: "size",
            default: "5k",
            help: "bytes a thing",
        },
        seconds: "6",
        keep: Some(Knob {
            long: "capacity",
            default: "7",
            help: "things kept",
        }),
    };

    #[test]
    fn defaults_and_renamed_bound() {
        let opts = parse_from(&DEMO, true, ["x-leak"]);
        assert_eq!(
            (opts.count, opts.size, opts.seconds, opts.keep),
            (10, 5120, 6.0, 7)
        );
        let opts = parse_from(&DEMO, false, ["x-fixed", "--capacity", "3", "--size", "2m"]);
        assert_eq!((opts.keep, opts.size), (3, 2 << 20));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5000"), Ok(5000));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999g").is_err());
    }

    #[test]
    fn help_speaks_of_the_demo() {
        let help = command(&DEMO, true).render_help().to_string();
        assert!(help.contains("--capacity"), "{help}");
        assert!(help.contains("things kept"), "{help}");
        assert!(!help.contains("--keep"), "{help}");
    }

    #[test]
    fn bytes_read_like_the_seed() {
        assert_eq!(human_bytes(50_000_000), "48 MB");
        assert_eq!(human_bytes(3 << 20), "3.0 MB");
        assert_eq!(human_bytes(100 * 1024), "100 KB");
        assert_eq!(human_bytes(2048), "2.0 KB");
        assert_eq!(human_bytes(999), "999 B");
    }
}
