//! The nightly gate's model, on the ln scale of a metric (timings and rates are
//! multiplicative):
//!
//! ```text
//! y[night j, rep i] = μ + δ_j + u_j + ε_ji,   u_j ~ N(0, σ_b²) (between nights),
//!                                            ε_ji ~ N(0, σ_w²) (within a night)
//! ```
//!
//! A night's summary is the mean of its reps' ln values with the variance of that mean
//! (s²/n, n − 1 df). A change is tonight's mean minus a reference level (one earlier night,
//! or the mean of a set of earlier nights), with a standard error that carries σ_b when a
//! history exists, and Satterthwaite degrees of freedom.
//!
//! The decision against a tolerance T is three-valued (see [`Call`]): *regression* when the
//! one-sided test of "the bad-side change is at most T" rejects (the change is shown to be
//! worse than T), *pass* when the one-sided test of "the bad-side change is at least T"
//! rejects (non-inferiority: a change of T or worse is ruled out), *undecided* otherwise.
//!
//! σ_b is estimated from the history's night means by their second differences within
//! segments (segments from [`change_points`], so a past regression is a segment, not noise;
//! a second difference is blind to a linear trend, so a slow drift is not noise either),
//! pooled over the series of one metric; σ̂_b² = max(0, V̂ − w̄) with V̂ the variance of a
//! night mean so estimated and w̄ the mean within-night part.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Degrees of freedom above which the t distribution is taken as the normal.
const NORMAL_DF: f64 = 1e5;

/// Upper tail P(T_df > x) (normal when `df` is infinite or very large).
pub fn t_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if !(df.is_finite() && df < NORMAL_DF) {
        return Normal::new(0.0, 1.0).map(|n| n.sf(x)).unwrap_or(f64::NAN);
    }
    StudentsT::new(0.0, 1.0, df.max(1e-3))
        .map(|t| t.sf(x))
        .unwrap_or(f64::NAN)
}

/// The `p` quantile of T_df (normal when `df` is infinite or very large).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(df.is_finite() && df < NORMAL_DF) {
        return Normal::new(0.0, 1.0)
            .map(|n| n.inverse_cdf(p))
            .unwrap_or(f64::NAN);
    }
    StudentsT::new(0.0, 1.0, df.max(1e-3))
        .map(|t| t.inverse_cdf(p))
        .unwrap_or(f64::NAN)
}

/// One night of one gating row, on ln scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Night {
    /// Mean of the reps' ln values (for a pooled tail: ln of the pooled quantile).
    pub mean: f64,
    /// Variance of `mean` within the night: s²/n (pooled tail: the cluster-bootstrap
    /// variance).
    pub var: f64,
    /// Degrees of freedom of `var` (n − 1).
    pub df: f64,
    /// Reps behind the night.
    pub n: usize,
}

impl Night {
    /// A night from its per-rep values (each > 0); `None` below 2 reps or for a value ≤ 0.
    pub fn from_reps(values: &[f64]) -> Option<Night> {
        if values.len() < 2 || values.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
            return None;
        }
        let logs: Vec<f64> = values.iter().map(|v| v.ln()).collect();
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let s2 = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        Some(Night {
            mean,
            var: s2 / n,
            df: n - 1.0,
            n: logs.len(),
        })
    }

    /// A night from per-rep clusters of call values, for the pooled `q` quantile: the ln of
    /// the pooled quantile, with the variance of a cluster bootstrap (reps resampled,
    /// seeded).
    pub fn from_clusters(
        clusters: &[Vec<f64>],
        q: f64,
        resamples: usize,
        seed: u64,
    ) -> Option<Night> {
        if clusters.len() < 2 || clusters.iter().any(|c| c.is_empty()) {
            return None;
        }
        let pooled_q = |cs: &mut Vec<f64>| -> Option<f64> {
            super::select_quantiles(cs, &[q])
                .map(|v| v[0])
                .filter(|v| *v > 0.0)
        };
        let mut all: Vec<f64> = clusters.iter().flatten().copied().collect();
        let mean = pooled_q(&mut all)?.ln();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = clusters.len();
        let mut buf = Vec::new();
        let mut logs = Vec::with_capacity(resamples);
        for _ in 0..resamples {
            buf.clear();
            for _ in 0..n {
                buf.extend_from_slice(&clusters[rng.gen_range(0..n)]);
            }
            if let Some(v) = pooled_q(&mut buf) {
                logs.push(v.ln());
            }
        }
        if logs.len() < resamples / 2 || logs.len() < 2 {
            return None;
        }
        let m = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (logs.len() - 1) as f64;
        Some(Night {
            mean,
            var,
            df: (n - 1) as f64,
            n,
        })
    }
}

