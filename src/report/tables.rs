//! benchstat-like tables built from the tidy frame: one row per cell, factor columns,
//! `median [CI]`, `mean ± sd`, `Δ% [CI]`, adjusted p and a verdict (`~` when not
//! significant, `(ref)` on the reference), a geomean row and a footer. One `Table`
//! renders to Markdown, LaTeX (booktabs), CSV and JSON.

use super::escape;
use crate::analysis::{csv_field, Analysis, CellAnalysis, Metric, TidyRow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// One table cell: `text` is plain (escaped per format on output); `math` cells carry
/// a ± that LaTeX renders as `\pm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableCell {
    pub text: String,
    /// Significant (bold in Markdown and LaTeX).
    pub bold: bool,
}

impl TableCell {
    fn plain(s: impl Into<String>) -> Self {
        Self {
            text: s.into(),
            bold: false,
        }
    }
}

/// A rendered table, format-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<TableCell>>,
    pub footer: Vec<String>,
}

/// Number with about four significant digits, no exponent for the usual magnitudes.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "n/a".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

fn pct(v: f64) -> String {
    format!("{v:+.1}")
}

fn pval(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Lookup over the tidy rows: (cell, metric, statistic) → (value, note).
struct Tidy<'a>(HashMap<(&'a str, &'a str, &'a str), (&'a Option<f64>, &'a str)>);

impl<'a> Tidy<'a> {
    fn new(rows: &'a [TidyRow]) -> Self {
        Self(
            rows.iter()
                .map(|r| {
                    (
                        (r.cell_id.as_str(), r.metric.as_str(), r.statistic.as_str()),
                        (&r.value, r.note.as_str()),
                    )
                })
                .collect(),
        )
    }
    fn v(&self, cell: &str, metric: &str, stat: &str) -> Option<f64> {
        self.0.get(&(cell, metric, stat)).and_then(|(v, _)| **v)
    }
    fn note(&self, cell: &str, metric: &str, stat: &str) -> &str {
        self.0
            .get(&(cell, metric, stat))
            .map(|(_, n)| *n)
            .unwrap_or("")
    }
}

/// Short form of an "unavailable" reason for a table cell: "need ≥ 6".
fn short_reason(note: &str) -> String {
    match note.find("need ≥") {
        Some(i) => note[i..]
            .split(" values")
            .next()
            .unwrap_or("n/a")
            .to_string(),
        None if note.is_empty() => "n/a".into(),
        None => note.to_string(),
    }
}

/// Factor value of a cell for an axis (`arm` is an axis too).
fn axis_value(c: &CellAnalysis, axis: &str) -> String {
    if axis == "arm" {
        c.arm.clone()
    } else {
        c.factors.get(axis).cloned().unwrap_or_else(|| "–".into())
    }
}

/// Every factor name of the run's cells, sorted (the axes besides `arm`).
pub fn factor_names(a: &Analysis) -> Vec<String> {
    let mut names: Vec<String> = a
        .cells
        .iter()
        .flat_map(|c| c.factors.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Cells by their `group_by` axis values (run order kept inside a group).
fn group_cells<'a>(
    a: &'a Analysis,
    group_by: &[String],
) -> BTreeMap<Vec<String>, Vec<&'a CellAnalysis>> {
    let mut groups: BTreeMap<Vec<String>, Vec<&CellAnalysis>> = BTreeMap::new();
    for c in &a.cells {
        let key = group_by.iter().map(|g| axis_value(c, g)).collect();
        groups.entry(key).or_default().push(c);
    }
    groups
}

/// `median [lo, hi]` of a cell's metric, or the reason there is no interval.
fn median_with_ci(tidy: &Tidy, id: &str, name: &str) -> Option<(f64, String)> {
    let ci = match (
        tidy.v(id, name, "median_ci_lo"),
        tidy.v(id, name, "median_ci_hi"),
    ) {
        (Some(lo), Some(hi)) => format!("[{}, {}]", num(lo), num(hi)),
        _ => format!("[{}]", short_reason(tidy.note(id, name, "median_ci_lo"))),
    };
    tidy.v(id, name, "median")
        .map(|md| (md, format!("{} {ci}", num(md))))
}

