#!/usr/bin/env bash
# The platform stage (run by ./run-tests after the native tests, or alone):
#
#   bash .ci/platforms.sh               install what is missing (rustup targets, Debian cross
#                                       tools, binfmt registration), then check and test
#   bash .ci/platforms.sh --no-install  only check and test (fails where a tool is missing)
#
# 1. Lints: `cargo clippy -D warnings` for every target below, with the default features,
#    all features, and the library with none. `alloc-tracker-benches` is left out off the
#    host: it builds jemalloc's C sources, which needs a C toolchain for the target (there is
#    none for macOS here). `services` is left out on Windows: every program and test in it is
#    about POSIX ends of a process (signals, `fork`, `kill`, cgroups), which Windows lacks.
# 2. Tests, as far as this Linux machine can run them (a focused subset: what differs by
#    platform):
#      x86_64-unknown-linux-musl   natively (static executables)
#      aarch64-unknown-linux-gnu   under qemu-user (binfmt_misc for re-executed children),
#                                  without the `fork` checks: qemu-user 7.2 aborts in a fork
#                                  child that starts a thread (any program, tracker or not)
#      x86_64-pc-windows-gnu       under Wine 8 (with a stand-in bcryptprimitives.dll)
#      x86_64-pc-windows-msvc      not run: no MSVC linker here, lints only
#      *-apple-darwin              not run: no macOS linker or machine here, lints only
#    Only the tests of what differs by platform run there (the rest is the same code on
#    every target, and the native run covers it): the library's unit tests (the table
#    unwinder against DWARF, the fp walk, counters and their thread-exit callback, gauges,
#    clocks, files), and tracker-tests' exact (the counters), sampled (sampling, stacks and
#    their names in the report), lifecycle (every exit, signals, fork, config, 10,000
#    threads), stress (threads, cross-thread frees, fork, concurrent reports) and unwind
#    (the table unwinder on aarch64; elsewhere the binary says it checks nothing). Left out
#    under emulation: concurrent, stack_cap, soak, scope, trends, fuzz_report (load and the
#    report model: no platform code), symbol_names (builds with cargo from inside the
#    test), viewers and the CLI and demo suites (report formats and clients).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

install=yes
for arg in "$@"; do
    case "$arg" in
        --no-install) install=no ;;
        *) echo "usage: bash .ci/platforms.sh [--no-install]" >&2; exit 2 ;;
    esac
done

TARGETS="x86_64-apple-darwin aarch64-apple-darwin x86_64-pc-windows-gnu x86_64-pc-windows-msvc
    aarch64-unknown-linux-gnu x86_64-unknown-linux-musl"
stage() { echo "== platforms: $* ($(date +%T))" >&2; }

# --- Toolchains -----------------------------------------------------------------------
missing_targets=()
installed=$(rustup target list --installed)
for target in $TARGETS; do
    grep -qx "$target" <<<"$installed" || missing_targets+=("$target")
done
needed=()
command -v qemu-aarch64 >/dev/null 2>&1 || needed+=(qemu-user)
[ -e /usr/lib/binfmt.d/qemu-aarch64.conf ] || needed+=(qemu-user-binfmt)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || needed+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || needed+=(gcc-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || needed+=(wine64)
if [ "${#missing_targets[@]}" -gt 0 ] || [ "${#needed[@]}" -gt 0 ]; then
    if [ "$install" = no ]; then
        echo "platforms: missing ${missing_targets[*]} ${needed[*]} (run without --no-install)" >&2
        exit 1
    fi
fi
if [ "${#missing_targets[@]}" -gt 0 ]; then
    stage "rustup target add ${missing_targets[*]}"
    rustup target add "${missing_targets[@]}" >/dev/null
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
if [ "${#needed[@]}" -gt 0 ]; then
    stage "apt-get install ${needed[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${needed[@]}" >/dev/null
fi

# The scenario tests re-execute their own (aarch64) binary: the kernel starts it through
# binfmt_misc, which nothing registers on a machine without systemd-binfmt.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    if [ "$install" = no ]; then
        echo "platforms: qemu-aarch64 is not registered with binfmt_misc (run without --no-install)" >&2
        exit 1
    fi
    stage "binfmt_misc: register qemu-aarch64"
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
        $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    $sudo sh -c 'cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register'
fi

# Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust's std (1.78+) imports: without
# the stand-in every executable dies at load. A prefix of our own, next to the build.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
export WINEPREFIX="$target_dir/wine" WINEDEBUG=-all
if [ ! -e "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" ]; then
    stage "wine prefix $WINEPREFIX"
    /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1
    x86_64-w64-mingw32-gcc -O2 -shared -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
        .ci/wine-bcryptprimitives.c -ladvapi32
fi

# --- How each target is linked and run ---------------------------------------------------
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu # the guest's libraries, for every aarch64 process
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=/usr/lib/wine/wine64

# --- Lints: every target × feature set ---------------------------------------------------
for target in $TARGETS; do
    exclude=(--exclude alloc-tracker-benches)
    case "$target" in *-windows-*) exclude+=(--exclude services) ;; esac
    stage "clippy $target"
    cargo clippy --quiet --workspace "${exclude[@]}" --all-targets --target "$target" -- -D warnings
    cargo clippy --quiet --workspace "${exclude[@]}" --all-targets --all-features --target "$target" -- -D warnings
    cargo clippy --quiet -p alloc-tracker --lib --no-default-features --target "$target" -- -D warnings
done

# --- Tests -------------------------------------------------------------------------------
TESTS=(-p alloc-tracker -p tracker-tests --lib --test exact --test sampled --test lifecycle
    --test stress --test unwind)

stage "test x86_64-unknown-linux-musl (native)"
cargo test --target x86_64-unknown-linux-musl "${TESTS[@]}"

stage "test aarch64-unknown-linux-gnu (qemu-user)"
STRESS_FORKS=0 cargo test --target aarch64-unknown-linux-gnu "${TESTS[@]}" -- --skip fork

stage "test x86_64-pc-windows-gnu (Wine)"
cargo test --target x86_64-pc-windows-gnu "${TESTS[@]}"

stage "done"
