//! Command-line interface: clap parses every flag, each subcommand is one call into the
//! library returning a typed result, and [`exit`] maps every error to an exit code and a
//! message in one place. The library warns through `tracing` (a subscriber is installed
//! here: human-readable on stderr, or `--log-format json`; `RUST_LOG` is honoured).

pub(crate) mod commands;
pub(crate) mod exit;

use clap::{Parser, Subcommand, ValueEnum};
use exit::{CliError, Status};

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
    Validate(commands::validate::ValidateArgs),
    /// Show the cells, LLM calls, reload groups and reloads by order, and an ETA.
    Plan(commands::plan::PlanArgs),
    /// Execute every cell of the plan and store the records under
    /// results/<experiment>/<run-id>/. An unfinished run of the same file is resumed
    /// automatically (use --new to start afresh); Ctrl-C or SIGTERM stops cleanly and prints
    /// how to resume. A finished run (not a shard) ends with its report: the headline table
    /// on stdout and report.html, tables/ and plots/ in the run (not with --quiet or --json).
    Run(commands::run::RunArgs),
    /// Print a run's stored calls: each request as sent (endpoint, system prompt, prompt or
    /// messages, options) and the model's full answer, from <run>/calls.jsonl.zst. Filters
    /// combine; without any, every call is printed.
    Show(commands::show::ShowArgs),
    /// Write a Slurm job array (one shard per task, run ids from the job id so a requeued
    /// task resumes its run), the afterok job that merges and analyses the shards, a submit
    /// script for both and requeue.sh, into --out (default slurm/<experiment>).
    Slurm(commands::cluster::SlurmArgs),
    /// Write a Kubernetes indexed Job manifest (one shard per completion index) to stdout
    /// or --out.
    K8s(commands::cluster::K8sArgs),
    /// Join shard runs of one experiment into one run (refuses runs of different files, and
    /// a union that lacks planned cells unless --allow-partial).
    Merge(commands::merge::MergeArgs),
    /// Aggregate a stored run into statistics (exit 3 when a cell has no measured call).
    Analyze(commands::analyze::AnalyzeArgs),
    /// Render paper tables (Markdown, LaTeX, CSV, JSON; methods.md|tex; all.tex), SVG plots
    /// and report.html of a stored run into <run>/tables, <run>/plots and <run>/report.html:
    /// the experiment file's [[table]] sections, or the default tables when it has none.
    /// Several runs make tables that join them (--label-by, --out).
    Report(commands::report::ReportArgs),
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
    Compare(commands::compare::CompareArgs),
    /// Manage regression baselines (a history of promoted runs and a `current` pointer).
    Baseline(commands::baseline::BaselineArgs),
    /// How many reps a night needs: from a stored run's per-rep spread (and, with a
    /// history, the between-night spread), the reps that show a change of DETECT × the
    /// tolerance to exceed the tolerance (one-sided, α over the gating tests, 80% power),
    /// with a range for the uncertainty of the spreads.
    Power(commands::power::PowerArgs),
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
    // llama.cpp's own warnings (e.g. "using full-size SWA cache" at every context) repeat at
    // every engine context and say nothing a user can act on: errors only, unless RUST_LOG
    // asks (RUST_LOG=llama-cpp-2=warn).
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,llama-cpp-2=error"));
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
        Command::Validate(_) => "validate",
        Command::Plan(_) => "plan",
        Command::Run(_) => "run",
        Command::Merge(_) => "merge",
        Command::Slurm(_) => "slurm",
        Command::K8s(_) => "k8s",
        Command::Analyze(_) => "analyze",
        Command::Report(_) => "report",
        Command::Compare(_) => "compare",
        Command::Baseline(_) => "baseline",
        Command::Power(_) => "power",
        Command::Show(_) => "show",
        Command::Schema => "schema",
    }
}

/// Runs one command: each subcommand's arguments run themselves ([`commands`]).
pub(crate) fn run(command: Command) -> Result<Status, CliError> {
    match command {
        Command::Validate(args) => args.run(),
        Command::Plan(args) => args.run(),
        Command::Run(args) => args.run(),
        Command::Show(args) => args.run(),
        Command::Slurm(args) => args.run(),
        Command::K8s(args) => args.run(),
        Command::Merge(args) => args.run(),
        Command::Analyze(args) => args.run(),
        Command::Report(args) => args.run(),
        Command::Schema => commands::schema(),
        Command::Compare(args) => args.run(),
        Command::Baseline(args) => args.run(),
        Command::Power(args) => args.run(),
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
