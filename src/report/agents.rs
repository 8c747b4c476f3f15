//! The per-agent pair table: each agent of a pair cell on its own (the analysis pools both
//! agents into the cell's metrics). For each agent: TTFT in the concurrent and in the
//! sequential phase and their change with its interval (what sharing the backend costs),
//! decode throughput, contention; and B against A in the concurrent phase. Every
//! comparison goes through the one statistics engine ([`crate::stats::engine::two_sample`]),
//! its p-values Holm-adjusted over the table.

use super::table::{Cell, ColKind, Column, Row, Table};
use super::tables::short_reason;
use super::view::{Entry, View};
use super::ReportError;
use crate::analysis::{self, Grouping, Metric, RepStats, Samples};
use crate::spec::CiStyle;
use crate::stats::engine::{self, Sample, TwoSample};
use polars::prelude::*;
use std::collections::BTreeMap;

/// Per-agent samples of the pair cells of one run: agent → samples keyed
/// `<cell> [<phase>]`.
fn agent_samples(
    run: &super::view::RunView,
    cells: &[String],
) -> Result<BTreeMap<String, Samples>, ReportError> {
    let manifest = crate::store::Manifest::read(&run.dir).map_err(analysis::AnalysisError::from)?;
    let loaded =
        crate::store::columnar::load(&run.dir, &manifest).map_err(analysis::AnalysisError::from)?;
    let in_cells = cells.iter().fold(lit(false), |acc, id| {
        acc.or(col("cell_id").eq(lit(id.clone())))
    });
    let lf = analysis::samples::with_defaults(loaded.frame)?.filter(
        in_cells.and(
            col("phase")
                .eq(lit("concurrent"))
                .or(col("phase").eq(lit("sequential"))),
        ),
    );
    let agents = lf
        .clone()
        .select([col("agent")])
        .unique(None, UniqueKeepStrategy::First)
        .collect()?;
    let mut names: Vec<String> = analysis::samples::str_col(&agents, "agent")?;
    names.sort();
    let mut out = BTreeMap::new();
    for ag in names {
        let s = analysis::samples::samples(
            lf.clone().filter(col("agent").eq(lit(ag.clone()))),
            &[Metric::TtftMs, Metric::DecodeTps],
            Grouping::CellPhases,
        )?;
        out.insert(ag, s);
    }
    Ok(out)
}

fn reps<'s>(s: Option<&'s Samples>, key: &str, m: Metric) -> &'s [f64] {
    s.and_then(|s| s.group(key))
        .and_then(|g| g.metric(m))
        .map(|x| x.reps.as_slice())
        .unwrap_or(&[])
}

fn median_cell(v: &[f64], level: f64) -> Cell {
    super::tables::median_cell(&RepStats::new(v.to_vec(), level))
}

/// The TTFT change of `x` against `y` (per-rep values) as a Δ% cell; a tested change's p is
/// queued in `tested` at `at` (row, column) for the Holm step.
fn ttft_change(
    x: &[f64],
    y: &[f64],
    params: &engine::Params,
    at: (usize, usize),
    tested: &mut Vec<(usize, usize, f64)>,
) -> Cell {
    let t: TwoSample = engine::two_sample(Metric::TtftMs, Sample::Reps(x), Sample::Reps(y), params);
    match (t.change, &t.ci) {
        (Some(c), Some(ci)) => {
            if let Some(test) = &t.test {
                tested.push((at.0, at.1, test.p));
            }
            Cell::value(Some(c * 100.0)).with_ci(Some(ci.lower * 100.0), Some(ci.upper * 100.0), "")
        }
        _ => Cell::text(short_reason(t.note.as_deref().unwrap_or("n/a"))),
    }
}

fn pct_column(header: String) -> Column {
    Column {
        header,
        kind: ColKind::Number {
            decimals: 1,
            ci: CiStyle::Brackets,
            signed: true,
            unit: "%".into(),
        },
    }
}

