//! Percentiles of signed nanosecond samples (a cross-process difference can be negative).

use crate::clock::Ns;

/// Samples, sorted.
pub struct Dist {
    sorted: Vec<Ns>,
}

impl Dist {
    pub fn new(mut samples: Vec<Ns>) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// Nearest-rank percentile, `p` in `(0, 1]`.
    pub fn pct(&self, p: f64) -> Ns {
        let n = self.sorted.len();
        let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        self.sorted[index]
    }

    pub fn p50(&self) -> Ns {
        self.pct(0.5)
    }

    pub fn p99(&self) -> Ns {
        self.pct(0.99)
    }

    pub fn min(&self) -> Ns {
        self.sorted[0]
    }

    pub fn max(&self) -> Ns {
        self.sorted[self.sorted.len() - 1]
    }

    pub fn mean(&self) -> f64 {
        self.sorted.iter().map(|&v| v as f64).sum::<f64>() / self.sorted.len() as f64
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }
}

/// Nanoseconds as microseconds with one decimal.
pub fn us(ns: Ns) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// Nanoseconds as milliseconds with one decimal.
pub fn ms(ns: Ns) -> String {
    format!("{:.1}", ns as f64 / 1e6)
}
