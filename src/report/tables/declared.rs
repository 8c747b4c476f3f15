//! The tables an experiment file declares (`[[table]]`), and the headline built the same way.

use super::*;

/// The cells a `[[table]]` covers: its arms, else the single-agent cells (the pair cells
/// when there are no others).
pub(super) fn declared_entries<'a>(view: &'a View, spec: &TableSpec) -> Vec<Entry<'a>> {
    if spec.arms.is_empty() {
        let single = view.entries(false);
        if single.is_empty() {
            view.entries(true)
        } else {
            single
        }
    } else {
        let mut v = view.entries(false);
        v.extend(view.entries(true));
        v.retain(|e| spec.arms.contains(&e.cell.arm));
        v
    }
}

/// A `[[table]]` of the experiment file.
pub fn declared(view: &View, spec: &TableSpec) -> Table {
    let entries = declared_entries(view, spec);
    build_declared(view, &entries, spec, &[])
}

// Long (≈180 lines) on purpose: the two layouts (metrics as columns, an axis' values as
// columns) share the caption, the interval style and the notes set up around them, and each
// builds its header and rows in one pass over the entries; split, the pieces would pass a
// dozen locals back and forth.
pub(super) fn build_declared(
    view: &View,
    entries: &[Entry],
    spec: &TableSpec,
    group_by: &[String],
) -> Table {
    let Some(a) = entries.first().map(|e| &e.run.a) else {
        return Table {
            name: spec.name.clone(),
            caption: spec.caption.clone().unwrap_or_else(|| spec.name.clone()),
            label: spec.label.clone(),
            columns: vec![Column::text("note")],
            rows: vec![Row {
                cells: vec![Cell::text("no cells of these arms in this run")],
                rule_above: false,
            }],
            notes: Vec::new(),
        };
    };
    let lvl = level_pct(a);
    let stat_name = spec.statistic.as_str();
    let ci_txt = |m: Metric| -> String {
        if spec.ci == CiStyle::None || !spec.statistic.has_ci() {
            String::new()
        } else if spec.ci == CiStyle::Pm {
            " ± CI/2".into()
        } else {
            let _ = m;
            format!(" [{lvl} CI]")
        }
    };
    let ci_style = if spec.statistic.has_ci() {
        spec.ci
    } else {
        CiStyle::None
    };
    let mut exclude: Vec<String> = group_by.to_vec();
    if let Columns::Axis(ax) = &spec.columns {
        exclude.push(ax.clone());
    }
    let (axes, constant) = split_axes(view, entries, &spec.rows, &exclude);
    let mut columns: Vec<Column> = axes.iter().map(Column::text).collect();
    let mut rows = Vec::new();
    let what;
    match &spec.columns {
        Columns::Metrics => {
            for &m in &spec.metrics {
                let stat = if m.is_pooled() {
                    "p95".to_string()
                } else {
                    stat_name.to_string()
                };
                columns.push(Column::number(
                    format!("{} {stat}{}", m.label(), ci_txt(m)),
                    1,
                    ci_style,
                ));
                if spec.delta {
                    columns.push(Column {
                        header: format!("{} Δ% [{lvl} CI]", m.label()),
                        kind: ColKind::Number {
                            decimals: 1,
                            ci: CiStyle::Brackets,
                            signed: true,
                            unit: "%".into(),
                        },
                    });
                }
            }
            for e in entries {
                let mut cells = axis_cells(view, e, &axes);
                for &m in &spec.metrics {
                    let (_, sig) = verdict(&e.run.a, e.cell, m);
                    let mut c = stat_cell(e.cell.metric(m), spec.statistic);
                    c.bold = spec.bold == BoldRule::Significant && sig;
                    if e.cell.is_reference
                        && !spec.delta
                        && view.reference_arms().len() == 1
                        && !axes.contains(&"arm".to_string())
                    {
                        c.suffix = "(ref)".into();
                    }
                    cells.push(c);
                    if spec.delta {
                        cells.push(delta_cell(e, m, sig));
                    }
                }
                rows.push(Row {
                    cells,
                    rule_above: false,
                });
            }
            what = spec
                .metrics
                .iter()
                .map(|m| m.label())
                .collect::<Vec<_>>()
                .join(", ");
        }
        Columns::Axis(ax) => {
            let m = spec.metrics[0];
            let mut col_values: Vec<(String, bool)> = Vec::new();
            for e in entries {
                let v = view.value(e, ax);
                if !col_values.iter().any(|(t, _)| *t == v.text) {
                    col_values.push((v.text, v.default));
                }
            }
            col_values.sort_by(|x, y| cmp_values(&x.0, &y.0));
            for (v, _) in &col_values {
                columns.push(Column::number(format!("{ax} = {v}"), 1, ci_style));
            }
            // Rows: the distinct row-axis values, in the entries' order.
            let mut keys: Vec<Vec<crate::report::view::AxisValue>> = Vec::new();
            let mut at: BTreeMap<(usize, String), &Entry> = BTreeMap::new();
            for e in entries {
                let k: Vec<_> = axes.iter().map(|x| view.value(e, x)).collect();
                let i = match keys.iter().position(|x| *x == k) {
                    Some(i) => i,
                    None => {
                        keys.push(k);
                        keys.len() - 1
                    }
                };
                at.entry((i, view.value(e, ax).text)).or_insert(e);
            }
            for (i, k) in keys.iter().enumerate() {
                let mut cells: Vec<Cell> = k
                    .iter()
                    .map(|v| Cell {
                        text: v.text.clone(),
                        default: v.default,
                        ..Default::default()
                    })
                    .collect();
                for (v, _) in &col_values {
                    match at.get(&(i, v.clone())) {
                        None => cells.push(Cell::text("–")),
                        Some(e) => {
                            let (_, sig) = verdict(&e.run.a, e.cell, m);
                            let mut c = stat_cell(e.cell.metric(m), spec.statistic);
                            c.bold = spec.bold == BoldRule::Significant && sig;
                            if e.cell.is_reference {
                                c.suffix = "(ref)".into();
                            }
                            cells.push(c);
                        }
                    }
                }
                rows.push(Row {
                    cells,
                    rule_above: false,
                });
            }
            let stat = if m.is_pooled() { "p95" } else { stat_name };
            what = format!("{} {stat}{} by {ax}", m.label(), ci_txt(m));
        }
    }
    let mut t = Table {
        name: spec.name.clone(),
        caption: caption(spec.caption.clone().unwrap_or(what), &constant),
        label: spec.label.clone(),
        columns,
        rows,
        notes: Vec::new(),
    };
    if spec.bold == BoldRule::Best {
        bold_best(&mut t, spec, axes.len());
    }
    fit_decimals(&mut t, spec.digits);
    let mut lead = entry_note(view, spec.statistic, spec.bold, spec.delta);
    if matches!(spec.columns, Columns::Axis(_)) {
        lead.push_str("; –: no such cell; (ref): a reference cell");
    }
    lead.push('.');
    t.notes = vec![lead, tail_note(entries, &t)];
    t
}

