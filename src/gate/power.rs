//! Power analysis for the nightly gate (`sweep power RUN`), for the gate's rule: how many
//! reps a night needs so that a change of `detect` × T (default 2T) is shown to exceed the
//! tolerance T with the requested power, one-sided, at Holm's first-step level α/m (m = the
//! gating tests: rows × tests per row).
//!
//! Model ([`crate::stats::nightly`]): the standard error of tonight against k reference
//! nights is √((σ_w²/n + σ_b²)·(1 + 1/k)), σ_w the per-rep sd of ln values (from the stored
//! run), σ_b the between-night sd (from the history when one is given with ≥ 3 nights,
//! else 0 and the report says so). The reps needed solve (t(1 − α/m) + t(power))·SE ≤ gap
//! with t quantiles at the Satterthwaite df, within one rep of the exact noncentral-t
//! answer (checked against statsmodels in the tests). Because σ_w and σ_b are estimates,
//! the reps needed come with a range: the same formula at the ends of their 90% χ²
//! intervals.

use super::history::{Nights, ANCHOR_NIGHTS, MIN_HISTORY};
use super::judge::{plan_tests, RowNights};
use super::{LoadedRun, Settings};
use crate::analysis::samples::MetricSample;
use crate::metrics::{Direction, Estimator, Metric};
use crate::stats::engine::Sample;
use crate::stats::nightly::{Night, NightVariance, Tolerance};
use serde::{Deserialize, Serialize};

// The sample-size arithmetic is the statistics engine's (`stats::power`); the gate sizes
// its rows with it.
pub use crate::stats::power::{detectable_gap, reps_needed, variance_interval, MAX_REPS};

/// One group × metric of a power analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerRow {
    pub(crate) cell: String,
    pub(crate) metric: Metric,
    /// The metric's tolerance from `[compare]`; `None` = informational.
    pub threshold: Option<f64>,
    /// Complete reps in the stored run.
    pub stored_reps: usize,
    /// Per-rep standard deviation of ln values (within a night).
    pub sd_log: Option<f64>,
    /// Between-night sd of ln values (0 without a history).
    pub between_sd: f64,
    /// The smallest bad-side change shown beyond T with the requested power at `reps`.
    pub detectable: Option<f64>,
    /// Reps per night to show a change of `detect` × T beyond T.
    pub reps_needed: Option<usize>,
    /// The reps needed at the ends of the 90% intervals of σ_w and σ_b: (low, high), high
    /// `None` when no number of reps is enough there.
    pub reps_needed_range: Option<(usize, Option<usize>)>,
    pub(crate) note: Option<String>,
}

/// A whole power analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerReport {
    pub(crate) run_id: String,
    pub(crate) alpha: f64,
    pub(crate) power: f64,
    /// The change to catch, as a multiple of the tolerance.
    pub detect: f64,
    /// Gating tests Holm runs over (rows × tests per row).
    pub family: usize,
    /// Tests per gating row: 2 with a history (recent level and anchor), else 1.
    pub tests_per_row: usize,
    /// Reference nights per test (k).
    pub reference_nights: usize,
    /// Nights of history the between-night variance came from (0: none, assumed 0).
    pub history_nights: usize,
    /// The reps per night the detectable changes are computed for.
    pub reps: usize,
    /// One row per group × metric.
    pub rows: Vec<PowerRow>,
    /// The reps per night that catch `detect` × T in every gating row.
    pub recommended_reps: Option<usize>,
    /// Its range from the spread estimates' uncertainty.
    pub recommended_range: Option<(usize, Option<usize>)>,
}

/// Per-rep sd of ln values of one night of a metric (pooled tails: the cluster-bootstrap
/// standard error scaled to one rep).
pub fn sd_log(m: &MetricSample) -> Option<f64> {
    let night = match m.sample() {
        Sample::Reps(v) => Night::from_reps(v)?,
        Sample::Clusters(c) => {
            let q = match m.metric.def().estimator {
                Estimator::PooledQuantile { q, .. } => q,
                _ => 0.5,
            };
            Night::from_clusters(c, q, 2000, 0x9e37_79b9)?
        }
    };
    Some((night.var * night.n as f64).sqrt())
}

/// The bad-side ln gap between a change of `detect` × T and the tolerance T.
pub fn gap(m: Metric, t: f64, detect: f64) -> Option<f64> {
    let worse_up = m.direction() == Direction::LowerIsBetter;
    let tol = Tolerance::new(worse_up, t)?;
    let big = Tolerance::new(worse_up, (detect * t).min(0.99))?;
    Some(big.limit - tol.limit).filter(|g| *g > 0.0)
}

