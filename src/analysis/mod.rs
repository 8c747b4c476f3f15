//! Analysis of a stored run: [`samples`] turns the records (read through the store) into
//! per-rep values; the statistics engine ([`crate::stats::engine`]) turns them into
//! summaries, intervals and comparisons against the reference arm; pair speedups and axis
//! tests follow. The result is written as `analysis/summary.json` and a tidy CSV (one row
//! per cell × metric × statistic).
//!
//! Rules: warm-up calls are always excluded; cold, failed and superseded calls are excluded
//! and counted by reason; the repetition is the unit of every test (request-level
//! distributions are reported alongside, never tested); a cell that ran but has no measured
//! call left is an error that names it, never an empty table.

mod pairs;
mod reference;
pub mod samples;
mod tidy;
pub mod workload;

pub use crate::metrics::Metric;
pub use crate::stats::engine::Decision;
pub use crate::store::columnar::Source;
pub use pairs::PairAnalysis;
pub(crate) use reference::symbol as verdict_word;
pub use reference::Comparison;
pub use samples::{measured, Counts, GroupSample, Grouping, MetricSample, Samples, PERCENTILES};
pub use tidy::{csv_field, tidy_csv, write_tidy_csv, TidyRow};

/// Relative difference of median output tokens beyond which a metric that scales with the
/// output length (a duration of the whole generation) is not compared: the cells did
/// different work. The tables and the nightly gate apply this one rule.
pub const WORKLOAD_TOLERANCE: f64 = 0.10;

