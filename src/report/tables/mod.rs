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

mod declared;
mod metric;
mod num_gpu;
mod pairs;
mod startup;
mod workload;

pub use declared::declared;
pub use metric::{metric_tables, pivot_tables};
pub use num_gpu::num_gpu_table;
pub use pairs::pair_table;
pub use startup::startup_table;
pub use workload::{capacity_table, workload_table};
#[allow(unused_imports)]
use {declared::*, metric::*};

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

/// The last note line of every table (a journal prints at most two): the dagger where the
/// table shows one, what this table's cells lost to the exclusion rules, and where the rest
/// is. Everything the run's tables share (unit and estimand, reference, token source,
/// prompts, environment, warnings, method) is written once in `methods.md|tex`.
pub(super) fn tail_note(entries: &[Entry], t: &Table) -> String {
    let mut s = String::new();
    let marked = t.rows.iter().any(|r| r.cells.iter().any(|c| c.default))
        || t.caption.contains(super::table::DEFAULT_MARK);
    if marked {
        s.push_str(&format!(
            "{} not set in the experiment file. ",
            super::table::DEFAULT_MARK
        ));
    }
    s.push_str(&format!(
        "Excluded: {}. See Methods (methods.md, methods.tex).",
        compact_exclusions(entries)
    ));
    s
}

/// The calls of `entries` that the exclusion rules left out, nonzero reasons only
/// ("26 warm-up, 2 cold (load_ms 2) calls"; "no call").
pub(super) fn compact_exclusions(entries: &[Entry]) -> String {
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
    let mut parts = Vec::new();
    if warm > 0 {
        parts.push(format!("{warm} warm-up"));
    }
    if cold > 0 {
        let reasons: Vec<String> = by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if reasons.is_empty() {
            parts.push(format!("{cold} cold"));
        } else {
            parts.push(format!("{cold} cold ({})", reasons.join(", ")));
        }
    }
    if failed > 0 {
        parts.push(format!("{failed} failed"));
    }
    if parts.is_empty() {
        "no call".into()
    } else {
        format!("{} calls", parts.join(", "))
    }
}

/// The first note line: what an entry is, in a few words (the method text says how each
/// interval and test is computed).
fn entry_note(view: &View, stat: Statistic, bold: BoldRule, delta: bool) -> String {
    let Some(a) = view.runs.first().map(|r| &r.a) else {
        return String::new();
    };
    let lvl = level_pct(a);
    let mut s = match stat {
        Statistic::Median => format!("Median of per-rep values [{lvl} CI]"),
        Statistic::Mean => format!("Mean of per-rep values [{lvl} CI]"),
        s => format!("{} of per-rep values", s.as_str()),
    };
    if delta {
        s.push_str(&format!("; Δ% vs the reference cell [{lvl} CI]"));
    }
    match bold {
        BoldRule::Significant => s.push_str(&format!("; bold: Holm p < {}", a.options.alpha)),
        BoldRule::Best => s.push_str("; bold: best of its column"),
        BoldRule::None => {}
    }
    s
}
