//! Tables built from the analyses of a report's runs, format-neutral ([`Table`]):
//!
//! - the default set (no `[[table]]` in the experiment file): per metric a benchstat-like
//!   table (one row per cell, `median [CI]`, `mean ± sd`, `Δ% [CI]`, Holm p, verdict, a
//!   geomean row), the `--columns AXIS` paper layout, the pair tables;
//! - each `[[table]]` the experiment file declares ([`declared`]).
//!
//! Rules every table keeps: single-agent and pair cells never share a table; an axis whose
//! value is the same in every row moves into the caption; a cell that leaves an option
//! unset shows the backend's effective default, marked †; numbers in a column share their
//! decimals; the notes are a few short lines and the method text lives once in
//! `methods.md|tex` ([`super::methods`]).

use super::table::{decimals_for, Cell, ColKind, Column, Row, Table};
use super::view::{cmp_values, Entry, View};
use crate::analysis::{Analysis, CellAnalysis, CellMetric, Metric};
use crate::spec::{BoldRule, CiStyle, Columns, Statistic, TableSpec};
use crate::stats::engine::Decision;
use std::collections::BTreeMap;

/// A median with its order-statistic CI, or the reason there is no interval.
pub(crate) fn median_cell(s: &crate::analysis::RepStats) -> Cell {
    let (lo, hi) = s
        .median_ci
        .value()
        .map(|i| (Some(i.lower), Some(i.upper)))
        .unwrap_or((None, None));
    Cell::value(s.summary.value().map(|x| x.median)).with_ci(
        lo,
        hi,
        &short_reason(s.median_ci.reason().unwrap_or("")),
    )
}

/// Short form of an "unavailable" reason: "need ≥ 6".
pub fn short_reason(note: &str) -> String {
    match note.find("need ≥") {
        Some(i) => {
            let rest = &note[i + "need ≥".len()..];
            let n: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            format!("need ≥ {n}")
        }
        None if note.is_empty() => "n/a".into(),
        None => note.to_string(),
    }
}

