//! Pattern 1, an unbounded cache: a request loop caches every rendered response in a
//! `HashMap` that nothing ever evicts from, so the heap grows with every new key
//! (`cache-leak`). The fix bounds it with the `lru` crate's `LruCache` (`cache-fixed`).
//!
//! Both render at the same line (marked `leak-site`); only what the cache keeps differs.

use crate::cli::{self, Demo, Knob, Opts, Progress};
use lru::LruCache;
use std::collections::HashMap;
use std::num::NonZeroUsize;

/// The cache demo's command line.
pub const DEMO: Demo = Demo {
    name: "cache",
    leak: "a request loop caches every response in a HashMap with no eviction",
    fix: "the same loop with a bounded LRU cache (the `lru` crate)",
    unit: "requests",
    count: Knob {
        long: "count",
        default: "30000",
        help: "Requests to serve, each for a new key (the default is 5000 a second for 6 s)",
    },
    size: Knob {
        long: "size",
        default: "5000",
        help: "Bytes of each rendered response",
    },
    seconds: "6",
    keep: Some(Knob {
        long: "capacity",
        default: "1000",
        help: "Entries the LRU cache of cache-fixed holds at most",
    }),
};

/// A rendered response, as the cache keeps it.
type Page = Vec<u8>;

/// Renders the response for `key`: the expensive work that the cache is there to save.
#[inline(never)]
fn render(key: u64, size: usize) -> Page {
    let mut page = vec![b' '; size]; // leak-site
    let id = key.to_le_bytes();
    let n = id.len().min(page.len());
    page[..n].copy_from_slice(&id[..n]);
    page
}

/// A response cache keyed by user id.
enum Cache {
    /// The leak: a map that only ever grows.
    Unbounded(HashMap<u64, Page>),
    /// The fix: at most `capacity` entries, the least recently used evicted first.
    Lru(LruCache<u64, Page>),
}

impl Cache {
    fn new(leaky: bool, capacity: u64) -> Self {
        if leaky {
            Cache::Unbounded(HashMap::new())
        } else {
            let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
            Cache::Lru(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            ))
        }
    }

    /// The cached response for `key`, rendered and cached on a miss.
    fn get_or_render(&mut self, key: u64, size: usize) -> &Page {
        match self {
            Cache::Unbounded(map) => map.entry(key).or_insert_with(|| render(key, size)),
            Cache::Lru(lru) => lru.get_or_insert(key, || render(key, size)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Cache::Unbounded(map) => map.len(),
            Cache::Lru(lru) => lru.len(),
        }
    }
}

/// Serves `opts.count` requests for distinct users through the leaky or the bounded cache,
/// then exits with the cache still alive.
pub fn run(opts: &Opts, leaky: bool) -> ! {
    let size = usize::try_from(opts.size).expect("--size fits in memory");
    let mut cache = Cache::new(leaky, opts.keep);
    let mut progress = Progress::new(&DEMO, opts);
    let mut served = 0u64;
    for request in 1..=opts.count {
        // Every request is for a user not seen before (session ids, search queries, …).
        let user = request.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        served += cache.get_or_render(user, size).len() as u64;
        progress.step(request, || format!("Objects cached: {}", cache.len()));
    }
    progress.finish(opts.count, || format!("Objects cached: {}", cache.len()));
    println!(
        "Served {} in {} responses",
        cli::human_bytes(served),
        opts.count
    );
    cli::exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope_check::LeakSite;
    use alloc_tracker::Scope;

    /// Bytes of each page.
    const SIZE: usize = 5000;
    /// Entries the fixed cache holds.
    const CAPACITY: u64 = 4;
    /// Requests measured: many times the capacity.
    const REQUESTS: u64 = 16 * CAPACITY;

    /// Serves requests `requests` for users not seen before, as `run` does.
    fn serve(cache: &mut Cache, requests: std::ops::Range<u64>) {
        for request in requests {
            let user = request.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            std::hint::black_box(cache.get_or_render(user, SIZE));
        }
    }

    #[test]
    fn leaky_cache_keeps_every_page() {
        let mut cache = Cache::new(true, CAPACITY);
        let scope = Scope::start();
        serve(&mut cache, 0..REQUESTS);
        let usage = scope.finish();
        LeakSite::of("cache.rs").assert_leaks(&usage, REQUESTS * SIZE as u64, REQUESTS);
    }

    /// A bounded cache keeps what it is for: the pages of its last `CAPACITY` requests,
    /// which the scope made. So its pin is its bound, not 0: however many requests it
    /// serves, it retains `CAPACITY` pages at most (exactly that here, as `REQUESTS` is
    /// larger), where the leaky one retains all `REQUESTS` of them.
    #[test]
    fn lru_cache_keeps_at_most_its_capacity() {
        let mut cache = Cache::new(false, CAPACITY);
        // Warm-up: fill the cache, which allocates its list nodes (reused from then on).
        // Its map is sized for `CAPACITY` from the start and never grows: a table under
        // 16 buckets has no tombstones to rehash for.
        serve(&mut cache, 0..CAPACITY);
        let scope = Scope::start();
        serve(&mut cache, CAPACITY..CAPACITY + REQUESTS);
        let usage = scope.finish();
        usage.assert_retains_at_most(CAPACITY * SIZE as u64);
        assert_eq!(
            LeakSite::of("cache.rs").retained(&usage),
            (CAPACITY * SIZE as u64, CAPACITY),
            "{usage}"
        );
    }
}
