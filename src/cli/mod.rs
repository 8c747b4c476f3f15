//! Command-line interface: clap parses every flag, each subcommand is one call into the
//! library returning a typed result, and [`exit`] maps every error to an exit code and a
//! message in one place. The library warns through `tracing` (a subscriber is installed
//! here: human-readable on stderr, or `--log-format json`; `RUST_LOG` is honoured).

pub(crate) mod exit;

use crate::analysis::{self, AnalysisOptions, Metric};
use crate::gate::{self, Against, CompareRequest};
use crate::plan::{Plan, Shard, ShardArg};
use crate::progress::ProgressMode;
use crate::report::{self, Exporter as _, Format, LabelBy, ReportOptions};
use crate::runner::RunOptions;
use crate::spec::Spec;
use clap::{Parser, Subcommand, ValueEnum};
use exit::{CliError, Status};
use std::path::{Path, PathBuf};

#[derive(Debug, Parser)]
#[command(
    name = "sweep",
    version,
    about = "Parameter-sweep experiment harness for benchmarking LLM agents",
    long_about = "sweep runs a declarative grid of agents × model options × repetitions against a real \
LLM backend (Ollama, an OpenAI-compatible server, or an embedded llama.cpp engine), records \
every call crash-safely, and turns the records into statistics, paper tables, plots and \
regression verdicts.\n\nTypical session:\n  sweep validate experiments/gemma3.toml   # check the file\n  \
sweep plan experiments/gemma3.toml       # cells, calls, reloads, ETA\n  \
sweep run experiments/gemma3.toml        # execute, store under results/<experiment>/<run-id>/\n  \
sweep analyze results/gemma3/<run-id>    # statistics\n  \
sweep report results/gemma3/<run-id>     # tables and plots\n  \
sweep compare baselines/gemma3 results/gemma3/<run-id>   # nightly verdict\n\n\
Exit codes: 0 done; 1 regression; 2 bad input; 3 nothing decided (inconclusive, not \
comparable, nothing measured, partial run); 4 run finished with failed calls; 5 machine or \
backend failure; 130/143 run stopped by SIGINT/SIGTERM (resumable)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log format on stderr (warnings and diagnostics; RUST_LOG sets the level).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
}

