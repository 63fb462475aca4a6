//! `handle-leak`: the leaky side of the `handle` demo (see `demos::handle`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::handle::DEMO, true);
    demos::handle::run(&opts, true)
}
