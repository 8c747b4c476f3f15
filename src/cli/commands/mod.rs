//! One module per subcommand: its arguments (`clap::Args`) and the `run` that turns them
//! into one call into the library, in the way hyperfine splits `cli.rs` from `command.rs`.
//! `cli::run` only dispatches.

pub(crate) mod analyze;
pub(crate) mod baseline;
pub(crate) mod cluster;
pub(crate) mod compare;
pub(crate) mod merge;
pub(crate) mod plan;
pub(crate) mod power;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod show;
pub(crate) mod validate;

pub(crate) use super::exit::{CliError, Status};
pub(crate) use crate::analysis::{self, AnalysisOptions, Metric};
pub(crate) use crate::gate::{self, Against, CompareRequest};
pub(crate) use crate::plan::{Plan, Shard, ShardArg};
pub(crate) use crate::progress::ProgressMode;
pub(crate) use crate::report::{Exporter as _, Format, LabelBy, ReportOptions};
pub(crate) use crate::runner::RunOptions;
pub(crate) use crate::spec::Spec;
pub(crate) use std::path::{Path, PathBuf};

/// `sweep schema`: the experiment file's JSON Schema on stdout.
pub(crate) fn schema() -> Result<Status, CliError> {
    let text = serde_json::to_string_pretty(&crate::spec::json_schema())?;
    println!("{text}");
    Ok(Status::Ok)
}

pub(crate) fn parse_last(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(k) if k >= 1 => Ok(k),
        _ => Err(format!("expected a number of nights ≥ 1, found {s:?}")),
    }
}

pub(crate) fn parse_alpha(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .parse()
        .map_err(|_| format!("expected a number strictly between 0 and 1, found {s:?}"))?;
    if crate::stats::is_open_unit(x) {
        Ok(x)
    } else {
        Err(format!("must be strictly between 0 and 1, found {x}"))
    }
}
