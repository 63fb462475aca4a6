#!/usr/bin/env bash
# Measures alloc-tracker's overhead and writes benches/RESULTS.md:
#   1. builds the bench binaries twice, in release: as Cargo builds by default (no frame
#      pointers: what a user who changes nothing gets) and with -C force-frame-pointers=yes
#      (in a `frame-pointers` directory of the target directory, so neither build redoes the
#      other); `wl-jemalloc-prof` (jemalloc with its profiler) is built alone with the
#      `jemalloc-prof` feature, so that every other binary keeps the stock jemalloc;
#   2. runs the criterion micro-benchmarks (benches/benches/micro.rs) in the default build,
#      and the frame-pointer configurations in the frame-pointer build;
#   3. runs bench-runner: every workload variant in both builds, the free path with up to
#      1 M live samples, pairs on 1 to 1,000 threads, the sampled event (unwind-timing),
#      interleaved over rounds; the tracker-memory workload; instruction counts (callgrind,
#      when valgrind is installed); and writes the goals and every table to RESULTS.md,
#      with the machine, the date and this command.
#
#   benches/run.sh                 # full run: about 20-25 minutes on 2 shared cores (builds
#                                  # done; a first run builds everything twice: +10 minutes)
#   benches/run.sh --quick         # about 6 minutes: short criterion, 3 rounds, smaller work
#   benches/run.sh --rounds N      # N rounds (default 12, 3 with --quick)
#   benches/run.sh --no-fp-build   # the default build alone (no frame-pointer columns)
#   benches/run.sh --no-criterion  # skip the criterion micro-benchmarks
#   benches/run.sh --no-callgrind  # skip the instruction counts
#
# Any ALLOC_TRACKER_* or _RJEM_MALLOC_CONF variable in the environment is ignored (it would
# override the configurations being compared). CARGO_TARGET_DIR and RUSTFLAGS are respected
# (RUSTFLAGS goes to both builds; a run fails if it forces frame pointers in the default one).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
fp_build=1
criterion=1
runner_extra=()
args=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --no-fp-build) fp_build=0 ;;
        --no-criterion) criterion=0 ;;
        --no-callgrind) runner_extra+=(--no-callgrind) ;;
        --rounds)
            [ $# -ge 2 ] || { echo "--rounds needs a value" >&2; exit 2; }
            runner_extra+=(--rounds "$2")
            shift
            ;;
        -h | --help)
            sed -n '2,26p' "$0"
            exit 0
            ;;
        *)
            echo "unknown argument: $1 (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

for var in $(compgen -e | grep -E '^(ALLOC_TRACKER_|_RJEM_MALLOC_CONF$|MALLOC_CONF$)' || true); do
    unset "$var"
done
export ALLOC_TRACKER_REPORT=off

target="${CARGO_TARGET_DIR:-$PWD/target}"
fp_target="$target/frame-pointers"
user_rustflags="${RUSTFLAGS:-}"
fp_rustflags="${user_rustflags:+$user_rustflags }-C force-frame-pointers=yes"
since=$(date +%s)
started=$SECONDS

# build TARGET_DIR RUSTFLAGS: every bench binary, then wl-jemalloc-prof with its feature.
build() {
    CARGO_TARGET_DIR="$1" RUSTFLAGS="$2" cargo build --release -p alloc-tracker-benches --bins
    CARGO_TARGET_DIR="$1" RUSTFLAGS="$2" cargo build --release -p alloc-tracker-benches \
        --features jemalloc-prof --bin wl-jemalloc-prof
}

echo "== build: no frame pointers ($target)" >&2
build "$target" "$user_rustflags"
if [ "$fp_build" = 1 ]; then
    echo "== build: frame pointers ($fp_target)" >&2
    build "$fp_target" "$fp_rustflags"
fi

if [ "$quick" = 1 ]; then
    criterion_args=(--warm-up-time 0.3 --measurement-time 0.7 --sample-size 30)
else
    criterion_args=(--warm-up-time 0.5 --measurement-time 1.5)
fi
runner_args=(--out benches/RESULTS.md --criterion-since "$since")
if [ "$criterion" = 1 ]; then
    runner_args+=(--criterion-load "$(cut -d' ' -f1-3 /proc/loadavg)")
    echo "== criterion: no frame pointers" >&2
    CARGO_TARGET_DIR="$target" RUSTFLAGS="$user_rustflags" CRITERION_HOME="$target/criterion" \
        cargo bench -p alloc-tracker-benches --bench micro -- "${criterion_args[@]}"
    runner_args+=(--criterion "$target/criterion")
    if [ "$fp_build" = 1 ]; then
        echo "== criterion: frame pointers (the fp configurations)" >&2
        CARGO_TARGET_DIR="$fp_target" RUSTFLAGS="$fp_rustflags" \
            CRITERION_HOME="$fp_target/criterion" \
            cargo bench -p alloc-tracker-benches --bench micro -- fp "${criterion_args[@]}"
        runner_args+=(--fp-criterion "$fp_target/criterion")
    fi
fi

echo "== rounds, memory, callgrind" >&2
if [ "$fp_build" = 1 ]; then
    runner_args+=(--fp-bins "$fp_target/release")
fi
if [ "$quick" = 1 ]; then
    runner_args+=(--quick)
fi
"$target/release/bench-runner" "${runner_args[@]}" ${runner_extra[@]+"${runner_extra[@]}"} \
    --command "benches/run.sh${args[*]:+ ${args[*]}}"

echo "== done in $((SECONDS - started)) s: benches/RESULTS.md" >&2
