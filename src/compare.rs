//! Nightly regression check: compares a current run against a baseline run, cell by cell
//! and metric by metric, and gives a verdict with an exit code (0 ok, 1 regression,
//! 2 error or not comparable).
//!
//! Method (the statistical unit is the repetition, never the single call):
//! - Per (cell, rep) of measured (`warmup == false`), successful, non-cold calls one value
//!   per metric: `ttft_p50` = median of the rep's `ttft_ms`; `ttft_p95` = type-7 95th
//!   percentile of the rep's `ttft_ms`; `decode_tps` = Σ output_tokens / Σ eval_ms/1000 over
//!   the rep's calls that have both; `e2e_p50` = median `e2e_ms` (also `e2e_tps`, `itl_p50`
//!   when a threshold names them). A pair cell is compared per phase (concurrent and
//!   sequential are different workloads).
//! - Test: two-sided Welch t on ln values (timings and rates have multiplicative noise),
//!   Mann–Whitney U as a robustness column. Holm over every (cell, metric) test of the
//!   comparison.
//! - Change: ratio of medians (current / baseline) − 1 with a percentile bootstrap CI at
//!   level 1 − 2α (so each end is a one-sided 1 − α bound: "the change is at least X with
//!   95% confidence" is a one-sided claim, and a two-sided 95% interval would throw away
//!   half the power), seeded with a fixed seed so the same inputs always give the same
//!   verdict.
//! - Verdict: *regression* when Holm p < α and the whole CI lies beyond the metric's
//!   threshold in the bad direction; *improved* when the same holds in the good direction;
//!   *within noise* when significant but the CI is not wholly beyond the threshold; `~` when
//!   not significant; *inconclusive* when a side has fewer than [`MIN_REPS`] reps.
//!   Metrics without a configured threshold are shown for information and never fail.
//!
//! History mode compares the current run against the last K earlier runs instead (see
//! [`compare_history`]).
//!
//! Runs whose model digest, GPU (name, driver), CPU model or spec hash differ are "not
//! comparable" unless the caller allows the environment change.

