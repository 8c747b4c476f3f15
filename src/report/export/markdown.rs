//! Markdown: GitHub-flavoured tables (the analysis' tables and the gate's CI summary).

use super::super::escape;
use super::super::table::Table;
use crate::gate::{Comparison, Method, Outcome};
use std::fmt::Write as _;

/// GitHub-flavoured Markdown: the caption as a heading, number columns right-aligned, the
/// notes as a quoted block.
pub fn table(t: &Table) -> String {
    let mut s = format!("### {}\n\n", escape::markdown(&t.caption));
    let head: Vec<String> = t.headers().iter().map(|h| escape::markdown(h)).collect();
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let align: Vec<&str> = t
        .columns
        .iter()
        .map(|c| if c.is_number() { "---:|" } else { "---|" })
        .collect();
    let _ = writeln!(s, "|{}", align.concat());
    for (r, texts) in t.rows.iter().zip(t.plain_rows()) {
        let cells: Vec<String> = r
            .cells
            .iter()
            .zip(texts)
            .map(|(c, text)| {
                let e = escape::markdown(&text);
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
    for f in &t.notes {
        let _ = writeln!(s, "> {}  ", escape::markdown(f));
    }
    s
}

/// The Markdown exporter: tables, and the gate's CI summary.
pub struct Markdown;

impl super::Exporter for Markdown {
    fn ext(&self) -> &'static str {
        "md"
    }

    fn tables(&self, tables: &[Table]) -> Option<String> {
        Some(tables.iter().map(table).collect::<Vec<_>>().join("\n"))
    }

    fn gate(&self, c: &Comparison) -> Option<String> {
        Some(gate(c))
    }
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// The gate's summary for a CI job: the outcome first, why when it is not a pass, the
/// gating table worst first (each test against its reference), the call shares, level
/// shifts, the informational rows, then a footer that states the rule, the model and the
/// environments.
pub fn gate(c: &Comparison) -> String {
    let mut s = String::new();
    if gate_outcome(&mut s, c) {
        return s;
    }
    gate_rows(&mut s, c);
    gate_shares_and_shifts(&mut s, c);
    gate_informational(&mut s, c);
    gate_footer(&mut s, c);
    s
}

/// A p-value, or a dash.
fn p_or_dash(v: Option<f64>) -> String {
    v.map(fmt_p).unwrap_or_else(|| "—".into())
}

/// A value with its unit (one decimal from 100 up, two below), or a dash.
fn value_with_unit(unit: &str, v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 100.0 => format!("{x:.1} {unit}"),
        Some(x) => format!("{x:.2} {unit}"),
        None => "—".into(),
    }
}

/// The headline, the runs, why the gate could not decide or compare, and a changed
/// environment. True when nothing else follows (the runs are not comparable).
fn gate_outcome(s: &mut String, c: &Comparison) -> bool {
    let _ = writeln!(s, "## sweep compare: {}\n", c.headline());
    let _ = writeln!(
        s,
        "baseline `{}` ({}) → current `{}` ({}), experiment `{}`\n",
        c.baseline.run_id,
        c.baseline.dir.display(),
        c.current.run_id,
        c.current.dir.display(),
        c.current.experiment
    );
    match &c.outcome {
        Outcome::Undecided { reasons } => {
            s.push_str("**The gate could not decide** (exit 3; `--allow-undecided` makes this exit 0):\n\n");
            for r in reasons {
                let _ = writeln!(s, "- {}", escape::markdown(r));
            }
            s.push('\n');
        }
        Outcome::NotComparable { differences } => {
            s.push_str("The runs' environments differ (rerun with `--allow-env-change` to compare anyway):\n\n");
            for d in differences {
                let _ = writeln!(
                    s,
                    "- {}: baseline `{}`, current `{}`",
                    d.what, d.baseline, d.current
                );
            }
            return true;
        }
        _ => {}
    }
    if !c.env_differences.is_empty() {
        let _ = writeln!(
            s,
            "> ⚠️ **environment changed** (compared anyway, `--allow-env-change`):"
        );
        for d in &c.env_differences {
            let _ = writeln!(
                s,
                "> - {}: baseline `{}`, current `{}`",
                d.what, d.baseline, d.current
            );
        }
        s.push('\n');
    }
    false
}

/// The gating table, worst first: each test against its reference.
fn gate_rows(s: &mut String, c: &Comparison) {
    let (p, val) = (p_or_dash, value_with_unit);
    let gating: Vec<&crate::gate::Row> = c.rows.iter().filter(|r| r.gates()).collect();
    if !gating.is_empty() {
        s.push_str("| cell | metric | tolerance | against | reference | tonight | Δ% [one-sided bounds] | p regression (Holm) | p pass | verdict |\n");
        s.push_str("|---|---|---:|---|---:|---:|---|---:|---:|---|\n");
        for r in &gating {
            let unit = r.metric.unit();
            let tol = r
                .threshold
                .map(|t| format!("{:.0}%", t * 100.0))
                .unwrap_or_default();
            if r.tests.is_empty() {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | — | {} | {} | — | — | — | {} |",
                    escape::markdown(&r.cell),
                    r.metric.name(),
                    tol,
                    val(unit, r.result.reference_estimate),
                    val(unit, r.result.estimate),
                    escape::markdown(&r.verdict_label())
                );
            }
            for (i, t) in r.tests.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {:+.1}% [{:+.1}, {:+.1}] | {} | {} | {} |",
                    if i == 0 {
                        escape::markdown(&r.cell)
                    } else {
                        "″".into()
                    },
                    if i == 0 { r.metric.name() } else { "″" },
                    if i == 0 { tol.clone() } else { String::new() },
                    t.reference.label(),
                    val(unit, Some(t.reference_level)),
                    val(unit, Some(t.level)),
                    t.change * 100.0,
                    t.lower * 100.0,
                    t.upper * 100.0,
                    p(t.p_regression_holm),
                    fmt_p(t.p_pass),
                    if i == 0 {
                        escape::markdown(&r.verdict_label())
                    } else {
                        String::new()
                    }
                );
            }
        }
        s.push('\n');
    }
}

