//! The regression gate (`sweep compare`): a current run against a baseline run (or the last
//! K runs), cell by cell and metric by metric, with a verdict and an exit code that tells a
//! nightly job what happened. It computes; [`crate::report`] renders (Markdown summary,
//! JSON, JUnit).
//!
//! Method (the repetition is the unit; one statistics engine with `sweep analyze`):
//! - Samples come from [`crate::analysis::samples`] grouped per cell and phase (a pair's
//!   concurrent and sequential phases are different workloads).
//! - Each (group, metric) goes through [`engine::two_sample`] with [`Params::gate`]: Welch t
//!   on ln rep values (cluster bootstrap for pooled tails); the change's interval has each
//!   end a one-sided 1 − α bound.
//! - Holm runs over the gating family: every (group, metric) with a threshold. Its
//!   family-wise error rate is at most α: identical runs fail the gate in at most α of
//!   nights (checked by simulation in the tests). Informational metrics get their own Holm
//!   family and never fail the job.
//! - Verdict ([`engine::decide`]): regression when the adjusted p < α, the change is in the
//!   bad direction, and its interval reaches the threshold (a change that large is not ruled
//!   out); within noise when significant but shown smaller than the threshold.
//! - Outcome: regression (exit 1) beats inconclusive (exit 3: too few reps, a cell with no
//!   measured calls, too many failed calls, cells missing on one side, nothing compared,
//!   environments not comparable); pass (exit 0) only when every gating row was decided.

pub mod baseline;
mod history;
pub mod power;
mod settings;

pub use history::{compare_history, load_history, MIN_HISTORY};
pub use settings::{parse_threshold, Settings};

use crate::analysis::samples::{self, Grouping, Samples};
use crate::metrics::Metric;
use crate::stats;
use crate::stats::engine::{self, Decision, Params, TwoSample};
use crate::store::{self, Manifest, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    /// `baseline save` of a run that has no [`VERDICT_FILE`] (it was never compared).
    #[error("{}: this run was never compared (no {VERDICT_FILE}); run `sweep compare` first, or pass --force to keep it as a baseline anyway", .0.display())]
    NotCompared(PathBuf),
    /// `baseline save` of a run whose stored comparison did not pass.
    #[error("{}: its comparison ended {outcome}; only a clean pass is promoted (pass --force to keep it anyway)", dir.display())]
    NotAPass {
        /// The run directory.
        dir: PathBuf,
        /// The stored outcome's name ("regression", "inconclusive", "not comparable").
        outcome: String,
    },
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
    let samples = samples::samples(loaded.frame, metrics, Grouping::CellPhases)?;
    if samples.groups.is_empty() {
        return Err(GateError::NoRecords(dir));
    }
    Ok(LoadedRun {
        dir,
        manifest,
        samples,
        notes,
    })
}

/// One way two runs' environments differ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvDifference {
    /// Which property differs: "model digest", "GPU", "CPU model" or "spec hash".
    pub what: String,
    pub(crate) baseline: String,
    pub(crate) current: String,
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

/// The gate's words for a (group, metric) result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant (Holm) in the bad direction, and a change of at least the threshold is
    /// not ruled out.
    Regression,
    /// Nothing decided: too few reps or calls, no value on a side, a statistic that could
    /// not be formed, or constant but different data.
    Inconclusive,
    /// Significant, but the interval rules out a change as large as the threshold.
    WithinNoise,
    /// Not significant (or constant and identical), or a change of a metric with no
    /// better side.
    NoChange,
    /// Significant in the good direction, and the interval reaches the threshold.
    Improved,
}

impl Verdict {
    fn of(d: Decision) -> Verdict {
        match d {
            Decision::Worse => Verdict::Regression,
            Decision::Better => Verdict::Improved,
            Decision::WithinThreshold => Verdict::WithinNoise,
            Decision::NoChange | Decision::Changed => Verdict::NoChange,
            Decision::Inconclusive | Decision::Constant => Verdict::Inconclusive,
        }
    }
}