/// How `tracing` output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check an experiment file; every problem is reported with file:line:column.
    Validate {
        /// The experiment file (TOML).
        file: PathBuf,
    },
    /// Show the cells, LLM calls, reload groups and reloads by order, and an ETA.
    Plan {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Print the plan as JSON (cells, ordered units, groups).
        #[arg(long)]
        json: bool,
        /// Only the cells of shard i of N (0-based), as `sweep run --shard` would run.
        #[arg(long, value_name = "i/N")]
        shard: Option<Shard>,
    },
    /// Execute every cell of the plan and store the records under
    /// results/<experiment>/<run-id>/. An unfinished run of the same file is resumed
    /// automatically (use --new to start afresh); Ctrl-C or SIGTERM stops cleanly and prints
    /// how to resume. A finished run (not a shard) ends with its report: the headline table
    /// on stdout and report.html, tables/ and plots/ in the run (not with --quiet or --json).
    Run {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Continue this run, skipping every phase already stored.
        #[arg(long, value_name = "RUN_ID", conflicts_with = "new")]
        resume: Option<String>,
        /// Start a new run even if an unfinished one of the same file exists.
        #[arg(long)]
        new: bool,
        /// Name the new run (default: UTC time + random suffix).
        #[arg(long, value_name = "NAME")]
        run_id: Option<String>,
        /// Run only shard i of N (0-based) of the cells: for Slurm arrays, indexed Jobs, CI
        /// matrices. `auto` reads i/N from the scheduler (SLURM_ARRAY_TASK_ID,
        /// JOB_COMPLETION_INDEX, or SWEEP_SHARD_INDEX/SWEEP_SHARD_COUNT) and, in a Slurm
        /// array, names the run slurm-<array job>-<task> unless --run-id is given.
        #[arg(long, value_name = "i/N|auto")]
        shard: Option<ShardArg>,
        /// The number of shards, for --shard auto where the scheduler does not tell it
        /// (a Kubernetes indexed Job); elsewhere a check.
        #[arg(long, value_name = "N", requires = "shard")]
        shard_count: Option<u32>,
        /// Units in flight at once, 1–1024 (default: [run] concurrency, else 1).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
        concurrency: Option<u32>,
        /// Where runs are stored (default: [run] results_dir, else results/).
        #[arg(long, value_name = "DIR")]
        results_dir: Option<PathBuf>,
        /// Stop at the first failed call (default: a failing cell never stops the sweep).
        #[arg(long)]
        fail_fast: bool,
        /// Progress display.
        #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
        progress: ProgressMode,
        /// No progress output (same as --progress quiet).
        #[arg(long, short)]
        quiet: bool,
        /// JSON events on stdout, one per line (same as --progress json).
        #[arg(long)]
        json: bool,
        /// Stop after N phases (smoke tests); the run stays resumable.
        #[arg(long, value_name = "N", hide = true)]
        max_phases: Option<usize>,
        /// Continue RUN_ID (default: the newest run of this file), running again exactly the
        /// phases whose latest attempt has failed calls (stored as further attempts; analysis
        /// uses the latest), and any phase not yet run.
        #[arg(long, value_name = "RUN_ID", num_args = 0..=1, conflicts_with_all = ["new", "resume", "run_id"])]
        retry_failed: Option<Option<String>>,
        /// Do not keep the calls' requests and answers (calls.jsonl.zst; kept by default,
        /// `sweep show` prints them).
        #[arg(long)]
        no_text: bool,
    },
    /// Print a run's stored calls: each request as sent (endpoint, system prompt, prompt or
    /// messages, options) and the model's full answer, from <run>/calls.jsonl.zst. Filters
    /// combine; without any, every call is printed.
    Show {
        /// A run directory (results/<experiment>/<run-id>).
        run: PathBuf,
        /// A cell id, or an arm name (all its cells).
        #[arg(long, value_name = "CELL")]
        cell: Option<String>,
        /// Repetition k (1-based, as in the reports' run_<k>); with --warmup, warm-up run k.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
        rep: Option<u32>,
        /// Warm-up calls only (with --rep: warm-up run k).
        #[arg(long)]
        warmup: bool,
        /// `analysis` or `report`.
        #[arg(long, value_name = "STAGE", value_parser = ["analysis", "report"])]
        stage: Option<String>,
        /// `single`, `A` or `B`.
        #[arg(long, value_name = "AGENT", value_parser = ["single", "A", "B"])]
        agent: Option<String>,
        /// `single`, `concurrent`, `sequential` or `reload`.
        #[arg(long, value_name = "PHASE", value_parser = ["single", "concurrent", "sequential", "reload"])]
        phase: Option<String>,
        /// A call id (as in the records and the reports' `## Calls`), or the start of one.
        #[arg(long, value_name = "ID")]
        call: Option<String>,
        /// JSON lines (the stored form) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a Slurm job array (one shard per task, run ids from the job id so a requeued
    /// task resumes its run), the afterok job that merges and analyses the shards, a submit
    /// script for both and requeue.sh, into --out (default slurm/<experiment>).
    Slurm {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Array tasks, one shard each.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100000))]
        shards: u32,
        /// GPUs per task (`#SBATCH --gres=gpu:K`).
        #[arg(long, value_name = "K")]
        gpus_per_task: Option<u32>,
        /// CPUs per task (`#SBATCH --cpus-per-task=C`; default: Slurm's).
        #[arg(long, value_name = "C")]
        cpus_per_task: Option<u32>,
        /// Time limit per task (Slurm syntax: 90, 2:00:00, 1-12).
        #[arg(long, value_name = "TIME")]
        time: Option<String>,
        /// Slurm partition (`#SBATCH --partition`; default: the cluster's default).
        #[arg(long)]
        partition: Option<String>,
        /// Results directory on the shared filesystem (default: [run] results_dir).
        #[arg(long, value_name = "DIR")]
        results_dir: Option<PathBuf>,
        /// Where to write the scripts (default: slurm/<experiment>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The sweep executable on the compute nodes.
        #[arg(long, value_name = "PATH", default_value = "sweep")]
        sweep_bin: String,
    },
    /// Write a Kubernetes indexed Job manifest (one shard per completion index) to stdout
    /// or --out.
    K8s {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Completions, one shard each.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100000))]
        shards: u32,
        /// Container image with sweep and the experiment file.
        #[arg(long, default_value = "sweep:latest")]
        image: String,
        /// Job name (default: sweep-<experiment>).
        #[arg(long)]
        name: Option<String>,
        /// The container's working directory, where FILE is relative to.
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Pods at once (default: all).
        #[arg(long, value_name = "P")]
        parallelism: Option<u32>,
        /// GPUs per pod (`nvidia.com/gpu` limit).
        #[arg(long, value_name = "K")]
        gpus_per_task: Option<u32>,
        /// PersistentVolumeClaim for the results (ReadWriteMany across nodes).
        #[arg(long, default_value = "sweep-results")]
        claim: String,
        /// Where the claim is mounted in the pod.
        #[arg(long, value_name = "DIR", default_value = "/results")]
        results_mount: PathBuf,
        /// Failed pods allowed per index (disruptions do not count).
        #[arg(long, value_name = "K", default_value_t = 3)]
        backoff_per_index: u32,
        /// The sweep executable in the container.
        #[arg(long, value_name = "PATH", default_value = "sweep")]
        sweep_bin: String,
        /// Write the manifest here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Join shard runs of one experiment into one run (refuses runs of different files, and
    /// a union that lacks planned cells unless --allow-partial).
    Merge {
        /// Run directories to merge.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The merged run directory to create.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Keep a merge that lacks planned phases, marked partial.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Aggregate a stored run into statistics (exit 3 when a cell has no measured call).
    Analyze {
        /// A run directory (results/<experiment>/<run-id>).
        run: PathBuf,
        /// Reference arm (default: the experiment's `reference`).
        #[arg(long, value_name = "ARM")]
        reference: Option<String>,
        /// Significance level.
        #[arg(long, default_value_t = 0.05, value_name = "A", value_parser = parse_alpha)]
        alpha: f64,
        /// Metrics to print (default: ttft_ms, e2e_ms, decode_tps); all are analysed.
        #[arg(long = "metric", value_name = "METRIC")]
        metrics: Vec<Metric>,
        /// Analyse a partial merge or an unfinished run.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Render paper tables (Markdown, LaTeX, CSV, JSON; methods.md|tex; all.tex), SVG plots
    /// and report.html of a stored run into <run>/tables, <run>/plots and <run>/report.html:
    /// the experiment file's [[table]] sections, or the default tables when it has none.
    /// Several runs make tables that join them (--label-by, --out).
    Report {
        /// One run directory, or several to join in one table.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// With several runs: what tells their cells apart in the tables.
        #[arg(long, value_enum, default_value_t = LabelBy::Run)]
        label_by: LabelBy,
        /// Join runs of different experiments (or different experiment files).
        #[arg(long)]
        allow_mixed: bool,
        /// Where joined tables go (several runs; required then).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Regenerate the tables and compare them with the committed ones in DIR (e.g.
        /// results/example/tables): exit 1 with a diff when they differ, 0 when identical.
        /// Writes nothing into the run.
        #[arg(long, value_name = "DIR")]
        check: Option<PathBuf>,
        /// Split the default tables into sections by these axes (`arm` or a factor).
        #[arg(long = "group-by", value_name = "AXIS")]
        group_by: Vec<String>,
        /// Also write the paper layout: this axis' values as columns (e.g. `--columns
        /// num_gpu`), the other factors down the rows, `median [CI]` per entry; written to
        /// tables/<metric>_by_<AXIS>.*
        #[arg(long, value_name = "AXIS")]
        columns: Option<String>,
        /// Metrics of the default tables (default: ttft_ms, e2e_ms, decode_tps).
        #[arg(long = "metric", value_name = "METRIC")]
        metrics: Vec<Metric>,
        /// Only these formats (default: md, tex, csv, json).
        #[arg(long = "format", value_name = "FMT", value_enum)]
        formats: Vec<Format>,
        /// Reference arm (default: the experiment's `reference`).
        #[arg(long, value_name = "ARM")]
        reference: Option<String>,
        /// Significance level.
        #[arg(long, default_value_t = 0.05, value_name = "A", value_parser = parse_alpha)]
        alpha: f64,
        /// Skip the SVG plots.
        #[arg(long)]
        no_plots: bool,
        /// Skip report.html.
        #[arg(long)]
        no_html: bool,
        /// Report a partial merge or an unfinished run.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Print the JSON Schema of the experiment file (generated from the types that parse
    /// it; editors such as Even Better TOML use it through a `#:schema` directive).
    Schema,
    /// Judge tonight's run against the nights before it: exit 0 pass (a change of the
    /// tolerance or worse is ruled out in every gating row), 1 regression (a change worse
    /// than the tolerance is shown, or a cell's calls fail or reload), 3 undecided or not
    /// comparable (neither shown; too few reps; environments differ), 2 bad input.
    ///
    /// Given a baseline directory (`sweep baseline save`) with ≥ 3 nights, the nights are
    /// the unit: their between-night variance enters every test, and tonight is tested
    /// against the recent level and against the anchor (a slow drift cannot pass).
    Compare {
        /// The baseline: a baseline directory (its nights), or one run directory; with
        /// `--history`, leave it out and give only the current run.
        #[arg(value_name = "BASELINE")]
        baseline: PathBuf,
        /// The current run directory.
        #[arg(value_name = "CURRENT")]
        current: Option<PathBuf>,
        /// Use the runs under DIR (e.g. results/<experiment>) as the nights.
        #[arg(long, value_name = "DIR")]
        history: Option<PathBuf>,
        /// How many of the newest nights form the window (the anchor may be older).
        #[arg(long, value_name = "K", default_value_t = gate::DEFAULT_LAST, value_parser = parse_last)]
        last: usize,
        /// Compare with the baseline directory's current entry only (no night model).
        #[arg(long, conflicts_with = "history")]
        two_runs: bool,
        /// Significance level (default: the spec's [compare] alpha, else 0.05).
        #[arg(long, value_parser = parse_alpha)]
        alpha: Option<f64>,
        /// Per-metric relative threshold, e.g. ttft_p50=0.05 or decode_tps=3% (repeatable).
        #[arg(long = "threshold", value_name = "METRIC=REL", value_parser = gate::parse_threshold)]
        thresholds: Vec<(Metric, f64)>,
        /// Compare even when model digest, GPU, CPU or spec differ (shown as a warning).
        #[arg(long)]
        allow_env_change: bool,
        /// Exit 0 instead of 3 when the gate could not decide.
        #[arg(long, alias = "allow-inconclusive")]
        allow_undecided: bool,
        /// Compare a partial merge or an unfinished run.
        #[arg(long)]
        allow_partial: bool,
        /// Also write the Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY).
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Write the full comparison as JSON (Monte Carlo error of each interval end included).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write JUnit XML (one testcase per gating cell × metric).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Do not print the Markdown summary to stdout.
        #[arg(long)]
        quiet: bool,
    },
    /// Manage regression baselines (a history of promoted runs and a `current` pointer).
    Baseline {
        #[command(subcommand)]
        action: BaselineCommand,
    },
    /// How many reps a night needs: from a stored run's per-rep spread (and, with a
    /// history, the between-night spread), the reps that show a change of DETECT × the
    /// tolerance to exceed the tolerance (one-sided, α over the gating tests, 80% power),
    /// with a range for the uncertainty of the spreads.
    Power {
        /// A run directory or a baseline directory (with ≥ 3 nights its history is used).
        run: PathBuf,
        /// The nights to take the between-night spread from (default: RUN when it is a
        /// baseline directory).
        #[arg(long, value_name = "DIR")]
        history: Option<PathBuf>,
        /// The change to catch, as a multiple of the tolerance.
        #[arg(long, default_value_t = 2.0, value_name = "X")]
        detect: f64,
        /// Reps per side to compute detectable changes for (default: the file's repetitions).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=10000))]
        reps: Option<u32>,
        /// Power wanted.
        #[arg(long, default_value_t = 0.8, value_parser = parse_alpha)]
        power: f64,
        /// Significance level (default: the spec's [compare] alpha, else 0.05).
        #[arg(long, value_parser = parse_alpha)]
        alpha: Option<f64>,
        /// Per-metric relative threshold to size the reps for, e.g. decode_tps=3% (repeatable;
        /// default: the spec's [compare] thresholds).
        #[arg(long = "threshold", value_name = "METRIC=REL", value_parser = gate::parse_threshold)]
        thresholds: Vec<(Metric, f64)>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum BaselineCommand {
    /// Keep a compared run as a night of the history; a clean pass also becomes the
    /// current baseline. Refuses a run that was never compared unless --force.
    Save {
        /// The run directory to keep.
        run: PathBuf,
        /// Baseline directory (default: baselines/<experiment>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep it and make it current even without a clean pass (the first nights of an
        /// experiment).
        #[arg(long)]
        force: bool,
    },
    /// Fix the anchor: the nights every later night is held to (a slow drift cannot move
    /// it; only this command does).
    Anchor {
        /// The baseline directory.
        dir: PathBuf,
        /// The entries of the anchor (default: the newest 3), as `sweep baseline list`
        /// names them.
        entries: Vec<String>,
    },
    /// List a baseline directory's entries, the current one marked.
    List {
        /// The baseline directory (e.g. baselines/<experiment>).
        dir: PathBuf,
    },
    /// Point the baseline directory's `current` at an earlier entry (a rollback).
    Use {
        /// The baseline directory (e.g. baselines/<experiment>).
        dir: PathBuf,
        /// The entry to make current, as `sweep baseline list` names it.
        entry: String,
    },
}

fn parse_last(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(k) if k >= 1 => Ok(k),
        _ => Err(format!("expected a number of nights ≥ 1, found {s:?}")),
    }
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .parse()
        .map_err(|_| format!("expected a number strictly between 0 and 1, found {s:?}"))?;
    if crate::stats::is_open_unit(x) {
        Ok(x)
    } else {
        Err(format!("must be strictly between 0 and 1, found {x}"))
    }
}

/// Parses arguments, runs the command, returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::BAD_INPUT,
            };
        }
    };
    init_tracing(cli.log_format);
    let name = command_name(&cli.command);
    match run(cli.command) {
        Ok(status) => status.code(),
        Err(e) => exit::report(name, &e),
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.event_format(Human).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `warning: message` lines, the way compilers talk to people (the JSON format keeps every
/// field for machines).
struct Human;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Human
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "{level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Validate { .. } => "validate",
        Command::Plan { .. } => "plan",
        Command::Run { .. } => "run",
        Command::Merge { .. } => "merge",
        Command::Slurm { .. } => "slurm",
        Command::K8s { .. } => "k8s",
        Command::Analyze { .. } => "analyze",
        Command::Report { .. } => "report",
        Command::Compare { .. } => "compare",
        Command::Baseline { .. } => "baseline",
        Command::Power { .. } => "power",
        Command::Show { .. } => "show",
        Command::Schema => "schema",
    }
}

