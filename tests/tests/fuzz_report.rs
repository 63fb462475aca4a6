//! Fuzzing the report reader, [`Report::from_json`], with proptest: arbitrary text, JSON-like
//! text, and valid reports mutated (cut short, bytes flipped, fields deleted, values of the
//! wrong type, huge and negative numbers, junk spliced in, deep nesting). The reader must never
//! panic; a valid report must read back as the same report; and whatever it accepts, every
//! renderer the CLI uses (text, pprof, folded, SVG, DHAT, JSON) must render without panicking,
//! since that is what `alloc-tracker top|diff|convert` does with a file it was handed.
//!
//! Cases per property: `PROPTEST_CASES` (default 2,000: a few seconds in CI). The long run:
//! `PROPTEST_CASES=1000000 cargo test --release -p tracker-tests --test fuzz_report`.
//!
//! This binary does not install the tracker: the reader is plain code over a string.

use alloc_tracker::{
    Age, Figures, Location, ProcessGauges, Report, Severity, Site, Stack, Stats, Suspect,
    TrackerFigures, Trend, FORMAT, VERSION,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::Value;
use tracker_tests::{env_or, run_checks};

/// Builds one of the report's `#[non_exhaustive]` types field by field, as code outside the
/// crate must: from its `Default`, then each field set.
macro_rules! build {
    ($ty:ident { $($field:ident $(: $value:expr)?),* $(,)? }) => {{
        let mut built = $ty::default();
        $( built.$field = build!(@value $field $(: $value)?); )*
        built
    }};
    (@value $field:ident) => { $field };
    (@value $field:ident : $value:expr) => { $value };
}

/// Cases per property, from `PROPTEST_CASES`.
fn cases() -> u32 {
    env_or("PROPTEST_CASES", 2_000)
}

/// Runs `test` over `strategy` for [`cases`] cases; panics with the shrunk failing input.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        // Shrinking a failure is worth a few seconds, not minutes.
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    // Proptest catches the panics of failing cases and shrinks them: silence the panic
    // messages of the thousands of runs that shrinking makes, and print only the minimal one.
    // Where the last one happened is kept for the failure message.
    static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = info.to_string();
        }
    }));
    let result = runner.run(&strategy, test);
    drop(std::panic::take_hook());
    let last_panic = LAST_PANIC.lock().map(|l| l.clone()).unwrap_or_default();
    match result {
        Ok(()) => println!(
            "  {} cases in {:.2?}",
            runner.config().cases,
            started.elapsed()
        ),
        Err(TestError::Fail(why, input)) => {
            panic!("{why}\nlast panic: {last_panic}\nminimal failing input: {input:#?}")
        }
        Err(TestError::Abort(why)) => panic!("aborted: {why}"),
    }
}

// ---------------------------------------------------------------------------------------
// Valid reports.

/// Text of every kind a report carries: plain names, and any Unicode (quotes, backslashes,
/// control characters and non-BMP characters must survive JSON escaping).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_:<>]{0,24}",
        1 => any::<String>(),
    ]
}

/// A count: mostly small, sometimes at the edges of u64 (round trip must keep them exact).
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..1 << 40,
        1 => Just(u64::MAX),
        1 => Just((1u64 << 53) + 1),
        1 => any::<u64>(),
    ]
}

/// A finite float (JSON has no NaN or infinity).
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => -1e12f64..1e12,
        1 => proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
    ]
}

fn location() -> impl Strategy<Value = Location> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(function, file, line, address)| {
            build!(Location {
                function,
                file,
                line,
                address,
            })
        })
}

fn figures() -> impl Strategy<Value = Figures> {
    (count(), count(), count(), count(), count(), count()).prop_map(
        |(live_bytes, live_allocs, peak_live_bytes, alloc_bytes, allocs, live_samples)| {
            build!(Figures {
                live_bytes,
                live_allocs,
                peak_live_bytes,
                alloc_bytes,
                allocs,
                live_samples,
            })
        },
    )
}

fn trend() -> impl Strategy<Value = Trend> {
    (
        any::<usize>(),
        float(),
        count(),
        float(),
        float(),
        any::<bool>(),
        float(),
    )
        .prop_map(
            |(points, span_s, first_bytes, bytes_per_s, percent_per_hour, monotonic, fit)| {
                build!(Trend {
                    points,
                    span_s,
                    first_bytes,
                    bytes_per_s,
                    percent_per_hour,
                    monotonic,
                    fit,
                })
            },
        )
}

fn age() -> impl Strategy<Value = Age> {
    (float(), float(), float()).prop_map(|(oldest_s, median_s, youngest_s)| {
        build!(Age {
            oldest_s,
            median_s,
            youngest_s,
        })
    })
}