/// The call shares that matter (failures, reloads), the capacities under the SLO, and the
/// level shifts of the history.
fn gate_shares_and_shifts(s: &mut String, c: &Comparison) {
    let notable: Vec<&crate::gate::ShareRow> = c
        .shares
        .iter()
        .filter(|x| x.fails || x.current.0 > 0 || x.reference.0 > 0)
        .collect();
    if !notable.is_empty() {
        s.push_str(
            "| cell | calls | tonight | reference | limit | p (Fisher, one-sided) | verdict |\n",
        );
        s.push_str("|---|---|---:|---:|---:|---:|---|\n");
        for x in notable {
            let _ = writeln!(
                s,
                "| {} | {} | {}/{} ({:.1}%) | {}/{} ({:.1}%) | {:.0}% | {} | {} |",
                escape::markdown(&x.cell),
                x.kind.label(),
                x.current.0,
                x.current.1,
                x.share() * 100.0,
                x.reference.0,
                x.reference.1,
                x.reference_share() * 100.0,
                x.limit * 100.0,
                fmt_p(x.p),
                if x.fails { "❌ regression" } else { "ok" }
            );
        }
        s.push('\n');
    }
    if !c.capacity.is_empty() {
        s.push_str("| configuration | capacity under the SLO | verdict |\n|---|---|---|\n");
        for x in &c.capacity {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                escape::markdown(&x.configuration),
                escape::markdown(&x.to_string()),
                if x.fails {
                    "❌ regression"
                } else if x.untested() {
                    "⚠️ untested"
                } else {
                    "ok"
                }
            );
        }
        s.push('\n');
    }
    for sh in &c.shifts {
        let _ = writeln!(
            s,
            "Level shift: {} {} {:+.1}% from night `{}` on{}.  ",
            escape::markdown(&sh.cell),
            sh.metric.name(),
            sh.change * 100.0,
            escape::markdown(&sh.night),
            if sh.worse {
                ""
            } else {
                " (better: `sweep baseline anchor` makes it the level later nights are held to)"
            }
        );
    }
    if !c.shifts.is_empty() {
        s.push('\n');
    }
}

