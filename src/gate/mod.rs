//! The regression gate (`sweep compare`): tonight's run against the nights before it, cell
//! by cell and metric by metric, with a verdict and an exit code that tells a nightly job
//! what happened. It computes; [`crate::report`] renders (Markdown summary, JSON, JUnit).
//!
//! The rule (the same words are in README, `methods.md` and `shared/design.md`): each
//! gating row (cell × metric with a tolerance T) gets one of three outcomes:
//! - **regression**: the one-sided test of "the change in the bad direction is at most T"
//!   rejects at α after Holm over the gating family: the data show a change worse than T;
//! - **pass**: the one-sided test of "the change in the bad direction is at least T"
//!   rejects at α (non-inferiority: the bad-side bound is below T); the gate passes only
//!   when every row passes, an intersection–union test that needs no correction;
//! - **undecided**: neither (exit 3, with the reps that would decide it). "Not significant"
//!   is undecided, never a pass.
//!
//! The model ([`crate::stats::nightly`]): ln of a rep's value = level + night offset + rep
//! noise. With ≥ [`MIN_HISTORY`] earlier nights, the between-night variance is estimated
//! from them (every compared night, not only passes; past level shifts and a slow trend
//! removed first) and enters every standard error, and tonight is tested twice, both tests
//! in the Holm family: against the **recent level** (the mean of the nights since the
//! history's last level shift: a step) and against the **anchor** (nights fixed in the
//! baseline directory's `anchor` file, by default its first three; a passing night never
//! moves it: a slow drift). With fewer nights, tonight is tested against one baseline night
//! with Welch's t on ln values, and the summary says the false-alarm rate then assumes no
//! night-to-night variance.
//!
//! Besides the timings, every cell's share of failed (timed-out included) and of cold calls
//! is gated: above `[compare] max_failed_share` and higher than the reference by a one-sided
//! Fisher exact test at α is a regression. Metrics that scale with the generated length
//! (`e2e_ms`, `eval_ms`) are not judged between nights whose median output lengths differ
//! by more than [`WORKLOAD_TOLERANCE`].

pub mod baseline;
mod capacity;
mod history;
mod judge;
pub mod oc;
pub mod power;
mod settings;
mod shares;

pub use capacity::CapacityRow;
pub use history::{load_history, Nights, ANCHOR_FILE, ANCHOR_NIGHTS, DEFAULT_LAST, MIN_HISTORY};
pub use judge::{compare, compare_nights, CHANGE_POINT_ALPHA, WORKLOAD_TOLERANCE};
pub use settings::{parse_threshold, Settings};
pub use shares::{ShareKind, ShareRow};