use crate::stats::engine::{self, Params, Sample};
use crate::stats::{self, Interval, StatsError, Summary, TukeyFences};
use crate::store::{self, Manifest, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a run could not be analysed.
#[derive(Debug, Error)]
pub enum AnalysisError {
    /// Reading the manifest or records, or writing `analysis/`, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The run directory's records frame has no row.
    #[error("{0}: the run has no records")]
    Empty(PathBuf),
    /// Cells ran but every one of their calls was excluded: nothing to measure there.
    #[error("nothing measured in {} of {total} cells: {}", cells.len(), describe_empty(cells))]
    NothingMeasured {
        /// (cell, why its calls were excluded).
        cells: Vec<(String, String)>,
        /// Cells in the run, measured or not.
        total: usize,
    },
    /// The run is a partial merge or unfinished, and `--allow-partial` was not given.
    #[error("{} is {what}; analyse it anyway with --allow-partial", dir.display())]
    Partial {
        /// The run directory.
        dir: PathBuf,
        /// What the run is, in words ("a partial merge …", "unfinished …").
        what: String,
    },
    /// A file could not be read or written (path, cause).
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The reference arm (`--reference` or the experiment file's) has no cell in the run.
    #[error("reference arm `{0}` has no records in this run")]
    UnknownReference(String),
    /// A polars query over the records failed.
    #[error("polars: {0}")]
    Polars(#[from] polars::prelude::PolarsError),
    /// Serialising `analysis/summary.json` failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn describe_empty(cells: &[(String, String)]) -> String {
    cells
        .iter()
        .map(|(c, why)| format!("{c} ({why})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Knobs of the analysis (the CLI fills them; defaults are the paper's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// Reference arm; `None` → the manifest's `experiment.reference`, else the arm of
    /// the first cell in run order.
    pub reference: Option<String>,
    /// Significance level of the verdicts, applied to Holm-adjusted p-values (default 0.05).
    pub alpha: f64,
    /// Confidence level of every interval.
    pub level: f64,
    /// Resamples of every bootstrap interval (at least 1000).
    pub bootstrap_resamples: usize,
    /// Base seed of every bootstrap, so that a re-analysis gives the same intervals.
    pub seed: u64,
    /// Metrics to analyse (default: all of them).
    pub metrics: Vec<Metric>,
    /// Analyse a partial merge or an unfinished run instead of refusing it.
    #[serde(default)]
    pub allow_partial: bool,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            reference: None,
            alpha: 0.05,
            level: 0.95,
            bootstrap_resamples: engine::DEFAULT_RESAMPLES,
            seed: 42,
            metrics: Metric::ALL.to_vec(),
            allow_partial: false,
        }
    }
}

impl AnalysisOptions {
    /// The statistics engine's parameters for this analysis.
    pub fn params(&self) -> Params {
        Params {
            level: self.level,
            resamples: self.bootstrap_resamples,
            ..Params::analysis(self.seed)
        }
    }
}

/// A value, or why there is none ("need ≥ 6 values, have 3") — never a fake number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Avail<T> {
    /// The computed value; serialised as the value itself.
    Value(T),
    /// No value; serialised as `{"unavailable": "..."}`.
    Unavailable {
        /// Why, in words (a statistics error's message, or why no test was run).
        unavailable: String,
    },
}

impl<T> Avail<T> {
    /// The value, or `None` when it is unavailable.
    pub fn value(&self) -> Option<&T> {
        match self {
            Avail::Value(v) => Some(v),
            Avail::Unavailable { .. } => None,
        }
    }

    pub(crate) fn reason(&self) -> Option<&str> {
        match self {
            Avail::Value(_) => None,
            Avail::Unavailable { unavailable } => Some(unavailable),
        }
    }
}

impl<T> From<Result<T, StatsError>> for Avail<T> {
    fn from(r: Result<T, StatsError>) -> Self {
        match r {
            Ok(v) => Avail::Value(v),
            Err(e) => Avail::Unavailable {
                unavailable: e.to_string(),
            },
        }
    }
}

/// Distribution of a metric over a set of per-rep values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepStats {
    /// One value per measured repetition, in rep order.
    pub reps: Vec<f64>,
    /// n, mean, sd, cv, type-7 percentiles, min and max of `reps`.
    pub summary: Avail<Summary>,
    pub(crate) mean_ci: Avail<Interval>,
    /// Distribution-free order-statistic interval of the median of `reps` at the analysis
    /// level (needs ≥ 6 reps at 95%).
    pub median_ci: Avail<Interval>,
    /// Tukey labels (1.5 IQR) of the rep values: labelled and counted, never dropped.
    pub outliers: Avail<TukeyFences>,
}

impl RepStats {
    /// No reps (a figure a stored analysis predates).
    pub(crate) fn empty() -> Self {
        Self::new(Vec::new(), 0.95)
    }

    pub(crate) fn new(reps: Vec<f64>, level: f64) -> Self {
        Self {
            summary: stats::summarize(&reps).into(),
            mean_ci: stats::mean_ci_t(&reps, level).into(),
            median_ci: stats::median_ci(&reps, level).into(),
            outliers: stats::tukey_fences(&reps).into(),
            reps,
        }
    }
}

/// One metric of one cell: its value with an interval, the across-rep statistics and the
/// request-level distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMetric {
    pub(crate) metric: Metric,
    /// The metric's value: the median of the rep values, or the pooled quantile.
    pub estimate: Option<f64>,
    /// Its interval: order-statistic for a median (with exact coverage), cluster bootstrap
    /// for a pooled quantile.
    pub estimate_ci: Avail<Interval>,
    /// Reps that count for this metric (complete reps).
    pub n_reps: usize,
    /// Reps left out because one of their calls was excluded or lacked the metric.
    pub incomplete_reps: u32,
    /// Across-rep statistics of the complete reps' values (empty for pooled metrics).
    #[serde(flatten)]
    pub stats: RepStats,
    /// Per-call distribution over the calls of complete reps (n, mean, sd, median, p5…p99,
    /// min, max).
    pub request: BTreeMap<String, Option<f64>>,
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellAnalysis {
    /// The cell's id, as in the records.
    pub cell_id: String,
    pub(crate) arm: String,
    /// Factor name → value, from the records' options (`A.num_ctx` for pair members).
    pub factors: BTreeMap<String, String>,
    /// The cell this one is compared against (itself for a reference cell).
    pub reference_cell: String,
    /// True when the cell is its own reference (no comparison is made for it).
    pub is_reference: bool,
    /// Calls of the cell and how many each exclusion rule removed.
    pub counts: Counts,
    /// One entry per analysed metric (`n_reps` 0 when no rep is complete).
    pub metrics: Vec<CellMetric>,
}

impl CellAnalysis {
    /// This cell's analysis of metric `m`, when it has one.
    pub fn metric(&self, m: Metric) -> Option<&CellMetric> {
        self.metrics.iter().find(|c| c.metric == m)
    }

    /// `num_ctx=512, temperature=0.6`, or `defaults`.
    pub fn factor_label(&self) -> String {
        if self.factors.is_empty() {
            return "defaults".into();
        }
        self.factors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Kruskal–Wallis and ANOVA of one metric across the levels of one factor of an arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AxisTest {
    pub(crate) arm: String,
    /// The factor whose levels form the groups (`num_ctx`, or `A.num_ctx` for a pair member).
    pub factor: String,
    /// The tested metric.
    pub metric: Metric,
    /// The factor's levels among the arm's cells, one group each.
    pub levels: Vec<String>,
    /// Kruskal–Wallis H of the per-rep values grouped by level (pooled over the arm's other
    /// factors), unadjusted.
    pub kruskal_wallis: Avail<stats::KSampleTest>,
    pub(crate) anova: Avail<stats::KSampleTest>,
}

/// Everything `analyze` found; serialised as `analysis/summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub(crate) experiment: String,
    pub(crate) run_id: String,
    /// Which copy of the records was read: `records.parquet` or `records.jsonl`.
    pub source: Source,
    /// 1 when the records log's last line was cut mid-write (a crash) and skipped, else 0.
    pub torn_lines: usize,
    /// Records of a last phase cut short by a crash (left out).
    #[serde(default)]
    pub incomplete_records: usize,
    /// The arm every other arm is compared with (see `reference_rule`).
    pub reference_arm: String,
    /// How the reference arm and cells were chosen, for the table footer.
    pub reference_rule: String,
    pub(crate) options: AnalysisOptions,
    /// The statistics engine's parameters (interval level and sidedness, resamples).
    pub params: Params,
    /// Every cell, in run order.
    pub cells: Vec<CellAnalysis>,
    /// Every non-reference cell × metric against its reference cell, with Holm- and
    /// BH-adjusted p-values (family: one metric across cells).
    pub comparisons: Vec<Comparison>,
    /// Speedup, efficiency and contention of each pair cell.
    pub pairs: Vec<PairAnalysis>,
    /// Kruskal–Wallis and ANOVA per arm × factor with ≥ 2 levels × metric.
    pub axis_tests: Vec<AxisTest>,
    /// Workload levels: per-cell throughput and latency per rep, capacity under the
    /// `[slo]`, the Pareto front.
    #[serde(default)]
    pub workload: workload::Workload,
    /// `manifest.json` (environment footer, reference arm, backend).
    pub manifest: Option<Manifest>,
    /// Warnings a reader of the tables must see (the parquet not used, impossible pair
    /// results, a busy machine).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Analysis {
    /// The cell with id `id`.
    pub fn cell(&self, id: &str) -> Option<&CellAnalysis> {
        self.cells.iter().find(|c| c.cell_id == id)
    }

    /// The comparison of `cell` with its reference cell on metric `m`; `None` for a
    /// reference cell or a metric that was not analysed.
    pub fn comparison(&self, cell: &str, m: Metric) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.cell_id == cell && c.metric == m)
    }

    /// The tidy frame: one row per cell × metric × statistic.
    pub fn tidy(&self) -> Vec<TidyRow> {
        tidy::rows(self)
    }

    /// `Err(NothingMeasured)` naming every cell that ran but has no measured call.
    pub fn check_measured(&self) -> Result<(), AnalysisError> {
        let cells = nothing_measured(self);
        if cells.is_empty() {
            Ok(())
        } else {
            Err(AnalysisError::NothingMeasured {
                cells,
                total: self.cells.len(),
            })
        }
    }

    /// Calls excluded over the whole run, by rule.
    pub fn total_counts(&self) -> Counts {
        let mut t = Counts::default();
        for c in &self.cells {
            t.calls += c.counts.calls;
            t.warmup += c.counts.warmup;
            t.cold += c.counts.cold;
            for (k, v) in &c.counts.cold_by_reason {
                *t.cold_by_reason.entry(k.clone()).or_default() += v;
            }
            t.failed += c.counts.failed;
            t.superseded += c.counts.superseded;
            t.measured += c.counts.measured;
            t.reps += c.counts.reps;
            for (k, v) in &c.counts.tokens_by_source {
                *t.tokens_by_source.entry(k.clone()).or_default() += v;
            }
        }
        t
    }
}

