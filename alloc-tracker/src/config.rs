//! Configuration: defaults in code, overridden by `ALLOC_TRACKER_*` environment variables,
//! overridden by the runtime setters.
//!
//! The environment is read once, with `getenv(3)` (which takes no lock, unlike
//! `std::env::var`, whose lock a thread inside `set_var` holds while it allocates). A bad
//! value prints one line on stderr and the default is used: configuration never stops the
//! host program.

use crate::export::Format;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Mean bytes between samples when nothing else is configured (512 KiB, as Go and tcmalloc).
pub const DEFAULT_SAMPLE_RATE: u64 = 512 * 1024;
/// Frames kept per stack when nothing else is configured.
pub const DEFAULT_DEPTH: usize = 64;
/// The most frames a stack may keep (`ALLOC_TRACKER_DEPTH` is capped here).
pub const MAX_DEPTH: usize = 128;
/// Distinct stacks kept when nothing else is configured; later ones are counted together
/// as `[other stacks]`.
pub const DEFAULT_MAX_STACKS: usize = 16_384;

/// How stacks are captured at a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unwind {
    /// Walk the frame-pointer chain: about 1 ns a frame; right only for a program built
    /// entirely with `-C force-frame-pointers=yes` (std has them; the program's own code
    /// and its dependencies, by default, do not).
    FramePointer,
    /// The unwind tables (`.eh_frame`) of the loaded objects, each return address's rule
    /// cached: about 6 ns a frame once warm, right for code built without frame pointers
    /// (Cargo's default). A stack it cannot unwind exactly (code without unwind tables, a
    /// signal frame) is captured by DWARF instead and counted in the report
    /// (`tracker.dwarf_fallbacks`). Linux on x86_64 and aarch64; DWARF elsewhere.
    Table,
    /// DWARF unwinding through the `backtrace` crate: about 100 ns a frame, always right.
    Dwarf,
    /// The unwind tables where there are (Linux on x86_64 and aarch64): checking frame
    /// pointers on some samples cannot vouch for the others, since a program's own code
    /// usually has none while std keeps them. Elsewhere, frame pointers while they agree
    /// with DWARF on checked samples (the first 32, then one in 1024), DWARF for good after
    /// the first disagreement.
    Auto,
}

impl Unwind {
    pub(crate) const fn to_code(self) -> u8 {
        match self {
            Unwind::FramePointer => 1,
            Unwind::Dwarf => 2,
            Unwind::Auto => 3,
            Unwind::Table => 4,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<Unwind> {
        match code {
            1 => Some(Unwind::FramePointer),
            2 => Some(Unwind::Dwarf),
            3 => Some(Unwind::Auto),
            4 => Some(Unwind::Table),
            _ => None,
        }
    }
}

/// Where the report goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The text report, on standard error.
    Stderr,
    /// A file, in the format its name ends with.
    File {
        /// The file (a fork child writes `name.<pid>.ext` instead).
        path: PathBuf,
        /// The format its ending picks.
        format: Format,
    },
}

/// The settings read from the environment; `None` where a variable is unset or invalid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvSettings {
    pub(crate) rate: Option<u64>,
    pub(crate) report: Option<Vec<Destination>>,
    pub(crate) depth: Option<usize>,
    pub(crate) unwind: Option<Unwind>,
    pub(crate) max_stacks: Option<usize>,
    /// `ALLOC_TRACKER_HTTP`: where to serve `/debug/pprof` (used with the `http` feature).
    pub(crate) http: Option<std::net::SocketAddr>,
    /// `ALLOC_TRACKER_INTERVAL`: the checkpoint schedule.
    pub(crate) interval: Option<Schedule>,
    /// `ALLOC_TRACKER_LIMIT`: the memory limit the emergency level is judged against.
    pub(crate) limit: Option<u64>,
    /// `ALLOC_TRACKER_SIGNAL`: the signal that writes a report on demand.
    pub(crate) signal: Option<i32>,
    /// `ALLOC_TRACKER_PROGRAM_CRATES`: crates (or packages) that are the program's, and
    /// `-name` for dependencies, where reading the executable tells wrong (see `origin`).
    pub(crate) program_crates: Option<String>,
}

