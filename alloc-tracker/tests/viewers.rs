//! The exports, opened by the real clients: `go tool pprof` on a profile written at exit
//! and on the live endpoint, the SVG flamegraph in headless Chromium, the DHAT JSON in
//! DHAT's own viewer (`dh_view.html`) in headless Chromium.
//!
//! One `#[test]`, which runs this same binary again as a child with `ALLOC_TRACKER_*` set
//! (they are read once, at the first allocation, so they must be in the environment from
//! the start): the child leaks from a known function, serves `/debug/pprof/heap` on an
//! ephemeral port (`ALLOC_TRACKER_HTTP=127.0.0.1:0`), and writes every format at exit.
//! The parent checks that the leaking function tops each of them.
//!
//! The real clients must be installed — `go` (`apt-get install -y golang-go`), Chromium
//! (`chromium`) and DHAT's viewer (`valgrind`); `./run-tests` installs them: without them
//! the test fails, it does not skip.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

/// What the child keeps alive.
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The leak every viewer must put first: 64 buffers of 64 KiB, kept for good.
#[inline(never)]
fn leak_for_viewers() {
    for i in 0..64u8 {
        let buffer = vec![i; 64 * 1024];
        KEPT.lock().unwrap().push(std::hint::black_box(buffer));
    }
}

const LEAKER: &str = "leak_for_viewers";
const CHILD: &str = "ALLOC_TRACKER_VIEWERS_CHILD";

#[test]
fn real_clients_open_the_exports() {
    if std::env::var_os(CHILD).is_some() {
        child();
    } else {
        parent();
    }
}

/// The profiled program: leak, say so, wait for the parent to close stdin, exit. Nothing
/// is allocated after "leaked" (stdin's buffer is made first), so the parent can check
/// that serving requests adds no allocation to the program's count.
fn child() {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = String::with_capacity(256);
    leak_for_viewers();
    println!("leaked");
    std::io::stdout().flush().unwrap();
    while input.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        line.clear();
    }
}

/// Kills the child if the test fails before it exits.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent() {
    let go = Command::new("go").arg("version").output();
    match go {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "`go` is needed to test the pprof export with the real client (apt-get install -y \
             golang-go); running it gave {other:?}"
        ),
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let mut files = vec!["heap.pb.gz", "heap.dhat.json", "heap.folded", "heap.json"];
    if cfg!(feature = "svg") {
        files.push("heap.svg");
    }
    let destinations = files.into_iter().map(path).collect::<Vec<_>>().join(",");
    let mut child = Reaper(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "real_clients_open_the_exports",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("ALLOC_TRACKER_RATE", "1")
            .env("ALLOC_TRACKER_HTTP", "127.0.0.1:0")
            .env("ALLOC_TRACKER_REPORT", &destinations)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    // The child's stderr: the server's address, and everything for the failure message.
    let stderr = child.0.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr_reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut child_stderr = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                panic!("no server address on the child's stderr: {child_stderr:#?}")
            });
        if let Some(address) = line.split("serving /debug/pprof/heap on http://").nth(1) {
            // "127.0.0.1:PORT (pid N)"
            break address.split_whitespace().next().unwrap_or("").to_string();
        }
        child_stderr.push(line);
    };
    // The child's stdout: libtest's chatter, then "leaked"; read to its end, so that the
    // child never writes to a closed pipe.
    let stdout = child.0.stdout.take().unwrap();
    let (leaked_tx, leaked) = mpsc::channel::<()>();
    let stdout_reader = std::thread::spawn(move || {
        let mut said = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("leaked") {
                let _ = leaked_tx.send(());
            }
            said.push(line);
        }
        said
    });
    if leaked.recv_timeout(Duration::from_secs(60)).is_err() {
        panic!(
            "the child did not leak: {:#?}\n{child_stderr:#?}",
            stdout_reader.join()
        );
    }

    // The live endpoint, read by the real client.
    let allocs_before = allocations_so_far(&address);
    let raw = go_pprof(
        dir.path(),
        &["-raw", &format!("http://{address}/debug/pprof/heap")],
    );
    let top_function = top_raw_sample_function(&raw);
    assert!(
        top_function.contains(LEAKER),
        "live profile's largest sample is in {top_function:?}:\n{raw}"
    );
    // The child is idle: serving (and symbolizing, and building reports) allocated nothing
    // that counts as the program's.
    assert_eq!(
        allocations_so_far(&address),
        allocs_before,
        "the server's allocations were counted"
    );

    // Let the child exit: it writes every report.
    drop(child.0.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the child did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    stderr_reader.join().unwrap();
    let said = stdout_reader.join().unwrap();
    child_stderr.extend(lines.try_iter());
    assert!(
        status.success(),
        "child failed: {status:?}\n{said:#?}\n{child_stderr:#?}"
    );

    // The profile written at exit, read by the real client.
    let top = go_pprof(
        dir.path(),
        &["-top", "-sample_index=inuse_space", &path("heap.pb.gz")],
    );
    let first_row = top
        .lines()
        .skip_while(|line| !line.contains("flat%"))
        .nth(1)
        .unwrap_or_else(|| panic!("no rows in:\n{top}"));
    assert!(
        first_row.contains(LEAKER),
        "go tool pprof -top puts first: {first_row}\n{top}"
    );
    assert!(top.contains("Type: inuse_space"), "{top}");

    if cfg!(feature = "svg") {
        check_svg(&path("heap.svg"));
        check_svg_in_a_browser(&path("heap.svg"));
    }
    check_dhat(&path("heap.dhat.json"));
    check_dhat_in_its_viewer(&path("heap.dhat.json"));
    check_folded(&path("heap.folded"));
}

