//! Confidence intervals: t-interval for the mean, distribution-free order-statistic
//! interval for the median, and a seeded percentile bootstrap for ratios.

use super::{check_finite, check_level, mean, median_sorted, need, sorted, var, StatsError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, StudentsT};

/// A point estimate with a two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub(crate) estimate: f64,
    /// Lower end of the interval, in the sample's unit.
    pub lower: f64,
    /// Upper end of the interval, in the sample's unit.
    pub upper: f64,
    /// Nominal level asked for (0.95).
    pub level: f64,
    /// Coverage actually achieved (order-statistic intervals are conservative).
    pub coverage: f64,
}

/// Mean ± t(1 − α/2, n − 1)·sd/√n. Needs n ≥ 2.
pub fn mean_ci_t(xs: &[f64], level: f64) -> Result<Interval, StatsError> {
    need("t-interval for the mean", 2, xs.len())?;
    check_finite("t-interval for the mean", xs)?;
    check_level("t-interval for the mean", level)?;
    let n = xs.len() as f64;
    let m = mean(xs);
    let se = (var(xs) / n).sqrt();
    let t = StudentsT::new(0.0, 1.0, n - 1.0)
        .map_err(|e| StatsError::BadParameter {
            what: "t-interval for the mean",
            detail: e.to_string(),
        })?
        .inverse_cdf(0.5 + level / 2.0);
    Ok(Interval {
        estimate: m,
        lower: m - t * se,
        upper: m + t * se,
        level,
        coverage: level,
    })
}

/// Smallest n for which an order-statistic median interval at `level` exists
/// (2·0.5ⁿ ≤ 1 − level; 6 at 95%).
pub fn median_ci_min_n(level: f64) -> usize {
    let alpha = 1.0 - level;
    let mut n = 1usize;
    while 2.0 * 0.5f64.powi(n as i32) > alpha && n < 64 {
        n += 1;
    }
    n
}

/// Distribution-free interval [x₍ₖ₎, x₍ₙ₋ₖ₊₁₎] for the median, with the largest k such
/// that P(Binom(n, ½) ≤ k − 1) ≤ α/2. Needs n ≥ 6 at 95%.
pub fn median_ci(xs: &[f64], level: f64) -> Result<Interval, StatsError> {
    const WHAT: &str = "order-statistic CI for the median";
    check_level(WHAT, level)?;
    need(WHAT, median_ci_min_n(level), xs.len())?;
    check_finite(WHAT, xs)?;
    let v = sorted(xs);
    let n = v.len();
    let alpha = 1.0 - level;
    let b = Binomial::new(0.5, n as u64).map_err(|e| StatsError::BadParameter {
        what: WHAT,
        detail: e.to_string(),
    })?;
    // k is 1-based; cdf(k - 1) = P(B ≤ k − 1).
    let mut k = 1usize;
    while k < n / 2 && b.cdf(k as u64) <= alpha / 2.0 {
        k += 1;
    }
    let tail = b.cdf((k - 1) as u64);
    Ok(Interval {
        estimate: median_sorted(&v),
        lower: v[k - 1],
        upper: v[n - k],
        level,
        coverage: 1.0 - 2.0 * tail,
    })
}

/// Statistic whose ratio is bootstrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// Sample median (mean of the two middle values for an even n).
    Median,
    /// Arithmetic mean.
    Mean,
}

impl Statistic {
    fn of(self, v: &mut [f64]) -> f64 {
        match self {
            Statistic::Mean => mean(v),
            Statistic::Median => super::describe::median_in_place(v),
        }
    }
}

/// One side of the bootstrap. For the median a resample is kept as counts over the sorted
/// sample, so its median is a walk over n counters instead of a selection over n floats
/// (the same value: the resample's middle order statistics). Indices are drawn as u32, one
/// ChaCha word each.
struct Resampler {
    stat: Statistic,
    /// The sample, sorted for the median.
    values: Vec<f64>,
    /// Median: draws per sorted position. Mean: unused.
    counts: Vec<u32>,
    /// Median: the sorted position of each original index (draws are of original indices).
    rank: Vec<u32>,
    /// Mean: the resample's sum.
    sum: f64,
    n: u32,
}

