//! Instruction counts under callgrind: repeatable on a shared machine, where wall times move
//! by several percent. Every figure is a difference (a run of 2N minus a run of N), so
//! start-up and exit cancel out.
//!
//! * per 64 B alloc+free pair of each `fastpath` configuration;
//! * per unit (scale 0.02: 2000 requests) of the `service` workload under each allocator,
//!   and per alloc+free pair of it (pairs = the tracker's exact count of allocations);
//! * where the tracker's instructions go: the inclusive cost per call of `__rust_alloc`,
//!   `__rust_dealloc` and `__rust_realloc` (the allocator's entry points, the tracker's
//!   hooks inlined in them) from callgrind's profile, against System's, and the tracker's
//!   instructions by source line.

use crate::child::instructions;
use crate::plan::{variant, Bins, Build};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `service` scale of one unit; the runs are at one and two units.
pub const UNIT: f64 = 0.02;
/// Requests in a unit.
pub fn unit_requests() -> u64 {
    (alloc_tracker_benches::workload::SERVICE_ITERS as f64 * UNIT).round() as u64
}

/// The allocator entry points the profile is read for.
pub const ENTRY_POINTS: [&str; 4] = [
    "__rust_alloc",
    "__rust_dealloc",
    "__rust_realloc",
    "__rust_alloc_zeroed",
];

/// One allocator's `service` count.
pub struct ServiceCount {
    pub variant: &'static str,
    /// Instructions per unit.
    pub per_unit: f64,
    /// Allocations per unit (alloc+free pairs), as the tracker counted them exactly.
    pub pairs: Option<f64>,
}

/// Inclusive instructions and calls of a function over one unit (two-unit run minus one).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub inclusive: f64,
    pub calls: f64,
}