/// A table title with its `group_by` section: `TTFT (ms) — arm=chimera`.
fn section_title(mut title: String, group_by: &[String], key: &[String]) -> String {
    if !group_by.is_empty() {
        let parts: Vec<String> = group_by
            .iter()
            .zip(key)
            .map(|(g, v)| format!("{g}={v}"))
            .collect();
        let _ = write!(title, " — {}", parts.join(", "));
    }
    title
}

/// One table per metric and per combination of `group_by` axis values.
pub fn metric_tables(a: &Analysis, metrics: &[Metric], group_by: &[String]) -> Vec<Table> {
    let tidy_rows = a.tidy();
    let tidy = Tidy::new(&tidy_rows);
    let mut factor_names = factor_names(a);
    factor_names.retain(|f| !group_by.contains(f));
    let show_arm = !group_by.iter().any(|g| g == "arm");
    let groups = group_cells(a, group_by);

    let mut out = Vec::new();
    for &m in metrics {
        let name = m.name();
        for (key, cells) in &groups {
            let mut headers = Vec::new();
            if show_arm {
                headers.push("arm".to_string());
            }
            headers.extend(factor_names.iter().cloned());
            let lvl = (a.options.level * 100.0).round();
            headers.extend([
                "n".to_string(),
                format!("median [{lvl}% CI]"),
                "mean ± sd".to_string(),
                format!("Δ% [{lvl}% CI]"),
                "p (Holm)".to_string(),
                "verdict".to_string(),
            ]);
            let mut rows = Vec::new();
            let (mut log_med, mut n_med) = (0.0, 0usize);
            let (mut log_ratio, mut n_ratio) = (0.0, 0usize);
            for c in cells {
                let id = c.cell_id.as_str();
                let mut row = Vec::new();
                if show_arm {
                    row.push(TableCell::plain(&c.arm));
                }
                for f in &factor_names {
                    row.push(TableCell::plain(
                        c.factors.get(f).cloned().unwrap_or_else(|| "–".into()),
                    ));
                }
                let n = tidy.v(id, name, "n").unwrap_or(0.0);
                row.push(TableCell::plain(format!("{n:.0}")));
                let median = median_with_ci(&tidy, id, name);
                if let Some((md, _)) = median.as_ref().filter(|(v, _)| *v > 0.0) {
                    log_med += md.ln();
                    n_med += 1;
                }
                row.push(TableCell::plain(match median {
                    Some((_, text)) => text,
                    None => "n/a".into(),
                }));
                row.push(TableCell::plain(
                    match (tidy.v(id, name, "mean"), tidy.v(id, name, "sd")) {
                        (Some(mu), Some(sd)) => format!("{} ± {}", num(mu), num(sd)),
                        (Some(mu), None) => num(mu),
                        _ => "n/a".into(),
                    },
                ));
                let verdict = tidy.note(id, name, "verdict").to_string();
                let significant = verdict == "better" || verdict == "worse";
                if c.is_reference {
                    row.push(TableCell::plain("(ref)"));
                    row.push(TableCell::plain(""));
                    row.push(TableCell::plain("(ref)"));
                } else {
                    let delta = match (
                        tidy.v(id, name, "delta_pct"),
                        tidy.v(id, name, "delta_pct_lo"),
                        tidy.v(id, name, "delta_pct_hi"),
                    ) {
                        (Some(d), Some(lo), Some(hi)) => {
                            log_ratio += (1.0 + d / 100.0).ln();
                            n_ratio += 1;
                            format!("{}% [{}, {}]", pct(d), pct(lo), pct(hi))
                        }
                        _ => short_reason(tidy.note(id, name, "delta_pct")),
                    };
                    row.push(TableCell {
                        text: delta,
                        bold: significant,
                    });
                    row.push(TableCell {
                        text: tidy
                            .v(id, name, "p_holm")
                            .map(pval)
                            .unwrap_or_else(|| short_reason(tidy.note(id, name, "p_mwu"))),
                        bold: significant,
                    });
                    row.push(TableCell {
                        text: verdict,
                        bold: significant,
                    });
                }
                rows.push(row);
            }
            // Geomean row: geometric mean of the medians and of the median ratios.
            let prefix = headers.len() - 6;
            let mut geo = vec![TableCell::plain(""); prefix + 1];
            geo[0] = TableCell::plain("geomean");
            geo.push(TableCell::plain(if n_med > 0 {
                num((log_med / n_med as f64).exp())
            } else {
                "n/a".into()
            }));
            geo.push(TableCell::plain(""));
            geo.push(TableCell::plain(if n_ratio > 0 {
                format!(
                    "{}%",
                    pct(((log_ratio / n_ratio as f64).exp() - 1.0) * 100.0)
                )
            } else {
                "".into()
            }));
            geo.push(TableCell::plain(""));
            geo.push(TableCell::plain(""));
            rows.push(geo);

            out.push(Table {
                title: section_title(m.label().to_string(), group_by, key),
                headers,
                rows,
                footer: footer(a, m, cells),
            });
        }
    }
    out
}

