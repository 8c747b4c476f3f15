//! Sample sizes for the nightly gate's model ([`super::nightly`]): the standard error of
//! tonight against `k` reference nights at `n` reps, √((σ_w²/n + σ_b²)·(1 + 1/k)) with
//! Satterthwaite df; the smallest change a one-sided test at level α shows with a given
//! power, (t(1 − α) + t(power))·SE; the reps that make it at most a gap (within one rep of
//! the exact noncentral-t answer: checked against statsmodels in tests/it/gate.rs); and the
//! χ² interval of a variance estimate, which gives those reps a range.

use super::nightly;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Largest reps per night considered.
pub const MAX_REPS: usize = 10_000;

/// The standard error and df of tonight against `k` nights at `n` reps.
pub fn se_df(sd: f64, between: f64, df_between: f64, k: usize, n: usize) -> (f64, f64) {
    let kk = k as f64;
    let within = sd * sd / n as f64 * (1.0 + 1.0 / kk);
    let b = between * (1.0 + 1.0 / kk);
    let df = nightly::satterthwaite(&[
        (within, (k as f64 + 1.0) * (n as f64 - 1.0)),
        (b, df_between),
    ]);
    ((within + b).sqrt(), df)
}

/// The smallest bad-side gap beyond T shown with `power` at `n` reps.
pub fn detectable_gap(
    sd: f64,
    between: f64,
    df_between: f64,
    k: usize,
    n: usize,
    alpha_each: f64,
    power: f64,
) -> Option<f64> {
    if n < 2 {
        return None;
    }
    let (se, df) = se_df(sd, between, df_between, k, n);
    Some((nightly::t_quantile(1.0 - alpha_each, df) + nightly::t_quantile(power, df)) * se)
}

/// The fewest reps per night (≥ 2) whose detectable gap is at most `gap`.
pub fn reps_needed(
    sd: f64,
    between: f64,
    df_between: f64,
    k: usize,
    gap: f64,
    alpha_each: f64,
    power: f64,
) -> Option<usize> {
    let ok = |n: usize| {
        detectable_gap(sd, between, df_between, k, n, alpha_each, power).is_some_and(|d| d <= gap)
    };
    if !ok(MAX_REPS) {
        return None;
    }
    let (mut lo, mut hi) = (2usize, MAX_REPS);
    if ok(lo) {
        return Some(lo);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The 90% χ² interval of a variance estimated with `df` degrees of freedom.
pub fn variance_interval(v: f64, df: f64) -> (f64, f64) {
    match ChiSquared::new(df.max(1e-3)) {
        Ok(c) => (v * df / c.inverse_cdf(0.95), v * df / c.inverse_cdf(0.05)),
        Err(_) => (v, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published values: the one-sided two-sample size for d = 0.5, α = 0.05, power 0.8
    /// is 50.15 per group (G*Power; statsmodels `TTestIndPower().solve_power(0.5,
    /// alpha=0.05, power=0.8, alternative="larger")` = 50.15), here one night of n reps
    /// against k = 1 night of n reps with no between-night variance; and the 90% χ²
    /// interval of a variance 1 on 10 df is [10/18.307, 10/3.940] (χ² tables).
    #[test]
    fn sizes_match_published_values() {
        let n = reps_needed(1.0, 0.0, f64::INFINITY, 1, 0.5, 0.05, 0.8).unwrap();
        assert!(n.abs_diff(51) <= 1, "{n}");
        let (lo, hi) = variance_interval(1.0, 10.0);
        assert!((lo - 10.0 / 18.307).abs() < 1e-3, "{lo}");
        assert!((hi - 10.0 / 3.940).abs() < 1e-3, "{hi}");
        assert_eq!(
            detectable_gap(1.0, 0.0, f64::INFINITY, 1, 1, 0.05, 0.8),
            None
        );
    }
}