/// The manifest's reference arm (the experiment file's `reference`, or its first arm).
fn manifest_reference(m: &Manifest) -> Option<String> {
    m.spec().map(|s| s.experiment.reference)
}

/// Refuses a partial merge or an unfinished run unless `allow_partial`.
fn check_complete(dir: &Path, m: &Manifest, allow_partial: bool) -> Result<(), AnalysisError> {
    if allow_partial {
        return Ok(());
    }
    if m.partial {
        return Err(AnalysisError::Partial {
            dir: dir.to_path_buf(),
            what: "a partial merge (some planned cells are missing)".into(),
        });
    }
    if !m.is_finished() {
        return Err(AnalysisError::Partial {
            dir: dir.to_path_buf(),
            what: "unfinished (interrupted or still running: resume it with `sweep run FILE \
                   --resume <run-id>`)"
                .into(),
        });
    }
    Ok(())
}

/// Analyses the run in `run_dir` and writes `analysis/summary.json` and
/// `analysis/tidy.csv` there. A cell with no measured call is not an error here (the files
/// say why, by reason); callers that must not pass silently call
/// [`Analysis::check_measured`].
pub fn analyze(run_dir: &Path, opts: &AnalysisOptions) -> Result<Analysis, AnalysisError> {
    let manifest = Manifest::read(run_dir)?;
    check_complete(run_dir, &manifest, opts.allow_partial)?;
    let loaded = store::columnar::load(run_dir, &manifest)?;
    let mut analysis = analyze_frame(
        loaded.frame,
        loaded.source,
        loaded.torn_lines,
        Some(manifest),
        opts,
    )
    .map_err(|e| match e {
        AnalysisError::Empty(_) => AnalysisError::Empty(run_dir.to_path_buf()),
        e => e,
    })?;
    analysis.incomplete_records = loaded.incomplete_records;
    analysis.notes.splice(0..0, loaded.notes);
    // The machine's state and the model's placement, from the run's telemetry.
    let impossible = pairs::impossible(&analysis.pairs, analysis.manifest.as_ref()).len();
    analysis
        .notes
        .extend(crate::telemetry::analysis_notes(run_dir, impossible));
    let dir = run_dir.join("analysis");
    let summary = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&analysis)?;
    store::atomic::write_atomic(&summary, text.as_bytes())?;
    write_tidy_csv(&dir.join("tidy.csv"), &analysis.tidy())?;
    Ok(analysis)
}

