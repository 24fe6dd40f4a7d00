//! Order statistics of RPO exposure over a window.

use serde::Serialize;

/// Exposure percentiles over a window of samples, in microseconds.
/// Samples whose exposure is unknown are counted, not guessed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExposureStats {
    pub samples: u64,
    pub unknown_samples: u64,
    pub p50_us: Option<i64>,
    pub p99_us: Option<i64>,
    pub max_us: Option<i64>,
}

impl ExposureStats {
    /// Nearest-rank percentiles of the known values (no interpolation: every
    /// figure reported is one that was actually measured).
    pub fn from_values(mut known: Vec<i64>, unknown: u64) -> Self {
        known.sort_unstable();
        let rank = |p: f64| -> Option<i64> {
            if known.is_empty() {
                return None;
            }
            let idx = ((p * known.len() as f64).ceil() as usize).clamp(1, known.len()) - 1;
            Some(known[idx])
        };
        ExposureStats {
            samples: known.len() as u64 + unknown,
            unknown_samples: unknown,
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: known.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = ExposureStats::from_values((1..=100).collect(), 3);
        assert_eq!(s.samples, 103);
        assert_eq!(s.p50_us, Some(50));
        assert_eq!(s.p99_us, Some(99));
        assert_eq!(s.max_us, Some(100));
    }

    #[test]
    fn empty_window_has_no_figures() {
        let s = ExposureStats::from_values(vec![], 5);
        assert_eq!((s.p50_us, s.p99_us, s.max_us), (None, None, None));
        assert_eq!(s.unknown_samples, 5);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let s = ExposureStats::from_values(vec![7], 0);
        assert_eq!((s.p50_us, s.p99_us, s.max_us), (Some(7), Some(7), Some(7)));
    }
}
