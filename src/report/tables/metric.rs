//! The default set: per metric a benchstat-like table (one row per cell), and the
//! `--columns AXIS` paper layout.

use super::*;

/// Name suffix of a table over pair cells.
pub(super) fn kind_suffix(pair: bool) -> &'static str {
    if pair {
        "_pairs"
    } else {
        ""
    }
}

/// One benchstat-like table per metric and per kind of cell (single, pair) and per
/// `group_by` section: the section tables of one metric share a file.
pub fn metric_tables(
    view: &View,
    metrics: &[Metric],
    group_by: &[String],
) -> Vec<(String, Vec<Table>)> {
    let mut out = Vec::new();
    for &m in metrics {
        for pair in [false, true] {
            let entries = view.entries(pair);
            if entries.is_empty() {
                continue;
            }
            let name = format!("{}{}", m.name(), kind_suffix(pair));
            let mut tables = Vec::new();
            for (key, group) in sections(view, &entries, group_by) {
                tables.push(metric_table(view, &group, m, group_by, &key, &name, pair));
            }
            out.push((name, tables));
        }
    }
    out
}

/// Cells by their `group_by` values (each section keeps the cells' order).
pub(super) fn sections<'a>(
    view: &View,
    entries: &[Entry<'a>],
    group_by: &[String],
) -> Vec<(Vec<String>, Vec<Entry<'a>>)> {
    let mut groups: BTreeMap<Vec<String>, Vec<Entry>> = BTreeMap::new();
    for e in entries {
        let key = group_by.iter().map(|g| view.value(e, g).text).collect();
        groups.entry(key).or_default().push(*e);
    }
    groups.into_iter().collect()
}

pub(super) fn section_label(group_by: &[String], key: &[String]) -> String {
    group_by
        .iter()
        .zip(key)
        .map(|(g, v)| format!("{g}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn with_section(title: String, group_by: &[String], key: &[String]) -> String {
    if group_by.is_empty() {
        title
    } else {
        format!("{title} — {}", section_label(group_by, key))
    }
}

pub(super) fn label_of(name: &str, group_by: &[String], key: &[String]) -> String {
    let mut l = format!("tab:{name}");
    for v in key {
        l.push('-');
        l.extend(
            v.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }),
        );
    }
    let _ = group_by;
    l
}

