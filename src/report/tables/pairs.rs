//! Pair cells: speedup, efficiency and contention per pair cell.

use super::*;

/// Speedup / efficiency / contention of pair cells (one row per pair cell).
pub fn pair_table(view: &View) -> Option<Table> {
    let entries: Vec<Entry> = view
        .entries(true)
        .into_iter()
        .filter(|e| e.run.a.pairs.iter().any(|p| p.cell_id == e.cell.cell_id))
        .collect();
    let a = &entries.first()?.run.a;
    let lvl = level_pct(a);
    let mut agents: Vec<String> = entries
        .iter()
        .flat_map(|e| {
            e.run
                .a
                .pairs
                .iter()
                .filter(|p| p.cell_id == e.cell.cell_id)
                .flat_map(|p| p.contention.keys().cloned())
        })
        .collect();
    agents.sort();
    agents.dedup();
    let (axes, constant) = split_axes(view, &entries, &[], &[]);
    let mut columns: Vec<Column> = axes.iter().map(Column::text).collect();
    columns.push(Column::number("n", 0, CiStyle::None));
    columns.push(Column::number(
        format!("speedup [{lvl} CI]"),
        2,
        CiStyle::Brackets,
    ));
    columns.push(Column::number(
        format!("efficiency [{lvl} CI]"),
        2,
        CiStyle::Brackets,
    ));
    for ag in &agents {
        columns.push(Column::number(
            format!("contention {ag} [{lvl} CI]"),
            2,
            CiStyle::Brackets,
        ));
    }
    let mut rows = Vec::new();
    for e in &entries {
        let Some(p) = e.run.a.pairs.iter().find(|p| p.cell_id == e.cell.cell_id) else {
            continue;
        };
        let mut cells = axis_cells(view, e, &axes);
        cells.push(Cell::value(p.speedup.summary.value().map(|s| s.n as f64)));
        cells.push(median_cell(&p.speedup));
        cells.push(median_cell(&p.efficiency));
        for ag in &agents {
            cells.push(
                p.contention
                    .get(ag)
                    .map(median_cell)
                    .unwrap_or_else(|| Cell::text("n/a")),
            );
        }
        rows.push(Row {
            cells,
            rule_above: false,
        });
    }
    let mut t = Table {
        name: "pairs".into(),
        caption: caption(
            "Pair cells: speedup = sequential wall / concurrent wall".into(),
            &constant,
        ),
        label: "tab:pairs".into(),
        columns,
        rows,
        notes: Vec::new(),
    };
    t.notes = vec![
        format!(
            "Entries: median of the per-rep ratios [{lvl} CI]; efficiency = speedup / N agents; \
             contention = concurrent / sequential e2e of an agent."
        ),
        tail_note(&entries, &t),
    ];
    Some(t)
}