/// Cells that ran but have no measured call, with why.
pub fn nothing_measured(a: &Analysis) -> Vec<(String, String)> {
    a.cells
        .iter()
        .filter(|c| c.counts.calls > c.counts.warmup && c.counts.measured == 0)
        .map(|c| {
            (
                c.cell_id.clone(),
                format!("excluded: {}", c.counts.exclusions()),
            )
        })
        .collect()
}

/// The analysis of a records frame (no files written): what `analyze` and the benchmark
/// call.
pub fn analyze_frame(
    lf: polars::prelude::LazyFrame,
    source: Source,
    torn_lines: usize,
    manifest: Option<Manifest>,
    opts: &AnalysisOptions,
) -> Result<Analysis, AnalysisError> {
    use polars::prelude::*;
    let lf = samples::with_defaults(lf)?;
    // The run's identity from its first row (a `first()` over the whole frame decoded both
    // string columns in full).
    let ident = lf
        .clone()
        .slice(0, 1)
        .select([col("experiment"), col("run_id")])
        .collect()?;
    if ident.height() == 0 {
        return Err(AnalysisError::Empty(PathBuf::new()));
    }
    let experiment = samples::str_col(&ident, "experiment")?.remove(0);
    let run_id = samples::str_col(&ident, "run_id")?.remove(0);

    let slo = manifest
        .as_ref()
        .and_then(Manifest::spec)
        .and_then(|s| s.slo);
    let lf = workload::with_slo(lf, slo.as_ref());
    // Goodput exists only against an SLO.
    let opts = &AnalysisOptions {
        metrics: opts
            .metrics
            .iter()
            .copied()
            .filter(|m| slo.is_some() || *m != Metric::GoodputRps)
            .collect(),
        ..opts.clone()
    };
    let options = cell_options(lf.clone())?;
    let s = samples::samples(lf.clone(), &opts.metrics, Grouping::Cells)?;
    let params = opts.params();
    let mut cells = build_cells(&s, options, &params);

    let (reference_arm, how) = match (
        &opts.reference,
        manifest.as_ref().and_then(manifest_reference),
    ) {
        (Some(r), _) => (r.clone(), "given"),
        (None, Some(r)) => (r, "the experiment file's reference"),
        (None, None) => (
            cells.first().map(|c| c.arm.clone()).unwrap_or_default(),
            "none given: arm of the first cell in run order",
        ),
    };
    reference::assign_references(&mut cells, &reference_arm)?;
    let reference_rule = format!(
        "reference arm `{reference_arm}` ({how}); each cell is compared with the reference cell \
         with the same factor values, else the one sharing the most factor values (the first \
         in run order among ties)"
    );
    // Output lengths, for the metrics that scale with them (the workload check).
    let tokens = if opts.metrics.iter().any(|m| m.scales_with_output_tokens()) {
        Some(samples::samples(
            lf.clone(),
            &[Metric::OutputTokens],
            Grouping::Cells,
        )?)
    } else {
        None
    };
    let comparisons = reference::compare_all(&cells, &s, tokens.as_ref(), opts, &params);
    let pairs = pairs::pairs(lf.clone(), opts)?;
    let axis_tests = reference::axis_tests(&cells, opts, &params);
    let slo = manifest
        .as_ref()
        .and_then(Manifest::spec)
        .and_then(|s| s.slo);
    let workload = workload::workload(lf.clone(), &cells, slo.as_ref(), opts)?;
    let mut notes = Vec::new();
    notes.extend(pairs::impossible(&pairs, manifest.as_ref()));
    Ok(Analysis {
        experiment,
        run_id,
        source,
        torn_lines,
        incomplete_records: 0,
        reference_arm,
        reference_rule,
        options: opts.clone(),
        params,
        cells,
        comparisons,
        pairs,
        axis_tests,
        workload,
        manifest,
        notes,
    })
}

