//! `stale-slot-fixed`: the fixed side of the `stale-slot` demo (see `demos::stale_slot`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::stale_slot::DEMO, false);
    demos::stale_slot::run(&opts, false)
}
