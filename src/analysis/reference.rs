//! Comparisons against the reference arm through the statistics engine (one test for
//! `analyze` and the gate: Welch t on ln rep values, or a cluster bootstrap for pooled
//! tails), adjusted per metric across cells with Holm for verdicts and Benjamini–Hochberg
//! for exploration; and k-sample tests across a factor's levels.

use super::{AnalysisError, AnalysisOptions, Avail, AxisTest, CellAnalysis, Metric, Samples};
use crate::stats;
use crate::stats::engine::{self, Decision, Params, TwoSample};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One cell × metric against its reference cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The compared (non-reference) cell.
    pub cell_id: String,
    /// The reference cell it is compared with (see `Analysis::reference_rule`).
    pub reference_cell: String,
    /// The compared metric.
    pub metric: Metric,
    /// The engine's result with two-sided intervals: estimates, change, interval, Welch t
    /// (or cluster bootstrap) p-value, effect sizes.
    #[serde(flatten)]
    pub result: TwoSample,
    /// Holm-adjusted p (family: every cell of this metric).
    pub p_holm: Option<f64>,
    /// Benjamini–Hochberg-adjusted p (same family).
    pub p_bh: Option<f64>,
    /// [`engine::decide`] from `p_holm` at α with threshold 0: any significant change in
    /// the bad direction is `Worse`.
    pub verdict: Decision,
}

impl Comparison {
    /// Δ% of the estimates and its CI: change · 100.
    pub fn delta_pct(&self) -> Option<(f64, f64, f64)> {
        let c = self.result.change?;
        let ci = self.result.ci.as_ref()?;
        Some((c * 100.0, ci.lower * 100.0, ci.upper * 100.0))
    }

    /// Why there is no Δ interval, when there is none.
    pub fn why_no_ci(&self) -> Option<&str> {
        self.result.note.as_deref()
    }
}

/// The analysis' words for a decision: `better`, `worse`, `~`, `n/a`, `constant`.
pub(crate) fn symbol(d: Decision) -> &'static str {
    match d {
        Decision::Better => "better",
        Decision::Worse => "worse",
        Decision::NoChange | Decision::WithinThreshold => "~",
        Decision::Changed => "changed",
        Decision::Constant => "constant",
        Decision::Inconclusive => "n/a",
        Decision::OtherWorkload => "≠ workload",
    }
}

/// Sets `reference_cell`/`is_reference` on every cell (see `Analysis::reference_rule`).
pub fn assign_references(cells: &mut [CellAnalysis], arm: &str) -> Result<(), AnalysisError> {
    let refs: Vec<(String, BTreeMap<String, String>)> = cells
        .iter()
        .filter(|c| c.arm == arm)
        .map(|c| (c.cell_id.clone(), c.factors.clone()))
        .collect();
    let Some(first) = refs.first().map(|r| r.0.clone()) else {
        return Err(AnalysisError::UnknownReference(arm.to_string()));
    };
    for c in cells.iter_mut() {
        let matched = refs
            .iter()
            .find(|(_, f)| *f == c.factors)
            .map(|r| r.0.clone());
        c.reference_cell = if c.arm == arm {
            matched.unwrap_or_else(|| c.cell_id.clone())
        } else {
            matched.unwrap_or_else(|| nearest(&refs, &c.factors).unwrap_or_else(|| first.clone()))
        };
        c.is_reference = c.reference_cell == c.cell_id;
    }
    Ok(())
}

/// The reference cell sharing the most factor values with `factors` (the first in run order
/// among ties; `None` when none shares any): a `threads = 2` cell of another arm is compared
/// with the reference arm's cell of the same `flash_attn`, not with whichever ran first.
fn nearest(
    refs: &[(String, BTreeMap<String, String>)],
    factors: &BTreeMap<String, String>,
) -> Option<String> {
    let shared = |f: &BTreeMap<String, String>| {
        f.iter()
            .filter(|(k, v)| factors.get(*k) == Some(*v))
            .count()
    };
    let best = refs.iter().map(|(_, f)| shared(f)).max()?;
    (best > 0)
        .then(|| refs.iter().find(|(_, f)| shared(f) == best))
        .flatten()
        .map(|r| r.0.clone())
}

/// True when two median output lengths differ by more than the gate's workload tolerance.
fn other_workload(tokens: Option<&Samples>, a: &str, b: &str) -> bool {
    let median = |k: &str| {
        let ms = tokens?.group(k)?.metric(Metric::OutputTokens)?;
        engine::point_estimate(Metric::OutputTokens, ms.sample())
    };
    match (median(a), median(b)) {
        (Some(x), Some(y)) if y > 0.0 => (x / y - 1.0).abs() > super::WORKLOAD_TOLERANCE,
        _ => false,
    }
}