fn stack() -> impl Strategy<Value = Stack> {
    (figures(), prop::collection::vec(location(), 0..6))
        .prop_map(|(figures, frames)| build!(Stack { figures, frames }))
}

fn site() -> impl Strategy<Value = Site> {
    (
        figures(),
        location(),
        prop::collection::vec(location(), 0..6),
        prop::collection::vec(stack(), 0..3),
        proptest::option::of(trend()),
        proptest::option::of(age()),
    )
        .prop_map(|(figures, site, frames, stacks, trend, age)| {
            build!(Site {
                figures,
                site,
                frames,
                stacks,
                trend,
                age,
            })
        })
}

fn suspect() -> impl Strategy<Value = Suspect> {
    (
        location(),
        any::<bool>(),
        count(),
        proptest::option::of(trend()),
        proptest::option::of(age()),
        text(),
    )
        .prop_map(|(site, critical, live_bytes, trend, age, evidence)| {
            build!(Suspect {
                site,
                severity: if critical {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                live_bytes,
                trend,
                age,
                evidence,
            })
        })
}

fn report() -> impl Strategy<Value = Report> {
    let totals = (count(), count(), count(), count(), count(), count()).prop_map(
        |(live_bytes, live_allocs, peak_live_bytes, alloc_bytes, allocs, frees)| {
            build!(Stats {
                live_bytes,
                live_allocs,
                peak_live_bytes,
                alloc_bytes,
                allocs,
                frees,
            })
        },
    );
    let process = (
        proptest::option::of(count()),
        proptest::option::of(count()),
        proptest::option::of(count()),
    )
        .prop_map(|(threads, open_fds, rss_bytes)| {
            build!(ProcessGauges {
                threads,
                open_fds,
                rss_bytes,
            })
        });
    let tracker = (count(), count(), count(), count(), count(), text(), count()).prop_map(
        |(bytes, symbol_bytes, stacks, dropped_samples, pooled_samples, unwinder, fallbacks)| {
            build!(TrackerFigures {
                bytes,
                symbol_bytes,
                stacks,
                dropped_samples,
                pooled_samples,
                unwinder,
                dwarf_fallbacks: fallbacks,
            })
        },
    );
    (
        0..=VERSION,
        count(),
        count(),
        totals,
        process,
        tracker,
        prop::collection::vec(site(), 0..5),
        prop::collection::vec(suspect(), 0..3),
    )
        .prop_map(
            |(version, sample_rate, uptime_ms, totals, process, tracker, sites, suspects)| {
                build!(Report {
                    format: FORMAT.to_string(),
                    version,
                    sample_rate,
                    uptime_ms,
                    totals,
                    process,
                    tracker,
                    sites,
                    suspects,
                })
            },
        )
}

// ---------------------------------------------------------------------------------------
// Mutations of a valid report.

/// One way to damage a report, with the choices it needs (indexes are taken modulo what
/// the report has).
#[derive(Clone, Debug)]
enum Mutation {
    /// Cut the text short after this many bytes.
    Truncate(usize),
    /// XOR these bytes at these positions (the result may not be UTF-8: then it is read
    /// lossily, as a text editor would have saved it).
    FlipBytes(Vec<(usize, u8)>),
    /// Delete the n-th object field.
    DeleteField(usize),
    /// Replace the n-th value with a value of another type.
    ChangeType(usize, Value),
    /// Replace the n-th number in the text with this literal.
    HugeNumber(usize, &'static str),
    /// Insert this junk at this byte.
    Splice(usize, String),
    /// Replace the n-th value with arrays nested this deep.
    Nest(usize, usize),
    /// Duplicate the n-th object field (JSON allows it; serde must not panic on it).
    DuplicateField(usize),
}

/// Values of every JSON type, to put where another type belongs.
fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(Value::from),
        text().prop_map(Value::String),
        Just(Value::Array(vec![])),
        Just(serde_json::json!([1, "x", null])),
        Just(Value::Object(Default::default())),
        Just(serde_json::json!({"function": 7, "line": -1})),
    ]
}

