//! The one statistics engine: a sample of a metric (per-rep values, or per-rep clusters of
//! call values for a pooled tail) against a reference sample. `sweep analyze` (an arm
//! against the reference arm, in one run) and `sweep compare` (a run against a baseline run)
//! both call [`two_sample`] and [`decide`]; they differ only in [`Params`] (the interval's
//! level and sidedness) and in the threshold they pass.
//!
//! - Rep metrics: Welch's t-test on ln(rep values) (on raw values for metrics without a
//!   multiplicative scale); the change is the ratio of medians − 1 with a seeded percentile
//!   bootstrap interval (each side resampled independently). Mann–Whitney U, Cliff's δ,
//!   Hodges–Lehmann and Cohen's d are reported beside it, never decisive.
//! - Pooled tails: the type-7 quantile over a side's calls; reps are the clusters of a
//!   cluster bootstrap that gives the interval and the p-value (the interval inverted at 1).
//! - Degenerate data (relative spread below [`Params::tolerance`] on both sides) gets no test
//!   and says so; too few reps get no interval and say how many are needed.
//! - Each interval end carries its Monte Carlo error (the spread of the bootstrap order
//!   statistics one binomial standard deviation either side of the end).

use super::{
    cliffs_delta, cohens_d, hodges_lehmann, mann_whitney_u, select_quantiles, welch_t, welch_t_log,
    StatsError,
};
use crate::metrics::{Direction, Estimator, Metric};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Fewest reps per side for an interval and a decision: the smallest n for which a
/// distribution-free 95% interval of a median exists; below it a bootstrap only reshuffles
/// the extremes.
pub const MIN_REPS: usize = 6;

/// Relative spread (max − min) / |median| below which a side counts as constant.
pub const DEFAULT_TOLERANCE: f64 = 1e-6;

/// Resamples of every bootstrap: measured so that a change of bootstrap seed flips no verdict
/// in the gate's simulations (`tests/it/gate.rs`), see BENCHMARKS.md.
pub const DEFAULT_RESAMPLES: usize = 20_000;

/// Calls a pooled tail quantile needs above it before it is tested: below that the quantile
/// is one of the last few order statistics, whose bootstrap standard error is too small
/// (measured: at 20 calls the p95 test was Holm-significant on 8% of identical nights).
pub const TAIL_CALLS: usize = 5;

/// Fewest pooled calls per side to test the `q` quantile: ⌈TAIL_CALLS / (1 − q)⌉ (100 for a
/// p95).
pub fn min_calls_for_quantile(q: f64) -> usize {
    (TAIL_CALLS as f64 / (1.0 - q)).ceil() as usize
}

/// How an interval's level is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    /// A two-sided interval at `level` (analysis: 95%).
    TwoSided,
    /// Each end a one-sided bound at (1 + level) / 2: the gate's "the change is at least X
    /// with 95% confidence" (a 90% two-sided interval at α = 0.05).
    OneSidedBounds,
}

/// The knobs that distinguish the callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Two-sided coverage of the interval.
    pub level: f64,
    /// Whether `level` is read as one two-sided interval or as two one-sided bounds.
    pub sides: Sides,
    /// Bootstrap resamples per interval; at least 1000 or the interval is refused.
    pub resamples: usize,
    /// Base seed of every bootstrap; each metric XORs in the FNV-1a hash of its name.
    pub seed: u64,
    /// Fewest reps per side for a test and an interval ([`MIN_REPS`] for both `analyze`
    /// and `compare`).
    pub min_reps: usize,
    /// Relative spread (max − min) / |median| at or below which a side counts as constant.
    pub tolerance: f64,
}