/// One row of the comparison: a group × metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Cell id, with the phase for pair cells (`<cell> [concurrent]`).
    pub cell: String,
    /// The compared metric.
    pub metric: Metric,
    /// Relative threshold; `None` = informational, never fails.
    pub threshold: Option<f64>,
    /// The engine's result: estimates, change, interval, test, effect sizes.
    #[serde(flatten)]
    pub result: TwoSample,
    /// Holm-adjusted p within the row's family (gating or informational).
    pub p_holm: Option<f64>,
    /// The decision from `p_holm`, the interval and the threshold (informational rows use
    /// threshold 0).
    pub verdict: Verdict,
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

    /// Change signed so that positive is worse (for sorting worst first).
    pub fn badness(&self) -> f64 {
        let c = self.result.change.unwrap_or(0.0);
        match self.metric.higher_is_better() {
            Some(true) => -c,
            _ => c,
        }
    }

    pub(crate) fn verdict_label(&self) -> String {
        let info = !self.gates();
        let base = match self.verdict {
            Verdict::Regression if info => "worse",
            Verdict::Improved if info => "better",
            Verdict::Regression => "❌ regression",
            Verdict::Improved => "✅ improved",
            Verdict::WithinNoise => "within noise",
            Verdict::NoChange => "~",
            Verdict::Inconclusive => "inconclusive",
        };
        let mut s = base.to_string();
        if self.verdict == Verdict::Inconclusive {
            if let Some(n) = &self.result.note {
                s = format!("inconclusive ({n})");
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
            environment: m.host.fingerprint(),
            model_digest: m.backend.model_digest.clone(),
            spec_hash: m.spec_hash.clone(),
            git_commit: m.git_commit.clone(),
            counts: r.samples.total(),
        }
    }

    /// Failed calls / non-warm-up calls.
    pub fn failed_share(&self) -> f64 {
        let live = self.counts.calls - self.counts.warmup - self.counts.superseded;
        if live == 0 {
            0.0
        } else {
            f64::from(self.counts.failed) / f64::from(live)
        }
    }
}

/// What the current run was compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// One baseline run: reps against reps.
    TwoRuns,
    /// The last K earlier runs: per-run estimates, t prediction interval on ln values.
    History {
        /// Run ids of the earlier runs used, oldest first.
        runs: Vec<String>,
    },
}

/// How the comparison ended: what the exit code says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Every gating row was decided and none regressed.
    Pass,
    /// At least one gating row regressed.
    Regression {
        /// Gating rows whose verdict is a regression.
        rows: usize,
    },
    /// Nothing regressed, but the gate could not decide (each reason listed).
    Inconclusive {
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
    /// The exit code of `sweep compare`: 0 pass, 1 regression, 3 inconclusive or not
    /// comparable (0 instead of 3 when `allow_inconclusive`).
    pub fn exit_code(&self, allow_inconclusive: bool) -> i32 {
        match self {
            Outcome::Pass => EXIT_OK,
            Outcome::Regression { .. } => EXIT_REGRESSION,
            Outcome::Inconclusive { .. } | Outcome::NotComparable { .. } => {
                if allow_inconclusive {
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
            Outcome::Inconclusive { .. } => "inconclusive",
            Outcome::NotComparable { .. } => "not comparable",
        }
    }
}

/// The whole comparison: what the Markdown, JSON and JUnit outputs render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub(crate) method: Method,
    /// The baseline run (history mode: the newest earlier run, for its environment).
    pub baseline: RunSummary,
    pub(crate) current: RunSummary,
    pub(crate) settings: Settings,
    /// The engine's parameters (interval level and sidedness, resamples).
    pub params: Params,
    /// Tests in the gating family (Holm runs over them; FWER ≤ α).
    pub gating_tests: usize,
    /// Environment differences that were allowed (`--allow-env-change`).
    pub env_differences: Vec<EnvDifference>,
    /// Worst first.
    pub rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
    /// How the comparison ended; decides the exit code.
    pub outcome: Outcome,
}

impl Comparison {
    /// Regressions that fail the job.
    pub fn regressions(&self) -> usize {
        self.rows.iter().filter(|r| r.fails()).count()
    }

    /// The one line a CI summary starts with.
    pub fn headline(&self) -> String {
        match &self.outcome {
            Outcome::Pass => format!(
                "✅ no regression ({} gating tests decided)",
                self.gating_tests
            ),
            Outcome::Regression { rows } => match rows {
                1 => "❌ 1 regression".to_string(),
                n => format!("❌ {n} regressions"),
            },
            Outcome::Inconclusive { reasons } => format!(
                "⚠️ inconclusive: the gate could not decide ({} reason{})",
                reasons.len(),
                if reasons.len() == 1 { "" } else { "s" }
            ),
            Outcome::NotComparable { .. } => "⚠️ not comparable: the environments differ".into(),
        }
    }
}

/// Holm over each family separately, verdicts, the outcome, rows worst first.
fn finish_rows(mut rows: Vec<Row>, alpha: f64) -> (Vec<Row>, usize) {
    for gating in [true, false] {
        let idx: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].gates() == gating)
            .collect();
        let ps: Vec<f64> = idx
            .iter()
            .map(|&i| {
                rows[i]
                    .result
                    .test
                    .as_ref()
                    .map(|t| t.p)
                    .unwrap_or(f64::NAN)
            })
            .collect();
        let adjusted = stats::holm(&ps);
        for (k, &i) in idx.iter().enumerate() {
            let r = &mut rows[i];
            r.p_holm = Some(adjusted[k]).filter(|p| !p.is_nan());
            let d = engine::decide(&r.result, r.p_holm, r.threshold.unwrap_or(0.0), alpha);
            r.verdict = Verdict::of(d);
        }
    }
    let gating_tests = rows
        .iter()
        .filter(|r| r.gates() && r.result.test.is_some())
        .count();
    rows.sort_by(|a, b| {
        b.fails()
            .cmp(&a.fails())
            .then(a.verdict.cmp(&b.verdict))
            .then(b.badness().total_cmp(&a.badness()))
            .then(a.cell.cmp(&b.cell))
            .then(a.metric.cmp(&b.metric))
    });
    (rows, gating_tests)
}

