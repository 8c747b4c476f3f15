//! From records to samples: the per-rep values (and, for pooled tails, the per-rep clusters
//! of call values) of every metric of every cell, with the counts of what each rule
//! excluded. Both `sweep analyze` and `sweep compare` build their samples here, so a rep
//! value means the same thing in a table and in a verdict.
//!
//! Polars filters and projects; the statistics run on contiguous slices. One pass assigns
//! every row its (group, rep); then, one metric per task, the values of measured calls are
//! scattered group after group into one buffer, a rep is complete when every one of its
//! calls contributed (see [`crate::metrics`]), and each complete rep's value is selected in
//! place. Measured on the 10M-record bench: polars' grouped median/quantile gathered the
//! values once per statistic; the per-metric buffers avoid that and the rechunk of the
//! collected frame.

use super::AnalysisError;
use crate::metrics::{EnergyPer, Estimator, Metric, RateClock, WallCount};
use crate::record::ColdReason;
use crate::stats::engine::Sample;
use crate::stats::select_quantiles;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Probabilities of the reported request-level percentiles (type 7 = polars `Linear`).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p5", 0.05),
    ("p25", 0.25),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
];

/// Names of the request-level statistics, in the order of [`MetricSample::request`].
pub const REQUEST_STATS: [&str; 11] = [
    "n", "mean", "sd", "median", "p5", "p25", "p75", "p95", "p99", "min", "max",
];

/// Where token counts can come from (see `Record::tokens_source`).
const TOKEN_SOURCES: [&str; 3] = ["usage", "tokenize", "chunks"];

/// What a sample is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// One group per cell (analysis). A pair cell is its concurrent phase: the sequential
    /// phase exists only to measure speedup and is left out of the cell's metrics.
    Cells,
    /// One group per cell and phase (the gate): a pair's concurrent and sequential phases
    /// are different workloads, compared separately as `<cell> [concurrent]` and
    /// `<cell> [sequential]`.
    CellPhases,
}

/// How many calls a group had and how many each rule excluded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Every recorded call, warm-up and superseded ones included.
    pub calls: u32,
    /// Warm-up calls (always excluded).
    pub warmup: u32,
    /// Successful non-warm-up calls flagged cold (a model load in the timing), excluded.
    pub cold: u32,
    /// Cold calls by reason (`reload`, `unexpected_reload`, `load_ms`).
    #[serde(default)]
    pub cold_by_reason: BTreeMap<String, u32>,
    /// Non-warm-up calls of the current attempt that failed, excluded.
    pub failed: u32,
    /// Calls of attempts replaced by `--retry-failed` (not counted anywhere else).
    #[serde(default)]
    pub superseded: u32,
    /// Calls that count (not warm-up, succeeded, not cold, current attempt).
    pub measured: u32,
    /// Reps with at least one call (warm-up excluded).
    pub reps: u32,
    /// Measured calls by where their token counts came from (`usage`, `tokenize`, `chunks`).
    #[serde(default)]
    pub tokens_by_source: BTreeMap<String, u32>,
    /// Live calls (not warm-up, current attempt) that missed the `[slo]`, failed ones
    /// included; 0 without an SLO.
    #[serde(default)]
    pub slo_missed: u32,
}

