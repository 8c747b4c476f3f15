//! The runner: executes the plan's units phase by phase, stores each phase atomically,
//! survives crashes (resume skips every stored phase), Ctrl-C and SIGTERM, failing cells,
//! and outages (the failure policy in [`policy`] pauses and probes the backend); `sweep run
//! --retry-failed` re-runs exactly the phases whose latest attempt failed.

mod exec;
mod managed;
mod observe;
pub(crate) mod policy;

pub(crate) use exec::AgentExecutor;
pub(crate) use observe::Observed;

use crate::backend::BoxFuture;
use crate::plan::{Cell, Plan, Shard, Unit};
use crate::progress::{Event, Progress, ProgressMode};
use crate::record::{Phase, PhaseKey, Record};
use crate::spec::Spec;
use crate::store::{self, Manifest, RunStore, StoreError};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one phase of one unit produced: its records (one per planned call, failed or not)
/// and the agents' report files.
#[derive(Debug, Default)]
pub(crate) struct PhaseOutput {
    /// Reload probes sent before the phase (stored first, as their own warm-up group).
    pub probes: Vec<Record>,
    pub records: Vec<Record>,
    /// (file stem, markdown)
    pub reports: Vec<(String, String)>,
    /// Every sent call's request and answer, keyed by the call id its record carries (probes
    /// and agent calls alike); stored with their records unless `--no-text`.
    pub calls: Vec<crate::store::CallText>,
}

/// Everything a phase needs to know about where it sits in the run.
#[derive(Debug, Clone)]
pub(crate) struct PhaseJob {
    pub cell: Cell,
    pub unit: Unit,
    pub phase: Phase,
    /// Endpoint for members without their own; `None` for the embedded engine.
    pub endpoint: Option<String>,
    /// First phase after a reload-key change on this endpoint: its first call is cold.
    pub cold_start: bool,
    pub run_id: String,
    pub experiment: String,
    /// Attempt of the phase stored with its records (`Record::retry`): 0 the first time,
    /// one above the latest stored attempt when `--retry-failed` runs it again.
    pub retry: u32,
    /// Times this phase has run again in this process because an outage ended while it ran.
    pub outage_reruns: u32,
}

/// Runs one phase (the agents' workflow over a backend). The runner owns order, storage and
/// failure policy; the executor owns what happens inside a phase.
pub(crate) trait PhaseExecutor: Send + Sync {
    fn execute<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, PhaseOutput>;

    /// Whether the backend `job` uses answers now: the failure policy's probe while the run
    /// is paused (`Err` says why not). Required, with no default: a wrapper that forgot to
    /// forward it would report every outage as over.
    fn probe<'a>(&'a self, job: &'a PhaseJob) -> BoxFuture<'a, Result<(), String>>;
}

/// How to run an experiment: the `sweep run` flags that are not in the experiment file.
/// [`Default`] is a plain run: auto-resume an unfinished run of the same file, else start one.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue this run id.
    pub resume: Option<String>,
    /// Start a new run even when an unfinished one with the same spec exists.
    pub new_run: bool,
    /// Name of the run to create (or to continue, if it exists unfinished).
    pub run_id: Option<String>,
    /// Run only this shard of the plan's cells (`--shard i/N`); `None` runs them all.
    pub shard: Option<Shard>,
    /// How progress is shown on stderr.
    pub progress: ProgressMode,
    /// Stop at the first failed call.
    pub fail_fast: bool,
    /// Overrides `[run] concurrency`.
    pub concurrency: Option<u32>,
    /// Overrides `[run] results_dir`.
    pub results_dir: Option<PathBuf>,
    /// Stop after this many phases (for tests and smoke runs); the run stays resumable.
    pub max_phases: Option<usize>,
    /// `--retry-failed [RUN_ID]`: continue a run (the given one, else the newest of this
    /// experiment file), running again every phase whose latest attempt has a failed call.
    pub retry_failed: Option<Option<String>>,
    /// Do not keep the calls' requests and answers (`calls.jsonl.zst`).
    pub no_text: bool,
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
            retry_failed: None,
            no_text: false,
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

