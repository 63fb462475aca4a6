//! Running the bench binaries: a clean environment, one line of JSON back; or the same under
//! callgrind, for an instruction count.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Environment variables that would change what is measured: every `ALLOC_TRACKER_*` and
/// jemalloc's options. They are removed from every child; each variant sets its own.
fn is_ours(key: &str) -> bool {
    key.starts_with("ALLOC_TRACKER_") || key == "_RJEM_MALLOC_CONF" || key == "MALLOC_CONF"
}

/// `program args…` with a clean environment (see [`is_ours`]), the exit report off, and
/// `env` set.
fn command(program: &Path, args: &[String], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if is_ours(&key.to_string_lossy()) {
            command.env_remove(key);
        }
    }
    command.env("ALLOC_TRACKER_REPORT", "off");
    command.envs(env.iter().copied());
    command
}

/// The last line of `stdout` as JSON.
fn last_json(stdout: &[u8]) -> Option<Value> {
    let stdout = String::from_utf8_lossy(stdout);
    serde_json::from_str(stdout.lines().last()?).ok()
}

/// Runs `binary args…` (see [`command`]) and returns the JSON line it printed last.
pub fn run_json(binary: &Path, args: &[String], env: &[(&str, &str)]) -> Result<Value, String> {
    let output = command(binary, args, env)
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {args:?} failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    last_json(&output.stdout).ok_or_else(|| {
        format!(
            "{} {args:?}: no JSON line in {:?}",
            binary.display(),
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Instructions callgrind counts for `binary args…` (see [`command`]), and the JSON line
/// the program printed, if any. `out` keeps callgrind's profile (for `callgrind_annotate`);
/// `None` throws it away.
pub fn instructions(
    binary: &Path,
    args: &[String],
    env: &[(&str, &str)],
    out: Option<&Path>,
) -> Result<(f64, Option<Value>), String> {
    let mut valgrind_args = vec![
        "--tool=callgrind".to_string(),
        format!(
            "--callgrind-out-file={}",
            out.map_or("/dev/null".into(), |p| p.display().to_string())
        ),
        binary.display().to_string(),
    ];
    valgrind_args.extend(args.iter().cloned());
    let output = command(Path::new("valgrind"), &valgrind_args, env)
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let count = stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no instruction count from callgrind: {stderr}"))?;
    Ok((count, last_json(&output.stdout)))
}

/// The first line `program args…` prints (empty when it cannot run).
pub fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}
