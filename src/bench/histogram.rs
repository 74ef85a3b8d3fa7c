//! A lock-free latency histogram in microseconds: log-linear buckets (≈3 % wide), shared
//! between the tasks that record and the reporter that snapshots and diffs windows.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: 32 gives at most 1/32 ≈ 3 % relative error.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^36 µs (19 h); anything above lands in the last bucket.
const BUCKETS: usize = ((36 - SUB_BITS + 1) as usize) * SUB as usize;

/// Bucket of `us`: exact below 32 µs, then 32 buckets per doubling.
fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() - SUB_BITS; // >= 0 here
    let index = ((exp as u64 + 1) << SUB_BITS) + ((us >> exp) - SUB);
    (index as usize).min(BUCKETS - 1)
}

/// Largest value that falls in bucket `index`, µs.
fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let exp = (index >> SUB_BITS) - 1;
    let mantissa = (index & (SUB - 1)) + SUB;
    ((mantissa + 1) << exp) - 1
}

/// Recorded from many tasks at once; read by snapshot.
pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    /// Largest value ever, and largest since the last `snapshot_window`.
    max_us: AtomicU64,
    window_max_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
            window_max_us: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn record_us(&self, us: u64) {
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.window_max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// Counts so far, with the largest value ever.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }

    /// Counts so far, with the largest value since the previous `snapshot_window` (then a
    /// new window starts), so each window reports its own maximum.
    pub fn snapshot_window(&self) -> Snapshot {
        let mut s = self.snapshot();
        s.max_us = self.window_max_us.swap(0, Ordering::Relaxed);
        s
    }
}

/// Counts at one moment, or the difference of two moments (a window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    counts: Vec<u64>,
    max_us: u64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What was recorded after `earlier`; max is this snapshot's.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let counts = self
            .counts
            .iter()
            .zip(earlier.counts.iter().chain(std::iter::repeat(&0)))
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        Snapshot {
            counts,
            max_us: self.max_us,
        }
    }

    /// Add `other`'s counts; the max is the larger.
    pub fn merge(&mut self, other: &Snapshot) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The value at quantile `q` (0..=1), µs, as its bucket's upper bound (never below the
    /// true value, at most 3 % above it); None when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_bound(index).min(self.max_us.max(1)));
            }
        }
        None
    }

    pub fn max_us(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max_us)
    }

    /// p50, p95, p99 and max in ms, for reports.
    pub fn summary(&self) -> Option<LatencySummary> {
        let ms = |us: u64| us as f64 / 1000.0;
        Some(LatencySummary {
            samples: self.count(),
            p50_ms: ms(self.quantile_us(0.50)?),
            p95_ms: ms(self.quantile_us(0.95)?),
            p99_ms: ms(self.quantile_us(0.99)?),
            max_ms: ms(self.max_us()?),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounds_contain_values() {
        let mut last = 0;
        for us in (0..200_000u64).chain([1 << 30, u64::MAX / 2]) {
            let b = bucket(us);
            assert!(b >= last, "bucket order breaks at {us}");
            last = b;
            if b < BUCKETS - 1 {
                assert!(upper_bound(b) >= us, "{us} above its bucket bound");
                assert!(
                    upper_bound(b) as f64 <= us as f64 * 1.04 + 1.0,
                    "{us} bucket too wide"
                );
            }
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = LatencyHistogram::default();
        for us in 1..=10_000 {
            h.record_us(us);
        }
        let s = h.snapshot();
        let p50 = s.quantile_us(0.5).unwrap();
        let p99 = s.quantile_us(0.99).unwrap();
        assert!((5_000..=5_160).contains(&p50), "p50 {p50}");
        assert!((9_900..=10_000).contains(&p99), "p99 {p99}");
        assert_eq!(s.max_us(), Some(10_000));
        assert_eq!(s.count(), 10_000);
    }

    #[test]
    fn windows_see_only_their_own_samples() {
        let h = LatencyHistogram::default();
        h.record_us(50_000);
        let first = h.snapshot_window();
        h.record_us(100);
        h.record_us(200);
        let window = h.snapshot_window().since(&first);
        assert_eq!(window.count(), 2);
        assert_eq!(window.max_us(), Some(200));
        assert!(window.quantile_us(1.0).unwrap() <= 200);
        assert_eq!(h.snapshot().max_us(), Some(50_000), "the run's max stays");
        assert_eq!(Snapshot::default().summary(), None);
    }
}