static ENV: OnceLock<EnvSettings> = OnceLock::new();

/// Marks "no value set" in the runtime overrides.
const UNSET: u64 = u64::MAX;
static RUNTIME_RATE: AtomicU64 = AtomicU64::new(UNSET);
static RUNTIME_UNWIND: AtomicU8 = AtomicU8::new(0);

/// The environment settings, read (and warned about) on first use.
pub(crate) fn env() -> &'static EnvSettings {
    ENV.get_or_init(|| {
        let (settings, warnings) = parse_env(crate::sys::getenv);
        for warning in warnings {
            crate::output::warn(&warning);
        }
        settings
    })
}

/// Reads every `ALLOC_TRACKER_*` variable through `lookup`; returns the settings and one
/// warning line per bad value.
pub(crate) fn parse_env(lookup: impl Fn(&str) -> Option<String>) -> (EnvSettings, Vec<String>) {
    let mut warnings = Vec::new();
    let mut read = |name: &str, parse: &dyn Fn(&str) -> Result<_, String>| {
        let value = lookup(name)?;
        parse(&value)
            .map_err(|why| warnings.push(format!("ignoring {name}={value:?}: {why}")))
            .ok()
    };
    let rate = read("ALLOC_TRACKER_RATE", &|v| {
        Ok(Setting::Rate(parse_bytes(v)?))
    });
    let depth = read("ALLOC_TRACKER_DEPTH", &|v| {
        Ok(Setting::Count(parse_count(v, 1, MAX_DEPTH)?))
    });
    let unwind = read("ALLOC_TRACKER_UNWIND", &|v| {
        Ok(Setting::Unwind(parse_unwind(v)?))
    });
    let max_stacks = read("ALLOC_TRACKER_MAX_STACKS", &|v| {
        Ok(Setting::Count(parse_count(v, 1, 1 << 24)?))
    });
    let http = read("ALLOC_TRACKER_HTTP", &|v| {
        Ok(Setting::Address(parse_http(v)?))
    });
    let interval = read("ALLOC_TRACKER_INTERVAL", &|v| {
        Ok(Setting::Interval(parse_schedule(v)?))
    });
    let limit = read("ALLOC_TRACKER_LIMIT", &|v| {
        Ok(Setting::Limit(parse_limit(v)?))
    });
    let signal = read("ALLOC_TRACKER_SIGNAL", &|v| {
        Ok(Setting::Signal(parse_signal(v)?))
    });
    let program_crates = read("ALLOC_TRACKER_PROGRAM_CRATES", &|v| {
        Ok(Setting::Crates(parse_crates(v)?))
    });
    let report = read("ALLOC_TRACKER_REPORT", &|v| {
        let (destinations, skipped) = parse_report(v)?;
        Ok(Setting::Report(destinations, skipped))
    });
    let mut settings = EnvSettings::default();
    if let Some(Setting::Rate(bytes)) = rate {
        settings.rate = Some(bytes);
    }
    if let Some(Setting::Count(frames)) = depth {
        settings.depth = Some(frames);
    }
    if let Some(Setting::Unwind(unwind)) = unwind {
        settings.unwind = Some(unwind);
    }
    if let Some(Setting::Count(stacks)) = max_stacks {
        settings.max_stacks = Some(stacks);
    }
    if let Some(Setting::Address(address)) = http {
        settings.http = Some(address);
    }
    if let Some(Setting::Interval(interval)) = interval {
        settings.interval = Some(interval);
    }
    if let Some(Setting::Limit(bytes)) = limit {
        settings.limit = Some(bytes);
    }
    if let Some(Setting::Signal(signal)) = signal {
        settings.signal = Some(signal);
    }
    if let Some(Setting::Crates(list)) = program_crates {
        settings.program_crates = Some(list);
    }
    if let Some(Setting::Report(destinations, skipped)) = report {
        settings.report = Some(destinations);
        warnings.extend(skipped);
    }
    (settings, warnings)
}

