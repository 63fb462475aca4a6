//! Telling a leak from a cache: growth over time, the age of what is live, and the rule that
//! ranks leak suspects. Pure arithmetic over series and ages, unit-tested on synthetic data.
//!
//! # The suspect rule, and why
//!
//! A heap profile says where memory *is*. A reference leak is memory that keeps arriving and
//! never leaves, so its signature is over time: the site's live bytes grow, and what is live
//! there was allocated all along the run (old objects never freed, new ones still coming).
//! The things that look like it but are not:
//!
//! * a **bounded cache** fills, then replaces its working set: live bytes flatten, and its
//!   live objects are never older than its eviction horizon;
//! * **start-up state** (a table built once and kept): old, but not growing.
//!
//! So a site is a suspect when it holds a noticeable share of the heap (at least
//! [`MIN_SUSPECT_BYTES`] and 1% of live bytes) and either:
//!
//! 1. **it grows** (at least [`MIN_POINTS`] checkpoints): live bytes never fell across the
//!    recent checkpoints and rose overall, a straight line fits them (R² ≥ [`MIN_FIT`]),
//!    and the growth is at least 10% of its size per hour (the seed's warning threshold for
//!    a heap in steady state); it is **critical** when its live bytes at least doubled over
//!    the observed window (the seed's "doubles without more work"), a **warning** otherwise;
//! 2. **or, without checkpoints, its ages span the run**: its oldest live sample is nearly
//!    as old as the run, its youngest is recent, and the median sits in between — memory
//!    accumulating from start to end. That is a **warning**: ages alone cannot measure a
//!    rate.
//!
//! Suspects are ranked by severity, then by growth rate, then by live bytes.

use crate::report::{Age, Location, Severity, Suspect, Trend};
use crate::units::human_bytes;

/// A site must hold at least this much to be a suspect.
pub const MIN_SUSPECT_BYTES: u64 = 1 << 20;
/// Checkpoints needed to judge growth.
pub(crate) const MIN_POINTS: usize = 3;
/// The least R² of a straight-line fit for growth to count as steady.
pub(crate) const MIN_FIT: f64 = 0.8;
/// Growth, in percent of the site's size per hour, from which it is a suspect.
pub(crate) const WARN_PERCENT_PER_HOUR: f64 = 10.0;
/// Standard errors of sampling noise the growth must exceed (a flat site's estimate exceeds
/// it by chance about once in 30,000 reports, before the other conditions).
pub(crate) const NOISE_SIGMAS: f64 = 4.0;
/// How many of the latest checkpoints must show no decrease.
pub(crate) const RECENT_POINTS: usize = 8;

/// One point of a site's live bytes over time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    /// Seconds since the tracker started.
    pub at_s: f64,
    /// Live bytes then.
    pub live_bytes: f64,
    /// The variance of that estimate (bytes²; 0 when exact).
    pub variance: f64,
}

