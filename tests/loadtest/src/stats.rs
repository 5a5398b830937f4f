//! Latency summaries: nearest-rank percentiles over exact samples.

use serde::Serialize;

/// p50/p90/p99/max of a set of durations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

/// Nearest-rank percentile `q` (0..=100) of sorted samples.
fn rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let n = sorted.len();
    let r = ((q / 100.0) * n as f64).ceil() as usize;
    sorted[r.clamp(1, n) - 1]
}

impl Summary {
    /// Summarizes `samples` (any order; NaNs are dropped).
    pub fn of(samples: impl IntoIterator<Item = f64>) -> Summary {
        let mut v: Vec<f64> = samples.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Summary::default();
        }
        v.sort_by(f64::total_cmp);
        Summary {
            count: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: rank(&v, 50.0),
            p90: rank(&v, 90.0),
            p99: rank(&v, 99.0),
            max: v[v.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of((1..=100).map(f64::from));
        assert_eq!(s.count, 100);
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert!((s.mean - 50.5).abs() < 1e-9);
        let one = Summary::of([7.0]);
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert_eq!(Summary::of([]).count, 0);
        let unordered = Summary::of([3.0, 1.0, f64::NAN, 2.0]);
        assert_eq!(
            (unordered.count, unordered.p50, unordered.max),
            (3, 2.0, 3.0)
        );
    }
}