use crate::record::{Phase, Record};
use crate::spec::{CompareConfig, Spec, COMPARE_METRICS};
use crate::stats::{self, StatsError};
use crate::store::{self, Manifest, StoreError, MANIFEST, RECORDS_JSONL, RECORDS_PARQUET};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Fewest reps per side for a verdict: the smallest n with an order-statistic 95% CI
/// for a median; below it an interval would be fake.
pub const MIN_REPS: usize = 6;
/// Bootstrap resamples for the CI of the change.
pub const RESAMPLES: usize = 2000;
/// Fixed bootstrap seed: verdicts are reproducible.
pub const SEED: u64 = 0x5eed_c0de;
/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_REGRESSION: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: no records.jsonl (or no records in it)", .0.display())]
    NoRecords(PathBuf),
    #[error("{}: a records.parquet file is not accepted; pass the run directory (manifest.json + records.jsonl)", .0.display())]
    ParquetInput(PathBuf),
    #[error("not comparable (use --allow-env-change to compare anyway):\n{}", list_differences(.0))]
    NotComparable(Vec<EnvDifference>),
    #[error("bad --threshold {0:?}: expected METRIC=REL with METRIC one of {metrics} and REL ≥ 0 (0.05 or 5%)", metrics = COMPARE_METRICS.join(", "))]
    BadThreshold(String),
    #[error("bad alpha {0}: must be strictly between 0 and 1")]
    BadAlpha(f64),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to save {} onto itself", .0.display())]
    SameDir(PathBuf),
    #[error("no comparable earlier run in the history directory{}", if .0.is_empty() { String::new() } else { format!(" ({})", .0) })]
    NoHistory(String),
    #[error("serialising the comparison: {0}")]
    Json(#[from] serde_json::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CompareError + '_ {
    move |source| CompareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn list_differences(d: &[EnvDifference]) -> String {
    d.iter()
        .map(|x| {
            format!(
                "  {}: baseline {:?}, current {:?}",
                x.what, x.baseline, x.current
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A compared metric: how one rep's calls become one value, and which direction is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    TtftP50,
    TtftP95,
    DecodeTps,
    E2eP50,
    E2eTps,
    ItlP50,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::TtftP50,
        Metric::TtftP95,
        Metric::DecodeTps,
        Metric::E2eP50,
        Metric::E2eTps,
        Metric::ItlP50,
    ];
    /// Always compared (the rest only when a threshold names them).
    pub const DEFAULT: [Metric; 4] = [
        Metric::TtftP50,
        Metric::TtftP95,
        Metric::DecodeTps,
        Metric::E2eP50,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::TtftP50 => "ttft_p50",
            Metric::TtftP95 => "ttft_p95",
            Metric::DecodeTps => "decode_tps",
            Metric::E2eP50 => "e2e_p50",
            Metric::E2eTps => "e2e_tps",
            Metric::ItlP50 => "itl_p50",
        }
    }

    pub fn from_name(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Latencies get worse upwards, throughputs downwards.
    pub fn higher_is_worse(self) -> bool {
        !matches!(self, Metric::DecodeTps | Metric::E2eTps)
    }

    pub fn unit(self) -> &'static str {
        if self.higher_is_worse() {
            "ms"
        } else {
            "tok/s"
        }
    }

    /// The rep's value from its calls; `None` when no call carries the needed fields.
    pub fn rep_value(self, calls: &[&Record]) -> Option<f64> {
        let pos = |v: Option<f64>| v.filter(|x| x.is_finite() && *x > 0.0);
        let pct = |xs: Vec<f64>, p: f64| stats::percentile(&xs, p).ok();
        let v = match self {
            Metric::TtftP50 => pct(calls.iter().filter_map(|r| pos(r.ttft_ms)).collect(), 0.5),
            Metric::TtftP95 => pct(calls.iter().filter_map(|r| pos(r.ttft_ms)).collect(), 0.95),
            Metric::E2eP50 => pct(calls.iter().filter_map(|r| pos(r.e2e_ms)).collect(), 0.5),
            Metric::ItlP50 => pct(
                calls.iter().filter_map(|r| pos(r.itl_p50_ms)).collect(),
                0.5,
            ),
            Metric::DecodeTps => rate(
                calls
                    .iter()
                    .filter_map(|r| Some((r.output_tokens? as f64, pos(r.eval_ms)? / 1000.0))),
            ),
            Metric::E2eTps => rate(calls.iter().filter_map(|r| {
                let secs = (pos(r.e2e_ms)? - pos(r.ttft_ms)?) / 1000.0;
                Some((r.output_tokens? as f64, pos(Some(secs))?))
            })),
        };
        v.filter(|x| x.is_finite() && *x > 0.0)
    }
}

/// Σ tokens / Σ seconds: a rep's rate weighted by call length, not a mean of rates.
fn rate(parts: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let (tok, secs) = parts.fold((0.0, 0.0), |(t, s), (a, b)| (t + a, s + b));
    (secs > 0.0).then(|| tok / secs)
}

/// Alpha and thresholds in force, after the spec's `[compare]` table and the flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub alpha: f64,
    pub thresholds: BTreeMap<String, f64>,
    pub allow_env_change: bool,
}

impl Default for Settings {
    fn default() -> Self {
        let c = CompareConfig::default();
        Settings {
            alpha: c.alpha,
            thresholds: c.thresholds,
            allow_env_change: false,
        }
    }
}

impl Settings {
    /// The current run's `[compare]` table (from the spec text in its manifest); defaults
    /// with a warning when the manifest holds no parseable spec.
    pub fn from_manifest(m: &Manifest) -> (Settings, Option<String>) {
        if m.spec.trim().is_empty() {
            return (
                Settings::default(),
                Some("the current manifest holds no spec text: default thresholds".into()),
            );
        }
        match Spec::parse(Path::new(&m.spec_file), &m.spec) {
            Ok(spec) => (
                Settings {
                    alpha: spec.compare.alpha,
                    thresholds: spec.compare.thresholds,
                    allow_env_change: false,
                },
                None,
            ),
            Err(e) => (
                Settings::default(),
                Some(format!(
                    "the current manifest's spec does not parse ({e}): default thresholds"
                )),
            ),
        }
    }

    /// Applies `--alpha` and `--threshold METRIC=REL` flags (REL as 0.05 or 5%).
    pub fn apply_flags(
        &mut self,
        alpha: Option<f64>,
        thresholds: &[String],
    ) -> Result<(), CompareError> {
        if let Some(a) = alpha {
            if !(a > 0.0 && a < 1.0) {
                return Err(CompareError::BadAlpha(a));
            }
            self.alpha = a;
        }
        for t in thresholds {
            let (m, v) = parse_threshold(t)?;
            self.thresholds.insert(m, v);
        }
        Ok(())
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut set: BTreeSet<Metric> = Metric::DEFAULT.into_iter().collect();
        set.extend(self.thresholds.keys().filter_map(|k| Metric::from_name(k)));
        set.into_iter().collect()
    }
}

/// `ttft_p50=0.05` or `ttft_p50=5%`.
pub fn parse_threshold(s: &str) -> Result<(String, f64), CompareError> {
    let bad = || CompareError::BadThreshold(s.to_string());
    let (m, v) = s.split_once('=').ok_or_else(bad)?;
    let m = m.trim();
    if !COMPARE_METRICS.contains(&m) {
        return Err(bad());
    }
    let v = v.trim();
    let x = match v.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => v.parse::<f64>().map_err(|_| bad())?,
    };
    if !(x.is_finite() && x >= 0.0) {
        return Err(bad());
    }
    Ok((m.to_string(), x))
}

/// A loaded run (or baseline directory).
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub records: Vec<Record>,
    /// A torn last line was skipped (crash mid-write).
    pub torn_tail: bool,
}

impl RunData {
    pub fn load(dir: &Path) -> Result<RunData, CompareError> {
        if dir.is_file() && dir.extension().is_some_and(|e| e == "parquet") {
            return Err(CompareError::ParquetInput(dir.to_path_buf()));
        }
        let manifest = Manifest::read(dir)?;
        let read = store::read_records(&dir.join(RECORDS_JSONL))?;
        if read.records.is_empty() {
            return Err(CompareError::NoRecords(dir.to_path_buf()));
        }
        Ok(RunData {
            dir: dir.to_path_buf(),
            manifest,
            records: read.records,
            torn_tail: read.torn_tail.is_some(),
        })
    }
}

/// One way two runs' environments differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvDifference {
    pub what: String,
    pub baseline: String,
    pub current: String,
}

/// Differences that make timings incomparable: model digest, GPU name/driver, CPU model,
/// spec hash.
pub fn env_differences(b: &Manifest, c: &Manifest) -> Vec<EnvDifference> {
    let gpus = |m: &Manifest| {
        let g: Vec<String> = m
            .host
            .gpus
            .iter()
            .map(|g| format!("{} (driver {})", g.name, g.driver))
            .collect();
        if g.is_empty() {
            "none".to_string()
        } else {
            g.join(", ")
        }
    };
    let digest = |m: &Manifest| {
        m.backend
            .model_digest
            .clone()
            .unwrap_or_else(|| "unknown".into())
    };
    let pairs = [
        ("model digest", digest(b), digest(c)),
        ("GPU", gpus(b), gpus(c)),
        (
            "CPU model",
            b.host.cpu_model.clone(),
            c.host.cpu_model.clone(),
        ),
        ("spec hash", b.spec_hash.clone(), c.spec_hash.clone()),
    ];
    pairs
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(w, x, y)| EnvDifference {
            what: w.to_string(),
            baseline: x,
            current: y,
        })
        .collect()
}