/// What one `sweep run` invocation did; the CLI prints it and derives the exit code from it.
/// Counts are of the phases run in this invocation (phases stored earlier are skipped).
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// The run's id (its directory name).
    pub run_id: String,
    /// The run directory: `<results_dir>/<experiment>/<run_id>`.
    pub dir: PathBuf,
    /// Agent calls that succeeded (reload probes not counted).
    pub ok_calls: usize,
    /// Agent calls that failed after their retries.
    pub failed_calls: usize,
    /// Failed calls by error kind ([`BackendError::kind`](crate::backend::BackendError::kind)).
    pub failures_by_kind: BTreeMap<String, usize>,
    /// Calls that count for statistics (ok, not warm-up, not cold).
    pub measured_calls: usize,
    /// Warm-up calls: those of warm-up units plus the reload probes (stored, excluded from
    /// statistics).
    pub warmup_calls: usize,
    /// Cold calls (and reload probes) by reason.
    pub cold_by_reason: BTreeMap<String, usize>,
    /// Cells that ran measured units but have no measured call (every call excluded).
    pub empty_cells: Vec<String>,
    /// Phases already stored by an earlier invocation, not run again.
    pub skipped_phases: usize,
    /// Phases run and stored by this invocation.
    pub phases_run: usize,
    /// Set when a signal stopped the run (it stays resumable).
    pub stopped_by: Option<StopSignal>,
    /// `--fail-fast` stopped the run at a failed call.
    pub stopped_on_failure: bool,
    /// This invocation continued an existing run (resume or `--retry-failed`).
    pub resumed: bool,
    /// Every phase to run was run: no signal, fail-fast stop, outage stop or `max_phases`
    /// cut. (Failed calls do not make a run incomplete; see `remaining_failed_phases`.)
    pub complete: bool,
    /// Stored phases run again by `--retry-failed` in this invocation.
    pub retried_phases: usize,
    /// Times the failure policy paused the run to probe the backend.
    pub pauses: usize,
    /// Phases run again because an outage ended while they ran.
    pub outage_reruns: usize,
    /// Set when the backend stayed unreachable past `[run] outage_wait_s`: the run stopped.
    pub outage: Option<OutageStop>,
    /// Planned phases of the whole run whose latest attempt has a failed call.
    pub remaining_failed_phases: usize,
    /// The command that re-runs the failed phases (and any not yet run), when there are any.
    pub retry_command: Option<String>,
    /// What a reader of the results must know (telemetry): a busy machine, a model not where
    /// the options asked.
    pub warnings: Vec<String>,
}

/// Why the failure policy stopped a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutageStop {
    /// What paused the run, in words (e.g. `5 calls in a row could not reach the backend`).
    pub trigger: String,
    /// How long the policy probed the backend before giving up, s.
    pub waited_s: f64,
    /// The last probe's error.
    pub error: String,
    /// Phases of this invocation that never ran.
    pub not_run: usize,
}

impl RunSummary {
    /// True when SIGINT or SIGTERM stopped the run (exit 130/143; the run is resumable).
    pub fn interrupted(&self) -> bool {
        self.stopped_by.is_some()
    }
}

/// Why a run could not start or had to stop; `cli/exit.rs` maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Opening, locking or reading the run store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--resume` or `--retry-failed` named a run made from another version of the
    /// experiment file (the manifest's spec hash differs).
    #[error("run {run_id} was made from another version of {file} ({diff}); a run continues only with the file it was made from: restore that version (the manifest keeps a copy: {manifest}), or leave the run as it is and start a new one with --new")]
    SpecChanged {
        /// The run asked for.
        run_id: String,
        /// The experiment file as given on the command line.
        file: String,
        /// The first line that differs.
        diff: String,
        /// Path of the run's manifest, which keeps the file it was made from.
        manifest: String,
    },
    /// Auto-resume found no unfinished run of this file, but one of another version of it.
    #[error("unfinished run {run_id} of experiment {experiment} was made from another version of {file} ({diff}), so it is not continued automatically.\n  to continue it: restore that version (the manifest keeps a copy: {manifest}) and run again; `--resume {run_id}` says what changed\n  to leave it unfinished and start a new run: sweep run {file} --new")]
    SpecEdited {
        /// The newest unfinished run of this experiment and shard.
        run_id: String,
        /// The experiment's name (`[experiment] name`).
        experiment: String,
        /// The experiment file as given on the command line.
        file: String,
        /// The first line that differs.
        diff: String,
        /// Path of that run's manifest, which keeps the file it was made from.
        manifest: String,
    },
    /// The run cannot start as asked: an empty plan, an unreadable corpus, a backend that
    /// cannot be built, a bad or already finished run id, bad telemetry settings.
    #[error("{0}")]
    Setup(String),
    /// The backend could not be reached or set up (preflight).
    #[error("{0}")]
    Backend(String),
    /// Storing failed mid-run (disk full, file size limit, I/O error): the phases stored
    /// before it are kept, the failed one is not, so the run can be resumed.
    #[error("{source}\nthe run stopped; every phase stored before this error is kept and the run is resumable; resume with: {resume}")]
    StoreFailed {
        /// The store's error.
        #[source]
        source: StoreError,
        /// The `sweep run` command that resumes the run.
        resume: String,
    },
}

