//! Service-shaped programs that install the tracker and end the way real services do —
//! tokio, signal-hook and ctrlc handlers, `sigwait` and `signalfd` daemons, an ignored
//! SIGINT, no handler at all, a forked worker, hundreds of threads — and the pieces they
//! and their tests share.
//!
//! Each program in `src/bin/` keeps 48 MiB alive at a line marked `// leak-site`, prints
//! `ready` once it can take its signal and `clean shutdown` when it ends gracefully. The
//! tests in `tests/` run them, signal them, and check the exit status, what they printed
//! and the report they left ([`harness`]).

pub mod harness;
pub mod noise;
pub mod plan;
pub mod say;