impl Counts {
    /// "2 warm-up, 3 cold (reload 3), 1 failed", or "none".
    pub fn exclusions(&self) -> String {
        let mut parts = Vec::new();
        if self.warmup > 0 {
            parts.push(format!("{} warm-up", self.warmup));
        }
        if self.cold > 0 {
            let why: Vec<String> = self
                .cold_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            parts.push(format!("{} cold ({})", self.cold, why.join(", ")));
        }
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        if self.superseded > 0 {
            parts.push(format!("{} superseded by retries", self.superseded));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    fn add(&mut self, o: &Counts) {
        self.calls += o.calls;
        self.warmup += o.warmup;
        self.cold += o.cold;
        for (k, v) in &o.cold_by_reason {
            *self.cold_by_reason.entry(k.clone()).or_default() += v;
        }
        self.failed += o.failed;
        self.superseded += o.superseded;
        self.measured += o.measured;
        self.reps = self.reps.max(o.reps);
        self.slo_missed += o.slo_missed;
        for (k, v) in &o.tokens_by_source {
            *self.tokens_by_source.entry(k.clone()).or_default() += v;
        }
    }
}

/// One metric of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub(crate) metric: Metric,
    /// Rep metrics: one value per complete rep, in rep order (empty for pooled metrics).
    pub reps: Vec<f64>,
    /// The rep index of each value of `reps` (or of each cluster).
    pub rep_ids: Vec<u32>,
    /// Pooled metrics: the calls' values of each complete rep (empty otherwise).
    pub clusters: Vec<Vec<f64>>,
    /// Reps left out of this metric because a call was excluded or lacked the metric.
    pub incomplete_reps: u32,
    /// Request-level statistics over the calls of complete reps, in [`REQUEST_STATS`] order.
    pub request: Vec<Option<f64>>,
}

impl MetricSample {
    /// The sample the statistics engine takes.
    pub fn sample(&self) -> Sample<'_> {
        if self.metric.is_pooled() {
            Sample::Clusters(&self.clusters)
        } else {
            Sample::Reps(&self.reps)
        }
    }

    /// Complete reps.
    pub fn n(&self) -> usize {
        self.sample().reps()
    }
}

/// One group (a cell, or a cell's phase) with every requested metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSample {
    /// The cell id, or `<cell> [<phase>]` for a pair phase under [`Grouping::CellPhases`].
    pub key: String,
    pub(crate) cell_id: String,
    pub(crate) arm: String,
    /// Position of the group's first call in the run order.
    pub first_order: u64,
    /// The group's calls and how many each exclusion rule removed.
    pub counts: Counts,
    pub(crate) metrics: Vec<MetricSample>,
}

impl GroupSample {
    /// This group's sample of metric `m`, when `m` was requested.
    pub fn metric(&self, m: Metric) -> Option<&MetricSample> {
        self.metrics.iter().find(|x| x.metric == m)
    }
}

/// Every group of a run, in run order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// One entry per group key, in run order.
    pub groups: Vec<GroupSample>,
}

impl Samples {
    /// The group with key `key` (a cell id, or `<cell> [<phase>]`).
    pub fn group(&self, key: &str) -> Option<&GroupSample> {
        self.groups.iter().find(|g| g.key == key)
    }

    /// Groups that ran (have non-warm-up calls) but have no measured call left.
    pub fn empty_groups(&self) -> Vec<&GroupSample> {
        self.groups
            .iter()
            .filter(|g| g.counts.calls > g.counts.warmup && g.counts.measured == 0)
            .collect()
    }

    /// Counts over every group (reps summed).
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for g in &self.groups {
            let reps = t.reps + g.counts.reps;
            t.add(&g.counts);
            t.reps = reps;
        }
        t
    }
}

/// A call counts when it is not warm-up, succeeded, is not cold and is the current attempt.
pub fn measured() -> Expr {
    col("warmup")
        .not()
        .and(col("ok"))
        .and(col("cold").not())
        .and(col("superseded").not())
}

/// Runs a query on polars' streaming engine (lower peak memory: columns only the filter
/// needs are never held whole).
pub(crate) fn collect_streaming(lf: LazyFrame) -> Result<DataFrame, AnalysisError> {
    Ok(lf.collect_with_engine(Engine::Streaming)?.unwrap_single())
}

fn count_true(e: Expr) -> Expr {
    e.cast(DataType::UInt32).sum()
}

