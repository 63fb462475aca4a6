//! `global-leak`: the leaky side of the `global` demo (see `demos::global`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::global::DEMO, true);
    demos::global::run(&opts, true)
}