/// The between-night variance per metric, as the gate would estimate it from `history`
/// (the gating rows of `run` against the history's nights).
fn between_night_variances(
    run: &LoadedRun,
    h: &Nights,
    s: &Settings,
    metrics: &[Metric],
) -> Vec<(Metric, NightVariance)> {
    let mut nv: Vec<(Metric, NightVariance)> = Vec::new();
    let mut rows = Vec::new();
    for g in &run.samples.groups {
        for &m in metrics {
            let (Some(t), Some(ms)) = (s.thresholds.get(&m), g.metric(m)) else {
                continue;
            };
            let Some(tol) = Tolerance::new(m.direction() == Direction::LowerIsBetter, *t) else {
                continue;
            };
            let night = |ms: &MetricSample| match ms.sample() {
                Sample::Reps(v) => Night::from_reps(v),
                Sample::Clusters(_) => None,
            };
            let Some(tonight) = night(ms) else { continue };
            let hist: Vec<(String, Night)> = h
                .window
                .iter()
                .filter_map(|r| {
                    let n = night(r.samples.group(&g.key)?.metric(m)?)?;
                    Some((r.manifest.run_id.clone(), n))
                })
                .collect();
            rows.push(RowNights {
                key: g.key.clone(),
                metric: m,
                tolerance: tol,
                tonight,
                history: hist,
                anchor: Vec::new(),
            });
        }
    }
    for mn in plan_tests(&rows, s.alpha, s.seed).nights {
        if let Some(v) = mn.variance {
            nv.push((mn.metric, v));
        }
    }
    nv
}

