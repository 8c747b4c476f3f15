//! `sweep merge`: join shard runs into one.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct MergeArgs {
    /// Run directories to merge.
    #[arg(required = true)]
    pub(crate) runs: Vec<PathBuf>,
    /// The merged run directory to create.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Keep a merge that lacks planned phases, marked partial.
    #[arg(long)]
    pub(crate) allow_partial: bool,
}

impl MergeArgs {
    /// Runs `sweep merge`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self {
            runs,
            out,
            allow_partial,
        } = self;
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
}
