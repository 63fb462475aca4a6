//! A tokio service: a multi-thread runtime runs workers until the shutdown signal —
//! SIGINT through `tokio::signal::ctrl_c()` (`tokio_service ctrl-c`) or SIGTERM through
//! `tokio::signal::unix::signal(SignalKind::terminate())` (`tokio_service terminate`) —
//! then lets the workers finish and returns from `main`.
//!
//! Prints `ready` once the handler is installed and `clean shutdown` at the end.

use services::say;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The service's long-lived state: 48 MiB that its report must name.
#[inline(never)]
fn keep_state() {
    let mut kept = KEPT.lock().unwrap();
    for _ in 0..48 {
        kept.push(vec![1u8; 1 << 20]); // leak-site
    }
}

/// Polls `future` once: its output if it is already done.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut *future).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// A request loop: allocates and frees until told to stop; returns the requests served.
async fn worker(stop: Arc<AtomicBool>) -> u64 {
    let mut served = 0;
    while !stop.load(Ordering::Acquire) {
        let request = vec![served as u8; 4096];
        std::hint::black_box(&request);
        served += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    served
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    keep_state();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(worker(Arc::clone(&stop))))
        .collect();
    match std::env::args().nth(1).as_deref() {
        Some("ctrl-c") => {
            // `ctrl_c()` installs its handler when first polled: poll it once before
            // saying `ready`.
            let mut ctrl_c = pin!(tokio::signal::ctrl_c());
            let early = poll_once(&mut ctrl_c).await;
            say!("ready");
            match early {
                Some(result) => result,
                None => ctrl_c.await,
            }
            .expect("wait for SIGINT");
        }
        Some("terminate") => {
            let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
            say!("ready");
            terminate.recv().await;
        }
        other => panic!("usage: tokio_service ctrl-c|terminate (got {other:?})"),
    }
    say!("shutting down");
    stop.store(true, Ordering::Release);
    let mut served = 0;
    for worker in workers {
        served += worker.await.expect("worker task");
    }
    say!("served {served} requests");
    say!("clean shutdown");
}
