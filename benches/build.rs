//! Tells the benches whether this build has frame pointers: `cfg(frame_pointers)` when the
//! Rust flags force them (`run.sh` builds both ways, in two target directories). The
//! frame-pointer configurations are measured only where their stacks are right, and every
//! bench binary says which build it is, so that a result cannot be filed under the wrong one.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(frame_pointers)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    // The last `force-frame-pointers` flag wins, as it does for rustc.
    let forced = flags
        .split('\x1f')
        .filter_map(|flag| flag.split("force-frame-pointers").nth(1))
        .map(|value| value.trim_start_matches('='))
        .next_back()
        .is_some_and(|value| !matches!(value, "no" | "n" | "off" | "false"));
    if forced {
        println!("cargo::rustc-cfg=frame_pointers");
    }
}
