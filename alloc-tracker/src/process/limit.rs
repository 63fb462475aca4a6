//! The memory limit the process runs under: what the `emergency` level is judged against.
//!
//! In order: `ALLOC_TRACKER_LIMIT` (set by the user); else the memory cgroup's limit — cgroup
//! v2's `memory.max`, cgroup v1's `memory.limit_in_bytes`, for the process's own group and
//! every group above it (the tightest applies), found through `/proc/self/cgroup` and the
//! mount points in `/proc/self/mountinfo`; hybrid hosts list both versions, and the
//! tighter limit wins; else the machine's physical memory.
//!
//! The parsing is pure (fixture-tested for v1, v2 and hybrid layouts); [`detect`] feeds it
//! this process's files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The shares of the limit (percent) at which memory is at the emergency level: the first
/// is where it begins; each is reported once as it is crossed (see `emergency`).
pub(crate) const LEVELS: [u64; 3] = [90, 95, 98];

/// Where a memory limit comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// `ALLOC_TRACKER_LIMIT`.
    Configured,
    /// A cgroup's control file, e.g. `/sys/fs/cgroup/app/memory.max`.
    Cgroup(PathBuf),
    /// The machine's physical memory.
    PhysicalMemory,
}

/// A memory limit and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limit {
    /// The limit in bytes.
    pub(crate) bytes: u64,
    /// Where it comes from.
    pub(crate) source: Source,
}

impl Limit {
    /// Where it comes from, as a report says: `ALLOC_TRACKER_LIMIT`, the cgroup file, or
    /// `physical memory`.
    pub(crate) fn source_name(&self) -> String {
        match &self.source {
            Source::Configured => "ALLOC_TRACKER_LIMIT".to_string(),
            Source::Cgroup(path) => path.display().to_string(),
            Source::PhysicalMemory => "physical memory".to_string(),
        }
    }

    /// How a report names it: `256.0 MiB (cgroup /sys/fs/cgroup/…/memory.max)`.
    pub(crate) fn describe(&self) -> String {
        let bytes = crate::units::human_bytes(self.bytes);
        match &self.source {
            Source::Configured => format!("{bytes} (ALLOC_TRACKER_LIMIT)"),
            Source::Cgroup(path) => format!("{bytes} (cgroup {})", path.display()),
            Source::PhysicalMemory => format!("{bytes} (physical memory)"),
        }
    }
}

/// The limit, once read at start-up.
static LIMIT: OnceLock<Limit> = OnceLock::new();

/// Reads the limit (at start-up, as tracker code): `configured` is `ALLOC_TRACKER_LIMIT`.
pub(crate) fn init(configured: Option<u64>) {
    if let Some(limit) = detect(configured) {
        let _ = LIMIT.set(limit);
    }
}

/// The limit, if one is known.
pub(crate) fn current() -> Option<&'static Limit> {
    LIMIT.get()
}

/// What crossed a level of the limit.
#[derive(Clone, Debug)]
pub(crate) struct Crossing {
    /// The exact live heap then.
    pub(crate) heap_bytes: u64,
    /// The resident size, when it is what crossed.
    pub(crate) rss_bytes: Option<u64>,
    /// The level crossed, in percent of the limit.
    pub(crate) percent: u64,
    /// The limit.
    pub(crate) limit: Limit,
}

impl Crossing {
    /// The evidence, in words.
    pub(crate) fn describe(&self) -> String {
        let what = match self.rss_bytes {
            Some(rss) => format!(
                "resident memory ({}, heap {})",
                crate::units::human_bytes(rss),
                crate::units::human_bytes(self.heap_bytes)
            ),
            None => format!("the heap ({})", crate::units::human_bytes(self.heap_bytes)),
        };
        format!(
            "{what} crossed {}% of the memory limit, {}",
            self.percent,
            self.limit.describe()
        )
    }
}

/// Where memory stands against the limit now: the crossing it makes, if the heap or the
/// resident size is at or past the first level.
pub(crate) fn crossing(heap_bytes: u64, rss_bytes: Option<u64>) -> Option<Crossing> {
    let limit = LIMIT.get()?;
    let percent_of = |bytes: u64| bytes as u128 * 100 / limit.bytes.max(1) as u128;
    let rss_percent = rss_bytes.map(percent_of).unwrap_or(0);
    let heap_percent = percent_of(heap_bytes);
    let (percent, by_rss) = if heap_percent >= rss_percent {
        (heap_percent, false)
    } else {
        (rss_percent, true)
    };
    let level = LEVELS
        .iter()
        .rev()
        .find(|&&level| percent >= u128::from(level))?;
    Some(Crossing {
        heap_bytes,
        rss_bytes: rss_bytes.filter(|_| by_rss),
        percent: *level,
        limit: limit.clone(),
    })
}

