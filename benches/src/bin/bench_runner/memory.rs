//! The tracker's own memory against a large live heap: `wl-tracker hold` at several rates
//! (the default build), `wl-system hold` for the RSS of the same heap without it.

use crate::child::run_json;
use std::path::Path;

/// Rates of the memory measurement.
const RATES: [u64; 4] = [524_288, 65_536, 4096, 1];

/// One rate's figures, in bytes.
pub struct Row {
    pub rate: u64,
    pub held: u64,
    pub live: u64,
    pub tracker: u64,
    pub symbols: u64,
    pub stacks: u64,
    pub rss: u64,
}

/// The memory measurement.
pub struct Memory {
    pub mib: u64,
    /// RSS of the same heap under System.
    pub system_rss: u64,
    pub rows: Vec<Row>,
}

/// Runs `hold --mib mib` under System and under the tracker at each rate.
pub fn run(bins: &Path, mib: u64) -> Result<Memory, String> {
    let args = vec!["hold".to_string(), "--mib".to_string(), mib.to_string()];
    let system = run_json(&bins.join("wl-system"), &args, &[])?;
    let system_rss = system["rss_after"].as_u64().unwrap_or(0);
    let mut rows = Vec::new();
    for rate in RATES {
        let rate_text = rate.to_string();
        let out = run_json(
            &bins.join("wl-tracker"),
            &args,
            &[("ALLOC_TRACKER_RATE", rate_text.as_str())],
        )?;
        let get = |key: &str| out[key].as_u64().unwrap_or(0);
        rows.push(Row {
            rate,
            held: get("held_bytes"),
            live: get("live_bytes"),
            tracker: get("tracker_bytes"),
            symbols: get("symbol_bytes"),
            stacks: get("stacks"),
            rss: get("rss_after"),
        });
        eprintln!("memory at rate {rate}: {out}");
    }
    Ok(Memory {
        mib,
        system_rss,
        rows,
    })
}
