//! Leak-pattern demos for alloc-tracker: for each pattern, a leaky binary
//! (`<name>-leak`) and a fixed one (`<name>-fixed`) that share the module below, so the
//! leak and its fix sit side by side. In each module, the line that allocates what leaks
//! is marked with a `leak-site` comment: it is the line the tracker's report names.
//!
//! | module | the leak | the fix |
//! |---|---|---|
//! | [`cache`] | a `HashMap` cache with no eviction | a bounded `lru::LruCache` |
//! | [`reslice`] | a 1 KiB view keeps a 10 MB buffer (`truncate`, `Bytes::slice`) | copy what is kept |
//! | [`global`] | a `static` audit log that only grows | bounded retention |
//! | [`listener`] | closures on an event bus never removed | a subscription that unsubscribes on drop |
//! | [`ticker`] | a heartbeat thread per request never stopped | stop and join on drop |
//! | [`handle`] | open files of finished uploads kept in a map | remove on completion |
//! | [`defer_loop`] | per-record buffers kept until the batch returns | scope each iteration |
//! | [`stale_slot`] | a ring buffer pops without clearing the slot | `Option::take` |
//! | [`rc_cycle`] | parent ↔ child `Rc` cycles | `Weak` back-pointers |
//!
//! Options and progress lines are shared by all ([`cli`]).
//!
//! Each module also pins its leak and its fix with a unit test, the way a user would: the
//! pattern's step (one request, one event, one iteration …) runs in an
//! [`alloc_tracker::Scope`], which must name the `leak-site` line for the leaky variant and
//! find nothing retained (or only the fix's bound) for the fixed one.

// `Scope` needs the tracker as the global allocator of the binary it measures in: here, the
// library's unit-test binary only. The demo binaries install it themselves, and the
// library must not impose an allocator on whatever links it.
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc_tracker::Tracker = alloc_tracker::Tracker::system();

pub mod cache;
pub mod cli;
pub mod defer_loop;
pub mod global;
pub mod handle;
pub mod listener;
pub mod rc_cycle;
pub mod reslice;
#[cfg(test)]
mod scope_check;
pub mod stale_slot;
pub mod ticker;
