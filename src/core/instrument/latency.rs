//! A lock-free latency histogram: recorded from any thread with one atomic add, read as
//! percentiles by the CLI. Buckets are log-linear (8 per power of two, ≤ 12.5 % error).

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = 64 * SUB;

/// Counts of recorded values, in nanoseconds (or any unit the caller keeps to).
pub struct Histogram {
    counts: Box<[AtomicU64]>,
    /// Sum of recorded values (Prometheus' `_sum`).
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let log = 63 - v.leading_zeros();
    let sub = ((v >> (log - SUB_BITS)) as usize) & (SUB - 1);
    ((log - SUB_BITS + 1) as usize) * SUB + sub
}

fn bucket_upper(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let log = (b / SUB) as u32 + SUB_BITS - 1;
    let sub = (b % SUB) as u64;
    ((SUB as u64 + sub + 1) << (log - SUB_BITS)) - 1
}

impl Histogram {
    pub fn record(&self, v: u64) {
        self.counts[bucket_of(v).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// For each bound, how many recorded values are at most it — counted by bucket, so a
    /// value is placed by its bucket's upper edge (≤ 12.5 % high). Bounds ascending.
    pub fn cumulative(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; bounds.len()];
        for (b, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let upper = bucket_upper(b);
            for (i, bound) in bounds.iter().enumerate() {
                if upper <= *bound {
                    out[i] += n;
                }
            }
        }
        out
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The value at quantile `q` (0.0–1.0), as the upper edge of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let snapshot: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = snapshot.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in snapshot.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(bucket_upper(b));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_bucket() {
        let h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 100);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((50_000.0..=50_000.0 * 1.13).contains(&p50), "p50 {p50}");
        assert!((99_000.0..=99_000.0 * 1.13).contains(&p99), "p99 {p99}");
        assert_eq!(h.count(), 1000);
    }

    #[test]
    fn cumulative_counts_and_sum() {
        let h = Histogram::default();
        for v in [3u64, 900, 1000, 50_000] {
            h.record(v);
        }
        assert_eq!(
            h.cumulative(&[7, 1000, 100_000]),
            [1, 2, 4],
            "1000 sits in a bucket up to 1023"
        );
        assert_eq!(h.sum(), 51_903);
    }

    #[test]
    fn empty_has_no_quantile() {
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn bucket_edges_cover_every_value() {
        for v in [0u64, 1, 7, 8, 9, 15, 16, 1000, 123_456, u64::MAX / 2] {
            let b = bucket_of(v);
            assert!(bucket_upper(b) >= v, "{v} above its bucket {b}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "{v} fits a lower bucket");
            }
        }
    }
}