/// A change on ln scale: estimate, standard error and degrees of freedom.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// ln(current / reference).
    pub log: f64,
    /// Standard error of `log`.
    pub se: f64,
    /// Satterthwaite degrees of freedom of `se` (infinite = normal).
    pub df: f64,
}

/// Satterthwaite's degrees of freedom of a sum of independent variance estimates, each
/// given as (its value in the sum, its df). Zero parts are left out; none left = infinite.
pub fn satterthwaite(parts: &[(f64, f64)]) -> f64 {
    let total: f64 = parts.iter().map(|p| p.0).sum();
    let denom: f64 = parts
        .iter()
        .filter(|p| p.0 > 0.0)
        .map(|(v, df)| if *df > 0.0 { v * v / df } else { f64::INFINITY })
        .sum();
    if denom > 0.0 {
        total * total / denom
    } else {
        f64::INFINITY
    }
}

/// The between-night variance and what it was estimated from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NightVariance {
    /// σ̂_b²: between-night variance of ln values (0 when the history shows none beyond the
    /// within-night part).
    pub between: f64,
    /// V̂: the residual variance of a night mean (σ_b² + the within-night part).
    pub night: f64,
    /// Mean within-night variance of a night mean in the history (w̄).
    pub within: f64,
    /// Residual degrees of freedom of V̂, pooled over the series.
    pub df: f64,
    /// Nights used, over all series.
    pub nights: usize,
}

impl NightVariance {
    /// The between-night standard deviation of ln values (≈ relative).
    pub fn between_sd(&self) -> f64 {
        self.between.sqrt()
    }
}

/// One series of earlier nights (oldest first) and the indices where its segments start
/// (after the first; from [`change_points`]).
pub struct Series<'a> {
    /// The nights, oldest first.
    pub nights: &'a [Night],
    /// Segment starts (each in 1..len, ascending).
    pub breaks: &'a [usize],
}

/// Sum of squared second differences of night means within segments, and their count.
/// A second difference m[j+1] − 2m[j] + m[j−1] is blind to a level and to a linear trend,
/// so a slow drift is not read as night-to-night noise, and a change of slope (a drift that
/// begins) touches one of them only; its variance is 6 × a night mean's.
fn second_differences(nights: &[Night], breaks: &[usize]) -> (f64, usize) {
    let k = nights.len();
    let mut bounds = vec![0];
    bounds.extend(breaks.iter().copied().filter(|b| *b > 0 && *b < k));
    bounds.push(k);
    bounds.dedup();
    let (mut ss, mut count) = (0.0, 0usize);
    for w in bounds.windows(2) {
        let seg = &nights[w[0]..w[1]];
        for t in seg.windows(3) {
            let d2 = t[2].mean - 2.0 * t[1].mean + t[0].mean;
            ss += d2 * d2;
            count += 1;
        }
    }
    (ss, count)
}

/// Variance inflation of a mean of squared second differences of white noise over
/// independent squares: 1 + 2(ρ₁² + ρ₂²) with ρ₁ = −4/6, ρ₂ = 1/6 (their lag correlations):
/// n second differences carry about n / 1.944 degrees of freedom.
const SECOND_DIFFERENCE_DF_FACTOR: f64 = 1.0 + 2.0 * (16.0 / 36.0 + 1.0 / 36.0);