use crate::analysis::samples::{self, Grouping, Samples};
use crate::metrics::Metric;
use crate::stats::engine::{Params, TwoSample};
use crate::stats::nightly::{Call, Change, NightVariance};
use crate::store::{self, Manifest, StoreError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The rule, in the words README, `methods.md` and the design use.
pub const RULE: &str = "Each gating row (cell × metric with a tolerance T) is regression when \
the one-sided test of \"the change in the bad direction is at most T\" rejects at α after Holm \
over the gating tests (the data show a change worse than T), pass when the one-sided test of \
\"the change in the bad direction is at least T\" rejects at α (the bad-side bound is below T; \
the gate passes only when every row does, an intersection–union test), and undecided \
otherwise: \"not significant\" is never a pass.";

/// Exit codes of `sweep compare` (and the rest of the CLI; see `cli::exit`).
pub const EXIT_OK: i32 = 0;
pub(crate) const EXIT_REGRESSION: i32 = 1;
pub(crate) const EXIT_INCONCLUSIVE: i32 = 3;

/// Where a comparison's verdict is kept inside the current run (read by `baseline save`).
pub const VERDICT_FILE: &str = "gate/verdict.json";

/// Why `sweep compare` or `sweep baseline` could not run (not a verdict: a regression or an
/// undecided comparison is an [`Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Reading a run (manifest, records) or writing the verdict or a baseline entry failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building the samples failed, or the run is a partial merge / unfinished and
    /// `--allow-partial` was not given.
    #[error(transparent)]
    Analysis(#[from] crate::analysis::AnalysisError),
    /// The run holds no records (no group to compare, or an empty log for `baseline save`).
    #[error("{}: no records", .0.display())]
    NoRecords(PathBuf),
    /// A `records.parquet` file was passed where a run directory is needed (the gate reads
    /// the manifest too).
    #[error("{}: a records.parquet file is not accepted; pass the run directory (manifest.json + records.jsonl)", .0.display())]
    ParquetInput(PathBuf),
    /// α from `--alpha` or `[compare] alpha` is not strictly between 0 and 1.
    #[error("bad alpha {0}: must be strictly between 0 and 1")]
    BadAlpha(f64),
    /// History mode found no usable earlier run; the text lists why runs were skipped.
    #[error("no comparable earlier run in the history directory{}", if .0.is_empty() { String::new() } else { format!(" ({})", .0) })]
    NoHistory(String),
    /// `baseline anchor` named an entry the baseline directory does not hold.
    #[error("{}: the anchor needs at least one entry", .0.display())]
    EmptyAnchor(PathBuf),
    /// `baseline save` of a run that has no [`VERDICT_FILE`] (it was never compared).
    #[error("{}: this run was never compared (no {VERDICT_FILE}); run `sweep compare` first, or pass --force to keep it as a baseline anyway", .0.display())]
    NotCompared(PathBuf),
    /// `baseline save` whose destination is the run directory itself.
    #[error("refusing to save {} onto itself", .0.display())]
    SameDir(PathBuf),
    /// A baseline directory's `current` file names an entry that holds no manifest.
    #[error("{}: no baseline entry named {name:?} (see `sweep baseline list`)", dir.display())]
    NoSuchEntry {
        /// The baseline directory.
        dir: PathBuf,
        /// The entry name that was asked for.
        name: String,
    },
    /// Reading a stored verdict or writing the comparison as JSON failed.
    #[error("serialising the comparison: {0}")]
    Json(#[from] serde_json::Error),
}

/// A run as the gate loaded it.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The run directory (a baseline directory resolved to its current entry).
    pub dir: PathBuf,
    /// The run's `manifest.json`: environment, spec hash, `[compare]` settings.
    pub manifest: Manifest,
    /// Per-rep samples grouped per cell and phase ([`Grouping::CellPhases`]).
    pub samples: Samples,
    /// Why parts of the store were not used (torn line, stale parquet).
    pub notes: Vec<String>,
    /// Per configuration, its capacity under the `[slo]` per rep (empty without an SLO).
    pub capacity: Vec<crate::analysis::workload::Capacity>,
}

/// The directory a baseline path stands for: a run directory itself, or a baseline
/// directory's current entry (see [`baseline`]).
pub fn resolve(dir: &Path) -> Result<PathBuf, GateError> {
    if dir.is_file() && dir.extension().is_some_and(|e| e == "parquet") {
        return Err(GateError::ParquetInput(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(StoreError::NotARun(dir.to_path_buf()).into());
    }
    if dir.join(store::MANIFEST).is_file() {
        return Ok(dir.to_path_buf());
    }
    if let Some(entry) = baseline::current_entry(dir)? {
        return Ok(entry);
    }
    Err(StoreError::NotARun(dir.to_path_buf()).into())
}

/// Loads a run (or baseline) for the gate: its manifest and its samples of `metrics`.
/// Refuses a partial merge or an unfinished run unless `allow_partial`.
pub fn load_run(
    dir: &Path,
    metrics: &[Metric],
    allow_partial: bool,
) -> Result<LoadedRun, GateError> {
    if dir.is_file() && dir.extension().is_some_and(|e| e == "parquet") {
        return Err(GateError::ParquetInput(dir.to_path_buf()));
    }
    let dir = resolve(dir)?;
    let manifest = Manifest::read(&dir)?;
    if !allow_partial {
        if manifest.partial {
            return Err(crate::analysis::AnalysisError::Partial {
                dir: dir.clone(),
                what: "a partial merge (some planned cells are missing)".into(),
            }
            .into());
        }
        if !manifest.is_finished() {
            return Err(crate::analysis::AnalysisError::Partial {
                dir: dir.clone(),
                what: "unfinished (interrupted or still running)".into(),
            }
            .into());
        }
    }
    let loaded = store::columnar::load(&dir, &manifest)?;
    let mut notes = loaded.notes;
    if loaded.torn_lines > 0 {
        notes.push(format!(
            "{}: a torn last record line (crash mid-write) was skipped",
            dir.display()
        ));
    }
    let slo = manifest.spec().and_then(|s| s.slo);
    // Capacity needs the workload analysis (levels by configuration); only with an SLO.
    let capacity = match slo {
        Some(_) => {
            let opts = crate::analysis::AnalysisOptions {
                metrics: Vec::new(),
                allow_partial,
                ..Default::default()
            };
            crate::analysis::analyze_frame(
                loaded.frame.clone(),
                loaded.source,
                loaded.torn_lines,
                Some(manifest.clone()),
                &opts,
            )?
            .workload
            .capacity
        }
        None => Vec::new(),
    };
    let frame = crate::analysis::workload::with_slo(loaded.frame, slo.as_ref());
    let samples = samples::samples(frame, metrics, Grouping::CellPhases)?;
    if samples.groups.is_empty() {
        return Err(GateError::NoRecords(dir));
    }
    Ok(LoadedRun {
        dir,
        manifest,
        samples,
        notes,
        capacity,
    })
}

/// One way two runs' environments differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvDifference {
    /// Which property differs: "model digest", "GPU", "CPU" or "experiment file"
    /// ([`crate::store::Fact::TIMING`]).
    pub what: String,
    pub(crate) baseline: String,
    pub(crate) current: String,
}

/// Differences that make timings incomparable: model digest, GPU name/driver, CPU model,
/// spec hash.
pub fn env_differences(b: &Manifest, c: &Manifest) -> Vec<EnvDifference> {
    b.environment()
        .differences(&c.environment(), &crate::store::Fact::TIMING)
        .into_iter()
        .map(|d| EnvDifference {
            what: d.fact.label().to_string(),
            baseline: d.first,
            current: d.second,
        })
        .collect()
}

/// The gate's words for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Gating: shown worse than the tolerance. Informational: significantly worse.
    Regression,
    /// Gating: neither a regression nor a pass was shown (or nothing could be tested).
    #[serde(alias = "inconclusive")]
    Undecided,
    /// Informational: the workloads differ (output lengths), so a token-length-dependent
    /// metric is not compared.
    NotComparable,
    /// Gating: a change of the tolerance or worse is ruled out.
    Pass,
    /// Informational: not significant, or constant and identical (zero vs zero included).
    NoChange,
    /// Gating: a pass whose change is shown in the good direction. Informational:
    /// significantly better.
    Improved,
}

/// What tonight is compared with in one gating test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reference {
    /// One baseline night (fewer than [`MIN_HISTORY`] nights stored).
    Baseline {
        /// Its run id.
        run: String,
    },
    /// The recent level: the nights since the history's last level shift.
    Recent {
        /// Their run ids, oldest first.
        nights: Vec<String>,
    },
    /// The anchor: nights fixed by the baseline directory (its `anchor` file, or its first
    /// [`ANCHOR_NIGHTS`]).
    Anchor {
        /// Their run ids, oldest first.
        nights: Vec<String>,
    },
}

