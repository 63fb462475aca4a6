//! `handle-fixed`: the fixed side of the `handle` demo (see `demos::handle`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::handle::DEMO, false);
    demos::handle::run(&opts, false)
}