pub(super) fn delta_cell(e: &Entry, m: Metric, sig: bool) -> Cell {
    if e.cell.is_reference {
        return Cell::text("(ref)");
    }
    let cmp = e.run.a.comparison(&e.cell.cell_id, m);
    match cmp.and_then(|x| x.delta_pct()) {
        Some((d, lo, hi)) => Cell::value(Some(d))
            .with_ci(Some(lo), Some(hi), "")
            .bold(sig),
        None => Cell::text(short_reason(
            cmp.and_then(|x| x.why_no_ci()).unwrap_or("n/a"),
        )),
    }
}

/// Bold on the best value of each metric column (by the metric's direction).
pub(super) fn bold_best(t: &mut Table, spec: &TableSpec, first: usize) {
    let ncol = t.columns.len();
    for i in first..ncol {
        if !t.columns[i].is_number() || t.columns[i].header.contains("Δ%") {
            continue;
        }
        let m = match &spec.columns {
            Columns::Axis(_) => spec.metrics[0],
            Columns::Metrics => {
                let per = if spec.delta { 2 } else { 1 };
                spec.metrics[(i - first) / per]
            }
        };
        let Some(higher) = m.higher_is_better() else {
            continue;
        };
        let best = t
            .rows
            .iter()
            .filter_map(|r| r.cells.get(i).and_then(|c| c.value))
            .fold(None, |acc: Option<f64>, v| match acc {
                None => Some(v),
                Some(b) if (higher && v > b) || (!higher && v < b) => Some(v),
                keep => keep,
            });
        if let Some(b) = best {
            for r in &mut t.rows {
                if let Some(c) = r.cells.get_mut(i) {
                    c.bold = c.value == Some(b);
                }
            }
        }
    }
}
