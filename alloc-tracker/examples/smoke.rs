use std::sync::Mutex;

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn leak() {
    KEPT.lock().unwrap().push(vec![1u8; 4096]);
}

fn main() {
    for _ in 0..10_000 {
        leak();
        let s = format!("{}", 12345);
        drop(s);
    }
    println!("{:?}", alloc_tracker::stats());
}