/// The per-agent table of a view's pair cells, or `None` when it has none.
pub fn agent_table(view: &View) -> Result<Option<Table>, ReportError> {
    let entries: Vec<Entry> = view.entries(true);
    let Some(first) = entries.first() else {
        return Ok(None);
    };
    let a0 = &first.run.a;
    let level = a0.options.level;
    let lvl = format!("{:.0}%", level * 100.0);
    let mut samples: BTreeMap<usize, BTreeMap<String, Samples>> = BTreeMap::new();
    for (i, r) in view.runs.iter().enumerate() {
        let cells: Vec<String> = entries
            .iter()
            .filter(|e| std::ptr::eq(e.run, r))
            .map(|e| e.cell.cell_id.clone())
            .collect();
        if !cells.is_empty() {
            samples.insert(i, agent_samples(r, &cells)?);
        }
    }
    let (axes, constant) = super::tables::split_axes(view, &entries, &[], &[]);
    let mut columns: Vec<Column> = axes.iter().map(Column::text).collect();
    columns.push(Column::text("agent"));
    columns.push(Column::number(
        format!("TTFT concurrent (ms) [{lvl} CI]"),
        0,
        CiStyle::Brackets,
    ));
    columns.push(Column::number(
        format!("TTFT sequential (ms) [{lvl} CI]"),
        0,
        CiStyle::Brackets,
    ));
    columns.push(pct_column(format!(
        "TTFT Δ% concurrent vs sequential [{lvl} CI]"
    )));
    columns.push(Column::number(
        format!("decode tok/s concurrent [{lvl} CI]"),
        1,
        CiStyle::Brackets,
    ));
    columns.push(pct_column(format!("TTFT Δ% vs A, concurrent [{lvl} CI]")));
    columns.push(Column::number(
        format!("contention [{lvl} CI]"),
        2,
        CiStyle::Brackets,
    ));

    let mut rows: Vec<Row> = Vec::new();
    // (row, column) of each tested change, and its p.
    let mut tested: Vec<(usize, usize, f64)> = Vec::new();
    for e in &entries {
        let ri = view
            .runs
            .iter()
            .position(|r| std::ptr::eq(r, e.run))
            .unwrap_or(0);
        let Some(s) = samples.get(&ri) else { continue };
        let params = e.run.a.params.clone();
        let id = &e.cell.cell_id;
        let pair = e.run.a.pairs.iter().find(|p| &p.cell_id == id);
        let agents: Vec<String> = s
            .iter()
            .filter(|(_, x)| x.groups.iter().any(|g| &g.cell_id == id))
            .map(|(ag, _)| ag.clone())
            .collect();
        let conc_key = format!("{id} [concurrent]");
        let seq_key = format!("{id} [sequential]");
        for ag in &agents {
            let sa = s.get(ag);
            let conc = reps(sa, &conc_key, Metric::TtftMs);
            let seq = reps(sa, &seq_key, Metric::TtftMs);
            let mut cells = super::tables::axis_cells(view, e, &axes);
            cells.push(Cell::text(ag.as_str()));
            cells.push(median_cell(conc, level));
            cells.push(median_cell(seq, level));
            // The bold goes on the column the change is pushed into: its index is the
            // number of cells before it.
            let at = cells.len();
            cells.push(ttft_change(
                conc,
                seq,
                &params,
                (rows.len(), at),
                &mut tested,
            ));
            cells.push(median_cell(reps(sa, &conc_key, Metric::DecodeTps), level));
            if Some(ag) == agents.first() {
                cells.push(Cell::text("(ref)"));
            } else {
                let a_conc = reps(s.get(&agents[0]), &conc_key, Metric::TtftMs);
                let at = cells.len();
                cells.push(ttft_change(
                    conc,
                    a_conc,
                    &params,
                    (rows.len(), at),
                    &mut tested,
                ));
            }
            cells.push(match pair.and_then(|p| p.contention.get(ag)) {
                Some(st) => median_cell(&st.reps, level),
                None => Cell::text("n/a"),
            });
            rows.push(Row {
                cells,
                rule_above: false,
            });
        }
    }
    let holm = crate::stats::holm(&tested.iter().map(|t| t.2).collect::<Vec<_>>());
    for ((r, c, _), p) in tested.iter().zip(holm) {
        if p < a0.options.alpha {
            if let Some(cell) = rows.get_mut(*r).and_then(|row| row.cells.get_mut(*c)) {
                cell.bold = true;
            }
        }
    }
    let mut t = Table {
        name: "pair_agents".into(),
        caption: super::tables::caption(
            "Pair cells per agent: concurrent vs sequential, and B vs A".into(),
            &constant,
        ),
        label: "tab:pair-agents".into(),
        columns,
        rows,
        notes: Vec::new(),
    };
    t.notes = vec![
        format!(
            "Entries: median TTFT per phase [{lvl} CI]; Δ% [{lvl} CI]; bold: Holm p < {} in \
             this table; contention: concurrent / sequential e2e.",
            a0.options.alpha
        ),
        super::tables::tail_note(&entries, &t),
    ];
    Ok(Some(t))
}