/// Axis values in a readable order: numbers numerically, then the rest (`–` for "not set")
/// alphabetically.
fn sort_axis_values(values: &mut [String]) {
    values.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    });
}

/// The paper layout: one table per metric (and `group_by` section) with the values of
/// `columns` (an axis such as `num_gpu`) spread across the columns and the other factors down
/// the rows. Each entry is `median [CI]`, bold when the cell differs significantly from its
/// reference, `(ref)` on reference cells, `–` where the grid has no such cell.
pub fn pivot_tables(
    a: &Analysis,
    metrics: &[Metric],
    columns: &str,
    group_by: &[String],
) -> Vec<Table> {
    let tidy_rows = a.tidy();
    let tidy = Tidy::new(&tidy_rows);
    let mut factor_names = factor_names(a);
    factor_names.retain(|f| !group_by.contains(f) && f != columns);
    let show_arm = columns != "arm" && !group_by.iter().any(|g| g == "arm");
    let groups = group_cells(a, group_by);
    let lvl = (a.options.level * 100.0).round();
    let mut out = Vec::new();
    for &m in metrics {
        let name = m.name();
        for (key, cells) in &groups {
            let mut col_values: Vec<String> =
                cells.iter().map(|c| axis_value(c, columns)).collect();
            sort_axis_values(&mut col_values);
            col_values.dedup();
            // Rows: distinct (arm, other factors) in run order of their first cell.
            let row_key = |c: &CellAnalysis| -> Vec<String> {
                let mut k = Vec::new();
                if show_arm {
                    k.push(c.arm.clone());
                }
                k.extend(factor_names.iter().map(|f| axis_value(c, f)));
                k
            };
            let mut row_keys: Vec<Vec<String>> = Vec::new();
            let mut entries: HashMap<(Vec<String>, String), &CellAnalysis> = HashMap::new();
            for c in cells {
                let k = row_key(c);
                if !row_keys.contains(&k) {
                    row_keys.push(k.clone());
                }
                entries.entry((k, axis_value(c, columns))).or_insert(c);
            }
            let mut headers = Vec::new();
            if show_arm {
                headers.push("arm".to_string());
            }
            headers.extend(factor_names.iter().cloned());
            headers.extend(col_values.iter().map(|v| format!("{columns}={v}")));
            let mut rows = Vec::new();
            for k in &row_keys {
                let mut row: Vec<TableCell> = k.iter().map(TableCell::plain).collect();
                for v in &col_values {
                    let Some(c) = entries.get(&(k.clone(), v.clone())) else {
                        row.push(TableCell::plain("–"));
                        continue;
                    };
                    let id = c.cell_id.as_str();
                    let mut text = match median_with_ci(&tidy, id, name) {
                        Some((_, text)) => text,
                        None => "n/a".into(),
                    };
                    let verdict = tidy.note(id, name, "verdict");
                    if c.is_reference {
                        text.push_str(" (ref)");
                    }
                    row.push(TableCell {
                        text,
                        bold: verdict == "better" || verdict == "worse",
                    });
                }
                rows.push(row);
            }
            let title = section_title(format!("{} by {columns}", m.label()), group_by, key);
            let mut foot = vec![format!(
                "Entries: median [{lvl}% CI] of the per-rep values; bold = significantly \
                 different from the cell's reference (verdict better/worse)."
            )];
            foot.extend(footer(a, m, cells));
            out.push(Table {
                title,
                headers,
                rows,
                footer: foot,
            });
        }
    }
    out
}

