//! benchstat-like tables built from the tidy frame: one row per cell, factor columns,
//! `median [CI]`, `mean ± sd`, `Δ% [CI]`, adjusted p and a verdict (`~` when not
//! significant, `(ref)` on the reference), a geomean row and a footer. One `Table`
//! renders to Markdown, LaTeX (booktabs), CSV and JSON.

use crate::analysis::{Analysis, CellAnalysis, Metric, TidyRow};
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

/// `value [lo, hi]` of a cell's metric, or the reason there is no interval.
fn median_with_ci(tidy: &Tidy, id: &str, name: &str) -> Option<(f64, String)> {
    let ci = match (
        tidy.v(id, name, "estimate_ci_lo"),
        tidy.v(id, name, "estimate_ci_hi"),
    ) {
        (Some(lo), Some(hi)) => format!("[{}, {}]", num(lo), num(hi)),
        _ => format!("[{}]", short_reason(tidy.note(id, name, "estimate_ci_lo"))),
    };
    tidy.v(id, name, "estimate")
        .map(|md| (md, format!("{} {ci}", num(md))))
}

/// What a metric's value column is called: `median` or `p95`.
fn value_name(m: Metric) -> &'static str {
    if m.is_pooled() {
        "p95"
    } else {
        "median"
    }
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
                format!("{} [{lvl}% CI]", value_name(m)),
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
                let n = tidy.v(id, name, "complete_reps").unwrap_or(0.0);
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
                            .unwrap_or_else(|| short_reason(tidy.note(id, name, "p"))),
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
    let ns: Vec<usize> = cells
        .iter()
        .filter_map(|c| c.metric(m).map(|x| x.n_reps))
        .collect();
    let (lo, hi) = (
        ns.iter().min().copied().unwrap_or(0),
        ns.iter().max().copied().unwrap_or(0),
    );
    let sum = |f: fn(&CellAnalysis) -> u32| cells.iter().map(|c| f(c)).sum::<u32>();
    let incomplete: u32 = cells
        .iter()
        .filter_map(|c| c.metric(m).map(|x| x.incomplete_reps))
        .sum();
    let direction = match m.higher_is_better() {
        Some(true) => "higher is better",
        Some(false) => "lower is better",
        None => "no better side",
    };
    let test = a
        .comparisons
        .iter()
        .find(|c| c.metric == m)
        .and_then(|c| c.result.test.as_ref().map(|t| t.name.clone()))
        .unwrap_or_else(|| {
            if m.is_pooled() {
                "cluster bootstrap".into()
            } else {
                "Welch t on ln(rep values)".into()
            }
        });
    let coverage: Vec<f64> = cells
        .iter()
        .filter_map(|c| c.metric(m)?.estimate_ci.value().map(|i| i.coverage))
        .collect();
    let cov = match (
        coverage.iter().copied().reduce(f64::min),
        coverage.iter().copied().reduce(f64::max),
    ) {
        (Some(a), Some(b)) if (a - b).abs() < 1e-9 => format!("{:.1}%", a * 100.0),
        (Some(a), Some(b)) => format!("{:.1}–{:.1}%", a * 100.0, b * 100.0),
        _ => "n/a".into(),
    };
    let ci_method = if m.is_pooled() {
        format!(
            "value CI: cluster bootstrap percentile interval, reps resampled ({}, {} resamples)",
            a.params.interval_label(),
            a.params.resamples
        )
    } else {
        format!(
            "value CI: distribution-free order-statistic interval for the median, nominal {:.0}%, exact coverage {cov}",
            a.params.level * 100.0
        )
    };
    let total = a.total_counts();
    let mut f = vec![
        format!(
            "Unit: the repetition (complete reps per cell {lo}–{hi}); {}; {direction}.",
            m.estimand()
        ),
        format!(
            "Test: {test} vs the reference cell, Holm-adjusted across cells (BH in the tidy CSV); \
             α = {}; `~` = not significant. Δ% = ratio of the values − 1, {} percentile bootstrap \
             interval ({} resamples, seed {}); {ci_method}.",
            a.options.alpha,
            a.params.interval_label(),
            a.params.resamples,
            a.options.seed
        ),
        format!(
            "Excluded by rule and counted: {} warm-up, {} cold ({}), {} failed calls; {incomplete} \
             incomplete reps (a stage missing) left out of this metric.",
            sum(|c| c.counts.warmup),
            sum(|c| c.counts.cold),
            if total.cold_by_reason.is_empty() {
                "none".to_string()
            } else {
                total
                    .cold_by_reason
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            sum(|c| c.counts.failed)
        ),
        format!("Reference: {}.", a.reference_rule),
    ];
    if m.columns().contains(&"output_tokens") {
        let src: Vec<String> = total
            .tokens_by_source
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        f.push(format!(
            "Token counts of the measured calls from: {}{}.",
            if src.is_empty() {
                "none".to_string()
            } else {
                src.join(", ")
            },
            if total.tokens_by_source.contains_key("chunks") {
                " (chunks: counted content chunks, an approximation)"
            } else {
                ""
            }
        ));
    }
    if let Some(env) = environment(a) {
        f.push(format!("Environment: {env}."));
    }
    if let Some(p) = prompts_note(a) {
        f.push(p);
    }
    for n in &a.notes {
        f.push(format!("Warning: {n}."));
    }
    f
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
    let tidy_rows = a.tidy();
    let tidy = Tidy::new(&tidy_rows);
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
    let mut others = factor_names(a);
    others.retain(|f| f != "num_gpu" && !f.contains('.'));
    let lvl = (a.options.level * 100.0).round();
    let mut headers = vec!["arm".to_string(), "num_gpu".to_string()];
    headers.extend(others.iter().cloned());
    headers.extend([
        "in VRAM".to_string(),
        "VRAM (GiB)".to_string(),
        "layers on GPU".to_string(),
        format!("decode tok/s [{lvl}% CI]"),
        format!("J/token [{lvl}% CI]"),
    ]);
    let rows = cells
        .iter()
        .map(|c| {
            let id = c.cell_id.as_str();
            let p = place(id);
            let mut row = vec![
                TableCell::plain(&c.arm),
                TableCell::plain(
                    c.factors
                        .get("num_gpu")
                        .cloned()
                        .unwrap_or_else(|| "unset".into()),
                ),
            ];
            for f in &others {
                row.push(TableCell::plain(
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
            row.push(TableCell::plain(frac));
            row.push(TableCell::plain(
                p.and_then(|p| p.size_vram)
                    .map(|b| format!("{:.2}", b as f64 / f64::from(1u32 << 30)))
                    .unwrap_or_else(|| "n/a".into()),
            ));
            row.push(TableCell::plain(
                match p.map(|p| (p.layers_offloaded, p.layers_total)) {
                    Some((Some(o), Some(t))) => format!("{o}/{t}"),
                    Some((None, Some(t))) => format!("?/{t}"),
                    _ => "n/a".into(),
                },
            ));
            for m in [Metric::DecodeTps, Metric::JPerToken] {
                row.push(TableCell::plain(
                    median_with_ci(&tidy, id, m.name())
                        .map(|(_, t)| t)
                        .unwrap_or_else(|| "n/a".into()),
                ));
            }
            row
        })
        .collect();
    let mut footer = vec![
        "in VRAM: size_vram / size from Ollama's /api/ps after each reload probe (a range when \
         reloads differed), or layers offloaded / layers for the embedded engine; layers on GPU: \
         offloaded / total (the model's blocks + the output layer; total from Ollama's \
         /api/show)."
            .to_string(),
        // (Plain words, no Σ: the LaTeX export passes text through as it is.)
        "decode tok/s: per rep the output tokens of its calls over their server eval \
         seconds; J/token: per rep the GPU energy of its calls (each call's share of the \
         GPUs' energy over its own window) over their output tokens, n/a without GPU \
         telemetry (no NVIDIA driver or nvidia-smi). Value: the median over reps."
            .to_string(),
    ];
    for n in &a.notes {
        footer.push(format!("Warning: {n}."));
    }
    Some(Table {
        title: "num_gpu: where the model sat, speed and energy".into(),
        headers,
        rows,
        footer,
    })
}
