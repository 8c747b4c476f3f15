//! The runner: executes the plan's units phase by phase, stores each phase atomically,
//! survives crashes (resume skips every stored phase), Ctrl-C, and failing cells.

mod exec;
mod observe;

pub use exec::AgentExecutor;
pub use observe::Observed;

use crate::backend::BoxFuture;
use crate::plan::{Cell, Plan, Shard, Unit};
use crate::progress::{Event, Progress, ProgressMode};
use crate::record::{Phase, PhaseKey, Record};
use crate::spec::Spec;
use crate::store::{self, Manifest, RunStore, StoreError};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What one phase of one unit produced: its records (one per planned call, failed or not)
/// and the agents' report files.
#[derive(Debug, Default)]
pub struct PhaseOutput {
    /// Reload probes sent before the phase (stored first, as their own warm-up group).
    pub probes: Vec<Record>,
    pub records: Vec<Record>,
    /// (file stem, markdown)
    pub reports: Vec<(String, String)>,
}

/// Everything a phase needs to know about where it sits in the run.
#[derive(Debug, Clone)]
pub struct PhaseJob {
    pub cell: Cell,
    pub unit: Unit,
    pub phase: Phase,
    /// Endpoint for members without their own; `None` for the embedded engine.
    pub endpoint: Option<String>,
    /// First phase after a reload-key change on this endpoint: its first call is cold.
    pub cold_start: bool,
    pub run_id: String,
    pub experiment: String,
}

/// Runs one phase (the agents' workflow over a backend). The runner owns order, storage and
/// failure policy; the executor owns what happens inside a phase.
pub trait PhaseExecutor: Send + Sync {
    fn execute<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, PhaseOutput>;
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue this run id.
    pub resume: Option<String>,
    /// Start a new run even when an unfinished one with the same spec exists.
    pub new_run: bool,
    /// Name of the run to create (or to continue, if it exists unfinished).
    pub run_id: Option<String>,
    pub shard: Option<Shard>,
    pub progress: ProgressMode,
    /// Stop at the first failed call.
    pub fail_fast: bool,
    /// Overrides `[run] concurrency`.
    pub concurrency: Option<u32>,
    /// Overrides `[run] results_dir`.
    pub results_dir: Option<PathBuf>,
    /// Stop after this many phases (for tests and smoke runs); the run stays resumable.
    pub max_phases: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resume: None,
            new_run: false,
            run_id: None,
            shard: None,
            progress: ProgressMode::Auto,
            fail_fast: false,
            concurrency: None,
            results_dir: None,
            max_phases: None,
        }
    }
}

/// The signal that stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (what Slurm, Kubernetes and systemd send).
    Terminate,
}

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub run_id: String,
    pub dir: PathBuf,
    pub ok_calls: usize,
    pub failed_calls: usize,
    pub failures_by_kind: BTreeMap<String, usize>,
    /// Calls that count for statistics (ok, not warm-up, not cold).
    pub measured_calls: usize,
    pub warmup_calls: usize,
    /// Cold calls (and reload probes) by reason.
    pub cold_by_reason: BTreeMap<String, usize>,
    /// Cells that ran measured units but have no measured call (every call excluded).
    pub empty_cells: Vec<String>,
    pub skipped_phases: usize,
    pub phases_run: usize,
    /// Set when a signal stopped the run (it stays resumable).
    pub stopped_by: Option<StopSignal>,
    pub stopped_on_failure: bool,
    pub resumed: bool,
    pub complete: bool,
    /// What a reader of the results must know (telemetry): a busy machine, a model not where
    /// the options asked.
    pub warnings: Vec<String>,
}