/// This process's memory limit: `configured` (from `ALLOC_TRACKER_LIMIT`), else its memory
/// cgroup's, else physical memory; `None` where none of them can be read.
pub(crate) fn detect(configured: Option<u64>) -> Option<Limit> {
    if let Some(bytes) = configured {
        return Some(Limit {
            bytes,
            source: Source::Configured,
        });
    }
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    crate::sys::cgroup_files()
        .and_then(|(cgroups, mounts)| cgroup_limit(&cgroups, &mounts, read))
        .or_else(physical_memory)
}

/// The tightest memory limit of the cgroups in `proc_cgroup` (the text of
/// `/proc/self/cgroup`), read through `read` from the mounts of `mountinfo`.
pub(crate) fn cgroup_limit(
    proc_cgroup: &str,
    mountinfo: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<Limit> {
    let groups = memory_groups(proc_cgroup);
    let mounts = memory_mounts(mountinfo);
    let mut tightest: Option<Limit> = None;
    for (version, group) in groups {
        let Some((_, mount, root)) = mounts.iter().find(|(v, ..)| *v == version) else {
            continue;
        };
        // A mount of a group below the hierarchy's root (a container's) shows that group
        // as its root directory.
        let group = group.strip_prefix(root.as_str()).unwrap_or(&group);
        let file = match version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        // The group and every group above it, up to the mount's root.
        let mut dir = Some(Path::new(group.trim_start_matches('/')));
        while let Some(here) = dir {
            let path = mount.join(here).join(file);
            if let Some(bytes) = read(&path).and_then(|text| limit_value(&text)) {
                if tightest.as_ref().is_none_or(|t| bytes < t.bytes) {
                    tightest = Some(Limit {
                        bytes,
                        source: Source::Cgroup(path),
                    });
                }
            }
            dir = here.parent();
        }
    }
    tightest
}

/// A cgroup version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The process's memory groups from `/proc/self/cgroup`: the v1 hierarchy whose controllers
/// include `memory`, and the v2 one (`0::/path`).
fn memory_groups(proc_cgroup: &str) -> Vec<(Version, String)> {
    proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            if id == "0" && controllers.is_empty() {
                Some((Version::V2, path.to_string()))
            } else if controllers.split(',').any(|c| c == "memory") {
                Some((Version::V1, path.to_string()))
            } else {
                None
            }
        })
        .collect()
}

/// Where the memory hierarchies are mounted, from `/proc/self/mountinfo`: the v1 `cgroup`
/// mount with the `memory` option, and the `cgroup2` mount, each with the group of the
/// hierarchy mounted there (`/` but in containers).
fn memory_mounts(mountinfo: &str) -> Vec<(Version, PathBuf, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let mut fields = mount.split_whitespace();
            let root = fields.nth(3)?;
            let mount_point = fields.next()?;
            let mut fs = fs.split_whitespace();
            let (kind, _source, options) = (fs.next()?, fs.next()?, fs.next().unwrap_or(""));
            let version = match kind {
                "cgroup2" => Version::V2,
                "cgroup" if options.split(',').any(|o| o == "memory") => Version::V1,
                _ => return None,
            };
            let root = unescape(root).trim_end_matches('/').to_string();
            Some((version, PathBuf::from(unescape(mount_point)), root))
        })
        .collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A limit file's value: bytes, or `None` for no limit (`max` in v2; v1's "unlimited" is a
/// number near 2^63, a page-rounded `i64::MAX`).
fn limit_value(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let bytes: u64 = text.parse().ok()?;
    (bytes > 0 && bytes < 1 << 62).then_some(bytes)
}

