//! The table unwinder's test binary: `unwind.rs`, where the unwinder exists and a library
//! can be loaded (`cfg(table_unwinder_test)`, set by `build.rs`: Linux on x86_64 and
//! aarch64, not a static executable). Elsewhere it says so and checks nothing.

#[cfg(table_unwinder_test)]
mod unwind;

fn main() {
    #[cfg(table_unwinder_test)]
    unwind::main();
    #[cfg(not(table_unwinder_test))]
    println!("unwind: no table unwinder, or no dlopen, on this target; nothing to check");
}