impl RunSummary {
    pub fn interrupted(&self) -> bool {
        self.stopped_by.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("run {run_id} was made from a different experiment file (spec hash {stored} ≠ {current}); start a new run or restore the file")]
    SpecChanged {
        run_id: String,
        stored: String,
        current: String,
    },
    #[error("{0}")]
    Setup(String),
    /// The backend could not be reached or set up (preflight).
    #[error("{0}")]
    Backend(String),
    /// Storing failed mid-run (disk full, file size limit, I/O error): the phases stored
    /// before it are kept, the failed one is not, so the run can be resumed.
    #[error("{source}\nthe run stopped; every phase stored before this error is kept and the run is resumable; resume with: {resume}")]
    StoreFailed {
        #[source]
        source: StoreError,
        resume: String,
    },
}

/// Opens (resume) or creates the store. Returns the store, run id and whether it resumed.
pub fn open_store(
    spec: &Spec,
    plan: &Plan,
    opts: &RunOptions,
    manifest: impl FnOnce(&str) -> Manifest,
) -> Result<(RunStore, String, bool), RunError> {
    let exp_dir = opts
        .results_dir
        .clone()
        .unwrap_or_else(|| spec.run.results_dir.clone())
        .join(&spec.experiment.name);
    if let Some(id) = &opts.run_id {
        let ok = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !ok {
            return Err(RunError::Setup(format!(
                "run id {id:?} must be letters, digits, '-', '_' or '.'"
            )));
        }
    }
    let named_existing = opts.run_id.as_ref().and_then(|id| {
        let d = exp_dir.join(id);
        d.join(store::MANIFEST).exists().then(|| id.clone())
    });
    if let Some(id) = &named_existing {
        let m = Manifest::read(&exp_dir.join(id))?;
        if m.finished_at.is_some() {
            return Err(RunError::Setup(format!(
                "run {id} already exists and is finished; choose another --run-id"
            )));
        }
    }
    let resume_id = match (&opts.resume, named_existing) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(id)) => Some(id),
        (None, None) if opts.run_id.is_some() => None,
        (None, None) if !opts.new_run => store::unfinished_runs(&exp_dir, &spec.hash)
            .into_iter()
            .find(|d| {
                Manifest::read(d)
                    .map(|m| m.shard == plan.shard)
                    .unwrap_or(false)
            })
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())),
        (None, None) => None,
    };
    if let Some(id) = resume_id {
        let dir = exp_dir.join(&id);
        let m = Manifest::read(&dir)?;
        if m.spec_hash != spec.hash {
            return Err(RunError::SpecChanged {
                run_id: id,
                stored: m.spec_hash,
                current: spec.hash.clone(),
            });
        }
        let (store, _info) = RunStore::open(&dir)?;
        return Ok((store, id, true));
    }
    let id = opts.run_id.clone().unwrap_or_else(store::new_run_id);
    let dir = exp_dir.join(&id);
    let store = RunStore::create(&dir, &manifest(&id))?;
    Ok((store, id, false))
}

