//! `methods.md` / `methods.tex`: the method text a paper cites once instead of repeating it
//! under every table (the tables keep a few short notes). Everything here is read from the
//! analysis (the test actually used, the interval actually computed, seeds, exclusions),
//! never written from memory.

use super::escape;
use super::view::View;
use crate::analysis::Metric;
use std::collections::BTreeMap;

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
         calls superseded by a retry are excluded and counted by reason (each table's notes \
         give its own count). A rep missing a stage's call is left out of that metric, so n \
         (complete reps) can differ between metrics. Outliers are labelled (Tukey fences, \
         1.5 IQR) and never dropped."
            .to_string(),
    ));
    out.extend(run_facts(view));
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
        format!(
            "A cell that leaves an option unset runs with the backend's value for it; the \
             tables show that value marked † (here: {}, recorded in the run's manifest).",
            view.defaults_source()
        ),
    ));
    if view.runs.iter().any(|r| r.a.workload.is_shown()) {
        out.push((
            "Workload levels".to_string(),
            "A cell at agents = N runs N copies of its arm's agent at once as one unit (phase \
             concurrent); with speedup = true the same N agents then run back to back, and \
             speedup = sequential wall / concurrent wall, efficiency = speedup / N. Per unit: \
             total tok/s = output tokens of its calls / the phase's wall time; tok/s per user = \
             1000 / mean TPOT of its calls, TPOT = (e2e − TTFT) / (output tokens − 1) (the \
             per-request decode rate of vLLM's benchmark); TTFT p50/p95 and ITL (median TPOT) \
             over its calls. A unit with a failed or cold call is left out of these. Under an \
             [slo], a call is good when it met every limit (a failed call never is); goodput = \
             good calls / the phase's wall time; a unit is within the SLO when the stated \
             percentage of its warm calls were good; a configuration's capacity in rep r is the \
             largest level within the SLO in rep r with every lower level within it too (the \
             levels of rep r share its randomized round). Every figure is one value per rep, \
             summarised by the median with its order-statistic CI. The Pareto front holds the \
             cells no other cell beats on both median tok/s per user and median total tok/s. With \
             GPU telemetry, a unit's energy per token = its calls' share of the GPUs' energy / \
             their output tokens (every call measured), and a second front holds the cells no \
             other cell beats on both median tok/s per user and median energy per token (lower is \
             better)."
                .to_string(),
        ));
    }
    let sets_num_gpu = view
        .runs
        .iter()
        .any(|r| r.a.cells.iter().any(|c| c.factors.contains_key("num_gpu")));
    if sets_num_gpu {
        out.push((
            "Placement and energy".to_string(),
            "In VRAM: size_vram / size from Ollama's /api/ps after each reload probe (a range \
             when reloads differed), or layers offloaded / layers for the embedded engine; \
             layers on GPU: offloaded / total (the model's blocks + the output layer; total \
             from Ollama's /api/show). Decode tok/s: per rep the output tokens of its calls \
             over their server eval seconds. J/token: per rep the GPU energy of its calls (each \
             call's share of the GPUs' energy over its own window) over their output tokens, \
             n/a without GPU telemetry (no NVIDIA driver or nvidia-smi)."
                .to_string(),
        ));
    }
    out
}

/// What the run's tables share and state once: the reference, the calls excluded by rule,
/// where token counts came from, the prompts, the environment, the runs joined, and the
/// analysis' warnings. Each fact is prefixed with its run's label when a view joins runs.
fn run_facts(view: &View) -> Vec<(String, String)> {
    let joined = view.runs.len() > 1;
    let per_run = |f: &dyn Fn(&super::view::RunView) -> Option<String>| -> Option<String> {
        let parts: Vec<String> = view
            .runs
            .iter()
            .filter_map(|r| {
                f(r).map(|s| {
                    if joined {
                        format!("{}: {s}", r.label)
                    } else {
                        s
                    }
                })
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    };
    let mut out = Vec::new();
    if let Some(p) = per_run(&|r| {
        let rule = r.a.reference_rule.split(';').next().unwrap_or("");
        let mut chars = rule.chars();
        chars
            .next()
            .map(|c| format!("{}{}.", c.to_uppercase(), chars.as_str()))
    }) {
        out.push(("Reference".to_string(), p));
    }
    let mut entries = view.entries(false);
    entries.extend(view.entries(true));
    let mut counted = format!(
        "Excluded by rule and counted: {}.",
        super::tables::compact_exclusions(&entries)
    );
    let mut by_source: BTreeMap<String, u32> = BTreeMap::new();
    for e in &entries {
        for (k, v) in &e.cell.counts.tokens_by_source {
            *by_source.entry(k.clone()).or_default() += v;
        }
    }
    if !by_source.is_empty() {
        counted.push_str(&format!(
            " Token counts of the measured calls from: {}{}.",
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
    out.push(("Calls".to_string(), counted));
    if let Some(p) = per_run(&|r| prompts(&r.a)) {
        out.push(("Prompts".to_string(), p));
    }
    if let Some(p) = per_run(&|r| {
        let env = r.a.manifest.as_ref()?.environment().to_string();
        (!env.is_empty()).then(|| format!("{env}."))
    }) {
        out.push(("Environment".to_string(), p));
    }
    if joined {
        let diffs = super::view::joined_differences(&view.runs);
        if !diffs.is_empty() {
            out.push((
                "Runs joined".to_string(),
                format!("The runs differ in: {}.", diffs.join("; ")),
            ));
        }
    }
    if let Some(p) = per_run(&|r| {
        (!r.a.notes.is_empty()).then(|| {
            r.a.notes
                .iter()
                .map(|n| format!("Warning: {n}."))
                .collect::<Vec<_>>()
                .join(" ")
        })
    }) {
        out.push(("Warnings".to_string(), p));
    }
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

/// The prompt versions and what happened to each persona (sent as the system prompt, or
/// only shown in the reports: `persona_mode = "echo"`), from the run's manifest.
fn prompts(a: &crate::analysis::Analysis) -> Option<String> {
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
    let mut parts = vec![format!("Prompt set {}", m.prompt_versions.join(", "))];
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