/// The exact `totals.allocs` of the child, from its live JSON report.
fn allocations_so_far(address: &str) -> u64 {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET /debug/alloc-tracker/report.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let report = alloc_tracker::Report::from_json(body).unwrap();
    report.totals.allocs
}

/// Runs `go tool pprof ARGS`, keeping its saved copies in `dir`; returns stdout.
fn go_pprof(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .env("PPROF_TMPDIR", dir)
        .env("PPROF_BINARY_PATH", dir)
        .output()
        .expect("go tool pprof runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// In `go tool pprof -raw` output: the function of the innermost location of the sample
/// with the most `inuse_space` (the last value).
fn top_raw_sample_function(raw: &str) -> String {
    let mut best: Option<(i64, u64)> = None;
    let mut in_samples = false;
    for line in raw.lines() {
        if line.starts_with("Samples:") {
            in_samples = true;
            continue;
        }
        if line.starts_with("Locations") {
            break;
        }
        let Some((values, ids)) = line.split_once(':') else {
            continue;
        };
        if !in_samples {
            continue;
        }
        let values: Vec<i64> = values
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let first_id = ids
            .split_whitespace()
            .next()
            .and_then(|id| id.parse::<u64>().ok());
        if let (4, Some(id)) = (values.len(), first_id) {
            if best.is_none_or(|(inuse, _)| values[3] > inuse) {
                best = Some((values[3], id));
            }
        }
    }
    let (_, id) = best.unwrap_or_else(|| panic!("no samples in:\n{raw}"));
    let prefix = format!("{id}: ");
    raw.lines()
        .skip_while(|line| !line.starts_with("Locations"))
        .find(|line| line.trim_start().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no location {id} in:\n{raw}"))
        .to_string()
}

fn check_svg(path: &str) {
    let svg = std::fs::read_to_string(path).unwrap();
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(&svg, options)
        .unwrap_or_else(|e| panic!("{path} is not XML: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let names_leaker = doc
        .descendants()
        .filter_map(|node| node.text())
        .any(|text| text.contains(LEAKER));
    assert!(names_leaker, "the flamegraph does not name {LEAKER}");
}

/// Chromium (Debian's `chromium`), headless, for the viewers that are web pages.
const CHROMIUM: &str = "chromium";
/// DHAT's own viewer, as Debian's `valgrind` package ships it.
const DH_VIEW: &str = "/usr/libexec/valgrind/dh_view.html";

/// The DOM of `page` after headless Chromium loaded it and ran its scripts.
fn chromium_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("headless Chromium is needed to open the viewers (apt-get install -y chromium): {e}")
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// DHAT's own viewer (`dh_view.html` from Valgrind) loads the `.dhat.json` through its own
/// file input and shows a tree whose top program point is the leak — no error, no empty
/// view.
fn check_dhat_in_its_viewer(path: &str) {
    let viewer = Path::new(DH_VIEW);
    assert!(
        viewer.is_file(),
        "DHAT's viewer is needed to test the DHAT export with the real client \
         (apt-get install -y valgrind puts it at {DH_VIEW})"
    );
    let dir = tempfile::tempdir().unwrap();
    for file in ["dh_view.js", "dh_view.css"] {
        std::fs::copy(viewer.with_file_name(file), dir.path().join(file)).unwrap();
    }
    let data = std::fs::read_to_string(path).unwrap();
    // The viewer's page, plus a script that hands our file to its own file input, the way a
    // user picking it in the file dialog does.
    let page = std::fs::read_to_string(viewer).unwrap().replace(
        "<body onload=\"onLoad()\"></body>",
        &format!(
            "<body onload=\"onLoad(); load()\"></body>\n<script>\n\
                 function load() {{\n\
                   const transfer = new DataTransfer();\n\
                   transfer.items.add(new File([{}], 'heap.dhat.json'));\n\
                   gInput.files = transfer.files;\n\
                   gInput.onchange();\n\
                 }}\n</script>",
            serde_json::to_string(&data).unwrap()
        ),
    );
    let html = dir.path().join("dh_view.html");
    std::fs::write(&html, page).unwrap();
    let dom = chromium_dom(&html);
    assert!(
        !dom.contains("class=\"error\""),
        "DHAT's viewer shows an error: {}",
        &dom[..dom.len().min(4000)]
    );
    assert!(
        dom.contains("Total:"),
        "DHAT's viewer shows no tree: {}",
        &dom[..dom.len().min(4000)]
    );
    assert!(dom.contains(LEAKER), "DHAT's viewer does not name {LEAKER}");
    assert!(
        dom.contains("heap.dhat.json"),
        "the viewer did not load the file"
    );
}

/// The SVG flamegraph, opened by a real browser: it parses (Chromium shows a parser error
/// page for broken XML), and draws frames, one of them the leak.
fn check_svg_in_a_browser(path: &str) {
    let dom = chromium_dom(Path::new(path));
    assert!(
        !dom.contains("parsererror") && !dom.contains("This page contains the following errors"),
        "Chromium cannot read the flamegraph: {}",
        &dom[..dom.len().min(2000)]
    );
    let frames = dom.matches("<rect").count();
    assert!(frames >= 3, "the flamegraph draws {frames} rectangles");
    assert!(
        dom.contains(LEAKER),
        "the flamegraph does not name {LEAKER}"
    );
}

fn check_dhat(path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["dhatFileVersion"], 2);
    for field in ["mode", "verb", "tu", "Mtu", "cmd"] {
        assert!(json[field].is_string(), "{field} in {text}");
    }
    for field in ["bklt", "bkacc"] {
        assert!(json[field].is_boolean(), "{field}");
    }
    for field in ["tuth", "pid", "te", "tg"] {
        assert!(json[field].is_u64(), "{field}");
    }
    let ftbl = json["ftbl"].as_array().unwrap();
    assert_eq!(ftbl[0], "[root]");
    let pps = json["pps"].as_array().unwrap();
    for pp in pps {
        for field in ["tb", "tbk", "tl", "mb", "mbk", "gb", "gbk", "eb", "ebk"] {
            assert!(pp[field].is_u64(), "{field} in {pp}");
        }
        assert!(pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.as_u64().is_some_and(|i| (i as usize) < ftbl.len())));
    }
    let biggest = pps.iter().max_by_key(|pp| pp["eb"].as_u64()).unwrap();
    let innermost = biggest["fs"][0].as_u64().unwrap() as usize;
    let frame = ftbl[innermost].as_str().unwrap();
    assert!(
        frame.contains(LEAKER),
        "DHAT's largest program point is at {frame}"
    );
    // `vec![0; n]` and `vec![i; n]` take two paths (zeroed or filled): 63 or 64 buffers.
    assert!(
        biggest["eb"].as_u64().unwrap() >= 63 * 64 * 1024,
        "{biggest}"
    );
}

fn check_folded(path: &str) {
    let folded = std::fs::read_to_string(path).unwrap();
    let (stack, _) = folded
        .lines()
        .filter_map(|line| {
            let (stack, bytes) = line.rsplit_once(' ')?;
            Some((stack, bytes.parse::<u64>().ok()?))
        })
        .max_by_key(|(_, bytes)| *bytes)
        .expect("folded lines");
    let leaf = stack.rsplit(';').next().unwrap();
    assert!(
        leaf.contains(LEAKER),
        "the widest folded stack ends in {leaf}"
    );
}