/// Speedup / efficiency / contention of pair cells.
pub fn pair_table(a: &Analysis) -> Option<Table> {
    if a.pairs.is_empty() {
        return None;
    }
    let tidy_rows = a.tidy();
    let tidy = Tidy::new(&tidy_rows);
    let mut agents: Vec<String> = a
        .pairs
        .iter()
        .flat_map(|p| p.contention.keys().cloned())
        .collect();
    agents.sort();
    agents.dedup();
    let lvl = (a.options.level * 100.0).round();
    let mut headers = vec![
        "cell".to_string(),
        "n".to_string(),
        format!("speedup [{lvl}% CI]"),
        format!("efficiency [{lvl}% CI]"),
    ];
    for ag in &agents {
        headers.push(format!("contention {ag} [{lvl}% CI]"));
    }
    let med = |cell: &str, metric: &str| -> String {
        match tidy.v(cell, metric, "median") {
            None => "n/a".into(),
            Some(md) => {
                let ci = match (
                    tidy.v(cell, metric, "median_ci_lo"),
                    tidy.v(cell, metric, "median_ci_hi"),
                ) {
                    (Some(lo), Some(hi)) => format!("[{:.2}, {:.2}]", lo, hi),
                    _ => format!(
                        "[{}]",
                        short_reason(tidy.note(cell, metric, "median_ci_lo"))
                    ),
                };
                format!("{md:.2} {ci}")
            }
        }
    };
    let rows = a
        .pairs
        .iter()
        .map(|p| {
            let c = a.cell(&p.cell_id);
            let mut row = vec![
                TableCell::plain(c.map(|c| c.factor_label()).unwrap_or_default()),
                TableCell::plain(
                    tidy.v(&p.cell_id, "speedup", "n")
                        .map(|n| format!("{n:.0}"))
                        .unwrap_or_default(),
                ),
                TableCell::plain(med(&p.cell_id, "speedup")),
                TableCell::plain(med(&p.cell_id, "efficiency")),
            ];
            for ag in &agents {
                row.push(TableCell::plain(med(
                    &p.cell_id,
                    &format!("contention_{ag}"),
                )));
            }
            row
        })
        .collect();
    Some(Table {
        title: "Pair runs: speedup = sequential / concurrent wall time".into(),
        headers,
        rows,
        footer: vec![
            "Per rep: speedup = sequential phase wall / concurrent phase wall; efficiency = \
             speedup / 2; contention = median concurrent e2e / median sequential e2e of \
             the same agent (> 1: slowed by sharing). CI: order statistic for the median."
                .into(),
        ],
    })
}

fn footer(a: &Analysis, m: Metric, cells: &[&CellAnalysis]) -> Vec<String> {
    let o = &a.options;
    let ns: Vec<u32> = cells.iter().map(|c| c.counts.reps).collect();
    let (lo, hi) = (
        ns.iter().min().copied().unwrap_or(0),
        ns.iter().max().copied().unwrap_or(0),
    );
    let sum = |f: fn(&CellAnalysis) -> u32| cells.iter().map(|c| f(c)).sum::<u32>();
    let direction = match m.higher_is_better() {
        Some(true) => "higher is better",
        Some(false) => "lower is better",
        None => "no better side (verdict always ~)",
    };
    let mut f = vec![
        format!(
            "Unit: the repetition (n = reps per cell, {lo}–{hi}); rep value = {}; {direction}.",
            if matches!(m, Metric::DecodeTps | Metric::E2eTps) {
                "Σ tokens / Σ seconds over the rep's calls"
            } else {
                "median of the rep's calls"
            }
        ),
        format!(
            "Test: two-sided Mann–Whitney U vs the reference cell, Holm-adjusted across cells \
             (BH in the tidy CSV); α = {}; `~` = not significant. Δ% of medians with a \
             percentile bootstrap CI ({} resamples, seed {}); median CI by order statistics.",
            o.alpha, o.bootstrap_resamples, o.seed
        ),
        format!(
            "Excluded by rule and counted: {} warm-up, {} cold, {} failed calls.",
            sum(|c| c.counts.warmup),
            sum(|c| c.counts.cold),
            sum(|c| c.counts.failed)
        ),
        format!("Reference: {}.", a.reference_rule),
    ];
    if let Some(env) = environment(a) {
        f.push(format!("Environment: {env}."));
    }
    f
}

