//! `sweep run`: execute a plan, then print the run's summary and headline table.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The experiment file (TOML).
    pub(crate) file: PathBuf,
    /// Continue this run, skipping every phase already stored.
    #[arg(long, value_name = "RUN_ID", conflicts_with = "new")]
    pub(crate) resume: Option<String>,
    /// Start a new run even if an unfinished one of the same file exists.
    #[arg(long)]
    pub(crate) new: bool,
    /// Name the new run (default: UTC time + random suffix).
    #[arg(long, value_name = "NAME")]
    pub(crate) run_id: Option<String>,
    /// Run only shard i of N (0-based) of the cells: for Slurm arrays, indexed Jobs, CI
    /// matrices. `auto` reads i/N from the scheduler (SLURM_ARRAY_TASK_ID,
    /// JOB_COMPLETION_INDEX, or SWEEP_SHARD_INDEX/SWEEP_SHARD_COUNT) and, in a Slurm
    /// array, names the run slurm-<array job>-<task> unless --run-id is given.
    #[arg(long, value_name = "i/N|auto")]
    pub(crate) shard: Option<ShardArg>,
    /// The number of shards, for --shard auto where the scheduler does not tell it
    /// (a Kubernetes indexed Job); elsewhere a check.
    #[arg(long, value_name = "N", requires = "shard")]
    pub(crate) shard_count: Option<u32>,
    /// Units in flight at once, 1–1024 (default: [run] concurrency, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) concurrency: Option<u32>,
    /// Where runs are stored (default: [run] results_dir, else results/).
    #[arg(long, value_name = "DIR")]
    pub(crate) results_dir: Option<PathBuf>,
    /// Stop at the first failed call (default: a failing cell never stops the sweep).
    #[arg(long)]
    pub(crate) fail_fast: bool,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub(crate) progress: ProgressMode,
    /// No progress output (same as --progress quiet).
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// JSON events on stdout, one per line (same as --progress json).
    #[arg(long)]
    pub(crate) json: bool,
    /// Stop after N phases (smoke tests); the run stays resumable.
    #[arg(long, value_name = "N", hide = true)]
    pub(crate) max_phases: Option<usize>,
    /// Continue RUN_ID (default: the newest run of this file), running again exactly the
    /// phases whose latest attempt has failed calls (stored as further attempts; analysis
    /// uses the latest), and any phase not yet run.
    #[arg(long, value_name = "RUN_ID", num_args = 0..=1, conflicts_with_all = ["new", "resume", "run_id"])]
    pub(crate) retry_failed: Option<Option<String>>,
    /// Do not keep the calls' requests and answers (calls.jsonl.zst; kept by default,
    /// `sweep show` prints them).
    #[arg(long)]
    pub(crate) no_text: bool,
}

impl RunArgs {
    /// The progress display: `--quiet` and `--json` override `--progress`.
    fn progress_mode(&self) -> ProgressMode {
        if self.quiet {
            ProgressMode::Quiet
        } else if self.json {
            ProgressMode::Json
        } else {
            self.progress
        }
    }

    /// The library's run options, with the shard and run id as resolved from the scheduler.
    fn into_options(self, shard: Option<Shard>, run_id: Option<String>) -> RunOptions {
        RunOptions {
            progress: self.progress_mode(),
            resume: self.resume,
            new_run: self.new,
            run_id,
            shard,
            fail_fast: self.fail_fast,
            concurrency: self.concurrency,
            results_dir: self.results_dir,
            max_phases: self.max_phases,
            retry_failed: self.retry_failed,
            no_text: self.no_text,
        }
    }

    /// Runs `sweep run`: a scheduler's task whose run already finished has nothing to do.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let spec = Spec::load(&self.file)?;
        let chosen = self.new || self.resume.is_some();
        let (shard, run_id, auto) =
            resolve_shard(self.shard, self.shard_count, self.run_id.clone(), chosen)?;
        if let Some(done) = run_id
            .as_deref()
            .filter(|_| auto)
            .and_then(|id| finished_task_run(&spec, self.results_dir.as_deref(), id))
        {
            eprintln!("run {} is already finished; nothing to do", done.display());
            return Ok(Status::Ok);
        }
        run_command(&spec, self.into_options(shard, run_id))
    }
}

