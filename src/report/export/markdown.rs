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
/// table worst first, then a footer that names the test, the interval actually computed,
/// the Holm family and the gate's false-alarm rate.
pub fn gate(c: &Comparison) -> String {
    let mut s = String::new();
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
        Outcome::Inconclusive { reasons } => {
            s.push_str("**The gate could not decide** (exit 3; `--allow-inconclusive` makes this exit 0):\n\n");
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
            return s;
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
    s.push_str("| cell | metric | baseline | current | Δ% [CI] | p (Holm) | verdict | p (MWU) |\n");
    s.push_str("|---|---|---:|---:|---|---:|---|---:|\n");
    for r in &c.rows {
        let unit = r.metric.unit();
        let val = |v: Option<f64>| match v {
            Some(x) if x.abs() >= 100.0 => format!("{x:.1} {unit}"),
            Some(x) => format!("{x:.2} {unit}"),
            None => "—".into(),
        };
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
        let p = |v: Option<f64>| v.map(fmt_p).unwrap_or_else(|| "—".into());
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            escape::markdown(&r.cell),
            r.metric.name(),
            val(r.result.reference_estimate),
            val(r.result.estimate),
            delta,
            p(r.p_holm),
            escape::markdown(&r.verdict_label()),
            p(r.result.p_mann_whitney)
        );
    }
    s.push('\n');
    let th: Vec<String> = c
        .settings
        .thresholds
        .iter()
        .map(|(k, v)| format!("{k} {:.0}%", v * 100.0))
        .collect();
    let n_range = |f: fn(&crate::gate::Row) -> usize| {
        let v: Vec<usize> = c.rows.iter().map(f).collect();
        match (v.iter().min(), v.iter().max()) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}–{b}"),
            _ => "0".into(),
        }
    };
    let _ = writeln!(
        s,
        "α = {}; thresholds: {} (other metrics are informational and never fail); n per side \
         (complete reps): baseline {}, current {}; a verdict needs ≥ {} reps per side.  ",
        c.settings.alpha,
        if th.is_empty() {
            "none".into()
        } else {
            th.join(", ")
        },
        n_range(|r| r.result.n_reference),
        n_range(|r| r.result.n),
        c.params.min_reps
    );
    let _ = writeln!(
        s,
        "False alarms: Holm runs over the {} gating tests (cells × metrics with a threshold), \
         so identical runs fail this gate in at most α = {} of nights; informational rows form \
         their own Holm family.  ",
        c.gating_tests, c.settings.alpha
    );
    match &c.method {
        Method::TwoRuns => {
            let _ = writeln!(
                s,
                "Test: Welch t on ln(rep values), two-sided (pooled tails: cluster bootstrap, reps \
                 resampled); Mann–Whitney U as a robustness column. Δ = ratio of the estimates \
                 (current / baseline) − 1 with a percentile bootstrap interval, {} ({} resamples, \
                 seed {:#x}; Monte Carlo error of each end in the JSON). Regression = Holm p < α, \
                 the change in the bad direction, and its interval reaching the threshold.  ",
                c.params.interval_label(),
                c.params.resamples,
                c.params.seed
            );
        }
        Method::History { runs } => {
            let _ = writeln!(
                s,
                "History mode: against the last {} runs ({}); baseline = geometric mean of their \
                 per-run estimates. Test: t prediction interval on ln(per-run estimates), K − 1 df, \
                 two-sided; Δ [range] = the current estimate against the {:.0}% prediction \
                 interval.  ",
                runs.len(),
                runs.join(", "),
                (1.0 - c.settings.alpha) * 100.0
            );
        }
    }
    for (label, r) in [("baseline", &c.baseline), ("current", &c.current)] {
        let _ = writeln!(
            s,
            "{label}: {} · digest {} · spec {} · commit {} · {} calls measured; excluded: {}.  ",
            r.environment,
            r.model_digest.as_deref().unwrap_or("unknown"),
            short(&r.spec_hash),
            r.git_commit.as_deref().unwrap_or("unknown"),
            r.counts.measured,
            r.counts.exclusions()
        );
    }
    for n in &c.notes {
        let _ = writeln!(s, "Note: {}  ", escape::markdown(n));
    }
    s
}

/// `sweep power` as Markdown: what each metric can detect at the file's reps, and the reps
/// each threshold needs.
pub fn power(p: &crate::gate::power::PowerReport) -> String {
    let mut s = format!(
        "## sweep power: run `{}`\n\nα = {} (Holm over {} gating tests: each test at α/{} = {:.2e}), power {:.0}%, {} reps per side.\n\n",
        p.run_id,
        p.alpha,
        p.family,
        p.family,
        p.alpha / p.family as f64,
        p.power * 100.0,
        p.reps
    );
    s.push_str("| cell | metric | threshold | stored reps | sd of ln (per rep) | detectable at reps | reps needed |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for r in &p.rows {
        let pct = |v: Option<f64>| {
            v.map(|x| format!("{:.1}%", x * 100.0))
                .unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            escape::markdown(&r.cell),
            r.metric,
            pct(r.threshold),
            r.stored_reps,
            r.sd_log
                .map(|x| format!("{x:.4}"))
                .unwrap_or_else(|| "—".into()),
            pct(r.detectable),
            match (r.reps_needed, &r.note) {
                (Some(n), _) => n.to_string(),
                (None, Some(n)) => escape::markdown(n),
                (None, None) if r.threshold.is_none() => "(info)".into(),
                (None, None) => format!("> {}", crate::gate::power::MAX_REPS),
            }
        );
    }
    s.push('\n');
    match p.recommended_reps {
        Some(n) => {
            let _ = writeln!(
                s,
                "**Recommended: repetitions = {n}** per side: every threshold of [compare] is then detected with ≥ {:.0}% power.",
                p.power * 100.0
            );
        }
        None => s.push_str("No recommendation: some gating row has no spread estimate, or needs more than the maximum reps.\n"),
    }
    s
}