fn pval(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

fn level_pct(a: &Analysis) -> String {
    format!("{:.0}%", a.options.level * 100.0)
}

/// The verdict of a cell's metric against its reference: `better`, `worse`, `~`, `n/a`,
/// `(ref)`.
fn verdict(a: &Analysis, c: &CellAnalysis, m: Metric) -> (String, bool) {
    if c.is_reference {
        return ("(ref)".into(), false);
    }
    match a.comparison(&c.cell_id, m) {
        Some(cmp) => {
            let sig = matches!(cmp.verdict, Decision::Better | Decision::Worse);
            let word = crate::analysis::verdict_word(cmp.verdict);
            (word.into(), sig)
        }
        None => ("n/a".into(), false),
    }
}

/// A statistic of a cell's metric as a cell: value, interval (or why none).
fn stat_cell(cm: Option<&CellMetric>, stat: Statistic) -> Cell {
    let Some(cm) = cm else {
        return Cell::text("n/a");
    };
    let summary = cm.stats.summary.value();
    match stat {
        Statistic::Median => {
            let (lo, hi) = cm
                .estimate_ci
                .value()
                .map(|i| (Some(i.lower), Some(i.upper)))
                .unwrap_or((None, None));
            Cell::value(cm.estimate).with_ci(
                lo,
                hi,
                &short_reason(cm.estimate_ci.reason().unwrap_or("")),
            )
        }
        Statistic::Mean => {
            let (lo, hi) = cm
                .stats
                .mean_ci
                .value()
                .map(|i| (Some(i.lower), Some(i.upper)))
                .unwrap_or((None, None));
            Cell::value(summary.map(|s| s.mean)).with_ci(
                lo,
                hi,
                &short_reason(cm.stats.mean_ci.reason().unwrap_or("")),
            )
        }
        q => Cell::value(summary.map(|s| match q {
            Statistic::P5 => s.p5,
            Statistic::P25 => s.p25,
            Statistic::P75 => s.p75,
            Statistic::P95 => s.p95,
            Statistic::P99 => s.p99,
            Statistic::Min => s.min,
            _ => s.max,
        })),
    }
}

/// The row axes of a table: the asked ones, else every axis; then those constant over the
/// rows move out (returned apart, with their value, for the caption).
pub(super) fn split_axes(
    view: &View,
    entries: &[Entry],
    wanted: &[String],
    exclude: &[String],
) -> (Vec<String>, Vec<(String, String)>) {
    let axes: Vec<String> = if wanted.is_empty() {
        view.axes(entries)
    } else {
        wanted.to_vec()
    };
    let mut keep = Vec::new();
    let mut constant = Vec::new();
    for ax in axes.into_iter().filter(|a| !exclude.contains(a)) {
        let vals: Vec<_> = entries.iter().map(|e| view.value(e, &ax)).collect();
        let mut texts: Vec<&str> = vals.iter().map(|v| v.text.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        // Constant when every row shows the same value, set or default (marked only when
        // it is the default everywhere).
        if texts.len() == 1 && (entries.len() > 1 || wanted.is_empty()) {
            let all_default = vals.iter().all(|v| v.default);
            let mark = if all_default {
                super::table::DEFAULT_MARK
            } else {
                ""
            };
            constant.push((ax, format!("{}{mark}", texts[0])));
        } else {
            keep.push(ax);
        }
    }
    (keep, constant)
}

pub(super) fn caption(what: String, constant: &[(String, String)]) -> String {
    if constant.is_empty() {
        what
    } else {
        let c: Vec<String> = constant.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        format!("{what}; {}", c.join(", "))
    }
}

pub(super) fn axis_cells(view: &View, e: &Entry, axes: &[String]) -> Vec<Cell> {
    axes.iter()
        .map(|ax| {
            let v = view.value(e, ax);
            Cell {
                text: v.text,
                default: v.default,
                ..Default::default()
            }
        })
        .collect()
}

/// Sets each number column's decimals from its values (`digits` significant digits on the
/// largest) so every row shows the same decimals.
fn fit_decimals(t: &mut Table, digits: u32) {
    for (i, col) in t.columns.iter_mut().enumerate() {
        if let ColKind::Number { decimals, unit, .. } = &mut col.kind {
            if unit == "%" || col.header == "n" {
                continue; // changes keep one decimal, counts none
            }
            let vals = t
                .rows
                .iter()
                .filter_map(|r| r.cells.get(i))
                .flat_map(|c| [c.value, c.lo, c.hi, c.pm].into_iter().flatten());
            *decimals = decimals_for(vals, digits);
        }
    }
}

/// The notes every table of a view carries: marks, exclusions, environment, warnings.
pub(super) fn common_notes(view: &View, entries: &[Entry], t: &Table) -> Vec<String> {
    let mut notes = Vec::new();
    let marked = t.rows.iter().any(|r| r.cells.iter().any(|c| c.default))
        || t.caption.contains(super::table::DEFAULT_MARK);
    if marked {
        notes.push(format!(
            "{} not set in the experiment file: the value the backend applies ({}).",
            super::table::DEFAULT_MARK,
            view.defaults_source()
        ));
    }
    for r in &view.runs {
        // The rule's first clause: which arm, and why that one.
        let rule = r.a.reference_rule.split(';').next().unwrap_or("");
        if view.runs.len() > 1 {
            notes.push(format!("{}: {rule}.", r.label));
        } else {
            notes.push(format!("Reference: {rule}."));
        }
    }
    let (mut warm, mut cold, mut failed) = (0, 0, 0);
    let mut by_reason: BTreeMap<String, u32> = BTreeMap::new();
    for e in entries {
        warm += e.cell.counts.warmup;
        cold += e.cell.counts.cold;
        failed += e.cell.counts.failed;
        for (k, v) in &e.cell.counts.cold_by_reason {
            *by_reason.entry(k.clone()).or_default() += v;
        }
    }
    let reasons = if by_reason.is_empty() {
        String::new()
    } else {
        format!(
            " ({})",
            by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    notes.push(format!(
        "Excluded by rule and counted: {warm} warm-up, {cold} cold{reasons}, {failed} failed calls."
    ));
    let mut by_source: BTreeMap<String, u32> = BTreeMap::new();
    for e in entries {
        for (k, v) in &e.cell.counts.tokens_by_source {
            *by_source.entry(k.clone()).or_default() += v;
        }
    }
    if !by_source.is_empty() {
        notes.push(format!(
            "Token counts of the measured calls from: {}{}.",
            by_source
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            if by_source.contains_key("chunks") {
                " (chunks: counted content chunks, an approximation)"
            } else {
                ""
            }
        ));
    }
    for r in &view.runs {
        if let Some(p) = prompts_note(&r.a) {
            if view.runs.len() > 1 {
                notes.push(format!("{}: {p}", r.label));
            } else {
                notes.push(p);
            }
        }
    }
    for r in &view.runs {
        if let Some(env) = environment(&r.a) {
            if view.runs.len() > 1 {
                notes.push(format!("{}: {env}.", r.label));
            } else {
                notes.push(format!("Environment: {env}."));
            }
        }
    }
    if view.runs.len() > 1 {
        let diffs = super::view::joined_differences(&view.runs);
        if !diffs.is_empty() {
            notes.push(format!("Runs joined over: {}.", diffs.join("; ")));
        }
    }
    for r in &view.runs {
        for n in &r.a.notes {
            notes.push(format!("Warning: {n}."));
        }
    }
    notes.push("Method: see methods.md (methods.tex).".into());
    notes
}

fn lead_notes_for(view: &View, stat: Statistic, bold: BoldRule, delta: bool) -> Vec<String> {
    let Some(a) = view.runs.first().map(|r| &r.a) else {
        return Vec::new();
    };
    let lvl = level_pct(a);
    let what = match stat {
        Statistic::Median => format!(
            "median of the per-rep values [{lvl} CI, order statistic] (pooled tails: the p95 of the calls [{lvl} cluster bootstrap])"
        ),
        Statistic::Mean => format!("mean of the per-rep values [{lvl} t interval]"),
        s => format!("{} of the per-rep values (no interval)", s.as_str()),
    };
    let mut s = format!("Entries: {what}; one rep = one agent run.");
    if delta {
        s.push_str(&format!(
            " Δ%: change vs the reference cell [{lvl} percentile bootstrap]."
        ));
    }
    match bold {
        BoldRule::Significant => s.push_str(&format!(
            " Bold: differs from the reference cell (Holm-adjusted p < {}).",
            a.options.alpha
        )),
        BoldRule::Best => s.push_str(" Bold: the best value of its column."),
        BoldRule::None => {}
    }
    vec![s]
}

// ---------------------------------------------------------------------------------------
// The default set
// ---------------------------------------------------------------------------------------

/// Name suffix of a table over pair cells.
fn kind_suffix(pair: bool) -> &'static str {
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
fn sections<'a>(
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

fn section_label(group_by: &[String], key: &[String]) -> String {
    group_by
        .iter()
        .zip(key)
        .map(|(g, v)| format!("{g}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn with_section(title: String, group_by: &[String], key: &[String]) -> String {
    if group_by.is_empty() {
        title
    } else {
        format!("{title} — {}", section_label(group_by, key))
    }
}

fn label_of(name: &str, group_by: &[String], key: &[String]) -> String {
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

fn metric_table(
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
    let mut notes = lead_notes_for(view, Statistic::Median, BoldRule::Significant, true);
    notes.push(format!(
        "Unit: the repetition; {}. n: complete reps (a rep missing a stage's call is left out of \
         this metric); mean ± sd of the per-rep values; p: {} vs the reference cell, Holm over \
         cells; ~ not significant.{}",
        m.estimand(),
        test_name(a, m),
        if m.scales_with_output_tokens() {
            format!(
                " ≠ workload: the cell's median output length differs from its reference's by \
                 more than {:.0}%, so this duration of the whole generation is not judged (a \
                 throughput is).",
                crate::gate::WORKLOAD_TOLERANCE * 100.0
            )
        } else {
            String::new()
        }
    ));
    notes.extend(common_notes(view, entries, &t));
    t.notes = notes;
    t
}

fn test_name(a: &Analysis, m: Metric) -> String {
    a.comparisons
        .iter()
        .find(|c| c.metric == m)
        .and_then(|c| c.result.test.as_ref().map(|t| t.name.clone()))
        .unwrap_or_else(|| {
            if m.is_pooled() {
                "cluster bootstrap".into()
            } else {
                "Welch t on ln(rep values)".into()
            }
        })
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

// ---------------------------------------------------------------------------------------
// Declared tables
// ---------------------------------------------------------------------------------------

/// The cells a `[[table]]` covers: its arms, else the single-agent cells (the pair cells
/// when there are no others).
fn declared_entries<'a>(view: &'a View, spec: &TableSpec) -> Vec<Entry<'a>> {
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

fn build_declared(view: &View, entries: &[Entry], spec: &TableSpec, group_by: &[String]) -> Table {
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
            let mut keys: Vec<Vec<super::view::AxisValue>> = Vec::new();
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
    let mut notes = lead_notes_for(view, spec.statistic, spec.bold, spec.delta);
    let estimands: Vec<String> = spec.metrics.iter().map(|m| m.estimand()).collect();
    notes.push(format!(
        "Unit: the repetition; {} (a rep missing a stage's call is left out of that metric).",
        estimands.join("; ")
    ));
    if matches!(spec.columns, Columns::Axis(_)) {
        notes.push("–: no such cell in the grid; (ref): a reference cell.".into());
    }
    notes.extend(common_notes(view, entries, &t));
    t.notes = notes;
    t
}

fn delta_cell(e: &Entry, m: Metric, sig: bool) -> Cell {
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
fn bold_best(t: &mut Table, spec: &TableSpec, first: usize) {
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

// ---------------------------------------------------------------------------------------
// Pair tables
// ---------------------------------------------------------------------------------------

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
    let mut notes = vec![format!(
        "Per rep: speedup = sequential phase wall / concurrent phase wall; efficiency = speedup / 2; \
         contention = median concurrent e2e / median sequential e2e of the agent (> 1: slowed by sharing). \
         Entries: median [{lvl} CI, order statistic]."
    )];
    notes.extend(common_notes(view, &entries, &t));
    t.notes = notes;
    Some(t)
}

/// The prompt versions and what happened to each persona (sent as the system prompt, or
/// only shown in the reports: `persona_mode = "echo"`), from the run's manifest.
fn prompts_note(a: &Analysis) -> Option<String> {
    let m = a.manifest.as_ref()?;
    if m.prompt_versions.is_empty() && m.personas.is_empty() {
        return None;
    }
    let with = |mode: &str| -> Vec<String> {
        m.personas
            .iter()
            .filter_map(|l| {
                let (who, rest) = l.split_once(' ')?;
                let (persona, md) = rest.split_once(' ')?;
                (md == mode).then(|| format!("{who} {persona}"))
            })
            .collect()
    };
    let mut parts = vec![format!("Prompts: {}", m.prompt_versions.join(", "))];
    let sent = with("system");
    if !sent.is_empty() {
        parts.push(format!(
            "personas sent as the system prompt: {}",
            sent.join(", ")
        ));
    }
    let echo = with("echo");
    if !echo.is_empty() {
        parts.push(format!(
            "personas shown in the reports but not sent (persona_mode = \"echo\", as the seed \
             system did): {}",
            echo.join(", ")
        ));
    }
    Some(format!("{}.", parts.join("; ")))
}

/// A one-line environment summary from the run's manifest: host, CPU, GPUs and driver,
/// backend and its version, model digest, commit, sweep version.
pub fn environment(a: &Analysis) -> Option<String> {
    let m = a.manifest.as_ref()?;
    let h = &m.host;
    let mut parts = Vec::new();
    if !h.hostname.is_empty() {
        parts.push(format!("host {}", h.hostname));
    }
    if !h.cpu_model.is_empty() {
        parts.push(format!("CPU {} ({} threads)", h.cpu_model, h.cpu_threads));
    }
    if h.gpus.is_empty() {
        parts.push("no GPU".into());
    } else {
        let g: Vec<String> = h
            .gpus
            .iter()
            .map(|g| format!("{} (driver {})", g.name, g.driver))
            .collect();
        parts.push(format!("GPU {}", g.join(", ")));
    }
    let b = &m.backend;
    if !b.kind.is_empty() {
        parts.push(format!(
            "backend {}{}",
            b.kind,
            b.version
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default()
        ));
    }
    if let Some(d) = &b.model_digest {
        parts.push(format!("model digest {}", d.get(..19).unwrap_or(d)));
    }
    if let Some(c) = &m.git_commit {
        parts.push(format!("commit {}", c.get(..12).unwrap_or(c)));
    }
    if !m.sweep_version.is_empty() {
        parts.push(format!("sweep {}", m.sweep_version));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The num_gpu table: per cell, what `num_gpu` asked, where the model really sat (share in
/// VRAM, VRAM bytes, layers offloaded, from what the server said after each reload), and
/// what it bought (decode tok/s, GPU energy per output token). `None` when no cell sets
/// `num_gpu` and no reload probe recorded a placement. Single-agent cells only (a pair's
/// members can differ).
pub fn num_gpu_table(
    a: &Analysis,
    placements: &[crate::telemetry::CellPlacement],
) -> Option<Table> {
    let place = |id: &str| {
        placements
            .iter()
            .find(|p| p.cell_id == id && p.agent == "single")
    };
    let mut cells: Vec<&CellAnalysis> = a
        .cells
        .iter()
        .filter(|c| !c.factors.keys().any(|k| k.contains('.')))
        .filter(|c| c.factors.contains_key("num_gpu") || place(&c.cell_id).is_some())
        .collect();
    if cells.is_empty() {
        return None;
    }
    let ng = |c: &CellAnalysis| c.factors.get("num_gpu").and_then(|v| v.parse::<f64>().ok());
    cells.sort_by(|x, y| {
        (x.arm.as_str(), ng(x).unwrap_or(-1.0))
            .partial_cmp(&(y.arm.as_str(), ng(y).unwrap_or(-1.0)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut others: Vec<String> = cells
        .iter()
        .flat_map(|c| c.factors.keys().cloned())
        .filter(|f| f != "num_gpu")
        .collect();
    others.sort();
    others.dedup();
    let lvl = level_pct(a);
    let mut columns = vec![Column::text("arm"), Column::text("num_gpu")];
    columns.extend(others.iter().map(Column::text));
    columns.extend([
        Column::text("in VRAM"),
        Column::text("VRAM (GiB)"),
        Column::text("layers on GPU"),
        Column::number(format!("decode tok/s [{lvl} CI]"), 1, CiStyle::Brackets),
        Column::number(format!("J/token [{lvl} CI]"), 3, CiStyle::Brackets),
    ]);
    let rows = cells
        .iter()
        .map(|c| {
            let p = place(&c.cell_id);
            let mut row = vec![
                Cell::text(c.arm.clone()),
                Cell::text(
                    c.factors
                        .get("num_gpu")
                        .cloned()
                        .unwrap_or_else(|| "unset".into()),
                ),
            ];
            for f in &others {
                row.push(Cell::text(
                    c.factors.get(f).cloned().unwrap_or_else(|| "–".into()),
                ));
            }
            let frac = match p.map(|p| (p.fraction_min, p.fraction_max)) {
                Some((Some(lo), Some(hi))) if hi - lo > 0.005 => {
                    format!("{:.0}–{:.0}%", lo * 100.0, hi * 100.0)
                }
                Some((Some(lo), _)) => format!("{:.0}%", lo * 100.0),
                _ => "n/a".into(),
            };
            row.push(Cell::text(frac));
            row.push(Cell::text(
                p.and_then(|p| p.size_vram)
                    .map(|b| format!("{:.2}", b as f64 / f64::from(1u32 << 30)))
                    .unwrap_or_else(|| "n/a".into()),
            ));
            row.push(Cell::text(
                match p.map(|p| (p.layers_offloaded, p.layers_total)) {
                    Some((Some(o), Some(t))) => format!("{o}/{t}"),
                    Some((None, Some(t))) => format!("?/{t}"),
                    _ => "n/a".into(),
                },
            ));
            for m in [Metric::DecodeTps, Metric::JPerToken] {
                row.push(stat_cell(c.metric(m), Statistic::Median));
            }
            Row {
                cells: row,
                rule_above: false,
            }
        })
        .collect();
    let mut notes = vec![
        "in VRAM: size_vram / size from Ollama's /api/ps after each reload probe (a range when \
         reloads differed), or layers offloaded / layers for the embedded engine; layers on GPU: \
         offloaded / total (the model's blocks + the output layer; total from Ollama's \
         /api/show)."
            .to_string(),
        // (Plain words, no Σ: the LaTeX export passes text through as it is.)
        format!(
            "decode tok/s: per rep the output tokens of its calls over their server eval \
             seconds; J/token: per rep the GPU energy of its calls (each call's share of the \
             GPUs' energy over its own window) over their output tokens, n/a without GPU \
             telemetry (no NVIDIA driver or nvidia-smi). Entries: median over reps [{lvl} CI, \
             order statistic]."
        ),
    ];
    for n in &a.notes {
        notes.push(format!("Warning: {n}."));
    }
    let mut t = Table {
        name: "num_gpu".into(),
        caption: "num_gpu: where the model sat, speed and energy".into(),
        label: "tab:num_gpu".into(),
        columns,
        rows,
        notes: Vec::new(),
    };
    fit_decimals(&mut t, 3);
    t.notes = notes;
    Some(t)
}

/// A managed server's start-up per configuration (vLLM's `bench sweep startup`): starts,
/// spawn → healthy and spawn → first token (median and range over the starts), what the
/// server reported, and any value other than the one asked for. `None` without `[server]`.
pub fn startup_table(events: &[crate::server::ServerEvent]) -> Option<Table> {
    use crate::server::ServerEvent;
    struct Acc {
        starts: usize,
        restarts_after_exit: usize,
        healthy: Vec<f64>,
        first: Vec<f64>,
        version: Option<String>,
        reported: String,
        mismatches: Vec<String>,
    }
    let mut by: BTreeMap<String, Acc> = BTreeMap::new();
    for e in events {
        let ServerEvent::Start {
            config,
            reason,
            healthy_ms,
            first_token_ms,
            reported,
            mismatches,
            ..
        } = e
        else {
            continue;
        };
        let a = by.entry(config.clone()).or_insert(Acc {
            starts: 0,
            restarts_after_exit: 0,
            healthy: Vec::new(),
            first: Vec::new(),
            version: None,
            reported: String::new(),
            mismatches: Vec::new(),
        });
        a.starts += 1;
        if reason.starts_with("restart after exit") {
            a.restarts_after_exit += 1;
        }
        a.healthy.push(*healthy_ms);
        a.first.extend(*first_token_ms);
        a.version = reported.version.clone().or(a.version.take());
        let mut said = Vec::new();
        if let Some(n) = reported.n_ctx {
            said.push(format!("n_ctx {n}"));
        }
        if let Some(n) = reported.slots {
            said.push(format!("slots {n}"));
        }
        if let Some(f) = reported.flash_attn {
            said.push(format!("fa {}", if f { "on" } else { "off" }));
        }
        if let Some(k) = &reported.kv_cache_type {
            said.push(format!("K {k}"));
        }
        a.reported = said.join(", ");
        for m in mismatches {
            if !a.mismatches.contains(m) {
                a.mismatches.push(m.clone());
            }
        }
    }
    if by.is_empty() {
        return None;
    }
    let span = |v: &[f64]| -> String {
        if v.is_empty() {
            return "n/a".into();
        }
        let median = crate::stats::summarize(v)
            .map(|s| s.median)
            .unwrap_or(f64::NAN);
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                (l.min(*x), h.max(*x))
            });
        if v.len() == 1 {
            format!("{median:.0}")
        } else {
            format!("{median:.0} ({lo:.0}–{hi:.0})")
        }
    };
    let columns = vec![
        Column::text("server configuration"),
        Column::text("starts"),
        Column::text("spawn → healthy (ms)"),
        Column::text("spawn → first token (ms)"),
        Column::text("server reports"),
        Column::text("differs from asked"),
    ];
    let mut versions: Vec<String> = by.values().filter_map(|a| a.version.clone()).collect();
    versions.sort();
    versions.dedup();
    let rows = by
        .into_iter()
        .map(|(config, a)| Row {
            cells: vec![
                Cell::text(if config.is_empty() {
                    "defaults".to_string()
                } else {
                    config.replace(',', ", ")
                }),
                Cell::text(if a.restarts_after_exit > 0 {
                    format!("{} ({} after an exit)", a.starts, a.restarts_after_exit)
                } else {
                    a.starts.to_string()
                }),
                Cell::text(span(&a.healthy)),
                Cell::text(span(&a.first)),
                Cell::text(if a.reported.is_empty() {
                    "n/a".to_string()
                } else {
                    a.reported
                }),
                Cell::text(if a.mismatches.is_empty() {
                    "no".to_string()
                } else {
                    a.mismatches.join("; ")
                }),
            ],
            rule_above: false,
        })
        .collect();
    Some(Table {
        name: "server_startup".into(),
        caption: "Server start-up per server configuration".into(),
        label: "tab:server_startup".into(),
        columns,
        rows,
        notes: vec![format!(
            "Entries: median (min–max) over the starts of the run; first token: a one-token \
                 request sent once healthy (it includes the model load where the server loads \
                 lazily). Server reports: its own /props (llama-server), /api/ps (Ollama) or \
                 /v1/models (vLLM) and its log; version {}.",
            if versions.is_empty() {
                "not reported".to_string()
            } else {
                versions.join(", ")
            }
        )],
    })
}
