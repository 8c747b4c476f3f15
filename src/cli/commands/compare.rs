//! `sweep compare`: the nightly gate's verdict.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct CompareArgs {
    /// The baseline: a baseline directory (its nights), or one run directory; with
    /// `--history`, leave it out and give only the current run.
    #[arg(value_name = "BASELINE")]
    pub(crate) baseline: PathBuf,
    /// The current run directory.
    #[arg(value_name = "CURRENT")]
    pub(crate) current: Option<PathBuf>,
    /// Use the runs under DIR (e.g. results/<experiment>) as the nights.
    #[arg(long, value_name = "DIR")]
    pub(crate) history: Option<PathBuf>,
    /// How many of the newest nights form the window (the anchor may be older).
    #[arg(long, value_name = "K", default_value_t = gate::DEFAULT_LAST, value_parser = parse_last)]
    pub(crate) last: usize,
    /// Compare with the baseline directory's current entry only (no night model).
    #[arg(long, conflicts_with = "history")]
    pub(crate) two_runs: bool,
    /// Significance level (default: the spec's [compare] alpha, else 0.05).
    #[arg(long, value_parser = parse_alpha)]
    pub(crate) alpha: Option<f64>,
    /// Per-metric relative threshold, e.g. ttft_p50=0.05 or decode_tps=3% (repeatable).
    #[arg(long = "threshold", value_name = "METRIC=REL", value_parser = gate::parse_threshold)]
    pub(crate) thresholds: Vec<(Metric, f64)>,
    /// Compare even when model digest, GPU, CPU or spec differ (shown as a warning).
    #[arg(long)]
    pub(crate) allow_env_change: bool,
    /// Exit 0 instead of 3 when the gate could not decide.
    #[arg(long, alias = "allow-inconclusive")]
    pub(crate) allow_undecided: bool,
    /// Compare a partial merge or an unfinished run.
    #[arg(long)]
    pub(crate) allow_partial: bool,
    /// Also write the Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub(crate) markdown: Option<PathBuf>,
    /// Write the full comparison as JSON (Monte Carlo error of each interval end included).
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Write JUnit XML (one testcase per gating cell × metric).
    #[arg(long, value_name = "FILE")]
    pub(crate) junit: Option<PathBuf>,
    /// Do not print the Markdown summary to stdout.
    #[arg(long)]
    pub(crate) quiet: bool,
}

/// The library's request from the arguments: with `--history` the one positional is the
/// current run; otherwise BASELINE and CURRENT are both needed.
impl TryFrom<&CompareArgs> for CompareRequest {
    type Error = CliError;

    fn try_from(a: &CompareArgs) -> Result<Self, CliError> {
        let (against, current) = match (&a.history, &a.current) {
            (None, Some(current)) => (Against::Run(a.baseline.clone()), current.clone()),
            (Some(dir), None) => (Against::History { dir: dir.clone() }, a.baseline.clone()),
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
        Ok(CompareRequest {
            against,
            current,
            alpha: a.alpha,
            thresholds: a.thresholds.clone(),
            allow_env_change: a.allow_env_change,
            allow_partial: a.allow_partial,
            last: a.last,
            two_runs: a.two_runs,
        })
    }
}

impl CompareArgs {
    /// Runs `sweep compare`: the verdict, written where asked, its status as the exit code.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let req = CompareRequest::try_from(&self)?;
        let (cmp, warnings) = gate::run(&req)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        for (path, f) in [
            (self.markdown, Format::Markdown),
            (self.json, Format::Json),
            (self.junit, Format::Junit),
        ] {
            if let (Some(p), Some(text)) = (path, f.exporter().gate(&cmp)) {
                crate::store::atomic::write_atomic(&p, text.as_bytes())?;
            }
        }
        if !self.quiet {
            if let Some(md) = Format::Markdown.exporter().gate(&cmp) {
                print!("{md}");
            }
        }
        Ok(match cmp.outcome.exit_code(self.allow_undecided) {
            gate::EXIT_REGRESSION => Status::Regression,
            gate::EXIT_INCONCLUSIVE => Status::Undecided,
            _ => Status::Ok,
        })
    }
}
