//! `defer-loop-fixed`: the fixed side of the `defer-loop` demo (see `demos::defer_loop`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::defer_loop::DEMO, false);
    demos::defer_loop::run(&opts, false)
}