/// The machine's physical memory.
fn physical_memory() -> Option<Limit> {
    crate::sys::physical_memory().map(|bytes| Limit {
        bytes,
        source: Source::PhysicalMemory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fake file system: path → contents.
    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = entries
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.to_string()))
            .collect();
        move |path: &Path| map.get(path).cloned()
    }

    const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn cgroup_v1_with_a_limit_above_the_group() {
        let cgroup = "9:name=systemd:/\n4:memory:/ci/job7\n1:cpu:/\n";
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/ci/job7/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/ci/memory.limit_in_bytes",
                "268435456\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        let limit = cgroup_limit(cgroup, V1_MOUNTS, read).expect("a limit");
        assert_eq!(limit.bytes, 256 << 20);
        assert_eq!(
            limit.source,
            Source::Cgroup("/sys/fs/cgroup/memory/ci/memory.limit_in_bytes".into())
        );
    }

    #[test]
    fn cgroup_v2_max_means_no_limit() {
        let cgroup = "0::/system.slice/app.service\n";
        let mounts = "24 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let limited = files(&[(
            "/sys/fs/cgroup/system.slice/app.service/memory.max",
            "536870912\n",
        )]);
        assert_eq!(
            cgroup_limit(cgroup, mounts, limited).map(|l| l.bytes),
            Some(512 << 20)
        );
        let unlimited = files(&[
            (
                "/sys/fs/cgroup/system.slice/app.service/memory.max",
                "max\n",
            ),
            ("/sys/fs/cgroup/system.slice/memory.max", "max\n"),
        ]);
        assert_eq!(cgroup_limit(cgroup, mounts, unlimited), None);
    }

    #[test]
    fn a_container_sees_its_group_as_the_root() {
        // cgroup namespace: the group is "/" and the mount is the container's own group.
        let cgroup = "0::/\n";
        let mounts = "600 500 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n";
        let read = files(&[("/sys/fs/cgroup/memory.max", "1073741824\n")]);
        assert_eq!(
            cgroup_limit(cgroup, mounts, read).map(|l| l.bytes),
            Some(1 << 30)
        );
    }

    #[test]
    fn a_v1_container_mount_is_its_group() {
        let cgroup = "4:memory:/docker/abc123\n";
        let mounts =
            "700 600 0:32 /docker/abc123 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let read = files(&[("/sys/fs/cgroup/memory/memory.limit_in_bytes", "134217728")]);
        assert_eq!(
            cgroup_limit(cgroup, mounts, read).map(|l| l.bytes),
            Some(128 << 20)
        );
    }

    #[test]
    fn hybrid_hosts_take_the_tighter_limit() {
        // systemd's hybrid layout: v1 controllers, and v2 mounted at .../unified.
        let cgroup = "4:memory:/user.slice\n0::/user.slice/session-1.scope\n";
        let mounts = format!(
            "{V1_MOUNTS}41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        );
        let read = files(&[
            (
                "/sys/fs/cgroup/memory/user.slice/memory.limit_in_bytes",
                "2147483648",
            ),
            (
                "/sys/fs/cgroup/unified/user.slice/session-1.scope/memory.max",
                "1073741824",
            ),
        ]);
        let limit = cgroup_limit(cgroup, &mounts, read).expect("a limit");
        assert_eq!(limit.bytes, 1 << 30);
        assert!(limit.describe().contains("unified"), "{}", limit.describe());
    }

    #[test]
    fn a_crossing_names_what_crossed_and_the_level() {
        let _ = LIMIT.set(Limit {
            bytes: 1000 << 20,
            source: Source::Configured,
        });
        assert!(crossing(500 << 20, Some(600 << 20)).is_none());
        let heap = crossing(905 << 20, Some(850 << 20)).expect("the heap crossed");
        assert_eq!((heap.percent, heap.rss_bytes), (90, None));
        assert!(heap
            .describe()
            .starts_with("the heap (905.0 MiB) crossed 90%"));
        let rss = crossing(100 << 20, Some(990 << 20)).expect("rss crossed");
        assert_eq!((rss.percent, rss.rss_bytes), (98, Some(990 << 20)));
        assert!(rss
            .describe()
            .contains("resident memory (990.0 MiB, heap 100.0 MiB)"));
    }

    #[test]
    fn odd_inputs_are_no_limit_not_a_crash() {
        let read = files(&[]);
        assert_eq!(cgroup_limit("", "", &read), None);
        assert_eq!(cgroup_limit("garbage\n::\n", "x - y\n", &read), None);
        assert_eq!(limit_value("-1"), None);
        assert_eq!(limit_value("0"), None);
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape("/trailing\\"), "/trailing\\");
        let configured = detect(Some(64 << 20)).expect("configured");
        assert_eq!(configured.source, Source::Configured);
        assert!(physical_memory().is_some_and(|l| l.bytes > 1 << 20));
    }
}