/// The between-night variance from the history's series (one per cell of a metric),
/// pooled: V̂ = Σ (second differences)² / (6 n) over the segments of every series, σ̂_b² =
/// max(0, V̂ − w̄). `None` when no segment has three nights.
pub fn night_variance(series: &[Series<'_>]) -> Option<NightVariance> {
    let (mut ss, mut count, mut wsum, mut nights) = (0.0, 0usize, 0.0, 0usize);
    for s in series {
        let (x, c) = second_differences(s.nights, s.breaks);
        if c == 0 {
            continue;
        }
        ss += x;
        count += c;
        wsum += s.nights.iter().map(|x| x.var).sum::<f64>();
        nights += s.nights.len();
    }
    if count == 0 || nights == 0 {
        return None;
    }
    let night = ss / (6.0 * count as f64);
    let within = wsum / nights as f64;
    Some(NightVariance {
        between: (night - within).max(0.0),
        night: night.max(within),
        within,
        df: count as f64 / SECOND_DIFFERENCE_DF_FACTOR,
        nights,
    })
}

/// Tonight against the mean of `reference` nights, with between-night variance `nv` (none
/// = assumed 0: only the within-night variances count). With one reference night and no
/// `nv` this is Welch's t on ln values.
pub fn change_against(
    tonight: &Night,
    reference: &[Night],
    nv: Option<&NightVariance>,
) -> Option<Change> {
    if reference.is_empty() {
        return None;
    }
    let k = reference.len() as f64;
    let ref_mean = reference.iter().map(|x| x.mean).sum::<f64>() / k;
    // Var(mean of the reference) = σ_b²/k + Σ w_j / k²: each night its own within part.
    let mut parts: Vec<(f64, f64)> = vec![(tonight.var, tonight.df)];
    for r in reference {
        parts.push((r.var / (k * k), r.df));
    }
    if let Some(nv) = nv.filter(|nv| nv.between > 0.0) {
        parts.push((nv.between * (1.0 + 1.0 / k), nv.df));
    }
    let var: f64 = parts.iter().map(|p| p.0).sum();
    Some(Change {
        log: tonight.mean - ref_mean,
        se: var.sqrt(),
        df: satterthwaite(&parts),
    })
}

/// A tolerance on the bad side, on ln scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// +1 when higher is worse (latency), −1 when lower is worse (throughput).
    pub bad_sign: f64,
    /// The bad-side ln change that the tolerance allows: ln(1 + T) for higher-is-worse,
    /// −ln(1 − T) for lower-is-worse.
    pub limit: f64,
}

impl Tolerance {
    /// `None` for a tolerance a lower-is-worse metric cannot have (T ≥ 100% drop) or a
    /// negative or non-finite one.
    pub fn new(higher_is_worse: bool, t: f64) -> Option<Tolerance> {
        if !(t.is_finite() && t >= 0.0) {
            return None;
        }
        if higher_is_worse {
            Some(Tolerance {
                bad_sign: 1.0,
                limit: t.ln_1p(),
            })
        } else if t < 1.0 {
            Some(Tolerance {
                bad_sign: -1.0,
                limit: -(-t).ln_1p(),
            })
        } else {
            None
        }
    }
}

/// The three outcomes of a gating test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// Shown worse than the tolerance.
    Regression,
    /// A change of the tolerance or worse is ruled out.
    Pass,
    /// Neither.
    Undecided,
}

/// One-sided p of H0 "the bad-side change is at most the tolerance": small = evidence of a
/// regression beyond T.
pub fn p_regression(c: &Change, tol: &Tolerance) -> f64 {
    let bad = tol.bad_sign * c.log - tol.limit;
    if c.se <= 0.0 {
        return if bad > 0.0 { 0.0 } else { 1.0 };
    }
    t_sf(bad / c.se, c.df)
}

/// One-sided p of H0 "the bad-side change is at least the tolerance": small = a change of T
/// or worse is ruled out (non-inferiority).
pub fn p_pass(c: &Change, tol: &Tolerance) -> f64 {
    let bad = tol.bad_sign * c.log - tol.limit;
    if c.se <= 0.0 {
        return if bad < 0.0 { 0.0 } else { 1.0 };
    }
    t_sf(-bad / c.se, c.df)
}

/// The one-sided 1 − α bounds of the relative change (lower, upper), as ratio − 1.
pub fn bounds(c: &Change, alpha: f64) -> (f64, f64) {
    let q = if c.se > 0.0 {
        t_quantile(1.0 - alpha, c.df)
    } else {
        0.0
    };
    (
        (c.log - q * c.se).exp() - 1.0,
        (c.log + q * c.se).exp() - 1.0,
    )
}

/// The decision from a Holm-adjusted regression p and an unadjusted pass p (the gate's
/// "every row passed" is an intersection–union test: each row at level α, no correction
/// needed).
pub fn call(p_regression_adjusted: f64, p_pass: f64, alpha: f64) -> Call {
    if p_regression_adjusted < alpha {
        Call::Regression
    } else if p_pass < alpha {
        Call::Pass
    } else {
        Call::Undecided
    }
}