/// What a (cell, metric) comparison concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regression,
    WithinNoise,
    Inconclusive,
    NoChange,
    Improved,
}

/// One row of the comparison: a cell × metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Cell id, with the phase for pair cells (`<cell> [concurrent]`).
    pub cell: String,
    pub metric: Metric,
    /// Relative threshold; `None` = informational, never fails.
    pub threshold: Option<f64>,
    pub n_baseline: usize,
    pub n_current: usize,
    pub baseline_median: Option<f64>,
    pub current_median: Option<f64>,
    /// Ratio of medians − 1.
    pub change: Option<f64>,
    pub ci_lower: Option<f64>,
    pub ci_upper: Option<f64>,
    /// Unadjusted p: Welch t on ln values (two runs) or the prediction-interval t test
    /// (history).
    pub p: Option<f64>,
    pub p_holm: Option<f64>,
    /// Mann–Whitney U (robustness), unadjusted.
    pub p_mwu: Option<f64>,
    pub verdict: Verdict,
    /// Why inconclusive, or another remark.
    pub note: Option<String>,
}

impl Row {
    /// A regression that fails the job (a threshold is set).
    pub fn fails(&self) -> bool {
        self.verdict == Verdict::Regression && self.threshold.is_some()
    }

    /// Change signed so that positive is worse (for sorting worst first).
    fn badness(&self) -> f64 {
        let c = self.change.unwrap_or(0.0);
        if self.metric.higher_is_worse() {
            c
        } else {
            -c
        }
    }

    pub fn verdict_label(&self) -> String {
        let info = self.threshold.is_none();
        match self.verdict {
            Verdict::Regression if info => "worse (info)".to_string(),
            Verdict::Improved if info => "better (info)".to_string(),
            Verdict::WithinNoise if info => "within noise (info)".to_string(),
            Verdict::NoChange if info => "~ (info)".to_string(),
            Verdict::Regression => "❌ regression".to_string(),
            Verdict::Improved => "✅ improved".to_string(),
            Verdict::WithinNoise => "within noise".to_string(),
            Verdict::NoChange => "~".to_string(),
            Verdict::Inconclusive => format!("inconclusive (need ≥ {MIN_REPS} reps per side)"),
        }
    }
}

/// A run as the summary describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub run_id: String,
    pub experiment: String,
    pub environment: String,
    pub model: String,
    pub model_digest: Option<String>,
    pub spec_hash: String,
    pub git_commit: Option<String>,
    pub used_calls: usize,
    pub excluded_warmup: usize,
    pub excluded_failed: usize,
    pub excluded_cold: usize,
}

/// What the current run was compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// One baseline run: reps against reps.
    TwoRuns,
    /// The last K earlier runs: per-run medians, t prediction interval on ln values.
    History { runs: Vec<String> },
}

/// The whole comparison: what the Markdown, JSON and JUnit outputs render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub method: Method,
    /// The baseline run (history mode: the newest earlier run, for its environment).
    pub baseline: RunSummary,
    pub current: RunSummary,
    pub alpha: f64,
    pub thresholds: BTreeMap<String, f64>,
    pub min_reps: usize,
    pub resamples: usize,
    pub seed: u64,
    /// Environment differences that were allowed (`--allow-env-change`).
    pub env_differences: Vec<EnvDifference>,
    /// Worst first.
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// Rep values per comparison cell, plus exclusion counts.
struct Grouped {
    reps: BTreeMap<String, BTreeMap<u32, Vec<Record>>>,
    summary: RunSummary,
}

fn cell_key(r: &Record) -> String {
    match r.phase {
        Phase::Single => r.cell_id.clone(),
        p => format!("{} [{}]", r.cell_id, p.as_str()),
    }
}

fn group(run: &RunData) -> Grouped {
    let m = &run.manifest;
    let mut summary = RunSummary {
        dir: run.dir.clone(),
        run_id: m.run_id.clone(),
        experiment: m.experiment.clone(),
        environment: m.host.fingerprint(),
        model: run
            .records
            .first()
            .map(|r| r.model.clone())
            .unwrap_or_default(),
        model_digest: m.backend.model_digest.clone(),
        spec_hash: m.spec_hash.clone(),
        git_commit: m.git_commit.clone(),
        used_calls: 0,
        excluded_warmup: 0,
        excluded_failed: 0,
        excluded_cold: 0,
    };
    let mut reps: BTreeMap<String, BTreeMap<u32, Vec<Record>>> = BTreeMap::new();
    for r in &run.records {
        // Every cell seen gets a row, even when all its calls failed.
        let cell = reps.entry(cell_key(r)).or_default();
        if r.warmup {
            summary.excluded_warmup += 1;
        } else if !r.ok {
            summary.excluded_failed += 1;
        } else if r.cold {
            summary.excluded_cold += 1;
        } else {
            summary.used_calls += 1;
            cell.entry(r.rep).or_default().push(r.clone());
        }
    }
    Grouped { reps, summary }
}

fn values(reps: Option<&BTreeMap<u32, Vec<Record>>>, metric: Metric) -> Vec<f64> {
    reps.map(|reps| {
        reps.values()
            .filter_map(|calls| metric.rep_value(&calls.iter().collect::<Vec<_>>()))
            .collect()
    })
    .unwrap_or_default()
}

fn median(xs: &[f64]) -> Option<f64> {
    stats::percentile(xs, 0.5).ok()
}