/// The informational rows (never fail the job).
fn gate_informational(s: &mut String, c: &Comparison) {
    let (p, val) = (p_or_dash, value_with_unit);
    let info: Vec<&crate::gate::Row> = c.rows.iter().filter(|r| !r.gates()).collect();
    if !info.is_empty() {
        s.push_str("Informational (never fail the job; against the newest baseline night):\n\n");
        s.push_str(
            "| cell | metric | baseline | current | Δ% [CI] | p (Holm) | verdict | p (MWU) |\n",
        );
        s.push_str("|---|---|---:|---:|---|---:|---|---:|\n");
        for r in info {
            let unit = r.metric.unit();
            let delta = match (r.result.change, &r.result.ci) {
                (Some(ch), Some(ci)) => format!(
                    "{:+.1}% [{:+.1}, {:+.1}]",
                    ch * 100.0,
                    ci.lower * 100.0,
                    ci.upper * 100.0
                ),
                (Some(ch), None) => format!("{:+.1}% [no CI]", ch * 100.0),
                _ => "—".into(),
            };
            let mut verdict = r.verdict_label();
            if r.verdict == crate::gate::Verdict::NotComparable {
                if let Some(w) = &r.why {
                    verdict = format!("{verdict}: {w}");
                }
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                escape::markdown(&r.cell),
                r.metric.name(),
                val(unit, r.result.reference_estimate),
                val(unit, r.result.estimate),
                delta,
                p(r.p_holm),
                escape::markdown(&verdict),
                p(r.result.p_mann_whitney)
            );
        }
        s.push('\n');
    }
}

/// The rule, the model, the environments and the notes.
fn gate_footer(s: &mut String, c: &Comparison) {
    let th: Vec<String> = c
        .settings
        .thresholds
        .iter()
        .map(|(k, v)| format!("{k} {:.0}%", v * 100.0))
        .collect();
    let _ = writeln!(
        s,
        "Rule: {} α = {}; tolerances: {}; {} gating tests in the Holm family; a row \
         needs ≥ {} reps a night. Call shares: failed (timeouts included) and cold calls per \
         cell above {:.0}% and higher than the reference's by a one-sided Fisher exact test at \
         α fail the gate.  ",
        crate::gate::RULE,
        c.settings.alpha,
        if th.is_empty() {
            "none".into()
        } else {
            th.join(", ")
        },
        c.gating_tests,
        c.params.min_reps,
        c.settings.max_failed_share * 100.0
    );
    match &c.method {
        Method::TwoRuns => {
            let _ = writeln!(
                s,
                "Model: tonight against one baseline night, Welch t on ln(rep values) (pooled tails: \
                 cluster-bootstrap standard error); Δ = ratio of geometric means − 1 with one-sided \
                 {:.0}% bounds. No between-night variance: see the note below.  ",
                (1.0 - c.settings.alpha) * 100.0
            );
        }
        Method::History {
            runs,
            anchor,
            nights,
        } => {
            let sds: Vec<String> = nights
                .iter()
                .map(|n| match &n.variance {
                    Some(v) => format!(
                        "{} {:.2}% ({} df)",
                        n.metric.name(),
                        v.between_sd() * 100.0,
                        v.df
                    ),
                    None => format!("{} — (too few nights)", n.metric.name()),
                })
                .collect();
            let _ = writeln!(
                s,
                "Model: the night is the unit. Window: {} nights ({} … {}); anchor: {}. \
                 Between-night sd of ln values (residuals about one level per segment and a \
                 trend, pooled over cells): {}. Each row is tested against its recent level \
                 (the nights since its last level shift) and against the anchor; standard \
                 errors carry the between-night variance, Satterthwaite df; Δ = ratio of \
                 geometric means − 1 with one-sided {:.0}% bounds.  ",
                runs.len(),
                runs.first().map(String::as_str).unwrap_or("—"),
                runs.last().map(String::as_str).unwrap_or("—"),
                if anchor.is_empty() {
                    "none".to_string()
                } else {
                    anchor.join(", ")
                },
                if sds.is_empty() {
                    "—".to_string()
                } else {
                    sds.join("; ")
                },
                (1.0 - c.settings.alpha) * 100.0
            );
        }
    }
    for (label, r) in [("baseline", &c.baseline), ("current", &c.current)] {
        let _ = writeln!(
            s,
            "{label}: {} · experiment file {} · {} calls measured; excluded: {}.  ",
            r.environment,
            short(&r.spec_hash),
            r.counts.measured,
            r.counts.exclusions()
        );
    }
    for n in &c.notes {
        let _ = writeln!(s, "Note: {}  ", escape::markdown(n));
    }
}

