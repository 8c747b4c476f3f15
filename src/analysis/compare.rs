//! Comparisons against the reference arm (Δ% of medians with a bootstrap CI, Mann–Whitney
//! p adjusted per metric with Holm for verdicts and BH for exploration, Cliff's δ, HL
//! shift, Cohen's d), pair speedup/efficiency/contention, and k-sample axis tests.

use super::aggregate::{f64_col, str_col};
use super::{AnalysisError, AnalysisOptions, Avail, AxisTest, CellAnalysis, Metric, RepStats};
use crate::stats::{self, BootstrapCi, MannWhitney, Statistic, WelchT};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fewest reps per side for a bootstrap CI of a ratio (as for the median's CI).
pub const MIN_BOOTSTRAP_N: usize = 6;

/// Verdict of a cell against its reference, direction-aware per metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Better,
    Worse,
    /// Holm-adjusted p ≥ α, or the metric has no better side: benchstat's `~`.
    Same,
    /// Too few reps for a test.
    Insufficient,
}

impl Verdict {
    pub fn symbol(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Same => "~",
            Verdict::Insufficient => "n/a",
        }
    }
}

/// One cell × metric against its reference cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub cell_id: String,
    pub reference_cell: String,
    pub metric: Metric,
    /// median(cell) / median(reference) with a percentile-bootstrap CI.
    pub ratio: Avail<BootstrapCi>,
    pub mann_whitney: Avail<MannWhitney>,
    /// Welch's t-test, on log values for latencies and throughputs.
    pub welch: Avail<WelchT>,
    /// Holm-adjusted Mann–Whitney p (family: every cell of this metric).
    pub p_holm: Option<f64>,
    /// Benjamini–Hochberg-adjusted Mann–Whitney p (same family).
    pub p_bh: Option<f64>,
    pub cliffs_delta: Avail<f64>,
    pub hodges_lehmann: Avail<f64>,
    pub cohens_d: Avail<f64>,
    pub verdict: Verdict,
}

impl Comparison {
    /// Δ% of medians and its CI: (ratio − 1)·100.
    pub fn delta_pct(&self) -> Option<(f64, f64, f64)> {
        self.ratio.value().map(|r| {
            (
                (r.estimate - 1.0) * 100.0,
                (r.lower - 1.0) * 100.0,
                (r.upper - 1.0) * 100.0,
            )
        })
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
            matched.unwrap_or_else(|| first.clone())
        };
        c.is_reference = c.reference_cell == c.cell_id;
    }
    Ok(())
}

/// Every non-reference cell × metric against its reference cell.
pub fn compare_all(cells: &[CellAnalysis], opts: &AnalysisOptions) -> Vec<Comparison> {
    use rayon::prelude::*;
    let mut out = Vec::new();
    for &m in &opts.metrics {
        let jobs: Vec<_> = cells
            .iter()
            .filter(|c| !c.is_reference)
            .filter_map(|c| {
                let r = cells.iter().find(|r| r.cell_id == c.reference_cell)?;
                Some((c, r, c.metric(m)?, r.metric(m)?))
            })
            .collect();
        // Each comparison seeds its own bootstrap, so running them in parallel changes nothing.
        let mut family: Vec<Comparison> = jobs
            .par_iter()
            .map(|(c, r, x, y)| compare_one(c, r, m, &x.stats.reps, &y.stats.reps, opts))
            .collect();
        let ps: Vec<f64> = family
            .iter()
            .map(|c| c.mann_whitney.value().map(|t| t.p).unwrap_or(f64::NAN))
            .collect();
        let holm = stats::holm(&ps);
        let bh = stats::benjamini_hochberg(&ps);
        for (i, c) in family.iter_mut().enumerate() {
            c.p_holm = Some(holm[i]).filter(|p| !p.is_nan());
            c.p_bh = Some(bh[i]).filter(|p| !p.is_nan());
            c.verdict = verdict(c, m, opts.alpha);
        }
        out.extend(family);
    }
    out
}

fn compare_one(
    c: &CellAnalysis,
    r: &CellAnalysis,
    m: Metric,
    x: &[f64],
    y: &[f64],
    opts: &AnalysisOptions,
) -> Comparison {
    // Seed per (cell, metric) so that adding a cell does not change another's interval.
    let seed = opts.seed ^ fnv(&format!("{}|{}", c.cell_id, m.name()));
    let welch = if m.log_scale() {
        stats::welch_t_log(x, y)
    } else {
        stats::welch_t(x, y)
    };
    Comparison {
        cell_id: c.cell_id.clone(),
        reference_cell: r.cell_id.clone(),
        metric: m,
        // A percentile bootstrap of a median from a handful of reps only reshuffles the
        // extremes: below MIN_BOOTSTRAP_N per side the interval would be fake, so say so.
        ratio: if x.len().min(y.len()) < MIN_BOOTSTRAP_N {
            Err(stats::StatsError::TooFew {
                what: "bootstrap CI of the median ratio",
                need: MIN_BOOTSTRAP_N,
                have: x.len().min(y.len()),
            })
        } else {
            stats::bootstrap_ratio_ci(
                x,
                y,
                Statistic::Median,
                opts.level,
                opts.bootstrap_resamples,
                seed,
            )
        }
        .into(),
        mann_whitney: stats::mann_whitney_u(x, y).into(),
        welch: welch.into(),
        p_holm: None,
        p_bh: None,
        cliffs_delta: stats::cliffs_delta(x, y).into(),
        hodges_lehmann: stats::hodges_lehmann(x, y).into(),
        cohens_d: stats::cohens_d(x, y).into(),
        verdict: Verdict::Insufficient,
    }
}