/// Literals a number may be replaced by: past u64, negative, fractional, out of f64's range.
const NUMBERS: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999999999999",
    "-1",
    "-9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "1e308",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "0.0",
    "4294967296",
    "1E2",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec((any::<usize>(), 1u8..=255), 1..8).prop_map(Mutation::FlipBytes),
        any::<usize>().prop_map(Mutation::DeleteField),
        (any::<usize>(), wrong_value()).prop_map(|(i, v)| Mutation::ChangeType(i, v)),
        (any::<usize>(), prop::sample::select(NUMBERS))
            .prop_map(|(i, n)| Mutation::HugeNumber(i, n)),
        (
            any::<usize>(),
            prop_oneof![
                "[\\[\\]{}\",:0-9a-z\\\\ ]{1,16}",
                any::<String>(),
                Just("\u{0}".to_string()),
                Just("\\ud800".to_string()),
            ]
        )
            .prop_map(|(i, s)| Mutation::Splice(i, s)),
        (any::<usize>(), prop_oneof![1usize..200, Just(100_000)])
            .prop_map(|(i, d)| Mutation::Nest(i, d)),
        any::<usize>().prop_map(Mutation::DuplicateField),
    ]
}

/// How many values of `value` (itself included) satisfy `wanted`.
fn count_values(value: &Value, wanted: fn(&Value) -> bool) -> usize {
    let own = usize::from(wanted(value));
    own + match value {
        Value::Array(items) => items.iter().map(|v| count_values(v, wanted)).sum(),
        Value::Object(map) => map.values().map(|v| count_values(v, wanted)).sum(),
        _ => 0,
    }
}

/// The k-th value (depth-first, the root first) that satisfies `wanted`; `k` must be less
/// than [`count_values`].
fn kth_value(value: &mut Value, mut k: usize, wanted: fn(&Value) -> bool) -> &mut Value {
    if wanted(value) {
        if k == 0 {
            return value;
        }
        k -= 1;
    }
    let children: Vec<&mut Value> = match value {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(map) => map.values_mut().collect(),
        _ => Vec::new(),
    };
    for child in children {
        let here = count_values(child, wanted);
        if k < here {
            return kth_value(child, k, wanted);
        }
        k -= here;
    }
    unreachable!("k is less than the count")
}

/// The n-th (mod their number) value of `root` that satisfies `wanted`, if any does.
fn nth_value(root: &mut Value, n: usize, wanted: fn(&Value) -> bool) -> Option<&mut Value> {
    let count = count_values(root, wanted);
    (count > 0).then(|| kth_value(root, n % count, wanted))
}

fn any_value(_: &Value) -> bool {
    true
}

fn non_empty_object(value: &Value) -> bool {
    value.as_object().is_some_and(|m| !m.is_empty())
}

/// A char boundary at or before `at`.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The damaged text.
fn apply(report: &Report, mutation: &Mutation) -> String {
    let pretty = report.to_json();
    let mut tree: Value = serde_json::from_str(&pretty).expect("a report is JSON");
    match mutation {
        Mutation::Truncate(at) => pretty[..boundary(&pretty, at % (pretty.len() + 1))].to_string(),
        Mutation::FlipBytes(flips) => {
            let mut bytes = pretty.into_bytes();
            let len = bytes.len();
            for (at, xor) in flips {
                bytes[at % len] ^= xor;
            }
            String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        }
        Mutation::DeleteField(n) => {
            if let Some(Value::Object(object)) = nth_value(&mut tree, *n, non_empty_object) {
                let key = object.keys().nth(n % object.len()).cloned().unwrap();
                object.remove(&key);
            }
            tree.to_string()
        }
        Mutation::ChangeType(n, value) => {
            if let Some(target) = nth_value(&mut tree, *n, any_value) {
                *target = value.clone();
            }
            tree.to_string()
        }
        Mutation::HugeNumber(n, literal) => {
            // Numbers in the compact text: maximal runs of [-0-9.eE+] that start a value.
            let compact = tree.to_string();
            let bytes = compact.as_bytes();
            let mut numbers = Vec::new();
            let mut in_string = false;
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_string => i += 1,
                    b'"' => in_string = !in_string,
                    b'-' | b'0'..=b'9' if !in_string => {
                        let start = i;
                        while i + 1 < bytes.len()
                            && matches!(
                                bytes[i + 1],
                                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                            )
                        {
                            i += 1;
                        }
                        numbers.push(start..i + 1);
                    }
                    _ => {}
                }
                i += 1;
            }
            match numbers.get(n % numbers.len().max(1)) {
                Some(range) => format!(
                    "{}{literal}{}",
                    &compact[..range.start],
                    &compact[range.end..]
                ),
                None => compact,
            }
        }
        Mutation::Splice(at, junk) => {
            let at = boundary(&pretty, at % (pretty.len() + 1));
            format!("{}{junk}{}", &pretty[..at], &pretty[at..])
        }
        Mutation::Nest(n, depth) => {
            if let Some(target) = nth_value(&mut tree, *n, any_value) {
                *target = Value::String("\u{1}NEST\u{1}".into());
            }
            let nested = format!("{}{}", "[".repeat(*depth), "]".repeat(*depth));
            tree.to_string().replace("\"\\u0001NEST\\u0001\"", &nested)
        }
        Mutation::DuplicateField(n) => {
            let compact = tree.to_string();
            // Repeat one `"key":` pair's key with a junk value right after an opening brace.
            let opens: Vec<usize> = compact.match_indices("{\"").map(|(i, _)| i).collect();
            match opens.get(n % opens.len().max(1)) {
                Some(&i) => {
                    let key_end = compact[i + 2..].find('"').map(|e| i + 2 + e).unwrap();
                    let key = &compact[i + 1..=key_end];
                    format!("{}{{{key}:\"dup\",{}", &compact[..i], &compact[i + 1..])
                }
                None => compact,
            }
        }
    }
}