impl Reference {
    /// "baseline", "recent level (4 nights)", "anchor (3 nights)".
    pub fn label(&self) -> String {
        match self {
            Reference::Baseline { .. } => "baseline night".into(),
            Reference::Recent { nights } => format!("recent level ({} nights)", nights.len()),
            Reference::Anchor { nights } => format!("anchor ({} nights)", nights.len()),
        }
    }

    /// The nights the reference holds.
    pub fn nights(&self) -> Vec<String> {
        match self {
            Reference::Baseline { run } => vec![run.clone()],
            Reference::Recent { nights } | Reference::Anchor { nights } => nights.clone(),
        }
    }
}

/// One test of a gating row: tonight against one reference, against the tolerance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateTest {
    /// What tonight was compared with.
    pub reference: Reference,
    /// Tonight's level: the geometric mean of its rep values (pooled tail: the quantile).
    pub level: f64,
    /// The reference's level (geometric mean of its nights' levels).
    pub reference_level: f64,
    /// The change on ln scale with its standard error and degrees of freedom.
    pub log_change: Change,
    /// level / reference_level − 1.
    pub change: f64,
    /// One-sided 1 − α lower bound of the change.
    pub lower: f64,
    /// One-sided 1 − α upper bound of the change.
    pub upper: f64,
    /// p of "the bad-side change is at most T" (one-sided), unadjusted.
    pub p_regression: f64,
    /// `p_regression` after Holm over the gating family.
    pub p_regression_holm: Option<f64>,
    /// p of "the bad-side change is at least T" (one-sided; no correction: see the module
    /// doc).
    pub p_pass: f64,
    /// This test's outcome.
    pub call: Call,
}

