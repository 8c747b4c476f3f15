//! The runner: executes the plan's units phase by phase, stores each phase atomically,
//! survives crashes (resume skips every stored phase), Ctrl-C and SIGTERM, failing cells,
//! and outages (the failure policy in [`policy`] pauses and probes the backend); `sweep run
//! --retry-failed` re-runs exactly the phases whose latest attempt failed.

mod eta;
mod event_loop;
mod exec;
mod managed;
mod observe;
pub(crate) mod policy;
mod schedule;
mod select;
mod signal;
mod summary;

pub(crate) use exec::AgentExecutor;
pub(crate) use observe::Observed;

pub(crate) use eta::{estimate, human_duration};
pub(crate) use event_loop::execute;
pub(crate) use select::open_store;
#[allow(unused_imports)]
use {event_loop::*, select::*, signal::*, summary::*};

use crate::backend::BoxFuture;
use crate::plan::{Cell, Plan, Shard, Unit};
use crate::progress::{Event, Progress, ProgressMode};
use crate::record::{Phase, PhaseKey, Record};
use crate::spec::Spec;
use crate::store::{self, Manifest, RunStore, StoreError};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use std::collections::BTreeMap;
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
    let manifest = |id: &str| {
        Manifest::for_run(
            spec,
            &plan,
            id,
            &corpus,
            info.clone(),
            (!opts.no_text).then(|| crate::store::CALLS_ZST.to_string()),
        )
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
        .any(crate::plan::Cell::needs_two_servers)
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