/// Opens (resume, `--retry-failed`) or creates the store. Returns the store, run id and
/// whether it continued an existing run.
///
/// Starters of one experiment choose one after the other (an [`store::ExperimentLock`] on
/// the experiment directory): two `sweep run` of one file started at once never make two
/// runs or share one; the second finds the first's run and is refused by its run lock.
pub(crate) fn open_store(
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
    let named = [
        opts.run_id.as_ref(),
        opts.resume.as_ref(),
        opts.retry_failed.as_ref().and_then(Option::as_ref),
    ];
    for id in named.into_iter().flatten() {
        check_run_id(id)?;
    }
    let _choosing = store::ExperimentLock::acquire(&exp_dir)?;
    if let Some(retry) = &opts.retry_failed {
        let id = match retry {
            Some(id) => id.clone(),
            None => newest_run(&exp_dir, spec, plan).ok_or_else(|| {
                RunError::Setup(format!(
                    "--retry-failed: no run of {} under {} was made from this version of the \
                     file; name one: --retry-failed RUN_ID",
                    spec.file.display(),
                    exp_dir.display()
                ))
            })?,
        };
        let dir = exp_dir.join(&id);
        let m = Manifest::read(&dir)?;
        same_spec(spec, &id, &dir, &m)?;
        let (store, _info) = RunStore::open(&dir)?;
        return Ok((store, id, true));
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
    if let Some(id) = &opts.resume {
        let dir = exp_dir.join(id);
        let m = Manifest::read(&dir)?;
        same_spec(spec, id, &dir, &m)?;
        if m.finished_at.is_some() {
            return Err(RunError::Setup(format!(
                "run {id} is finished: nothing to resume (to run its failed calls again: \
                 sweep run {} --retry-failed {id})",
                spec.file.display()
            )));
        }
    }
    let resume_id = match (&opts.resume, named_existing) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(id)) => Some(id),
        (None, None) if opts.run_id.is_some() => None,
        (None, None) if !opts.new_run => {
            let same_shard = |d: &PathBuf| {
                Manifest::read(d)
                    .map(|m| m.shard == plan.shard)
                    .unwrap_or(false)
            };
            let found = store::unfinished_runs(&exp_dir, &spec.hash)
                .into_iter()
                .find(same_shard)
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
            if found.is_none() {
                edited_unfinished_run(spec, plan, &exp_dir)?;
            }
            found
        }
        (None, None) => None,
    };
    if let Some(id) = resume_id {
        let dir = exp_dir.join(&id);
        let m = Manifest::read(&dir)?;
        same_spec(spec, &id, &dir, &m)?;
        let (store, _info) = RunStore::open(&dir)?;
        return Ok((store, id, true));
    }
    let id = opts.run_id.clone().unwrap_or_else(store::new_run_id);
    let dir = exp_dir.join(&id);
    let store = RunStore::create(&dir, &manifest(&id))?;
    Ok((store, id, false))
}

/// A run id names a directory under the experiment's: one plain name, never a path.
fn check_run_id(id: &str) -> Result<(), RunError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(RunError::Setup(format!(
            "run id {id:?} must be a plain name of letters, digits, '-', '_' or '.' (not \
             starting with '.'; no '/'): it names a directory under the experiment's results"
        )))
    }
}

/// Refuses to continue a run made from another version of the experiment file, saying
/// where the two versions first differ.
fn same_spec(spec: &Spec, id: &str, dir: &Path, m: &Manifest) -> Result<(), RunError> {
    if m.spec_hash == spec.hash {
        return Ok(());
    }
    Err(RunError::SpecChanged {
        run_id: id.to_string(),
        file: spec.file.display().to_string(),
        diff: first_difference(&m.spec, &spec.source),
        manifest: dir.join(store::MANIFEST).display().to_string(),
    })
}

/// When auto-resume finds nothing to continue: an unfinished run of this shard made from
/// another version of the file is an error naming it (the user chooses: restore, or --new),
/// never silently abandoned.
fn edited_unfinished_run(spec: &Spec, plan: &Plan, exp_dir: &Path) -> Result<(), RunError> {
    let Ok(entries) = std::fs::read_dir(exp_dir) else {
        return Ok(());
    };
    let mut other: Vec<(String, PathBuf, Manifest)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter_map(|p| Manifest::read(&p).ok().map(|m| (p, m)))
        .filter(|(_, m)| m.finished_at.is_none() && m.shard == plan.shard && !m.partial)
        .map(|(p, m)| (m.started_at.clone(), p, m))
        .collect();
    other.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((_, dir, m)) = other.pop() else {
        return Ok(());
    };
    Err(RunError::SpecEdited {
        run_id: m.run_id.clone(),
        experiment: spec.experiment.name.clone(),
        file: spec.file.display().to_string(),
        diff: first_difference(&m.spec, &spec.source),
        manifest: dir.join(store::MANIFEST).display().to_string(),
    })
}

/// The newest run (by start time) of this experiment file and shard: what a bare
/// `--retry-failed` continues.
fn newest_run(exp_dir: &Path, spec: &Spec, plan: &Plan) -> Option<String> {
    let mut runs: Vec<(String, String)> = std::fs::read_dir(exp_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Manifest::read(&e.path()).ok())
        .filter(|m| m.spec_hash == spec.hash && m.shard == plan.shard && m.merged_from.is_empty())
        .map(|m| (m.started_at, m.run_id))
        .collect();
    runs.sort();
    runs.pop().map(|(_, id)| id)
}

