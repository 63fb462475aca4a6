//! Numbers for people: byte counts in binary units and counts with thousands separators,
//! shared by the text report, the evidence of suspects and the command-line tool.

/// A byte count in binary units with one decimal: `1536` → `"1.5 KiB"`.
///
/// ```
/// assert_eq!(alloc_tracker::units::human_bytes(48 << 20), "48.0 MiB");
/// ```
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A count with thousands separators: `1234567` → `"1,234,567"`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count and what it counts, in the singular for one: `(1, "thread")` → `"1 thread"`,
/// `(1234, "allocation")` → `"1,234 allocations"`.
///
/// ```
/// assert_eq!(alloc_tracker::units::counted(1, "thread"), "1 thread");
/// assert_eq!(alloc_tracker::units::counted(30_002, "allocation"), "30,002 allocations");
/// ```
pub fn counted(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{} {what}s", grouped(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(48 << 20), "48.0 MiB");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(100), "100");
    }
}
