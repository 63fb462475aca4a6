//! A tracker inside a plugin (a `cdylib` loaded with `dlopen`, as a Python extension or a
//! plugin is), unloaded by its host with `dlclose` while the host goes on. The tracker's
//! exit hook, signal handler, watcher thread and thread-exit destructor live in the
//! plugin: it pins itself at start-up, so the host neither crashes at exit nor on a signal,
//! and the report, written at the host's exit, names the plugin's line.

use services::harness::{read_report, serial, site, stderr_and, Scratch, Service, LEAK_MARKER};
use std::path::PathBuf;
use std::time::Duration;

/// Builds the plugin (a workspace member; already built by `cargo test --workspace`) and
/// returns its path, beside this test's binaries.
fn plugin() -> PathBuf {
    let host = PathBuf::from(env!("CARGO_BIN_EXE_plugin_host"));
    let dir = host.parent().expect("the binaries' directory");
    let mut build = std::process::Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "-p", "tracked-plugin"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let built = build.output().expect("run cargo");
    assert!(
        built.status.success(),
        "building the plugin failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let path = dir.join("libtracked_plugin.so");
    assert!(path.is_file(), "no plugin at {}", path.display());
    path
}

fn assert_names_the_plugin(report: &serde_json::Value) {
    let kept = site(report, "plugin/src/lib.rs", LEAK_MARKER)
        .unwrap_or_else(|| panic!("the report does not name the plugin's line: {report:#}"));
    let live = kept["live_bytes"].as_u64().unwrap_or(0);
    assert!(
        live >= 32 << 20,
        "the plugin's site holds {live} bytes (48 MiB kept)"
    );
}

#[test]
fn an_unloaded_plugin_still_reports_at_the_hosts_exit() {
    let _serial = serial();
    let plugin = plugin();
    let scratch = Scratch::new("plugin-exit");
    let report = stderr_and(&scratch.file("heap.json"));
    let service = Service::start(
        env!("CARGO_BIN_EXE_plugin_host"),
        &[plugin.to_str().unwrap(), "exit"],
        &[("ALLOC_TRACKER_REPORT", &report)],
    );
    let ended = service.finish(Duration::from_secs(60));
    ended.assert_clean_shutdown();
    assert!(
        ended.printed("unloaded (still mapped: true)"),
        "the plugin pins itself; {}",
        ended.describe()
    );
    assert_eq!(ended.text_reports(), 1, "{}", ended.describe());
    assert_names_the_plugin(&read_report(&scratch.file("heap.json")));
}

#[test]
fn an_unloaded_plugin_still_reports_on_sigterm() {
    let _serial = serial();
    let plugin = plugin();
    let scratch = Scratch::new("plugin-sigterm");
    let report = stderr_and(&scratch.file("heap.json"));
    let mut service = Service::start(
        env!("CARGO_BIN_EXE_plugin_host"),
        &[plugin.to_str().unwrap(), "sigterm"],
        &[("ALLOC_TRACKER_REPORT", &report)],
    );
    service.wait_for_line("ready", Duration::from_secs(60));
    service.signal(libc::SIGTERM);
    let ended = service.finish(Duration::from_secs(60));
    ended.assert_killed_by(libc::SIGTERM);
    assert_eq!(ended.text_reports(), 1, "{}", ended.describe());
    assert_names_the_plugin(&read_report(&scratch.file("heap.json")));
}
