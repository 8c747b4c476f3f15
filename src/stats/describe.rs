//! Descriptive statistics: type-7 percentiles (the same rule polars' `Linear` uses),
//! one-pass summaries, and Tukey-fence outlier labels (labelled, never dropped).

use super::{check_finite, mean, need, sorted, var, StatsError};
use serde::{Deserialize, Serialize};

/// Percentile `p` ∈ [0, 1] by linear interpolation between order statistics
/// (Hyndman–Fan type 7, numpy's default and R's default).
pub fn percentile(xs: &[f64], p: f64) -> Result<f64, StatsError> {
    need("percentile", 1, xs.len())?;
    check_finite("percentile", xs)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(StatsError::BadParameter {
            what: "percentile",
            detail: format!("p must be in [0, 1], got {p}"),
        });
    }
    Ok(percentile_sorted(&sorted(xs), p))
}

/// Type-7 percentile of a sorted, non-empty, finite slice.
pub(crate) fn percentile_sorted(v: &[f64], p: f64) -> f64 {
    let h = (v.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Summary of one sample. `sd`/`cv` are `None` below two values (n − 1 denominator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub sd: Option<f64>,
    /// sd / mean; `None` when sd is unknown or the mean is zero.
    pub cv: Option<f64>,
    pub median: f64,
    pub p5: f64,
    pub p25: f64,
    pub p75: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

/// Describes a non-empty, finite sample.
pub fn summarize(xs: &[f64]) -> Result<Summary, StatsError> {
    need("summary", 1, xs.len())?;
    check_finite("summary", xs)?;
    let v = sorted(xs);
    let m = mean(&v);
    let sd = (v.len() >= 2).then(|| var(&v).sqrt());
    let cv = sd.filter(|_| m != 0.0).map(|s| s / m);
    let q = |p| percentile_sorted(&v, p);
    Ok(Summary {
        n: v.len(),
        mean: m,
        sd,
        cv,
        median: q(0.5),
        p5: q(0.05),
        p25: q(0.25),
        p75: q(0.75),
        p95: q(0.95),
        p99: q(0.99),
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// Where a value sits relative to the Tukey fences (Q1 − 1.5 IQR, Q3 + 1.5 IQR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutlierLabel {
    Low,
    Inside,
    High,
}

/// Fences and one label per input value (input order kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TukeyFences {
    pub lower: f64,
    pub upper: f64,
    pub labels: Vec<OutlierLabel>,
}

impl TukeyFences {
    /// Number of values outside the fences.
    pub fn outliers(&self) -> usize {
        self.labels
            .iter()
            .filter(|l| **l != OutlierLabel::Inside)
            .count()
    }
}

/// Tukey fences at 1.5 IQR with type-7 quartiles. Needs ≥ 4 values to mean anything.
pub fn tukey_fences(xs: &[f64]) -> Result<TukeyFences, StatsError> {
    need("Tukey fences", 4, xs.len())?;
    check_finite("Tukey fences", xs)?;
    let v = sorted(xs);
    let q1 = percentile_sorted(&v, 0.25);
    let q3 = percentile_sorted(&v, 0.75);
    let iqr = q3 - q1;
    let (lower, upper) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
    let labels = xs
        .iter()
        .map(|&x| {
            if x < lower {
                OutlierLabel::Low
            } else if x > upper {
                OutlierLabel::High
            } else {
                OutlierLabel::Inside
            }
        })
        .collect();
    Ok(TukeyFences {
        lower,
        upper,
        labels,
    })
}
