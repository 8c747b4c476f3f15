//! `methods.md` / `methods.tex`: the method text a paper cites once instead of repeating it
//! under every table (the tables keep a few short notes). Everything here is read from the
//! analysis (the test actually used, the interval actually computed, seeds, exclusions),
//! never written from memory.

use super::escape;
use super::view::View;
use crate::analysis::Metric;

/// The method paragraphs, plain text (Markdown-safe apart from the escaping done by the
/// caller).
pub fn paragraphs(view: &View, metrics: &[Metric]) -> Vec<(String, String)> {
    let Some(a) = view.runs.first().map(|r| &r.a) else {
        return Vec::new();
    };
    let lvl = a.params.level * 100.0;
    let mut out = Vec::new();
    out.push((
        "Unit and exclusions".to_string(),
        "The statistical unit is the repetition (one agent run: an analysis call and a report \
         call). A rep counts for a metric only when every one of its calls was measured: warm-up \
         calls are always excluded; cold calls (a reload the runner caused, one the server \
         reported, or a server load time above the experiment's cold_load_ms), failed calls and \
         calls superseded by a retry are excluded and counted by reason in each table's notes. \
         Outliers are labelled (Tukey fences, 1.5 IQR) and never dropped."
            .to_string(),
    ));
    let estimands: Vec<String> = metrics
        .iter()
        .map(|m| format!("{}: {}", m.label(), m.estimand()))
        .collect();
    out.push(("Metrics".to_string(), format!("{}.", estimands.join("; "))));
    out.push((
        "Intervals".to_string(),
        format!(
            "The value of a cell is the median of its per-rep values, with a distribution-free \
             order-statistic interval at a nominal {lvl:.0}% (its exact coverage, at least the \
             nominal level, is in the tidy CSV); pooled tails (p95 over the calls) use a cluster \
             bootstrap that resamples reps ({}, {} resamples). Means carry a t interval. At \
             least {} complete reps are needed for an interval or a test; with fewer the tables \
             say \"need ≥ {}\" instead of a number.",
            a.params.interval_label(),
            a.params.resamples,
            crate::stats::engine::MIN_REPS,
            crate::stats::engine::MIN_REPS,
        ),
    ));
    let tests: Vec<String> = metrics
        .iter()
        .filter_map(|m| {
            a.comparisons
                .iter()
                .find(|c| c.metric == *m)
                .and_then(|c| c.result.test.as_ref())
                .map(|t| format!("{}: {}", m.name(), t.name))
        })
        .collect();
    out.push((
        "Comparisons".to_string(),
        format!(
            "Each cell is compared with its reference cell ({}). Test: Welch t on ln(rep values) \
             for timings and rates, a cluster bootstrap for pooled tails{}; p-values are \
             Holm-adjusted per metric across cells for the verdicts (Benjamini–Hochberg in the \
             tidy CSV); α = {}. Δ% is the ratio of the values − 1 with a percentile bootstrap \
             interval ({}, {} resamples, seed {}). A verdict is better/worse when the adjusted p \
             is below α, ~ otherwise; Mann–Whitney U, Cliff's δ, the Hodges–Lehmann shift and \
             Cohen's d are in the tidy CSV.",
            a.reference_rule,
            if tests.is_empty() {
                String::new()
            } else {
                format!(" (here: {})", tests.join(", "))
            },
            a.options.alpha,
            a.params.interval_label(),
            a.params.resamples,
            a.options.seed
        ),
    ));
    if view.runs.iter().any(|r| !r.a.pairs.is_empty()) {
        out.push((
            "Pair cells".to_string(),
            "A pair cell runs two agents at once (the concurrent phase) and the same pair back \
             to back (the sequential phase). Per rep: speedup = sequential wall / concurrent \
             wall, efficiency = speedup / 2, contention = an agent's concurrent e2e / its \
             sequential e2e. The cell's metrics pool both agents in the concurrent phase; the \
             per-agent table compares each agent's phases and B with A through the same test, \
             Holm-adjusted over that table."
                .to_string(),
        ));
    }
    out.push((
        "Nightly gate".to_string(),
        format!(
            "`sweep compare` (not these tables) judges a night against the nights before it. {} \
             With at least three stored nights the night is the unit: the between-night \
             variance, estimated from the second differences of the night means within their \
             levels and pooled over cells, enters every standard error, and tonight is tested \
             against its recent level and against a fixed anchor.",
            crate::gate::RULE
        ),
    ));
    out.push((
        "Defaults".to_string(),
        "A cell that leaves an option unset runs with the backend's value for it; the tables \
         show that value marked † (the embedded engine's own defaults, or the model's \
         parameters as Ollama's /api/show reports them, recorded in the run's manifest)."
            .to_string(),
    ));
    out
}

/// `methods.md`: a `# Methods` heading, then one bold-headed paragraph per topic.
pub fn markdown(view: &View, metrics: &[Metric]) -> String {
    let mut s = String::from("# Methods\n\n");
    for (h, p) in paragraphs(view, metrics) {
        s.push_str(&format!("**{h}.** {}\n\n", escape::markdown(&p)));
    }
    s
}

pub(crate) fn latex(view: &View, metrics: &[Metric]) -> String {
    let mut s = String::from("% Generated by `sweep report`: the method text the tables cite.\n");
    for (h, p) in paragraphs(view, metrics) {
        s.push_str(&format!(
            "\\paragraph{{{}.}} {}\n\n",
            super::export::latex::text(&h),
            super::export::latex::text(&p)
        ));
    }
    s
}
