//! Workload levels: one row per configuration × level (throughput, per-user rate, latency,
//! goodput, the SLO and the Pareto front), and the capacity of each configuration under the
//! `[slo]`.

use super::*;
use crate::analysis::workload::{LevelPoint, Workload};

/// The latency–throughput table of a run with workload levels (`None` without levels > 1
/// or an `[slo]`).
pub fn workload_table(view: &View) -> Option<Table> {
    let [rv] = view.runs.as_slice() else {
        return None;
    };
    let w = &rv.a.workload;
    if !w.is_shown() || w.levels.is_empty() {
        return None;
    }
    let lvl = level_pct(&rv.a);
    let speedups: BTreeMap<&str, &crate::analysis::RepStats> =
        rv.a.pairs
            .iter()
            .map(|p| (p.cell_id.as_str(), &p.speedup))
            .collect();
    let any_speedup = w
        .levels
        .iter()
        .any(|l| speedups.contains_key(l.cell_id.as_str()));
    let open = w.levels.iter().any(|l| l.rate.is_some());
    let queued = w.levels.iter().any(|l| l.server_queue_max.is_some());
    let energy = w.levels.iter().any(|l| l.energy_per_token_j.is_some());
    let fair = w.levels.iter().any(|l| l.fairness.is_some());
    let dash = |s: Option<&crate::analysis::RepStats>, none: &str| {
        s.map(median_cell).unwrap_or_else(|| Cell::text(none))
    };
    // The columns a run may lack (no speedup phase, no server queue, closed loop, no
    // SLO), each with how a level fills it.
    type Fill<'a> = Box<dyn Fn(&LevelPoint) -> Cell + 'a>;
    let optional: Vec<(bool, Column, Fill)> = vec![
        (
            any_speedup,
            Column::number(format!("speedup [{lvl} CI]"), 2, CiStyle::Brackets),
            Box::new(|l| dash(speedups.get(l.cell_id.as_str()).copied(), "—")),
        ),
        (
            queued,
            Column::number(format!("server queue max [{lvl} CI]"), 0, CiStyle::Brackets),
            Box::new(|l| dash(l.server_queue_max.as_ref(), "—")),
        ),
        (
            fair,
            Column::number(format!("fairness (Jain) [{lvl} CI]"), 3, CiStyle::Brackets),
            Box::new(|l| dash(l.fairness.as_ref(), "—")),
        ),
        (
            energy,
            Column::number(format!("GPU J/token [{lvl} CI]"), 3, CiStyle::Brackets),
            Box::new(|l| dash(l.energy_per_token_j.as_ref(), "—")),
        ),
        (
            open,
            Column::number(format!("send lag p99 ms [{lvl} CI]"), 1, CiStyle::Brackets),
            Box::new(|l| dash(l.send_lag_p99_ms.as_ref(), "—")),
        ),
        (
            w.slo.is_some(),
            Column::number(format!("goodput req/s [{lvl} CI]"), 2, CiStyle::Brackets),
            Box::new(|l| dash(l.goodput_rps.as_ref(), "n/a")),
        ),
        (
            w.slo.is_some(),
            Column::text("within SLO"),
            Box::new(|l| Cell::text(format!("{}/{} reps", l.slo_reps_met, l.slo_reps))),
        ),
    ];
    let optional: Vec<_> = optional.into_iter().filter(|(on, ..)| *on).collect();
    let mut columns = vec![
        Column::text("configuration"),
        Column::text("level"),
        Column::number("n", 0, CiStyle::None),
        Column::number(format!("total tok/s [{lvl} CI]"), 1, CiStyle::Brackets),
        Column::number(format!("tok/s per user [{lvl} CI]"), 1, CiStyle::Brackets),
        Column::number(format!("TTFT p50 ms [{lvl} CI]"), 0, CiStyle::Brackets),
        Column::number(format!("TTFT p95 ms [{lvl} CI]"), 0, CiStyle::Brackets),
        Column::number(format!("ITL p50 ms [{lvl} CI]"), 1, CiStyle::Brackets),
        Column::number(format!("e2e p95 ms [{lvl} CI]"), 0, CiStyle::Brackets),
    ];
    columns.extend(optional.iter().map(|(_, c, _)| c.clone()));
    columns.push(Column::text("Pareto"));
    let mut rows = Vec::new();
    let mut last_conf: Option<&str> = None;
    for l in &w.levels {
        let mut cells = vec![
            Cell::text(l.configuration.clone()),
            Cell::text(l.level_text()),
            Cell::value(Some(l.total_tps.reps.len() as f64)),
            median_cell(&l.total_tps),
            median_cell(&l.user_tps),
            median_cell(&l.ttft_p50_ms),
            median_cell(&l.ttft_p95_ms),
            median_cell(&l.itl_p50_ms),
            median_cell(&l.e2e_p95_ms),
        ];
        cells.extend(optional.iter().map(|(_, _, fill)| fill(l)));
        let fronts: Vec<&str> = [(&w.pareto, "front"), (&w.pareto_energy, "energy front")]
            .into_iter()
            .filter(|(ids, _)| ids.contains(&l.cell_id))
            .map(|(_, name)| name)
            .collect();
        cells.push(Cell::text(fronts.join(", ")));
        rows.push(Row {
            cells,
            rule_above: last_conf.is_some_and(|c| c != l.configuration),
        });
        last_conf = Some(&l.configuration);
    }
    let notes = workload_notes(w, &lvl, queued, open, fair);
    Some(Table {
        name: "workload".into(),
        caption: "Workload levels: throughput and latency per configuration and level (agents \
                  at once, or open-loop arrivals per second)"
            .into(),
        label: "tab:workload".into(),
        columns,
        rows,
        notes,
    })
}