/// One parsed variable's value.
enum Setting {
    Rate(u64),
    Count(usize),
    Unwind(Unwind),
    Interval(Schedule),
    Limit(u64),
    Report(Vec<Destination>, Vec<String>),
    Address(std::net::SocketAddr),
    Signal(i32),
    Crates(String),
}

/// Parses `ALLOC_TRACKER_SIGNAL`: `usr1`, `usr2` or `hup` (any case, `SIG` prefix allowed;
/// see `sys::REPORT_SIGNALS`). Refused where the OS has no POSIX signals.
fn parse_signal(value: &str) -> Result<i32, String> {
    if crate::sys::REPORT_SIGNALS.is_empty() {
        return Err("this platform has no POSIX signals".into());
    }
    let name = value.trim().to_ascii_lowercase();
    let name = name.strip_prefix("sig").unwrap_or(&name);
    crate::sys::REPORT_SIGNALS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(_, signal)| signal)
        .ok_or_else(|| "expected usr1, usr2 or hup".to_string())
}

/// The name of a signal `ALLOC_TRACKER_SIGNAL` may name, as users write it (`SIGUSR2`).
#[cfg(unix)] // read by `signals`, which installs nothing elsewhere
pub(crate) fn signal_name(signal: i32) -> String {
    crate::sys::REPORT_SIGNALS
        .iter()
        .find(|&&(_, known)| known == signal)
        .map_or_else(
            || format!("signal {signal}"),
            |(name, _)| format!("SIG{}", name.to_ascii_uppercase()),
        )
}

/// Parses `ALLOC_TRACKER_HTTP`: `IP:PORT` (`localhost:PORT` is 127.0.0.1). Without the
/// `http` feature every value is refused, with the reason.
fn parse_http(value: &str) -> Result<std::net::SocketAddr, String> {
    if !cfg!(feature = "http") {
        return Err("this build has no `http` feature".into());
    }
    let value = value.trim();
    let value = match value.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => value.to_string(),
    };
    value
        .parse()
        .map_err(|_| "expected an address such as 127.0.0.1:6060".into())
}

/// Parses `ALLOC_TRACKER_PROGRAM_CRATES`: crate or package names separated by commas, each
/// a dependency's if it starts with `-` (`myproj-core,-md5`).
fn parse_crates(value: &str) -> Result<String, String> {
    let names: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    let is_name = |name: &str| {
        let name = name.strip_prefix('-').unwrap_or(name);
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if names.is_empty() || !names.iter().all(|name| is_name(name)) {
        return Err("expected crate names separated by commas, `-name` for a dependency".into());
    }
    Ok(names.join(","))
}

/// Parses a byte count: a whole number with an optional `k`/`m`/`g` (×1024) suffix, e.g.
/// `524288`, `512k`, `512KiB`, `1m`.
pub(crate) fn parse_bytes(value: &str) -> Result<u64, String> {
    let value = value.trim();
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => lower.split_at(at),
        None => (lower.as_str(), ""),
    };
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err("expected a byte count such as 524288 or 512k".into()),
    };
    if digits.is_empty() {
        return Err("expected a byte count such as 524288 or 512k".into());
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| "the number is too large".to_string())?;
    number
        .checked_mul(multiplier)
        .filter(|&bytes| bytes <= 1 << 50)
        .ok_or_else(|| "the rate is larger than 1 PiB".to_string())
}

/// When checkpoints are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// The default: often at first, then less often as the run goes on (see `checkpoints`).
    Adaptive,
    /// Every this long (`ALLOC_TRACKER_INTERVAL=1s`).
    Every(Duration),
    /// Never on a timer (`ALLOC_TRACKER_INTERVAL=off`): only [`crate::checkpoint`].
    Off,
}

/// Parses `ALLOC_TRACKER_INTERVAL`: a period, `auto` or `off`.
fn parse_schedule(value: &str) -> Result<Schedule, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(Schedule::Adaptive),
        "off" => Ok(Schedule::Off),
        _ => parse_duration(value)
            .map(Schedule::Every)
            .map_err(|why| format!("{why}; or auto, or off")),
    }
}

