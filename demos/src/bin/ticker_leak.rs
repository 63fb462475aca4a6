//! `ticker-leak`: the leaky side of the `ticker` demo (see `demos::ticker`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::ticker::DEMO, true);
    demos::ticker::run(&opts, true)
}
