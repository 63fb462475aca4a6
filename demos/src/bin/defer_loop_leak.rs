//! `defer-loop-leak`: the leaky side of the `defer-loop` demo (see `demos::defer_loop`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::defer_loop::DEMO, true);
    demos::defer_loop::run(&opts, true)
}
