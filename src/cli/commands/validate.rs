//! `sweep validate`: check an experiment file.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// The experiment file (TOML).
    pub(crate) file: PathBuf,
}

impl ValidateArgs {
    /// Runs `sweep validate`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self { file } = self;
        validate(&file)
    }
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