/// Where two versions of an experiment file first differ, for people: `line 12: was `…`,
/// now `…``.
pub(crate) fn first_difference(stored: &str, current: &str) -> String {
    fn show(l: Option<&str>) -> String {
        match l {
            None => "(end of file)".into(),
            Some(l) => {
                let t: String = l.trim_end().chars().take(60).collect();
                if l.trim_end().chars().count() > 60 {
                    format!("`{t}…`")
                } else {
                    format!("`{t}`")
                }
            }
        }
    }
    if stored.trim().is_empty() {
        return "its manifest keeps no copy of the file".into();
    }
    let (mut a, mut b) = (stored.lines(), current.lines());
    let mut n = 0;
    loop {
        n += 1;
        match (a.next(), b.next()) {
            (None, None) => return "they differ only in line endings or spacing at the end".into(),
            (x, y) if x != y => {
                return format!(
                    "first difference at line {n}: was {}, now {}",
                    show(x),
                    show(y)
                )
            }
            _ => {}
        }
    }
}

/// Executes every phase of the plan not yet stored (and, with `--retry-failed`, every
/// stored phase whose latest attempt failed), under the failure policy for outages.
pub(crate) async fn execute(
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
    // The phases still to run, as (unit index, phase, attempt): a few bytes each. Jobs (which
    // carry a copy of their cell) are made lazily as the stream pulls them, so memory stays
    // flat however many calls the sweep has. With --retry-failed, a stored phase whose latest
    // attempt has a failed call runs again as the next attempt.
    let mut pending: Vec<(usize, Phase, u32)> = Vec::new();
    let mut stored_calls = 0;
    for (i, unit) in plan.units.iter().enumerate() {
        let cell = &plan.cells[unit.cell];
        for &phase in cell.phases() {
            if !store.is_phase_done(&cell.id, unit.rep, unit.warmup, phase) {
                pending.push((i, phase, 0));
            } else if opts.retry_failed.is_some()
                && store.has_failed(&cell.id, unit.rep, unit.warmup, phase)
            {
                let key = PhaseKey {
                    cell_id: cell.id.clone(),
                    rep: unit.rep,
                    warmup: unit.warmup,
                    phase,
                };
                let next = store.latest_attempt(&key).map_or(0, |l| l + 1);
                pending.push((i, phase, next));
                summary.retried_phases += 1;
            } else {
                summary.skipped_phases += 1;
                stored_calls += cell.calls_in_phase(phase);
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
    let jobs = pending
        .into_iter()
        .enumerate()
        .map(move |(n, (i, phase, retry))| {
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
                retry,
                outage_reruns: 0,
            }
        });
    let total_calls = plan.total_calls();
    let mut progress = Progress::new(opts.progress);
    progress.emit(&Event::Started {
        resumed,
        run_id: run_id.to_string(),
        dir: store.dir().display().to_string(),
        units: plan.units.len(),
        calls: total_calls,
        already_stored: stored_calls,
    });
    let concurrency = opts.concurrency.unwrap_or(spec.run.concurrency).max(1) as usize;
    let n_jobs = jobs.len();
    // The failure policy closes this gate while it probes a backend that stopped answering:
    // phases already under way finish, no new one starts.
    let (gate, gate_rx) = tokio::sync::watch::channel(true);
    let passed_gate = Arc::new(AtomicUsize::new(0));
    let mut stream = futures_util::stream::iter(jobs.map(|job| {
        let ex = executor.clone();
        let mut open = gate_rx.clone();
        let passed = passed_gate.clone();
        async move {
            // An error means the runner is gone: nothing will read the output anyway.
            let _ = open.wait_for(|o| *o).await;
            passed.fetch_add(1, Ordering::SeqCst);
            let out = ex.execute(&job).await;
            (job, out)
        }
    }))
    .buffer_unordered(concurrency);

    let mut lp = Loop {
        sink: Sink {
            store,
            summary,
            progress,
            measured_by_cell: BTreeMap::new(),
            done_calls: stored_calls,
            total_calls,
        },
        watch: policy::Watch::new(&spec.run),
        policy_on: !opts.fail_fast,
        fail_fast: opts.fail_fast,
        suspects: Vec::new(),
        outage: None,
        reruns: FuturesUnordered::new(),
        gate,
        executor: executor.clone(),
        wait: Duration::try_from_secs_f64(spec.run.outage_wait_s)
            .unwrap_or(Duration::from_secs_f64(crate::spec::DEFAULT_OUTAGE_WAIT_S)),
        stop: false,
    };
    let store_failed = |source: StoreError, dir: &std::path::Path| RunError::StoreFailed {
        source,
        resume: resume_command(spec, plan, dir),
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut term = terminate_signal();
    let mut delivered = 0usize;
    let mut stream_done = false;
    loop {
        if lp.stop {
            break;
        }
        if lp.outage.as_ref().is_some_and(|o| o.probed.is_some()) {
            let in_flight =
                passed_gate.load(Ordering::SeqCst).saturating_sub(delivered) + lp.reruns.len();
            if in_flight == 0 {
                if let Err(e) = lp.resolve_outage() {
                    let dir = lp.sink.store.dir().to_path_buf();
                    return Err(store_failed(e, &dir));
                }
                continue;
            }
        }
        if stream_done && lp.reruns.is_empty() && lp.outage.is_none() {
            break;
        }
        let ev = {
            let probe = async {
                match lp.outage.as_mut().and_then(|o| o.probe.as_mut()) {
                    Some(p) => p.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                n = stream.next(), if !stream_done => Ev::Out(n.map(Box::new)),
                Some(x) = lp.reruns.next(), if !lp.reruns.is_empty() => Ev::Out(Some(Box::new(x))),
                p = probe => Ev::Probed(p),
                _ = &mut ctrl_c => Ev::Signal(StopSignal::Interrupt),
                _ = term.recv() => Ev::Signal(StopSignal::Terminate),
            }
        };
        let handled = match ev {
            Ev::Out(None) => {
                stream_done = true;
                Ok(())
            }
            Ev::Out(Some(done)) => {
                let (job, out) = *done;
                if job.outage_reruns == 0 {
                    delivered += 1;
                }
                lp.handle(job, out)
            }
            Ev::Probed(p) => {
                if let Some(o) = lp.outage.as_mut() {
                    o.probe = None;
                    o.probed = Some(p);
                }
                Ok(())
            }
            Ev::Signal(s) => {
                // Phases held by the failure policy are not stored: resume runs them again.
                lp.sink.summary.stopped_by = Some(s);
                break;
            }
        };
        if let Err(e) = handled {
            let dir = lp.sink.store.dir().to_path_buf();
            return Err(store_failed(e, &dir));
        }
    }
    drop(stream);
    if lp.sink.summary.stopped_by.is_none() {
        // Suspects left at the end were isolated failures, not an outage.
        for (job, out) in std::mem::take(&mut lp.suspects) {
            if let Err(e) = lp.sink.put(&job, &out) {
                let dir = lp.sink.store.dir().to_path_buf();
                return Err(store_failed(e, &dir));
            }
        }
    }
    let Sink {
        store,
        mut summary,
        mut progress,
        measured_by_cell,
        ..
    } = lp.sink;
    summary.empty_cells = measured_by_cell
        .into_iter()
        .filter(|(_, n)| *n == 0)
        .map(|(c, _)| c)
        .collect();
    if let Some(o) = summary.outage.as_mut() {
        o.not_run = n_jobs.saturating_sub(summary.phases_run);
    }
    summary.complete = !summary.interrupted()
        && !summary.stopped_on_failure
        && summary.outage.is_none()
        && summary.phases_run == n_jobs
        && !truncated;
    summary.remaining_failed_phases = store.failed_phases();
    if summary.remaining_failed_phases > 0 || summary.outage.is_some() {
        summary.retry_command = Some(retry_command(spec, plan, store.dir()));
    }
    if summary.interrupted() {
        progress.emit(&Event::Interrupted {
            run_id: run_id.to_string(),
            resume: resume_command(spec, plan, store.dir()),
        });
    } else if summary.outage.is_some() {
        progress.emit(&Event::Interrupted {
            run_id: run_id.to_string(),
            resume: retry_command(spec, plan, store.dir()),
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

/// What the run loop waited for.
enum Ev {
    Out(Option<Box<(PhaseJob, PhaseOutput)>>),
    Probed(policy::Probed),
    Signal(StopSignal),
}

/// Times one phase may run again because an outage ended while it ran (a server that keeps
/// going down must not keep the run busy forever: after that the phase is stored as failed).
const MAX_OUTAGE_RERUNS: u32 = 3;

/// A pause of the failure policy.
struct Outage {
    trigger: policy::Trigger,
    /// Phases with failed calls that met the outage: run again if the backend comes back,
    /// stored as failed if it does not.
    held: Vec<(PhaseJob, PhaseOutput)>,
    probe: Option<BoxFuture<'static, policy::Probed>>,
    probed: Option<policy::Probed>,
}

/// Stores phases and keeps the tallies of the summary and the progress display.
struct Sink<'s> {
    store: &'s mut RunStore,
    summary: RunSummary,
    progress: Progress,
    measured_by_cell: BTreeMap<String, usize>,
    done_calls: usize,
    total_calls: usize,
}

impl Sink<'_> {
    /// Stores one phase (its reload probes, reports and records) and counts it.
    fn put(&mut self, job: &PhaseJob, out: &PhaseOutput) -> Result<(), StoreError> {
        let store = &mut *self.store;
        store_probes(store, &out.probes, &out.calls)?;
        for (stem, md) in &out.reports {
            store.write_report(&job.cell.id, job.unit.rep, job.unit.warmup, stem, md)?;
        }
        if job.retry > 0 {
            store.append_attempt_with_calls(&out.records, &out.calls)?;
        } else {
            store.append_with_calls(&out.records, &out.calls)?;
        }
        let summary = &mut self.summary;
        summary.phases_run += 1;
        let ok = out.records.iter().filter(|r| r.ok).count();
        let failed = out.records.len() - ok;
        summary.ok_calls += ok;
        summary.failed_calls += failed;
        self.done_calls += out.records.len();
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
            *self
                .measured_by_cell
                .entry(job.cell.id.clone())
                .or_default() += measured;
        }
        for r in out.records.iter().filter(|r| !r.ok) {
            let kind = r.error_kind.clone().unwrap_or_else(|| "unknown".into());
            *summary.failures_by_kind.entry(kind.clone()).or_default() += 1;
            self.progress.emit(&Event::Failure {
                cell: job.cell.id.clone(),
                kind,
                message: r.error_message.clone().unwrap_or_default(),
            });
        }
        let last_ok = out.records.iter().rev().find(|r| r.ok);
        self.progress.emit(&Event::Phase {
            done_calls: self.done_calls,
            total_calls: self.total_calls,
            cell: job.cell.id.clone(),
            rep: job.unit.rep,
            warmup: job.unit.warmup,
            phase: job.phase.as_str().to_string(),
            ok,
            failed,
            ttft_ms: last_ok.and_then(|r| r.ttft_ms),
            decode_tps: last_ok.and_then(|r| r.decode_tps),
        });
        Ok(())
    }
}

fn has_failures(out: &PhaseOutput) -> bool {
    out.records.iter().any(|r| !r.ok)
}

/// The run loop's state: where each finished phase goes (stored, held as a suspect of an
/// outage, held during a pause) and what a pause ends in.
struct Loop<'s> {
    sink: Sink<'s>,
    watch: policy::Watch,
    /// Off with --fail-fast (the first failure stops the run anyway).
    policy_on: bool,
    fail_fast: bool,
    /// Phases that ended on a call that could not connect, below the streak: stored once a
    /// later call gets through (isolated failures), held if the streak becomes an outage.
    suspects: Vec<(PhaseJob, PhaseOutput)>,
    outage: Option<Outage>,
    /// Phases running again after an outage ended (they bypass the gate).
    reruns: FuturesUnordered<BoxFuture<'static, (PhaseJob, PhaseOutput)>>,
    gate: tokio::sync::watch::Sender<bool>,
    executor: Arc<dyn PhaseExecutor>,
    wait: Duration,
    stop: bool,
}

impl Loop<'_> {
    fn handle(&mut self, job: PhaseJob, out: PhaseOutput) -> Result<(), StoreError> {
        if !self.policy_on {
            self.sink.put(&job, &out)?;
            if self.fail_fast && has_failures(&out) {
                self.sink.summary.stopped_on_failure = true;
                self.stop = true;
            }
            return Ok(());
        }
        if let Some(o) = self.outage.as_mut() {
            if has_failures(&out) {
                o.held.push((job, out));
                return Ok(());
            }
            return self.sink.put(&job, &out);
        }
        match self.watch.observe(&out.records) {
            policy::Verdict::Clear => {
                for (j, o) in std::mem::take(&mut self.suspects) {
                    self.sink.put(&j, &o)?;
                }
                self.sink.put(&job, &out)
            }
            policy::Verdict::Suspect => {
                self.suspects.push((job, out));
                Ok(())
            }
            policy::Verdict::Pause(trigger) => {
                self.gate.send_replace(false);
                self.sink.summary.pauses += 1;
                tracing::warn!(
                    "pausing the run: {trigger}; probing the backend for up to {} before \
                     failing the phases that met it",
                    human_duration(self.wait.as_secs_f64())
                );
                let ex = self.executor.clone();
                let probe_job = job.clone();
                let wait = self.wait;
                let probe: BoxFuture<'static, policy::Probed> =
                    Box::pin(
                        async move { policy::probe_until_up(ex.as_ref(), &probe_job, wait).await },
                    );
                let mut held = std::mem::take(&mut self.suspects);
                held.push((job, out));
                self.outage = Some(Outage {
                    trigger,
                    held,
                    probe: Some(probe),
                    probed: None,
                });
                Ok(())
            }
        }
    }

    /// Ends a pause once probing is over and no phase is under way.
    fn resolve_outage(&mut self) -> Result<(), StoreError> {
        let Some(o) = self.outage.take() else {
            return Ok(());
        };
        let probed = o.probed.unwrap_or(policy::Probed::Down {
            waited: Duration::ZERO,
            error: "not probed".into(),
        });
        match probed {
            policy::Probed::Up {
                was_down: true,
                after,
            } => {
                let mut again = 0;
                for (mut job, out) in o.held {
                    if has_failures(&out) && job.outage_reruns < MAX_OUTAGE_RERUNS {
                        job.outage_reruns += 1;
                        again += 1;
                        let ex = self.executor.clone();
                        self.reruns.push(Box::pin(async move {
                            let out = ex.execute(&job).await;
                            (job, out)
                        }));
                    } else {
                        self.sink.put(&job, &out)?;
                    }
                }
                self.sink.summary.outage_reruns += again;
                tracing::warn!(
                    "the backend answers again after {}; running the {again} phase(s) that \
                     met the outage again",
                    human_duration(after.as_secs_f64())
                );
            }
            policy::Probed::Up {
                was_down: false, ..
            } => {
                tracing::warn!(
                    "{}, but the backend answers: the failures are the calls' own; continuing",
                    o.trigger
                );
                for (job, out) in o.held {
                    self.sink.put(&job, &out)?;
                }
            }
            policy::Probed::Down { waited, error } => {
                for (job, out) in o.held {
                    self.sink.put(&job, &out)?;
                }
                tracing::warn!(
                    "the backend did not answer for {} ({error}); stopping the run",
                    human_duration(waited.as_secs_f64())
                );
                self.sink.summary.outage = Some(OutageStop {
                    trigger: o.trigger.to_string(),
                    waited_s: waited.as_secs_f64(),
                    error,
                    not_run: 0,
                });
                self.stop = true;
                return Ok(());
            }
        }
        self.watch.reset();
        self.gate.send_replace(true);
        Ok(())
    }
}

/// Stores a phase's reload probes as their own warm-up group (a further attempt when a
/// resumed run probes a unit again).
fn store_probes(
    store: &mut RunStore,
    probes: &[Record],
    calls: &[crate::store::CallText],
) -> Result<(), StoreError> {
    let Some(first) = probes.first() else {
        return Ok(());
    };
    match store.latest_attempt(&first.phase_key()) {
        None => store.append_with_calls(probes, calls),
        Some(l) => {
            let again: Vec<Record> = probes
                .iter()
                .map(|r| Record {
                    retry: l + 1,
                    ..r.clone()
                })
                .collect();
            store.append_attempt_with_calls(&again, calls)
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
    continue_command(spec, plan, run_dir, "--resume")
}

/// The command line that runs the failed phases of this run again (and any not yet run).
fn retry_command(spec: &Spec, plan: &Plan, run_dir: &std::path::Path) -> String {
    continue_command(spec, plan, run_dir, "--retry-failed")
}

/// `sweep run FILE <flag> <run id>`, with the shard and results directory the run needs.
fn continue_command(spec: &Spec, plan: &Plan, run_dir: &std::path::Path, flag: &str) -> String {
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let results = run_dir.parent().and_then(std::path::Path::parent);
    format!(
        "sweep run {} {flag} {run_id}{}{}",
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
    // A managed server listens where sweep says: the configured port, else a free one.
    let (spec, managed_port) = match &spec.server {
        Some(s) => {
            let port = match s.port {
                Some(p) => p,
                None => crate::server::free_port(&s.host).map_err(|e| {
                    RunError::Setup(format!("no free port on {} for the server: {e}", s.host))
                })?,
            };
            let mut with_address = spec.clone();
            with_address.backend.urls = vec![format!("http://{}:{port}", s.host)];
            (std::borrow::Cow::Owned(with_address), Some(port))
        }
        None => (std::borrow::Cow::Borrowed(spec), None),
    };
    let spec: &Spec = &spec;
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
    let mut info = crate::backend::BackendInfo {
        kind: spec.backend.kind.as_str().to_string(),
        endpoints: spec.backend.urls.clone(),
        ..Default::default()
    };
    // A managed server is not running yet: its preflight comes once it is (below), and its
    // version and settings are in servers.jsonl.
    if spec.server.is_none() {
        for model in &models {
            info = backend.preflight(model).await.map_err(|e| {
                RunError::Backend(format!("backend preflight for model {model:?}: {e}"))
            })?;
        }
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
        prompt_versions: {
            let mut v: Vec<String> = plan
                .cells
                .iter()
                .flat_map(|c| {
                    c.members
                        .iter()
                        .map(|m| m.prompt_version.as_str().to_string())
                })
                .collect();
            v.sort();
            v.dedup();
            v
        },
        personas: crate::plan::persona_lines(spec),
        call_texts: (!opts.no_text).then(|| crate::store::CALLS_ZST.to_string()),
    };
    let (mut store, run_id, resumed) = open_store(spec, &plan, opts, manifest)?;
    let was_finished = Manifest::read(store.dir())?.is_finished();
    if opts.progress != ProgressMode::Quiet && opts.retry_failed.is_some() {
        eprintln!(
            "run {run_id}: running again the {} phase(s) whose latest attempt failed, and \
             any not yet run",
            store.failed_phases()
        );
    }
    store.set_keep_call_texts(!opts.no_text);
    let agents = Arc::new(AgentExecutor::new(
        backend.clone(),
        spec.corpus.clone(),
        spec.backend.retry.clone(),
        spec.analysis.cold_load_ms,
    ));
    let observed = observe_run(spec, agents, backend.clone())?;
    let mut executor: Arc<dyn PhaseExecutor> = observed.clone();
    let mut managers = Vec::new();
    if let (Some(cfg), Some(port)) = (&spec.server, managed_port) {
        let (managed, started) = start_managed(
            spec,
            &plan,
            cfg,
            port,
            store.dir(),
            &backend,
            &models,
            executor,
        )
        .await?;
        executor = managed;
        managers = started;
    }
    let result = execute(spec, &plan, &mut store, &run_id, resumed, executor, opts).await;
    for m in &managers {
        m.shutdown().await;
    }
    let mut summary = result?;
    if let Some(session) = observed.finish(store.dir()) {
        if opts.progress == ProgressMode::Quiet {
            for w in &session.warnings {
                tracing::warn!("{w}");
            }
        }
        summary.warnings = session.warnings;
    }
    // A server that runs with other values than its cell asked for is flagged, as the
    // offload check flags a model that is not where num_gpu put it.
    for ev in crate::server::read_events(store.dir()) {
        if let crate::server::ServerEvent::Start {
            instance,
            config,
            mismatches,
            ..
        } = ev
        {
            for m in mismatches {
                summary
                    .warnings
                    .push(format!("managed server {instance} ({config}): {m}"));
            }
        }
    }
    // A finished run that --retry-failed found nothing to do in is left as it was.
    if summary.complete && (summary.phases_run > 0 || !was_finished) {
        let dir = store.dir().to_path_buf();
        store::columnar::finish(&dir, &run_id).map_err(|source| RunError::StoreFailed {
            source,
            resume: resume_command(spec, &plan, &dir),
        })?;
    }
    Ok(summary)
}

/// Under `[server]`: the server managers (a second one for Agent B where a pair's agents
/// load the model differently), the first configuration started and the backend's preflight
/// run against it, and the executor wrapped so that each phase runs on its server.
#[allow(clippy::too_many_arguments)]
async fn start_managed(
    spec: &Spec,
    plan: &Plan,
    cfg: &crate::spec::ServerConfig,
    port: u16,
    run_dir: &Path,
    backend: &Arc<dyn crate::backend::Backend>,
    models: &[&str],
    inner: Arc<dyn PhaseExecutor>,
) -> Result<
    (
        Arc<dyn PhaseExecutor>,
        Vec<Arc<crate::server::ServerManager>>,
    ),
    RunError,
> {
    let instances = Arc::default();
    let manager = |port: u16| {
        Arc::new(crate::server::ServerManager::new(
            cfg.clone(),
            spec.backend.kind,
            spec.backend.model.clone(),
            port,
            run_dir,
            Arc::clone(&instances),
        ))
    };
    let m = manager(port);
    let second = plan
        .cells
        .iter()
        .any(|c| match c.members.as_slice() {
            [a, b] => crate::spec::separate_servers(&a.options, &b.options),
            _ => false,
        })
        .then(|| crate::server::free_port(&cfg.host).map(manager))
        .transpose()
        .map_err(|e| RunError::Setup(format!("no free port for a second server: {e}")))?;
    if let Some(first) = plan.units.first() {
        let options = &plan.cells[first.cell].members[0].options;
        let lease = m
            .acquire(&m.config_of(options))
            .await
            .map_err(|e| RunError::Backend(format!("managed server: {e}")))?;
        for model in models {
            backend.preflight(model).await.map_err(|e| {
                RunError::Backend(format!("backend preflight for model {model:?}: {e}"))
            })?;
        }
        drop(lease);
    }
    let executor: Arc<dyn PhaseExecutor> = Arc::new(managed::ManagedExecutor::new(
        inner,
        m.clone(),
        second.clone(),
    ));
    let mut managers = vec![m];
    managers.extend(second);
    Ok((executor, managers))
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
pub(crate) fn failure_summary(s: &RunSummary) -> String {
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
    if s.outage_reruns > 0 {
        line.push_str(&format!(
            "; {} phase(s) ran again after the backend came back",
            s.outage_reruns
        ));
    }
    if !s.empty_cells.is_empty() {
        line.push_str(&format!(
            "\nnothing measured in {} cell(s) (every call excluded): {}",
            s.empty_cells.len(),
            s.empty_cells.join(", ")
        ));
    }
    if let Some(o) = &s.outage {
        line.push_str(&format!(
            "\nstopped: {}, and the backend did not answer for {} ({}); {} phase(s) not run",
            o.trigger,
            human_duration(o.waited_s),
            o.error,
            o.not_run
        ));
    }
    if let Some(cmd) = &s.retry_command {
        line.push_str(&format!(
            "\n{}: {} phase(s) have failed calls{}; when the backend is fine, run only those{} \
             again with:\n  {cmd}",
            if s.outage.is_some() {
                "unfinished with failures"
            } else {
                "finished with failures"
            },
            s.remaining_failed_phases,
            if s.retried_phases > 0 {
                format!(" ({} were retried in this run)", s.retried_phases)
            } else {
                String::new()
            },
            if s.outage.is_some() {
                " and the rest"
            } else {
                ""
            }
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
pub(crate) struct Eta {
    /// The plan's phases, without reload probes.
    pub seconds: f64,
    /// One reload probe (mean of the stored probes; 0 when there were none).
    pub probe_seconds: f64,
    pub from_run: String,
    pub cells_known: usize,
    pub cells_total: usize,
    /// One managed-server start, spawn → first token (mean of that run's starts; 0 without
    /// `[server]`).
    pub server_start_seconds: f64,
}

/// Looks for the newest run of the experiment with stored records and estimates from it.
pub(crate) fn estimate(
    spec: &Spec,
    plan: &Plan,
    results_dir: Option<&std::path::Path>,
) -> Option<Eta> {
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
    let starts: Vec<f64> = crate::server::read_events(run)
        .into_iter()
        .filter_map(|e| match e {
            crate::server::ServerEvent::Start {
                healthy_ms,
                first_token_ms,
                ..
            } => Some(first_token_ms.unwrap_or(healthy_ms)),
            _ => None,
        })
        .collect();
    Eta {
        server_start_seconds: if starts.is_empty() {
            0.0
        } else {
            starts.iter().sum::<f64>() / starts.len() as f64 / 1000.0
        },
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
pub(crate) fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}
