//! Pair cells (and workload levels of N agents with `speedup = true`): speedup =
//! sequential wall / concurrent wall per rep (the same agents run back to back are the
//! measured baseline), efficiency = speedup / N, per-agent contention; and the checks that
//! flag physically impossible results.

use super::samples::{collect_streaming, f64_col, str_col};
use super::{AnalysisError, AnalysisOptions, RepStats};
use crate::store::Manifest;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Speedup, efficiency and contention of one pair cell, with per-rep values and CIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairAnalysis {
    /// The pair cell.
    pub cell_id: String,
    pub(crate) arm: String,
    /// Sequential phase wall / concurrent phase wall, per rep.
    pub speedup: RepStats,
    /// Speedup / N.
    pub efficiency: RepStats,
    /// N: agents run together (2 for a pair).
    #[serde(default = "two")]
    pub agents: usize,
    /// Per agent: median concurrent e2e / median sequential e2e, per rep (> 1 = slowed).
    pub contention: BTreeMap<String, RepStats>,
}

fn two() -> usize {
    2
}

/// Pair cells: those with a sequential phase. Reps with a failed call in either phase
/// are left out of speedup (a failed phase's wall time is not comparable).
pub fn pairs(lf: LazyFrame, opts: &AnalysisOptions) -> Result<Vec<PairAnalysis>, AnalysisError> {
    let pair_rows = lf.clone().filter(
        col("warmup")
            .not()
            .and(col("superseded").not())
            .and(col("phase").neq(lit("single"))),
    );
    let walls = collect_streaming(
        pair_rows
            .clone()
            .group_by([col("cell_id"), col("rep"), col("phase")])
            .agg([
                col("arm").first().alias("arm"),
                col("phase_wall_ms").max().alias("wall"),
                col("ok").not().cast(DataType::UInt32).sum().alias("failed"),
                col("agent")
                    .n_unique()
                    .cast(DataType::Float64)
                    .alias("agents"),
            ])
            .sort(["cell_id", "rep", "phase"], SortMultipleOptions::default()),
    )?;
    let e2e = collect_streaming(
        pair_rows
            .filter(col("ok"))
            .group_by([col("cell_id"), col("rep"), col("phase"), col("agent")])
            .agg([col("e2e_ms").median().alias("e2e")]),
    )?;

    type Key = (String, u32);
    let mut wall: BTreeMap<Key, [Option<f64>; 2]> = BTreeMap::new();
    let mut arms: BTreeMap<String, String> = BTreeMap::new();
    let mut agents: BTreeMap<String, usize> = BTreeMap::new();
    let n_agents = f64_col(&walls, "agents")?;
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
        let n = n_agents[i].unwrap_or(2.0) as usize;
        let most = agents.entry(cells[i].clone()).or_insert(n);
        *most = (*most).max(n);
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
        let n = agents.get(&cell).copied().unwrap_or(2).max(1);
        let eff: Vec<f64> = speedups.iter().map(|s| s / n as f64).collect();
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
            agents: n,
            contention: contention
                .into_iter()
                .map(|(a, v)| (a, RepStats::new(v, opts.level)))
                .collect(),
        });
    }
    Ok(out)
}

/// Warnings for pair results no machine can produce: an efficiency above 1 (two agents
/// finishing faster together than either alone would), or a speedup above 1 on an engine
/// that serves one call at a time (the embedded engine). Either means the sequential phase
/// was slowed by something else: a busy machine.
pub fn impossible(pairs: &[PairAnalysis], manifest: Option<&Manifest>) -> Vec<String> {
    let one_slot = manifest.is_some_and(|m| m.backend.kind == "embedded");
    let mut out = Vec::new();
    for p in pairs {
        let Some(s) = p.speedup.summary.value() else {
            continue;
        };
        let n = p.agents.max(1) as f64;
        if s.median > n {
            out.push(format!(
                "pair cell {}: median speedup {:.2} (efficiency {:.2} > 1) is physically \
                 impossible for {} agents; the sequential phase was slowed by something else \
                 (a busy machine?)",
                p.cell_id,
                s.median,
                s.median / n,
                p.agents
            ));
        } else if one_slot && s.median > 1.1 {
            out.push(format!(
                "pair cell {}: median speedup {:.2} on the embedded engine, which serves one \
                 call at a time (≈ 1 expected): the sequential phase was slowed by something \
                 else (a busy machine?)",
                p.cell_id, s.median
            ));
        }
    }
    out
}
