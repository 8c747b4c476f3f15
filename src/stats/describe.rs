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

/// Type-7 (linear) quantiles of `v` at `probs`, by selecting only the order statistics they
/// need (each selection on the part of `v` left between its neighbours). `v` is reordered.
pub fn select_quantiles(v: &mut [f64], probs: &[f64]) -> Option<Vec<f64>> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let pos = |p: f64| {
        let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
        (h.floor() as usize, h - h.floor())
    };
    let mut ks: Vec<usize> = probs
        .iter()
        .flat_map(|&p| {
            let (lo, _) = pos(p);
            [lo, (lo + 1).min(n - 1)]
        })
        .collect();
    ks.sort_unstable();
    ks.dedup();
    multi_select(v, &ks);
    Some(
        probs
            .iter()
            .map(|&p| {
                let (lo, frac) = pos(p);
                let hi = (lo + 1).min(n - 1);
                v[lo] + frac * (v[hi] - v[lo])
            })
            .collect(),
    )
}

/// Median of a non-empty, finite slice by selection (reorders `v`, no allocation): the hot
/// path of the bootstrap, which takes one per resample.
pub(crate) fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    let (left, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *mid;
    if n % 2 == 1 {
        upper
    } else {
        let lower = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + upper) / 2.0
    }
}

/// Puts the order statistics at positions `ks` (sorted, distinct) into place.
fn multi_select(v: &mut [f64], ks: &[usize]) {
    if ks.is_empty() || v.len() < 2 {
        return;
    }
    let mid = ks.len() / 2;
    let k = ks[mid];
    v.select_nth_unstable_by(k, f64::total_cmp);
    let (left, right) = v.split_at_mut(k);
    multi_select(left, &ks[..mid]);
    let right_ks: Vec<usize> = ks[mid + 1..].iter().map(|&x| x - k - 1).collect();
    multi_select(&mut right[1..], &right_ks);
}

/// Summary of one sample. `sd`/`cv` are `None` below two values (n − 1 denominator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of values summarised.
    pub n: usize,
    /// Arithmetic mean, in the sample's unit.
    pub mean: f64,
    /// Sample standard deviation (n − 1 denominator); `None` below two values.
    pub sd: Option<f64>,
    /// sd / mean; `None` when sd is unknown or the mean is zero.
    pub cv: Option<f64>,
    /// 50th percentile (type 7).
    pub median: f64,
    /// 5th percentile (type 7).
    pub p5: f64,
    /// 25th percentile, the first quartile (type 7).
    pub p25: f64,
    /// 75th percentile, the third quartile (type 7).
    pub p75: f64,
    /// 95th percentile (type 7).
    pub p95: f64,
    /// 99th percentile (type 7); with few values this interpolates towards the maximum.
    pub p99: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
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
    /// Below the lower fence, Q1 − 1.5 IQR.
    Low,
    /// Between the fences, both included.
    Inside,
    /// Above the upper fence, Q3 + 1.5 IQR.
    High,
}

/// Fences and one label per input value (input order kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TukeyFences {
    /// Lower fence Q1 − 1.5 IQR, in the sample's unit.
    pub lower: f64,
    /// Upper fence Q3 + 1.5 IQR, in the sample's unit.
    pub upper: f64,
    /// One label per input value, in input order.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Selection gives the medians and type-7 quantiles a full sort gives, ties and all.
        #[test]
        fn selection_matches_sorting(v in prop::collection::vec(0u8..20, 1..300)) {
            let xs: Vec<f64> = v.iter().map(|&x| f64::from(x) * 0.5).collect();
            let probs = [0.5, 0.05, 0.25, 0.75, 0.95, 0.99, 0.0, 1.0, 0.025, 0.975];
            let mut work = xs.clone();
            let got = select_quantiles(&mut work, &probs).unwrap();
            let s = sorted(&xs);
            for (g, p) in got.iter().zip(probs) {
                let want = percentile_sorted(&s, p);
                prop_assert!((g - want).abs() < 1e-12, "p {p}: {g} vs {want}");
            }
            work.sort_by(f64::total_cmp);
            prop_assert_eq!(&work, &s, "only reordered");
            let m = median_in_place(&mut xs.clone());
            prop_assert_eq!(m, super::super::median_sorted(&s));
        }
    }

    #[test]
    fn selection_edge_cases() {
        assert_eq!(select_quantiles(&mut [], &[0.5]), None);
        assert_eq!(
            select_quantiles(&mut [3.0], &[0.0, 0.5, 1.0]),
            Some(vec![3.0; 3])
        );
        assert_eq!(median_in_place(&mut [4.0, 1.0]), 2.5);
        assert_eq!(median_in_place(&mut [7.0]), 7.0);
    }
}