/// Older logs lack some columns: add them with their defaults so one query fits all.
pub(crate) fn with_defaults(lf: LazyFrame) -> Result<LazyFrame, AnalysisError> {
    let mut lf = lf;
    let schema = lf.collect_schema()?;
    let mut add = Vec::new();
    if !schema.contains("superseded") {
        add.push(lit(false).alias("superseded"));
    }
    if !schema.contains("cold_reason") {
        add.push(lit(NULL).cast(DataType::String).alias("cold_reason"));
    }
    if !schema.contains("tokens_source") {
        add.push(lit(NULL).cast(DataType::String).alias("tokens_source"));
    }
    for name in [
        "gpu_energy_j",
        "start_lag_ms",
        "slo_good",
        "queue_deferred_max",
    ] {
        if !schema.contains(name) {
            add.push(lit(NULL).cast(DataType::Float64).alias(name));
        }
    }
    Ok(if add.is_empty() {
        lf
    } else {
        lf.with_columns(add)
    })
}

/// Builds the samples of `metrics` from a records frame.
pub fn samples(
    lf: LazyFrame,
    metrics: &[Metric],
    grouping: Grouping,
) -> Result<Samples, AnalysisError> {
    let lf = with_defaults(lf)?;
    let counts = group_counts(lf.clone(), grouping)?;
    let mut base = lf.filter(col("warmup").not().and(col("superseded").not()));
    if grouping == Grouping::Cells {
        base = base.filter(col("phase").neq(lit("sequential")));
    }
    let mut columns: Vec<&str> = metrics
        .iter()
        .flat_map(|m| m.columns().iter().copied())
        .collect();
    columns.sort_unstable();
    columns.dedup();
    let rows = collect_streaming(
        base.select(
            [
                col("cell_id"),
                col("phase"),
                col("rep").cast(DataType::UInt32),
                col("ok").and(col("cold").not()).alias("counts"),
            ]
            .into_iter()
            .chain(columns.iter().map(|c| col(*c).cast(DataType::Float64)))
            .collect::<Vec<_>>(),
        ),
    )?;
    let groups = RepGroups::of(
        rows.column("cell_id")?.str()?,
        rows.column("phase")?.str()?,
        rows.column("rep")?.u32()?,
        grouping,
    );
    let counts_col: Vec<bool> = rows
        .column("counts")?
        .bool()?
        .iter()
        .map(|b| b.unwrap_or(false))
        .collect();
    let mut cols: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for c in &columns {
        cols.insert(c, finite_col(rows.column(c)?.f64()?));
    }

    use rayon::prelude::*;
    let per_metric: Vec<Vec<KeyResult>> = metrics
        .par_iter()
        .map(|&m| metric_by_key(&groups, &counts_col, &cols, m))
        .collect();

    let mut out = Vec::with_capacity(groups.keys.len());
    for (k, key) in groups.keys.iter().enumerate() {
        let Some(c) = counts.get(key.as_str()) else {
            continue;
        };
        let metrics_out = metrics
            .iter()
            .zip(&per_metric)
            .map(|(&m, by_key)| {
                let (reps, clusters, incomplete, request) = by_key[k].clone();
                MetricSample {
                    metric: m,
                    rep_ids: if m.is_pooled() {
                        clusters.iter().map(|(r, _)| *r).collect()
                    } else {
                        reps.iter().map(|(r, _)| *r).collect()
                    },
                    reps: reps.into_iter().map(|(_, v)| v).collect(),
                    clusters: clusters.into_iter().map(|(_, v)| v).collect(),
                    incomplete_reps: incomplete,
                    request,
                }
            })
            .collect();
        out.push(GroupSample {
            key: key.clone(),
            cell_id: c.cell_id.clone(),
            arm: c.arm.clone(),
            first_order: c.first_order,
            counts: c.counts.clone(),
            metrics: metrics_out,
        });
    }
    // (A group with warm-up calls only, such as reload probes, has no row: nothing of it is
    // measured or compared; its calls are counted in the group it precedes.)
    out.sort_by(|a, b| (a.first_order, &a.key).cmp(&(b.first_order, &b.key)));
    Ok(Samples { groups: out })
}

/// The counts of one group, from the polars query.
struct GroupCounts {
    cell_id: String,
    arm: String,
    first_order: u64,
    counts: Counts,
}

fn group_key(cell: &str, phase: &str, grouping: Grouping) -> String {
    match grouping {
        Grouping::CellPhases if phase != "single" => format!("{cell} [{phase}]"),
        _ => cell.to_string(),
    }
}

