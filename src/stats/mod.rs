//! Statistics on plain `f64` slices (no polars): descriptive summaries, confidence
//! intervals, two-sample tests, effect sizes, multiple-comparison adjustment and
//! k-sample tests. The unit of analysis is the repetition: callers pass one value per
//! rep. Every function is checked against scipy (`tests/fixtures/stats_reference.json`,
//! made by `scripts/stats_reference.py`).
//!
//! Too few samples give [`StatsError::TooFew`] ("need ≥ N"), never a fake interval.

mod adjust;
mod ci;
mod describe;
mod effect;
pub mod engine;
mod ksample;
pub mod nightly;
pub mod power;
mod twosample;

pub use adjust::{benjamini_hochberg, holm};
pub use ci::{
    bootstrap_ratio_ci, mean_ci_t, median_ci, median_ci_min_n, percentile_ends, BootstrapCi,
    Interval, Statistic,
};
pub use describe::{
    percentile, select_quantiles, summarize, tukey_fences, OutlierLabel, Summary, TukeyFences,
};
pub use effect::{cliffs_delta, cohens_d, hodges_lehmann};
pub use ksample::{anova_oneway, kruskal_wallis, KSampleTest};
pub use twosample::{
    mann_whitney_u, rank_sum_less_exact, welch_t, welch_t_log, MannWhitney, MwuMethod, WelchT,
    MWU_EXACT_MAX_N,
};

use thiserror::Error;

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// Not enough observations for an honest answer.
    #[error("{what}: need ≥ {need} values, have {have}")]
    TooFew {
        /// The statistic that was asked for (e.g. "Welch t-test").
        what: &'static str,
        /// Least number of values (or groups) it needs.
        need: usize,
        /// Number of values (or groups) it was given.
        have: usize,
    },
    /// NaN or infinite input.
    #[error("{what}: non-finite value in input")]
    NonFinite {
        /// The statistic that was asked for.
        what: &'static str,
    },
    /// A parameter is outside its domain (confidence level, probability, …).
    #[error("{what}: {detail}")]
    BadParameter {
        /// The statistic that was asked for.
        what: &'static str,
        /// What is wrong, in words (the parameter and its value, or the distribution
        /// library's message).
        detail: String,
    },
    /// Every value is identical, so the statistic is undefined (zero variance).
    #[error("{what}: all values are identical (zero variance)")]
    Degenerate {
        /// The statistic that was asked for.
        what: &'static str,
    },
}

pub(crate) fn check_finite(what: &'static str, xs: &[f64]) -> Result<(), StatsError> {
    if xs.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(StatsError::NonFinite { what })
    }
}

pub(crate) fn need(what: &'static str, need: usize, have: usize) -> Result<(), StatsError> {
    if have < need {
        Err(StatsError::TooFew { what, need, have })
    } else {
        Ok(())
    }
}

/// True for a probability strictly between 0 and 1: a significance level α, a confidence
/// level, a power. Every such check in sweep (flags, experiment file, gate) is this one.
pub fn is_open_unit(x: f64) -> bool {
    x > 0.0 && x < 1.0
}

pub(crate) fn check_level(what: &'static str, level: f64) -> Result<(), StatsError> {
    if is_open_unit(level) {
        Ok(())
    } else {
        Err(StatsError::BadParameter {
            what,
            detail: format!("confidence level must be in (0, 1), got {level}"),
        })
    }
}

pub(crate) fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance (n − 1). Two-pass for accuracy.
pub(crate) fn var(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() as f64 - 1.0)
}

pub(crate) fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Median of an already sorted, non-empty slice.
pub(crate) fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Midranks (1-based) of the pooled values and the tie-correction sum Σ(t³ − t).
pub(crate) fn midranks(values: &[f64]) -> (Vec<f64>, f64) {
    let n = values.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; n];
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && values[idx[j]] == values[idx[i]] {
            j += 1;
        }
        let r = (i + j + 1) as f64 / 2.0;
        for &k in &idx[i..j] {
            ranks[k] = r;
        }
        let t = (j - i) as f64;
        ties += t * t * t - t;
        i = j;
    }
    (ranks, ties)
}