/// The largest |t| of a split of `x` into [..i] and [i..] (each side ≥ 1 value), with the
/// pooled within-side variance; returns (i, |t|).
fn best_split(x: &[f64]) -> Option<(usize, f64)> {
    let n = x.len();
    if n < 3 {
        return None;
    }
    let total: f64 = x.iter().sum();
    let total_sq: f64 = x.iter().map(|v| v * v).sum();
    let mut left = 0.0;
    let mut left_sq = 0.0;
    let mut best: Option<(usize, f64)> = None;
    for i in 1..n {
        left += x[i - 1];
        left_sq += x[i - 1] * x[i - 1];
        let (nl, nr) = (i as f64, (n - i) as f64);
        let (ml, mr) = (left / nl, (total - left) / nr);
        let ss = (left_sq - nl * ml * ml) + ((total_sq - left_sq) - nr * mr * mr);
        let s2 = ss.max(0.0) / (n as f64 - 2.0);
        let t = if s2 > 0.0 {
            (mr - ml).abs() / (s2 * (1.0 / nl + 1.0 / nr)).sqrt()
        } else if (mr - ml).abs() > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        if best.is_none_or(|b| t > b.1) {
            best = Some((i, t));
        }
    }
    best
}

/// Level shifts in a series (oldest first): binary segmentation on the largest two-sample t
/// of a split (the statistic Apache Otava's t-test detector uses), each split kept when a
/// permutation test (seeded, up to 999 shuffles) gives p < `alpha`. Returns the indices
/// where new levels begin, ascending.
pub fn change_points(x: &[f64], alpha: f64, seed: u64) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack = vec![(0usize, x.len())];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while let Some((a, b)) = stack.pop() {
        let seg = &x[a..b];
        let Some((i, t)) = best_split(seg) else {
            continue;
        };
        if t == 0.0 {
            continue;
        }
        // Besag and Clifford's sequential Monte Carlo p-value: stop once `STOP_AFTER`
        // shuffles were as extreme (p ≈ h / l, far above any α used here), else run all.
        const PERMS: usize = 999;
        const STOP_AFTER: usize = 10;
        let mut shuffled = seg.to_vec();
        let mut as_large = 0usize;
        let mut p = 1.0;
        for done in 1..=PERMS {
            // Fisher–Yates.
            for j in (1..shuffled.len()).rev() {
                let k = rng.gen_range(0..=j);
                shuffled.swap(j, k);
            }
            if best_split(&shuffled).is_some_and(|(_, tp)| tp >= t) {
                as_large += 1;
            }
            if as_large >= STOP_AFTER {
                p = as_large as f64 / done as f64;
                break;
            }
            if done == PERMS {
                p = (as_large + 1) as f64 / (PERMS + 1) as f64;
            }
        }
        if p < alpha {
            out.push(a + i);
            stack.push((a, a + i));
            stack.push((a + i, b));
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn night(mean: f64, var: f64, n: usize) -> Night {
        Night {
            mean,
            var,
            df: (n - 1) as f64,
            n,
        }
    }

    #[test]
    fn one_reference_night_without_history_is_welch() {
        // Welch's t on ln values: scipy.stats.ttest_ind(ln a, ln b, equal_var=False).
        let a = [710.0, 690.0, 705.0, 720.0, 699.0, 731.0];
        let b = [700.0, 680.0, 690.0, 702.0, 688.0, 695.0];
        let (x, y) = (Night::from_reps(&a).unwrap(), Night::from_reps(&b).unwrap());
        let c = change_against(&x, &[y], None).unwrap();
        let w = crate::stats::welch_t_log(&a, &b).unwrap();
        assert!((c.log / c.se - w.t).abs() < 1e-9, "{c:?} {w:?}");
        assert!((c.df - w.df).abs() < 1e-9);
    }

    #[test]
    fn tolerance_tests_are_one_sided_and_complementary() {
        let tol = Tolerance::new(true, 0.05).unwrap();
        let c = Change {
            log: 0.05f64.ln_1p(),
            se: 0.01,
            df: f64::INFINITY,
        };
        // At the tolerance exactly both p are 1/2.
        assert!((p_regression(&c, &tol) - 0.5).abs() < 1e-12);
        assert!((p_pass(&c, &tol) - 0.5).abs() < 1e-12);
        // Throughput: a 3% drop allowed, a 10% drop shown.
        let tps = Tolerance::new(false, 0.03).unwrap();
        let drop = Change {
            log: 0.90f64.ln(),
            se: 0.01,
            df: 20.0,
        };
        assert!(p_regression(&drop, &tps) < 1e-6);
        assert_eq!(
            call(p_regression(&drop, &tps), p_pass(&drop, &tps), 0.05),
            Call::Regression
        );
        let same = Change { log: 0.0, ..drop };
        assert_eq!(
            call(p_regression(&same, &tps), p_pass(&same, &tps), 0.05),
            Call::Pass
        );
        let wide = Change {
            log: 0.0,
            se: 0.05,
            df: 20.0,
        };
        assert_eq!(
            call(p_regression(&wide, &tps), p_pass(&wide, &tps), 0.05),
            Call::Undecided
        );
        // Constant data: decided without a spread.
        let exact = Change {
            log: 0.0,
            se: 0.0,
            df: f64::INFINITY,
        };
        assert_eq!(p_pass(&exact, &tol), 0.0);
        assert_eq!(p_regression(&exact, &tol), 1.0);
    }

    #[test]
    fn t_tails_match_published_values() {
        // t(0.95, 10) = 1.812461, t(0.975, 2) = 4.302653; Φ⁻¹(0.95) = 1.644854.
        assert!((t_quantile(0.95, 10.0) - 1.812_461_123).abs() < 1e-6);
        assert!((t_quantile(0.975, 2.0) - 4.302_652_730).abs() < 1e-6);
        assert!((t_quantile(0.95, f64::INFINITY) - 1.644_853_627).abs() < 1e-6);
        assert!((t_sf(1.812_461_123, 10.0) - 0.05).abs() < 1e-8);
    }

    #[test]
    fn satterthwaite_of_two_parts_is_welch_df() {
        // Welch–Satterthwaite for s1²/n1 = 4/10 (9 df) and s2²/n2 = 9/12 (11 df).
        let df = satterthwaite(&[(0.4, 9.0), (0.75, 11.0)]);
        let want = (0.4f64 + 0.75).powi(2) / (0.16 / 9.0 + 0.5625 / 11.0);
        assert!((df - want).abs() < 1e-12);
        assert!(satterthwaite(&[(0.0, 3.0)]).is_infinite());
    }

    #[test]
    fn night_variance_ignores_steps_and_drift() {
        // Twelve nights, night offsets sd 0.01 (seeded), a within part of 1e-5: the estimate
        // is the same with a drift of 0.02 a night from night 6 on and a +0.2 step at night 9
        // (given as a break), and far larger when the step is not known.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let offsets: Vec<f64> = (0..12)
            .map(|_| {
                let u1: f64 = 1.0 - rng.gen::<f64>();
                let u2: f64 = rng.gen::<f64>();
                0.01 * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect();
        let flat: Vec<Night> = offsets.iter().map(|o| night(*o, 1e-5, 10)).collect();
        let drifting: Vec<Night> = offsets
            .iter()
            .enumerate()
            .map(|(j, o)| {
                let drift = 0.02 * j.saturating_sub(6) as f64;
                let step = if j >= 9 { 0.2 } else { 0.0 };
                night(o + drift + step, 1e-5, 10)
            })
            .collect();
        let est = |n: &[Night], b: &[usize]| {
            night_variance(&[Series {
                nights: n,
                breaks: b,
            }])
            .unwrap()
        };
        let a = est(&flat, &[]);
        let b = est(&drifting, &[9]);
        println!("{a:?}\n{b:?}");
        assert!((0.004..0.02).contains(&a.between_sd()), "{a:?}");
        // The drift's kink adds one second difference of 0.02: a little, not the drift.
        assert!(b.between_sd() < a.between_sd() * 1.5 + 0.003, "{a:?} {b:?}");
        // Eight second differences with the break (segments of 9 and 3 nights), df ≈ 8 / 1.944.
        assert!(
            (b.df - 8.0 / SECOND_DIFFERENCE_DF_FACTOR).abs() < 1e-9,
            "{b:?}"
        );
        // An unknown step enters two second differences: (2 × 0.2²) / (6 × 10) alone is a
        // 3.7% sd.
        assert!(est(&drifting, &[]).between_sd() > 0.03);
    }

    #[test]
    fn change_points_find_a_step_and_nothing_in_noise() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut noise = || 0.01 * (rng.gen::<f64>() - 0.5);
        let flat: Vec<f64> = (0..12).map(|_| noise()).collect();
        assert!(change_points(&flat, 0.01, 1).is_empty(), "{flat:?}");
        let step: Vec<f64> = (0..12)
            .map(|i| if i >= 8 { 0.1 } else { 0.0 } + noise())
            .collect();
        assert_eq!(change_points(&step, 0.01, 1), vec![8]);
    }
}