fn verdict(c: &Comparison, m: Metric, alpha: f64) -> Verdict {
    let (Some(p), Some(r)) = (c.p_holm, c.ratio.value()) else {
        return Verdict::Insufficient;
    };
    match m.higher_is_better() {
        Some(higher) if p < alpha => {
            if (r.estimate > 1.0) == higher {
                Verdict::Better
            } else {
                Verdict::Worse
            }
        }
        _ => Verdict::Same,
    }
}

/// 64-bit FNV-1a: a stable per-comparison seed offset.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Speedup, efficiency and contention of one pair cell, with per-rep values and CIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairAnalysis {
    pub cell_id: String,
    pub arm: String,
    /// Sequential phase wall / concurrent phase wall, per rep.
    pub speedup: RepStats,
    /// Speedup / 2.
    pub efficiency: RepStats,
    /// Per agent: median concurrent e2e / median sequential e2e, per rep (> 1 = slowed).
    pub contention: BTreeMap<String, RepStats>,
}

/// Pair cells: those with a sequential phase. Reps with a failed call in either phase
/// are left out of speedup (a failed phase's wall time is not comparable).
pub fn pairs(lf: LazyFrame, opts: &AnalysisOptions) -> Result<Vec<PairAnalysis>, AnalysisError> {
    let pair_rows = lf
        .clone()
        .filter(col("warmup").not().and(col("phase").neq(lit("single"))));
    let walls = super::aggregate::collect_streaming(
        pair_rows
            .clone()
            .group_by([col("cell_id"), col("rep"), col("phase")])
            .agg([
                col("arm").first().alias("arm"),
                col("phase_wall_ms").max().alias("wall"),
                col("ok").not().cast(DataType::UInt32).sum().alias("failed"),
            ])
            .sort(["cell_id", "rep", "phase"], SortMultipleOptions::default()),
    )?;
    let e2e = super::aggregate::collect_streaming(
        pair_rows
            .filter(col("ok"))
            .group_by([col("cell_id"), col("rep"), col("phase"), col("agent")])
            .agg([col("e2e_ms").median().alias("e2e")]),
    )?;

    type Key = (String, u32);
    let mut wall: BTreeMap<Key, [Option<f64>; 2]> = BTreeMap::new();
    let mut arms: BTreeMap<String, String> = BTreeMap::new();
    let (cells, reps, phases, arm, w, failed) = (
        str_col(&walls, "cell_id")?,
        f64_col(&walls, "rep")?,
        str_col(&walls, "phase")?,
        str_col(&walls, "arm")?,
        f64_col(&walls, "wall")?,
        f64_col(&walls, "failed")?,
    );
    for i in 0..cells.len() {
        arms.insert(cells[i].clone(), arm[i].clone());
        let slot = match phases[i].as_str() {
            "concurrent" => 0,
            "sequential" => 1,
            _ => continue,
        };
        let ok = failed[i] == Some(0.0);
        let e = wall
            .entry((cells[i].clone(), reps[i].unwrap_or(0.0) as u32))
            .or_insert([None, None]);
        e[slot] = w[i].filter(|_| ok);
    }
    let mut agent_e2e: BTreeMap<(Key, String), [Option<f64>; 2]> = BTreeMap::new();
    let (ec, er, ep, ea, ev) = (
        str_col(&e2e, "cell_id")?,
        f64_col(&e2e, "rep")?,
        str_col(&e2e, "phase")?,
        str_col(&e2e, "agent")?,
        f64_col(&e2e, "e2e")?,
    );
    for i in 0..ec.len() {
        let slot = if ep[i] == "concurrent" { 0 } else { 1 };
        let key = ((ec[i].clone(), er[i].unwrap_or(0.0) as u32), ea[i].clone());
        agent_e2e.entry(key).or_insert([None, None])[slot] = ev[i];
    }

    let mut out = Vec::new();
    for (cell, arm) in arms {
        let has_seq = wall.iter().any(|((c, _), v)| *c == cell && v[1].is_some());
        if !has_seq {
            continue;
        }
        let speedups: Vec<f64> = wall
            .iter()
            .filter(|((c, _), _)| *c == cell)
            .filter_map(|(_, v)| match v {
                [Some(conc), Some(seq)] if *conc > 0.0 => Some(seq / conc),
                _ => None,
            })
            .collect();
        let eff: Vec<f64> = speedups.iter().map(|s| s / 2.0).collect();
        let mut contention: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (((c, _), agent), v) in &agent_e2e {
            if *c != cell {
                continue;
            }
            if let [Some(conc), Some(seq)] = v {
                if *seq > 0.0 {
                    contention
                        .entry(agent.clone())
                        .or_default()
                        .push(conc / seq);
                }
            }
        }
        out.push(PairAnalysis {
            cell_id: cell.clone(),
            arm,
            speedup: RepStats::new(speedups, opts.level),
            efficiency: RepStats::new(eff, opts.level),
            contention: contention
                .into_iter()
                .map(|(a, v)| (a, RepStats::new(v, opts.level)))
                .collect(),
        });
    }
    Ok(out)
}

/// For every arm and every factor with ≥ 2 levels among its cells: Kruskal–Wallis and
/// one-way ANOVA of each metric's per-rep values grouped by that factor's level (pooled
/// over the arm's other factors — a marginal test).
pub fn axis_tests(cells: &[CellAnalysis], opts: &AnalysisOptions) -> Vec<AxisTest> {
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
                out.push(AxisTest {
                    arm: arm.to_string(),
                    factor: key.clone(),
                    metric: m,
                    levels: levels.clone(),
                    kruskal_wallis: stats::kruskal_wallis(&refs).into(),
                    anova: stats::anova_oneway(&refs).into(),
                });
            }
        }
    }
    out
}
