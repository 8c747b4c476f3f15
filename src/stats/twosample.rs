//! Two-sample tests: Welch's t-test (optionally on log values, for latencies whose noise
//! is multiplicative) and the Mann–Whitney U test (exact or normal approximation).

use super::{check_finite, mean, midranks, need, var, StatsError};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Welch's unequal-variance t-test, two-sided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WelchT {
    /// t statistic of mean(x) − mean(y) (of the logs for [`welch_t_log`]); positive when x
    /// is larger.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom (not an integer in general).
    pub df: f64,
    /// Two-sided p-value from Student's t with `df` degrees of freedom, unadjusted.
    pub p: f64,
}

/// Welch's t-test of mean(x) − mean(y). Needs n ≥ 2 per group and some variance.
pub fn welch_t(x: &[f64], y: &[f64]) -> Result<WelchT, StatsError> {
    const WHAT: &str = "Welch t-test";
    need(WHAT, 2, x.len())?;
    need(WHAT, 2, y.len())?;
    check_finite(WHAT, x)?;
    check_finite(WHAT, y)?;
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    let (a, b) = (var(x) / n1, var(y) / n2);
    if a + b == 0.0 {
        return Err(StatsError::Degenerate { what: WHAT });
    }
    let t = (mean(x) - mean(y)) / (a + b).sqrt();
    let df = (a + b).powi(2) / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).map_err(|e| StatsError::BadParameter {
        what: WHAT,
        detail: e.to_string(),
    })?;
    let p = (2.0 * dist.sf(t.abs())).min(1.0);
    Ok(WelchT { t, df, p })
}

/// Welch's t-test on ln(x), ln(y): compares geometric means. Values must be > 0.
pub fn welch_t_log(x: &[f64], y: &[f64]) -> Result<WelchT, StatsError> {
    if x.iter().chain(y).any(|v| *v <= 0.0) {
        return Err(StatsError::BadParameter {
            what: "Welch t-test on logs",
            detail: "values must be > 0".into(),
        });
    }
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    welch_t(&lx, &ly)
}

/// How the Mann–Whitney p-value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MwuMethod {
    /// Exact null distribution (no ties, both groups ≤ [`MWU_EXACT_MAX_N`]).
    Exact,
    /// Normal approximation with tie and continuity correction.
    Asymptotic,
}

/// Largest group size for which the exact distribution is used.
pub const MWU_EXACT_MAX_N: usize = 30;

/// Mann–Whitney U result: `u` is U for x (scipy's convention), p two-sided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U for x: the number of (x, y) pairs with x > y, ties counting ½ (scipy's U1).
    pub u: f64,
    /// Two-sided p-value, unadjusted.
    pub p: f64,
    /// Whether `p` came from the exact distribution or the normal approximation.
    pub method: MwuMethod,
}

/// Two-sided Mann–Whitney U test. Exact when there are no ties and both groups have
/// ≤ 30 values; otherwise the normal approximation with tie correction and continuity
/// correction. Needs n ≥ 2 per group.
pub fn mann_whitney_u(x: &[f64], y: &[f64]) -> Result<MannWhitney, StatsError> {
    const WHAT: &str = "Mann–Whitney U";
    need(WHAT, 2, x.len())?;
    need(WHAT, 2, y.len())?;
    check_finite(WHAT, x)?;
    check_finite(WHAT, y)?;
    let (n1, n2) = (x.len(), y.len());
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, ties) = midranks(&pooled);
    let r1: f64 = ranks[..n1].iter().sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let u2 = (n1 * n2) as f64 - u1;
    let u = u1.max(u2);
    if ties == 0.0 && n1 <= MWU_EXACT_MAX_N && n2 <= MWU_EXACT_MAX_N {
        let counts = u_distribution(n1, n2);
        let total: f64 = counts.iter().sum();
        // u is an integer here (no ties); sum the upper tail from the small end.
        let upper: f64 = counts[u.round() as usize..].iter().rev().sum();
        let p = (2.0 * upper / total).min(1.0);
        return Ok(MannWhitney {
            u: u1,
            p,
            method: MwuMethod::Exact,
        });
    }
    let n = (n1 + n2) as f64;
    let (f1, f2) = (n1 as f64, n2 as f64);
    let s2 = f1 * f2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if s2 <= 0.0 {
        return Err(StatsError::Degenerate { what: WHAT });
    }
    let z = (u - f1 * f2 / 2.0 - 0.5) / s2.sqrt();
    let normal = Normal::new(0.0, 1.0).map_err(|e| StatsError::BadParameter {
        what: WHAT,
        detail: e.to_string(),
    })?;
    let p = (2.0 * normal.sf(z)).clamp(0.0, 1.0);
    Ok(MannWhitney {
        u: u1,
        p,
        method: MwuMethod::Asymptotic,
    })
}

