//! Every workload binary runs a tiny workload and prints its JSON line; `fastpath` runs in
//! every configuration; `unwind-timing` prints its JSON line. No timing is asserted: this
//! only keeps the bench binaries working (`run.sh` does the measuring). `wl-jemalloc-prof`
//! exists with the `jemalloc-prof` feature only.

use std::process::Command;

fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let output = Command::new(binary)
        .args(args)
        .env("ALLOC_TRACKER_REPORT", "off")
        .envs(env.iter().copied())
        .output()
        .expect("the binary starts");
    assert!(
        output.status.success(),
        "{binary} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON line")
}

#[test]
fn every_allocator_runs_every_workload() {
    let binaries = [
        (env!("CARGO_BIN_EXE_wl-system"), &[][..]),
        (env!("CARGO_BIN_EXE_wl-tracker"), &[][..]),
        (
            env!("CARGO_BIN_EXE_wl-tracker"),
            &[("ALLOC_TRACKER_RATE", "1")][..],
        ),
        (
            env!("CARGO_BIN_EXE_wl-tracker"),
            &[
                ("ALLOC_TRACKER_RATE", "1"),
                ("ALLOC_TRACKER_UNWIND", "table"),
            ][..],
        ),
        (env!("CARGO_BIN_EXE_wl-dhat"), &[][..]),
        (env!("CARGO_BIN_EXE_wl-jemalloc"), &[][..]),
        (env!("CARGO_BIN_EXE_wl-tracker-jemalloc"), &[][..]),
        #[cfg(feature = "jemalloc-prof")]
        (
            env!("CARGO_BIN_EXE_wl-jemalloc-prof"),
            &[(
                "_RJEM_MALLOC_CONF",
                "prof:true,prof_active:true,lg_prof_sample:19",
            )][..],
        ),
    ];
    for (binary, env) in binaries {
        for (workload, scale) in [("service", "0.001"), ("hashmap", "0.01")] {
            let out = run(binary, &[workload, "--threads", "2", "--scale", scale], env);
            assert_eq!(out["workload"], workload);
            assert_eq!(out["threads"], 2);
            assert!(out["secs"].as_f64().is_some_and(|s| s > 0.0), "{out}");
            assert_eq!(out["frame_pointers"], cfg!(frame_pointers), "{out}");
        }
        let out = run(binary, &["pairs", "--threads", "3", "--pairs", "1000"], env);
        assert!(
            out["cpu_ns_per_pair"].as_f64().is_some_and(|ns| ns > 0.0),
            "{out}"
        );
    }
    // The same work gives the same checksum under every allocator.
    let a = run(
        env!("CARGO_BIN_EXE_wl-system"),
        &["service", "--scale", "0.001"],
        &[],
    );
    let b = run(
        env!("CARGO_BIN_EXE_wl-dhat"),
        &["service", "--scale", "0.001"],
        &[],
    );
    assert_eq!(a["checksum"], b["checksum"]);
}

#[test]
fn hold_reports_the_tracker_memory() {
    let out = run(
        env!("CARGO_BIN_EXE_wl-tracker"),
        &["hold", "--mib", "8"],
        &[("ALLOC_TRACKER_RATE", "4096")],
    );
    let held = out["held_bytes"].as_u64().unwrap();
    assert!(held >= 8 << 20, "{out}");
    // Exact totals: the held blocks are live (plus the little else the program holds).
    let live = out["live_bytes"].as_u64().unwrap();
    assert!(live >= held && live < held + (4 << 20), "{out}");
    assert!(out["tracker_bytes"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(out["sample_rate"], 4096);
}

#[test]
fn fastpath_runs_every_configuration() {
    for config in [
        "system",
        "off",
        "default",
        "exact-fp",
        "exact-table",
        "exact-dwarf",
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_fastpath"))
            .args([config, "1000"])
            .env("ALLOC_TRACKER_REPORT", "off")
            .status()
            .expect("fastpath starts");
        assert!(status.success(), "{config}");
    }
}

#[test]
fn trackers_and_jemalloc_say_what_they_run() {
    let out = run(
        env!("CARGO_BIN_EXE_wl-tracker"),
        &["service", "--scale", "0.01"],
        &[("ALLOC_TRACKER_RATE", "1")],
    );
    let tracker = &out["tracker"];
    assert_eq!(tracker["sample_rate"], 1, "{out}");
    // Exact mode: the samples account for every byte (the report's own allocations aside).
    let (estimated, exact) = (
        tracker["estimated_alloc_bytes"].as_f64().unwrap(),
        tracker["alloc_bytes"].as_f64().unwrap(),
    );
    assert!((estimated / exact - 1.0).abs() < 0.01, "{out}");
    let out = run(
        env!("CARGO_BIN_EXE_wl-tracker"),
        &["pairs", "--pairs", "1000", "--live", "500"],
        &[],
    );
    // The held blocks were sampled in exact mode, the pairs at the default rate.
    assert!(
        out["tracker"]["live_samples"].as_u64().unwrap() >= 500,
        "{out}"
    );
    assert_eq!(out["tracker"]["sample_rate"], 524288, "{out}");
    let out = run(
        env!("CARGO_BIN_EXE_wl-jemalloc"),
        &["service", "--scale", "0.001"],
        &[],
    );
    // Off: absent from the stock build, `false` where the feature built jemalloc's
    // profiler into every binary (`--all-features`).
    assert_ne!(out["jemalloc"]["opt.prof"], true, "{out}");
    #[cfg(feature = "jemalloc-prof")]
    {
        let out = run(
            env!("CARGO_BIN_EXE_wl-jemalloc-prof"),
            &["service", "--scale", "0.001"],
            &[(
                "_RJEM_MALLOC_CONF",
                "prof:true,prof_active:true,lg_prof_sample:19",
            )],
        );
        assert_eq!(out["jemalloc"]["opt.prof"], true, "{out}");
        assert_eq!(out["jemalloc"]["opt.lg_prof_sample"], 19, "{out}");
    }
}

#[test]
fn unwind_timing_prints_its_json_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_unwind-timing"))
        .args(["--json", "--rounds", "1", "--iterations", "200"])
        .env("ALLOC_TRACKER_REPORT", "off")
        .output()
        .expect("unwind-timing starts");
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert!(json["event/table"].as_f64().is_some(), "{json}");
    assert_eq!(json["frame_pointers"], cfg!(frame_pointers), "{json}");
}