/// Parses `ALLOC_TRACKER_LIMIT`: a byte count (`512m`, `2g`), at least 1 MiB.
fn parse_limit(value: &str) -> Result<u64, String> {
    let bytes = parse_bytes(value).map_err(|_| "expected a size such as 512m or 2g".to_string())?;
    if bytes < 1 << 20 {
        return Err("a memory limit under 1 MiB is not a limit a program runs in".into());
    }
    Ok(bytes)
}

/// Parses a checkpoint period: a number with `ms`, `s`, `m` or `h` (`s` if none), from
/// 10 ms to a day, e.g. `1s`, `500ms`, `2m`, `0.5`.
pub(crate) fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim().to_ascii_lowercase();
    let expected = "expected a period such as 1s, 500ms or 2m (10ms to 24h)";
    let at = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(at);
    let number: f64 = number.parse().map_err(|_| expected.to_string())?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(expected.into()),
    };
    if !(0.01..=86_400.0).contains(&seconds) {
        return Err(expected.into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_count(value: &str, min: usize, max: usize) -> Result<usize, String> {
    let number: usize = value
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number from {min} to {max}"))?;
    if (min..=max).contains(&number) {
        Ok(number)
    } else {
        Err(format!("expected a whole number from {min} to {max}"))
    }
}

fn parse_unwind(value: &str) -> Result<Unwind, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "fp" => Ok(Unwind::FramePointer),
        "table" => Ok(Unwind::Table),
        "dwarf" => Ok(Unwind::Dwarf),
        "auto" => Ok(Unwind::Auto),
        _ => Err("expected fp, table, dwarf or auto".into()),
    }
}

/// Parses the destination list; entries it cannot serve are skipped with a warning each.
fn parse_report(value: &str) -> Result<(Vec<Destination>, Vec<String>), String> {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(format!(
            "expected stderr, off, or file paths ending in {}",
            Format::endings()
        ));
    }
    if entries.contains(&"off") {
        let ignored = match entries.len() {
            1 => Vec::new(),
            _ => vec![format!(
                "ALLOC_TRACKER_REPORT={value:?}: `off` wins, no report is written"
            )],
        };
        return Ok((Vec::new(), ignored));
    }
    let mut destinations = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        if entry == "stderr" {
            destinations.push(Destination::Stderr);
            continue;
        }
        let path = PathBuf::from(entry);
        match Format::from_path(&path) {
            Some(format) => destinations.push(Destination::File { path, format }),
            None if entry.ends_with(".svg") => skipped.push(format!(
                "ignoring report destination {entry:?}: this build has no `svg` feature"
            )),
            None => skipped.push(format!(
                "ignoring report destination {entry:?}: expected stderr or a path ending in {}",
                Format::endings()
            )),
        }
    }
    Ok((destinations, skipped))
}

/// Sets the sampling rate for every tracker from now on, overriding code and environment.
pub(crate) fn set_runtime_rate(bytes: u64) {
    RUNTIME_RATE.store(bytes.min(1 << 50), Ordering::Relaxed);
}

/// Sets the unwinder for every tracker from now on, overriding code and environment.
pub(crate) fn set_runtime_unwind(unwind: Unwind) {
    RUNTIME_UNWIND.store(unwind.to_code(), Ordering::Relaxed);
}

/// The rate in force for a tracker whose code asked for `code_rate` (`None`: nothing).
pub(crate) fn effective_rate(code_rate: Option<u64>) -> u64 {
    let runtime = RUNTIME_RATE.load(Ordering::Relaxed);
    if runtime != UNSET {
        return runtime;
    }
    env().rate.or(code_rate).unwrap_or(DEFAULT_SAMPLE_RATE)
}

/// The unwinder in force for a tracker whose code asked for `code_unwind`.
pub(crate) fn effective_unwind(code_unwind: Option<Unwind>) -> Unwind {
    Unwind::from_code(RUNTIME_UNWIND.load(Ordering::Relaxed))
        .or(env().unwind)
        .or(code_unwind)
        .unwrap_or(Unwind::Auto)
}

