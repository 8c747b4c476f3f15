//! Power analysis for the nightly gate (`sweep power RUN`): from a stored run's per-rep
//! spread of each metric, the smallest change the gate can detect at a given number of reps
//! (α, 80% power), and the reps needed to detect each threshold of `[compare]`.
//!
//! Model: the gate tests ln values (Welch t for rep metrics; a normal approximation of the
//! cluster bootstrap for pooled tails). With s the per-rep standard deviation of ln values
//! on each side (taken from the stored run, assumed equal on both sides) and n reps per
//! side, the standard error of the ln change is s·√(2/n). Holm over m gating tests is at
//! least as powerful as Bonferroni, so the level used is α/m: a change δ (ln scale) is
//! detected with probability ≥ power when δ ≥ (q(1 − α/2m) + q(power))·s·√(2/n), with q the
//! t quantile at 2n − 2 df (the normal one for pooled tails). The gate's simulation tests
//! check that, at the reps this recommends, a change equal to the threshold is flagged in
//! ≥ 80% of simulated nights.

use super::{LoadedRun, Settings};
use crate::analysis::samples::MetricSample;
use crate::metrics::Metric;
use crate::stats::engine::{self, Sample, MIN_REPS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// One group × metric of a power analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerRow {
    pub(crate) cell: String,
    pub(crate) metric: Metric,
    /// The metric's relative regression threshold from `[compare]`; `None` = informational.
    pub threshold: Option<f64>,
    /// Complete reps in the stored run.
    pub stored_reps: usize,
    /// Per-rep standard deviation of ln values.
    pub sd_log: Option<f64>,
    /// The smallest relative change detected with the requested power at `reps`.
    pub detectable: Option<f64>,
    /// Reps per side needed to detect the threshold with the requested power.
    pub reps_needed: Option<usize>,
    pub(crate) note: Option<String>,
}

/// A whole power analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerReport {
    pub(crate) run_id: String,
    pub(crate) alpha: f64,
    pub(crate) power: f64,
    /// Gating tests Holm runs over (groups × metrics with a threshold).
    pub family: usize,
    /// The reps per side the detectable changes are computed for.
    pub reps: usize,
    /// One row per group × metric.
    pub rows: Vec<PowerRow>,
    /// The reps per side that detect every threshold (the largest `reps_needed` of the
    /// gating rows), when all are known.
    pub recommended_reps: Option<usize>,
}

/// Largest reps per side considered.
pub const MAX_REPS: usize = 10_000;

/// Per-rep sd of ln values of one side.
pub fn sd_log(m: &MetricSample) -> Option<f64> {
    match m.sample() {
        Sample::Reps(v) => {
            if v.len() < 2 || v.iter().any(|x| *x <= 0.0) {
                return None;
            }
            let l: Vec<f64> = v.iter().map(|x| x.ln()).collect();
            let mean = l.iter().sum::<f64>() / l.len() as f64;
            let var = l.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (l.len() - 1) as f64;
            Some(var.sqrt())
        }
        Sample::Clusters(c) => {
            if c.len() < 2 {
                return None;
            }
            // Cluster-bootstrap SE of ln(pooled quantile), scaled to one rep: SE·√n.
            let mut rng = ChaCha8Rng::seed_from_u64(0x9e37_79b9);
            let n = c.len() as u32;
            let mut buf = Vec::new();
            let mut logs = Vec::with_capacity(2000);
            for _ in 0..2000 {
                buf.clear();
                for _ in 0..n {
                    buf.extend_from_slice(&c[rng.gen_range(0..n) as usize]);
                }
                let cl = [buf.clone()];
                if let Some(v) = engine::point_estimate(m.metric, Sample::Clusters(&cl)) {
                    if v > 0.0 {
                        logs.push(v.ln());
                    }
                }
            }
            if logs.len() < 100 {
                return None;
            }
            let mean = logs.iter().sum::<f64>() / logs.len() as f64;
            let var =
                logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64;
            Some(var.sqrt() * (c.len() as f64).sqrt())
        }
    }
}

/// The smallest relative change detectable at `n` reps per side.
pub fn detectable(s: f64, n: usize, alpha_each: f64, power: f64, pooled: bool) -> Option<f64> {
    if n < 2 {
        return None;
    }
    let (qa, qb) = if pooled {
        let z = Normal::new(0.0, 1.0).ok()?;
        (z.inverse_cdf(1.0 - alpha_each / 2.0), z.inverse_cdf(power))
    } else {
        let t = StudentsT::new(0.0, 1.0, (2 * n - 2) as f64).ok()?;
        (t.inverse_cdf(1.0 - alpha_each / 2.0), t.inverse_cdf(power))
    };
    Some(((qa + qb) * s * (2.0 / n as f64).sqrt()).exp() - 1.0)
}

/// The fewest reps per side (≥ the gate's minimum) that detect `threshold`.
pub fn reps_needed(
    s: f64,
    threshold: f64,
    alpha_each: f64,
    power: f64,
    pooled: bool,
) -> Option<usize> {
    if threshold <= 0.0 {
        return None;
    }
    let ok = |n: usize| detectable(s, n, alpha_each, power, pooled).is_some_and(|d| d <= threshold);
    if !ok(MAX_REPS) {
        return None;
    }
    // detectable() falls with n: binary search the first n that is enough.
    let (mut lo, mut hi) = (MIN_REPS, MAX_REPS);
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

/// Power analysis of a stored run under `settings`, for `reps` reps per side.
pub fn analyze(run: &LoadedRun, s: &Settings, reps: usize, power: f64) -> PowerReport {
    let metrics = s.metrics();
    let family = run
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
    let alpha_each = s.alpha / family as f64;
    let mut rows = Vec::new();
    for g in &run.samples.groups {
        for &m in &metrics {
            let Some(ms) = g.metric(m) else { continue };
            let threshold = s.thresholds.get(&m).copied();
            let sd = sd_log(ms);
            let pooled = m.is_pooled();
            let note = match sd {
                None => Some(format!(
                    "need ≥ 2 complete reps with positive values, have {}",
                    ms.n()
                )),
                Some(x) if x <= 0.0 => Some("no spread in the stored run".into()),
                _ => None,
            };
            let sd_ok = sd.filter(|x| *x > 0.0);
            rows.push(PowerRow {
                cell: g.key.clone(),
                metric: m,
                threshold,
                stored_reps: ms.n(),
                sd_log: sd,
                detectable: sd_ok.and_then(|x| detectable(x, reps, alpha_each, power, pooled)),
                reps_needed: match (sd_ok, threshold) {
                    (Some(x), Some(t)) => reps_needed(x, t, alpha_each, power, pooled),
                    _ => None,
                },
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
    PowerReport {
        run_id: run.manifest.run_id.clone(),
        alpha: s.alpha,
        power,
        family,
        reps,
        rows,
        recommended_reps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detectable_falls_with_reps_and_inverts() {
        let s = 0.05;
        let a = detectable(s, 6, 0.05 / 20.0, 0.8, false).unwrap();
        let b = detectable(s, 24, 0.05 / 20.0, 0.8, false).unwrap();
        assert!(a > b && b > 0.0, "{a} {b}");
        let n = reps_needed(s, 0.05, 0.05 / 20.0, 0.8, false).unwrap();
        assert!(detectable(s, n, 0.05 / 20.0, 0.8, false).unwrap() <= 0.05);
        assert!(n == MIN_REPS || detectable(s, n - 1, 0.05 / 20.0, 0.8, false).unwrap() > 0.05);
    }
}
