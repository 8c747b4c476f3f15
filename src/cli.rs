//! Command-line interface: argument parsing and dispatch. Exit codes: 0 ok, 1 regression
//! (compare) or failed run, 2 bad input or error.

use crate::plan::{Plan, Shard};
use crate::progress::ProgressMode;
use crate::runner::RunOptions;
use crate::spec::{AgentKind, Spec};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Exit code for bad input (unreadable or invalid files, bad arguments).
pub const EXIT_BAD_INPUT: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "sweep",
    version,
    about = "Parameter-sweep experiment harness for benchmarking LLM agents",
    long_about = "sweep runs a declarative grid of agents × model options × repetitions against a real \
LLM backend (Ollama, an OpenAI-compatible server, or an embedded llama.cpp engine), records \
every call crash-safely, and turns the records into statistics, paper tables, plots and \
regression verdicts.\n\nTypical session:\n  sweep validate experiments/gemma3.toml   # check the file\n  \
sweep plan experiments/gemma3.toml       # see cells, calls and reload groups\n  \
sweep run experiments/gemma3.toml        # execute, store under results/<experiment>/<run-id>/\n  \
sweep analyze results/gemma3/<run-id>    # statistics\n  \
sweep report results/gemma3/<run-id>     # tables and plots\n  \
sweep compare <baseline-run> <current-run>   # nightly regression verdict (exit 1 on regression)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an experiment file; every problem is reported with file:line:column.
    Validate {
        /// The experiment file (TOML).
        file: PathBuf,
    },
    /// Show the cells, the number of LLM calls and the reload groups a file expands to.
    Plan {
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
    /// automatically (use --new to start afresh); Ctrl-C stops cleanly and prints how to resume.
    Run {
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
        /// Run only shard i of N (0-based) of the cells: for Slurm arrays, indexed Jobs, CI matrices.
        #[arg(long, value_name = "i/N")]
        shard: Option<Shard>,
        /// Units in flight at once (default: [run] concurrency, else 1).
        #[arg(long, value_name = "N")]
        concurrency: Option<u32>,
        /// Where runs are stored (default: [run] results_dir, else results/).
        #[arg(long, value_name = "DIR")]
        results_dir: Option<PathBuf>,
        /// Stop at the first failed call (default: a failing cell never stops the sweep).
        #[arg(long)]
        fail_fast: bool,
        /// Progress display.
        #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
        progress: ProgressArg,
        /// No progress output (same as --progress quiet).
        #[arg(long, short)]
        quiet: bool,
        /// JSON events on stdout, one per line (same as --progress json).
        #[arg(long)]
        json: bool,
        /// Stop after N phases (smoke tests); the run stays resumable.
        #[arg(long, value_name = "N", hide = true)]
        max_phases: Option<usize>,
    },
    /// Join shard runs of one experiment into one run (refuses runs of different files).
    Merge {
        /// Run directories to merge.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The merged run directory to create.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Aggregate a stored run into statistics.
    Analyze {
        /// A run directory (results/<experiment>/<run-id>).
        run: PathBuf,
        /// Reference arm (default: the experiment's `reference`).
        #[arg(long, value_name = "ARM")]
        reference: Option<String>,
        /// Significance level.
        #[arg(long, default_value_t = 0.05, value_name = "A")]
        alpha: f64,
        /// Metrics to print (default: ttft_ms, e2e_ms, decode_tps); all are analysed.
        #[arg(long = "metric", value_name = "METRIC")]
        metrics: Vec<String>,
    },
    /// Render paper tables (Markdown, LaTeX, CSV, JSON) and SVG plots of a stored run into
    /// <run>/tables and <run>/plots.
    Report {
        run: PathBuf,
        /// Split tables into sections by these axes (`arm` or a factor such as num_ctx).
        #[arg(long = "group-by", value_name = "AXIS")]
        group_by: Vec<String>,
        /// Also write the paper layout: this axis' values as columns (e.g. `--columns
        /// num_gpu`), the other factors down the rows, `median [CI]` per entry; written to
        /// tables/<metric>_by_<AXIS>.*
        #[arg(long, value_name = "AXIS")]
        columns: Option<String>,
        /// Metrics to tabulate (default: ttft_ms, e2e_ms, decode_tps).
        #[arg(long = "metric", value_name = "METRIC")]
        metrics: Vec<String>,
        /// Only these formats: md, tex, csv, json (default: all).
        #[arg(long = "format", value_name = "FMT")]
        formats: Vec<String>,
        #[arg(long, value_name = "ARM")]
        reference: Option<String>,
        #[arg(long, default_value_t = 0.05, value_name = "A")]
        alpha: f64,
        /// Skip the SVG plots.
        #[arg(long)]
        no_plots: bool,
    },
    /// Compare two runs and give a regression verdict: exit 0 no regression, 1 regression,
    /// 2 error or not comparable.
    Compare {
        /// The baseline run directory (or a `sweep baseline save` directory); with
        /// `--history`, leave it out and give only the current run.
        #[arg(value_name = "BASELINE")]
        baseline: PathBuf,
        /// The current run directory.
        #[arg(value_name = "CURRENT")]
        current: Option<PathBuf>,
        /// Compare against the last K runs under DIR instead of one baseline.
        #[arg(long, value_name = "DIR")]
        history: Option<PathBuf>,
        /// How many earlier runs `--history` uses.
        #[arg(long, value_name = "K", default_value_t = 7, requires = "history")]
        last: usize,
        /// Significance level (default: the spec's [compare] alpha, else 0.05).
        #[arg(long)]
        alpha: Option<f64>,
        /// Per-metric relative threshold, e.g. ttft_p50=0.05 (repeatable).
        #[arg(long = "threshold", value_name = "METRIC=REL")]
        thresholds: Vec<String>,
        /// Compare even when model digest, GPU, CPU or spec differ (shown as a warning).
        #[arg(long)]
        allow_env_change: bool,
        /// Also write the Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY).
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Write the full comparison as JSON.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write JUnit XML (one testcase per cell × metric).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Do not print the Markdown summary to stdout.
        #[arg(long)]
        quiet: bool,
    },
    /// Manage regression baselines.
    Baseline {
        #[command(subcommand)]
        action: BaselineCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Copy a run (manifest, records) into a baseline directory for `sweep compare`.
    Save {
        /// The run directory to keep as the reference.
        run: PathBuf,
        /// Baseline directory (default: baselines/<experiment>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Parses arguments, runs the command, returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => EXIT_BAD_INPUT,
            };
        }
    };
    run(cli)
}