/// Computes the trend of a series (ordered by time); `None` with fewer than two points.
pub(crate) fn trend(series: &[Point]) -> Option<Trend> {
    let (first, last) = (series.first()?, series.last()?);
    if series.len() < 2 {
        return None;
    }
    let n = series.len() as f64;
    let mean_t = series.iter().map(|p| p.at_s).sum::<f64>() / n;
    let mean_y = series.iter().map(|p| p.live_bytes).sum::<f64>() / n;
    let sxx: f64 = series.iter().map(|p| (p.at_s - mean_t).powi(2)).sum();
    let sxy: f64 = series
        .iter()
        .map(|p| (p.at_s - mean_t) * (p.live_bytes - mean_y))
        .sum();
    let syy: f64 = series.iter().map(|p| (p.live_bytes - mean_y).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let fit = if sxx > 0.0 && syy > 0.0 {
        (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
    } else if syy == 0.0 {
        1.0 // flat: a perfect (horizontal) line
    } else {
        0.0
    };
    let recent = &series[series.len().saturating_sub(RECENT_POINTS)..];
    let monotonic = recent
        .windows(2)
        .all(|w| w[1].live_bytes >= w[0].live_bytes)
        && recent.last()?.live_bytes > recent.first()?.live_bytes;
    let percent_per_hour = if last.live_bytes > 0.0 {
        slope * 3600.0 / last.live_bytes * 100.0
    } else {
        0.0
    };
    Some(Trend {
        points: series.len(),
        span_s: last.at_s - first.at_s,
        first_bytes: first.live_bytes.max(0.0).round() as u64,
        bytes_per_s: slope,
        percent_per_hour,
        monotonic,
        fit,
        growth_stderr: (first.variance.max(0.0) + last.variance.max(0.0)).sqrt(),
        last_bytes: last.live_bytes.max(0.0).round() as u64,
    })
}

/// What the rule needs to know about one site.
pub(crate) struct Candidate<'a> {
    /// The site.
    pub site: &'a Location,
    /// Its live bytes now.
    pub live_bytes: u64,
    /// Its trend, if there were checkpoints.
    pub trend: Option<&'a Trend>,
    /// Its live samples' ages, if any are live.
    pub age: Option<&'a Age>,
    /// Live samples behind the figures.
    pub live_samples: u64,
}

/// Applies the rule (see the module notes) to one site.
pub(crate) fn judge(candidate: &Candidate, heap_live_bytes: u64, uptime_s: f64) -> Option<Suspect> {
    let floor = MIN_SUSPECT_BYTES.max(heap_live_bytes / 100);
    if candidate.live_bytes < floor {
        return None;
    }
    let age_words = candidate.age.map(|age| age_evidence(age, uptime_s));
    let verdict = match candidate.trend {
        Some(trend) if trend.points >= MIN_POINTS => judge_growth(trend, candidate.live_bytes),
        _ => judge_ages(candidate.age?, candidate.live_samples, uptime_s),
    }?;
    let (severity, growth_words) = verdict;
    let evidence = match age_words {
        Some(ages) => format!("{growth_words}; {ages}"),
        None => growth_words,
    };
    Some(Suspect {
        site: candidate.site.clone(),
        severity,
        live_bytes: candidate.live_bytes,
        trend: candidate.trend.cloned(),
        age: candidate.age.cloned(),
        evidence,
    })
}

fn judge_growth(trend: &Trend, live_bytes: u64) -> Option<(Severity, String)> {
    if !trend.monotonic || trend.fit < MIN_FIT || trend.percent_per_hour < WARN_PERCENT_PER_HOUR {
        return None;
    }
    // A site whose estimate wanders by sampling noise alone is not growing: the growth
    // must exceed the estimate's sampling error by [`NOISE_SIGMAS`] standard errors.
    let growth = trend.last_bytes as f64 - trend.first_bytes as f64;
    if growth <= NOISE_SIGMAS * trend.growth_stderr {
        return None;
    }
    let doubled = live_bytes >= trend.first_bytes.saturating_mul(2);
    let severity = if doubled {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let words = format!(
        "grew monotonically {}/s over {} checkpoints ({:.0} s, fit R² {:.2}){}",
        human_bytes(trend.bytes_per_s.max(0.0) as u64),
        trend.points,
        trend.span_s,
        trend.fit,
        if doubled {
            format!(
                ", from {} to {}",
                human_bytes(trend.first_bytes),
                human_bytes(live_bytes)
            )
        } else {
            format!(", {:.0}% per hour", trend.percent_per_hour)
        }
    );
    Some((severity, words))
}

fn judge_ages(age: &Age, live_samples: u64, uptime_s: f64) -> Option<(Severity, String)> {
    // Ages say nothing about a run too short to have a past (under a second).
    let spans_the_run = uptime_s >= 1.0
        && live_samples >= 8
        && age.oldest_s >= 0.75 * uptime_s
        && age.youngest_s <= 0.25 * uptime_s
        && (0.2 * uptime_s..=0.8 * uptime_s).contains(&age.median_s);
    spans_the_run.then(|| {
        (
            Severity::Warning,
            "it accumulated all run long (too few checkpoints to measure its growth)".to_string(),
        )
    })
}

fn age_evidence(age: &Age, uptime_s: f64) -> String {
    let spanning = if uptime_s > 0.0 && age.oldest_s >= 0.75 * uptime_s {
        ", spanning the whole run"
    } else {
        ""
    };
    format!(
        "live objects aged {}–{} (median {}){spanning}",
        seconds(age.youngest_s),
        seconds(age.oldest_s),
        seconds(age.median_s)
    )
}

fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// Sites named at the emergency level: memory crossed `crossing` (its evidence, in words).
/// Among `candidates` (most live bytes first), those holding at least 5% of the heap (and
/// [`MIN_SUSPECT_BYTES`]) that grow — a rising trend, or no checkpoints to tell — at most
/// five; failing any, the one holding the most.
pub(crate) fn emergency(
    candidates: &[Candidate],
    heap_live_bytes: u64,
    crossing: &str,
) -> Vec<Suspect> {
    let floor = MIN_SUSPECT_BYTES.max(heap_live_bytes / 20);
    let growing = |c: &&Candidate| c.trend.is_none_or(|t| t.bytes_per_s > 0.0);
    let mut named: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.live_bytes >= floor)
        .filter(growing)
        .take(5)
        .collect();
    if named.is_empty() {
        named.extend(candidates.first());
    }
    named
        .into_iter()
        .map(|c| {
            let share = 100.0 * c.live_bytes as f64 / heap_live_bytes.max(1) as f64;
            let growth = match c.trend {
                Some(t) if t.bytes_per_s > 0.0 => format!(
                    ", growing {}/s over {} checkpoints",
                    human_bytes(t.bytes_per_s as u64),
                    t.points
                ),
                _ => String::new(),
            };
            Suspect {
                site: c.site.clone(),
                severity: Severity::Emergency,
                live_bytes: c.live_bytes,
                trend: c.trend.cloned(),
                age: c.age.cloned(),
                evidence: format!(
                    "{crossing}; this site holds {} ({share:.0}% of the heap){growth}",
                    human_bytes(c.live_bytes)
                ),
            }
        })
        .collect()
}

/// Ranks suspects: emergency first, then critical, then faster growth, then more live
/// bytes.
pub(crate) fn rank(suspects: &mut [Suspect]) {
    let rate = |s: &Suspect| s.trend.as_ref().map_or(0.0, |t| t.bytes_per_s);
    suspects.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(rate(b).total_cmp(&rate(a)))
            .then(b.live_bytes.cmp(&a.live_bytes))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                at_s: i as f64,
                live_bytes: v,
                variance: 0.0,
            })
            .collect()
    }

    fn location() -> Location {
        Location::named("app::leak")
    }

    fn candidate<'a>(
        site: &'a Location,
        live: u64,
        trend: Option<&'a Trend>,
        age: Option<&'a Age>,
    ) -> Candidate<'a> {
        Candidate {
            site,
            live_bytes: live,
            trend,
            age,
            live_samples: 100,
        }
    }

    #[test]
    fn a_straight_line_is_fitted_exactly() {
        let t = trend(&series(&[10.0, 20.0, 30.0, 40.0])).unwrap();
        assert!((t.bytes_per_s - 10.0).abs() < 1e-9);
        assert!((t.fit - 1.0).abs() < 1e-9);
        assert!(t.monotonic);
        assert_eq!(t.first_bytes, 10);
        assert!((t.percent_per_hour - 10.0 * 3600.0 / 40.0 * 100.0).abs() < 1e-6);
    }

    #[test]
    fn flat_and_noisy_series_are_not_monotonic() {
        let flat = trend(&series(&[5.0, 5.0, 5.0, 5.0])).unwrap();
        assert!(!flat.monotonic);
        assert_eq!(flat.bytes_per_s, 0.0);
        let noisy = trend(&series(&[5.0, 9.0, 4.0, 8.0, 5.0])).unwrap();
        assert!(!noisy.monotonic);
        assert!(noisy.fit < 0.5);
        assert!(trend(&series(&[1.0])).is_none());
    }

    #[test]
    fn growth_within_the_sampling_error_is_noise() {
        // A 5 MiB site whose estimate drifted up by 0.6 MiB: a steady, monotonic climb at
        // first sight, but each point stands for ~10 samples of 512 KiB (standard error
        // ~1.6 MiB per point), so it is noise. The same climb measured exactly is growth.
        let mb = 1024.0 * 1024.0;
        let noisy: Vec<Point> = [5.0, 5.1, 5.2, 5.3, 5.45, 5.6]
            .iter()
            .enumerate()
            .map(|(i, &v)| Point {
                at_s: i as f64,
                live_bytes: v * mb,
                variance: (1.6 * mb) * (1.6 * mb),
            })
            .collect();
        let site = location();
        let t = trend(&noisy).unwrap();
        assert!(t.monotonic && t.fit > 0.9, "{t:?}");
        assert!(judge(
            &candidate(&site, (5.6 * mb) as u64, Some(&t), None),
            6 << 20,
            6.0
        )
        .is_none());
        let exact: Vec<Point> = noisy
            .iter()
            .map(|p| Point {
                variance: 0.0,
                ..*p
            })
            .collect();
        let t = trend(&exact).unwrap();
        assert!(judge(
            &candidate(&site, (5.6 * mb) as u64, Some(&t), None),
            6 << 20,
            6.0
        )
        .is_some());
    }

    #[test]
    fn a_steady_leak_is_critical_once_it_doubles() {
        let mb = 1024.0 * 1024.0;
        let t = trend(&series(&[10.0 * mb, 34.0 * mb, 58.0 * mb, 82.0 * mb])).unwrap();
        let site = location();
        let suspect = judge(
            &candidate(&site, (82.0 * mb) as u64, Some(&t), None),
            100 << 20,
            4.0,
        )
        .unwrap();
        assert_eq!(suspect.severity, Severity::Critical);
        assert!(
            suspect
                .evidence
                .starts_with("grew monotonically 24.0 MiB/s over 4 checkpoints"),
            "{}",
            suspect.evidence
        );
    }

    #[test]
    fn slow_growth_below_ten_percent_an_hour_is_not_a_suspect() {
        // 100 MiB growing by 1 KiB/s: 3.5 MiB/h, 3.4% per hour.
        let base = 100.0 * 1024.0 * 1024.0;
        let t = trend(&series(&[
            base,
            base + 1024.0,
            base + 2048.0,
            base + 3072.0,
        ]))
        .unwrap();
        let site = location();
        assert!(judge(
            &candidate(&site, base as u64 + 3072, Some(&t), None),
            200 << 20,
            4.0
        )
        .is_none());
        // The same site growing 10 KiB/s (36% an hour) is a warning, not critical.
        let t = trend(&series(&[base, base + 10240.0, base + 20480.0])).unwrap();
        let suspect = judge(
            &candidate(&site, base as u64 + 20480, Some(&t), None),
            200 << 20,
            4.0,
        )
        .unwrap();
        assert_eq!(suspect.severity, Severity::Warning);
    }

    #[test]
    fn a_bounded_cache_is_not_a_suspect() {
        // Filled during the first checkpoint, then flat with replacement noise; ages bounded.
        let mb = 1024.0 * 1024.0;
        let t = trend(&series(&[
            5.0 * mb,
            5.1 * mb,
            4.9 * mb,
            5.0 * mb,
            5.05 * mb,
        ]))
        .unwrap();
        let age = Age {
            oldest_s: 0.2,
            median_s: 0.1,
            youngest_s: 0.0,
        };
        let site = location();
        assert!(judge(
            &candidate(&site, 5 << 20, Some(&t), Some(&age)),
            20 << 20,
            6.0
        )
        .is_none());
        // Without checkpoints the ages alone clear it too.
        assert!(judge(&candidate(&site, 5 << 20, None, Some(&age)), 20 << 20, 6.0).is_none());
    }

    #[test]
    fn start_up_state_is_not_a_suspect() {
        let mb = 1024.0 * 1024.0;
        let t = trend(&series(&[50.0 * mb, 50.0 * mb, 50.0 * mb])).unwrap();
        let age = Age {
            oldest_s: 6.0,
            median_s: 6.0,
            youngest_s: 5.9,
        };
        let site = location();
        assert!(judge(
            &candidate(&site, 50 << 20, Some(&t), Some(&age)),
            60 << 20,
            6.0
        )
        .is_none());
        assert!(judge(&candidate(&site, 50 << 20, None, Some(&age)), 60 << 20, 6.0).is_none());
    }

    #[test]
    fn accumulation_over_the_run_is_a_warning_without_checkpoints() {
        let age = Age {
            oldest_s: 5.9,
            median_s: 3.0,
            youngest_s: 0.01,
        };
        let site = location();
        let suspect = judge(&candidate(&site, 50 << 20, None, Some(&age)), 60 << 20, 6.0).unwrap();
        assert_eq!(suspect.severity, Severity::Warning);
        assert!(
            suspect.evidence.contains("spanning the whole run"),
            "{}",
            suspect.evidence
        );
    }

    #[test]
    fn small_sites_and_freed_sites_are_never_suspects() {
        let t = trend(&series(&[0.0, 100.0, 200.0, 300.0])).unwrap();
        let site = location();
        assert!(judge(&candidate(&site, 300, Some(&t), None), 1000, 4.0).is_none());
        // Grew, then freed: the last point drops to zero, so it is not monotonic, and it
        // holds nothing.
        let mb = 1024.0 * 1024.0;
        let t = trend(&series(&[10.0 * mb, 20.0 * mb, 30.0 * mb, 0.0])).unwrap();
        assert!(!t.monotonic);
        assert!(judge(&candidate(&site, 0, Some(&t), None), 1 << 20, 4.0).is_none());
    }

    #[test]
    fn at_the_limit_the_big_growing_sites_are_the_emergency() {
        let mb = 1u64 << 20;
        let (big, flat, small) = (
            Location::named("app::grows"),
            Location::named("app::table"),
            Location::named("app::small"),
        );
        let rising = Trend {
            bytes_per_s: 1e6,
            points: 9,
            ..Trend::default()
        };
        let level = Trend {
            bytes_per_s: 0.0,
            points: 9,
            ..Trend::default()
        };
        let candidates = [
            candidate(&big, 200 * mb, Some(&rising), None),
            candidate(&flat, 40 * mb, Some(&level), None),
            candidate(&small, mb / 2, None, None),
        ];
        let named = emergency(&candidates, 240 * mb, "the heap crossed 90%");
        assert_eq!(named.len(), 1, "{named:?}");
        assert_eq!(named[0].site, big);
        assert_eq!(named[0].severity, Severity::Emergency);
        assert!(
            named[0].evidence.starts_with(
                "the heap crossed 90%; this site holds 200.0 MiB (83% of the heap), growing"
            ),
            "{}",
            named[0].evidence
        );
        // Nothing grows: the biggest is still named.
        let named = emergency(&candidates[1..], 240 * mb, "x");
        assert_eq!(named[0].site, flat);
    }

    #[test]
    fn ranking_puts_critical_and_fast_first() {
        let make = |severity, rate: f64, live| Suspect {
            site: location(),
            severity,
            live_bytes: live,
            trend: Some(Trend {
                bytes_per_s: rate,
                ..Trend::default()
            }),
            age: None,
            evidence: String::new(),
        };
        let mut suspects = vec![
            make(Severity::Warning, 9.0, 1),
            make(Severity::Critical, 1.0, 1),
            make(Severity::Critical, 5.0, 1),
        ];
        rank(&mut suspects);
        let rates: Vec<f64> = suspects
            .iter()
            .map(|s| s.trend.as_ref().unwrap().bytes_per_s)
            .collect();
        assert_eq!(rates, vec![5.0, 1.0, 9.0]);
    }
}
