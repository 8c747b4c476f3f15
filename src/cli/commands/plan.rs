//! `sweep plan`: the cells, calls, reloads and ETA of an experiment file.

use super::*;

#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    /// The experiment file (TOML).
    pub(crate) file: PathBuf,
    /// Print the plan as JSON (cells, ordered units, groups).
    #[arg(long)]
    pub(crate) json: bool,
    /// Only the cells of shard i of N (0-based), as `sweep run --shard` would run.
    #[arg(long, value_name = "i/N")]
    pub(crate) shard: Option<Shard>,
}

impl PlanArgs {
    /// Runs `sweep plan`.
    pub(crate) fn run(self) -> Result<Status, CliError> {
        let Self { file, json, shard } = self;
        plan(&file, json, shard)
    }
}

fn plan(file: &Path, json: bool, shard: Option<Shard>) -> Result<Status, CliError> {
    let spec = Spec::load(file)?;
    let plan = Plan::checked(&spec, shard).map_err(CliError::Usage)?;
    if json {
        let text = serde_json::to_string_pretty(&plan)?;
        println!("{text}");
        return Ok(Status::Ok);
    }
    print!("{}", crate::plan::render(&spec, &plan));
    match crate::runner::estimate(&spec, &plan, None) {
        Some(eta) => {
            use crate::spec::Order;
            // Server starts (under [server]) come on top of the reload probes.
            let starts = crate::plan::server_starts(&spec, &plan) as f64 * eta.server_start_seconds;
            let probe = |order| plan.reloads_in(&spec, order) as f64 * eta.probe_seconds + starts;
            println!(
                "ETA: {} in this order (blocks {}, interleaved {}), from phase timings of run {} \
                 ({} of {} cells measured there, the rest estimated)",
                crate::runner::human_duration(eta.seconds + probe(spec.experiment.order)),
                crate::runner::human_duration(eta.seconds + probe(Order::Blocks)),
                crate::runner::human_duration(eta.seconds + probe(Order::Interleaved)),
                eta.from_run,
                eta.cells_known,
                eta.cells_total
            );
        }
        None => println!("ETA: unknown until a first run of this experiment has stored timings"),
    }
    Ok(Status::Ok)
}