/// Frames kept per stack.
pub(crate) fn depth() -> usize {
    env().depth.unwrap_or(DEFAULT_DEPTH)
}

/// Distinct stacks kept before the rest are pooled as `[other stacks]`.
pub(crate) fn max_stacks() -> usize {
    env().max_stacks.unwrap_or(DEFAULT_MAX_STACKS)
}

/// When checkpoints are taken.
pub(crate) fn schedule() -> Schedule {
    env().interval.unwrap_or(Schedule::Adaptive)
}

/// The memory limit set with `ALLOC_TRACKER_LIMIT`, if any.
pub(crate) fn limit() -> Option<u64> {
    env().limit
}

/// The signal that writes a report on demand, if one is configured.
#[cfg(unix)] // read by `signals`, which installs nothing elsewhere
pub(crate) fn report_signal() -> Option<i32> {
    env().signal
}

/// Where the exit report goes.
pub(crate) fn destinations() -> Vec<Destination> {
    env()
        .report
        .clone()
        .unwrap_or_else(|| vec![Destination::Stderr])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> (EnvSettings, Vec<String>) {
        parse_env(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn byte_counts_take_suffixes() {
        assert_eq!(parse_bytes("524288"), Ok(524288));
        assert_eq!(parse_bytes("512k"), Ok(524288));
        assert_eq!(parse_bytes(" 512KiB "), Ok(524288));
        assert_eq!(parse_bytes("1m"), Ok(1 << 20));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("1"), Ok(1));
    }

    #[test]
    fn bad_byte_counts_are_rejected() {
        for bad in [
            "",
            "-1",
            "abc",
            "1.5k",
            "12q",
            "99999999999999999999999",
            "2000000g",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn schedules_and_limits_are_read() {
        let (settings, warnings) = parse(&[
            ("ALLOC_TRACKER_INTERVAL", "off"),
            ("ALLOC_TRACKER_LIMIT", "512m"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(settings.interval, Some(Schedule::Off));
        assert_eq!(settings.limit, Some(512 << 20));
        let (settings, _) = parse(&[("ALLOC_TRACKER_INTERVAL", "2s")]);
        assert_eq!(
            settings.interval,
            Some(Schedule::Every(Duration::from_secs(2)))
        );
        let (settings, _) = parse(&[("ALLOC_TRACKER_INTERVAL", "Auto")]);
        assert_eq!(settings.interval, Some(Schedule::Adaptive));
        let (settings, warnings) = parse(&[
            ("ALLOC_TRACKER_INTERVAL", "sometimes"),
            ("ALLOC_TRACKER_LIMIT", "10k"),
        ]);
        assert_eq!((settings.interval, settings.limit), (None, None));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("or auto, or off"), "{warnings:?}");
    }

    #[test]
    fn periods_take_units() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["", "fast", "0", "-1s", "1ms", "2d", "999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_unwinder_is_named_and_coded() {
        for (name, unwind) in [
            ("fp", Unwind::FramePointer),
            ("table", Unwind::Table),
            ("DWARF", Unwind::Dwarf),
            (" auto ", Unwind::Auto),
        ] {
            assert_eq!(parse_unwind(name), Ok(unwind), "{name:?}");
            assert_eq!(Unwind::from_code(unwind.to_code()), Some(unwind));
        }
        assert_eq!(Unwind::from_code(0), None, "0 means unset");
    }

    #[test]
    fn good_environment_is_read() {
        let (settings, warnings) = parse(&[
            ("ALLOC_TRACKER_RATE", "1"),
            ("ALLOC_TRACKER_DEPTH", "16"),
            ("ALLOC_TRACKER_UNWIND", "dwarf"),
            ("ALLOC_TRACKER_REPORT", "stderr, out/heap.json"),
            ("ALLOC_TRACKER_PROGRAM_CRATES", " myproj-core, -md5 ,"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(settings.program_crates.as_deref(), Some("myproj-core,-md5"));
        assert_eq!(settings.rate, Some(1));
        assert_eq!(settings.depth, Some(16));
        assert_eq!(settings.unwind, Some(Unwind::Dwarf));
        assert_eq!(
            settings.report,
            Some(vec![
                Destination::Stderr,
                file("out/heap.json", Format::Json)
            ])
        );
    }

    #[test]
    fn the_report_signal_is_read_where_there_are_signals() {
        let (settings, warnings) = parse(&[("ALLOC_TRACKER_SIGNAL", "SIGUSR2")]);
        #[cfg(unix)]
        {
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(settings.signal, Some(libc::SIGUSR2));
            assert_eq!(signal_name(libc::SIGUSR2), "SIGUSR2");
        }
        #[cfg(not(unix))]
        {
            assert_eq!(settings.signal, None);
            assert!(warnings[0].contains("no POSIX signals"), "{warnings:?}");
        }
    }

    #[test]
    fn bad_environment_warns_once_per_variable_and_falls_back() {
        let (settings, warnings) = parse(&[
            ("ALLOC_TRACKER_RATE", "lots"),
            ("ALLOC_TRACKER_DEPTH", "0"),
            ("ALLOC_TRACKER_UNWIND", "magic"),
            ("ALLOC_TRACKER_REPORT", ""),
            ("ALLOC_TRACKER_MAX_STACKS", "-5"),
            ("ALLOC_TRACKER_SIGNAL", "kill"),
            ("ALLOC_TRACKER_PROGRAM_CRATES", "my crate, -"),
        ]);
        assert_eq!(settings, EnvSettings::default());
        assert_eq!(warnings.len(), 7, "{warnings:?}");
        assert!(warnings[0].contains("ALLOC_TRACKER_RATE=\"lots\""));
    }

    fn file(path: &str, format: Format) -> Destination {
        Destination::File {
            path: PathBuf::from(path),
            format,
        }
    }

    #[test]
    fn every_export_format_is_picked_by_its_ending() {
        let (settings, warnings) = parse(&[(
            "ALLOC_TRACKER_REPORT",
            "a.json,b.dhat.json,c.pb.gz,d.folded,e.svg,f.txt",
        )]);
        let mut expected = vec![
            file("a.json", Format::Json),
            file("b.dhat.json", Format::Dhat),
            file("c.pb.gz", Format::Pprof),
            file("d.folded", Format::Folded),
        ];
        #[cfg(feature = "svg")]
        expected.push(file("e.svg", Format::Svg));
        expected.push(file("f.txt", Format::Text));
        assert_eq!(settings.report, Some(expected));
        assert_eq!(
            warnings.len(),
            usize::from(!cfg!(feature = "svg")),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_http_address_is_parsed() {
        let (settings, warnings) = parse(&[("ALLOC_TRACKER_HTTP", "localhost:6060")]);
        if cfg!(feature = "http") {
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(settings.http, Some("127.0.0.1:6060".parse().unwrap()));
            let (settings, warnings) = parse(&[("ALLOC_TRACKER_HTTP", "everywhere")]);
            assert_eq!(settings.http, None);
            assert!(warnings[0].contains("127.0.0.1:6060"), "{warnings:?}");
        } else {
            assert_eq!(settings.http, None);
            assert!(warnings[0].contains("no `http` feature"), "{warnings:?}");
        }
    }

    #[test]
    fn off_silences_the_report_and_unknown_formats_are_skipped() {
        let (settings, warnings) = parse(&[("ALLOC_TRACKER_REPORT", "off")]);
        assert_eq!(settings.report, Some(vec![]));
        assert!(warnings.is_empty());
        let (settings, warnings) = parse(&[("ALLOC_TRACKER_REPORT", "off,heap.json")]);
        assert_eq!(settings.report, Some(vec![]));
        assert_eq!(
            warnings.len(),
            1,
            "off with other destinations is said once"
        );
        let (settings, warnings) = parse(&[("ALLOC_TRACKER_REPORT", "heap.png,stderr")]);
        assert_eq!(settings.report, Some(vec![Destination::Stderr]));
        assert_eq!(warnings.len(), 1);
    }
}
