//! `reslice-leak`: the leaky side of the `reslice` demo (see `demos::reslice`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::reslice::DEMO, true);
    demos::reslice::run(&opts, true)
}
