//! `cache-leak`: the leaky side of the `cache` demo (see `demos::cache`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::cache::DEMO, true);
    demos::cache::run(&opts, true)
}
