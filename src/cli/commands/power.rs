//! `sweep power`: the reps a night needs.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct PowerArgs {
    /// A run directory or a baseline directory (with ≥ 3 nights its history is used).
    pub(crate) run: PathBuf,
    /// The nights to take the between-night spread from (default: RUN when it is a
    /// baseline directory).
    #[arg(long, value_name = "DIR")]
    pub(crate) history: Option<PathBuf>,
    /// The change to catch, as a multiple of the tolerance.
    #[arg(long, default_value_t = 2.0, value_name = "X")]
    pub(crate) detect: f64,
    /// Reps per side to compute detectable changes for (default: the file's repetitions).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(2..=10000))]
    pub(crate) reps: Option<u32>,
    /// Power wanted.
    #[arg(long, default_value_t = 0.8, value_parser = parse_alpha)]
    pub(crate) power: f64,
    /// Significance level (default: the spec's [compare] alpha, else 0.05).
    #[arg(long, value_parser = parse_alpha)]
    pub(crate) alpha: Option<f64>,
    /// Per-metric relative threshold to size the reps for, e.g. decode_tps=3% (repeatable;
    /// default: the spec's [compare] thresholds).
    #[arg(long = "threshold", value_name = "METRIC=REL", value_parser = gate::parse_threshold)]
    pub(crate) thresholds: Vec<(Metric, f64)>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

impl PowerArgs {
    /// Runs `sweep power`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self {
            run,
            history,
            detect,
            reps,
            power,
            alpha,
            thresholds,
            json,
        } = self;
        power_command(
            &run,
            history.as_deref(),
            detect,
            reps,
            power,
            alpha,
            &thresholds,
            json,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn power_command(
    run: &Path,
    history: Option<&Path>,
    detect: f64,
    reps: Option<u32>,
    power: f64,
    alpha: Option<f64>,
    thresholds: &[(Metric, f64)],
    json: bool,
) -> Result<Status, CliError> {
    let dir = gate::resolve(run)?;
    let manifest = crate::store::Manifest::read(&dir)?;
    let (mut settings, warning) = gate::Settings::from_manifest(&manifest);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    settings.apply_flags(alpha, thresholds)?;
    if !(detect.is_finite() && detect > 1.0) {
        return Err(CliError::Usage(format!(
            "--detect must be above 1 (the change to catch, as a multiple of the tolerance), found {detect}"
        )));
    }
    let loaded = gate::load_run(&dir, &settings.metrics(), true)?;
    let history_dir = history
        .map(Path::to_path_buf)
        .or_else(|| (run.join(gate::baseline::CURRENT).is_file()).then(|| run.to_path_buf()));
    let nights = match history_dir {
        Some(h) => {
            let (n, notes) = gate::load_history(
                &h,
                gate::DEFAULT_LAST,
                &std::path::PathBuf::new(),
                &manifest,
                false,
                &settings.metrics(),
            )?;
            for note in notes {
                tracing::warn!("{note}");
            }
            Some(n)
        }
        None => None,
    };
    let reps = reps
        .map(|r| r as usize)
        .or_else(|| manifest.spec().map(|s| s.experiment.repetitions as usize))
        .unwrap_or(crate::stats::engine::MIN_REPS);
    let p = gate::power::analyze(&loaded, nights.as_ref(), &settings, reps, power, detect);
    if json {
        let text = serde_json::to_string_pretty(&p)?;
        println!("{text}");
    } else {
        print!("{}", crate::report::export::markdown::power(&p));
    }
    Ok(Status::Ok)
}