/// The two note lines under the workload table: what an entry is, and what was left out.
fn workload_notes(w: &Workload, lvl: &str, queued: bool, open: bool, fair: bool) -> Vec<String> {
    let mut entry = format!(
        "Entries: median over reps of each unit's figure [{lvl} CI]; total = output tokens / \
         phase wall; per user = 1000 / mean TPOT; ITL = median TPOT.{}",
        match &w.slo {
            Some(s) => format!(" SLO: {s}; goodput = calls within it / phase wall."),
            None => String::new(),
        }
    );
    if queued {
        entry.push_str(" Server queue: most requests waiting for a slot (the server's /metrics).");
    }
    if fair {
        entry.push_str(
            " Fairness = Jain's index of the agents' own tok/s (tokens / their calls' e2e): 1 \
             = equal service, 1/N = one agent served.",
        );
    }
    if open {
        entry.push_str(
            " Send lag = an arrival's first call's start − its planned start (open loop).",
        );
    }
    let energy = !w.pareto_energy.is_empty();
    if energy {
        entry.push_str(" GPU J/token = the calls' share of GPU energy / their output tokens.");
    }
    let left_out: usize = w.levels.iter().map(|l| l.reps_left_out).sum();
    let left = if left_out > 0 {
        format!("{left_out} reps with a failed or cold call left out of throughput and latency.")
    } else {
        "No rep left out.".to_string()
    };
    vec![
        entry,
        format!(
            "{left} Pareto: not beaten on both tok/s per user and total tok/s{}. See Methods.",
            if energy {
                " (energy front: on tok/s per user and J/token)"
            } else {
                ""
            }
        ),
    ]
}

/// The capacity of each configuration under the `[slo]` (`None` without an SLO).
pub fn capacity_table(view: &View) -> Option<Table> {
    let [rv] = view.runs.as_slice() else {
        return None;
    };
    let w: &Workload = &rv.a.workload;
    let slo = w.slo.as_ref()?;
    if w.capacity.is_empty() {
        return None;
    }
    let lvl = level_pct(&rv.a);
    let columns = vec![
        Column::text("configuration"),
        Column::text("level"),
        Column::text("levels"),
        Column::number("n", 0, CiStyle::None),
        Column::number(
            format!("capacity [{lvl} CI]"),
            // Agents are whole; a rate may not be.
            usize::from(
                w.capacity
                    .iter()
                    .flat_map(|c| &c.levels)
                    .any(|l| l.fract() != 0.0),
            ),
            CiStyle::Brackets,
        ),
        Column::text("per rep"),
    ];
    let rows = w
        .capacity
        .iter()
        .map(|c| Row {
            cells: vec![
                Cell::text(c.configuration.clone()),
                Cell::text(match c.level_name.as_str() {
                    "rate" => "arrivals/s",
                    _ => "agents",
                }),
                Cell::text(
                    c.levels
                        .iter()
                        .map(f64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                Cell::value(Some(c.per_rep.reps.len() as f64)),
                median_cell(&c.per_rep),
                Cell::text(
                    c.per_rep
                        .reps
                        .iter()
                        .map(|v| format!("{v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            ],
            rule_above: false,
        })
        .collect();
    Some(Table {
        name: "capacity".into(),
        caption: format!("Capacity under the SLO ({slo})"),
        label: "tab:capacity".into(),
        columns,
        rows,
        notes: vec![
            format!(
                "Capacity in a rep: the largest level within the SLO with every lower level \
                 within it too (0: even the lowest missed). Entries: median over reps \
                 [{lvl} CI]."
            ),
            "See Methods (methods.md, methods.tex).".into(),
        ],
    })
}