/// Compares two loaded runs. Fails with [`CompareError::NotComparable`] when the
/// environments differ and `settings.allow_env_change` is false.
pub fn compare(
    baseline: &RunData,
    current: &RunData,
    settings: &Settings,
) -> Result<Comparison, CompareError> {
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(CompareError::BadAlpha(settings.alpha));
    }
    let diffs = env_differences(&baseline.manifest, &current.manifest);
    if !diffs.is_empty() && !settings.allow_env_change {
        return Err(CompareError::NotComparable(diffs));
    }
    let b = group(baseline);
    let c = group(current);
    let mut notes = Vec::new();
    for run in [baseline, current] {
        if run.torn_tail {
            notes.push(format!(
                "{}: a torn last record line (crash mid-write) was skipped",
                run.dir.display()
            ));
        }
    }
    let cells: BTreeSet<&String> = b.reps.keys().chain(c.reps.keys()).collect();
    for cell in &cells {
        if !b.reps.contains_key(*cell) {
            notes.push(format!("cell {cell} is new (not in the baseline)"));
        } else if !c.reps.contains_key(*cell) {
            notes.push(format!("cell {cell} is missing from the current run"));
        }
    }
    let mut rows = Vec::new();
    for cell in cells {
        for metric in settings.metrics() {
            let xb = values(b.reps.get(cell), metric);
            let xc = values(c.reps.get(cell), metric);
            if xb.is_empty() && xc.is_empty() && !Metric::DEFAULT.contains(&metric) {
                continue;
            }
            rows.push(test_row(cell, metric, &xb, &xc, settings));
        }
    }
    let rows = finish(rows, settings.alpha);
    Ok(Comparison {
        method: Method::TwoRuns,
        baseline: b.summary,
        current: c.summary,
        alpha: settings.alpha,
        thresholds: settings.thresholds.clone(),
        min_reps: MIN_REPS,
        resamples: RESAMPLES,
        seed: SEED,
        env_differences: diffs,
        rows,
        notes,
    })
}

/// Holm over every test actually made in this comparison, verdicts, worst first.
fn finish(mut rows: Vec<Row>, alpha: f64) -> Vec<Row> {
    let ps: Vec<f64> = rows.iter().map(|r| r.p.unwrap_or(f64::NAN)).collect();
    let adjusted = stats::holm(&ps);
    for (row, p) in rows.iter_mut().zip(adjusted) {
        if row.p.is_some() {
            row.p_holm = Some(p);
            row.verdict = decide(row, alpha);
        }
    }
    rows.sort_by(|a, b| {
        b.fails()
            .cmp(&a.fails())
            .then(a.verdict.cmp(&b.verdict))
            .then(b.badness().total_cmp(&a.badness()))
            .then(a.cell.cmp(&b.cell))
            .then(a.metric.cmp(&b.metric))
    });
    rows
}

/// Fewest earlier runs for a history verdict (a prediction interval needs a spread).
pub const MIN_HISTORY: usize = 3;

/// Loads the newest `last` runs under `dir` (each subdirectory holding a manifest), oldest
/// first, leaving out `current` itself. Unreadable runs are skipped with a note.
pub fn load_history(
    dir: &Path,
    last: usize,
    current: &Path,
) -> Result<(Vec<RunData>, Vec<String>), CompareError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    let me = std::fs::canonicalize(current).ok();
    let mut notes = Vec::new();
    let mut runs = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        if !p.join(MANIFEST).exists() || std::fs::canonicalize(&p).ok() == me {
            continue;
        }
        match RunData::load(&p) {
            Ok(r) => runs.push(r),
            Err(err) => notes.push(format!("history: skipped {} ({err})", p.display())),
        }
    }
    runs.sort_by(|a, b| {
        (&a.manifest.started_at, &a.manifest.run_id)
            .cmp(&(&b.manifest.started_at, &b.manifest.run_id))
    });
    let skip = runs.len().saturating_sub(last);
    Ok((runs.split_off(skip), notes))
}