/// Per (cell, phase), how many calls each rule excluded; folded into the grouping's keys.
fn group_counts(
    lf: LazyFrame,
    grouping: Grouping,
) -> Result<BTreeMap<String, GroupCounts>, AnalysisError> {
    let live = col("warmup").not().and(col("superseded").not());
    let mut aggs = vec![
        col("arm").first().alias("arm"),
        col("agent").first().alias("agent"),
        col("order")
            .min()
            .cast(DataType::UInt64)
            .alias("first_order"),
        col("ok").len().cast(DataType::UInt32).alias("calls"),
        count_true(col("warmup")).alias("warmup"),
        count_true(col("superseded").and(col("warmup").not())).alias("superseded"),
        count_true(live.clone().and(col("ok").not())).alias("failed"),
        count_true(live.clone().and(col("ok")).and(col("cold"))).alias("cold"),
        count_true(measured()).alias("measured"),
        count_true(
            live.clone()
                .and(col("slo_good").eq(lit(0.0)))
                .fill_null(lit(false)),
        )
        .alias("slo_missed"),
        col("rep")
            .filter(col("warmup").not())
            .n_unique()
            .cast(DataType::UInt32)
            .alias("reps"),
    ];
    for src in TOKEN_SOURCES {
        aggs.push(
            count_true(measured().and(col("tokens_source").eq(lit(src)).fill_null(lit(false))))
                .alias(format!("tokens_{src}")),
        );
    }
    for r in ColdReason::ALL {
        aggs.push(
            count_true(
                live.clone()
                    .and(col("ok"))
                    .and(col("cold"))
                    .and(col("cold_reason").eq(lit(r.as_str())).fill_null(lit(false))),
            )
            .alias(format!("cold_{}", r.as_str())),
        );
    }
    let df = collect_streaming(lf.group_by([col("cell_id"), col("phase")]).agg(aggs))?;
    let cells = str_col(&df, "cell_id")?;
    let phases = str_col(&df, "phase")?;
    let arms = str_col(&df, "arm")?;
    let agents = str_col(&df, "agent")?;
    let num = |name: &str| -> Result<Vec<u32>, AnalysisError> {
        Ok(f64_col(&df, name)?
            .into_iter()
            .map(|v| v.unwrap_or(0.0) as u32)
            .collect())
    };
    let first_order = num("first_order")?;
    let slo_missed = num("slo_missed")?;
    let (calls, warmup, superseded, failed, cold, measured, reps) = (
        num("calls")?,
        num("warmup")?,
        num("superseded")?,
        num("failed")?,
        num("cold")?,
        num("measured")?,
        num("reps")?,
    );
    let by_source: Vec<(&str, Vec<u32>)> = TOKEN_SOURCES
        .iter()
        .map(|src| Ok((*src, num(&format!("tokens_{src}"))?)))
        .collect::<Result<_, AnalysisError>>()?;
    let by_reason: Vec<(ColdReason, Vec<u32>)> = ColdReason::ALL
        .iter()
        .map(|r| Ok((*r, num(&format!("cold_{}", r.as_str()))?)))
        .collect::<Result<_, AnalysisError>>()?;
    let mut out: BTreeMap<String, GroupCounts> = BTreeMap::new();
    // Each cell's load phase: `open` for an open-loop cell, else `concurrent` (a pair or N
    // agents), where its reload probes belong.
    let mut load_phase: BTreeMap<&str, &str> = BTreeMap::new();
    for i in 0..cells.len() {
        if matches!(phases[i].as_str(), "open" | "concurrent") {
            load_phase.insert(cells[i].as_str(), phases[i].as_str());
        }
    }
    for i in 0..cells.len() {
        // A pair's (or N agents') reload probes belong to the phase they precede.
        let phase = if phases[i] == "reload" && agents[i] != "single" {
            load_phase
                .get(cells[i].as_str())
                .copied()
                .unwrap_or("concurrent")
        } else {
            phases[i].as_str()
        };
        let key = group_key(&cells[i], phase, grouping);
        let is_seq = phases[i] == "sequential";
        let mut c = Counts {
            calls: calls[i],
            warmup: warmup[i],
            cold: cold[i],
            cold_by_reason: by_reason
                .iter()
                .filter(|(_, v)| v[i] > 0)
                .map(|(r, v)| (r.as_str().to_string(), v[i]))
                .collect(),
            failed: failed[i],
            superseded: superseded[i],
            // The analysis leaves the sequential phase out of a cell's measured calls.
            measured: if grouping == Grouping::Cells && is_seq {
                0
            } else {
                measured[i]
            },
            reps: reps[i],
            slo_missed: if grouping == Grouping::Cells && is_seq {
                0
            } else {
                slo_missed[i]
            },
            tokens_by_source: by_source
                .iter()
                .filter(|(_, v)| v[i] > 0 && !(grouping == Grouping::Cells && is_seq))
                .map(|(src, v)| (src.to_string(), v[i]))
                .collect(),
        };
        if grouping == Grouping::Cells && is_seq {
            c.reps = 0;
        }
        let e = out.entry(key).or_insert_with(|| GroupCounts {
            cell_id: cells[i].clone(),
            arm: arms[i].clone(),
            first_order: u64::from(first_order[i]),
            counts: Counts::default(),
        });
        e.first_order = e.first_order.min(u64::from(first_order[i]));
        e.counts.add(&c);
    }
    Ok(out)
}

