//! The whole-program workloads, identical in every `wl-*` binary: only the global
//! allocator differs.
//!
//! * [`service`]: an allocation-heavy request loop: format a request, parse it into maps
//!   and vectors of strings, look the answer up in a bounded cache or build it (maps of
//!   formatted fields rendered to JSON text), format the response, drop it all.
//! * [`hashmap`]: build a `HashMap<String, Vec<u8>>` of many entries, read it, drop it.
//! * [`hold`]: allocate a large live heap of mixed sizes and keep it, to compare the
//!   tracker's own memory with the heap it describes.
//!
//! Every workload is deterministic for a given seed, and returns a checksum so that the
//! optimiser cannot remove the work.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::hint::black_box;

/// A small deterministic generator (xorshift64*), so the workloads do the same work in every
/// binary and every run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed (zero is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Requests per thread in [`service`] at scale 1 (about a second with `System` on one core).
pub const SERVICE_ITERS: u64 = 100_000;
/// Maps built per thread in [`hashmap`] at scale 1.
pub const HASHMAP_ITERS: u64 = 60;
/// Entries per map in [`hashmap`].
pub const HASHMAP_ENTRIES: u64 = 25_000;
/// Responses the [`service`] cache keeps before evicting the oldest.
pub const CACHE_ENTRIES: usize = 2048;

/// A parsed request.
struct Request {
    method: String,
    path: Vec<String>,
    query: HashMap<String, String>,
    headers: BTreeMap<String, String>,
}

fn parse_request(text: &str) -> Request {
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    Request {
        method,
        path,
        query,
        headers,
    }
}

/// A bounded cache: at most [`CACHE_ENTRIES`] responses, oldest evicted first.
struct Cache {
    map: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Cache {
    fn new() -> Cache {
        Cache {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, key: &str) -> Option<&String> {
        self.map.get(key)
    }

    fn insert(&mut self, key: String, value: String) {
        if self.map.len() >= CACHE_ENTRIES {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, value);
    }
}

fn render_orders(rng: &mut Rng, user: u64) -> String {
    let count = 3 + rng.below(12);
    let mut orders = Vec::new();
    for i in 0..count {
        let mut order = HashMap::new();
        order.insert("id".to_string(), format!("{user}-{i}"));
        order.insert("item".to_string(), format!("item-{:05}", rng.below(50_000)));
        order.insert(
            "price".to_string(),
            format!("{:.2}", rng.below(100_000) as f64 / 100.0),
        );
        order.insert("status".to_string(), "shipped".to_string());
        orders.push(order);
    }
    let mut body = String::from("{\"orders\":[");
    for (i, order) in orders.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let mut fields: Vec<(&String, &String)> = order.iter().collect();
        fields.sort();
        body.push('{');
        for (j, (k, v)) in fields.iter().enumerate() {
            if j > 0 {
                body.push(',');
            }
            let _ = write!(body, "\"{k}\":\"{v}\"");
        }
        body.push('}');
    }
    body.push_str("]}");
    body
}

/// The service-like loop: `iters` requests. Returns a checksum of the responses.
pub fn service(iters: u64, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut cache = Cache::new();
    let mut checksum = 0u64;
    for _ in 0..iters {
        let user = rng.below(1500);
        let page = rng.below(3);
        let request = format!(
            "GET /api/v1/users/{user}/orders?page={page}&limit=20&sort=date HTTP/1.1\r\n\
             Host: shop.example\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\n\
             X-Request-Id: {:016x}\r\n\r\n",
            rng.next_u64()
        );
        let parsed = parse_request(&request);
        let key = format!("{}:{}", parsed.path.join("/"), page);
        let body = match cache.get(&key) {
            Some(hit) => hit.clone(),
            None => {
                let body = render_orders(&mut rng, user);
                cache.insert(key, body.clone());
                body
            }
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             X-Request-Id: {}\r\n\r\n{}",
            body.len(),
            parsed
                .headers
                .get("x-request-id")
                .map_or("", String::as_str),
            body
        );
        checksum = checksum
            .wrapping_add(response.len() as u64)
            .wrapping_add(parsed.query.len() as u64 + parsed.method.len() as u64);
        black_box(&response);
    }
    checksum
}

/// Builds, reads and drops `iters` maps of [`HASHMAP_ENTRIES`] `String → Vec<u8>` entries.
/// Returns a checksum of what was read.
pub fn hashmap(iters: u64, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut checksum = 0u64;
    for _ in 0..iters {
        let mut map: HashMap<String, Vec<u8>> = HashMap::new();
        for i in 0..HASHMAP_ENTRIES {
            let key = format!("key-{i}-{:x}", rng.below(1 << 20));
            let len = 8 + rng.below(248) as usize;
            map.insert(key, vec![i as u8; len]);
        }
        for i in (0..HASHMAP_ENTRIES).step_by(7) {
            let key = format!("key-{i}-");
            checksum = checksum.wrapping_add(map.get(&key).map_or(0, Vec::len) as u64);
        }
        checksum = checksum.wrapping_add(map.values().map(|v| v[0] as u64).sum::<u64>());
        black_box(&map);
    }
    checksum
}

/// Allocates about `bytes` of live heap in blocks of mixed sizes and returns them: half the
/// bytes in small blocks (16–256 B), half in larger ones (256 B–64 KiB, log-uniform). Every
/// block is written, so the memory is resident.
pub fn hold(bytes: u64, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut blocks = Vec::new();
    let (mut small, mut large) = (0u64, 0u64);
    while small + large < bytes {
        let size = if small <= large {
            16 + rng.below(241)
        } else {
            // log-uniform between 2^8 and 2^16
            let exp = 8.0 + (rng.below(1 << 20) as f64 / (1 << 20) as f64) * 8.0;
            2f64.powf(exp) as u64
        };
        if small <= large {
            small += size;
        } else {
            large += size;
        }
        blocks.push(vec![size as u8; size as usize]);
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request() {
        let r = parse_request("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nX-Id: 7\r\n\r\n");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, ["a", "b"]);
        assert_eq!(r.query["y"], "2");
        assert_eq!(r.headers["x-id"], "7");
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = Cache::new();
        for i in 0..CACHE_ENTRIES * 3 {
            cache.insert(i.to_string(), String::new());
        }
        assert_eq!(cache.map.len(), CACHE_ENTRIES);
        assert!(cache.get("0").is_none());
        assert!(cache.get(&(CACHE_ENTRIES * 3 - 1).to_string()).is_some());
    }

    #[test]
    fn workloads_are_deterministic() {
        assert_eq!(service(300, 1), service(300, 1));
        assert_eq!(hashmap(1, 2), hashmap(1, 2));
        let held = hold(1 << 20, 3);
        let total: usize = held.iter().map(Vec::len).sum();
        assert!((1 << 20..(1 << 20) + (1 << 16)).contains(&total), "{total}");
    }
}