/// Everything the CLI does with a report it has read: none of it may panic.
fn render_all(report: &Report) {
    std::hint::black_box(report.to_text());
    std::hint::black_box(report.to_json());
    std::hint::black_box(report.to_folded());
    std::hint::black_box(report.to_flamegraph_svg());
    std::hint::black_box(report.to_pprof_gz());
    std::hint::black_box(report.to_pprof_delta_gz(report));
    std::hint::black_box(report.to_dhat_json());
    for key in [
        |f: &Figures| f.live_bytes,
        |f: &Figures| f.peak_live_bytes,
        |f: &Figures| f.alloc_bytes,
    ] {
        std::hint::black_box(report.ranked_by(key));
    }
}

// ---------------------------------------------------------------------------------------
// The properties.

fn arbitrary_text_never_panics() {
    check(
        prop_oneof![
            any::<String>(),
            "[\\[\\]{}\",:0-9a-z.eE+\\- \\\\]{0,200}",
            // Objects that claim to be reports, with junk after the claim.
            "[\\[\\]{}\",:0-9a-z.\\- ]{0,120}"
                .prop_map(|junk| format!("{{\"format\":\"alloc-tracker\",\"version\":1,{junk}")),
        ],
        |text| {
            if let Ok(report) = Report::from_json(&text) {
                render_all(&report);
            }
            Ok(())
        },
    );
}

fn valid_reports_round_trip() {
    check(report(), |report| {
        let pretty = report.to_json();
        let read = Report::from_json(&pretty)
            .map_err(|e| TestCaseError::fail(format!("a valid report was refused: {e}")))?;
        prop_assert_eq!(&read, &report);
        // The compact form (as other tools may write it) reads the same.
        let compact = serde_json::to_string(&report).unwrap();
        prop_assert_eq!(&Report::from_json(&compact).unwrap(), &report);
        render_all(&read);
        Ok(())
    });
}

fn mutated_reports_never_panic() {
    check((report(), mutation()), |(report, mutation)| {
        let text = apply(&report, &mutation);
        if let Ok(read) = Report::from_json(&text) {
            prop_assert_eq!(&read.format, FORMAT);
            prop_assert!(read.version <= VERSION);
            render_all(&read);
        }
        Ok(())
    });
}

fn foreign_and_future_reports_are_told_apart() {
    check(
        (
            report(),
            prop_oneof![
                u64::from(VERSION) + 1..u64::from(VERSION) + 100,
                u64::from(VERSION) + 1..=u64::MAX,
            ],
            text(),
        ),
        |(report, future, format)| {
            let mut tree: Value = serde_json::from_str(&report.to_json()).unwrap();
            tree["version"] = Value::from(future);
            let newer = match Report::from_json(&tree.to_string()) {
                Ok(_) => return Err(TestCaseError::fail(format!("version {future} was read"))),
                Err(e) => e.to_string(),
            };
            prop_assert!(newer.contains("newer"), "{}", newer);
            if format != FORMAT {
                tree["format"] = Value::String(format);
                let foreign = Report::from_json(&tree.to_string())
                    .unwrap_err()
                    .to_string();
                prop_assert!(
                    foreign.contains("not an alloc-tracker report"),
                    "{}",
                    foreign
                );
            }
            Ok(())
        },
    );
}

fn main() {
    run_checks(
        "fuzz_report",
        &[
            ("arbitrary_text_never_panics", arbitrary_text_never_panics),
            ("valid_reports_round_trip", valid_reports_round_trip),
            ("mutated_reports_never_panic", mutated_reports_never_panic),
            (
                "foreign_and_future_reports_are_told_apart",
                foreign_and_future_reports_are_told_apart,
            ),
        ],
    );
}