/// Compares the current run against earlier runs: per (cell, metric) the earlier runs'
/// medians of rep values, on ln scale, give a mean m and sd s; the current median y is a
/// regression when the t test of ln y against the prediction distribution
/// (t = (ln y − m) / (s·√(1 + 1/K)), K − 1 df) is Holm-significant and the whole
/// 1 − α prediction-interval range of the change lies beyond the threshold. Earlier runs in
/// a different environment are left out (with a note) unless the change is allowed.
pub fn compare_history(
    history: &[RunData],
    current: &RunData,
    settings: &Settings,
) -> Result<Comparison, CompareError> {
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(CompareError::BadAlpha(settings.alpha));
    }
    let mut notes = Vec::new();
    let mut diffs_seen = Vec::new();
    let mut used = Vec::new();
    for h in history {
        let d = env_differences(&h.manifest, &current.manifest);
        if d.is_empty() || settings.allow_env_change {
            diffs_seen.extend(
                d.into_iter()
                    .filter(|x| !diffs_seen.contains(x))
                    .collect::<Vec<_>>(),
            );
            used.push(h);
        } else {
            notes.push(format!(
                "history: left out {} (not comparable: {})",
                h.manifest.run_id,
                d.iter()
                    .map(|x| x.what.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let Some(newest) = used.last() else {
        return Err(CompareError::NoHistory(notes.join("; ")));
    };
    let c = group(current);
    let groups: Vec<Grouped> = used.iter().map(|h| group(h)).collect();
    let mut baseline = group(newest).summary;
    baseline.run_id = format!("last {} runs", used.len());
    let mut rows = Vec::new();
    for cell in c.reps.keys() {
        for metric in settings.metrics() {
            let xc = values(c.reps.get(cell), metric);
            let meds: Vec<f64> = groups
                .iter()
                .filter_map(|g| median(&values(g.reps.get(cell), metric)))
                .collect();
            if xc.is_empty() && meds.is_empty() && !Metric::DEFAULT.contains(&metric) {
                continue;
            }
            rows.push(history_row(cell, metric, &meds, &xc, settings));
        }
    }
    Ok(Comparison {
        method: Method::History {
            runs: used.iter().map(|h| h.manifest.run_id.clone()).collect(),
        },
        baseline,
        current: c.summary,
        alpha: settings.alpha,
        thresholds: settings.thresholds.clone(),
        min_reps: MIN_REPS,
        resamples: 0,
        seed: 0,
        env_differences: diffs_seen,
        rows: finish(rows, settings.alpha),
        notes,
    })
}

impl Row {
    /// A row with the medians and the change filled in and no test yet (inconclusive).
    /// `baseline` is (n, median) of the baseline side.
    fn untested(
        cell: &str,
        metric: Metric,
        s: &Settings,
        baseline: (usize, Option<f64>),
        current: &[f64],
    ) -> Row {
        let (n_baseline, baseline_median) = baseline;
        let current_median = median(current);
        Row {
            cell: cell.to_string(),
            metric,
            threshold: s.thresholds.get(metric.name()).copied(),
            n_baseline,
            n_current: current.len(),
            baseline_median,
            current_median,
            change: baseline_median
                .zip(current_median)
                .map(|(b, c)| c / b - 1.0),
            ci_lower: None,
            ci_upper: None,
            p: None,
            p_holm: None,
            p_mwu: None,
            verdict: Verdict::Inconclusive,
            note: None,
        }
    }
}

fn history_row(cell: &str, metric: Metric, meds: &[f64], xc: &[f64], s: &Settings) -> Row {
    let logs: Vec<f64> = meds.iter().map(|v| v.ln()).collect();
    let k = logs.len();
    let m = logs.iter().sum::<f64>() / k.max(1) as f64;
    let mut row = Row::untested(cell, metric, s, (k, (k > 0).then(|| m.exp())), xc);
    if k < MIN_HISTORY || xc.len() < MIN_REPS {
        row.note = Some(format!(
            "need ≥ {MIN_HISTORY} earlier runs and ≥ {MIN_REPS} current reps, have {k} / {}",
            xc.len()
        ));
        return row;
    }
    let Some(y) = row.current_median.map(f64::ln) else {
        return row;
    };
    let sd = (logs.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (k as f64 - 1.0)).sqrt();
    let se = sd * (1.0 + 1.0 / k as f64).sqrt();
    if se == 0.0 {
        row.note = Some("earlier runs all identical: no spread for a prediction interval".into());
        return row;
    }
    let Ok(dist) = StudentsT::new(0.0, 1.0, k as f64 - 1.0) else {
        return row;
    };
    let t = (y - m) / se;
    let q = dist.inverse_cdf(1.0 - s.alpha / 2.0);
    row.p = Some((2.0 * dist.sf(t.abs())).min(1.0));
    row.ci_lower = Some((y - m - q * se).exp() - 1.0);
    row.ci_upper = Some((y - m + q * se).exp() - 1.0);
    row
}

/// Test statistics of one (cell, metric); the verdict is set after Holm.
fn test_row(cell: &str, metric: Metric, xb: &[f64], xc: &[f64], s: &Settings) -> Row {
    let mut row = Row::untested(cell, metric, s, (xb.len(), median(xb)), xc);
    if xb.len() < MIN_REPS || xc.len() < MIN_REPS {
        row.note = Some(format!(
            "need ≥ {MIN_REPS} reps per side, have {} / {}",
            xb.len(),
            xc.len()
        ));
        return row;
    }
    let welch = stats::welch_t_log(xc, xb);
    let boot = stats::bootstrap_ratio_ci(
        xc,
        xb,
        stats::Statistic::Median,
        1.0 - 2.0 * s.alpha,
        RESAMPLES,
        SEED,
    );
    row.p_mwu = stats::mann_whitney_u(xc, xb).ok().map(|m| m.p);
    match (welch, boot) {
        (Ok(w), Ok(ci)) => {
            row.p = Some(w.p);
            row.ci_lower = Some(ci.lower - 1.0);
            row.ci_upper = Some(ci.upper - 1.0);
        }
        (Err(StatsError::Degenerate { .. }), _) if row.change == Some(0.0) => {
            // Identical constant values on both sides: no change, nothing to test.
            row.verdict = Verdict::NoChange;
            row.note = Some("all values identical".into());
        }
        (Err(e), _) | (_, Err(e)) => row.note = Some(e.to_string()),
    }
    row
}

fn decide(row: &Row, alpha: f64) -> Verdict {
    let (Some(p), Some(lo), Some(hi)) = (row.p_holm, row.ci_lower, row.ci_upper) else {
        return row.verdict;
    };
    if p >= alpha {
        return Verdict::NoChange;
    }
    let th = row.threshold.unwrap_or(0.0);
    // Map the CI so that positive = worse.
    let (worse_lo, worse_hi) = if row.metric.higher_is_worse() {
        (lo, hi)
    } else {
        (-hi, -lo)
    };
    if worse_lo > th {
        Verdict::Regression
    } else if worse_hi < -th {
        Verdict::Improved
    } else {
        Verdict::WithinNoise
    }
}

impl Comparison {
    /// Regressions that fail the job.
    pub fn regressions(&self) -> usize {
        self.rows.iter().filter(|r| r.fails()).count()
    }

    pub fn exit_code(&self) -> i32 {
        if self.regressions() > 0 {
            EXIT_REGRESSION
        } else {
            EXIT_OK
        }
    }

    /// "✅ no regression" / "❌ N regressions", plus how many rows could not be judged.
    pub fn headline(&self) -> String {
        let mut h = match self.regressions() {
            0 => "✅ no regression".to_string(),
            1 => "❌ 1 regression".to_string(),
            n => format!("❌ {n} regressions"),
        };
        let open = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Inconclusive)
            .count();
        if open > 0 {
            let _ = write!(h, " ({open} of {} inconclusive)", self.rows.len());
        }
        h
    }

    /// Markdown for a CI job summary: verdict line, table worst first, footer.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## sweep compare: {}\n", self.headline());
        let _ = writeln!(
            s,
            "baseline `{}` ({}) → current `{}` ({}), experiment `{}`\n",
            self.baseline.run_id,
            self.baseline.dir.display(),
            self.current.run_id,
            self.current.dir.display(),
            self.current.experiment
        );
        if !self.env_differences.is_empty() {
            let _ = writeln!(
                s,
                "> ⚠️ **environment changed** (compared anyway, `--allow-env-change`):"
            );
            for d in &self.env_differences {
                let _ = writeln!(
                    s,
                    "> - {}: baseline `{}`, current `{}`",
                    d.what, d.baseline, d.current
                );
            }
            s.push('\n');
        }
        s.push_str("| cell | metric | baseline median | current median | Δ% [CI] | p (Holm) | verdict | p (MWU) |\n");
        s.push_str("|---|---|---:|---:|---|---:|---|---:|\n");
        for r in &self.rows {
            let med = |v: Option<f64>| match v {
                Some(x) if r.metric.higher_is_worse() => format!("{x:.1} {}", r.metric.unit()),
                Some(x) => format!("{x:.2} {}", r.metric.unit()),
                None => "—".into(),
            };
            let delta = match (r.change, r.ci_lower, r.ci_upper) {
                (Some(c), Some(lo), Some(hi)) => {
                    format!(
                        "{:+.1}% [{:+.1}, {:+.1}]",
                        c * 100.0,
                        lo * 100.0,
                        hi * 100.0
                    )
                }
                (Some(c), _, _) => format!("{:+.1}% [no CI]", c * 100.0),
                _ => "—".into(),
            };
            let p = |v: Option<f64>| v.map(fmt_p).unwrap_or_else(|| "—".into());
            let mut verdict = r.verdict_label();
            if let Some(n) = &r.note {
                if r.verdict == Verdict::Inconclusive {
                    verdict = format!("inconclusive ({n})");
                }
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                md_escape(&r.cell),
                r.metric.name(),
                med(r.baseline_median),
                med(r.current_median),
                delta,
                p(r.p_holm),
                verdict,
                p(r.p_mwu)
            );
        }
        s.push('\n');
        let tests = self.rows.iter().filter(|r| r.p.is_some()).count();
        let th: Vec<String> = self
            .thresholds
            .iter()
            .map(|(k, v)| format!("{k} {:.0}%", v * 100.0))
            .collect();
        let n_range = |f: fn(&Row) -> usize| {
            let v: Vec<usize> = self.rows.iter().map(f).collect();
            match (v.iter().min(), v.iter().max()) {
                (Some(a), Some(b)) if a == b => a.to_string(),
                (Some(a), Some(b)) => format!("{a}–{b}"),
                _ => "0".into(),
            }
        };
        let _ =
            writeln!(
            s,
            "α = {} (Holm over {tests} tests); thresholds: {} (other metrics are informational); \
n per side (reps): baseline {}, current {}; need ≥ {} reps per side for a verdict.  ",
            self.alpha,
            if th.is_empty() { "none".into() } else { th.join(", ") },
            n_range(|r| r.n_baseline),
            n_range(|r| r.n_current),
            self.min_reps
        );
        match &self.method {
            Method::TwoRuns => {
                let _ = writeln!(
                    s,
                    "Test: Welch t on ln(rep values), two-sided; Mann–Whitney U as a robustness column. \
Δ = ratio of medians (current / baseline) − 1, {:.0}% percentile bootstrap CI ({} resamples, seed {:#x}). \
Regression = Holm p < α and the whole CI beyond the threshold.  ",
                    (1.0 - self.alpha) * 100.0,
                    self.resamples,
                    self.seed
                );
            }
            Method::History { runs } => {
                let _ = writeln!(
                    s,
                    "History mode: against the last {} runs ({}); baseline median = geometric mean of their per-run medians. \
Test: t prediction interval on ln(per-run medians), K − 1 df, two-sided; Δ [range] = current median vs the \
{:.0}% prediction interval. Regression = Holm p < α and the whole range beyond the threshold.  ",
                    runs.len(),
                    runs.join(", "),
                    (1.0 - self.alpha) * 100.0
                );
            }
        }
        for (label, r) in [("baseline", &self.baseline), ("current", &self.current)] {
            let _ = writeln!(
                s,
                "{label}: {} · model {} (digest {}) · spec {} · commit {} · {} calls used, excluded {} warm-up, {} failed, {} cold.  ",
                r.environment,
                r.model,
                r.model_digest.as_deref().unwrap_or("unknown"),
                short(&r.spec_hash),
                r.git_commit.as_deref().unwrap_or("unknown"),
                r.used_calls,
                r.excluded_warmup,
                r.excluded_failed,
                r.excluded_cold
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "Note: {n}  ");
        }
        s
    }

    /// JUnit XML: one testcase per cell × metric; a failure element for each regression,
    /// skipped for inconclusive rows.
    pub fn to_junit(&self) -> String {
        let failures = self.regressions();
        let skipped = self
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Inconclusive)
            .count();
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            s,
            "<testsuites name=\"sweep compare\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            self.rows.len()
        );
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
            xml_escape(&format!("sweep compare {}", self.current.experiment)),
            self.rows.len()
        );
        for r in &self.rows {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                xml_escape(&r.cell),
                r.metric.name()
            );
            let detail = format!(
                "{}: baseline {}, current {}, change {}, CI [{}, {}], p (Holm) {}, threshold {}",
                r.verdict_label(),
                opt(r.baseline_median),
                opt(r.current_median),
                pct(r.change),
                pct(r.ci_lower),
                pct(r.ci_upper),
                r.p_holm.map(fmt_p).unwrap_or_else(|| "—".into()),
                pct(r.threshold)
            );
            if r.fails() {
                let _ = writeln!(
                    s,
                    ">\n      <failure message=\"{}\" type=\"regression\">{}</failure>\n    </testcase>",
                    xml_escape(&format!("{} regressed", r.metric.name())),
                    xml_escape(&detail)
                );
            } else if r.verdict == Verdict::Inconclusive {
                let _ = writeln!(
                    s,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml_escape(r.note.as_deref().unwrap_or("inconclusive"))
                );
            } else {
                let _ = writeln!(
                    s,
                    ">\n      <system-out>{}</system-out>\n    </testcase>",
                    xml_escape(&detail)
                );
            }
        }
        s.push_str("  </testsuite>\n</testsuites>\n");
        s
    }
}