/// Executes every phase of the plan not yet stored.
pub async fn execute(
    spec: &Spec,
    plan: &Plan,
    store: &mut RunStore,
    run_id: &str,
    resumed: bool,
    executor: Arc<dyn PhaseExecutor>,
    opts: &RunOptions,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let mut summary = RunSummary {
        run_id: run_id.to_string(),
        dir: store.dir().to_path_buf(),
        resumed,
        ..Default::default()
    };
    // The phases still to run, as (unit index, phase): a few bytes each. Jobs (which carry a
    // copy of their cell) are made lazily as the stream pulls them, so memory stays flat
    // however many calls the sweep has.
    let mut pending: Vec<(usize, Phase)> = Vec::new();
    let mut stored_calls = 0;
    for (i, unit) in plan.units.iter().enumerate() {
        let cell = &plan.cells[unit.cell];
        for &phase in cell.phases() {
            if store.is_phase_done(&cell.id, unit.rep, unit.warmup, phase) {
                summary.skipped_phases += 1;
                stored_calls += cell.calls_in_phase(phase);
            } else {
                pending.push((i, phase));
            }
        }
    }
    let truncated = opts.max_phases.is_some_and(|m| pending.len() > m);
    if let Some(max) = opts.max_phases {
        pending.truncate(max);
    }
    pending.shrink_to_fit();
    let endpoints = spec.backend.urls.clone();
    let mut last_key: HashMap<Option<String>, String> = HashMap::new();
    let jobs = pending.into_iter().enumerate().map(move |(n, (i, phase))| {
        let unit = plan.units[i];
        let cell = &plan.cells[unit.cell];
        let endpoint = if endpoints.is_empty() {
            None
        } else {
            Some(endpoints[n % endpoints.len()].clone())
        };
        let cold_start = last_key.get(&endpoint) != Some(&cell.reload_key);
        if cold_start {
            last_key.insert(endpoint.clone(), cell.reload_key.clone());
        }
        PhaseJob {
            cell: cell.clone(),
            unit,
            phase,
            endpoint,
            cold_start,
            run_id: run_id.to_string(),
            experiment: spec.experiment.name.clone(),
        }
    });
    let total_calls = plan.total_calls();
    let mut progress = Progress::new(opts.progress);
    progress.emit(&Event::Started {
        run_id: run_id.to_string(),
        dir: store.dir().display().to_string(),
        units: plan.units.len(),
        calls: total_calls,
        already_stored: stored_calls,
    });
    let concurrency = opts.concurrency.unwrap_or(spec.run.concurrency).max(1) as usize;
    let n_jobs = jobs.len();
    let mut stream = futures_util::stream::iter(jobs.map(|job| {
        let ex = executor.clone();
        async move {
            let out = ex.execute(&job).await;
            (job, out)
        }
    }))
    .buffer_unordered(concurrency);

    let mut done_calls = stored_calls;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut term = terminate_signal();
    let mut measured_by_cell: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = &mut ctrl_c => {
                summary.stopped_by = Some(StopSignal::Interrupt);
                None
            }
            _ = term.recv() => {
                summary.stopped_by = Some(StopSignal::Terminate);
                None
            }
        };
        let Some((job, out)) = next else { break };
        let stored = store_probes(store, &out.probes)
            .and_then(|()| {
                out.reports.iter().try_for_each(|(stem, md)| {
                    store
                        .write_report(&job.cell.id, job.unit.rep, job.unit.warmup, stem, md)
                        .map(drop)
                })
            })
            .and_then(|()| store.append(&out.records));
        if let Err(source) = stored {
            return Err(RunError::StoreFailed {
                source,
                resume: resume_command(spec, plan, store.dir()),
            });
        }
        summary.phases_run += 1;
        let ok = out.records.iter().filter(|r| r.ok).count();
        let failed = out.records.len() - ok;
        summary.ok_calls += ok;
        summary.failed_calls += failed;
        done_calls += out.records.len();
        for r in out.probes.iter().chain(&out.records) {
            if let Some(c) = r.cold_reason.filter(|_| r.cold) {
                *summary
                    .cold_by_reason
                    .entry(c.as_str().to_string())
                    .or_default() += 1;
            }
            if r.warmup {
                summary.warmup_calls += 1;
            }
        }
        if !job.unit.warmup && job.phase != Phase::Sequential {
            let measured = out.records.iter().filter(|r| r.ok && !r.cold).count();
            summary.measured_calls += measured;
            *measured_by_cell.entry(job.cell.id.clone()).or_default() += measured;
        }
        for r in out.records.iter().filter(|r| !r.ok) {
            let kind = r.error_kind.clone().unwrap_or_else(|| "unknown".into());
            *summary.failures_by_kind.entry(kind.clone()).or_default() += 1;
            progress.emit(&Event::Failure {
                cell: job.cell.id.clone(),
                kind,
                message: r.error_message.clone().unwrap_or_default(),
            });
        }
        let last_ok = out.records.iter().rev().find(|r| r.ok);
        progress.emit(&Event::Phase {
            done_calls,
            total_calls,
            cell: job.cell.id.clone(),
            rep: job.unit.rep,
            warmup: job.unit.warmup,
            phase: job.phase.as_str().to_string(),
            ok,
            failed,
            ttft_ms: last_ok.and_then(|r| r.ttft_ms),
            decode_tps: last_ok.and_then(|r| r.decode_tps),
        });
        if failed > 0 && opts.fail_fast {
            summary.stopped_on_failure = true;
            break;
        }
    }
    drop(stream);
    summary.empty_cells = measured_by_cell
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(c, _)| c)
        .collect();
    summary.complete = !summary.interrupted()
        && !summary.stopped_on_failure
        && summary.phases_run == n_jobs
        && !truncated;
    if summary.interrupted() {
        progress.emit(&Event::Interrupted {
            run_id: run_id.to_string(),
            resume: resume_command(spec, plan, store.dir()),
        });
    } else {
        progress.emit(&Event::Finished {
            run_id: run_id.to_string(),
            dir: store.dir().display().to_string(),
            ok: summary.ok_calls,
            failed: summary.failed_calls,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(summary)
}

/// Stores a phase's reload probes as their own warm-up group (a further attempt when a
/// resumed run probes a unit again).
fn store_probes(store: &mut RunStore, probes: &[Record]) -> Result<(), StoreError> {
    let Some(first) = probes.first() else {
        return Ok(());
    };
    match store.latest_attempt(&first.phase_key()) {
        None => store.append(probes),
        Some(l) => {
            let again: Vec<Record> = probes
                .iter()
                .map(|r| Record {
                    retry: l + 1,
                    ..r.clone()
                })
                .collect();
            store.append_attempt(&again)
        }
    }
}

/// SIGTERM as a stream (Slurm, Kubernetes and systemd stop jobs with it): handled like
/// Ctrl-C. Where it cannot be installed, a stream that never fires.
fn terminate_signal() -> TermSignal {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => TermSignal(Some(s)),
            Err(e) => {
                tracing::warn!("cannot handle SIGTERM ({e}); it will stop the run uncleanly");
                TermSignal(None)
            }
        }
    }
    #[cfg(not(unix))]
    {
        TermSignal(None)
    }
}

