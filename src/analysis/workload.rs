//! Workload levels: for each cell (one configuration at one level: `agents` at once, or an
//! open-loop `rate`), the unit's throughput and latency per rep; for each configuration, the capacity under the `[slo]`;
//! across configurations, the Pareto front of tokens/s per user against total tokens/s.
//!
//! The rep stays the unit: every figure is one value per rep of the cell's load phase
//! (`single`, `concurrent` for N > 1 agents, `open` for a rate), summarised across reps with the same
//! intervals as every other metric. Definitions (the ones vLLM's `bench serve` and
//! `plot_pareto` use):
//! - total tokens/s: output tokens of the unit's calls / the phase's wall time;
//! - tokens/s per user: 1000 / mean TPOT of the unit's calls, TPOT = (e2e − TTFT) /
//!   (output tokens − 1), the per-request decode rate a user watches;
//! - TTFT p50/p95 and the median TPOT ("ITL") over the unit's calls;
//! - goodput: calls that met every `[slo]` limit / the phase's wall time (requests/s);
//! - open loop: each arrival's send-time error (its first call's start − its planned
//!   start), p50 and p99 over the unit's arrivals;
//! - a unit is within the SLO when at least `percentile`% of its calls met every limit; a
//!   configuration's capacity in rep r is the largest level such that it and every lower
//!   level were within the SLO in rep r (levels share rep r's randomized round).

use super::samples::{collect_streaming, f64_col, str_col};
use super::{AnalysisError, AnalysisOptions, CellAnalysis, RepStats};
use crate::spec::SloConfig;
use crate::stats;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One cell's figures: a configuration at one workload level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelPoint {
    /// The cell.
    pub cell_id: String,
    /// Its arm.
    pub arm: String,
    /// The configuration: the arm and every factor but `agents` (`arm: num_ctx=512`).
    pub configuration: String,
    /// Agents run at once (closed loop; the arrivals of an open-loop unit otherwise).
    pub agents: u32,
    /// Open loop: arrivals per second (`None`: closed loop).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Output tokens / phase wall, tok/s, per rep.
    pub total_tps: RepStats,
    /// 1000 / mean TPOT of the unit's calls, tok/s, per rep.
    pub user_tps: RepStats,
    /// Median TTFT of the unit's calls, ms, per rep.
    pub ttft_p50_ms: RepStats,
    /// 95th percentile (type 7) of the unit's TTFTs, ms, per rep.
    pub ttft_p95_ms: RepStats,
    /// End-to-end time of the unit's calls, p50 and p95 (type 7), ms, per rep.
    #[serde(default = "RepStats::empty")]
    pub e2e_p50_ms: RepStats,
    /// See `e2e_p50_ms`.
    #[serde(default = "RepStats::empty")]
    pub e2e_p95_ms: RepStats,
    /// Median TPOT of the unit's calls, ms, per rep.
    pub itl_p50_ms: RepStats,
    /// Calls that met the SLO / phase wall, requests/s, per rep (`None` without `[slo]`).
    pub goodput_rps: Option<RepStats>,
    /// Reps whose unit was within the SLO, of those evaluated.
    pub slo_reps_met: usize,
    /// Reps evaluated against the SLO (units with at least one measured warm call).
    pub slo_reps: usize,
    /// Reps left out of throughput and latency: a call failed or was cold.
    pub reps_left_out: usize,
    /// Open loop: median send-time error of the unit's arrivals, ms, per rep.
    #[serde(default)]
    pub send_lag_p50_ms: Option<RepStats>,
    /// Open loop: 99th percentile (type 7) of the unit's send-time errors, ms, per rep.
    #[serde(default)]
    pub send_lag_p99_ms: Option<RepStats>,
    /// Most requests the server held waiting for a slot during the unit, per rep
    /// (llama-server `/metrics`); `None` where the server reports no queue.
    #[serde(default)]
    pub server_queue_max: Option<RepStats>,
    /// GPU energy per output token, J, per rep (GPU telemetry); `None` without it.
    #[serde(default)]
    pub energy_per_token_j: Option<RepStats>,
    /// Closed loop, N > 1: Jain's fairness index of the agents' own throughputs (each
    /// agent's output tokens / its calls' summed e2e time), per rep: 1 when every agent got
    /// the same service, 1 / N when one got it all. `None` for one agent or open loop.
    #[serde(default)]
    pub fairness: Option<RepStats>,
}