/// Progress display of `sweep run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    Plain,
    Json,
    Quiet,
}

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate { file } => match Spec::load(&file) {
            Ok(spec) => {
                let plan = Plan::build(&spec, None);
                println!(
                    "{}: ok ({} arms, {} cells, {} LLM calls)",
                    file.display(),
                    spec.arms.len(),
                    plan.cells.len(),
                    plan.total_calls()
                );
                0
            }
            Err(e) => report_spec_error(&e),
        },
        Command::Plan { file, json, shard } => match Spec::load(&file) {
            Ok(spec) => {
                let plan = Plan::build(&spec, shard);
                if json {
                    match serde_json::to_string_pretty(&plan) {
                        Ok(s) => println!("{s}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return EXIT_BAD_INPUT;
                        }
                    }
                } else {
                    print!("{}", render_plan(&spec, &plan));
                    match crate::runner::estimate(&spec, &plan, None) {
                        Some(eta) => println!(
                            "ETA: {}  (from phase timings of run {}; {} of {} cells measured there, the rest estimated)",
                            crate::runner::human_duration(eta.seconds),
                            eta.from_run,
                            eta.cells_known,
                            eta.cells_total
                        ),
                        None => println!("ETA: unknown until a first run of this experiment has stored timings"),
                    }
                }
                0
            }
            Err(e) => report_spec_error(&e),
        },
        Command::Run {
            file,
            resume,
            new,
            run_id,
            shard,
            concurrency,
            results_dir,
            fail_fast,
            progress,
            quiet,
            json,
            max_phases,
        } => {
            let spec = match Spec::load(&file) {
                Ok(s) => s,
                Err(e) => return report_spec_error(&e),
            };
            let progress = if quiet {
                ProgressMode::Quiet
            } else if json {
                ProgressMode::Json
            } else {
                match progress {
                    ProgressArg::Auto => ProgressMode::Auto,
                    ProgressArg::Plain => ProgressMode::Plain,
                    ProgressArg::Json => ProgressMode::Json,
                    ProgressArg::Quiet => ProgressMode::Quiet,
                }
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
            };
            run_command(&spec, opts)
        }
        Command::Merge { runs, out } => match crate::store::merge(&runs, &out) {
            Ok(m) => {
                println!(
                    "merged {} runs into {} ({} cells planned)",
                    m.merged_from.len(),
                    out.display(),
                    m.planned_cells
                );
                0
            }
            Err(e) => {
                eprintln!("sweep merge: {e}");
                EXIT_BAD_INPUT
            }
        },
        Command::Analyze {
            run,
            reference,
            alpha,
            metrics,
        } => analyze_command(&run, reference, alpha, &metrics),
        Command::Report {
            run,
            group_by,
            columns,
            metrics,
            formats,
            reference,
            alpha,
            no_plots,
        } => report_command(
            &run,
            (group_by, columns),
            &metrics,
            &formats,
            reference,
            alpha,
            no_plots,
        ),
        Command::Compare {
            baseline,
            current,
            history,
            last,
            alpha,
            thresholds,
            allow_env_change,
            markdown,
            json,
            junit,
            quiet,
        } => {
            use crate::compare::Against;
            // With --history the one positional is the current run.
            let (against, current) = match (history, current) {
                (None, Some(current)) => (Against::Run(baseline), current),
                (Some(dir), None) => (Against::History { dir, last }, baseline),
                (None, None) => {
                    eprintln!(
                        "sweep compare: give BASELINE and CURRENT (or --history DIR CURRENT)"
                    );
                    return EXIT_BAD_INPUT;
                }
                (Some(_), Some(_)) => {
                    eprintln!("sweep compare: with --history give only the CURRENT run");
                    return EXIT_BAD_INPUT;
                }
            };
            let req = crate::compare::CompareRequest {
                against,
                current,
                alpha,
                thresholds,
                allow_env_change,
                markdown,
                json,
                junit,
            };
            match crate::compare::run(&req) {
                Ok((cmp, warnings)) => {
                    for w in warnings {
                        eprintln!("warning: {w}");
                    }
                    if !quiet {
                        print!("{}", cmp.to_markdown());
                    }
                    cmp.exit_code()
                }
                Err(e) => {
                    eprintln!("sweep compare: {e}");
                    crate::compare::EXIT_ERROR
                }
            }
        }
        Command::Baseline {
            action: BaselineCommand::Save { run, dir },
        } => match crate::compare::save_baseline(&run, dir.as_deref()) {
            Ok(dest) => {
                println!("baseline saved: {} → {}", run.display(), dest.display());
                0
            }
            Err(e) => {
                eprintln!("sweep baseline save: {e}");
                EXIT_BAD_INPUT
            }
        },
    }
}

