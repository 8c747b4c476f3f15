//! Analysis of a stored run: polars aggregates the records (per cell, per repetition,
//! per call); `stats` turns the per-rep values into summaries, intervals, comparisons
//! against the reference arm, pair speedups and axis tests. The result is written as
//! `analysis/summary.json` and a tidy CSV (one row per cell × metric × statistic).
//!
//! Rules: warm-up calls are always excluded; cold calls and failed calls are excluded and
//! counted; the repetition is the unit of every test (request-level distributions are
//! reported alongside, never tested).

mod aggregate;
mod compare;
mod load;
mod metrics;
mod tidy;

pub use aggregate::{distributions, measured, Distributions, PERCENTILES};
pub use compare::{Comparison, PairAnalysis, Verdict};
pub use load::{
    load, read_jsonl, records_to_frame, scan_parquet, write_frame, write_parquet, Loaded, Source,
    RECORDS_JSONL, RECORDS_PARQUET,
};
pub use metrics::Metric;
pub use tidy::{csv_field, tidy_csv, write_tidy_csv, TidyRow};

use crate::stats::{self, Interval, StatsError, Summary, TukeyFences};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a run could not be analysed.
#[derive(Debug, Error)]
pub enum AnalysisError {
    #[error("no records.parquet or records.jsonl in {0}")]
    NoRecords(PathBuf),
    #[error("{0}: the run has no records")]
    Empty(PathBuf),
    #[error("{path}:{line}: not a record: {message}")]
    BadRecord {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("path is not valid UTF-8: {0}")]
    Path(PathBuf),
    #[error("{0}: manifest is not JSON: {1}")]
    Manifest(PathBuf, String),
    #[error("reference arm `{0}` has no records in this run")]
    UnknownReference(String),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Knobs of the analysis (the CLI fills them; defaults are the paper's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// Reference arm; `None` → the manifest's `experiment.reference`, else the arm of
    /// the first cell in run order.
    pub reference: Option<String>,
    pub alpha: f64,
    /// Confidence level of every interval.
    pub level: f64,
    pub bootstrap_resamples: usize,
    pub seed: u64,
    pub metrics: Vec<Metric>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            reference: None,
            alpha: 0.05,
            level: 0.95,
            bootstrap_resamples: 2000,
            seed: 42,
            metrics: Metric::ALL.to_vec(),
        }
    }
}

/// A value, or why there is none ("need ≥ 6 values, have 3") — never a fake number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Avail<T> {
    Value(T),
    Unavailable { unavailable: String },
}

impl<T> Avail<T> {
    pub fn value(&self) -> Option<&T> {
        match self {
            Avail::Value(v) => Some(v),
            Avail::Unavailable { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
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

/// How many calls a cell had and how many each rule excluded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub calls: u32,
    pub warmup: u32,
    pub cold: u32,
    pub failed: u32,
    pub measured: u32,
    pub reps: u32,
}

/// Distribution of a metric over a set of per-rep values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepStats {
    /// One value per measured repetition, in rep order.
    pub reps: Vec<f64>,
    pub summary: Avail<Summary>,
    pub mean_ci: Avail<Interval>,
    pub median_ci: Avail<Interval>,
    /// Tukey labels (1.5 IQR) of the rep values: labelled and counted, never dropped.
    pub outliers: Avail<TukeyFences>,
}

impl RepStats {
    pub fn new(reps: Vec<f64>, level: f64) -> Self {
        Self {
            summary: stats::summarize(&reps).into(),
            mean_ci: stats::mean_ci_t(&reps, level).into(),
            median_ci: stats::median_ci(&reps, level).into(),
            outliers: stats::tukey_fences(&reps).into(),
            reps,
        }
    }
}

/// One metric of one cell: across-rep statistics and the request-level distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellMetric {
    pub metric: Metric,
    #[serde(flatten)]
    pub stats: RepStats,
    /// Per-call distribution (n, mean, sd, median, p5…p99, min, max) computed by polars.
    pub request: BTreeMap<String, Option<f64>>,
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellAnalysis {
    pub cell_id: String,
    pub arm: String,
    /// Factor name → value, from the records' options (`A.num_ctx` for pair members).
    pub factors: BTreeMap<String, String>,
    /// The cell this one is compared against (itself for a reference cell).
    pub reference_cell: String,
    pub is_reference: bool,
    pub counts: Counts,
    pub metrics: Vec<CellMetric>,
}

impl CellAnalysis {
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
    pub arm: String,
    pub factor: String,
    pub metric: Metric,
    pub levels: Vec<String>,
    pub kruskal_wallis: Avail<stats::KSampleTest>,
    pub anova: Avail<stats::KSampleTest>,
}

/// Everything `analyze` found; serialised as `analysis/summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub experiment: String,
    pub run_id: String,
    pub source: Source,
    pub torn_lines: usize,
    pub reference_arm: String,
    /// How the reference arm and cells were chosen, for the table footer.
    pub reference_rule: String,
    pub options: AnalysisOptions,
    pub cells: Vec<CellAnalysis>,
    pub comparisons: Vec<Comparison>,
    pub pairs: Vec<PairAnalysis>,
    pub axis_tests: Vec<AxisTest>,
    /// `manifest.json` when present (environment footer).
    pub manifest: Option<serde_json::Value>,
}

impl Analysis {
    pub fn cell(&self, id: &str) -> Option<&CellAnalysis> {
        self.cells.iter().find(|c| c.cell_id == id)
    }

