//! The test side: start a program with a report destination, wait for its lines, signal
//! it, and read what it left behind.
//!
//! Every wait is bounded: a program that hangs is killed and the test fails with what it
//! printed so far. A program is killed when its [`Service`] is dropped, so a failing
//! assertion leaves no process behind.

use serde_json::Value;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The marker comment on the line where each program keeps its 48 MiB.
pub const LEAK_MARKER: &str = "// leak-site";

/// Serializes the tests of one test binary: several of them measure how a program behaves
/// while it is busy (reports written while it is killed, threads progressing during a
/// `fork`), which two programs sharing this machine's two cores would blur.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh directory for one test's reports; removed when dropped unless the test failed
/// (then its files are kept to look at).
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<tmp>/services-<pid>-<name>`, empty.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("services-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the scratch directory");
        Self { path }
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A running program.
pub struct Service {
    name: String,
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Receiver<Vec<u8>>,
    started: Instant,
    status: Option<ExitStatus>,
}

/// How a program ended.
#[derive(Debug)]
pub struct Ended {
    /// Its exit status.
    pub status: ExitStatus,
    /// Every line it printed on stdout.
    pub stdout: Vec<String>,
    /// What it printed on stderr.
    pub stderr: String,
    /// From start to end.
    pub elapsed: Duration,
}

impl Ended {
    /// Whether it printed exactly this line.
    pub fn printed(&self, line: &str) -> bool {
        self.stdout.iter().any(|l| l == line)
    }

    /// The first line it printed that starts with `prefix`.
    pub fn line_starting(&self, prefix: &str) -> Option<&str> {
        self.stdout
            .iter()
            .find(|l| l.starts_with(prefix))
            .map(String::as_str)
    }

    /// Status, stdout and the end of stderr, for assertion messages.
    pub fn describe(&self) -> String {
        describe(&self.status, &self.stdout, &self.stderr)
    }

    /// Asserts a graceful end: exit code 0 and `clean shutdown` printed.
    /// Asserts that the program exited with status 0.
    pub fn assert_exited_ok(&self) {
        assert_eq!(
            self.status.code(),
            Some(0),
            "expected exit 0; {}",
            self.describe()
        );
    }

    /// Asserts exit 0 after the program said `clean shutdown`.
    pub fn assert_clean_shutdown(&self) {
        assert_eq!(
            self.status.code(),
            Some(0),
            "expected exit 0; {}",
            self.describe()
        );
        assert!(
            self.printed("clean shutdown"),
            "no `clean shutdown` line; {}",
            self.describe()
        );
    }

    /// Asserts that the process was ended by `signal` (a raised default action).
    pub fn assert_killed_by(&self, signal: libc::c_int) {
        assert_eq!(
            self.status.signal(),
            Some(signal),
            "expected death by signal {signal}; {}",
            self.describe()
        );
    }

    /// How many text reports it printed on stderr.
    pub fn text_reports(&self) -> usize {
        self.stderr.matches("== alloc-tracker:").count()
    }
}

fn describe(status: &ExitStatus, stdout: &[String], stderr: &str) -> String {
    format!(
        "status {status:?}; stdout {stdout:?}; stderr (end) {:?}",
        tail(stderr)
    )
}

/// The end of `text`: a text report can be long, and its end is enough to see how the
/// program ended.
fn tail(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars[chars.len().saturating_sub(3000)..].iter().collect()
}

impl Service {
    /// Starts the program at `exe` with `args` and `env` (no `ALLOC_TRACKER_*` variable of
    /// this process is passed on), its stdout and stderr piped to this process.
    pub fn start(exe: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_in(exe, args, env, None)
    }

    /// [`Service::start`], the program joining the cgroup whose `cgroup.procs` file is
    /// `cgroup_procs` before it runs (so its memory limit holds from its first allocation).
    pub fn start_in(
        exe: &str,
        args: &[&str],
        env: &[(&str, &str)],
        cgroup_procs: Option<&Path>,
    ) -> Self {
        let join = cgroup_procs.map(|path| {
            std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL")
        });
        let name = Path::new(exe)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut command = Command::new(exe);
        command.args(args);
        for (key, _) in std::env::vars() {
            if key.starts_with("ALLOC_TRACKER_") {
                command.env_remove(key);
            }
        }
        // A panic that prints a backtrace loads std's symbol cache into the heap (tens of
        // MiB) and would take the report's top site: the programs never print one.
        command.env("RUST_BACKTRACE", "0");
        command.envs(env.iter().copied());
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A shell starts background jobs (`cargo test &`) with SIGINT ignored, and an
        // ignored disposition survives exec: the programs start with the default actions,
        // as a service manager starts them. (std already empties the signal mask.) Joining
        // the cgroup writes "0" (the writing process) to its `cgroup.procs`.
        // SAFETY: the closure runs between fork and exec and only calls `signal`, `open`,
        // `write` and `close`, which are async-signal-safe; `join` is a NUL-terminated path
        // made before the fork, only read here.
        unsafe {
            command.pre_exec(move || {
                for signal in [libc::SIGINT, libc::SIGTERM] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                if let Some(path) = &join {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0\n".as_ptr().cast(), 2);
                    libc::close(fd);
                    if written != 2 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {exe}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        // The pipes are read on threads so a chatty program never blocks on a full pipe.
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, stderr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            let _ = err_tx.send(bytes);
        });
        Self {
            name,
            child,
            lines,
            stdout: Vec::new(),
            stderr: stderr_rx,
            started,
            status: None,
        }
    }

    /// The program's process id.
    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Waits for a line starting with `prefix` and returns it; kills the program and
    /// panics if none comes within `timeout` or the program ends first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.kill();
                    let so_far = self.describe_so_far();
                    panic!(
                        "{}: no line {prefix:?} within {timeout:?}; {so_far}",
                        self.name
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.wait_at_most(Duration::from_secs(5));
                    let so_far = self.describe_so_far();
                    panic!("{}: ended before printing {prefix:?}; {so_far}", self.name);
                }
            }
        }
    }

    /// Sends `signal` to the program.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child's, so it
        // cannot name another process.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(sent, 0, "{}: kill({signal}) failed", self.name);
    }

    /// Writes `text` to the program's stdin.
    pub fn send_stdin(&mut self, text: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).expect("write to stdin");
        stdin.flush().expect("flush stdin");
    }

    /// Closes the program's stdin (it reads end of file).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// The exit status if the program has ended (reaping it), without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("waitpid");
        }
        self.status
    }

    /// Sends `signal` the moment `file` exists (checking as fast as it can): the moment a
    /// report file is created, before it can have been written whole unless it is written
    /// elsewhere and renamed into place. Returns whether the file appeared; `false` if the
    /// program ended first or `timeout` passed (then it is killed).
    pub fn signal_when_file_appears(
        &mut self,
        file: &Path,
        signal: libc::c_int,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if file.exists() {
                if self.try_status().is_none() {
                    self.signal(signal);
                }
                return true;
            }
            if self.try_status().is_some() {
                return false;
            }
        }
        self.kill();
        false
    }

    /// Sends SIGKILL unless the program has ended.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
        }
    }

    fn wait_at_most(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.try_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.status
    }

    fn describe_so_far(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.stdout.push(line);
        }
        let stderr = match self.status {
            Some(_) => self
                .stderr
                .recv_timeout(Duration::from_secs(2))
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            None => String::new(),
        };
        format!(
            "status {:?}; stdout {:?}; stderr (end) {:?}",
            self.status,
            self.stdout,
            tail(&stderr)
        )
    }

    /// Waits for the program to end, killing it and panicking past `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Ended {
        let Some(status) = self.wait_at_most(timeout) else {
            self.kill();
            let so_far = self.describe_so_far();
            panic!(
                "{}: still running after {timeout:?} (killed); {so_far}",
                self.name
            );
        };
        let elapsed = self.started.elapsed();
        // The pipes close when the program (and any child it forked) has exited; a child
        // left running would hold them open, so the wait for their end is bounded too.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(_) => break,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let stderr = self
            .stderr
            .recv_timeout(left)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ended {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr,
            elapsed,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        let _ = self.wait_at_most(Duration::from_secs(5));
    }
}