pub(super) fn metric_table(
    view: &View,
    entries: &[Entry],
    m: Metric,
    group_by: &[String],
    key: &[String],
    name: &str,
    pair: bool,
) -> Table {
    let a = &entries[0].run.a;
    let lvl = level_pct(a);
    let (axes, constant) = split_axes(view, entries, &[], group_by);
    let value_name = if m.is_pooled() { "p95" } else { "median" };
    let mut columns: Vec<Column> = axes.iter().map(Column::text).collect();
    columns.push(Column::number("n", 0, CiStyle::None));
    columns.push(Column::number(
        format!("{value_name} [{lvl} CI]"),
        1,
        CiStyle::Brackets,
    ));
    columns.push(Column::number("mean ± sd", 1, CiStyle::None));
    columns.push(Column {
        header: format!("Δ% [{lvl} CI]"),
        kind: ColKind::Number {
            decimals: 1,
            ci: CiStyle::Brackets,
            signed: true,
            unit: "%".into(),
        },
    });
    columns.push(Column::text("p (Holm)"));
    columns.push(Column::text("verdict"));

    let mut rows = Vec::new();
    let (mut log_est, mut n_est, mut log_ratio, mut n_ratio) = (0.0, 0usize, 0.0, 0usize);
    for e in entries {
        let c = e.cell;
        let cm = c.metric(m);
        let mut cells = axis_cells(view, e, &axes);
        cells.push(Cell::value(cm.map(|x| x.n_reps as f64)));
        let (word, sig) = verdict(&e.run.a, c, m);
        let mut est = stat_cell(cm, Statistic::Median);
        if let Some(v) = est.value.filter(|v| *v > 0.0) {
            log_est += v.ln();
            n_est += 1;
        }
        est.bold = sig;
        cells.push(est);
        let mut ms = Cell::value(cm.and_then(|x| x.stats.summary.value().map(|s| s.mean)));
        ms.pm = cm.and_then(|x| x.stats.summary.value().and_then(|s| s.sd));
        cells.push(ms);
        let cmp = e.run.a.comparison(&c.cell_id, m);
        if c.is_reference {
            cells.push(Cell::text("(ref)"));
            cells.push(Cell::text(""));
        } else {
            let delta = match cmp.and_then(|x| x.delta_pct()) {
                Some((d, lo, hi)) => {
                    log_ratio += (1.0 + d / 100.0).ln();
                    n_ratio += 1;
                    Cell::value(Some(d)).with_ci(Some(lo), Some(hi), "")
                }
                None => Cell::text(short_reason(
                    cmp.and_then(|x| x.why_no_ci()).unwrap_or("n/a"),
                )),
            };
            cells.push(delta.bold(sig));
            cells.push(
                Cell::text(match cmp.and_then(|x| x.p_holm) {
                    Some(p) => pval(p),
                    None => {
                        short_reason(cmp.and_then(|x| x.result.note.as_deref()).unwrap_or("n/a"))
                    }
                })
                .bold(sig),
            );
        }
        cells.push(Cell::text(word).bold(sig));
        rows.push(Row {
            cells,
            rule_above: false,
        });
    }
    // Geomean row: geometric mean of the estimates and of the ratios to the reference.
    let mut geo = vec![Cell::text(""); axes.len() + 1];
    if let Some(first) = geo.first_mut() {
        first.text = "geomean".into();
    } else {
        geo.insert(0, Cell::text("geomean"));
    }
    geo.push(Cell::value(
        (n_est > 0).then(|| (log_est / n_est as f64).exp()),
    ));
    geo.push(Cell::text(""));
    geo.push(if n_ratio > 0 {
        Cell::value(Some(((log_ratio / n_ratio as f64).exp() - 1.0) * 100.0))
    } else {
        Cell::text("")
    });
    geo.push(Cell::text(""));
    geo.push(Cell::text(""));
    if axes.is_empty() {
        // No axis column to hold the word: the n column says it.
        geo[0] = Cell::text("geomean");
    }
    rows.push(Row {
        cells: geo,
        rule_above: true,
    });
    let kind = if pair {
        "pair cells (concurrent phase, both agents)"
    } else {
        "single-agent cells"
    };
    let mut t = Table {
        name: name.to_string(),
        caption: caption(
            with_section(format!("{}, {kind}", m.label()), group_by, key),
            &constant,
        ),
        label: label_of(name, group_by, key),
        columns,
        rows,
        notes: Vec::new(),
    };
    fit_decimals(&mut t, 4);
    let mut lead = entry_note(view, Statistic::Median, BoldRule::Significant, true);
    lead.push_str("; ~ not significant");
    let other_workload = t
        .rows
        .iter()
        .any(|r| r.cells.iter().any(|c| c.text.starts_with('≠')));
    if other_workload {
        lead.push_str(&format!(
            "; ≠ workload: output length differs from the reference's by > {:.0}%, not judged",
            crate::analysis::WORKLOAD_TOLERANCE * 100.0
        ));
    }
    lead.push('.');
    t.notes = vec![lead, tail_note(entries, &t)];
    t
}

/// The paper layout: an axis' values across the columns, `median [CI]` per entry, single
/// cells only (pair cells' factors are per member).
pub fn pivot_tables(
    view: &View,
    metrics: &[Metric],
    axis: &str,
    group_by: &[String],
) -> Vec<(String, Vec<Table>)> {
    let entries = view.entries(false);
    if entries.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &m in metrics {
        let spec = TableSpec {
            name: format!("{}_by_{axis}", m.name()),
            metrics: vec![m],
            statistic: Statistic::Median,
            rows: Vec::new(),
            columns: Columns::Axis(axis.to_string()),
            arms: Vec::new(),
            ci: CiStyle::Brackets,
            digits: 4,
            caption: None,
            label: format!("tab:{}_by_{axis}", m.name()),
            bold: BoldRule::Significant,
            delta: false,
        };
        let mut tables = Vec::new();
        for (key, group) in sections(view, &entries, group_by) {
            let mut t = build_declared(view, &group, &spec, group_by);
            t.caption = with_section(t.caption, group_by, &key);
            t.label = label_of(&spec.name, group_by, &key);
            tables.push(t);
        }
        out.push((spec.name.clone(), tables));
    }
    out
}
