//! `sweep report`: paper tables, plots and report.html.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// One run directory, or several to join in one table.
    #[arg(required = true)]
    pub(crate) runs: Vec<PathBuf>,
    /// With several runs: what tells their cells apart in the tables.
    #[arg(long, value_enum, default_value_t = LabelBy::Run)]
    pub(crate) label_by: LabelBy,
    /// Join runs of different experiments (or different experiment files).
    #[arg(long)]
    pub(crate) allow_mixed: bool,
    /// Where joined tables go (several runs; required then).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Regenerate the tables and compare them with the committed ones in DIR (e.g.
    /// results/example/tables): exit 1 with a diff when they differ, 0 when identical.
    /// Writes nothing into the run.
    #[arg(long, value_name = "DIR")]
    pub(crate) check: Option<PathBuf>,
    /// Split the default tables into sections by these axes (`arm` or a factor).
    #[arg(long = "group-by", value_name = "AXIS")]
    pub(crate) group_by: Vec<String>,
    /// Also write the paper layout: this axis' values as columns (e.g. `--columns
    /// num_gpu`), the other factors down the rows, `median [CI]` per entry; written to
    /// tables/<metric>_by_<AXIS>.*
    #[arg(long, value_name = "AXIS")]
    pub(crate) columns: Option<String>,
    /// Metrics of the default tables (default: ttft_ms, e2e_ms, decode_tps).
    #[arg(long = "metric", value_name = "METRIC")]
    pub(crate) metrics: Vec<Metric>,
    /// Only these formats (default: md, tex, csv, json).
    #[arg(long = "format", value_name = "FMT", value_enum)]
    pub(crate) formats: Vec<Format>,
    /// Reference arm (default: the experiment's `reference`).
    #[arg(long, value_name = "ARM")]
    pub(crate) reference: Option<String>,
    /// Significance level.
    #[arg(long, default_value_t = 0.05, value_name = "A", value_parser = parse_alpha)]
    pub(crate) alpha: f64,
    /// Skip the SVG plots.
    #[arg(long)]
    pub(crate) no_plots: bool,
    /// Skip report.html.
    #[arg(long)]
    pub(crate) no_html: bool,
    /// Report a partial merge or an unfinished run.
    #[arg(long)]
    pub(crate) allow_partial: bool,
}

/// The report's options from the flags; an empty `--metric`/`--format` list means the
/// defaults.
impl From<&ReportArgs> for ReportOptions {
    fn from(a: &ReportArgs) -> Self {
        let defaults = ReportOptions::default();
        ReportOptions {
            formats: if a.formats.is_empty() {
                defaults.formats
            } else {
                a.formats.clone()
            },
            group_by: a.group_by.clone(),
            columns: a.columns.clone(),
            metrics: if a.metrics.is_empty() {
                defaults.metrics
            } else {
                a.metrics.clone()
            },
            alpha: a.alpha,
            reference: a.reference.clone(),
            plots: !a.no_plots,
            html: !a.no_html,
            allow_partial: a.allow_partial,
        }
    }
}

impl ReportArgs {
    /// Runs `sweep report`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let opts = ReportOptions::from(&self);
        report_command(
            &self.runs,
            self.label_by,
            self.allow_mixed,
            self.out,
            self.check,
            &opts,
        )
    }
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
        let outcome = crate::report::check(runs, label_by, allow_mixed, &dir, opts)?;
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
        let (r, a) = crate::report::render_run(&runs[0], opts)?;
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
    let r = crate::report::render_runs(runs, label_by, allow_mixed, &out, opts)?;
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