impl LevelPoint {
    /// The level on the x axis of a capacity search: the rate, else the agents.
    pub fn level(&self) -> f64 {
        self.rate.unwrap_or(f64::from(self.agents))
    }

    /// `4 agents` or `2 req/s`.
    pub fn level_text(&self) -> String {
        match self.rate {
            Some(r) => format!("{r} arrivals/s"),
            None if self.agents == 1 => "1 agent".to_string(),
            None => format!("{} agents", self.agents),
        }
    }
}

/// One configuration's capacity under the SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The configuration (see [`LevelPoint::configuration`]).
    pub configuration: String,
    /// Its levels, ascending (agents at once, or arrivals per second).
    pub levels: Vec<f64>,
    /// `agents` or `rate`.
    #[serde(default)]
    pub level_name: String,
    /// The largest level within the SLO (with every lower one), per rep; 0 when even the
    /// lowest level missed it.
    pub per_rep: RepStats,
}

/// Everything the workload levels of a run show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// One per cell, by configuration then level.
    pub levels: Vec<LevelPoint>,
    /// One per configuration with an `[slo]`.
    pub capacity: Vec<Capacity>,
    /// Cells on the Pareto front of (median tokens/s per user, median total tokens/s).
    pub pareto: Vec<String>,
    /// With GPU telemetry: cells on the front of (median tokens/s per user, higher better;
    /// median energy per token, lower better).
    #[serde(default)]
    pub pareto_energy: Vec<String>,
    /// The SLO in words, when the experiment declares one.
    pub slo: Option<String>,
}

impl Workload {
    /// True when the run has something to show: more than one level, or an SLO.
    pub fn is_shown(&self) -> bool {
        self.slo.is_some() || self.levels.iter().any(|l| l.agents > 1 || l.rate.is_some())
    }
}

/// One measured call of a load phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Call {
    pub ok: bool,
    pub cold: bool,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub output_tokens: Option<f64>,
    /// Open loop, first call of an arrival: its send-time error, ms.
    pub start_lag_ms: Option<f64>,
    /// The call's share of the GPUs' energy (telemetry), J.
    pub energy_j: Option<f64>,
    /// Which agent of the unit made it (1..N; 0 for a single agent or a pair member).
    pub agent: u16,
}

impl Call {
    /// (e2e − TTFT) / (output tokens − 1): `None` under two tokens.
    pub fn tpot_ms(&self) -> Option<f64> {
        let (n, e2e, ttft) = (self.output_tokens?, self.e2e_ms?, self.ttft_ms?);
        (n >= 2.0 && e2e >= ttft).then(|| (e2e - ttft) / (n - 1.0))
    }
}

/// One rep of a cell's load phase: its calls and wall time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Unit {
    pub wall_ms: f64,
    pub calls: Vec<Call>,
    /// The server's most deferred requests during the unit, when it reports a queue.
    pub queue_max: Option<f64>,
}

/// The figures of one unit (a rep of a cell).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct UnitFigures {
    /// `None` when a call failed or was cold (throughput and latency left out).
    pub total_tps: Option<f64>,
    pub user_tps: Option<f64>,
    pub ttft_p50: Option<f64>,
    pub ttft_p95: Option<f64>,
    pub e2e_p50: Option<f64>,
    pub e2e_p95: Option<f64>,
    pub itl_p50: Option<f64>,
    pub goodput: Option<f64>,
    /// `Some(within)` when the unit had a warm call to judge.
    pub within_slo: Option<bool>,
    pub send_lag_p50: Option<f64>,
    pub send_lag_p99: Option<f64>,
    /// GPU energy of the unit's calls / their output tokens, J (every call measured).
    pub energy_per_token: Option<f64>,
    /// Jain's index over the numbered agents' throughputs (two or more agents).
    pub fairness: Option<f64>,
}

