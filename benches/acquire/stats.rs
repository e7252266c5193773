//! Latency samples, percentiles, ratios between variants, and the latency tables.

/// Latencies of one variant, in nanoseconds, and the p50 of each of its blocks.
pub struct Samples {
    /// The row label.
    pub name: String,
    pub ns: Vec<u64>,
    /// The p50 of each block, in round order (block `r` ran in round `r` of the interleaving).
    pub block_p50: Vec<u64>,
    /// Operations that failed because nodes timed out (see [`crate::ops::lock_release`]).
    pub timed_out: u64,
}

impl Samples {
    pub fn new(name: String, capacity: usize) -> Self {
        Self {
            name,
            ns: Vec::with_capacity(capacity),
            block_p50: Vec::new(),
            timed_out: 0,
        }
    }

    pub fn stats(&self) -> Stats {
        Stats::of(&self.ns)
    }

    /// Adds one block of latencies (reordered in place) and records its p50.
    pub fn push_block(&mut self, block: &mut [u64]) {
        self.ns.extend_from_slice(block);
        block.sort_unstable();
        self.block_p50.push(block[block.len() / 2]);
    }

    /// Fails the bench when more than 1% of the operations timed out: beyond rare stalls of a
    /// loaded machine, that is a problem to look at, not a number to publish.
    pub fn check_timeouts(&self) {
        assert!(
            self.timed_out * 100 <= self.ns.len() as u64,
            "{}: {} of {} operations failed on node timeouts",
            self.name,
            self.timed_out,
            self.ns.len()
        );
    }
}

/// Percentiles and mean of a set of latencies, in microseconds.
#[derive(Clone, Copy)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Stats {
    /// Nearest-rank percentiles of `ns` (nanoseconds), in microseconds.
    pub fn of(ns: &[u64]) -> Self {
        assert!(!ns.is_empty(), "no samples");
        let mut sorted = ns.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index] as f64 / 1e3
        };
        let total: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
        Self {
            p50: rank(0.50),
            p99: rank(0.99),
            p999: rank(0.999),
            max: sorted[sorted.len() - 1] as f64 / 1e3,
            mean: total as f64 / sorted.len() as f64 / 1e3,
        }
    }

    pub fn ops_per_sec(&self) -> f64 {
        1e6 / self.mean
    }
}

/// The upper median of `values` (reorders them).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median over blocks of `a`'s block p50 divided by `b`'s block p50 in the same round.
pub fn block_ratio(a: &Samples, b: &Samples) -> f64 {
    assert_eq!(
        a.block_p50.len(),
        b.block_p50.len(),
        "{} and {} ran different numbers of blocks",
        a.name,
        b.name
    );
    let mut ratios: Vec<f64> = a
        .block_p50
        .iter()
        .zip(&b.block_p50)
        .map(|(&x, &y)| x as f64 / y as f64)
        .collect();
    median(&mut ratios)
}

/// The header of a latency table; `first` names the label column.
pub fn print_header(first: &str) {
    println!(
        "{first:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50 us", "p99 us", "p99.9 us", "max us", "mean us", "ops/s", "timeouts"
    );
}

/// One line of a latency table; `timed_out` counts operations that failed on node timeouts.
pub fn print_row(label: &str, stats: &Stats, timed_out: u64) {
    println!(
        "{label:<28} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.0} {timed_out:>9}",
        stats.p50,
        stats.p99,
        stats.p999,
        stats.max,
        stats.mean,
        stats.ops_per_sec()
    );
}

/// One line comparing `a` to `b`: p50 (over all samples and per block), p99 and mean.
pub fn ratio_line(label: &str, a: &Samples, b: &Samples) {
    let (x, y) = (a.stats(), b.stats());
    println!(
        "  {label:<34} p50 {:.3}x (per-block median {:.3}x)  p99 {:.3}x  mean {:.3}x",
        x.p50 / y.p50,
        block_ratio(a, b),
        x.p99 / y.p99,
        x.mean / y.mean
    );
}
