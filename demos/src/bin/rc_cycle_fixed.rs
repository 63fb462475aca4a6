//! `rc-cycle-fixed`: the fixed side of the `rc-cycle` demo (see `demos::rc_cycle`).

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

fn main() {
    let opts = demos::cli::start(&demos::rc_cycle::DEMO, false);
    demos::rc_cycle::run(&opts, false)
}