/// Everything counted.
pub struct Instructions {
    /// (configuration, build it was counted in, instructions per pair).
    pub pairs: Vec<(&'static str, Build, f64)>,
    pub service: Vec<ServiceCount>,
    /// Per variant (`system`, `tracker-off`, `tracker`): each entry point's cost per unit.
    pub entry_points: Vec<(&'static str, HashMap<&'static str, Cost>)>,
    /// Per variant (`system`, `tracker-off`, `tracker`): the own instructions of the entry
    /// points and the tracker's functions, per alloc+free pair of `service` (the inner
    /// allocator's excluded).
    pub path_totals: Vec<(&'static str, f64)>,
    /// The tracker's instructions (`tracker`, default rate) by source line: the entry
    /// points' and the tracker's functions' own, per alloc+free pair, most first.
    pub lines: Vec<SourceLine>,
}

/// Instructions of one source line.
pub struct SourceLine {
    pub file: String,
    pub line: u32,
    pub per_pair: f64,
}

impl SourceLine {
    /// The file, shortened: from the crate's directory for the tracker and the benches, from
    /// `library/` for the standard library.
    pub fn place(&self) -> String {
        let file = ["alloc-tracker/src/", "benches/src/", "library/"]
            .iter()
            .find_map(|root| self.file.find(root).map(|at| &self.file[at..]))
            .unwrap_or(&self.file);
        format!("{file}:{}", self.line)
    }

    /// The line's text, when the file is on this machine.
    pub fn text(&self) -> Option<String> {
        let source = std::fs::read_to_string(&self.file).ok()?;
        let text = source.lines().nth(self.line.checked_sub(1)? as usize)?;
        Some(text.trim().to_string())
    }
}

impl Instructions {
    /// The `service` count of `variant`.
    pub fn service(&self, variant: &str) -> Option<&ServiceCount> {
        self.service.iter().find(|c| c.variant == variant)
    }

    /// Instructions per `fastpath` pair of `config`.
    pub fn pair(&self, config: &str) -> Option<f64> {
        self.pairs.iter().find(|p| p.0 == config).map(|p| p.2)
    }

    /// The entry-point costs of `variant`.
    pub fn entry_points(&self, variant: &str) -> Option<&HashMap<&'static str, Cost>> {
        self.entry_points
            .iter()
            .find(|e| e.0 == variant)
            .map(|e| &e.1)
    }
}

/// Per function of a callgrind profile: self instructions, inclusive instructions, calls
/// into it.
#[derive(Clone, Copy, Debug, Default)]
struct Profiled {
    own: f64,
    inclusive: f64,
    calls: f64,
}

/// What [`read_profile`] reads: per function, and per source line of the functions
/// [`is_allocator_path`] names (their own instructions, by the file and line they come
/// from, inlined code included).
#[derive(Default)]
struct Profile {
    functions: HashMap<String, Profiled>,
    lines: HashMap<(String, u32), f64>,
}

/// The allocator's entry points (the tracker's hooks inlined in them) and the tracker's own
/// functions: where the tracker's instructions are.
fn is_allocator_path(function: &str) -> bool {
    // `alloc_tracker::…` and `<alloc_tracker::… as …>::…`, not `alloc_tracker_benches::…`.
    function.contains("alloc_tracker::")
        || ENTRY_POINTS
            .iter()
            .any(|e| function == *e || function.ends_with(&format!("::{e}")))
}

/// Reads a callgrind profile (`--dump-instr=no`, one event, line positions). A function's
/// cost may be listed under several files (code inlined from them): they are summed.
fn read_profile(path: &Path) -> Result<Profile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // "(12) name" defines id 12; "(12)" refers to it; "name" is uncompressed. Functions and
    // files have a table each.
    fn resolve(table: &mut HashMap<String, String>, spec: &str) -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|s| s.split_once(')')) {
            Some((id, rest)) if !rest.trim().is_empty() => {
                table.insert(id.to_string(), rest.trim().to_string());
                rest.trim().to_string()
            }
            Some((id, _)) => table.get(id).cloned().unwrap_or_default(),
            None => spec.to_string(),
        }
    }
    let (mut names, mut files) = (HashMap::new(), HashMap::new());
    let mut profile = Profile::default();
    let (mut current, mut callee) = (String::new(), String::new());
    let (mut function_file, mut file) = (String::new(), String::new());
    let mut tracked = false;
    let mut line_number: i64 = 0;
    let mut call_pending = false;
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("fl=") {
            function_file = resolve(&mut files, spec);
            file = function_file.clone();
        } else if let Some(spec) = line
            .strip_prefix("fi=")
            .or_else(|| line.strip_prefix("fe="))
        {
            file = resolve(&mut files, spec);
        } else if let Some(spec) = line
            .strip_prefix("cfi=")
            .or_else(|| line.strip_prefix("cfl="))
        {
            resolve(&mut files, spec);
        } else if let Some(spec) = line.strip_prefix("fn=") {
            current = resolve(&mut names, spec);
            file = function_file.clone();
            tracked = is_allocator_path(&current);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            callee = resolve(&mut names, spec);
        } else if let Some(rest) = line.strip_prefix("calls=") {
            // The target position is relative to the last cost line's, which it does not
            // change.
            let count: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0);
            profile.functions.entry(callee.clone()).or_default().calls += count;
            call_pending = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            let mut fields = line.split_whitespace();
            let position = fields.next().unwrap_or("*");
            line_number = match position.as_bytes().first() {
                Some(b'+') | Some(b'-') => line_number + position.parse::<i64>().unwrap_or(0),
                Some(b'*') => line_number,
                _ => position.parse().unwrap_or(0),
            };
            let cost: f64 = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
            let entry = profile.functions.entry(current.clone()).or_default();
            entry.inclusive += cost;
            if call_pending {
                call_pending = false;
            } else {
                entry.own += cost;
                if tracked {
                    *profile
                        .lines
                        .entry((file.clone(), line_number.max(0) as u32))
                        .or_default() += cost;
                }
            }
        }
    }
    Ok(profile)
}

/// The profile's entry for the function whose name ends with `name` (`__rustc::__rust_alloc`
/// or `__rust_alloc`, as the compiler mangled it), summed over matches.
fn find(profile: &Profile, name: &str) -> Profiled {
    let mut sum = Profiled::default();
    for (function, p) in &profile.functions {
        if function == name || function.ends_with(&format!("::{name}")) {
            sum.own += p.own;
            sum.inclusive += p.inclusive;
            sum.calls += p.calls;
        }
    }
    sum
}