impl Unit {
    pub(crate) fn figures(&self, slo: Option<&SloConfig>) -> UnitFigures {
        let mut f = UnitFigures::default();
        let wall_s = self.wall_ms / 1000.0;
        let lags: Vec<f64> = self.calls.iter().filter_map(|c| c.start_lag_ms).collect();
        f.send_lag_p50 = stats::percentile(&lags, 0.5).ok();
        f.send_lag_p99 = stats::percentile(&lags, 0.99).ok();
        if let Some(slo) = slo {
            let judged: Vec<&Call> = self.calls.iter().filter(|c| !c.cold).collect();
            let met = judged
                .iter()
                .filter(|c| slo.met_by(c.ok, c.ttft_ms, c.tpot_ms(), c.e2e_ms))
                .count();
            if !judged.is_empty() {
                f.within_slo = Some(met as f64 * 100.0 >= slo.percentile * judged.len() as f64);
            }
            if wall_s > 0.0 {
                f.goodput = Some(met as f64 / wall_s);
            }
        }
        if self.calls.is_empty() || self.calls.iter().any(|c| !c.ok || c.cold) || wall_s <= 0.0 {
            return f;
        }
        let tokens: f64 = self.calls.iter().filter_map(|c| c.output_tokens).sum();
        f.total_tps = Some(tokens / wall_s);
        let tpots: Vec<f64> = self.calls.iter().filter_map(Call::tpot_ms).collect();
        if !tpots.is_empty() {
            let mean = tpots.iter().sum::<f64>() / tpots.len() as f64;
            f.user_tps = (mean > 0.0).then(|| 1000.0 / mean);
            f.itl_p50 = stats::percentile(&tpots, 0.5).ok();
        }
        // p50 and p95 over the calls that have the value.
        let p50_p95 = |value: fn(&Call) -> Option<f64>| {
            let xs: Vec<f64> = self.calls.iter().filter_map(value).collect();
            (
                stats::percentile(&xs, 0.5).ok(),
                stats::percentile(&xs, 0.95).ok(),
            )
        };
        (f.ttft_p50, f.ttft_p95) = p50_p95(|c| c.ttft_ms);
        (f.e2e_p50, f.e2e_p95) = p50_p95(|c| c.e2e_ms);
        // Energy per token only when every call has its share (a call without telemetry
        // would make the ratio too small).
        let energy: Option<f64> = self.calls.iter().map(|c| c.energy_j).sum();
        f.energy_per_token = energy.filter(|_| tokens > 0.0).map(|j| j / tokens);
        f.fairness = self.fairness();
        f
    }

    /// Jain's index of the numbered agents' throughputs, each agent's output tokens over
    /// its calls' summed e2e time (the service it got while it waited for it).
    fn fairness(&self) -> Option<f64> {
        let mut per_agent: BTreeMap<u16, (f64, f64)> = BTreeMap::new();
        for c in self.calls.iter().filter(|c| c.agent > 0) {
            let e = per_agent.entry(c.agent).or_default();
            e.0 += c.output_tokens?;
            e.1 += c.e2e_ms?;
        }
        let rates: Vec<f64> = per_agent
            .values()
            .map(|(tokens, ms)| (*ms > 0.0).then(|| tokens / ms * 1000.0))
            .collect::<Option<_>>()?;
        (rates.len() >= 2).then(|| jain_index(&rates)).flatten()
    }
}

/// Jain's fairness index (Jain, Chiu & Hawe 1984, DEC-TR-301, eq. 1):
/// (Σx)² / (n · Σx²), in [1/n, 1]; `None` for no values or all zero.
pub fn jain_index(xs: &[f64]) -> Option<f64> {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    (!xs.is_empty() && sq > 0.0).then(|| sum * sum / (xs.len() as f64 * sq))
}