    pub fn comparison(&self, cell: &str, m: Metric) -> Option<&Comparison> {
        self.comparisons
            .iter()
            .find(|c| c.cell_id == cell && c.metric == m)
    }

    /// The tidy frame: one row per cell × metric × statistic.
    pub fn tidy(&self) -> Vec<TidyRow> {
        tidy::rows(self)
    }
}

/// Reads `manifest.json` if present.
pub fn read_manifest(run_dir: &Path) -> Result<Option<serde_json::Value>, AnalysisError> {
    let p = run_dir.join("manifest.json");
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| AnalysisError::Io(p.clone(), e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| AnalysisError::Manifest(p, e.to_string()))
}

/// The manifest's reference arm, wherever the lead's layout puts it.
fn manifest_reference(m: &serde_json::Value) -> Option<String> {
    for ptr in [
        "/spec/experiment/reference",
        "/experiment/reference",
        "/reference",
    ] {
        if let Some(s) = m.pointer(ptr).and_then(|v| v.as_str()) {
            return Some(s.to_string());
        }
    }
    // The store keeps the experiment file's text under `spec`; parsing it applies the
    // file's own default (its first arm) when `reference` is not written.
    let text = m.pointer("/spec").and_then(|v| v.as_str())?;
    crate::spec::Spec::parse(Path::new("manifest.json#spec"), text)
        .ok()
        .map(|s| s.experiment.reference)
}

/// Analyses the run in `run_dir` and writes `analysis/summary.json` and
/// `analysis/tidy.csv` there.
pub fn analyze(run_dir: &Path, opts: &AnalysisOptions) -> Result<Analysis, AnalysisError> {
    let loaded = load(run_dir)?;
    let manifest = read_manifest(run_dir)?;
    let analysis = analyze_frame(
        loaded.frame,
        loaded.source,
        loaded.torn_lines,
        manifest,
        opts,
    )
    .map_err(|e| match e {
        AnalysisError::Empty(_) => AnalysisError::Empty(run_dir.to_path_buf()),
        e => e,
    })?;
    let dir = run_dir.join("analysis");
    std::fs::create_dir_all(&dir).map_err(|e| AnalysisError::Io(dir.clone(), e))?;
    let summary = dir.join("summary.json");
    let text = serde_json::to_string_pretty(&analysis)?;
    std::fs::write(&summary, text).map_err(|e| AnalysisError::Io(summary, e))?;
    let csv = dir.join("tidy.csv");
    write_tidy_csv(&csv, &analysis.tidy())?;
    Ok(analysis)
}

/// The analysis of a records frame (no files written): what `analyze` and the benchmark
/// call.
pub fn analyze_frame(
    lf: LazyFrame,
    source: Source,
    torn_lines: usize,
    manifest: Option<serde_json::Value>,
    opts: &AnalysisOptions,
) -> Result<Analysis, AnalysisError> {
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
    let experiment = aggregate::str_col(&ident, "experiment")?.remove(0);
    let run_id = aggregate::str_col(&ident, "run_id")?.remove(0);

    let counts = aggregate::cell_counts(lf.clone())?;
    let options = aggregate::cell_options(lf.clone())?;
    let aggregate::Distributions {
        per_rep: reps,
        request,
    } = aggregate::distributions(lf.clone(), &opts.metrics)?;

    let mut cells = build_cells(&counts, &options, &reps, &request, opts)?;

    let (reference_arm, how) = match (
        &opts.reference,
        manifest.as_ref().and_then(manifest_reference),
    ) {
        (Some(r), _) => (r.clone(), "given"),
        (None, Some(r)) => (r, "manifest experiment.reference"),
        (None, None) => (
            cells.first().map(|c| c.arm.clone()).unwrap_or_default(),
            "none given: arm of the first cell in run order",
        ),
    };
    compare::assign_references(&mut cells, &reference_arm)?;
    let reference_rule = format!(
        "reference arm `{reference_arm}` ({how}); each cell is compared with the reference cell \
         with the same factor values, else the reference arm's first cell in run order"
    );
    let comparisons = compare::compare_all(&cells, opts);
    let pairs = compare::pairs(lf, opts)?;
    let axis_tests = compare::axis_tests(&cells, opts);
    Ok(Analysis {
        experiment,
        run_id,
        source,
        torn_lines,
        reference_arm,
        reference_rule,
        options: opts.clone(),
        cells,
        comparisons,
        pairs,
        axis_tests,
        manifest,
    })
}

fn build_cells(
    counts: &DataFrame,
    options: &DataFrame,
    reps: &DataFrame,
    request: &DataFrame,
    opts: &AnalysisOptions,
) -> Result<Vec<CellAnalysis>, AnalysisError> {
    let ids = aggregate::str_col(counts, "cell_id")?;
    let arms = aggregate::str_col(counts, "arm")?;
    let num = |name: &str| -> Result<Vec<u32>, AnalysisError> {
        Ok(aggregate::f64_col(counts, name)?
            .into_iter()
            .map(|v| v.unwrap_or(0.0) as u32)
            .collect())
    };
    let (calls, warmup, cold, failed, measured) = (
        num("calls")?,
        num("warmup")?,
        num("cold")?,
        num("failed")?,
        num("measured")?,
    );

    // Factors: single cells use the option names; pair members are prefixed `A.`/`B.`.
    let mut factors: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let o_cells = aggregate::str_col(options, "cell_id")?;
    let o_agents = aggregate::str_col(options, "agent")?;
    let o_json = aggregate::str_col(options, "options")?;
    for ((cell, agent), json) in o_cells.iter().zip(&o_agents).zip(&o_json) {
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(json).unwrap_or_default();
        let entry = factors.entry(cell.clone()).or_default();
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let key = if agent == "single" {
                k
            } else {
                format!("{agent}.{k}")
            };
            entry.insert(key, v);
        }
    }

