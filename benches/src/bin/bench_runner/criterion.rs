//! criterion's estimates, read from its output directories: the default build's, and the
//! frame-pointer build's for the configurations that unwind with frame pointers.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::UNIX_EPOCH;

/// A criterion result: median time per iteration and its 95 % confidence interval, in ns.
#[derive(Clone, Copy, Debug)]
pub struct Estimate {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

/// Every criterion result under `dir` newer than `since` (seconds since the epoch), by
/// full id (`group/function/parameter`).
fn read_dir(dir: &Path, since: u64) -> BTreeMap<String, Estimate> {
    let mut found = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !(path.ends_with("new/benchmark.json")) {
                continue;
            }
            let fresh = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|t| t.as_secs() >= since);
            let read = |p: &Path| -> Option<Value> {
                serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
            };
            let (Some(meta), Some(estimates)) =
                (read(&path), read(&path.with_file_name("estimates.json")))
            else {
                continue;
            };
            let median = &estimates["median"];
            let (Some(id), Some(point), Some(low), Some(high)) = (
                meta["full_id"].as_str(),
                median["point_estimate"].as_f64(),
                median["confidence_interval"]["lower_bound"].as_f64(),
                median["confidence_interval"]["upper_bound"].as_f64(),
            ) else {
                continue;
            };
            if fresh {
                found.insert(
                    id.to_string(),
                    Estimate {
                        median: point,
                        low,
                        high,
                    },
                );
            }
        }
    }
    found
}

/// Every fresh criterion result of the default build (`no_fp`), with those of
/// configurations that unwind with frame pointers (an id with `fp` in it) taken from the
/// frame-pointer build (`fp`): those are right only there.
pub fn read(no_fp: Option<&Path>, fp: Option<&Path>, since: u64) -> BTreeMap<String, Estimate> {
    let mut found = no_fp.map(|dir| read_dir(dir, since)).unwrap_or_default();
    found.retain(|id, _| !uses_frame_pointers(id));
    if let Some(dir) = fp {
        found.extend(
            read_dir(dir, since)
                .into_iter()
                .filter(|(id, _)| uses_frame_pointers(id)),
        );
    }
    found
}

/// Whether the criterion id `id` is of a configuration that unwinds with frame pointers.
pub fn uses_frame_pointers(id: &str) -> bool {
    id.split('/')
        .any(|part| part == "fp" || part.ends_with("-fp"))
}