fn report_spec_error(e: &crate::spec::SpecError) -> i32 {
    eprintln!("{e}");
    let n = e.diagnostics().len();
    if n > 1 {
        eprintln!("{n} errors");
    }
    EXIT_BAD_INPUT
}

/// The human-readable plan: one row per cell, then totals.
pub fn render_plan(spec: &Spec, plan: &Plan) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let e = &spec.experiment;
    let _ = writeln!(
        s,
        "experiment {}  (backend {}, model {}, order {:?}, seed {}, reference {})",
        e.name,
        spec.backend.kind.as_str(),
        spec.backend.model,
        e.order,
        e.seed,
        e.reference
    );
    if let Some(sh) = plan.shard {
        let _ = writeln!(s, "shard {}/{}", sh.index, sh.count);
    }
    let _ = writeln!(s);
    let id_w = plan
        .cells
        .iter()
        .map(|c| c.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let arm_w = plan
        .cells
        .iter()
        .map(|c| c.arm.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let _ = writeln!(
        s,
        "{:>3}  {:<id_w$}  {:<arm_w$}  {:<6}  {:>5}  {:>5}  options",
        "#", "cell", "arm", "agent", "group", "calls"
    );
    for (i, c) in plan.cells.iter().enumerate() {
        let group = plan
            .groups
            .iter()
            .position(|g| g.cells.contains(&i))
            .map(|g| g + 1)
            .unwrap_or(0);
        let calls: usize = plan
            .units
            .iter()
            .filter(|u| u.cell == i)
            .map(|_| c.calls_per_unit())
            .sum();
        let agent = match c.agent {
            AgentKind::Single => "single",
            AgentKind::Pair => "pair",
        };
        let _ = writeln!(
            s,
            "{:>3}  {:<id_w$}  {:<arm_w$}  {:<6}  {:>5}  {:>5}  {}",
            i + 1,
            c.id,
            c.arm,
            agent,
            group,
            calls,
            c.label()
        );
    }
    let warm = plan.units.len() - plan.measured_units();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "cells: {}  (arms: {})",
        plan.cells.len(),
        spec.arms.len()
    );
    let _ = writeln!(
        s,
        "units: {}  ({} measured = {} cells × {} repetitions, {} warm-up)",
        plan.units.len(),
        plan.measured_units(),
        plan.cells.len(),
        e.repetitions,
        warm
    );
    let _ = writeln!(
        s,
        "LLM calls: {}  (2 per agent run; a pair unit runs concurrently and then back to back: 8 calls)",
        plan.total_calls()
    );
    let _ = writeln!(
        s,
        "reload groups: {}  (model, num_ctx, num_gpu); reloads in run order: {}",
        plan.groups.len(),
        plan.reloads()
    );
    s
}