/// A float column's values, non-finite as missing.
fn finite_col(ca: &Float64Chunked) -> Vec<Option<f64>> {
    ca.iter().map(|v| v.filter(|x| x.is_finite())).collect()
}

/// Per group key: (rep values, clusters, incomplete reps, request stats) of one metric.
type KeyResult = (Vec<(u32, f64)>, Vec<(u32, Vec<f64>)>, u32, Vec<Option<f64>>);

/// Each row's value of metric `m` (or its numerator and denominator) where the call counts
/// and has it.
fn row_values(
    counts: &[bool],
    cols: &BTreeMap<&str, Vec<Option<f64>>>,
    m: Metric,
) -> Vec<Option<(f64, f64)>> {
    match m.def().estimator {
        Estimator::RepMedian { column } | Estimator::PooledQuantile { column, .. } => cols[column]
            .iter()
            .zip(counts)
            .map(|(v, &ok)| v.filter(|_| ok).map(|x| (x, 0.0)))
            .collect(),
        Estimator::RepRate {
            clock: RateClock::ServerEval,
        } => cols["output_tokens"]
            .iter()
            .zip(&cols["eval_ms"])
            .zip(counts)
            .map(|((t, e), &ok)| match (t, e) {
                (Some(t), Some(ms)) if ok && *ms > 0.0 => Some((*t, ms / 1000.0)),
                _ => None,
            })
            .collect(),
        // The tokens after the first over (e2e − TTFT): see `record::client_decode_tps`. A
        // call of one token (or none) has no decode interval: it adds nothing to its rep's
        // sums (0, 0) and has no rate of its own, but its rep stays complete.
        Estimator::RepRate {
            clock: RateClock::ClientDecode,
        } => cols["output_tokens"]
            .iter()
            .zip(cols["e2e_ms"].iter().zip(&cols["ttft_ms"]))
            .zip(counts)
            .map(|((n, (e, t)), &ok)| match (n, e, t) {
                (Some(n), Some(_), Some(_)) if ok && *n < 2.0 => Some((0.0, 0.0)),
                (Some(n), Some(e), Some(t)) if ok && e > t => Some((n - 1.0, (e - t) / 1000.0)),
                _ => None,
            })
            .collect(),
        Estimator::RepEnergy { per } => {
            // (joules × scale, tokens): the rep value is Σ joules × scale / Σ tokens, formed
            // below exactly as a rate's Σ tokens / Σ seconds.
            let (tokens, scale) = match per {
                EnergyPer::OutputToken => (&cols["output_tokens"], 1.0),
                EnergyPer::KiloPromptTokens => (&cols["prompt_tokens"], 1000.0),
            };
            cols["gpu_energy_j"]
                .iter()
                .zip(tokens)
                .zip(counts)
                .map(|((j, t), &ok)| match (j, t) {
                    (Some(j), Some(t)) if ok && *t > 0.0 && *j >= 0.0 => Some((j * scale, *t)),
                    _ => None,
                })
                .collect()
        }
        // (count, phase wall s): the rep value is Σ count / the wall (the same on every
        // call of the phase; the largest is taken).
        Estimator::RepWallRate { count } => {
            let counted = match count {
                WallCount::OutputTokens => &cols["output_tokens"],
                WallCount::GoodCalls => &cols["slo_good"],
            };
            counted
                .iter()
                .zip(&cols["phase_wall_ms"])
                .zip(counts)
                .map(|((n, w), &ok)| match (n, w) {
                    (Some(n), Some(w)) if ok && *w > 0.0 => Some((*n, w / 1000.0)),
                    _ => None,
                })
                .collect()
        }
    }
}