/// A scratch directory for the profiles, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Counts everything (the `service` allocators: all of them, or with `quick` System and the
/// tracker alone).
pub fn run(bins: &Bins, quick: bool) -> Result<Instructions, String> {
    let no_fp = bins.dir(Build::NoFp).expect("the default build");
    let mut pairs = Vec::new();
    let mut configs = vec![
        ("system", Build::NoFp),
        ("off", Build::NoFp),
        ("default", Build::NoFp),
        ("exact-table", Build::NoFp),
        ("exact-dwarf", Build::NoFp),
    ];
    if bins.fp.is_some() {
        configs.push(("exact-fp", Build::Fp));
    }
    for (config, build) in configs {
        let fastpath = bins
            .dir(build)
            .expect("a build that exists")
            .join("fastpath");
        let n: u64 = if config.starts_with("exact") {
            2_000
        } else {
            200_000
        };
        let count = |n: u64| -> Result<f64, String> {
            Ok(instructions(&fastpath, &[config.to_string(), n.to_string()], &[], None)?.0)
        };
        let per_pair = (count(2 * n)? - count(n)?) / n as f64;
        eprintln!("callgrind: fastpath {config}: {per_pair:.1} instructions per pair");
        pairs.push((config, build, per_pair));
    }

    let scratch = Scratch(
        std::env::temp_dir().join(format!("bench-runner-callgrind-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0).map_err(|e| format!("{}: {e}", scratch.0.display()))?;
    let variants: &[&'static str] = if quick {
        &["system", "tracker-off", "tracker"]
    } else {
        &[
            "system",
            "tracker-off",
            "tracker",
            "jemalloc",
            "tracker-jemalloc",
            "jemalloc-prof",
        ]
    };
    let profiled = ["system", "tracker-off", "tracker"];
    let mut service = Vec::new();
    let mut profiles: HashMap<(&str, u32), Profile> = HashMap::new();
    for &name in variants {
        let v = variant(name);
        let mut counts = Vec::new();
        for units in [1u32, 2] {
            let args = [
                "service".to_string(),
                "--scale".to_string(),
                (UNIT * f64::from(units)).to_string(),
                "--no-report".to_string(),
            ];
            let out = profiled
                .contains(&name)
                .then(|| scratch.0.join(format!("{name}.{units}")));
            let (count, json) = instructions(&no_fp.join(v.binary), &args, v.env, out.as_deref())?;
            if let Some(path) = out {
                profiles.insert((name, units), read_profile(&path)?);
            }
            let allocs = json
                .as_ref()
                .and_then(|j: &Value| j["tracker"]["allocs"].as_f64());
            counts.push((count, allocs));
        }
        let per_unit = counts[1].0 - counts[0].0;
        let pairs = match (counts[0].1, counts[1].1) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        eprintln!(
            "callgrind: service {name}: {per_unit:.0} instructions per {UNIT} scale unit{}",
            pairs.map_or(String::new(), |p| format!(", {p:.0} allocations"))
        );
        service.push(ServiceCount {
            variant: name,
            per_unit,
            pairs,
        });
    }

    let mut entry_points = Vec::new();
    for name in profiled {
        let (Some(one), Some(two)) = (profiles.get(&(name, 1)), profiles.get(&(name, 2))) else {
            continue;
        };
        let mut costs = HashMap::new();
        for entry in ENTRY_POINTS {
            let (a, b) = (find(one, entry), find(two, entry));
            costs.insert(
                entry,
                Cost {
                    inclusive: b.inclusive - a.inclusive,
                    calls: b.calls - a.calls,
                },
            );
        }
        entry_points.push((name, costs));
    }
    let service_pairs = service
        .iter()
        .find(|c| c.variant == "tracker")
        .and_then(|c| c.pairs);
    let mut path_totals = Vec::new();
    for name in profiled {
        if let (Some(one), Some(two), Some(pairs)) = (
            profiles.get(&(name, 1)),
            profiles.get(&(name, 2)),
            service_pairs,
        ) {
            let total = |p: &Profile| p.lines.values().sum::<f64>();
            path_totals.push((name, (total(two) - total(one)) / pairs));
        }
    }
    let mut lines = Vec::new();
    if let (Some(one), Some(two), Some(pairs)) = (
        profiles.get(&("tracker", 1)),
        profiles.get(&("tracker", 2)),
        service_pairs,
    ) {
        for (place, cost) in &two.lines {
            let added = cost - one.lines.get(place).copied().unwrap_or(0.0);
            if added > 0.0 {
                lines.push(SourceLine {
                    file: place.0.clone(),
                    line: place.1,
                    per_pair: added / pairs,
                });
            }
        }
        lines.sort_by(|a, b| b.per_pair.total_cmp(&a.per_pair));
    }
    Ok(Instructions {
        pairs,
        service,
        entry_points,
        path_totals,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile() {
        let profile = "events: Ir\n\
            fl=(1) a.rs\n\
            fn=(1) main\n\
            5 10\n\
            cfn=(2) __rustc::__rust_alloc\n\
            calls=3 7\n\
            6 90\n\
            fn=(2)\n\
            7 80\n\
            fi=(2) b.rs\n\
            +1 10\n";
        let path = std::env::temp_dir().join(format!("callgrind-test-{}", std::process::id()));
        std::fs::write(&path, profile).unwrap();
        let read = read_profile(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let main = read.functions["main"];
        assert_eq!((main.own, main.inclusive, main.calls), (10.0, 100.0, 0.0));
        let alloc = find(&read, "__rust_alloc");
        assert_eq!((alloc.own, alloc.inclusive, alloc.calls), (90.0, 90.0, 3.0));
        // Lines of the allocator path only, by the file they come from.
        assert_eq!(read.lines[&("a.rs".to_string(), 7)], 80.0);
        assert_eq!(read.lines[&("b.rs".to_string(), 8)], 10.0);
        assert_eq!(read.lines.len(), 2);
    }
}