/// One-sided exact rank-sum test of "x is not stochastically smaller than y", ties kept:
/// the p-value is the share of the C(n1 + n2, n1) ways to split the pooled values whose
/// first group's midrank sum is at most x's. This is the exact conditional (permutation)
/// distribution of the Mann–Whitney statistic, valid with ties, which
/// [`mann_whitney_u`]'s exact branch is not: the gate uses it on capacities, a few levels
/// shared by many reps. Counted by dynamic programming over (values taken, sum of doubled
/// midranks), so it is exact at any size. Needs n ≥ 1 per group.
pub fn rank_sum_less_exact(x: &[f64], y: &[f64]) -> Result<f64, StatsError> {
    const WHAT: &str = "exact rank-sum test";
    need(WHAT, 1, x.len())?;
    need(WHAT, 1, y.len())?;
    check_finite(WHAT, x)?;
    check_finite(WHAT, y)?;
    let n1 = x.len();
    let pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let (ranks, _) = midranks(&pooled);
    // Midranks are multiples of ½: doubled, they are integers.
    let doubled: Vec<usize> = ranks.iter().map(|r| (2.0 * r).round() as usize).collect();
    let observed: usize = doubled[..n1].iter().sum();
    let max_sum: usize = doubled.iter().sum();
    // ways[k][s]: subsets of k of the values seen so far with doubled rank sum s (f64:
    // C(60, 30) ≈ 1.2e17 keeps 16 digits, and only ratios are taken).
    let mut ways = vec![vec![0.0f64; max_sum + 1]; n1 + 1];
    ways[0][0] = 1.0;
    let mut reach = 0;
    for &d in &doubled {
        reach += d;
        for k in (1..=n1).rev() {
            let (lower, upper) = ways.split_at_mut(k);
            for s in (d..=reach).rev() {
                upper[0][s] += lower[k - 1][s - d];
            }
        }
    }
    let all: f64 = ways[n1].iter().sum();
    let at_most: f64 = ways[n1][..=observed].iter().sum();
    Ok((at_most / all).clamp(0.0, 1.0))
}

/// Number of arrangements giving each U in 0..=n1·n2: the coefficients of the Gaussian
/// binomial [n1 + n2 choose n1]_q = Π (1 − q^(n2+i)) / (1 − q^i), in exact integers
/// (C(60, 30) overflows f64's integer range but not i128).
fn u_distribution(n1: usize, n2: usize) -> Vec<f64> {
    let len = n1 * n2 + 1;
    let mut c = vec![0i128; len];
    c[0] = 1;
    for i in 1..=n1 {
        let m = n2 + i;
        for k in (m..len).rev() {
            c[k] -= c[k - m];
        }
        for k in i..len {
            c[k] += c[k - i];
        }
    }
    c.into_iter().map(|v| v as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u_distribution_sums_to_binomial() {
        let c = u_distribution(4, 5);
        assert_eq!(c.iter().sum::<f64>(), 126.0);
        // symmetric
        for k in 0..c.len() {
            assert_eq!(c[k], c[c.len() - 1 - k]);
        }
    }

    /// Reference values: scipy 1.17.1, `stats.permutation_test((x, y), rank_sum,
    /// permutation_type='independent', alternative='less', n_resamples=np.inf)` with
    /// `rank_sum = lambda x, y, axis: stats.rankdata(np.concatenate([x, y], axis=axis),
    /// axis=axis)[..., :x.shape[axis]].sum(axis=axis)` (x's midrank sum in the pooled
    /// sample), `vectorized=True`.
    #[test]
    fn rank_sum_less_exact_matches_scipy_permutation_test() {
        let cases: [(&[f64], &[f64], f64); 6] = [
            (
                &[2., 2., 1., 2., 0., 1.],
                &[4., 4., 2., 4., 4., 4.],
                0.004329004329004329,
            ),
            (&[4., 4., 4.], &[4., 4., 4.], 1.0),
            (&[1., 2.], &[4., 8., 8.], 0.1),
            (
                &[2., 4., 4., 8., 2., 4., 4., 2.],
                &[4., 4., 8., 8., 4., 4., 8., 4.],
                0.06853146853146853,
            ),
            (
                &[0.5, 1., 1., 2., 2., 2., 4.],
                &[1., 2., 2., 2., 4., 4., 4., 4., 8.],
                0.04265734265734266,
            ),
            (&[8., 8., 8.], &[1., 1., 1.], 1.0),
        ];
        for (x, y, want) in cases {
            let p = rank_sum_less_exact(x, y).unwrap();
            assert!((p - want).abs() < 1e-12, "{x:?} {y:?}: {p} vs {want}");
        }
        assert!(rank_sum_less_exact(&[], &[1.0]).is_err());
        assert!(rank_sum_less_exact(&[f64::NAN], &[1.0]).is_err());
    }
}