/// What is at a report's path.
#[derive(Debug)]
pub enum ReportFile {
    /// No file.
    Absent,
    /// A file holding one JSON value.
    Whole(Value),
    /// A file that is not JSON: `len` bytes, and the parser's complaint.
    Broken { len: usize, error: String },
}

impl ReportFile {
    /// Reads the file at `path`.
    pub fn read(path: &Path) -> Self {
        match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::Absent,
            Err(e) => Self::Broken {
                len: 0,
                error: e.to_string(),
            },
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(value) => Self::Whole(value),
                Err(e) => Self::Broken {
                    len: bytes.len(),
                    error: e.to_string(),
                },
            },
        }
    }
}

/// Reads a JSON report, panicking with the reason if it is missing or not JSON.
pub fn read_report(path: &Path) -> Value {
    match ReportFile::read(path) {
        ReportFile::Whole(report) => report,
        other => panic!("no whole report at {}: {other:?}", path.display()),
    }
}

/// The 1-based line of `source` (a path in this crate, e.g. `src/bin/no_handler.rs`) that
/// ends with the comment `marker`; panics unless exactly one line does.
pub fn marker_line(source: &str, marker: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
    let text = std::fs::read_to_string(&path).expect("read the program's source");
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

/// The site entry at `source` (a path in this crate) and the line ending with `marker`.
pub fn site<'a>(report: &'a Value, source: &str, marker: &str) -> Option<&'a Value> {
    let line = marker_line(source, marker);
    let file = format!("services/{source}");
    report["sites"].as_array()?.iter().find(|site| {
        site["site"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(&file))
            && site["site"]["line"].as_u64() == Some(line)
    })
}