/// Markdown for a comparison that could not be made (so the CI summary says why).
pub fn not_comparable_markdown(diffs: &[EnvDifference]) -> String {
    let mut s = String::from("## sweep compare: ⚠️ not comparable\n\n");
    s.push_str(
        "The runs' environments differ (rerun with `--allow-env-change` to compare anyway):\n\n",
    );
    for d in diffs {
        let _ = writeln!(
            s,
            "- {}: baseline `{}`, current `{}`",
            d.what, d.baseline, d.current
        );
    }
    s
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into())
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:+.1}%", x * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// What the current run is compared against.
#[derive(Debug, Clone)]
pub enum Against {
    /// A baseline run or `sweep baseline save` directory.
    Run(PathBuf),
    /// The last `last` runs under `dir`.
    History { dir: PathBuf, last: usize },
}

impl Default for Against {
    fn default() -> Self {
        Against::Run(PathBuf::new())
    }
}

/// What the `sweep compare` command was asked to do.
#[derive(Debug, Clone, Default)]
pub struct CompareRequest {
    pub against: Against,
    pub current: PathBuf,
    pub alpha: Option<f64>,
    pub thresholds: Vec<String>,
    pub allow_env_change: bool,
    pub markdown: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

/// Loads both runs, compares them and writes the requested files. A "not comparable"
/// outcome still writes its explanation to the Markdown file before failing.
pub fn run(req: &CompareRequest) -> Result<(Comparison, Vec<String>), CompareError> {
    // Baseline first, so a bad baseline path is the error reported.
    let baseline = match &req.against {
        Against::Run(b) => Some(RunData::load(b)?),
        Against::History { .. } => None,
    };
    let current = RunData::load(&req.current)?;
    let (mut settings, warning) = Settings::from_manifest(&current.manifest);
    settings.apply_flags(req.alpha, &req.thresholds)?;
    settings.allow_env_change = req.allow_env_change;
    let mut warnings: Vec<String> = warning.into_iter().collect();
    let result = match (&req.against, &baseline) {
        (_, Some(b)) => compare(b, &current, &settings),
        (Against::Run(b), None) => compare(&RunData::load(b)?, &current, &settings),
        (Against::History { dir, last }, None) => {
            let (history, notes) = load_history(dir, *last, &req.current)?;
            warnings.extend(notes);
            compare_history(&history, &current, &settings)
        }
    };
    let cmp = match result {
        Ok(c) => c,
        Err(CompareError::NotComparable(d)) => {
            if let Some(p) = &req.markdown {
                write_file(p, &not_comparable_markdown(&d))?;
            }
            return Err(CompareError::NotComparable(d));
        }
        Err(e) => return Err(e),
    };
    if let Some(p) = &req.markdown {
        write_file(p, &cmp.to_markdown())?;
    }
    if let Some(p) = &req.json {
        write_file(p, &serde_json::to_string_pretty(&cmp)?)?;
    }
    if let Some(p) = &req.junit {
        write_file(p, &cmp.to_junit())?;
    }
    Ok((cmp, warnings))
}

fn write_file(path: &Path, text: &str) -> Result<(), CompareError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, text).map_err(io(path))
}

