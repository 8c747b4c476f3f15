//! k-sample tests across one axis (e.g. num_ctx levels): Kruskal–Wallis H (rank-based,
//! tie-corrected, χ² p) and one-way ANOVA (F p).

use super::{check_finite, mean, midranks, need, StatsError};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, FisherSnedecor};

/// Statistic, degrees of freedom (df2 = 0 for χ²) and p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KSampleTest {
    /// The test statistic: tie-corrected H for Kruskal–Wallis, F for one-way ANOVA.
    pub statistic: f64,
    pub(crate) df1: f64,
    pub(crate) df2: f64,
    /// Upper-tail p-value (χ²(k − 1) for H, F(k − 1, N − k) for F), unadjusted.
    pub p: f64,
}

fn check(what: &'static str, groups: &[&[f64]]) -> Result<(), StatsError> {
    need(what, 2, groups.len())?;
    for g in groups {
        need(what, 2, g.len())?;
        check_finite(what, g)?;
    }
    Ok(())
}

fn bad(what: &'static str, e: impl std::fmt::Display) -> StatsError {
    StatsError::BadParameter {
        what,
        detail: e.to_string(),
    }
}

/// Kruskal–Wallis H with tie correction; p from χ²(k − 1). Needs ≥ 2 groups of ≥ 2.
pub fn kruskal_wallis(groups: &[&[f64]]) -> Result<KSampleTest, StatsError> {
    const WHAT: &str = "Kruskal-Wallis";
    check(WHAT, groups)?;
    let pooled: Vec<f64> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    let n = pooled.len() as f64;
    let (ranks, ties) = midranks(&pooled);
    let mut h = 0.0;
    let mut start = 0;
    for g in groups {
        let r: f64 = ranks[start..start + g.len()].iter().sum();
        h += r * r / g.len() as f64;
        start += g.len();
    }
    h = 12.0 / (n * (n + 1.0)) * h - 3.0 * (n + 1.0);
    let correction = 1.0 - ties / (n * n * n - n);
    if correction <= 0.0 {
        return Err(StatsError::Degenerate { what: WHAT });
    }
    h /= correction;
    let df = (groups.len() - 1) as f64;
    let p = ChiSquared::new(df).map_err(|e| bad(WHAT, e))?.sf(h);
    Ok(KSampleTest {
        statistic: h,
        df1: df,
        df2: 0.0,
        p,
    })
}

/// One-way ANOVA F = MS_between / MS_within; p from F(k − 1, N − k).
pub fn anova_oneway(groups: &[&[f64]]) -> Result<KSampleTest, StatsError> {
    const WHAT: &str = "one-way ANOVA";
    check(WHAT, groups)?;
    let all: Vec<f64> = groups.iter().flat_map(|g| g.iter().copied()).collect();
    let grand = mean(&all);
    let (mut ssb, mut ssw) = (0.0, 0.0);
    for g in groups {
        let m = mean(g);
        ssb += g.len() as f64 * (m - grand).powi(2);
        ssw += g.iter().map(|x| (x - m).powi(2)).sum::<f64>();
    }
    let k = groups.len() as f64;
    let n = all.len() as f64;
    let (df1, df2) = (k - 1.0, n - k);
    if ssw == 0.0 {
        return Err(StatsError::Degenerate { what: WHAT });
    }
    let f = (ssb / df1) / (ssw / df2);
    let p = FisherSnedecor::new(df1, df2)
        .map_err(|e| bad(WHAT, e))?
        .sf(f);
    Ok(KSampleTest {
        statistic: f,
        df1,
        df2,
        p,
    })
}