/// The records frame with `slo_good`: 1 for a call that met every `[slo]` limit, 0 for one
/// that did not (a failed call included), null without an SLO. What the `goodput_rps` metric
/// counts, in the analysis and in the gate.
pub fn with_slo(lf: LazyFrame, slo: Option<&SloConfig>) -> LazyFrame {
    let Some(slo) = slo else {
        return lf.with_column(lit(NULL).cast(DataType::Float64).alias("slo_good"));
    };
    let mut good = col("ok");
    if let Some(l) = slo.ttft_ms {
        good = good.and(col("ttft_ms").lt_eq(lit(l)).fill_null(lit(false)));
    }
    if let Some(l) = slo.e2e_ms {
        good = good.and(col("e2e_ms").lt_eq(lit(l)).fill_null(lit(false)));
    }
    if let Some(l) = slo.itl_ms {
        // TPOT = (e2e − TTFT) / (n − 1); a call of fewer than two tokens has none and meets it.
        let n = col("output_tokens").cast(DataType::Float64);
        let tpot = (col("e2e_ms") - col("ttft_ms")) / (n.clone() - lit(1.0));
        good = good.and(
            when(n.gt_eq(lit(2.0)))
                .then(tpot.lt_eq(lit(l)))
                .otherwise(lit(true))
                .fill_null(lit(true)),
        );
    }
    lf.with_column(
        when(good.fill_null(lit(false)))
            .then(lit(1.0))
            .otherwise(lit(0.0))
            .alias("slo_good"),
    )
}

/// The load phase's measured calls, per (cell, rep).
fn units(lf: LazyFrame) -> Result<BTreeMap<(String, u32), Unit>, AnalysisError> {
    let rows = collect_streaming(
        lf.filter(
            col("warmup").not().and(col("superseded").not()).and(
                col("phase")
                    .eq(lit("single"))
                    .or(col("phase").eq(lit("concurrent")))
                    .or(col("phase").eq(lit("open"))),
            ),
        )
        .select([
            col("cell_id"),
            col("rep").cast(DataType::Float64),
            col("ok").cast(DataType::Float64),
            col("cold").cast(DataType::Float64),
            col("ttft_ms"),
            col("e2e_ms"),
            col("output_tokens").cast(DataType::Float64),
            col("phase_wall_ms"),
            col("queue_deferred_max"),
            col("gpu_energy_j"),
            col("agent"),
            // One send-time error per arrival: its first (analysis) call carries it.
            when(col("stage").eq(lit("analysis")))
                .then(col("start_lag_ms"))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("start_lag_ms"),
        ]),
    )?;
    let cells = str_col(&rows, "cell_id")?;
    let queue = f64_col(&rows, "queue_deferred_max")?;
    let energy = f64_col(&rows, "gpu_energy_j")?;
    let agent = str_col(&rows, "agent")?;
    let [rep, ok, cold, ttft, e2e, tokens, wall, lag] = [
        "rep",
        "ok",
        "cold",
        "ttft_ms",
        "e2e_ms",
        "output_tokens",
        "phase_wall_ms",
        "start_lag_ms",
    ]
    .map(|c| f64_col(&rows, c));
    let (rep, ok, cold, ttft, e2e, tokens, wall, lag) =
        (rep?, ok?, cold?, ttft?, e2e?, tokens?, wall?, lag?);
    let mut out: BTreeMap<(String, u32), Unit> = BTreeMap::new();
    for i in 0..cells.len() {
        let u = out
            .entry((cells[i].clone(), rep[i].unwrap_or(0.0) as u32))
            .or_default();
        u.wall_ms = u.wall_ms.max(wall[i].unwrap_or(0.0));
        if let Some(q) = queue[i] {
            u.queue_max = Some(u.queue_max.map_or(q, |m: f64| m.max(q)));
        }
        u.calls.push(Call {
            ok: ok[i] == Some(1.0),
            cold: cold[i] == Some(1.0),
            ttft_ms: ttft[i],
            e2e_ms: e2e[i],
            output_tokens: tokens[i],
            start_lag_ms: lag[i],
            energy_j: energy[i],
            agent: agent[i].parse().unwrap_or(0),
        });
    }
    Ok(out)
}

