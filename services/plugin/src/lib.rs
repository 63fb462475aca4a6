//! A plugin: a shared library, loaded and unloaded with `dlopen`/`dlclose` by a host
//! program that knows nothing of the tracker (`services/src/bin/plugin_host.rs`). Its own
//! Rust code allocates through the tracker, which starts inside it: the exit hook, the
//! signal handler, the watcher thread and the counters' thread-exit destructor all live in
//! this library, which therefore must stay mapped after the host unloads it.

use std::sync::Mutex;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

/// What the plugin keeps for good: the report must name it.
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Keeps `mib` MiB, from this thread and from a short-lived thread of the plugin's.
#[no_mangle]
pub extern "C" fn plugin_keep(mib: usize) {
    let worker = std::thread::spawn(move || {
        for _ in 0..mib / 2 {
            keep_one();
        }
    });
    for _ in 0..mib - mib / 2 {
        keep_one();
    }
    let _ = worker.join();
}

#[inline(never)]
fn keep_one() {
    let block = vec![7u8; 1 << 20]; // leak-site
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(block);
}
