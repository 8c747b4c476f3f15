//! The ETA `sweep plan` prints: the plan's phases timed by the newest earlier run of the
//! experiment (its stored phase wall times), plus the managed servers' starts.

use super::*;

/// Estimated wall time of a plan from an earlier run's phase wall times: per (cell, phase)
/// where the cell was measured, else the mean of that phase kind, else the mean per call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Eta {
    /// The plan's phases, without reload probes.
    pub seconds: f64,
    /// One reload probe (mean of the stored probes; 0 when there were none).
    pub probe_seconds: f64,
    pub from_run: String,
    pub cells_known: usize,
    pub cells_total: usize,
    /// One managed-server start, spawn → first token (mean of that run's starts; 0 without
    /// `[server]`).
    pub server_start_seconds: f64,
}

/// Looks for the newest run of the experiment with stored records and estimates from it.
pub(crate) fn estimate(
    spec: &Spec,
    plan: &Plan,
    results_dir: Option<&std::path::Path>,
) -> Option<Eta> {
    let exp_dir = results_dir
        .map(|d| d.to_path_buf())
        .unwrap_or_else(|| spec.run.results_dir.clone())
        .join(&spec.experiment.name);
    let runs: Vec<PathBuf> = store::ExperimentDir::new(&exp_dir)
        .runs()
        .runs
        .into_iter()
        .map(|r| r.dir)
        .filter(|p| p.join(store::RECORDS_JSONL).is_file())
        .collect();
    for run in runs.iter().rev() {
        let Ok(read) = store::read_records(&run.join(store::RECORDS_JSONL)) else {
            continue;
        };
        if read.records.is_empty() {
            continue;
        }
        return Some(estimate_from(plan, &read.records, run));
    }
    None
}

pub(super) fn estimate_from(plan: &Plan, records: &[Record], run: &std::path::Path) -> Eta {
    // one wall time per stored phase
    let mut per_phase: BTreeMap<PhaseKey, f64> = BTreeMap::new();
    let (mut probe_ms, mut probes) = (0.0, 0usize);
    for r in records {
        if r.phase == Phase::Reload {
            probe_ms += r.phase_wall_ms;
            probes += 1;
            continue;
        }
        per_phase.insert(r.phase_key(), r.phase_wall_ms);
    }
    let mut by_cell: BTreeMap<(String, Phase), (f64, usize)> = BTreeMap::new();
    let mut by_kind: BTreeMap<Phase, (f64, usize)> = BTreeMap::new();
    for (k, w) in &per_phase {
        let e = by_cell.entry((k.cell_id.clone(), k.phase)).or_default();
        e.0 += w;
        e.1 += 1;
        let e = by_kind.entry(k.phase).or_default();
        e.0 += w;
        e.1 += 1;
    }
    let per_call = {
        let total: f64 = per_phase.values().sum();
        total / records.len().max(1) as f64
    };
    let mean = |(s, n): (f64, usize)| s / n.max(1) as f64;
    let mut ms = 0.0;
    let mut known = 0;
    for (i, cell) in plan.cells.iter().enumerate() {
        let units = plan.units.iter().filter(|u| u.cell == i).count() as f64;
        let mut cell_known = true;
        for &ph in cell.phases() {
            let w = match by_cell.get(&(cell.id.clone(), ph)) {
                Some(&v) => mean(v),
                None => {
                    cell_known = false;
                    by_kind
                        .get(&ph)
                        .map(|&v| mean(v))
                        .unwrap_or(per_call * cell.calls_in_phase(ph) as f64)
                }
            };
            ms += w * units;
        }
        if cell_known {
            known += 1;
        }
    }
    let starts: Vec<f64> = crate::server::read_events(run)
        .into_iter()
        .filter_map(|e| match e {
            crate::server::ServerEvent::Start {
                healthy_ms,
                first_token_ms,
                ..
            } => Some(first_token_ms.unwrap_or(healthy_ms)),
            _ => None,
        })
        .collect();
    Eta {
        server_start_seconds: if starts.is_empty() {
            0.0
        } else {
            starts.iter().sum::<f64>() / starts.len() as f64 / 1000.0
        },
        seconds: ms / 1000.0,
        probe_seconds: if probes > 0 {
            probe_ms / probes as f64 / 1000.0
        } else {
            0.0
        },
        from_run: run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cells_known: known,
        cells_total: plan.cells.len(),
    }
}

/// `1h 02m`, `12m 30s`, `45s`.
pub(crate) fn human_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}
