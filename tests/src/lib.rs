//! Shared helpers for the integration tests.
//!
//! Each file in `tests/tests/` is its own test binary with its own `#[global_allocator]`
//! and `harness = false`: libtest's threads and output capture would allocate alongside
//! the code under test, and several scenarios need the tracker configured through the
//! environment *before* the first allocation, which only a fresh process can do. So a
//! binary either runs its checks directly ([`run_checks`]) or re-executes itself with a
//! scenario name and an environment ([`Scenario`]) and checks what the child did.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A numeric setting from the environment (a test's size knob), or `default` when it is
/// unset or not a number.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// xorshift64: a deterministic stream of choices from a non-zero seed.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs named checks, printing one line each and a libtest-style summary; exits non-zero
/// if any failed. A check fails by panicking.
pub fn run_checks(binary: &str, checks: &[(&str, fn())]) {
    // As libtest takes them: names to run (any part of one), `--skip PART` to leave out;
    // other flags are ignored.
    let (mut filter, mut skip) = (Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--skip" {
            skip.extend(args.next());
        } else if let Some(part) = arg.strip_prefix("--skip=") {
            skip.push(part.to_string());
        } else if !arg.starts_with('-') {
            filter.push(arg);
        }
    }
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if skip.iter().any(|s| name.contains(s.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(check) {
            Ok(()) => {
                passed += 1;
                println!("test {binary}::{name} ... ok ({:.2?})", started.elapsed());
            }
            Err(_) => {
                failed += 1;
                println!("test {binary}::{name} ... FAILED");
            }
        }
    }
    println!("{binary}: {passed} passed, {failed} failed");
    if failed > 0 || passed == 0 {
        std::process::exit(1);
    }
}

/// The scenario a child process was started for, if this process is one.
pub fn child_scenario() -> Option<String> {
    std::env::var("TRACKER_TEST_SCENARIO").ok()
}

/// A child run of the current test binary.
pub struct Scenario {
    name: String,
    env: Vec<(String, String)>,
    timeout: Duration,
}

/// What a child run did.
#[derive(Debug)]
pub struct Finished {
    /// Exit status, stdout, stderr.
    pub output: Output,
    /// How long it took.
    pub elapsed: Duration,
}

impl Finished {
    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
}

impl Scenario {
    /// Re-runs this test binary as `name`, with no `ALLOC_TRACKER_*` variables inherited.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            env: Vec::new(),
            timeout: Duration::from_secs(120),
        }
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.env.push((key.to_string(), value.as_ref().to_string()));
        self
    }

    /// Fails the run (killing the child) after this long: how hangs become failures.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the child and waits for it, killing it and panicking past the timeout.
    pub fn run(self) -> Finished {
        let mut command = Command::new(std::env::current_exe().expect("current exe"));
        for (key, _) in std::env::vars() {
            if key.starts_with("ALLOC_TRACKER_") {
                command.env_remove(key);
            }
        }
        // A panicking child that prints a backtrace loads its debug info into the heap
        // (std's own symbol cache, ~60 MiB in a debug build, live until exit), which would
        // then compete with the scenario's sites in its report: children never print one.
        command.env("RUST_BACKTRACE", "0");
        command.env("TRACKER_TEST_SCENARIO", &self.name);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        // A shell starts background jobs (`cargo test &`) with SIGINT ignored, and an ignored
        // disposition survives exec; the tracker rightly leaves an ignored signal alone, so
        // the signal scenarios would test nothing. Children start with the default actions.
        // SAFETY: the closure runs between fork and exec and only calls `signal`, which is
        // async-signal-safe and touches no memory of the parent.
        // The child leads a process group of its own, so that a timeout kills what it forked
        // too: a hung grandchild would otherwise hold the pipes open, and the test would wait
        // for them for ever instead of failing.
        #[cfg(unix)]
        unsafe {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
            command.pre_exec(|| {
                for signal in [libc::SIGINT, libc::SIGTERM] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn the test binary");
        // Read the pipes on threads so a chatty child cannot block on a full pipe.
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out = std::thread::spawn(move || read_all(&mut stdout));
        let err = std::thread::spawn(move || read_all(&mut stderr));
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > self.timeout {
                kill_group(&mut child);
                let _ = child.wait();
                panic!(
                    "scenario {:?} hung for {:?} (killed); stderr so far: {}",
                    self.name,
                    self.timeout,
                    String::from_utf8_lossy(&err.join().unwrap_or_default())
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Finished {
            output: Output {
                status,
                stdout: out.join().unwrap_or_default(),
                stderr: err.join().unwrap_or_default(),
            },
            elapsed: started.elapsed(),
        }
    }
}

/// Kills `child` and, on Unix, every process of its group (what it forked).
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: sends a signal to the group the child leads (`process_group(0)` above);
        // no memory is involved.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
}

fn read_all(reader: &mut impl std::io::Read) -> Vec<u8> {
    let mut buffer = Vec::new();
    let _ = reader.read_to_end(&mut buffer);
    buffer
}

/// A fresh, empty directory for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("alloc-tracker-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Reads a JSON report, panicking with the reason if it is missing or not JSON.
pub fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report at {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("report at {} is not JSON: {e}", path.display()))
}

/// The 1-based line of `source` (a path relative to this crate) that ends with the comment
/// `marker`; panics unless exactly one line does.
pub fn marker_line(source: &str, marker: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    let text = std::fs::read_to_string(&path).expect("read test source");
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim_end().ends_with(marker))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "marker {marker:?} must be on exactly one line of {source}"
    );
    lines[0] as u64
}

/// The site entry whose `site` is at `file` (suffix) and `line`, if any.
pub fn site_at<'a>(report: &'a Value, file: &str, line: u64) -> Option<&'a Value> {
    report["sites"].as_array()?.iter().find(|site| {
        site["site"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(file))
            && site["site"]["line"].as_u64() == Some(line)
    })
}

/// `value` as an integer, panicking with the field's name if it is not one.
pub fn int(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not an integer: {value}"))
}