/// A one-line environment summary from the manifest, if any.
pub fn environment(a: &Analysis) -> Option<String> {
    let m = a.manifest.as_ref()?;
    fn find<'v>(v: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
        match v {
            serde_json::Value::Object(o) => o
                .get(key)
                .filter(|x| !x.is_object() && !x.is_array() && !x.is_null())
                .or_else(|| o.values().find_map(|x| find(x, key))),
            _ => None,
        }
    }
    let parts: Vec<String> = [
        "host",
        "cpu",
        "gpu",
        "driver",
        "backend_version",
        "model",
        "model_digest",
        "git_commit",
        "sweep_version",
    ]
    .iter()
    .filter_map(|k| {
        find(m, k).map(|v| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
    })
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// GitHub-flavoured Markdown.
pub fn to_markdown(t: &Table) -> String {
    let mut s = format!("### {}\n\n", escape::markdown(&t.title));
    let head: Vec<String> = t.headers.iter().map(|h| escape::markdown(h)).collect();
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(t.headers.len()));
    for r in &t.rows {
        let cells: Vec<String> = r
            .iter()
            .map(|c| {
                let e = escape::markdown(&c.text);
                if c.bold && !e.is_empty() {
                    format!("**{e}**")
                } else {
                    e
                }
            })
            .collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    s.push('\n');
    for f in &t.footer {
        let _ = writeln!(s, "> {}  ", escape::markdown(f));
    }
    s
}

/// A LaTeX cell: escaped text, `±` as `$\pm$`, `Δ` as `$\Delta$`, bold when significant.
fn latex_cell(text: &str, bold: bool) -> String {
    if text == "~" {
        return "$\\sim$".into();
    }
    let e = escape::latex(text)
        .replace('±', "$\\pm$")
        .replace('Δ', "$\\Delta$")
        .replace('≥', "$\\geq$")
        .replace('–', "--")
        .replace('—', "---")
        .replace('α', "$\\alpha$")
        .replace('Σ', "$\\Sigma$");
    if bold && !e.is_empty() {
        format!("\\textbf{{{e}}}")
    } else {
        e
    }
}

/// A booktabs `table` environment (needs `\usepackage{booktabs}`).
pub fn to_latex(t: &Table) -> String {
    let mut s = String::from("\\begin{table}[htbp]\n\\centering\n\\footnotesize\n");
    let _ = writeln!(s, "\\caption{{{}}}", latex_cell(&t.title, false));
    let _ = writeln!(s, "\\begin{{tabular}}{{{}}}", "l".repeat(t.headers.len()));
    s.push_str("\\toprule\n");
    let head: Vec<String> = t.headers.iter().map(|h| latex_cell(h, false)).collect();
    let _ = writeln!(s, "{} \\\\", head.join(" & "));
    s.push_str("\\midrule\n");
    for (i, r) in t.rows.iter().enumerate() {
        if i + 1 == t.rows.len() && r.first().is_some_and(|c| c.text == "geomean") {
            s.push_str("\\midrule\n");
        }
        let cells: Vec<String> = r.iter().map(|c| latex_cell(&c.text, c.bold)).collect();
        let _ = writeln!(s, "{} \\\\", cells.join(" & "));
    }
    s.push_str("\\bottomrule\n\\end{tabular}\n");
    for f in &t.footer {
        let _ = writeln!(
            s,
            "\\par\\smallskip\\parbox{{\\linewidth}}{{\\scriptsize {}}}",
            latex_cell(f, false)
        );
    }
    s.push_str("\\end{table}\n");
    s
}

/// A standalone document with every table (compiles with pdflatex).
pub fn latex_document(tables: &[Table]) -> String {
    let mut s = String::from(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n\
         \\usepackage{booktabs}\n\\usepackage[margin=1.5cm,landscape]{geometry}\n\
         \\begin{document}\n",
    );
    for t in tables {
        s.push_str(&to_latex(t));
    }
    s.push_str("\\end{document}\n");
    s
}

/// CSV: header row, body rows, no footer (the footer is in the JSON and Markdown).
pub fn to_csv(t: &Table) -> String {
    let mut s = String::new();
    let head: Vec<String> = t.headers.iter().map(|h| csv_field(h)).collect();
    let _ = writeln!(s, "{}", head.join(","));
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(|c| csv_field(&c.text)).collect();
        let _ = writeln!(s, "{}", cells.join(","));
    }
    s
}
