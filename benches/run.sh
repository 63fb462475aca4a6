#!/usr/bin/env bash
# Measures alloc-tracker's overhead and writes benches/RESULTS.md:
#   1. builds the workload binaries (one per global allocator) in release;
#   2. runs the criterion micro-benchmarks (benches/benches/micro.rs);
#   3. runs every workload variant interleaved over several rounds, the tracker-memory
#      workload at each rate, and (with valgrind installed) instruction counts;
#   4. writes the tables, the machine, the date and this command to benches/RESULTS.md.
#
#   benches/run.sh           # full run, about 12-15 minutes on 2 cores
#   benches/run.sh --quick   # about 4 minutes: short criterion, 3 rounds, smaller workloads
#
# Any ALLOC_TRACKER_* variable in the environment is ignored (it would override the
# configurations being compared). CARGO_TARGET_DIR is respected.
#
# Frame pointers: the `*-fp` configurations need them and the workspace no longer forces
# them, so the benches are built with `-C force-frame-pointers=yes` (added to any RUSTFLAGS
# given), in a `frame-pointers` directory of the target directory so that other builds are
# not redone. BENCH_FRAME_POINTERS=no measures the build Cargo makes by default instead
# (there `auto` uses the unwind tables, and the `*-fp` stacks are wrong).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h | --help)
            sed -n '2,19p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

for var in $(compgen -e | grep '^ALLOC_TRACKER_' || true); do
    unset "$var"
done
export ALLOC_TRACKER_REPORT=off

target="${CARGO_TARGET_DIR:-$PWD/target}"
prefix="BENCH_FRAME_POINTERS=no "
if [ "${BENCH_FRAME_POINTERS:-yes}" != no ]; then
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C force-frame-pointers=yes"
    target="$target/frame-pointers"
    prefix=""
fi
export CARGO_TARGET_DIR="$target"
export CRITERION_HOME="$target/criterion"
since=$(date +%s)
started=$SECONDS

echo "== build" >&2
cargo build --release -p alloc-tracker-benches --bins

echo "== criterion" >&2
if [ "$quick" = 1 ]; then
    criterion_args=(--warm-up-time 0.3 --measurement-time 0.7 --sample-size 30)
else
    criterion_args=(--warm-up-time 0.5 --measurement-time 1.5)
fi
cargo bench -p alloc-tracker-benches --bench micro -- "${criterion_args[@]}"

echo "== workloads" >&2
runner_args=(--criterion "$CRITERION_HOME" --criterion-since "$since" --out benches/RESULTS.md)
if [ "$quick" = 1 ]; then
    runner_args+=(--quick)
fi
"$target/release/bench-runner" "${runner_args[@]}" --command "${prefix}benches/run.sh${*:+ $*}"

echo "== done in $((SECONDS - started)) s: benches/RESULTS.md" >&2