/// Every non-reference cell × metric against its reference cell. A metric that scales with
/// the output length (`e2e_ms`, `eval_ms`) between cells whose median output lengths
/// differ beyond [`super::WORKLOAD_TOLERANCE`] is computed but not judged
/// ([`Decision::OtherWorkload`]): its change is the lengths', not the speed's.
pub fn compare_all(
    cells: &[CellAnalysis],
    s: &Samples,
    tokens: Option<&Samples>,
    opts: &AnalysisOptions,
    params: &Params,
) -> Vec<Comparison> {
    use rayon::prelude::*;
    let mut out = Vec::new();
    for &m in &opts.metrics {
        let jobs: Vec<_> = cells
            .iter()
            .filter(|c| !c.is_reference)
            .filter_map(|c| {
                let x = s.group(&c.cell_id)?.metric(m)?;
                let y = s.group(&c.reference_cell)?.metric(m)?;
                Some((c, x, y))
            })
            .collect();
        // Each comparison seeds its own bootstrap (per cell and metric), so running them in
        // parallel changes nothing.
        let mut family: Vec<Comparison> = jobs
            .par_iter()
            .map(|(c, x, y)| {
                let p = Params {
                    seed: params.seed ^ engine::fnv(&c.cell_id),
                    ..params.clone()
                };
                Comparison {
                    cell_id: c.cell_id.clone(),
                    reference_cell: c.reference_cell.clone(),
                    metric: m,
                    result: engine::two_sample(m, x.sample(), y.sample(), &p),
                    p_holm: None,
                    p_bh: None,
                    verdict: Decision::Inconclusive,
                }
            })
            .collect();
        let ps: Vec<f64> = family
            .iter()
            .map(|c| c.result.test.as_ref().map(|t| t.p).unwrap_or(f64::NAN))
            .collect();
        let holm = stats::holm(&ps);
        let bh = stats::benjamini_hochberg(&ps);
        for (i, c) in family.iter_mut().enumerate() {
            c.p_holm = Some(holm[i]).filter(|p| !p.is_nan());
            c.p_bh = Some(bh[i]).filter(|p| !p.is_nan());
            c.verdict = if m.scales_with_output_tokens()
                && other_workload(tokens, &c.cell_id, &c.reference_cell)
            {
                Decision::OtherWorkload
            } else {
                engine::decide(&c.result, c.p_holm, 0.0, opts.alpha)
            };
        }
        out.extend(family);
    }
    out
}

/// For every arm and every factor with ≥ 2 levels among its cells: Kruskal–Wallis and
/// one-way ANOVA of each metric's per-rep values grouped by that factor's level (pooled
/// over the arm's other factors — a marginal test).
pub fn axis_tests(
    cells: &[CellAnalysis],
    opts: &AnalysisOptions,
    params: &Params,
) -> Vec<AxisTest> {
    let mut arms: Vec<&str> = cells.iter().map(|c| c.arm.as_str()).collect();
    arms.dedup();
    arms.sort();
    arms.dedup();
    let mut out = Vec::new();
    for arm in arms {
        let arm_cells: Vec<&CellAnalysis> = cells.iter().filter(|c| c.arm == arm).collect();
        let mut keys: Vec<&String> = arm_cells.iter().flat_map(|c| c.factors.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let mut levels: Vec<String> = arm_cells
                .iter()
                .filter_map(|c| c.factors.get(key).cloned())
                .collect();
            levels.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            });
            levels.dedup();
            if levels.len() < 2 {
                continue;
            }
            for &m in &opts.metrics {
                let groups: Vec<Vec<f64>> = levels
                    .iter()
                    .map(|lv| {
                        arm_cells
                            .iter()
                            .filter(|c| c.factors.get(key) == Some(lv))
                            .filter_map(|c| c.metric(m))
                            .flat_map(|cm| cm.stats.reps.iter().copied())
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[f64]> = groups.iter().map(|g| g.as_slice()).collect();
                let all: Vec<f64> = groups.iter().flatten().copied().collect();
                let (kruskal_wallis, anova) =
                    if !all.is_empty() && engine::is_constant(&all, params.tolerance) {
                        let why = Avail::Unavailable {
                            unavailable: format!(
                                "constant within {:e} (relative) across every level: no test",
                                params.tolerance
                            ),
                        };
                        (why.clone(), why)
                    } else {
                        (
                            stats::kruskal_wallis(&refs).into(),
                            stats::anova_oneway(&refs).into(),
                        )
                    };
                out.push(AxisTest {
                    arm: arm.to_string(),
                    factor: key.clone(),
                    metric: m,
                    levels: levels.clone(),
                    kruskal_wallis,
                    anova,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The reference arm holds threads=1 × flash_attn off/on; a threads=2 cell is matched
    /// with the one of its flash_attn, a cell sharing nothing with none.
    #[test]
    fn the_nearest_reference_cell_shares_the_most_factor_values() {
        let refs = vec![
            (
                "off".to_string(),
                f(&[("flash_attn", "false"), ("threads", "1")]),
            ),
            (
                "on".to_string(),
                f(&[("flash_attn", "true"), ("threads", "1")]),
            ),
        ];
        let on2 = f(&[("flash_attn", "true"), ("threads", "2")]);
        assert_eq!(nearest(&refs, &on2).as_deref(), Some("on"));
        let off2 = f(&[("flash_attn", "false"), ("threads", "2")]);
        assert_eq!(nearest(&refs, &off2).as_deref(), Some("off"));
        // A tie (one shared value each): the first in run order.
        let t1 = f(&[("threads", "1")]);
        assert_eq!(nearest(&refs, &t1).as_deref(), Some("off"));
        assert_eq!(nearest(&refs, &f(&[("num_ctx", "512")])), None);
    }
}