/// One row of the comparison: a group × metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Cell id, with the phase for pair cells (`<cell> [concurrent]`).
    pub cell: String,
    /// The compared metric.
    pub metric: Metric,
    /// Relative tolerance T; `None` = informational, never fails.
    pub threshold: Option<f64>,
    /// The statistics engine against the newest reference night (medians, Welch, Mann–
    /// Whitney, effect sizes): what `sweep analyze` would report. Decisive only for
    /// informational rows.
    #[serde(flatten)]
    pub result: TwoSample,
    /// Gating rows: the tests that decide (one per reference).
    #[serde(default)]
    pub tests: Vec<GateTest>,
    /// Gating rows: the smallest Holm-adjusted regression p of its tests. Informational
    /// rows: the Holm-adjusted two-sided p in their own family.
    pub p_holm: Option<f64>,
    /// The outcome.
    pub verdict: Verdict,
    /// Why the row is undecided or not comparable, in words.
    #[serde(default)]
    pub why: Option<String>,
    /// Undecided gating rows: reps per night that would decide it if the change stays as
    /// measured (`None`: no number of reps can, e.g. the between-night spread alone is too
    /// large, or the change sits at the tolerance).
    #[serde(default)]
    pub reps_to_decide: Option<usize>,
}

impl Row {
    /// A regression that fails the job (a threshold is set).
    pub fn fails(&self) -> bool {
        self.verdict == Verdict::Regression && self.gates()
    }

    /// True for a row whose metric has a threshold: it can fail the job.
    pub fn gates(&self) -> bool {
        self.threshold.is_some()
    }

    /// The change the row is judged on: the first gating test's, else the engine's.
    pub fn change(&self) -> Option<f64> {
        self.tests.first().map(|t| t.change).or(self.result.change)
    }

    /// Change signed so that positive is worse (for sorting worst first).
    pub fn badness(&self) -> f64 {
        let c = self
            .tests
            .iter()
            .map(|t| t.change)
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .or(self.result.change)
            .unwrap_or(0.0);
        match self.metric.higher_is_better() {
            Some(true) => -c,
            _ => c,
        }
    }

    pub(crate) fn verdict_label(&self) -> String {
        let info = !self.gates();
        let mut s = match self.verdict {
            Verdict::Regression if info => "worse".to_string(),
            Verdict::Improved if info => "better".to_string(),
            Verdict::Regression => "❌ regression".to_string(),
            Verdict::Improved => "✅ pass (better)".to_string(),
            Verdict::Pass => "✅ pass".to_string(),
            Verdict::NoChange => "~".to_string(),
            Verdict::NotComparable => "≠ workload".to_string(),
            Verdict::Undecided => "⚠️ undecided".to_string(),
        };
        if self.verdict == Verdict::Undecided {
            if let Some(w) = &self.why {
                s = format!("{s} ({w})");
            }
        }
        if info {
            s.push_str(" (info)");
        }
        s
    }
}

/// A run as the summary describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub(crate) dir: PathBuf,
    pub(crate) run_id: String,
    pub(crate) experiment: String,
    pub(crate) environment: String,
    pub(crate) model_digest: Option<String>,
    pub(crate) spec_hash: String,
    pub(crate) git_commit: Option<String>,
    pub(crate) counts: samples::Counts,
}

