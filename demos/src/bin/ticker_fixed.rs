//! `ticker-fixed`: the fixed side of the `ticker` demo (see `demos::ticker`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::ticker::DEMO, false);
    demos::ticker::run(&opts, false)
}