impl Resampler {
    fn new(sample: &[f64], stat: Statistic) -> Self {
        let mut values = sample.to_vec();
        let mut rank = Vec::new();
        if stat == Statistic::Median {
            let mut order: Vec<usize> = (0..sample.len()).collect();
            order.sort_by(|&a, &b| sample[a].total_cmp(&sample[b]));
            rank = vec![0; sample.len()];
            for (pos, &i) in order.iter().enumerate() {
                rank[i] = pos as u32;
            }
            values = order.iter().map(|&i| sample[i]).collect();
        }
        Self {
            stat,
            counts: vec![0; values.len()],
            rank,
            values,
            sum: 0.0,
            n: sample.len().min(u32::MAX as usize) as u32,
        }
    }

    fn draw(&mut self, rng: &mut ChaCha8Rng) {
        match self.stat {
            Statistic::Median => {
                self.counts.fill(0);
                for _ in 0..self.n {
                    let i = rng.gen_range(0..self.n) as usize;
                    self.counts[self.rank[i] as usize] += 1;
                }
            }
            Statistic::Mean => {
                self.sum = 0.0;
                for _ in 0..self.n {
                    self.sum += self.values[rng.gen_range(0..self.n) as usize];
                }
            }
        }
    }

    fn stat(&self) -> f64 {
        let n = self.n as usize;
        match self.stat {
            Statistic::Mean => self.sum / n as f64,
            Statistic::Median => {
                let (k_lo, k_hi) = ((n - 1) / 2, n / 2); // 0-based middle order statistics
                let mut seen = 0usize;
                let mut lower = f64::NAN;
                for (i, &c) in self.counts.iter().enumerate() {
                    seen += c as usize;
                    if lower.is_nan() && seen > k_lo {
                        lower = self.values[i];
                    }
                    if seen > k_hi {
                        return (lower + self.values[i]) / 2.0;
                    }
                }
                f64::NAN
            }
        }
    }
}

/// A bootstrap interval for `stat(x) / stat(y)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// `stat(x) / stat(y)` on the full samples (not a bootstrap average); unitless.
    pub estimate: f64,
    /// Lower end: the (1 − level)/2 percentile of the resampled ratios.
    pub lower: f64,
    /// Upper end: the (1 + level)/2 percentile of the resampled ratios.
    pub upper: f64,
    pub(crate) level: f64,
    pub(crate) resamples: usize,
    pub(crate) seed: u64,
    /// Monte Carlo standard error of each end (see [`percentile_ends`]).
    #[serde(default)]
    pub mc_error_lower: f64,
    #[serde(default)]
    pub(crate) mc_error_upper: f64,
}

/// The ends of a two-sided percentile interval at `level` over bootstrap replicates, and the
/// Monte Carlo standard error of each end: half the spread of the replicates' order
/// statistics one binomial standard deviation (√(B·a·(1 − a)) places) either side of the end.
/// `reps` is reordered.
pub fn percentile_ends(reps: &mut [f64], level: f64) -> (f64, f64, f64, f64) {
    let b = reps.len() as f64;
    let a = (1.0 - level) / 2.0;
    let s = (a * (1.0 - a) / b).sqrt();
    let probs = [
        a,
        1.0 - a,
        (a - s).max(0.0),
        (a + s).min(1.0),
        (1.0 - a - s).max(0.0),
        (1.0 - a + s).min(1.0),
    ];
    let q = super::describe::select_quantiles(reps, &probs).unwrap_or_else(|| vec![f64::NAN; 6]);
    (q[0], q[1], (q[3] - q[2]) / 2.0, (q[5] - q[4]) / 2.0)
}