impl RunSummary {
    fn of(r: &LoadedRun) -> RunSummary {
        let m = &r.manifest;
        RunSummary {
            dir: r.dir.clone(),
            run_id: m.run_id.clone(),
            experiment: m.experiment.clone(),
            environment: m.environment().to_string(),
            model_digest: m.backend.model_digest.clone(),
            spec_hash: m.spec_hash.clone(),
            git_commit: m.git_commit.clone(),
            counts: r.samples.total(),
        }
    }
}

/// The between-night variance of one metric, as the history gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricNights {
    /// The metric.
    pub metric: Metric,
    /// The estimate (pooled over the metric's cells); `None`: too few nights.
    pub variance: Option<NightVariance>,
}

/// A level shift found in a row's series of nights (tonight included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// Cell id (with phase).
    pub cell: String,
    /// The metric.
    pub metric: Metric,
    /// The run id of the first night at the new level.
    pub night: String,
    /// New level / old level − 1 (segment means of ln values).
    pub change: f64,
    /// True when the shift is in the bad direction.
    pub worse: bool,
}

/// What the current run was compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// One baseline night: reps against reps, no between-night variance.
    TwoRuns,
    /// The stored nights: between-night variance, recent level and anchor.
    History {
        /// Run ids of the nights in the window, oldest first.
        runs: Vec<String>,
        /// Run ids of the anchor nights.
        #[serde(default)]
        anchor: Vec<String>,
        /// Per gating metric, the between-night variance used.
        #[serde(default)]
        nights: Vec<MetricNights>,
    },
}

/// How the comparison ended: what the exit code says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every gating row passed.
    Pass,
    /// At least one gating row (or call share) regressed.
    Regression {
        /// Gating rows and call shares that regressed.
        rows: usize,
    },
    /// Nothing regressed, but something was not decided (each reason listed).
    #[serde(alias = "inconclusive")]
    Undecided {
        /// One sentence per reason, for the summary.
        reasons: Vec<String>,
    },
    /// The environments differ (use `--allow-env-change` to compare anyway).
    NotComparable {
        /// Every property that differs.
        differences: Vec<EnvDifference>,
    },
}

impl Outcome {
    /// The exit code of `sweep compare`: 0 pass, 1 regression, 3 undecided or not
    /// comparable (0 instead of 3 when `allow_undecided`).
    pub fn exit_code(&self, allow_undecided: bool) -> i32 {
        match self {
            Outcome::Pass => EXIT_OK,
            Outcome::Regression { .. } => EXIT_REGRESSION,
            Outcome::Undecided { .. } | Outcome::NotComparable { .. } => {
                if allow_undecided {
                    EXIT_OK
                } else {
                    EXIT_INCONCLUSIVE
                }
            }
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Regression { .. } => "regression",
            Outcome::Undecided { .. } => "undecided",
            Outcome::NotComparable { .. } => "not comparable",
        }
    }
}

/// The whole comparison: what the Markdown, JSON and JUnit outputs render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub(crate) method: Method,
    /// The newest reference night (for its environment and the informational rows).
    pub baseline: RunSummary,
    pub(crate) current: RunSummary,
    pub(crate) settings: Settings,
    /// The engine's parameters of the informational statistics.
    pub params: Params,
    /// Tests in the gating family (Holm runs over them).
    pub gating_tests: usize,
    /// Environment differences that were allowed (`--allow-env-change`).
    pub env_differences: Vec<EnvDifference>,
    /// Worst first.
    pub rows: Vec<Row>,
    /// Per cell: failed and cold call shares against the reference.
    #[serde(default)]
    pub shares: Vec<ShareRow>,
    /// Per configuration with an `[slo]`: its capacity against every reference night's.
    #[serde(default)]
    pub capacity: Vec<CapacityRow>,
    /// Level shifts found in the nights' series (history mode).
    #[serde(default)]
    pub shifts: Vec<Shift>,
    pub(crate) notes: Vec<String>,
    /// How the comparison ended; decides the exit code.
    pub outcome: Outcome,
}