/// `sweep power` as Markdown: per gating row the reps a night needs (with the range the
/// spread estimates allow), and what each row can detect at the file's reps.
pub fn power(p: &crate::gate::power::PowerReport) -> String {
    let mut s = format!(
        "## sweep power: run `{}`\n\nRule: the gate's (a change of {}× the tolerance shown to exceed it, one-sided) at α = {} over {} gating tests ({} per row: each at α/{} = {:.2e} in Holm's first step), power {:.0}%, {} reference night{} per test.\n\n",
        p.run_id,
        p.detect,
        p.alpha,
        p.family,
        p.tests_per_row,
        p.family,
        p.alpha / p.family as f64,
        p.power * 100.0,
        p.reference_nights,
        if p.reference_nights == 1 { "" } else { "s" }
    );
    if p.history_nights == 0 {
        s.push_str("No history of ≥ 3 nights was given: the between-night variance is taken as 0, so these reps are a lower bound (pass `--history DIR`, or a baseline directory with ≥ 3 nights).\n\n");
    } else {
        let _ = writeln!(
            s,
            "Between-night spread from {} stored nights.\n",
            p.history_nights
        );
    }
    s.push_str("| cell | metric | tolerance | stored reps | sd of ln (per rep) | between-night sd | detectable at reps | reps needed [90% range] |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for r in &p.rows {
        let pct = |v: Option<f64>| {
            v.map(|x| format!("{:.1}%", x * 100.0))
                .unwrap_or_else(|| "—".into())
        };
        let needed = match (r.reps_needed, &r.note) {
            (Some(n), _) => match r.reps_needed_range {
                Some((lo, Some(hi))) => format!("{n} [{lo}, {hi}]"),
                Some((lo, None)) => format!("{n} [{lo}, unreachable]"),
                None => n.to_string(),
            },
            (None, Some(n)) => escape::markdown(n),
            (None, None) if r.threshold.is_none() => "(info)".into(),
            (None, None) => format!("> {}", crate::gate::power::MAX_REPS),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2}% | {} | {} |",
            escape::markdown(&r.cell),
            r.metric,
            pct(r.threshold),
            r.stored_reps,
            r.sd_log
                .map(|x| format!("{x:.4}"))
                .unwrap_or_else(|| "—".into()),
            r.between_sd * 100.0,
            pct(r.detectable),
            needed
        );
    }
    s.push('\n');
    match p.recommended_reps {
        Some(n) => {
            let range = match p.recommended_range {
                Some((lo, Some(hi))) => format!(" (the spreads' 90% intervals allow {lo} to {hi})"),
                Some((lo, None)) => format!(" (the spreads' 90% intervals allow {lo} to unreachable)"),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "**Recommended: repetitions = {n}** per night{range}: every gating row then shows a change of {}× its tolerance with ≥ {:.0}% power.",
                p.detect,
                p.power * 100.0
            );
        }
        None => s.push_str("No recommendation: some gating row has no spread estimate, or no number of reps reaches the power (see its row).\n"),
    }
    s
}