/// Percentile bootstrap of `stat(x) / stat(y)`, resampling each group independently with
/// a ChaCha8 generator seeded by `seed` (same inputs + seed ⇒ same interval).
/// Needs ≥ 2 values per group and ≥ 1000 resamples.
pub fn bootstrap_ratio_ci(
    x: &[f64],
    y: &[f64],
    stat: Statistic,
    level: f64,
    resamples: usize,
    seed: u64,
) -> Result<BootstrapCi, StatsError> {
    const WHAT: &str = "bootstrap CI of a ratio";
    need(WHAT, 2, x.len())?;
    need(WHAT, 2, y.len())?;
    check_finite(WHAT, x)?;
    check_finite(WHAT, y)?;
    check_level(WHAT, level)?;
    if resamples < 1000 {
        return Err(StatsError::BadParameter {
            what: WHAT,
            detail: format!("need ≥ 1000 resamples, got {resamples}"),
        });
    }
    let den = stat.of(&mut y.to_vec());
    if den == 0.0 {
        return Err(StatsError::Degenerate { what: WHAT });
    }
    let estimate = stat.of(&mut x.to_vec()) / den;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x_side = Resampler::new(x, stat);
    let mut y_side = Resampler::new(y, stat);
    let mut ratios = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        // Draw x's resample first, then y's (the stream order the intervals are pinned to).
        x_side.draw(&mut rng);
        y_side.draw(&mut rng);
        let d = y_side.stat();
        // A resample whose denominator is zero has no ratio; it is skipped.
        if d != 0.0 {
            ratios.push(x_side.stat() / d);
        }
    }
    need(WHAT, resamples / 2, ratios.len())?;
    let (lower, upper, mc_error_lower, mc_error_upper) = percentile_ends(&mut ratios, level);
    Ok(BootstrapCi {
        estimate,
        lower,
        upper,
        level,
        resamples,
        seed,
        mc_error_lower,
        mc_error_upper,
    })
}

#[cfg(test)]
mod resampler_tests {
    use super::{ChaCha8Rng, Resampler, Statistic};
    use proptest::prelude::{any, prop, prop_assert, prop_assert_eq, proptest};
    use rand::{Rng, SeedableRng};

    /// The plain bootstrap: copy each resample's values, take the statistic.
    fn plain(x: &[f64], y: &[f64], stat: Statistic, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (nx, ny) = (x.len() as u32, y.len() as u32);
        (0..200)
            .filter_map(|_| {
                let mut bx: Vec<f64> = (0..nx).map(|_| x[rng.gen_range(0..nx) as usize]).collect();
                let mut by: Vec<f64> = (0..ny).map(|_| y[rng.gen_range(0..ny) as usize]).collect();
                let d = stat.of(&mut by);
                (d != 0.0).then(|| stat.of(&mut bx) / d)
            })
            .collect()
    }

    proptest! {
        /// Counting draws over the sorted sample gives the very ratios of the plain bootstrap.
        #[test]
        fn counted_resamples_equal_plain_ones(
            x in prop::collection::vec(0u8..12, 2..25),
            y in prop::collection::vec(1u8..12, 2..25),
            seed in any::<u64>(),
        ) {
            let (x, y): (Vec<f64>, Vec<f64>) = (
                x.iter().map(|&v| f64::from(v) * 1.5).collect(),
                y.iter().map(|&v| f64::from(v)).collect(),
            );
            for stat in [Statistic::Median, Statistic::Mean] {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let (mut xs, mut ys) = (Resampler::new(&x, stat), Resampler::new(&y, stat));
                let fast: Vec<f64> = (0..200)
                    .filter_map(|_| {
                        xs.draw(&mut rng);
                        ys.draw(&mut rng);
                        let d = ys.stat();
                        (d != 0.0).then(|| xs.stat() / d)
                    })
                    .collect();
                let want = plain(&x, &y, stat, seed);
                prop_assert_eq!(fast.len(), want.len());
                for (f, w) in fast.iter().zip(&want) {
                    prop_assert!((f - w).abs() <= 1e-12 * w.abs().max(1.0), "{stat:?}: {f} vs {w}");
                }
            }
        }
    }
}