fn metric_by_key(
    groups: &RepGroups,
    counts: &[bool],
    cols: &BTreeMap<&str, Vec<Option<f64>>>,
    m: Metric,
) -> Vec<KeyResult> {
    let n_groups = groups.reps.len();
    let value = row_values(counts, cols, m);
    // Scatter the present values group after group.
    let mut rows_in = vec![0u32; n_groups];
    let mut offsets = vec![0usize; n_groups + 1];
    for (row, v) in value.iter().enumerate() {
        let g = groups.group_of_row[row] as usize;
        rows_in[g] += 1;
        if v.is_some() {
            offsets[g + 1] += 1;
        }
    }
    for g in 0..n_groups {
        offsets[g + 1] += offsets[g];
    }
    let mut buf = vec![(0.0, 0.0); offsets[n_groups]];
    let mut next = offsets.clone();
    for (row, v) in value.iter().enumerate() {
        if let Some(x) = v {
            let g = groups.group_of_row[row] as usize;
            buf[next[g]] = *x;
            next[g] += 1;
        }
    }
    let complete = |g: usize| (offsets[g + 1] - offsets[g]) as u32 == rows_in[g] && rows_in[g] > 0;
    let pooled = m.is_pooled();
    let rate = matches!(
        m.def().estimator,
        Estimator::RepRate { .. } | Estimator::RepEnergy { .. }
    );
    let wall_rate = matches!(m.def().estimator, Estimator::RepWallRate { .. });
    let mut out = Vec::with_capacity(groups.keys.len());
    for &(s, e) in &groups.key_ranges {
        let mut reps = Vec::new();
        let mut clusters = Vec::new();
        let mut incomplete = 0u32;
        let mut pool: Vec<f64> = Vec::new();
        for g in s..e {
            if !complete(g) {
                incomplete += 1;
                continue;
            }
            let slice = &mut buf[offsets[g]..offsets[g + 1]];
            let rep = groups.reps[g];
            if wall_rate {
                let n: f64 = slice.iter().map(|(x, _)| x).sum();
                let wall = slice.iter().map(|(_, y)| *y).fold(0.0, f64::max);
                if wall > 0.0 {
                    reps.push((rep, n / wall));
                } else {
                    incomplete += 1;
                }
                continue;
            }
            if rate {
                let (t, sec) = slice
                    .iter()
                    .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
                pool.extend(slice.iter().filter(|(_, y)| *y > 0.0).map(|(x, y)| x / y));
                if sec > 0.0 {
                    reps.push((rep, t / sec));
                } else {
                    // Only one-token calls: the rep has no decode interval to rate.
                    incomplete += 1;
                }
                continue;
            }
            let mut vals: Vec<f64> = slice.iter().map(|(x, _)| *x).collect();
            pool.extend_from_slice(&vals);
            if pooled {
                clusters.push((rep, vals));
            } else if let Some(q) = select_quantiles(&mut vals, &[0.5]) {
                reps.push((rep, q[0]));
            }
        }
        out.push((reps, clusters, incomplete, request_stats_of(&mut pool)));
    }
    out
}