/// (cell, agent) → that agent's options (JSON text): the factor values.
fn cell_options(
    lf: polars::prelude::LazyFrame,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, AnalysisError> {
    use polars::prelude::*;
    let df = samples::collect_streaming(
        lf.group_by([col("cell_id"), col("agent")])
            .agg([col("options").first().alias("options")])
            .sort(["cell_id", "agent"], SortMultipleOptions::default()),
    )?;
    let o_cells = samples::str_col(&df, "cell_id")?;
    let o_agents = samples::str_col(&df, "agent")?;
    let o_json = samples::str_col(&df, "options")?;
    let mut factors: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for ((cell, agent), json) in o_cells.iter().zip(&o_agents).zip(&o_json) {
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(json).unwrap_or_default();
        let entry = factors.entry(cell.clone()).or_default();
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            // A copy of a workload level (`1`..`N`) has the options of the single agent.
            let copy = !agent.is_empty() && agent.bytes().all(|b| b.is_ascii_digit());
            let key = if agent == "single" || copy {
                k
            } else {
                format!("{agent}.{k}")
            };
            entry.insert(key, v);
        }
    }
    Ok(factors)
}

/// The cell's value of a metric with its one-sample interval.
fn estimate(m: &MetricSample, params: &Params, level: f64) -> (Option<f64>, Avail<Interval>) {
    let value = engine::point_estimate(m.metric, m.sample());
    let ci = match m.sample() {
        Sample::Reps(r) => stats::median_ci(r, level).into(),
        Sample::Clusters(c) => engine::cluster_quantile_ci(m.metric, c, params).into(),
    };
    (value, ci)
}

fn build_cells(
    s: &Samples,
    mut factors: BTreeMap<String, BTreeMap<String, String>>,
    params: &Params,
) -> Vec<CellAnalysis> {
    s.groups
        .iter()
        .map(|g| {
            let metrics = g
                .metrics
                .iter()
                .map(|m| {
                    let (estimate, estimate_ci) = estimate(m, params, params.level);
                    CellMetric {
                        metric: m.metric,
                        estimate,
                        estimate_ci,
                        n_reps: m.n(),
                        incomplete_reps: m.incomplete_reps,
                        stats: RepStats::new(m.reps.clone(), params.level),
                        request: samples::REQUEST_STATS
                            .iter()
                            .zip(&m.request)
                            .map(|(k, v)| (k.to_string(), *v))
                            .collect(),
                    }
                })
                .collect();
            CellAnalysis {
                cell_id: g.cell_id.clone(),
                arm: g.arm.clone(),
                factors: factors.remove(&g.cell_id).unwrap_or_default(),
                reference_cell: String::new(),
                is_reference: false,
                counts: g.counts.clone(),
                metrics,
            }
        })
        .collect()
}

/// Names of the request-level statistics.
pub fn request_stats() -> &'static [&'static str] {
    &samples::REQUEST_STATS
}