/// Exit code when a run was interrupted by Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

fn run_command(spec: &Spec, opts: RunOptions) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sweep run: cannot start the async runtime: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    match rt.block_on(crate::runner::run_experiment(spec, &opts)) {
        Ok(s) => {
            if opts.progress != ProgressMode::Quiet {
                eprintln!("{}", crate::runner::failure_summary(&s));
            }
            if s.interrupted {
                EXIT_INTERRUPTED
            } else if s.stopped_on_failure || (s.ok_calls == 0 && s.phases_run > 0) {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("sweep run: {e}");
            EXIT_BAD_INPUT
        }
    }
}

fn parse_metrics(names: &[String]) -> Result<Vec<crate::analysis::Metric>, String> {
    names
        .iter()
        .map(|n| {
            crate::analysis::Metric::parse(n).ok_or_else(|| {
                let all: Vec<&str> = crate::analysis::Metric::ALL
                    .iter()
                    .map(|m| m.name())
                    .collect();
                format!("unknown metric {n:?}; expected one of: {}", all.join(", "))
            })
        })
        .collect()
}

fn check_alpha(alpha: f64) -> Result<(), String> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(format!(
            "--alpha must be strictly between 0 and 1, found {alpha}"
        ))
    }
}

fn analyze_command(
    run: &std::path::Path,
    reference: Option<String>,
    alpha: f64,
    metrics: &[String],
) -> i32 {
    let shown = match check_alpha(alpha).and_then(|_| parse_metrics(metrics)) {
        Ok(m) if m.is_empty() => crate::report::ReportOptions::default().metrics,
        Ok(m) => m,
        Err(e) => {
            eprintln!("sweep analyze: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let opts = crate::analysis::AnalysisOptions {
        reference,
        alpha,
        ..Default::default()
    };
    match crate::analysis::analyze(run, &opts) {
        Ok(a) => {
            for t in crate::report::tables::metric_tables(&a, &shown, &[]) {
                println!("{}", crate::report::tables::to_markdown(&t));
            }
            if let Some(t) = crate::report::tables::pair_table(&a) {
                println!("{}", crate::report::tables::to_markdown(&t));
            }
            eprintln!(
                "wrote {} and {}",
                run.join("analysis/summary.json").display(),
                run.join("analysis/tidy.csv").display()
            );
            0
        }
        Err(e) => {
            eprintln!("sweep analyze: {e}");
            EXIT_BAD_INPUT
        }
    }
}

fn report_command(
    run: &std::path::Path,
    (group_by, columns): (Vec<String>, Option<String>),
    metrics: &[String],
    formats: &[String],
    reference: Option<String>,
    alpha: f64,
    no_plots: bool,
) -> i32 {
    use crate::report::{Format, ReportOptions};
    let metrics = match check_alpha(alpha).and_then(|_| parse_metrics(metrics)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sweep report: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let mut fmts = Vec::new();
    for f in formats {
        match Format::ALL.iter().find(|x| x.ext() == f.as_str()) {
            Some(x) => fmts.push(*x),
            None => {
                eprintln!("sweep report: unknown format {f:?}; expected md, tex, csv or json");
                return EXIT_BAD_INPUT;
            }
        }
    }
    let defaults = ReportOptions::default();
    let opts = ReportOptions {
        formats: if fmts.is_empty() {
            defaults.formats
        } else {
            fmts
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
    };
    match crate::report::render(run, &opts) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            0
        }
        Err(e) => {
            eprintln!("sweep report: {e}");
            EXIT_BAD_INPUT
        }
    }
}