struct TermSignal(
    #[cfg(unix)] Option<tokio::signal::unix::Signal>,
    #[cfg(not(unix))] Option<()>,
);

impl TermSignal {
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.0.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

/// The command line that continues this run (stored in `run_dir`), with `--results-dir`
/// when the run is not under the experiment file's own results directory.
fn resume_command(spec: &Spec, plan: &Plan, run_dir: &std::path::Path) -> String {
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let results = run_dir.parent().and_then(std::path::Path::parent);
    format!(
        "sweep run {} --resume {run_id}{}{}",
        spec.file.display(),
        plan.shard
            .map(|s| format!(" --shard {}/{}", s.index, s.count))
            .unwrap_or_default(),
        results
            .filter(|r| *r != spec.run.results_dir)
            .map(|r| format!(" --results-dir {}", r.display()))
            .unwrap_or_default()
    )
}

/// Everything `sweep run FILE` does: corpus and backend checks, store, execution,
/// the end-of-run files and the failure summary.
pub async fn run_experiment(spec: &Spec, opts: &RunOptions) -> Result<RunSummary, RunError> {
    let plan = Plan::build(spec, opts.shard);
    if plan.units.is_empty() {
        return Err(RunError::Setup(
            "the plan is empty (this shard has no cells?)".into(),
        ));
    }
    let corpus = crate::corpus::Corpus::load(&spec.corpus)
        .map_err(|e| RunError::Setup(format!("corpus: {e}")))?;
    for w in &corpus.warnings {
        tracing::warn!("corpus: {w}");
    }
    let backend = crate::backend::build(&spec.backend)
        .map_err(|e| RunError::Setup(format!("backend: {e}")))?;
    let mut models: Vec<&str> = plan
        .cells
        .iter()
        .flat_map(|c| c.members.iter().map(|m| m.model.as_str()))
        .collect();
    models.sort_unstable();
    models.dedup();
    let mut info = crate::backend::BackendInfo::default();
    for model in models {
        info = backend.preflight(model).await.map_err(|e| {
            RunError::Backend(format!("backend preflight for model {model:?}: {e}"))
        })?;
    }
    let manifest = |id: &str| Manifest {
        experiment: spec.experiment.name.clone(),
        run_id: id.to_string(),
        sweep_version: env!("CARGO_PKG_VERSION").to_string(),
        spec_file: spec.file.display().to_string(),
        spec_hash: spec.hash.clone(),
        spec: spec.source.clone(),
        corpus_path: spec.corpus.path.display().to_string(),
        corpus_hash: Some(corpus.hash.clone()),
        corpus_files: Some(corpus.len()),
        git_commit: crate::env::git_commit(),
        host: crate::env::HostInfo::detect(),
        backend: info.clone(),
        shard: plan.shard,
        planned_cells: plan.cells.len(),
        planned_units: plan.units.len(),
        planned_calls: plan.total_calls(),
        started_at: chrono::Utc::now().to_rfc3339(),
        finished_at: None,
        partial: false,
        records: None,
        cache_policy: format!(
            "unique nonce line per call; server prompt cache {}",
            if spec.backend.cache_prompt {
                "ON (cache_prompt = true)"
            } else {
                "off where the server allows (cache_prompt = false)"
            }
        ),
        merged_from: Vec::new(),
    };
    let (mut store, run_id, resumed) = open_store(spec, &plan, opts, manifest)?;
    if resumed && opts.progress != ProgressMode::Quiet {
        eprintln!(
            "resuming run {run_id} ({} records stored); --new starts a fresh run",
            store.stored()
        );
    }
    let agents = Arc::new(AgentExecutor {
        backend: backend.clone(),
        corpus: spec.corpus.clone(),
        retry: spec.backend.retry.clone(),
        defeat_cache: true,
        cold_load_ms: spec.analysis.cold_load_ms,
    });
    let observed = observe_run(spec, agents, backend)?;
    let executor = observed.clone();
    let mut summary = execute(spec, &plan, &mut store, &run_id, resumed, executor, opts).await?;
    if let Some(session) = observed.finish(store.dir()) {
        if opts.progress == ProgressMode::Quiet {
            for w in &session.warnings {
                tracing::warn!("{w}");
            }
        }
        summary.warnings = session.warnings;
    }
    if summary.complete {
        let dir = store.dir().to_path_buf();
        store::columnar::finish(&dir, &run_id).map_err(|source| RunError::StoreFailed {
            source,
            resume: resume_command(spec, &plan, &dir),
        })?;
    }
    Ok(summary)
}

/// Starts the run's telemetry (settings from the environment: see [`crate::telemetry`]) and
/// wraps the executor in it.
fn observe_run(
    spec: &Spec,
    agents: Arc<dyn PhaseExecutor>,
    backend: Arc<dyn crate::backend::Backend>,
) -> Result<Arc<Observed>, RunError> {
    let cfg = crate::telemetry::TelemetryConfig::from_env()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let telemetry = Arc::new(crate::telemetry::Telemetry::start(cfg));
    Ok(Arc::new(Observed::new(
        agents,
        backend,
        telemetry,
        spec.backend.kind == crate::spec::BackendKind::Ollama,
    )))
}

/// The end-of-run summary: what was measured, what each rule excluded, failures by kind.
pub fn failure_summary(s: &RunSummary) -> String {
    let cold: usize = s.cold_by_reason.values().sum();
    let reasons: Vec<String> = s
        .cold_by_reason
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let mut line = format!(
        "{} calls ok, {} measured; excluded: {} warm-up (reload probes included), {} cold{}",
        s.ok_calls,
        s.measured_calls,
        s.warmup_calls,
        cold,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    if s.failures_by_kind.is_empty() {
        line.push_str(", no failures");
    } else {
        let kinds: Vec<String> = s
            .failures_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        line.push_str(&format!(
            ", {} failed ({})",
            s.failed_calls,
            kinds.join(", ")
        ));
    }
    if !s.empty_cells.is_empty() {
        line.push_str(&format!(
            "\nnothing measured in {} cell(s) (every call excluded): {}",
            s.empty_cells.len(),
            s.empty_cells.join(", ")
        ));
    }
    for w in &s.warnings {
        line.push_str(&format!("\nwarning: {w}"));
    }
    line
}

/// Estimated wall time of a plan from an earlier run's phase wall times: per (cell, phase)
/// where the cell was measured, else the mean of that phase kind, else the mean per call.
#[derive(Debug, Clone, PartialEq)]
pub struct Eta {
    /// The plan's phases, without reload probes.
    pub seconds: f64,
    /// One reload probe (mean of the stored probes; 0 when there were none).
    pub probe_seconds: f64,
    pub from_run: String,
    pub cells_known: usize,
    pub cells_total: usize,
}

/// Looks for the newest run of the experiment with stored records and estimates from it.
pub fn estimate(spec: &Spec, plan: &Plan, results_dir: Option<&std::path::Path>) -> Option<Eta> {
    let exp_dir = results_dir
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| spec.run.results_dir.clone())
        .join(&spec.experiment.name);
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&exp_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(store::RECORDS_JSONL).is_file())
        .collect();
    runs.sort();
    for run in runs.iter().rev() {
        let Ok(read) = store::read_records(&run.join(store::RECORDS_JSONL)) else {
            continue;
        };
        if read.records.is_empty() {
            continue;
        }
        return Some(estimate_from(plan, &read.records, run));
    }
    None
}

