//! Runs every demo binary, leaky and fixed, scaled down, in exact mode and at the
//! default sampling rate, and checks that the report names the `// leak-site` line of
//! each leaky one and that each fixed one keeps (almost) nothing there.
//!
//! Sizes: exact runs leak ~10 MB (every allocation is tracked, so that is plenty and
//! keeps debug builds quick); sampled runs leak ~125 MB, over 200 samples at the 512 KiB
//! default rate, so the estimates are within a few percent. Fixed runs with a bound
//! (cache, global) get one small enough that what they legitimately keep is under 1% of
//! the leak, even counting one sample's weight (~0.5 MB) in sampled runs.

mod common;

use common::{check, is_at, leak_site, run_with_env, suspects, Case, Gauge, Mode};

const MB: u64 = 1 << 20;
const KB: u64 = 1 << 10;

fn cache(mode: Mode) -> Case {
    let (args, fixed_args, leaked): (&[&str], &[&str], u64) = match mode {
        Mode::Exact => (
            &["--count", "2000", "--size", "5000"],
            &["--capacity", "10"],
            2000 * 5000,
        ),
        Mode::Sampled => (
            &["--count", "8000", "--size", "16k"],
            &["--capacity", "2"],
            8000 * 16 * KB,
        ),
    };
    Case {
        leak: bin!("cache-leak"),
        fixed: bin!("cache-fixed"),
        module: "cache.rs",
        args,
        fixed_args,
        leaked,
        by_peak: false,
        gauge: None,
    }
}

fn reslice(mode: Mode) -> Case {
    let (args, leaked): (&[&str], u64) = match mode {
        Mode::Exact => (&["--count", "10", "--size", "1m"], 10 * MB),
        Mode::Sampled => (&["--count", "32", "--size", "4m"], 32 * 4 * MB),
    };
    Case {
        leak: bin!("reslice-leak"),
        fixed: bin!("reslice-fixed"),
        module: "reslice.rs",
        args,
        fixed_args: &[],
        leaked,
        by_peak: false,
        gauge: None,
    }
}

fn global(mode: Mode) -> Case {
    let (args, fixed_args, leaked): (&[&str], &[&str], u64) = match mode {
        Mode::Exact => (
            &["--count", "2500", "--size", "4k"],
            &["--retain", "10"],
            2500 * 4 * KB,
        ),
        Mode::Sampled => (
            &["--count", "32000", "--size", "4k"],
            &["--retain", "2"],
            32000 * 4 * KB,
        ),
    };
    Case {
        leak: bin!("global-leak"),
        fixed: bin!("global-fixed"),
        module: "global.rs",
        args,
        fixed_args,
        leaked,
        by_peak: false,
        gauge: None,
    }
}

fn listener(mode: Mode) -> Case {
    let (args, leaked): (&[&str], u64) = match mode {
        Mode::Exact => (&["--count", "160", "--size", "64k"], 160 * 64 * KB),
        Mode::Sampled => (&["--count", "2000", "--size", "64k"], 2000 * 64 * KB),
    };
    Case {
        leak: bin!("listener-leak"),
        fixed: bin!("listener-fixed"),
        module: "listener.rs",
        args,
        fixed_args: &[],
        leaked,
        by_peak: false,
        gauge: None,
    }
}

fn ticker(mode: Mode) -> Case {
    let (args, count, leaked): (&[&str], u64, u64) = match mode {
        Mode::Exact => (&["--count", "20", "--size", "512k"], 20, 10 * MB),
        Mode::Sampled => (&["--count", "128", "--size", "1m"], 128, 128 * MB),
    };
    Case {
        leak: bin!("ticker-leak"),
        fixed: bin!("ticker-fixed"),
        module: "ticker.rs",
        args,
        fixed_args: &[],
        leaked,
        by_peak: false,
        gauge: Some((Gauge::Threads, count)),
    }
}

fn handle(mode: Mode) -> Case {
    let (args, count, leaked): (&[&str], u64, u64) = match mode {
        Mode::Exact => (&["--count", "40", "--size", "256k"], 40, 10 * MB),
        Mode::Sampled => (&["--count", "500", "--size", "256k"], 500, 500 * 256 * KB),
    };
    Case {
        leak: bin!("handle-leak"),
        fixed: bin!("handle-fixed"),
        module: "handle.rs",
        args,
        fixed_args: &[],
        leaked,
        by_peak: false,
        gauge: Some((Gauge::OpenFds, count)),
    }
}

