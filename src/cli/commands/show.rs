//! `sweep show`: a run's stored requests and answers.

use super::*;
use crate::record::{Phase, Stage};
use crate::store::calls::CallFilter;

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// A run directory (results/<experiment>/<run-id>).
    pub(crate) run: PathBuf,
    /// A cell id, or an arm name (all its cells).
    #[arg(long, value_name = "CELL")]
    pub(crate) cell: Option<String>,
    /// Repetition k (1-based, as in the reports' run_<k>); with --warmup, warm-up run k.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) rep: Option<u32>,
    /// Warm-up calls only (with --rep: warm-up run k).
    #[arg(long)]
    pub(crate) warmup: bool,
    /// `analysis` or `report`.
    #[arg(long, value_name = "STAGE", value_enum)]
    pub(crate) stage: Option<StageArg>,
    /// `single`, `A` or `B`.
    #[arg(long, value_name = "AGENT", value_enum)]
    pub(crate) agent: Option<AgentArg>,
    /// `single`, `concurrent`, `sequential` or `reload`.
    #[arg(long, value_name = "PHASE", value_enum)]
    pub(crate) phase: Option<PhaseArg>,
    /// A call id (as in the records and the reports' `## Calls`), or the start of one.
    #[arg(long, value_name = "ID")]
    pub(crate) call: Option<String>,
    /// JSON lines (the stored form) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A stage as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StageArg {
    Analysis,
    Report,
}

impl From<StageArg> for Stage {
    fn from(s: StageArg) -> Self {
        match s {
            StageArg::Analysis => Stage::Analysis,
            StageArg::Report => Stage::Report,
        }
    }
}

/// A phase as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PhaseArg {
    Single,
    Concurrent,
    Sequential,
    Reload,
}

impl From<PhaseArg> for Phase {
    fn from(p: PhaseArg) -> Self {
        match p {
            PhaseArg::Single => Phase::Single,
            PhaseArg::Concurrent => Phase::Concurrent,
            PhaseArg::Sequential => Phase::Sequential,
            PhaseArg::Reload => Phase::Reload,
        }
    }
}

/// An agent as typed on the command line: `single`, `A`, `B` (as the records write them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AgentArg {
    #[value(name = "single")]
    Single,
    #[value(name = "A")]
    A,
    #[value(name = "B")]
    B,
}

impl AgentArg {
    fn as_str(self) -> &'static str {
        match self {
            AgentArg::Single => "single",
            AgentArg::A => "A",
            AgentArg::B => "B",
        }
    }
}

impl From<&ShowArgs> for CallFilter {
    fn from(a: &ShowArgs) -> Self {
        CallFilter {
            cell: a.cell.clone(),
            rep: a.rep,
            warmup: a.warmup,
            stage: a.stage.map(Stage::from),
            agent: a.agent.map(|x| x.as_str().to_string()),
            phase: a.phase.map(Phase::from),
            call: a.call.clone(),
        }
    }
}

impl ShowArgs {
    /// Runs `sweep show`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        show(&self.run, &CallFilter::from(&self), self.json)
    }
}

/// `sweep show`: the stored calls that match, as text or as the stored JSON lines.
fn show(run: &Path, filter: &CallFilter, json: bool) -> Result<Status, CliError> {
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
            let line = serde_json::to_string(c)?;
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
            Err(source) => {
                return Err(CliError::Io {
                    what: "stdout".into(),
                    source,
                })
            }
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