/// Asserts that `report` is a version-1 alloc-tracker report that names the `// leak-site`
/// line of program `program` with at least 32 MiB live (it keeps 48 MiB: at the default
/// sampling rate the estimate's standard error is under 3 MiB).
pub fn assert_names_leak_site(report: &Value, program: &str) {
    assert_eq!(report["format"], "alloc-tracker", "not a report: {report}");
    assert_eq!(report["version"], 1);
    let source = format!("src/bin/{program}.rs");
    let Some(site) = site(report, &source, LEAK_MARKER) else {
        let names: Vec<String> = report["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .take(10)
            .map(|s| format!("{}", s["site"]))
            .collect();
        panic!("the report does not name {source}'s leak-site line; top sites: {names:#?}");
    };
    let live = site["live_bytes"].as_u64().unwrap_or(0);
    assert!(live >= 32 << 20, "the leak site holds {live} bytes");
}

/// Asserts that the file at `path` is absent or a whole report naming `program`'s leak
/// site: the only acceptable states after a process was killed while reporting. Returns
/// whether the file was there.
pub fn assert_absent_or_whole(path: &Path, program: &str, context: &str) -> bool {
    match ReportFile::read(path) {
        ReportFile::Absent => false,
        ReportFile::Whole(report) => {
            assert_names_leak_site(&report, program);
            true
        }
        ReportFile::Broken { len, error } => {
            panic!("{context}: truncated report ({len} bytes): {error}")
        }
    }
}

/// How many times the sweeping tests repeat their runs: `SERVICES_SWEEP` (default 1).
/// The default keeps the package's tests within about two minutes; raise it to hunt a rare
/// interleaving.
pub fn sweep() -> usize {
    std::env::var("SERVICES_SWEEP")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

/// `stderr,<json>`: the text report on stderr and the JSON report in `json`.
pub fn stderr_and(json: &Path) -> String {
    format!("stderr,{}", json.display())
}