/// Runs one command.
pub(crate) fn run(command: Command) -> Result<Status, CliError> {
    match command {
        Command::Validate { file } => validate(&file),
        Command::Plan { file, json, shard } => plan(&file, json, shard),
        Command::Run {
            file,
            resume,
            new,
            run_id,
            shard,
            shard_count,
            concurrency,
            results_dir,
            fail_fast,
            progress,
            quiet,
            json,
            max_phases,
            retry_failed,
            no_text,
        } => {
            let spec = Spec::load(&file)?;
            let (shard, run_id, auto) =
                resolve_shard(shard, shard_count, run_id, new || resume.is_some())?;
            if let Some(done) = run_id
                .as_deref()
                .filter(|_| auto)
                .and_then(|id| finished_task_run(&spec, results_dir.as_deref(), id))
            {
                eprintln!("run {} is already finished; nothing to do", done.display());
                return Ok(Status::Ok);
            }
            let progress = if quiet {
                ProgressMode::Quiet
            } else if json {
                ProgressMode::Json
            } else {
                progress
            };
            let opts = RunOptions {
                resume,
                new_run: new,
                run_id,
                shard,
                progress,
                fail_fast,
                concurrency,
                results_dir,
                max_phases,
                retry_failed,
                no_text,
            };
            run_command(&spec, opts)
        }
        Command::Merge {
            runs,
            out,
            allow_partial,
        } => {
            let m = crate::store::merge(&runs, &out, allow_partial)?;
            println!(
                "merged {} runs into {} ({} cells planned{})",
                m.manifest.merged_from.len(),
                out.display(),
                m.manifest.planned_cells,
                if m.missing_phases > 0 {
                    format!(
                        "; PARTIAL: {} planned phases missing, analysis needs --allow-partial",
                        m.missing_phases
                    )
                } else {
                    String::new()
                }
            );
            Ok(if m.missing_phases > 0 {
                Status::Undecided
            } else {
                Status::Ok
            })
        }
        Command::Slurm {
            file,
            shards,
            gpus_per_task,
            cpus_per_task,
            time,
            partition,
            results_dir,
            out,
            sweep_bin,
        } => {
            let spec = Spec::load(&file)?;
            crate::cluster::check_shards(&spec, shards)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let cwd = std::env::current_dir()
                .map_err(|e| CliError::Environment(format!("current directory: {e}")))?;
            let out = out.unwrap_or_else(|| Path::new("slurm").join(&spec.experiment.name));
            let opts = crate::cluster::slurm::SlurmOptions {
                spec_file: file,
                experiment: spec.experiment.name.clone(),
                shards,
                workdir: cwd.clone(),
                results_dir: results_dir.unwrap_or_else(|| spec.run.results_dir.clone()),
                log_dir: cwd.join(&out).join("logs"),
                gpus_per_task,
                cpus_per_task,
                time,
                partition,
                sweep_bin,
            };
            let s = crate::cluster::slurm::scripts(&opts)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            use crate::cluster::slurm::{ARRAY_FILE, MERGE_FILE, REQUEUE_FILE, SUBMIT_FILE};
            for (name, text) in [
                (ARRAY_FILE, &s.array),
                (MERGE_FILE, &s.merge),
                (SUBMIT_FILE, &s.submit),
                (REQUEUE_FILE, &s.requeue),
            ] {
                write_script(&out.join(name), text)?;
            }
            println!(
                "wrote {ARRAY_FILE} ({shards} tasks), {MERGE_FILE}, {SUBMIT_FILE} and \
                 {REQUEUE_FILE} in {}; submit with: bash {}",
                out.display(),
                out.join(SUBMIT_FILE).display()
            );
            Ok(Status::Ok)
        }
        Command::K8s {
            file,
            shards,
            image,
            name,
            workdir,
            parallelism,
            gpus_per_task,
            claim,
            results_mount,
            backoff_per_index,
            sweep_bin,
            out,
        } => {
            let spec = Spec::load(&file)?;
            crate::cluster::check_shards(&spec, shards)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            use crate::cluster::k8s;
            let text = k8s::manifest(&k8s::K8sOptions {
                spec_file: file,
                name: name.unwrap_or_else(|| k8s::default_name(&spec.experiment.name)),
                experiment: spec.experiment.name.clone(),
                shards,
                image,
                workdir,
                parallelism,
                gpus_per_task,
                claim,
                results_mount,
                backoff_per_index,
                sweep_bin,
            })
            .map_err(|e| CliError::Usage(e.to_string()))?;
            match out {
                Some(p) => {
                    crate::store::atomic::write_atomic(&p, text.as_bytes())?;
                    println!(
                        "wrote {} ({shards} completions); apply with: kubectl apply -f {}",
                        p.display(),
                        p.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(Status::Ok)
        }
        Command::Analyze {
            run,
            reference,
            alpha,
            metrics,
            allow_partial,
        } => analyze(&run, reference, alpha, &metrics, allow_partial),
        Command::Report {
            runs,
            label_by,
            allow_mixed,
            out,
            check,
            group_by,
            columns,
            metrics,
            formats,
            reference,
            alpha,
            no_plots,
            no_html,
            allow_partial,
        } => {
            let defaults = ReportOptions::default();
            let opts = ReportOptions {
                formats: if formats.is_empty() {
                    defaults.formats
                } else {
                    formats
                },
                group_by,
                columns,
                metrics: if metrics.is_empty() {
                    defaults.metrics
                } else {
                    metrics
                },
                alpha,
                reference,
                plots: !no_plots,
                html: !no_html,
                allow_partial,
            };
            report_command(&runs, label_by, allow_mixed, out, check, &opts)
        }
        Command::Schema => {
            let text = serde_json::to_string_pretty(&crate::spec::json_schema())
                .map_err(|e| CliError::Environment(e.to_string()))?;
            println!("{text}");
            Ok(Status::Ok)
        }
        Command::Compare {
            baseline,
            current,
            history,
            last,
            two_runs,
            alpha,
            thresholds,
            allow_env_change,
            allow_undecided,
            allow_partial,
            markdown,
            json,
            junit,
            quiet,
        } => {
            // With --history the one positional is the current run.
            let (against, current) = match (history, current) {
                (None, Some(current)) => (Against::Run(baseline), current),
                (Some(dir), None) => (Against::History { dir }, baseline),
                (None, None) => {
                    return Err(CliError::Usage(
                        "give BASELINE and CURRENT (or --history DIR CURRENT)".into(),
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(CliError::Usage(
                        "with --history give only the CURRENT run".into(),
                    ))
                }
            };
            let req = CompareRequest {
                against,
                current,
                alpha,
                thresholds,
                allow_env_change,
                allow_partial,
                last,
                two_runs,
            };
            let (cmp, warnings) = gate::run(&req)?;
            for w in warnings {
                tracing::warn!("{w}");
            }
            for (path, f) in [
                (markdown, Format::Markdown),
                (json, Format::Json),
                (junit, Format::Junit),
            ] {
                if let (Some(p), Some(text)) = (path, f.exporter().gate(&cmp)) {
                    crate::store::atomic::write_atomic(&p, text.as_bytes())?;
                }
            }
            if !quiet {
                if let Some(md) = Format::Markdown.exporter().gate(&cmp) {
                    print!("{md}");
                }
            }
            Ok(match cmp.outcome.exit_code(allow_undecided) {
                gate::EXIT_REGRESSION => Status::Regression,
                gate::EXIT_INCONCLUSIVE => Status::Undecided,
                _ => Status::Ok,
            })
        }
        Command::Baseline { action } => baseline(action),
        Command::Show {
            run,
            cell,
            rep,
            warmup,
            stage,
            agent,
            phase,
            call,
            json,
        } => {
            let filter = crate::store::calls::CallFilter {
                cell,
                rep,
                warmup,
                stage: stage.map(|s| match s.as_str() {
                    "report" => crate::record::Stage::Report,
                    _ => crate::record::Stage::Analysis,
                }),
                agent,
                phase: phase.map(|p| match p.as_str() {
                    "concurrent" => crate::record::Phase::Concurrent,
                    "sequential" => crate::record::Phase::Sequential,
                    "reload" => crate::record::Phase::Reload,
                    _ => crate::record::Phase::Single,
                }),
                call,
            };
            show(&run, &filter, json)
        }
        Command::Power {
            run,
            history,
            detect,
            reps,
            power,
            alpha,
            thresholds,
            json,
        } => power_command(
            &run,
            history.as_deref(),
            detect,
            reps,
            power,
            alpha,
            &thresholds,
            json,
        ),
    }
}

/// `sweep show`: the stored calls that match, as text or as the stored JSON lines.
fn show(
    run: &Path,
    filter: &crate::store::calls::CallFilter,
    json: bool,
) -> Result<Status, CliError> {
    let manifest = crate::store::Manifest::read(run)?;
    if !run.join(crate::store::CALLS_ZST).is_file() {
        return Err(CliError::Usage(format!(
            "{}: no call texts stored ({}); runs keep them unless started with --no-text",
            run.display(),
            if manifest.call_texts.is_none() {
                "this run was made with --no-text, by a merge or by an older sweep"
            } else {
                "no call has been stored yet"
            }
        )));
    }
    let calls = crate::store::read_calls(run)?;
    use std::io::Write as _;
    let mut shown = 0;
    let mut out = std::io::stdout().lock();
    for c in calls.iter().filter(|c| filter.matches(c)) {
        let text = if json {
            let line =
                serde_json::to_string(c).map_err(|e| CliError::Environment(e.to_string()))?;
            format!("{line}\n")
        } else if shown > 0 {
            format!("\n{}", crate::store::calls::render(c))
        } else {
            crate::store::calls::render(c)
        };
        match out.write_all(text.as_bytes()) {
            Ok(()) => {}
            // `sweep show RUN | head`: the reader has what it wanted.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Status::Ok),
            Err(e) => return Err(CliError::Environment(format!("stdout: {e}"))),
        }
        shown += 1;
    }
    if shown == 0 {
        return Err(CliError::Usage(format!(
            "{}: no stored call matches (of {}); call ids are listed in the records and in each \
             report's `## Calls`",
            run.display(),
            calls.len()
        )));
    }
    Ok(Status::Ok)
}

fn validate(file: &Path) -> Result<Status, CliError> {
    let spec = Spec::load(file)?;
    let plan = Plan::checked(&spec, None).map_err(CliError::Usage)?;
    println!(
        "{}: ok ({} arms, {} cells, {} LLM calls)",
        file.display(),
        spec.arms.len(),
        plan.cells.len(),
        plan.total_calls()
    );
    for w in crate::plan::warnings(&spec, &plan) {
        tracing::warn!("{w}");
    }
    Ok(Status::Ok)
}

fn plan(file: &Path, json: bool, shard: Option<Shard>) -> Result<Status, CliError> {
    let spec = Spec::load(file)?;
    let plan = Plan::checked(&spec, shard).map_err(CliError::Usage)?;
    if json {
        let text = serde_json::to_string_pretty(&plan)
            .map_err(|e| CliError::Environment(e.to_string()))?;
        println!("{text}");
        return Ok(Status::Ok);
    }
    print!("{}", crate::plan::render(&spec, &plan));
    match crate::runner::estimate(&spec, &plan, None) {
        Some(eta) => {
            use crate::spec::Order;
            // Server starts (under [server]) come on top of the reload probes.
            let starts = crate::plan::server_starts(&spec, &plan) as f64 * eta.server_start_seconds;
            let probe = |order| plan.reloads_in(&spec, order) as f64 * eta.probe_seconds + starts;
            println!(
                "ETA: {} in this order (blocks {}, interleaved {}), from phase timings of run {} \
                 ({} of {} cells measured there, the rest estimated)",
                crate::runner::human_duration(eta.seconds + probe(spec.experiment.order)),
                crate::runner::human_duration(eta.seconds + probe(Order::Blocks)),
                crate::runner::human_duration(eta.seconds + probe(Order::Interleaved)),
                eta.from_run,
                eta.cells_known,
                eta.cells_total
            );
        }
        None => println!("ETA: unknown until a first run of this experiment has stored timings"),
    }
    Ok(Status::Ok)
}

fn analyze(
    run: &Path,
    reference: Option<String>,
    alpha: f64,
    shown: &[Metric],
    allow_partial: bool,
) -> Result<Status, CliError> {
    let shown = if shown.is_empty() {
        ReportOptions::default().metrics
    } else {
        shown.to_vec()
    };
    let opts = AnalysisOptions {
        reference,
        alpha,
        allow_partial,
        ..Default::default()
    };
    let a = analysis::analyze(run, &opts)?;
    let md = Format::Markdown.exporter();
    let view = report::View::single(report::RunView::new(run.to_path_buf(), a.clone()));
    let mut tables: Vec<report::Table> = report::tables::metric_tables(&view, &shown, &[])
        .into_iter()
        .flat_map(|(_, t)| t)
        .collect();
    tables.extend(report::tables::pair_table(&view));
    if let Some(text) = md.tables(&tables) {
        println!("{text}");
    }
    eprintln!(
        "wrote {} and {}",
        run.join("analysis/summary.json").display(),
        run.join("analysis/tidy.csv").display()
    );
    a.check_measured()?;
    Ok(Status::Ok)
}

fn baseline(action: BaselineCommand) -> Result<Status, CliError> {
    match action {
        BaselineCommand::Save { run, dir, force } => {
            let saved = gate::baseline::save(&run, dir.as_deref(), force)?;
            if saved.promoted {
                if let Some(why) = &saved.why {
                    tracing::warn!("kept with --force although: {why}");
                }
                println!(
                    "baseline saved: {} → {} (now current)",
                    run.display(),
                    saved.entry.display()
                );
            } else {
                println!(
                    "night kept: {} → {} ({})",
                    run.display(),
                    saved.entry.display(),
                    saved.why.as_deref().unwrap_or("not a pass")
                );
            }
        }
        BaselineCommand::List { dir } => {
            let current = gate::baseline::current_entry(&dir)?;
            for e in gate::baseline::entries(&dir)? {
                let mark = current
                    .as_ref()
                    .is_some_and(|c| c.file_name().is_some_and(|n| n.to_string_lossy() == e));
                println!("{} {e}", if mark { "*" } else { " " });
            }
        }
        BaselineCommand::Use { dir, entry } => {
            gate::baseline::point_at(&dir, &entry)?;
            println!("{}: current baseline is now {entry}", dir.display());
        }
        BaselineCommand::Anchor { dir, entries } => {
            let anchor = gate::baseline::set_anchor(&dir, &entries)?;
            println!("{}: anchor is now {}", dir.display(), anchor.join(", "));
        }
    }
    Ok(Status::Ok)
}

#[allow(clippy::too_many_arguments)]
fn power_command(
    run: &Path,
    history: Option<&Path>,
    detect: f64,
    reps: Option<u32>,
    power: f64,
    alpha: Option<f64>,
    thresholds: &[(Metric, f64)],
    json: bool,
) -> Result<Status, CliError> {
    let dir = gate::resolve(run)?;
    let manifest = crate::store::Manifest::read(&dir)?;
    let (mut settings, warning) = gate::Settings::from_manifest(&manifest);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    settings.apply_flags(alpha, thresholds)?;
    if !(detect.is_finite() && detect > 1.0) {
        return Err(CliError::Usage(format!(
            "--detect must be above 1 (the change to catch, as a multiple of the tolerance), found {detect}"
        )));
    }
    let loaded = gate::load_run(&dir, &settings.metrics(), true)?;
    let history_dir = history
        .map(Path::to_path_buf)
        .or_else(|| (run.join(gate::baseline::CURRENT).is_file()).then(|| run.to_path_buf()));
    let nights = match history_dir {
        Some(h) => {
            let (n, notes) = gate::load_history(
                &h,
                gate::DEFAULT_LAST,
                &std::path::PathBuf::new(),
                &manifest,
                false,
                &settings.metrics(),
            )?;
            for note in notes {
                tracing::warn!("{note}");
            }
            Some(n)
        }
        None => None,
    };
    let reps = reps
        .map(|r| r as usize)
        .or_else(|| manifest.spec().map(|s| s.experiment.repetitions as usize))
        .unwrap_or(crate::stats::engine::MIN_REPS);
    let p = gate::power::analyze(&loaded, nights.as_ref(), &settings, reps, power, detect);
    if json {
        let text =
            serde_json::to_string_pretty(&p).map_err(|e| CliError::Environment(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", report::export::markdown::power(&p));
    }
    Ok(Status::Ok)
}

/// `sweep run`: executes the plan on a multi-threaded runtime, prints what the run measured
/// and excluded, and says by its status whether every call succeeded.
fn run_command(spec: &Spec, opts: RunOptions) -> Result<Status, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Environment(format!("cannot start the async runtime: {e}")))?;
    let quiet = opts.progress == ProgressMode::Quiet;
    // The run ends with its report and headline table; --quiet and --json (whose events own
    // stdout) leave that to `sweep report`.
    let show_report = !matches!(opts.progress, ProgressMode::Quiet | ProgressMode::Json);
    let s = rt.block_on(crate::runner::run_experiment(spec, &opts))?;
    if !quiet {
        eprintln!("{}", crate::runner::failure_summary(&s));
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
            let d = crate::cluster::detect(|k| std::env::var(k).ok(), count)
                .map_err(|e| CliError::Usage(e.to_string()))?;
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

/// Writes a generated script, executable.
fn write_script(path: &Path, text: &str) -> Result<(), CliError> {
    crate::store::atomic::write_atomic(path, text.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| CliError::Environment(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// `sweep report`: one run (tables into the run), several (joined, into --out), or a check
/// of committed tables.
fn report_command(
    runs: &[PathBuf],
    label_by: LabelBy,
    allow_mixed: bool,
    out: Option<PathBuf>,
    check: Option<PathBuf>,
    opts: &ReportOptions,
) -> Result<Status, CliError> {
    if let Some(dir) = check {
        let outcome = report::check(runs, label_by, allow_mixed, &dir, opts)?;
        if outcome.clean() {
            println!(
                "{}: {} table files identical to a fresh report",
                dir.display(),
                outcome.compared
            );
            return Ok(Status::Ok);
        }
        for d in &outcome.differences {
            println!("{d}");
        }
        eprintln!(
            "{}: {} of the tables differ from a fresh report (regenerate with `sweep report`)",
            dir.display(),
            outcome.differences.len()
        );
        return Ok(Status::Regression);
    }
    if runs.len() == 1 {
        if out.is_some() {
            return Err(CliError::Usage(
                "--out applies to several runs; one run's tables go into the run".into(),
            ));
        }
        let (r, a) = report::render_run(&runs[0], opts)?;
        for p in &r.paths {
            println!("{}", p.display());
        }
        a.check_measured()?;
        return Ok(Status::Ok);
    }
    let Some(out) = out else {
        return Err(CliError::Usage(
            "several runs: give --out DIR for the joined tables".into(),
        ));
    };
    let r = report::render_runs(runs, label_by, allow_mixed, &out, opts)?;
    for p in &r.paths {
        println!("{}", p.display());
    }
    if r.joined_over.is_empty() {
        eprintln!(
            "joined {} runs; their manifests differ in nothing recorded",
            runs.len()
        );
    } else {
        eprintln!(
            "joined {} runs (labelled by {}) over: {}",
            runs.len(),
            label_by.as_str(),
            r.joined_over.join("; ")
        );
    }
    Ok(Status::Ok)
}

/// The end of `sweep run`: the report written into the run, its headline table on stdout
/// (the way hyperfine and llama-bench end), and where the full report is. A report that
/// cannot be made is a warning: the run itself is stored either way.
fn end_of_run_report(dir: &Path) {
    let opts = ReportOptions::default();
    match report::render_run(dir, &opts) {
        Ok((r, _)) => {
            let text = report::export::terminal::Terminal
                .tables(&r.headline)
                .unwrap_or_default();
            println!("\n{text}");
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `--help` teaches: clap's own consistency checks pass, and every subcommand and every
    /// argument of every subcommand (positional or flag) says what it is.
    #[test]
    fn every_command_and_argument_has_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        let mut stack = vec![(String::from("sweep"), cli)];
        while let Some((path, cmd)) = stack.pop() {
            if cmd.get_about().is_none() && path != "sweep" {
                missing.push(path.clone());
            }
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