/// `sweep run`: executes the plan on a multi-threaded runtime, prints what the run measured
/// and excluded, and says by its status whether every call succeeded.
fn run_command(spec: &Spec, opts: RunOptions) -> Result<Status, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Io {
            what: "cannot start the async runtime".into(),
            source,
        })?;
    let quiet = opts.progress == ProgressMode::Quiet;
    // The run ends with its report and headline table; --quiet and --json (whose events own
    // stdout) leave that to `sweep report`.
    let show_report = !matches!(opts.progress, ProgressMode::Quiet | ProgressMode::Json);
    let s = rt.block_on(crate::runner::run_experiment(spec, &opts))?;
    if !quiet {
        eprintln!("{s}");
    } else if let Some(cmd) = &s.retry_command {
        // Even a quiet run says how to run its failures again (exit 4 says that there are).
        eprintln!("failed calls remain; run them again with: {cmd}");
    }
    if show_report && s.complete && s.stopped_by.is_none() && opts.shard.is_none() {
        end_of_run_report(&s.dir);
    }
    Ok(match s.stopped_by {
        Some(crate::runner::StopSignal::Interrupt) => Status::Interrupted,
        Some(crate::runner::StopSignal::Terminate) => Status::Terminated,
        None if s.stopped_on_failure
            || s.failed_calls > 0
            || s.outage.is_some()
            || s.remaining_failed_phases > 0 =>
        {
            Status::FinishedWithFailures
        }
        None if !s.empty_cells.is_empty() => {
            tracing::warn!(
                "nothing measured in {} cell(s): {}",
                s.empty_cells.len(),
                s.empty_cells.join("; ")
            );
            Status::Undecided
        }
        None => Status::Ok,
    })
}

/// Reads `--shard auto` from the scheduler's environment (refusing, exit 2, when it cannot
/// tell) and takes the scheduler's run id unless one was given or `--new`/`--resume` chose.
/// Returns the shard, the run id, and whether the shard was `auto`.
fn resolve_shard(
    shard: Option<ShardArg>,
    count: Option<u32>,
    run_id: Option<String>,
    chosen: bool,
) -> Result<(Option<Shard>, Option<String>, bool), CliError> {
    match shard {
        None => Ok((None, run_id, false)),
        Some(ShardArg::Fixed(s)) => match count {
            Some(n) if n != s.count => Err(CliError::Usage(format!(
                "--shard {}/{} and --shard-count {n} differ",
                s.index, s.count
            ))),
            _ => Ok((Some(s), run_id, false)),
        },
        Some(ShardArg::Auto) => {
            let d = crate::cluster::detect(|k| std::env::var(k).ok(), count)?;
            eprintln!(
                "shard {}/{} from {}",
                d.shard.index, d.shard.count, d.source
            );
            let run_id = if chosen { run_id } else { run_id.or(d.run_id) };
            Ok((Some(d.shard), run_id, true))
        }
    }
}

/// A scheduler's task whose named run has already finished: a requeue after the end, a
/// retried pod. There is nothing left to do, and failing would fail the merge after it.
fn finished_task_run(spec: &Spec, results_dir: Option<&Path>, run_id: &str) -> Option<PathBuf> {
    let dir = results_dir
        .unwrap_or(&spec.run.results_dir)
        .join(&spec.experiment.name)
        .join(run_id);
    crate::store::Manifest::read(&dir)
        .ok()
        .filter(|m| m.finished_at.is_some())
        .map(|_| dir)
}

/// The end of `sweep run`: the report written into the run, its headline table on stdout
/// (the way hyperfine and llama-bench end), and where the full report is. A report that
/// cannot be made is a warning: the run itself is stored either way.
fn end_of_run_report(dir: &Path) {
    let opts = ReportOptions::default();
    match crate::report::render_run(dir, &opts) {
        Ok((r, _)) => {
            let text = crate::report::export::terminal::Terminal
                .tables(&r.headline)
                .unwrap_or_default();
            println!("\n{text}");
            // A run with workload levels answers "how many at once": its levels and capacity.
            if !r.workload.is_empty() {
                let text = crate::report::export::terminal::Terminal
                    .tables(&r.workload)
                    .unwrap_or_default();
                println!("{text}");
            }
            println!("Full report:");
            if let Some(h) = &r.html {
                println!("  {}", h.display());
            }
            println!("  {}", dir.join("tables").display());
            if dir.join("plots").is_dir() {
                println!("  {}", dir.join("plots").display());
            }
        }
        Err(e) => tracing::warn!("the run is stored, but its report could not be made: {e}"),
    }
}