impl Params {
    /// `sweep analyze`: two-sided 95% intervals.
    pub fn analysis(seed: u64) -> Params {
        Params {
            level: 0.95,
            sides: Sides::TwoSided,
            resamples: DEFAULT_RESAMPLES,
            seed,
            min_reps: MIN_REPS,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// `sweep compare`: one-sided 1 − α bounds at each end (a 1 − 2α interval).
    pub fn gate(alpha: f64, seed: u64) -> Params {
        Params {
            level: 1.0 - 2.0 * alpha,
            sides: Sides::OneSidedBounds,
            resamples: DEFAULT_RESAMPLES,
            seed,
            min_reps: MIN_REPS,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// The interval in words, for footers: "two-sided 95%" or "one-sided 95% bounds (90%
    /// two-sided)".
    pub fn interval_label(&self) -> String {
        match self.sides {
            Sides::TwoSided => format!("two-sided {}%", pct(self.level)),
            Sides::OneSidedBounds => format!(
                "one-sided {}% bound at each end ({}% two-sided)",
                pct((1.0 + self.level) / 2.0),
                pct(self.level)
            ),
        }
    }
}

fn pct(x: f64) -> String {
    let v = x * 100.0;
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One side's data for a metric.
#[derive(Debug, Clone, Copy)]
pub enum Sample<'a> {
    /// One value per complete rep.
    Reps(&'a [f64]),
    /// Per complete rep, its calls' values (pooled metrics).
    Clusters(&'a [Vec<f64>]),
}

impl Sample<'_> {
    /// Reps in the sample.
    pub fn reps(&self) -> usize {
        match self {
            Sample::Reps(v) => v.len(),
            Sample::Clusters(c) => c.len(),
        }
    }

    fn values(&self) -> Vec<f64> {
        match self {
            Sample::Reps(v) => v.to_vec(),
            Sample::Clusters(c) => c.iter().flatten().copied().collect(),
        }
    }
}

/// The metric's value of one side: the median of the rep values, or the pooled quantile.
pub fn point_estimate(metric: Metric, s: Sample<'_>) -> Option<f64> {
    let mut v = s.values();
    if v.is_empty() {
        return None;
    }
    let q = match metric.def().estimator {
        Estimator::PooledQuantile { q, .. } => q,
        _ => 0.5,
    };
    select_quantiles(&mut v, &[q]).map(|x| x[0])
}

/// Whether and how a two-sample comparison was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A test gave a p-value and the bootstrap gave an interval.
    Tested,
    /// A side has fewer reps than [`Params::min_reps`].
    TooFew,
    /// Both sides are constant within the tolerance: no test (see `note`).
    Constant,
    /// The statistic could not be formed (a zero reference, a non-positive value on a log
    /// scale).
    Undefined,
}

/// The interval of a change (ratio − 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeCi {
    pub(crate) lower: f64,
    pub(crate) upper: f64,
    /// Two-sided coverage.
    pub level: f64,
    pub(crate) sides: Sides,
    /// "percentile bootstrap of the ratio of medians" or "cluster bootstrap of the ratio of
    /// p95s".
    pub method: String,
    pub(crate) resamples: usize,
    pub(crate) seed: u64,
    /// Monte Carlo standard error of each end (relative change units).
    pub mc_error_lower: f64,
    pub(crate) mc_error_upper: f64,
}

/// The test that gives the p-value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// "Welch t on ln(rep values)", "Welch t on rep values", "cluster bootstrap".
    pub name: String,
    /// Two-sided p-value of "no change", unadjusted (`analyze` and `compare` apply Holm to
    /// their own families).
    pub p: f64,
    pub(crate) statistic: Option<f64>,
    pub(crate) df: Option<f64>,
}

/// A sample against its reference: what `analyze` and `compare` both report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoSample {
    pub(crate) metric: Metric,
    pub(crate) n: usize,
    pub(crate) n_reference: usize,
    pub(crate) estimate: Option<f64>,
    pub(crate) reference_estimate: Option<f64>,
    /// estimate / reference_estimate − 1.
    pub change: Option<f64>,
    /// Interval of the change; `None` unless `status` is `Tested`.
    pub ci: Option<ChangeCi>,
    /// The decisive test (Welch t or cluster bootstrap); `None` unless `status` is `Tested`.
    pub test: Option<TestResult>,
    /// Mann–Whitney U on the rep values (robustness column), unadjusted.
    pub p_mann_whitney: Option<f64>,
    pub(crate) cliffs_delta: Option<f64>,
    pub(crate) hodges_lehmann: Option<f64>,
    pub(crate) cohens_d: Option<f64>,
    pub(crate) status: Status,
    /// Why there is no test or interval, in words.
    pub note: Option<String>,
}

impl TwoSample {
    /// The estimates and change, nothing tested yet (status `TooFew` until a caller tests).
    pub fn untested(
        metric: Metric,
        (n, n_reference): (usize, usize),
        estimate: Option<f64>,
        reference_estimate: Option<f64>,
    ) -> TwoSample {
        let change = match (estimate, reference_estimate) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b - 1.0),
            _ => None,
        };
        TwoSample {
            metric,
            n,
            n_reference,
            estimate,
            reference_estimate,
            change,
            ci: None,
            test: None,
            p_mann_whitney: None,
            cliffs_delta: None,
            hodges_lehmann: None,
            cohens_d: None,
            status: Status::TooFew,
            note: None,
        }
    }
}