/// The rows grouped by (group key, rep), groups sorted by key then rep. Rows arrive in run
/// order, so consecutive rows mostly share a key and rep: a hash lookup happens only where
/// they change.
struct RepGroups {
    /// The group keys, sorted.
    keys: Vec<String>,
    /// Each key's groups: [start, end) into `reps`.
    key_ranges: Vec<(usize, usize)>,
    /// The rep of each group.
    reps: Vec<u32>,
    /// The group of each row.
    group_of_row: Vec<u32>,
}

impl RepGroups {
    fn of(
        cells: &StringChunked,
        phases: &StringChunked,
        reps: &UInt32Chunked,
        grouping: Grouping,
    ) -> Self {
        use std::collections::HashMap;
        let mut index: HashMap<(String, u32), u32> = HashMap::new();
        let mut keys: Vec<(String, u32)> = Vec::new();
        let mut group_of_row: Vec<u32> = Vec::with_capacity(cells.len());
        let mut prev: Option<(&str, &str, u32, u32)> = None;
        for ((cell, phase), rep) in cells.iter().zip(phases.iter()).zip(reps.iter()) {
            let (cell, phase, rep) = (cell.unwrap_or(""), phase.unwrap_or(""), rep.unwrap_or(0));
            let g = match prev {
                Some((c, p, r, g)) if c == cell && p == phase && r == rep => g,
                _ => {
                    let key = (group_key(cell, phase, grouping), rep);
                    let g = match index.get(&key) {
                        Some(&g) => g,
                        None => {
                            keys.push(key.clone());
                            let g = (keys.len() - 1) as u32;
                            index.insert(key, g);
                            g
                        }
                    };
                    prev = Some((cell, phase, rep, g));
                    g
                }
            };
            group_of_row.push(g);
        }
        // Number the groups in (key, rep) order.
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
        let mut rank = vec![0u32; keys.len()];
        for (r, &g) in order.iter().enumerate() {
            rank[g as usize] = r as u32;
        }
        for g in &mut group_of_row {
            *g = rank[*g as usize];
        }
        let sorted: Vec<&(String, u32)> = order.iter().map(|&g| &keys[g as usize]).collect();
        let mut names: Vec<String> = Vec::new();
        let mut key_ranges: Vec<(usize, usize)> = Vec::new();
        for (g, (k, _)) in sorted.iter().enumerate() {
            match names.last() {
                Some(last) if last == k => {
                    if let Some(r) = key_ranges.last_mut() {
                        r.1 = g + 1;
                    }
                }
                _ => {
                    names.push(k.clone());
                    key_ranges.push((g, g + 1));
                }
            }
        }
        Self {
            keys: names,
            key_ranges,
            reps: sorted.iter().map(|(_, r)| *r).collect(),
            group_of_row,
        }
    }
}

/// n, mean, sd (n − 1), median, p5, p25, p75, p95, p99, min, max of `v` (reordered).
pub(crate) fn request_stats_of(v: &mut [f64]) -> Vec<Option<f64>> {
    let n = v.len();
    if n == 0 {
        let mut out = vec![None; REQUEST_STATS.len()];
        out[0] = Some(0.0);
        return out;
    }
    let (mut sum, mut min, mut max) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
    for &x in v.iter() {
        sum += x;
        min = min.min(x);
        max = max.max(x);
    }
    let mean = sum / n as f64;
    let sd = (n > 1).then(|| {
        let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    let probs: Vec<f64> = std::iter::once(0.5)
        .chain(PERCENTILES.iter().map(|&(_, p)| p))
        .collect();
    let q = select_quantiles(v, &probs).unwrap_or_default();
    let mut out = vec![Some(n as f64), Some(mean), sd];
    out.extend(q.into_iter().map(Some));
    out.extend([Some(min), Some(max)]);
    out
}

/// Values of a numeric column as `Option<f64>` (nulls kept).
pub fn f64_col(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, AnalysisError> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().collect())
}

/// Values of a string column.
pub fn str_col(df: &DataFrame, name: &str) -> Result<Vec<String>, AnalysisError> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect())
}
