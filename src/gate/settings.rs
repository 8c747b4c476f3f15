//! What the gate checks: α, the per-metric regression thresholds, the failed-call limit,
//! from the current run's `[compare]` table and the command-line flags.

use super::GateError;
use crate::metrics::Metric;
use crate::spec::CompareConfig;
use crate::store::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Alpha, thresholds and limits in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Significance level: the family-wise error rate Holm holds per family, and each
    /// interval end is a one-sided 1 − α bound (`[compare] alpha` or `--alpha`).
    pub alpha: f64,
    /// Metric → relative threshold (0.05 = 5%). These metrics gate; the rest inform.
    pub thresholds: BTreeMap<Metric, f64>,
    /// Compare even when the environments differ (`--allow-env-change`); never from the
    /// experiment file.
    pub allow_env_change: bool,
    /// Per cell: a share of failed (or of cold) calls above this, shown higher than the
    /// reference's, is a regression.
    pub max_failed_share: f64,
    /// Bootstrap resamples and seed of every interval.
    pub resamples: usize,
    /// Base bootstrap seed, fixed so that the same runs give the same verdict.
    pub seed: u64,
    /// Per cell: the share of calls outside the `[slo]` that the SLO allows (1 − its
    /// percentile); a higher share, shown higher than the reference's, is a regression.
    /// `None` without an SLO.
    pub max_slo_miss_share: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(&CompareConfig::default())
    }
}

impl Settings {
    pub(crate) fn from_config(c: &CompareConfig) -> Settings {
        Settings {
            alpha: c.alpha,
            thresholds: c.thresholds.clone(),
            allow_env_change: false,
            max_failed_share: c.max_failed_share,
            resamples: crate::stats::engine::DEFAULT_RESAMPLES,
            seed: 0x5eed_c0de,
            max_slo_miss_share: None,
        }
    }

    /// The current run's `[compare]` table (from the experiment file in its manifest);
    /// defaults with a warning when the manifest holds no usable experiment file.
    pub fn from_manifest(m: &Manifest) -> (Settings, Option<String>) {
        match m.spec() {
            Some(spec) => (
                Settings {
                    max_slo_miss_share: spec.slo.map(|s| 1.0 - s.percentile / 100.0),
                    ..Settings::from_config(&spec.compare)
                },
                None,
            ),
            None => (
                Settings::default(),
                Some("the current run's manifest holds no usable experiment file: default thresholds".into()),
            ),
        }
    }

    /// Applies `--alpha` and `--threshold METRIC=REL` flags (REL as 0.05 or 5%).
    pub fn apply_flags(
        &mut self,
        alpha: Option<f64>,
        thresholds: &[(Metric, f64)],
    ) -> Result<(), GateError> {
        if let Some(a) = alpha {
            if !crate::stats::is_open_unit(a) {
                return Err(GateError::BadAlpha(a));
            }
            self.alpha = a;
        }
        for (m, v) in thresholds {
            self.thresholds.insert(*m, *v);
        }
        Ok(())
    }

    /// The metrics to load: [`Settings::metrics`] and the output tokens the workload check
    /// reads.
    pub fn load_metrics(&self) -> Vec<Metric> {
        let mut v = self.metrics();
        v.push(Metric::OutputTokens);
        v.sort();
        v.dedup();
        v
    }

    /// Compared metrics: the gate's defaults and every metric with a threshold.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut v = Metric::gate_defaults();
        v.extend(self.thresholds.keys().copied());
        v.sort();
        v.dedup();
        v
    }
}

/// `ttft_p50=0.05` or `ttft_p50=5%` (any metric name or alias).
pub fn parse_threshold(s: &str) -> Result<(Metric, f64), String> {
    let bad = || {
        format!(
            "bad threshold {s:?}: expected METRIC=REL with METRIC one of {} and REL ≥ 0 (0.05 or 5%)",
            Metric::all_names().join(", ")
        )
    };
    let (m, v) = s.split_once('=').ok_or_else(bad)?;
    let m = Metric::parse(m.trim()).ok_or_else(bad)?;
    let v = v.trim();
    let x = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => v.parse::<f64>().map_err(|_| bad())?,
    };
    if !(x.is_finite() && x >= 0.0) {
        return Err(bad());
    }
    Ok((m, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_reject() {
        assert_eq!(
            parse_threshold("ttft_p50=0.07").unwrap(),
            (Metric::TtftMs, 0.07)
        );
        assert!((parse_threshold("decode_tps=3%").unwrap().1 - 0.03).abs() < 1e-12);
        for bad in [
            "ttft=0.1",
            "ttft_p50",
            "ttft_p50=-1",
            "ttft_p50=x",
            "ttft_p50=NaN",
        ] {
            assert!(parse_threshold(bad).is_err(), "{bad}");
        }
    }
}