impl Comparison {
    /// Regressions that fail the job (rows, call shares and capacities).
    pub fn regressions(&self) -> usize {
        self.rows.iter().filter(|r| r.fails()).count()
            + self.shares.iter().filter(|s| s.fails).count()
            + self.capacity.iter().filter(|c| c.fails).count()
    }

    /// The one line a CI summary starts with.
    pub fn headline(&self) -> String {
        match &self.outcome {
            Outcome::Pass => format!(
                "✅ pass ({} gating tests: a change of the tolerance or worse is ruled out in every row)",
                self.gating_tests
            ),
            Outcome::Regression { rows } => match rows {
                1 => "❌ 1 regression".to_string(),
                n => format!("❌ {n} regressions"),
            },
            Outcome::Undecided { reasons } => format!(
                "⚠️ undecided: the data neither show a regression nor rule one out ({} reason{})",
                reasons.len(),
                if reasons.len() == 1 { "" } else { "s" }
            ),
            Outcome::NotComparable { .. } => "⚠️ not comparable: the environments differ".into(),
        }
    }
}

/// What the current run is compared against.
#[derive(Debug, Clone)]
pub enum Against {
    /// A baseline run, or a baseline directory (its nights when it holds ≥
    /// [`MIN_HISTORY`], else its current entry).
    Run(PathBuf),
    /// The runs under `dir` as the nights.
    History {
        /// Directory whose subdirectories are earlier runs.
        dir: PathBuf,
    },
}

/// What `sweep compare` was asked to do.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    pub(crate) against: Against,
    pub(crate) current: PathBuf,
    pub(crate) alpha: Option<f64>,
    pub(crate) thresholds: Vec<(Metric, f64)>,
    pub(crate) allow_env_change: bool,
    pub(crate) allow_partial: bool,
    /// Nights of the window (the newest `last`).
    pub(crate) last: usize,
    /// Compare with the baseline's current entry only, even when it holds a history.
    pub(crate) two_runs: bool,
}

/// True when `dir` is a baseline directory (entries and a `current` pointer), not a run.
fn is_baseline_dir(dir: &Path) -> bool {
    !dir.join(store::MANIFEST).is_file() && dir.join(baseline::CURRENT).is_file()
}

/// Loads the runs, compares them, and keeps the verdict in the current run
/// ([`VERDICT_FILE`]) for `sweep baseline save`. Returns the comparison and warnings.
pub fn run(req: &CompareRequest) -> Result<(Comparison, Vec<String>), GateError> {
    // The current run's settings first: they say which metrics to load.
    let current_dir = resolve(&req.current)?;
    let cm = Manifest::read(&current_dir)?;
    let (mut settings, warning) = Settings::from_manifest(&cm);
    settings.apply_flags(req.alpha, &req.thresholds)?;
    settings.allow_env_change = req.allow_env_change;
    let metrics = settings.load_metrics();
    let warnings: Vec<String> = warning.into_iter().collect();
    let against_history = |dir: &Path| -> Result<Comparison, GateError> {
        let current = load_run(&current_dir, &metrics, req.allow_partial)?;
        let (nights, notes) = load_history(
            dir,
            req.last,
            &current_dir,
            &current.manifest,
            settings.allow_env_change,
            &metrics,
        )?;
        let mut cmp = compare_nights(&nights, &current, &settings)?;
        cmp.notes.extend(notes);
        Ok(cmp)
    };
    let cmp = match &req.against {
        Against::History { dir } => against_history(dir)?,
        Against::Run(b) if !req.two_runs && is_baseline_dir(b) => against_history(b)?,
        Against::Run(b) => {
            // Baseline first, so a bad baseline path is the error reported.
            let baseline = load_run(b, &metrics, req.allow_partial)?;
            let current = load_run(&current_dir, &metrics, req.allow_partial)?;
            compare(&baseline, &current, &settings)?
        }
    };
    let text = serde_json::to_string_pretty(&cmp)?;
    store::atomic::write_atomic(&current_dir.join(VERDICT_FILE), text.as_bytes())?;
    Ok((cmp, warnings))
}