/// Power analysis of a stored run under `settings`, with the between-night variance from
/// `history` when it holds ≥ [`MIN_HISTORY`] nights.
pub fn analyze(
    run: &LoadedRun,
    history: Option<&Nights>,
    s: &Settings,
    reps: usize,
    power: f64,
    detect: f64,
) -> PowerReport {
    let metrics = s.metrics();
    let history = history.filter(|h| h.window.len() >= MIN_HISTORY);
    let nv = history
        .map(|h| between_night_variances(run, h, s, &metrics))
        .unwrap_or_default();
    let (tests_per_row, k) = match history {
        Some(h) => (2, h.anchor.len().clamp(1, ANCHOR_NIGHTS)),
        None => (1, 1),
    };
    let gating_rows = run
        .samples
        .groups
        .iter()
        .map(|g| {
            metrics
                .iter()
                .filter(|m| s.thresholds.contains_key(m) && g.metric(**m).is_some())
                .count()
        })
        .sum::<usize>()
        .max(1);
    let family = gating_rows * tests_per_row;
    let alpha_each = s.alpha / family as f64;
    let mut rows = Vec::new();
    let mut ranges = Vec::new();
    for g in &run.samples.groups {
        for &m in &metrics {
            let Some(ms) = g.metric(m) else { continue };
            let threshold = s.thresholds.get(&m).copied();
            let sd = sd_log(ms).filter(|x| *x > 0.0);
            let v = nv.iter().find(|(x, _)| *x == m).map(|(_, v)| *v);
            let (between, df_b) = v.map_or((0.0, f64::INFINITY), |v| (v.between, v.df));
            let mut note = match sd {
                None => Some(format!(
                    "need ≥ 2 complete reps with positive values and a spread, have {}",
                    ms.n()
                )),
                _ => None,
            };
            let g_ = threshold.and_then(|t| gap(m, t, detect));
            let needed = match (sd, g_) {
                (Some(x), Some(gp)) => reps_needed(x, between, df_b, k, gp, alpha_each, power),
                _ => None,
            };
            let range = match (sd, g_) {
                (Some(x), Some(gp)) if ms.n() >= 2 => {
                    let (w_lo, w_hi) = variance_interval(x * x, (ms.n() - 1) as f64);
                    let (b_lo, b_hi) = match v {
                        Some(v) => {
                            let (lo, hi) = variance_interval(v.night, v.df);
                            ((lo - v.within).max(0.0), (hi - v.within).max(0.0))
                        }
                        None => (0.0, 0.0),
                    };
                    let lo = reps_needed(w_lo.sqrt(), b_lo, df_b, k, gp, alpha_each, power);
                    let hi = reps_needed(w_hi.sqrt(), b_hi, df_b, k, gp, alpha_each, power);
                    lo.map(|l| (l, hi))
                }
                _ => None,
            };
            if threshold.is_some() && sd.is_some() && needed.is_none() && note.is_none() {
                note = Some(if between > 0.0 {
                    format!(
                        "no number of reps: the between-night sd ({:.1}%) alone is too large for this tolerance",
                        between.sqrt() * 100.0
                    )
                } else {
                    format!("more than {MAX_REPS} reps")
                });
            }
            if threshold.is_some() {
                ranges.push(range);
            }
            let detectable = sd
                .and_then(|x| detectable_gap(x, between, df_b, k, reps, alpha_each, power))
                .and_then(|d| {
                    let t = threshold?;
                    let tol = Tolerance::new(m.direction() == Direction::LowerIsBetter, t)?;
                    let bad = tol.limit + d;
                    Some(if tol.bad_sign > 0.0 {
                        bad.exp() - 1.0
                    } else {
                        1.0 - (-bad).exp()
                    })
                });
            rows.push(PowerRow {
                cell: g.key.clone(),
                metric: m,
                threshold,
                stored_reps: ms.n(),
                sd_log: sd,
                between_sd: between.sqrt(),
                detectable,
                reps_needed: needed,
                reps_needed_range: range,
                note,
            });
        }
    }
    let gating: Vec<&PowerRow> = rows.iter().filter(|r| r.threshold.is_some()).collect();
    let recommended_reps = if !gating.is_empty() && gating.iter().all(|r| r.reps_needed.is_some()) {
        gating.iter().filter_map(|r| r.reps_needed).max()
    } else {
        None
    };
    let recommended_range = if !ranges.is_empty() && ranges.iter().all(Option::is_some) {
        let lo = ranges.iter().flatten().map(|r| r.0).max();
        let hi = ranges
            .iter()
            .flatten()
            .map(|r| r.1)
            .try_fold(0usize, |acc, h| h.map(|h| acc.max(h)));
        lo.map(|l| (l, hi))
    } else {
        None
    };
    PowerReport {
        run_id: run.manifest.run_id.clone(),
        alpha: s.alpha,
        power,
        detect,
        family,
        tests_per_row,
        reference_nights: k,
        history_nights: history.map_or(0, |h| h.window.len()),
        reps,
        rows,
        recommended_reps,
        recommended_range,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_runs_match_statsmodels_within_one_rep() {
        // statsmodels TTestIndPower().solve_power(effect_size=gap/s, alpha=a, power=0.8,
        // alternative="larger"), gap = ln 1.10 − ln 1.05 (2T against T = 5%): 41.9, 37.2,
        // 98.2 → 42, 38, 99.
        let g = gap(Metric::TtftMs, 0.05, 2.0).unwrap();
        assert!((g - 0.046_520_015_634_892_886).abs() < 1e-12);
        for (sd, a, want) in [
            (0.0707, 0.05 / 3.0, 42usize),
            (0.0707, 0.025, 38),
            (0.10, 0.05 / 6.0, 99),
        ] {
            let n = reps_needed(sd, 0.0, f64::INFINITY, 1, g, a, 0.8).unwrap();
            assert!(n.abs_diff(want) <= 1, "sd {sd} α {a}: {n} vs {want}");
        }
        // Throughput, lower is worse: gap = −ln 0.94 + ln 0.97; statsmodels 15.3 → 16.
        let g = gap(Metric::DecodeTps, 0.03, 2.0).unwrap();
        assert!((g - 0.031_416_196_233_378_955).abs() < 1e-12);
        let n = reps_needed(0.03, 0.0, f64::INFINITY, 1, g, 0.025, 0.8).unwrap();
        assert!(n.abs_diff(16) <= 1, "{n}");
    }

    #[test]
    fn between_night_spread_sets_a_floor() {
        let g = gap(Metric::TtftMs, 0.05, 2.0).unwrap();
        let without = reps_needed(0.075, 0.0, f64::INFINITY, 3, g, 0.05 / 6.0, 0.8).unwrap();
        let with = reps_needed(0.075, 0.01f64.powi(2), 20.0, 3, g, 0.05 / 6.0, 0.8).unwrap();
        assert!(with > without, "{with} {without}");
        assert_eq!(
            reps_needed(0.075, 0.03f64.powi(2), 20.0, 3, g, 0.05 / 6.0, 0.8),
            None
        );
    }
}