/// `sweep baseline save`: copies a run's manifest, records.jsonl and (when present)
/// records.parquet into `dir` (default `baselines/<experiment>`), replacing what was there,
/// so `sweep compare <dir> <run>` works. Each file is written to a temp name and renamed,
/// so an interrupted save never leaves a half-written baseline file.
pub fn save_baseline(run: &Path, dir: Option<&Path>) -> Result<PathBuf, CompareError> {
    let manifest = Manifest::read(run)?;
    let src_records = run.join(RECORDS_JSONL);
    if store::read_records(&src_records)?.records.is_empty() {
        return Err(CompareError::NoRecords(run.to_path_buf()));
    }
    let dest = match dir {
        Some(d) => d.to_path_buf(),
        None => Path::new("baselines").join(&manifest.experiment),
    };
    std::fs::create_dir_all(&dest).map_err(io(&dest))?;
    let same = std::fs::canonicalize(run).ok() == std::fs::canonicalize(&dest).ok();
    if same {
        return Err(CompareError::SameDir(dest));
    }
    copy_atomic(&src_records, &dest.join(RECORDS_JSONL))?;
    let parquet = run.join(RECORDS_PARQUET);
    let dest_parquet = dest.join(RECORDS_PARQUET);
    if parquet.exists() {
        copy_atomic(&parquet, &dest_parquet)?;
    } else if dest_parquet.exists() {
        // A stale parquet from an older baseline would disagree with the new records.
        std::fs::remove_file(&dest_parquet).map_err(io(&dest_parquet))?;
    }
    // Manifest last: a baseline directory is only valid once its records are in place.
    copy_atomic(&run.join(MANIFEST), &dest.join(MANIFEST))?;
    Ok(dest)
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), CompareError> {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = to.with_file_name(format!(".{name}.tmp"));
    std::fs::copy(from, &tmp).map_err(io(from))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, to).map_err(io(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ttft: f64, tokens: u64, eval_ms: f64) -> Record {
        Record {
            ok: true,
            ttft_ms: Some(ttft),
            e2e_ms: Some(ttft + eval_ms),
            output_tokens: Some(tokens),
            eval_ms: Some(eval_ms),
            ..Default::default()
        }
    }

    #[test]
    fn rep_values_follow_the_definitions() {
        let a = call(700.0, 100, 2500.0);
        let b = call(800.0, 300, 7500.0);
        let c = call(900.0, 100, 5000.0);
        let calls = vec![&a, &b, &c];
        assert_eq!(Metric::TtftP50.rep_value(&calls), Some(800.0));
        // type 7: 800 + 0.9 * 100
        assert!((Metric::TtftP95.rep_value(&calls).unwrap() - 890.0).abs() < 1e-9);
        // 500 tokens over 15 s, not the mean of per-call rates
        assert!((Metric::DecodeTps.rep_value(&calls).unwrap() - 500.0 / 15.0).abs() < 1e-9);
        let none = Record::default();
        assert_eq!(Metric::DecodeTps.rep_value(&[&none]), None);
    }

    #[test]
    fn thresholds_parse_and_reject() {
        assert_eq!(
            parse_threshold("ttft_p50=0.07").unwrap(),
            ("ttft_p50".into(), 0.07)
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

    #[test]
    fn verdict_rules() {
        let mut r = Row {
            cell: "c".into(),
            metric: Metric::DecodeTps,
            threshold: Some(0.03),
            n_baseline: 8,
            n_current: 8,
            baseline_median: None,
            current_median: None,
            change: Some(-0.1),
            ci_lower: Some(-0.12),
            ci_upper: Some(-0.05),
            p: Some(0.001),
            p_holm: Some(0.001),
            p_mwu: None,
            verdict: Verdict::Inconclusive,
            note: None,
        };
        assert_eq!(decide(&r, 0.05), Verdict::Regression);
        r.ci_upper = Some(-0.01);
        assert_eq!(decide(&r, 0.05), Verdict::WithinNoise);
        r.metric = Metric::TtftP50;
        assert_eq!(decide(&r, 0.05), Verdict::WithinNoise);
        r.ci_upper = Some(-0.05);
        assert_eq!(decide(&r, 0.05), Verdict::Improved);
        r.p_holm = Some(0.2);
        assert_eq!(decide(&r, 0.05), Verdict::NoChange);
    }

    #[test]
    fn history_prediction_interval_matches_closed_form() {
        // K = 3 → df = 2, where the t survival function is 1/2 − t/(2√(2 + t²)).
        let meds = [0.0f64, 0.1, 0.2].map(f64::exp);
        let cur = [0.4f64.exp(); 6];
        let row = history_row("c", Metric::TtftP50, &meds, &cur, &Settings::default());
        let se = 0.1 * (4.0f64 / 3.0).sqrt();
        let t = 0.3 / se;
        let p = 1.0 - t / (2.0 + t * t).sqrt();
        assert!((row.p.unwrap() - p).abs() < 1e-9, "{row:?}");
        let q = 4.302_652_729_911_275; // t(0.975, 2)
        assert!((row.ci_lower.unwrap() - ((0.3 - q * se).exp() - 1.0)).abs() < 1e-6);
        assert!((row.ci_upper.unwrap() - ((0.3 + q * se).exp() - 1.0)).abs() < 1e-6);
        assert!((row.change.unwrap() - (0.3f64.exp() - 1.0)).abs() < 1e-9);
        // Two earlier runs are too few.
        let few = history_row("c", Metric::TtftP50, &meds[..2], &cur, &Settings::default());
        assert_eq!(few.verdict, Verdict::Inconclusive);
        assert!(few.p.is_none());
    }

    #[test]
    fn pair_phases_are_separate_cells() {
        let mut recs = Vec::new();
        for phase in [Phase::Concurrent, Phase::Sequential] {
            for rep in 0..6 {
                recs.push(Record {
                    cell_id: "pair".into(),
                    phase,
                    rep,
                    ..call(700.0, 128, 3200.0)
                });
            }
        }
        let run = RunData {
            dir: PathBuf::from("r"),
            manifest: Manifest::default(),
            records: recs,
            torn_tail: false,
        };
        let cmp = compare(&run, &run, &Settings::default()).unwrap();
        let cells: BTreeSet<&str> = cmp.rows.iter().map(|r| r.cell.as_str()).collect();
        assert_eq!(
            cells.into_iter().collect::<Vec<_>>(),
            ["pair [concurrent]", "pair [sequential]"]
        );
        // Constant identical values: "no change", not an error and not a regression.
        assert!(
            cmp.rows.iter().all(|r| r.verdict == Verdict::NoChange),
            "{:?}",
            cmp.rows
        );
        assert_eq!(cmp.exit_code(), EXIT_OK);
    }

    #[test]
    fn xml_escapes() {
        assert_eq!(xml_escape("a<b&\"c\"\u{1}"), "a&lt;b&amp;&quot;c&quot;");
    }
}
