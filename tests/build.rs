//! Builds the unwinding tests' shared library (`testlib/lib.rs`) with rustc, without frame
//! pointers, into OUT_DIR (where those tests run: `cfg(table_unwinder_test)`); the tests
//! find it through `TRACKER_TESTLIB`. Also tells the tests whether this build forces frame
//! pointers (`cfg(forced_frame_pointers)`), where the tracker's `auto` unwinding keeps
//! walking them.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(forced_frame_pointers)");
    println!("cargo::rustc-check-cfg=cfg(table_unwinder_test)");
    let source = "testlib/lib.rs";
    println!("cargo::rerun-if-changed={source}");
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags
        .split('\x1f')
        .any(|flag| flag.contains("force-frame-pointers=yes"))
    {
        println!("cargo::rustc-cfg=forced_frame_pointers");
    }

    // The library is for the table unwinder's test, which runs where the unwinder exists
    // and a library can be loaded (`cfg(table_unwinder_test)`): not on other systems, and
    // not in a static executable (musl's default), which cannot `dlopen`.
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // (Cargo leaves `crt-static` out of CARGO_CFG_TARGET_FEATURE: it is musl's default,
    // and a flag can switch it either way.)
    let statically = if env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl") {
        !flags.contains("-crt-static")
    } else {
        flags.contains("+crt-static")
    };
    if os != "linux" || !["x86_64", "aarch64"].contains(&arch.as_str()) || statically {
        return;
    }
    println!("cargo::rustc-cfg=table_unwinder_test");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out.join("libtracker_testlib.so");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut command = Command::new(rustc);
    command
        .args([
            "--crate-type=cdylib",
            "--crate-name=tracker_testlib",
            "--edition=2021",
        ])
        .args(["-C", "opt-level=2", "-C", "panic=abort"])
        .args(["-C", "force-frame-pointers=no", "-C", "debuginfo=1"])
        .arg("--target")
        .arg(env::var("TARGET").expect("cargo sets TARGET"))
        .arg("-o")
        .arg(&library)
        .arg(source);
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        command
            .arg("-C")
            .arg(format!("linker={}", PathBuf::from(linker).display()));
    }
    let status = command.status().expect("run rustc for the test library");
    assert!(status.success(), "building {source} failed");
    println!("cargo::rustc-env=TRACKER_TESTLIB={}", library.display());
}
