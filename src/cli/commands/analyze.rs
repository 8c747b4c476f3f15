//! `sweep analyze`: statistics of a stored run.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct AnalyzeArgs {
    /// A run directory (results/<experiment>/<run-id>).
    pub(crate) run: PathBuf,
    /// Reference arm (default: the experiment's `reference`).
    #[arg(long, value_name = "ARM")]
    pub(crate) reference: Option<String>,
    /// Significance level.
    #[arg(long, default_value_t = 0.05, value_name = "A", value_parser = parse_alpha)]
    pub(crate) alpha: f64,
    /// Metrics to print (default: ttft_ms, e2e_ms, decode_tps); all are analysed.
    #[arg(long = "metric", value_name = "METRIC")]
    pub(crate) metrics: Vec<Metric>,
    /// Analyse a partial merge or an unfinished run.
    #[arg(long)]
    pub(crate) allow_partial: bool,
}

impl AnalyzeArgs {
    /// Runs `sweep analyze`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self {
            run,
            reference,
            alpha,
            metrics,
            allow_partial,
        } = self;
        analyze(&run, reference, alpha, &metrics, allow_partial)
    }
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
    let view =
        crate::report::View::single(crate::report::RunView::new(run.to_path_buf(), a.clone()));
    let mut tables: Vec<crate::report::Table> =
        crate::report::tables::metric_tables(&view, &shown, &[])
            .into_iter()
            .flat_map(|(_, t)| t)
            .collect();
    tables.extend(crate::report::tables::pair_table(&view));
    if let Some(text) = md.tables(&tables) {
        println!("{text}");
    }
    // The tables keep two note lines; what they share (exclusions, token source,
    // environment, warnings, method) follows them once.
    println!("{}", crate::report::methods::markdown(&view, &shown));
    eprintln!(
        "wrote {} and {}",
        run.join("analysis/summary.json").display(),
        run.join("analysis/tidy.csv").display()
    );
    a.check_measured()?;
    Ok(Status::Ok)
}