fn defer_loop(mode: Mode) -> Case {
    let (args, leaked): (&[&str], u64) = match mode {
        Mode::Exact => (
            &["--count", "200", "--size", "64k", "--batches", "2"],
            200 * 64 * KB,
        ),
        Mode::Sampled => (
            &["--count", "2000", "--size", "64k", "--batches", "1"],
            2000 * 64 * KB,
        ),
    };
    Case {
        leak: bin!("defer-loop-leak"),
        fixed: bin!("defer-loop-fixed"),
        module: "defer_loop.rs",
        args,
        fixed_args: &[],
        leaked,
        by_peak: true,
        gauge: None,
    }
}

/// The ring is larger than the jobs run, so it is still filling with stale jobs at exit:
/// once it has wrapped, a stale-slot leak is bounded by the ring and stops growing, and
/// then the trend rule rightly cannot tell it from a full cache (see demos/README.md).
fn stale_slot(mode: Mode) -> Case {
    let (args, leaked): (&[&str], u64) = match mode {
        Mode::Exact => (
            &["--count", "100", "--slots", "128", "--size", "128k"],
            100 * 128 * KB,
        ),
        Mode::Sampled => (
            &["--count", "500", "--slots", "512", "--size", "256k"],
            500 * 256 * KB,
        ),
    };
    Case {
        leak: bin!("stale-slot-leak"),
        fixed: bin!("stale-slot-fixed"),
        module: "stale_slot.rs",
        args,
        fixed_args: &[],
        leaked,
        by_peak: false,
        gauge: None,
    }
}

fn rc_cycle(mode: Mode) -> Case {
    // Each document is a root and 15 sections: 16 nodes of --size bytes.
    let (args, leaked): (&[&str], u64) = match mode {
        Mode::Exact => (&["--count", "100", "--size", "4k"], 100 * 16 * 4 * KB),
        Mode::Sampled => (&["--count", "500", "--size", "16k"], 500 * 16 * 16 * KB),
    };
    Case {
        leak: bin!("rc-cycle-leak"),
        fixed: bin!("rc-cycle-fixed"),
        module: "rc_cycle.rs",
        args,
        fixed_args: &[],
        leaked,
        by_peak: false,
        gauge: None,
    }
}

macro_rules! tests {
    ($($case:ident => $exact:ident, $sampled:ident;)*) => {$(
        #[test]
        fn $exact() {
            check(&$case(Mode::Exact), Mode::Exact);
        }

        #[test]
        fn $sampled() {
            check(&$case(Mode::Sampled), Mode::Sampled);
        }
    )*};
}

tests! {
    cache => cache_exact, cache_sampled;
    reslice => reslice_exact, reslice_sampled;
    global => global_exact, global_sampled;
    listener => listener_exact, listener_sampled;
    ticker => ticker_exact, ticker_sampled;
    handle => handle_exact, handle_sampled;
    defer_loop => defer_loop_exact, defer_loop_sampled;
    stale_slot => stale_slot_exact, stale_slot_sampled;
    rc_cycle => rc_cycle_exact, rc_cycle_sampled;
}

/// With checkpoints on a timer, `cache-leak` is a critical suspect by its growth (the rule
/// that needs no ages), and `cache-fixed`, whose LRU flattens at its capacity, is none.
#[test]
fn checkpoints_make_the_growing_cache_a_critical_suspect() {
    let (file, line) = leak_site("cache.rs");
    let env = [("ALLOC_TRACKER_INTERVAL", "250ms")];
    let args = ["--seconds", "2", "--count", "8000", "--size", "5000"];
    let leaky = run_with_env(bin!("cache-leak"), Mode::Sampled, &args, &env);
    let first = &suspects(&leaky.report)[0];
    assert!(is_at(first, &file, line), "{:#}", leaky.report["suspects"]);
    assert_eq!(first["severity"], "critical", "{first:#}");
    let trend = &first["trend"];
    assert!(trend["points"].as_u64().unwrap() >= 5, "{trend:#}");
    assert_eq!(trend["monotonic"], true, "{trend:#}");
    assert!(
        first["evidence"]
            .as_str()
            .unwrap()
            .starts_with("grew monotonically"),
        "{first:#}"
    );
    let fixed = run_with_env(bin!("cache-fixed"), Mode::Sampled, &args, &env);
    assert!(
        suspects(&fixed.report).is_empty(),
        "{:#}",
        fixed.report["suspects"]
    );
}
