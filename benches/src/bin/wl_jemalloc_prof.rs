//! The workloads with `tikv_jemallocator::Jemalloc` built with jemalloc's own heap profiler
//! (feature `jemalloc-prof`): the peer of `wl-tracker-jemalloc`. Profiling is off unless
//! `_RJEM_MALLOC_CONF` turns it on (`prof:true,prof_active:true,lg_prof_sample:19` samples
//! once per 512 KiB on average, the tracker's default rate); every result line says what
//! jemalloc reports for `opt.prof` and `opt.lg_prof_sample`.

use alloc_tracker_benches::cli::{self, Allocator};
use alloc_tracker_benches::jemalloc;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    cli::main_with(Allocator::JemallocProf, Some(jemalloc::prof_settings))
}