    // Per-rep values by cell.
    let r_cells = aggregate::str_col(reps, "cell_id")?;
    let mut rep_vals: BTreeMap<Metric, Vec<Option<f64>>> = BTreeMap::new();
    for &m in &opts.metrics {
        rep_vals.insert(m, aggregate::f64_col(reps, m.name())?);
    }
    let q_cells = aggregate::str_col(request, "cell_id")?;
    let mut req_cols: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for &m in &opts.metrics {
        for stat in request_stats() {
            let name = aggregate::req_col(m, stat);
            req_cols.insert(name.clone(), aggregate::f64_col(request, &name)?);
        }
    }

    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let mut metrics = Vec::new();
        for &m in &opts.metrics {
            let vals: Vec<f64> = r_cells
                .iter()
                .zip(&rep_vals[&m])
                .filter(|(c, _)| *c == id)
                .filter_map(|(_, v)| v.filter(|x| x.is_finite()))
                .collect();
            let q_row = q_cells.iter().position(|c| c == id);
            let request = request_stats()
                .iter()
                .map(|s| {
                    let v = q_row.and_then(|r| req_cols[&aggregate::req_col(m, s)][r]);
                    (s.to_string(), v)
                })
                .collect();
            metrics.push(CellMetric {
                metric: m,
                stats: RepStats::new(vals, opts.level),
                request,
            });
        }
        out.push(CellAnalysis {
            cell_id: id.clone(),
            arm: arms[i].clone(),
            factors: factors.remove(id).unwrap_or_default(),
            reference_cell: String::new(),
            is_reference: false,
            counts: Counts {
                calls: calls[i],
                warmup: warmup[i],
                cold: cold[i],
                failed: failed[i],
                measured: measured[i],
                reps: r_cells.iter().filter(|c| *c == id).count() as u32,
            },
            metrics,
        });
    }
    Ok(out)
}

/// Names of the request-level statistics.
pub fn request_stats() -> &'static [&'static str] {
    &[
        "n", "mean", "sd", "median", "p5", "p25", "p75", "p95", "p99", "min", "max",
    ]
}