/// Why the gate could not decide, from its rows, runs and notes.
fn inconclusive_reasons(
    rows: &[Row],
    runs: &[&RunSummary],
    missing: &[String],
    empty: &[String],
    s: &Settings,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let undecided: Vec<&Row> = rows
        .iter()
        .filter(|r| r.gates() && r.verdict == Verdict::Inconclusive)
        .collect();
    if !undecided.is_empty() {
        let example = undecided[0]
            .result
            .note
            .clone()
            .unwrap_or_else(|| "no test".into());
        reasons.push(format!(
            "{} of {} gating rows undecided (e.g. {} {}: {example})",
            undecided.len(),
            rows.iter().filter(|r| r.gates()).count(),
            undecided[0].cell,
            undecided[0].metric
        ));
    }
    if !rows.iter().any(|r| r.gates()) {
        reasons.push(
            "no gating row: no metric has a threshold, or there was nothing to compare".into(),
        );
    }
    for r in runs {
        let share = r.failed_share();
        if share > s.max_failed_share {
            reasons.push(format!(
                "{:.0}% of the calls of run {} failed (limit {:.0}%, [compare] max_failed_share)",
                share * 100.0,
                r.run_id,
                s.max_failed_share * 100.0
            ));
        }
    }
    if !missing.is_empty() {
        reasons.push(format!(
            "{} cell(s) on one side only: {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    if !empty.is_empty() {
        reasons.push(format!(
            "nothing measured in {} cell(s): {}",
            empty.len(),
            empty.join("; ")
        ));
    }
    reasons
}

fn outcome_of(rows: &[Row], reasons: Vec<String>) -> Outcome {
    let failing = rows.iter().filter(|r| r.fails()).count();
    if failing > 0 {
        Outcome::Regression { rows: failing }
    } else if !reasons.is_empty() {
        Outcome::Inconclusive { reasons }
    } else {
        Outcome::Pass
    }
}

/// Groups that ran but have no measured calls, with why.
fn empty_groups(run: &LoadedRun) -> Vec<String> {
    run.samples
        .empty_groups()
        .iter()
        .map(|g| {
            format!(
                "{} in {} ({})",
                g.key,
                run.manifest.run_id,
                g.counts.exclusions()
            )
        })
        .collect()
}

/// Compares two loaded runs.
pub fn compare(
    baseline: &LoadedRun,
    current: &LoadedRun,
    s: &Settings,
) -> Result<Comparison, GateError> {
    if !crate::stats::is_open_unit(s.alpha) {
        return Err(GateError::BadAlpha(s.alpha));
    }
    let params = Params {
        resamples: s.resamples,
        ..Params::gate(s.alpha, s.seed)
    };
    let diffs = env_differences(&baseline.manifest, &current.manifest);
    let (b, c) = (RunSummary::of(baseline), RunSummary::of(current));
    let mut notes: Vec<String> = baseline
        .notes
        .iter()
        .chain(&current.notes)
        .cloned()
        .collect();
    if !diffs.is_empty() && !s.allow_env_change {
        return Ok(Comparison {
            method: Method::TwoRuns,
            baseline: b,
            current: c,
            settings: s.clone(),
            params,
            gating_tests: 0,
            env_differences: diffs.clone(),
            rows: Vec::new(),
            notes,
            outcome: Outcome::NotComparable { differences: diffs },
        });
    }
    let keys: BTreeSet<&str> = baseline
        .samples
        .groups
        .iter()
        .chain(&current.samples.groups)
        .map(|g| g.key.as_str())
        .collect();
    let mut missing = Vec::new();
    for k in &keys {
        match (baseline.samples.group(k), current.samples.group(k)) {
            (None, Some(_)) => missing.push(format!("{k} (new, not in the baseline)")),
            (Some(_), None) => missing.push(format!("{k} (missing from the current run)")),
            _ => {}
        }
    }
    notes.extend(missing.iter().map(|m| format!("cell {m}")));
    let mut rows = Vec::new();
    for key in &keys {
        let (Some(gb), Some(gc)) = (baseline.samples.group(key), current.samples.group(key)) else {
            continue;
        };
        for m in s.metrics() {
            let (Some(y), Some(x)) = (gb.metric(m), gc.metric(m)) else {
                continue;
            };
            let p = Params {
                seed: params.seed ^ engine::fnv(key),
                ..params.clone()
            };
            rows.push(Row {
                cell: key.to_string(),
                metric: m,
                threshold: s.thresholds.get(&m).copied(),
                result: engine::two_sample(m, x.sample(), y.sample(), &p),
                p_holm: None,
                verdict: Verdict::Inconclusive,
            });
        }
    }
    let (rows, gating_tests) = finish_rows(rows, s.alpha);
    let empty: Vec<String> = empty_groups(baseline)
        .into_iter()
        .chain(empty_groups(current))
        .collect();
    let reasons = inconclusive_reasons(&rows, &[&b, &c], &missing, &empty, s);
    let outcome = outcome_of(&rows, reasons);
    Ok(Comparison {
        method: Method::TwoRuns,
        baseline: b,
        current: c,
        settings: s.clone(),
        params,
        gating_tests,
        env_differences: diffs,
        rows,
        notes,
        outcome,
    })
}

/// What the current run is compared against.
#[derive(Debug, Clone)]
pub enum Against {
    /// A baseline run or baseline directory.
    Run(PathBuf),
    /// The last `last` runs under `dir`.
    History {
        /// Directory whose subdirectories are earlier runs.
        dir: PathBuf,
        /// How many of the newest earlier runs to use (K).
        last: usize,
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
    let metrics = settings.metrics();
    let mut warnings: Vec<String> = warning.into_iter().collect();
    let cmp = match &req.against {
        Against::Run(b) => {
            // Baseline first, so a bad baseline path is the error reported.
            let baseline = load_run(b, &metrics, req.allow_partial)?;
            let current = load_run(&current_dir, &metrics, req.allow_partial)?;
            compare(&baseline, &current, &settings)?
        }
        Against::History { dir, last } => {
            let current = load_run(&current_dir, &metrics, req.allow_partial)?;
            let (history, notes) = load_history(dir, *last, &current_dir, &metrics)?;
            warnings.extend(notes);
            compare_history(&history, &current, &settings)?
        }
    };
    let text = serde_json::to_string_pretty(&cmp)?;
    store::atomic::write_atomic(&current_dir.join(VERDICT_FILE), text.as_bytes())?;
    Ok((cmp, warnings))
}