/// Relative spread (max − min) / |median| of a set of values (0 for one value).
fn relative_spread(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let mut c = v.to_vec();
    let med = select_quantiles(&mut c, &[0.5])
        .map(|q| q[0])
        .unwrap_or(0.0);
    if med == 0.0 {
        if hi == lo {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (hi - lo) / med.abs()
    }
}

/// True when every value is the same within `tol` (relative).
pub fn is_constant(v: &[f64], tol: f64) -> bool {
    relative_spread(v) <= tol
}

/// Compares `x` (the cell or current run) with `y` (the reference cell or the baseline).
pub fn two_sample(metric: Metric, x: Sample<'_>, y: Sample<'_>, p: &Params) -> TwoSample {
    let (nx, ny) = (x.reps(), y.reps());
    let mut out = TwoSample::untested(
        metric,
        (nx, ny),
        point_estimate(metric, x),
        point_estimate(metric, y),
    );
    let change = out.change;
    if nx.min(ny) < p.min_reps {
        out.note = Some(format!(
            "need ≥ {} reps per side, have {nx} / {ny}",
            p.min_reps
        ));
        return out;
    }
    let (vx, vy) = (x.values(), y.values());
    if let Estimator::PooledQuantile { q, .. } = metric.def().estimator {
        let need = min_calls_for_quantile(q);
        if vx.len().min(vy.len()) < need {
            out.note = Some(format!(
                "need ≥ {need} calls per side for a p{:.0} ({TAIL_CALLS} above it), have {} / {}",
                q * 100.0,
                vx.len(),
                vy.len()
            ));
            return out;
        }
    }
    if is_constant(&vx, p.tolerance) && is_constant(&vy, p.tolerance) {
        out.status = Status::Constant;
        let same = out.estimate.is_some() && out.estimate == out.reference_estimate;
        out.note = Some(match change {
            _ if same => format!(
                "constant on both sides within {:e} (relative): identical, no test",
                p.tolerance
            ),
            Some(c) if c.abs() <= p.tolerance => format!(
                "constant on both sides within {:e} (relative): identical, no test",
                p.tolerance
            ),
            _ => format!(
                "constant on both sides within {:e} (relative) but different: no test possible",
                p.tolerance
            ),
        });
        return out;
    }
    let seed = p.seed ^ fnv(metric.name());
    match (x, y) {
        (Sample::Reps(a), Sample::Reps(b)) => {
            let welch = if metric.log_scale() {
                welch_t_log(a, b)
            } else {
                welch_t(a, b)
            };
            let ci = ratio_of_medians_ci(a, b, p, seed);
            out.p_mann_whitney = mann_whitney_u(a, b).ok().map(|m| m.p);
            out.cliffs_delta = cliffs_delta(a, b).ok();
            out.hodges_lehmann = hodges_lehmann(a, b).ok();
            out.cohens_d = cohens_d(a, b).ok();
            match (welch, ci) {
                (Ok(w), Ok(ci)) => {
                    out.test = Some(TestResult {
                        name: if metric.log_scale() {
                            "Welch t on ln(rep values)".into()
                        } else {
                            "Welch t on rep values".into()
                        },
                        p: w.p,
                        statistic: Some(w.t),
                        df: Some(w.df),
                    });
                    out.ci = Some(ci);
                    out.status = Status::Tested;
                }
                (Err(e), _) | (_, Err(e)) => {
                    out.status = Status::Undefined;
                    out.note = Some(e.to_string());
                }
            }
        }
        (Sample::Clusters(a), Sample::Clusters(b)) => {
            let q = match metric.def().estimator {
                Estimator::PooledQuantile { q, .. } => q,
                _ => 0.5,
            };
            match cluster_quantile_ratio(a, b, q, p, seed) {
                Ok((ci, pv)) => {
                    out.test = Some(TestResult {
                        name: format!(
                            "cluster bootstrap of the ratio of p{:.0}s (reps resampled)",
                            q * 100.0
                        ),
                        p: pv,
                        statistic: None,
                        df: None,
                    });
                    out.ci = Some(ci);
                    out.status = Status::Tested;
                }
                Err(e) => {
                    out.status = Status::Undefined;
                    out.note = Some(e.to_string());
                }
            }
        }
        _ => {
            out.status = Status::Undefined;
            out.note = Some("the two sides were summarised differently".into());
        }
    }
    out
}

/// 64-bit FNV-1a: a stable per-metric seed offset.
pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn check_resamples(what: &'static str, p: &Params) -> Result<(), StatsError> {
    if p.resamples < 1000 {
        return Err(StatsError::BadParameter {
            what,
            detail: format!("need ≥ 1000 resamples, got {}", p.resamples),
        });
    }
    super::check_level(what, p.level)
}

/// Percentile bootstrap of median(x) / median(y) − 1, each side resampled independently.
fn ratio_of_medians_ci(
    x: &[f64],
    y: &[f64],
    p: &Params,
    seed: u64,
) -> Result<ChangeCi, StatsError> {
    const WHAT: &str = "bootstrap CI of the ratio of medians";
    check_resamples(WHAT, p)?;
    let ci = super::bootstrap_ratio_ci(x, y, super::Statistic::Median, p.level, p.resamples, seed)?;
    Ok(ChangeCi {
        lower: ci.lower - 1.0,
        upper: ci.upper - 1.0,
        level: p.level,
        sides: p.sides,
        method: "percentile bootstrap of the ratio of medians".into(),
        resamples: p.resamples,
        seed,
        mc_error_lower: ci.mc_error_lower,
        mc_error_upper: ci.mc_error_upper,
    })
}

/// The type-7 `q` quantile of the pooled calls of `clusters`.
fn point_estimate_q(clusters: &[Vec<f64>], q: f64) -> f64 {
    let mut v: Vec<f64> = clusters.iter().flatten().copied().collect();
    select_quantiles(&mut v, &[q])
        .map(|x| x[0])
        .unwrap_or(f64::NAN)
}

/// Cluster bootstrap of quantile_q(pooled x) / quantile_q(pooled y): each resample draws
/// each side's reps with replacement and pools their calls. Returns the percentile interval
/// of the change and the two-sided p-value of "no change" from a z test of ln(ratio) with
/// the bootstrap standard error.
pub fn cluster_quantile_ratio(
    x: &[Vec<f64>],
    y: &[Vec<f64>],
    q: f64,
    p: &Params,
    seed: u64,
) -> Result<(ChangeCi, f64), StatsError> {
    const WHAT: &str = "cluster bootstrap of a quantile ratio";
    check_resamples(WHAT, p)?;
    super::need(WHAT, 2, x.len())?;
    super::need(WHAT, 2, y.len())?;
    for c in x.iter().chain(y) {
        super::check_finite(WHAT, c)?;
        if c.is_empty() {
            return Err(StatsError::BadParameter {
                what: WHAT,
                detail: "a rep without calls".into(),
            });
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf: Vec<f64> = Vec::new();
    let draw = |side: &[Vec<f64>], rng: &mut ChaCha8Rng, buf: &mut Vec<f64>| -> f64 {
        buf.clear();
        let n = side.len() as u32;
        for _ in 0..n {
            buf.extend_from_slice(&side[rng.gen_range(0..n) as usize]);
        }
        select_quantiles(buf, &[q])
            .map(|v| v[0])
            .unwrap_or(f64::NAN)
    };
    let mut ratios = Vec::with_capacity(p.resamples);
    for _ in 0..p.resamples {
        let a = draw(x, &mut rng, &mut buf);
        let b = draw(y, &mut rng, &mut buf);
        if b != 0.0 && a.is_finite() && b.is_finite() {
            ratios.push(a / b);
        }
    }
    super::need(WHAT, p.resamples / 2, ratios.len())?;
    // The p-value of "no change" from the bootstrap standard error of ln(ratio): a smooth
    // function of the resamples, so that another seed moves it by a hair (percentile counts
    // of ratio ≤ 1 jump with every resample that lands on the discrete quantile's steps).
    let observed = {
        let a = point_estimate_q(x, q);
        let b = point_estimate_q(y, q);
        (a / b).ln()
    };
    let logs: Vec<f64> = ratios
        .iter()
        .filter(|r| **r > 0.0)
        .map(|r| r.ln())
        .collect();
    let mean = logs.iter().sum::<f64>() / logs.len().max(1) as f64;
    let se = (logs.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
        / (logs.len().max(2) - 1) as f64)
        .sqrt();
    let pv = if se > 0.0 && observed.is_finite() {
        let z = observed / se;
        let normal =
            statrs::distribution::Normal::new(0.0, 1.0).map_err(|e| StatsError::BadParameter {
                what: WHAT,
                detail: e.to_string(),
            })?;
        use statrs::distribution::ContinuousCDF;
        (2.0 * normal.sf(z.abs())).min(1.0)
    } else {
        1.0
    };
    // The interval from the same normal model on ln(ratio) as the test (a percentile
    // interval of a tail quantile is distorted by resamples whose tail lands below the
    // quantile: the ratio's bootstrap distribution is bimodal).
    let z = statrs::distribution::Normal::new(0.0, 1.0)
        .map(|n| {
            use statrs::distribution::ContinuousCDF;
            n.inverse_cdf(0.5 + p.level / 2.0)
        })
        .unwrap_or(1.96);
    let (lo, hi) = (
        (observed - z * se).exp() - 1.0,
        (observed + z * se).exp() - 1.0,
    );
    // Monte Carlo error of a bootstrap standard error: se / √(2B).
    let se_mc = se / (2.0 * logs.len().max(1) as f64).sqrt();
    Ok((
        ChangeCi {
            lower: lo,
            upper: hi,
            level: p.level,
            sides: p.sides,
            method: format!(
                "normal interval on ln(ratio of p{:.0}s) with a cluster-bootstrap standard error (reps resampled)",
                q * 100.0
            ),
            resamples: p.resamples,
            seed,
            mc_error_lower: (lo + 1.0) * z * se_mc,
            mc_error_upper: (hi + 1.0) * z * se_mc,
        },
        pv,
    ))
}

/// A cell's pooled quantile with a cluster-bootstrap percentile interval (reps resampled).
pub fn cluster_quantile_ci(
    metric: Metric,
    clusters: &[Vec<f64>],
    p: &Params,
) -> Result<super::Interval, StatsError> {
    const WHAT: &str = "cluster bootstrap CI of a pooled quantile";
    check_resamples(WHAT, p)?;
    super::need(WHAT, p.min_reps, clusters.len())?;
    let q = match metric.def().estimator {
        Estimator::PooledQuantile { q, .. } => q,
        _ => 0.5,
    };
    let estimate =
        point_estimate(metric, Sample::Clusters(clusters)).ok_or(StatsError::TooFew {
            what: WHAT,
            need: 1,
            have: 0,
        })?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed ^ fnv(metric.name()));
    let mut buf = Vec::new();
    let n = clusters.len() as u32;
    let mut reps = Vec::with_capacity(p.resamples);
    for _ in 0..p.resamples {
        buf.clear();
        for _ in 0..n {
            buf.extend_from_slice(&clusters[rng.gen_range(0..n) as usize]);
        }
        if let Some(v) = select_quantiles(&mut buf, &[q]) {
            reps.push(v[0]);
        }
    }
    let (lower, upper, _, _) = super::percentile_ends(&mut reps, p.level);
    Ok(super::Interval {
        estimate,
        lower,
        upper,
        level: p.level,
        coverage: p.level,
    })
}

/// What a comparison concluded, direction-aware. `analyze` calls it with threshold 0,
/// `compare` with the metric's regression threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Significant, in the bad direction, and the interval reaches the threshold: a change
    /// of that size is not ruled out.
    Worse,
    /// Significant, and the interval reaches beyond the threshold in the bad direction is
    /// ruled out: a real change, smaller than what matters.
    WithinThreshold,
    /// Too few reps, or no value on a side: nothing was decided.
    Inconclusive,
    /// Constant data on both sides that differ: no test is possible.
    Constant,
    /// Not significant (benchstat's `~`), or constant and identical.
    NoChange,
    /// Significant for a metric with no better side.
    Changed,
    /// Significant in the good direction and the interval reaches the threshold.
    Better,
    /// Not judged: a metric that scales with the output length, between workloads whose
    /// output lengths differ (set by the callers, never by [`decide`]).
    OtherWorkload,
}

/// Decides a comparison from its adjusted p-value. Regression rule: adjusted p < α, the
/// change in the bad direction (its interval excludes 0 on that side), and the interval's
/// far end reaches `threshold` (a change of at least the threshold is not ruled out). A
/// significant change whose interval lies wholly within the threshold is `WithinThreshold`.
pub fn decide(t: &TwoSample, p_adjusted: Option<f64>, threshold: f64, alpha: f64) -> Decision {
    match t.status {
        Status::TooFew | Status::Undefined => return Decision::Inconclusive,
        Status::Constant => {
            // Zero against zero has no ratio, and no change either.
            let identical = t.change.is_some_and(|c| c.abs() <= 1e-9)
                || (t.estimate.is_some() && t.estimate == t.reference_estimate);
            return if identical {
                Decision::NoChange
            } else {
                Decision::Constant
            };
        }
        Status::Tested => {}
    }
    let (Some(p), Some(ci)) = (p_adjusted, &t.ci) else {
        return Decision::Inconclusive;
    };
    if p >= alpha {
        return Decision::NoChange;
    }
    let higher_is_worse = match t.metric.direction() {
        Direction::LowerIsBetter => true,
        Direction::HigherIsBetter => false,
        Direction::Neither => return Decision::Changed,
    };
    // The interval with positive = worse.
    let (wl, wh) = if higher_is_worse {
        (ci.lower, ci.upper)
    } else {
        (-ci.upper, -ci.lower)
    };
    if wl > 0.0 {
        if wh >= threshold {
            Decision::Worse
        } else {
            Decision::WithinThreshold
        }
    } else if wh < 0.0 {
        if wl <= -threshold {
            Decision::Better
        } else {
            Decision::WithinThreshold
        }
    } else {
        // The test and the interval disagree (the interval includes no change).
        Decision::WithinThreshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tested(metric: Metric, lo: f64, hi: f64) -> TwoSample {
        TwoSample {
            metric,
            n: 8,
            n_reference: 8,
            estimate: Some(1.0),
            reference_estimate: Some(1.0),
            change: Some((lo + hi) / 2.0),
            ci: Some(ChangeCi {
                lower: lo,
                upper: hi,
                level: 0.9,
                sides: Sides::OneSidedBounds,
                method: String::new(),
                resamples: 1000,
                seed: 0,
                mc_error_lower: 0.0,
                mc_error_upper: 0.0,
            }),
            test: None,
            p_mann_whitney: None,
            cliffs_delta: None,
            hodges_lehmann: None,
            cohens_d: None,
            status: Status::Tested,
            note: None,
        }
    }

    #[test]
    fn decision_rules() {
        let ttft = |lo, hi| tested(Metric::TtftMs, lo, hi);
        // Significant, worse, the interval reaches the 5% threshold.
        assert_eq!(
            decide(&ttft(0.02, 0.09), Some(0.01), 0.05, 0.05),
            Decision::Worse
        );
        // ... wholly within it.
        assert_eq!(
            decide(&ttft(0.01, 0.03), Some(0.01), 0.05, 0.05),
            Decision::WithinThreshold
        );
        assert_eq!(
            decide(&ttft(0.02, 0.09), Some(0.2), 0.05, 0.05),
            Decision::NoChange
        );
        assert_eq!(
            decide(&ttft(-0.09, -0.02), Some(0.01), 0.05, 0.05),
            Decision::Better
        );
        // Throughput: lower is worse.
        let tps = tested(Metric::DecodeTps, -0.10, -0.02);
        assert_eq!(decide(&tps, Some(0.001), 0.03, 0.05), Decision::Worse);
        let tokens = tested(Metric::OutputTokens, 0.1, 0.2);
        assert_eq!(decide(&tokens, Some(0.001), 0.0, 0.05), Decision::Changed);
        // Analysis: threshold 0, any significant change in a direction is better/worse.
        assert_eq!(
            decide(&ttft(0.001, 0.002), Some(0.01), 0.0, 0.05),
            Decision::Worse
        );
    }

    #[test]
    fn too_few_and_constant_get_no_test() {
        let p = Params::analysis(1);
        let a = [1.0, 2.0, 3.0];
        let t = two_sample(Metric::TtftMs, Sample::Reps(&a), Sample::Reps(&a), &p);
        assert_eq!(t.status, Status::TooFew);
        assert!(t.note.unwrap().contains("need ≥ 6"));
        // Equal up to float rounding: constant, identical, no test.
        let x: Vec<f64> = (0..8).map(|i| 100.0 + (i as f64) * 1e-13).collect();
        let y: Vec<f64> = (0..8).map(|i| 100.0 - (i as f64) * 1e-13).collect();
        let t = two_sample(Metric::DecodeTps, Sample::Reps(&x), Sample::Reps(&y), &p);
        assert_eq!(t.status, Status::Constant);
        assert!(t.test.is_none());
        assert_eq!(decide(&t, None, 0.0, 0.05), Decision::NoChange);
        let z = vec![90.0; 8];
        let t = two_sample(Metric::DecodeTps, Sample::Reps(&x), Sample::Reps(&z), &p);
        assert_eq!(decide(&t, None, 0.0, 0.05), Decision::Constant);
        // Zero against zero (a load time a warm call never has): no change, not "constant
        // but different".
        let zeros = vec![0.0; 8];
        let t = two_sample(
            Metric::LoadMs,
            Sample::Reps(&zeros),
            Sample::Reps(&zeros),
            &p,
        );
        assert_eq!(decide(&t, None, 0.0, 0.05), Decision::NoChange);
        assert!(t.note.unwrap().contains("identical"));
    }

    #[test]
    fn labels_say_what_was_computed() {
        assert_eq!(Params::analysis(0).interval_label(), "two-sided 95%");
        assert_eq!(
            Params::gate(0.05, 0).interval_label(),
            "one-sided 95% bound at each end (90% two-sided)"
        );
    }

    #[test]
    fn cluster_bootstrap_sees_a_shifted_tail() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mk = |rng: &mut ChaCha8Rng, tail: f64| -> Vec<Vec<f64>> {
            (0..30)
                .map(|_| {
                    (0..4)
                        .map(|_| {
                            let u: f64 = rng.gen();
                            if u > 0.8 {
                                1000.0 * tail
                            } else {
                                700.0 + 20.0 * u
                            }
                        })
                        .collect()
                })
                .collect()
        };
        let base = mk(&mut rng, 1.0);
        let cur = mk(&mut rng, 1.5);
        let p = Params::gate(0.05, 9);
        let t = two_sample(
            Metric::TtftP95Ms,
            Sample::Clusters(&cur),
            Sample::Clusters(&base),
            &p,
        );
        assert_eq!(t.status, Status::Tested, "{t:?}");
        let ci = t.ci.clone().unwrap();
        assert!(ci.lower > 0.2, "{ci:?}");
        let p = t.test.as_ref().unwrap().p;
        assert!(p < 0.05, "p = {p}, {:?}", t.ci);
        assert!(ci.mc_error_lower >= 0.0 && ci.mc_error_lower < 0.05);
    }
}