fn estimate_from(plan: &Plan, records: &[Record], run: &std::path::Path) -> Eta {
    // one wall time per stored phase
    let mut per_phase: BTreeMap<PhaseKey, f64> = BTreeMap::new();
    let (mut probe_ms, mut probes) = (0.0, 0usize);
    for r in records {
        if r.phase == Phase::Reload {
            probe_ms += r.phase_wall_ms;
            probes += 1;
            continue;
        }
        per_phase.insert(r.phase_key(), r.phase_wall_ms);
    }
    let mut by_cell: BTreeMap<(String, Phase), (f64, usize)> = BTreeMap::new();
    let mut by_kind: BTreeMap<Phase, (f64, usize)> = BTreeMap::new();
    for (k, w) in &per_phase {
        let e = by_cell.entry((k.cell_id.clone(), k.phase)).or_default();
        e.0 += w;
        e.1 += 1;
        let e = by_kind.entry(k.phase).or_default();
        e.0 += w;
        e.1 += 1;
    }
    let per_call = {
        let total: f64 = per_phase.values().sum();
        total / records.len().max(1) as f64
    };
    let mean = |(s, n): (f64, usize)| s / n.max(1) as f64;
    let mut ms = 0.0;
    let mut known = 0;
    for (i, cell) in plan.cells.iter().enumerate() {
        let units = plan.units.iter().filter(|u| u.cell == i).count() as f64;
        let mut cell_known = true;
        for &ph in cell.phases() {
            let w = match by_cell.get(&(cell.id.clone(), ph)) {
                Some(&v) => mean(v),
                None => {
                    cell_known = false;
                    by_kind
                        .get(&ph)
                        .map(|&v| mean(v))
                        .unwrap_or(per_call * cell.calls_in_phase(ph) as f64)
                }
            };
            ms += w * units;
        }
        if cell_known {
            known += 1;
        }
    }
    Eta {
        seconds: ms / 1000.0,
        probe_seconds: if probes > 0 {
            probe_ms / probes as f64 / 1000.0
        } else {
            0.0
        },
        from_run: run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cells_known: known,
        cells_total: plan.cells.len(),
    }
}

/// `1h 02m`, `12m 30s`, `45s`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}
