//! Exit codes and the one mapping from every error to one. A script reads what happened
//! from the code alone:
//!
//! | code | meaning |
//! |---:|---|
//! | 0 | done: validated, ran every call, analysed, compared with no regression |
//! | 1 | `compare`: a regression |
//! | 2 | bad input: a file, an argument, an experiment file, a run directory that is not one, a run in use by another sweep, a refused request |
//! | 3 | nothing decided: inconclusive or not comparable (`compare`), a cell with no measured call, a partial or unfinished run |
//! | 4 | `run` finished with failures: failed calls remain (`--retry-failed` re-runs them) |
//! | 5 | the machine or the backend failed: I/O error, disk full, backend unreachable |
//! | 130 / 143 | `run` stopped by SIGINT / SIGTERM: everything finished is stored, the printed command resumes it |

use crate::analysis::AnalysisError;
use crate::gate::GateError;
use crate::report::ReportError;
use crate::runner::RunError;
use crate::spec::SpecError;
use crate::store::{MergeError, StoreError};

pub(crate) const OK: i32 = 0;
pub(crate) const REGRESSION: i32 = 1;
pub(crate) const BAD_INPUT: i32 = 2;
pub(crate) const UNDECIDED: i32 = 3;
pub(crate) const FAILURES: i32 = 4;
pub(crate) const ENVIRONMENT: i32 = 5;
pub(crate) const SIGINT: i32 = 130;
pub(crate) const SIGTERM: i32 = 143;

/// How a command that did its job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Regression,
    Undecided,
    FinishedWithFailures,
    Interrupted,
    Terminated,
}

impl Status {
    pub(crate) fn code(self) -> i32 {
        match self {
            Status::Ok => OK,
            Status::Regression => REGRESSION,
            Status::Undecided => UNDECIDED,
            Status::FinishedWithFailures => FAILURES,
            Status::Interrupted => SIGINT,
            Status::Terminated => SIGTERM,
        }
    }
}

/// Every error a command can end with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Arguments the command cannot use together or at all, said in words (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Gate(#[from] GateError),
    /// A Slurm script, a Kubernetes manifest or a shard count that cannot be made.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::GenerateError),
    /// `--shard auto` where the scheduler does not say which shard this is.
    #[error(transparent)]
    AutoShard(#[from] crate::cluster::detect::AutoShardError),
    /// JSON output could not be written (a value serde cannot represent).
    #[error("JSON output: {0}")]
    Json(#[from] serde_json::Error),
    /// The machine refused: a file, the terminal, the async runtime.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
}

fn store_code(e: &StoreError) -> i32 {
    if e.is_io() {
        ENVIRONMENT
    } else {
        BAD_INPUT
    }
}

fn analysis_code(e: &AnalysisError) -> i32 {
    match e {
        AnalysisError::Store(s) => store_code(s),
        AnalysisError::NothingMeasured { .. }
        | AnalysisError::Partial { .. }
        | AnalysisError::Empty(_) => UNDECIDED,
        AnalysisError::UnknownReference(_) => BAD_INPUT,
        AnalysisError::Io(..) | AnalysisError::Polars(_) | AnalysisError::Json(_) => ENVIRONMENT,
    }
}

impl CliError {
    /// The exit code of this error (see the module table).
    pub(crate) fn code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Spec(_) => BAD_INPUT,
            CliError::Store(e) => store_code(e),
            CliError::Merge(MergeError::Store(e)) => store_code(e),
            CliError::Merge(_) => BAD_INPUT,
            CliError::Run(e) => match e {
                RunError::Store(s) => store_code(s),
                RunError::StoreFailed { .. } | RunError::Backend(_) => ENVIRONMENT,
                _ => BAD_INPUT,
            },
            CliError::Analysis(e) => analysis_code(e),
            CliError::Report(e) => match e {
                ReportError::Analysis(a) => analysis_code(a),
                ReportError::UnknownAxis(..)
                | ReportError::MixedRuns(_)
                | ReportError::Usage(_) => BAD_INPUT,
                _ => ENVIRONMENT,
            },
            CliError::Gate(e) => match e {
                GateError::Store(s) => store_code(s),
                GateError::Analysis(a) => analysis_code(a),
                GateError::NoRecords(_) | GateError::NoHistory(_) => UNDECIDED,
                GateError::Json(_) => ENVIRONMENT,
                _ => BAD_INPUT,
            },
            CliError::Cluster(_) | CliError::AutoShard(_) => BAD_INPUT,
            CliError::Json(_) | CliError::Io { .. } => ENVIRONMENT,
        }
    }
}

/// Prints the error (with the number of problems for an experiment file) and returns its
/// exit code.
pub(crate) fn report(command: &str, e: &CliError) -> i32 {
    match e {
        CliError::Spec(s) => {
            eprintln!("{s}");
            let n = s.diagnostics().len();
            if n > 1 {
                eprintln!("{n} errors");
            }
        }
        other => eprintln!("sweep {command}: {other}"),
    }
    e.code()
}