/// The factors (other than the levels) whose value differs between the run's cells: the
/// ones a configuration's name needs (the rest is the same everywhere).
fn varying_factors(cells: &[CellAnalysis]) -> std::collections::BTreeSet<String> {
    let mut values: BTreeMap<&str, std::collections::BTreeSet<Option<&str>>> = BTreeMap::new();
    let keys: std::collections::BTreeSet<&str> = cells
        .iter()
        .flat_map(|c| c.factors.keys().map(String::as_str))
        .collect();
    for c in cells {
        for k in &keys {
            values
                .entry(k)
                .or_default()
                .insert(c.factors.get(*k).map(String::as_str));
        }
    }
    values
        .into_iter()
        .filter(|(k, v)| v.len() > 1 && !crate::spec::WORKLOAD_OPTION_NAMES.contains(k))
        .map(|(k, _)| k.to_string())
        .collect()
}

/// The configuration a cell belongs to (its arm and the factors that vary over the run,
/// the levels aside), its agents at once and its rate.
fn configuration(
    cell: &CellAnalysis,
    varying: &std::collections::BTreeSet<String>,
) -> (String, u32, Option<f64>) {
    let agents = cell
        .factors
        .get("agents")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    let rate = cell.factors.get("rate").and_then(|v| v.parse::<f64>().ok());
    let rest: Vec<String> = cell
        .factors
        .iter()
        .filter(|(k, _)| varying.contains(k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let label = if rest.is_empty() {
        cell.arm.clone()
    } else {
        format!("{}: {}", cell.arm, rest.join(", "))
    };
    (label, agents, rate)
}

/// The workload figures of a run's cells.
pub fn workload(
    lf: LazyFrame,
    cells: &[CellAnalysis],
    slo: Option<&SloConfig>,
    opts: &AnalysisOptions,
) -> Result<Workload, AnalysisError> {
    let units = units(lf)?;
    let mut levels = Vec::new();
    // configuration → (level, rep → within the SLO)
    let mut within: BTreeMap<String, Vec<LevelReps>> = BTreeMap::new();
    let mut level_names: BTreeMap<String, &str> = BTreeMap::new();
    let varying = varying_factors(cells);
    for cell in cells {
        let (conf, agents, rate) = configuration(cell, &varying);
        let figures: Vec<(u32, UnitFigures)> = units
            .range((cell.cell_id.clone(), 0)..=(cell.cell_id.clone(), u32::MAX))
            .map(|((_, rep), u)| (*rep, u.figures(slo)))
            .collect();
        let col = |pick: fn(&UnitFigures) -> Option<f64>| {
            RepStats::new(
                figures.iter().filter_map(|(_, f)| pick(f)).collect(),
                opts.level,
            )
        };
        let judged: Vec<(u32, bool)> = figures
            .iter()
            .filter_map(|(r, f)| f.within_slo.map(|w| (*r, w)))
            .collect();
        let level = rate.unwrap_or(f64::from(agents));
        let by_level = within.entry(conf.clone()).or_default();
        match by_level.iter_mut().find(|(l, _)| *l == level) {
            Some((_, by_rep)) => by_rep.extend(judged.iter().copied()),
            None => by_level.push((level, judged.iter().copied().collect())),
        }
        level_names.insert(conf.clone(), if rate.is_some() { "rate" } else { "agents" });
        let open = rate.is_some();
        levels.push(LevelPoint {
            cell_id: cell.cell_id.clone(),
            arm: cell.arm.clone(),
            configuration: conf,
            agents: if open {
                arrivals_of(&units, &cell.cell_id)
            } else {
                agents
            },
            rate,
            total_tps: col(|f| f.total_tps),
            user_tps: col(|f| f.user_tps),
            ttft_p50_ms: col(|f| f.ttft_p50),
            ttft_p95_ms: col(|f| f.ttft_p95),
            e2e_p50_ms: col(|f| f.e2e_p50),
            e2e_p95_ms: col(|f| f.e2e_p95),
            itl_p50_ms: col(|f| f.itl_p50),
            goodput_rps: slo.map(|_| col(|f| f.goodput)),
            slo_reps_met: judged.iter().filter(|(_, w)| *w).count(),
            slo_reps: judged.len(),
            reps_left_out: figures
                .iter()
                .filter(|(_, f)| f.total_tps.is_none())
                .count(),
            send_lag_p50_ms: open.then(|| col(|f| f.send_lag_p50)),
            send_lag_p99_ms: open.then(|| col(|f| f.send_lag_p99)),
            server_queue_max: {
                let q: Vec<f64> = units
                    .range((cell.cell_id.clone(), 0)..=(cell.cell_id.clone(), u32::MAX))
                    .filter_map(|(_, u)| u.queue_max)
                    .collect();
                (!q.is_empty()).then(|| RepStats::new(q, opts.level))
            },
            energy_per_token_j: {
                let e: Vec<f64> = figures
                    .iter()
                    .filter_map(|(_, f)| f.energy_per_token)
                    .collect();
                (!e.is_empty()).then(|| RepStats::new(e, opts.level))
            },
            fairness: {
                let j: Vec<f64> = figures.iter().filter_map(|(_, f)| f.fairness).collect();
                (!open && !j.is_empty()).then(|| RepStats::new(j, opts.level))
            },
        });
    }
    levels.sort_by(|a, b| {
        a.configuration
            .cmp(&b.configuration)
            .then(a.level().total_cmp(&b.level()))
    });
    let capacity = match slo {
        Some(_) => within
            .into_iter()
            .map(|(configuration, mut by_level)| {
                by_level.sort_by(|a, b| a.0.total_cmp(&b.0));
                Capacity {
                    levels: by_level.iter().map(|(l, _)| *l).collect(),
                    level_name: level_names
                        .get(&configuration)
                        .copied()
                        .unwrap_or("agents")
                        .to_string(),
                    per_rep: RepStats::new(capacity_per_rep(&by_level), opts.level),
                    configuration,
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let pareto = pareto_front(&levels, |l| Some(&l.total_tps), true);
    let pareto_energy = pareto_front(&levels, |l| l.energy_per_token_j.as_ref(), false);
    Ok(Workload {
        levels,
        capacity,
        pareto,
        pareto_energy,
        slo: slo.map(SloConfig::describe),
    })
}

/// One level of a configuration and, per rep, whether its unit was within the SLO.
type LevelReps = (f64, BTreeMap<u32, bool>);

/// Arrivals of an open-loop cell's units: the most arrivals (first calls with a send-time
/// error) of one unit.
fn arrivals_of(units: &BTreeMap<(String, u32), Unit>, cell: &str) -> u32 {
    units
        .range((cell.to_string(), 0)..=(cell.to_string(), u32::MAX))
        .map(|(_, u)| u.calls.iter().filter(|c| c.start_lag_ms.is_some()).count() as u32)
        .max()
        .unwrap_or(0)
}

/// Per rep, the largest level within the SLO with every lower level within it too (0 when
/// the lowest missed). A rep missing at some level ends its climb there. `by_level` is
/// sorted by level, ascending.
pub(crate) fn capacity_per_rep(by_level: &[LevelReps]) -> Vec<f64> {
    let reps: std::collections::BTreeSet<u32> = by_level
        .iter()
        .flat_map(|(_, r)| r.keys().copied())
        .collect();
    reps.into_iter()
        .map(|rep| {
            let mut cap = 0.0;
            for (level, by_rep) in by_level {
                match by_rep.get(&rep) {
                    Some(true) => cap = *level,
                    _ => break,
                }
            }
            cap
        })
        .collect()
}

/// Cells no other cell beats on both medians: tokens/s per user (higher is better) and
/// `other` (total tokens/s, `higher_better`; energy per token, not). The front a
/// deployment chooses its operating point on.
pub(crate) fn pareto_front(
    levels: &[LevelPoint],
    other: impl Fn(&LevelPoint) -> Option<&RepStats>,
    higher_better: bool,
) -> Vec<String> {
    // A lower-better axis is negated: then both are higher-better.
    let sign = if higher_better { 1.0 } else { -1.0 };
    let point = |l: &LevelPoint| {
        let m = |r: &RepStats| r.summary.value().map(|s| s.median);
        Some((m(&l.user_tps)?, sign * m(other(l)?)?))
    };
    let pts: Vec<(&str, (f64, f64))> = levels
        .iter()
        .filter_map(|l| point(l).map(|p| (l.cell_id.as_str(), p)))
        .collect();
    pts.iter()
        .filter(|(_, (u, t))| {
            !pts.iter()
                .any(|(_, (u2, t2))| u2 >= u && t2 >= t && (u2 > u || t2 > t))
        })
        .map(|(id, _)| id.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ttft: f64, e2e: f64, tokens: f64) -> Call {
        Call {
            ok: true,
            cold: false,
            ttft_ms: Some(ttft),
            e2e_ms: Some(e2e),
            output_tokens: Some(tokens),
            start_lag_ms: None,
            energy_j: None,
            agent: 0,
        }
    }

    /// Jain's index against values worked from its definition (Jain, Chiu & Hawe 1984):
    /// equal shares give 1, one agent with everything 1/n, (1, 2, 3) gives 36 / 42.
    #[test]
    fn jains_index_matches_its_definition() {
        assert_eq!(jain_index(&[5.0, 5.0, 5.0, 5.0]), Some(1.0));
        assert_eq!(jain_index(&[7.0, 0.0, 0.0, 0.0]), Some(0.25));
        assert_eq!(jain_index(&[1.0, 2.0, 3.0]), Some(36.0 / 42.0));
        assert_eq!(jain_index(&[]), None);
        assert_eq!(jain_index(&[0.0, 0.0]), None);
    }

    /// Two agents, two calls each: agent 1 gets 20 tokens in 1 s, agent 2 20 tokens in 2 s
    /// (20 and 10 tok/s): (30)² / (2 · 500) = 0.9. A single agent has no fairness.
    #[test]
    fn fairness_is_jain_over_each_agents_own_throughput() {
        let by = |agent: u16, e2e: f64| Call {
            agent,
            ..call(100.0, e2e, 10.0)
        };
        let u = Unit {
            wall_ms: 2000.0,
            calls: vec![by(1, 500.0), by(1, 500.0), by(2, 1000.0), by(2, 1000.0)],
            queue_max: None,
        };
        assert_eq!(u.figures(None).fairness, Some(0.9));
        let one = Unit {
            calls: vec![by(1, 500.0), by(1, 700.0)],
            ..u
        };
        assert_eq!(one.figures(None).fairness, None);
    }

    fn slo(ttft: f64) -> SloConfig {
        SloConfig {
            ttft_ms: Some(ttft),
            itl_ms: None,
            e2e_ms: None,
            percentile: 90.0,
        }
    }

    #[test]
    fn unit_figures_follow_their_definitions() {
        // Two calls in a 2 s phase: 11 and 21 tokens; TPOT (1000-100)/10 = 90 ms and
        // (1100-300)/20 = 40 ms.
        let u = Unit {
            wall_ms: 2000.0,
            calls: vec![call(100.0, 1000.0, 11.0), call(300.0, 1100.0, 21.0)],
            queue_max: None,
        };
        let f = u.figures(Some(&slo(200.0)));
        assert_eq!(f.total_tps, Some(16.0));
        assert_eq!(f.user_tps, Some(1000.0 / 65.0));
        assert_eq!(f.ttft_p50, Some(200.0));
        assert_eq!(f.ttft_p95, Some(100.0 + 0.95 * 200.0));
        assert_eq!(f.e2e_p50, Some(1050.0));
        assert_eq!(f.e2e_p95, Some(1000.0 + 0.95 * 100.0));
        assert_eq!(f.itl_p50, Some(65.0));
        // One of two calls met TTFT ≤ 200: 0.5 requests/s of goodput, 50% < 90%.
        assert_eq!(f.goodput, Some(0.5));
        assert_eq!(f.within_slo, Some(false));
        assert_eq!(u.figures(Some(&slo(300.0))).within_slo, Some(true));
    }

    #[test]
    fn energy_per_token_needs_every_calls_share() {
        let with = |j: Option<f64>| Call {
            energy_j: j,
            ..call(100.0, 1000.0, 16.0)
        };
        let unit = |calls| Unit {
            wall_ms: 1000.0,
            calls,
            queue_max: None,
        };
        let f = unit(vec![with(Some(3.0)), with(Some(5.0))]).figures(None);
        assert_eq!(f.energy_per_token, Some(8.0 / 32.0));
        let f = unit(vec![with(Some(3.0)), with(None)]).figures(None);
        assert_eq!(f.energy_per_token, None);
    }

    #[test]
    fn a_failed_call_leaves_throughput_out_but_counts_against_the_slo() {
        let mut bad = call(100.0, 1000.0, 11.0);
        bad.ok = false;
        let u = Unit {
            wall_ms: 1000.0,
            calls: vec![call(100.0, 1000.0, 11.0), bad],
            queue_max: None,
        };
        let f = u.figures(Some(&slo(500.0)));
        assert_eq!(f.total_tps, None);
        assert_eq!(f.goodput, Some(1.0));
        assert_eq!(f.within_slo, Some(false));
    }

    #[test]
    fn capacity_climbs_until_the_first_miss_in_each_rep() {
        let mut by_level: Vec<(f64, BTreeMap<u32, bool>)> = Vec::new();
        // rep 0: 1 ok, 2 ok, 4 miss, 8 ok (a lucky level above a miss does not count) → 2
        // rep 1: 1 ok, 2 ok, 4 ok, 8 miss → 4; rep 2: 1 miss → 0.
        for (level, reps) in [
            (1.0, [true, true, false]),
            (2.0, [true, true, true]),
            (4.0, [false, true, true]),
            (8.0, [true, false, true]),
        ] {
            by_level.push((
                level,
                reps.iter()
                    .enumerate()
                    .map(|(r, w)| (r as u32, *w))
                    .collect(),
            ));
        }
        assert_eq!(capacity_per_rep(&by_level), vec![2.0, 4.0, 0.0]);
    }

    #[test]
    fn the_pareto_front_keeps_only_undominated_points() {
        let lp = |id: &str, user: f64, total: f64| LevelPoint {
            cell_id: id.into(),
            arm: "a".into(),
            configuration: "a".into(),
            agents: 1,
            rate: None,
            send_lag_p50_ms: None,
            send_lag_p99_ms: None,
            server_queue_max: None,
            // Energy per token at a constant 200 W: 200 / total tok/s, lower is better.
            energy_per_token_j: Some(RepStats::new(vec![200.0 / total], 0.95)),
            fairness: None,
            total_tps: RepStats::new(vec![total], 0.95),
            user_tps: RepStats::new(vec![user], 0.95),
            ttft_p50_ms: RepStats::empty(),
            ttft_p95_ms: RepStats::empty(),
            e2e_p50_ms: RepStats::empty(),
            e2e_p95_ms: RepStats::empty(),
            itl_p50_ms: RepStats::empty(),
            goodput_rps: None,
            slo_reps_met: 0,
            slo_reps: 0,
            reps_left_out: 0,
        };
        let levels = [
            lp("n1", 50.0, 50.0),
            lp("n2", 40.0, 80.0),
            lp("n4", 25.0, 100.0),
            lp("n8", 12.0, 96.0),
            lp("other", 45.0, 45.0),
        ];
        assert_eq!(
            pareto_front(&levels, |l| Some(&l.total_tps), true),
            ["n1", "n2", "n4"]
        );
        // At constant power, less energy per token is more total tok/s: the same front.
        assert_eq!(
            pareto_front(&levels, |l| l.energy_per_token_j.as_ref(), false),
            ["n1", "n2", "n4"]
        );
        // With energy taken as higher-better, the front flips to the least efficient.
        assert_eq!(
            pareto_front(&levels, |l| l.energy_per_token_j.as_ref(), true),
            ["n1", "other"]
        );
    }
}
