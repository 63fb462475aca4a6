//! `listener-fixed`: the fixed side of the `listener` demo (see `demos::listener`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::listener::DEMO, false);
    demos::listener::run(&opts, false)
}
