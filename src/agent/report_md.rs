//! The per-agent report file, in the seeds' structure: header, the model's report, then
//! `## Workflow Summary`, `## Metrics`, `## Key Findings`, `## Recommendations`,
//! `## Persona Prompt`; then sweep's own `## Calls` (the prompt version, whether the persona
//! was sent, and the ids of the calls, which `sweep show` prints in full).

use super::extract::Analysis;
use crate::backend::Generation;
use crate::plan::Member;
use crate::spec::{Persona, PersonaMode, Slot};

/// Metrics of one agent run, derived from its successful calls the way the seeds did.
/// `None` (printed `n/a`, never 0) when a call lacked the figure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunMetrics {
    /// Mean over calls of the per-call decode rate, output_tokens / (eval_ms / 1000).
    /// (The seeds averaged per-call rates: seed 000 prints 42.90 where pooled tokens over
    /// pooled eval time would give 43.14.)
    pub throughput_tps: Option<f64>,
    /// Mean over calls of the client-side TTFT.
    pub ttft_ms: Option<f64>,
    /// Sum over calls of the client-side end-to-end time (≈ execution time minus ingest, as
    /// in the seeds: 61913.37 ms against 61.94 s).
    pub total_duration_ms: Option<f64>,
    /// Sum of the server's output token counts.
    pub tokens_generated: Option<u64>,
    /// Sum of the server-reported prompt processing times, ms.
    pub prompt_eval_ms: Option<f64>,
    /// Sum of the server-reported generation (decode) times, ms.
    pub eval_ms: Option<f64>,
    /// Sum of the server-reported model load times, ms.
    pub load_ms: Option<f64>,
}

impl RunMetrics {
    /// Derives the metrics from the run's successful generations.
    pub fn from_generations(gens: &[&Generation]) -> RunMetrics {
        if gens.is_empty() {
            return RunMetrics::default();
        }
        fn all<T>(gens: &[&Generation], f: impl Fn(&Generation) -> Option<T>) -> Option<Vec<T>> {
            gens.iter().map(|g| f(g)).collect()
        }
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        RunMetrics {
            throughput_tps: all(gens, |g| match (g.server.output_tokens, g.server.eval_ms) {
                (Some(n), Some(ms)) if ms > 0.0 => Some(n as f64 / (ms / 1000.0)),
                _ => None,
            })
            .map(mean),
            ttft_ms: all(gens, |g| g.timing.ttft_ms).map(mean),
            total_duration_ms: Some(gens.iter().map(|g| g.timing.e2e_ms).sum()),
            tokens_generated: all(gens, |g| g.server.output_tokens).map(|v| v.iter().sum()),
            prompt_eval_ms: all(gens, |g| g.server.prompt_eval_ms).map(|v| v.iter().sum()),
            eval_ms: all(gens, |g| g.server.eval_ms).map(|v| v.iter().sum()),
            load_ms: all(gens, |g| g.server.load_ms).map(|v| v.iter().sum()),
        }
    }
}

/// Everything a report file shows; `date` is passed in so rendering is reproducible.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// The agent (title, model, options, persona mode, prompt version).
    pub member: &'a Member,
    /// `YYYY-MM-DD`.
    pub date: &'a str,
    /// The model's report text (the report call's output).
    pub report_text: &'a str,
    /// Files in the ingested corpus.
    pub files_analyzed: usize,
    /// The corpus summary the analysis prompt carried, shown in a code block.
    pub data_summary: &'a str,
    /// Ingest time charged to the agent run, ms.
    pub ingest_ms: f64,
    /// Wall time of the analysis call, ms.
    pub analysis_ms: f64,
    /// Wall time of the report call, ms.
    pub report_ms: f64,
    /// Ingest plus the calls' wall time, ms (the "Execution time" line).
    pub total_ms: f64,
    /// The `## Metrics` section's figures.
    pub metrics: &'a RunMetrics,
    /// Findings and recommendations for their sections.
    pub analysis: &'a Analysis,
    /// The agent's persona text, shown whether it was sent or not (`member.persona_mode`).
    pub persona: Option<&'a str>,
    /// What an agent that sends no options runs with (the backend's words, e.g.
    /// `Ollama defaults`, `engine defaults (num_ctx 2048, 128 tokens)`).
    pub defaults_label: &'a str,
    /// (stage, call id) of the agent run's calls, in order.
    pub calls: &'a [(&'a str, String)],
}

fn f2(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x:.2}{unit}"))
        .unwrap_or_else(|| "n/a".into())
}

fn bullets(items: &[String]) -> String {
    if items.is_empty() {
        "- None\n".to_string()
    } else {
        items.iter().map(|i| format!("- {i}\n")).collect()
    }
}

/// Renders the report. Pair agents and agents with a persona get the seeds' pair header
/// (`# <title>`, then `# Technical Report: <title> Analysis`, Date, Agent Type, Model);
/// a single chimera/baseline agent gets the seeds' single header (Date, Model, Agent Type
/// `Chimera`/`Baseline`).
pub fn render(r: &ReportInput<'_>) -> String {
    let m = r.member;
    let title = &m.title;
    let pair_style = m.slot != Slot::Single || m.persona != Persona::Chimera;
    let mut s = String::new();
    if pair_style {
        s.push_str(&format!(
            "# {title}\n\n# Technical Report: {title} Analysis\n\n**Date:** {}\n**Agent Type:** {title}\n**Model:** {}\n",
            r.date, m.model
        ));
    } else {
        let agent_type = title.trim_end_matches(" Agent");
        s.push_str(&format!(
            "# Technical Report: {title} Analysis\n\n**Date:** {}\n**Model:** {}\n**Agent Type:** {agent_type}\n",
            r.date, m.model
        ));
    }
    s.push_str(&format!(
        "**Configuration:** {}\n\n---\n\n",
        m.options.config_line(r.defaults_label)
    ));
    s.push_str(r.report_text.trim());
    s.push_str("\n\n---\n\n## Workflow Summary\n");
    s.push_str(&format!("- Files analyzed: {}\n", r.files_analyzed));
    s.push_str(&format!(
        "- Execution time: {:.2}s (ingest {:.2}s | analysis {:.2}s | report {:.2}s)\n",
        r.total_ms / 1000.0,
        r.ingest_ms / 1000.0,
        r.analysis_ms / 1000.0,
        r.report_ms / 1000.0
    ));
    s.push_str("- Data summary:\n```\n");
    s.push_str(r.data_summary);
    if !r.data_summary.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("```\n\n## Metrics\n");
    let mt = r.metrics;
    s.push_str(&format!(
        "- Throughput: {}\n",
        f2(mt.throughput_tps, " tok/s")
    ));
    s.push_str(&format!("- TTFT: {}\n", f2(mt.ttft_ms, " ms")));
    s.push_str(&format!(
        "- Total Duration: {}\n",
        f2(mt.total_duration_ms, " ms")
    ));
    s.push_str(&format!(
        "- Tokens Generated: {}\n",
        mt.tokens_generated
            .map(|n| n.to_string())
            .unwrap_or_else(|| "n/a".into())
    ));
    s.push_str(&format!(
        "- Prompt Eval: {}\n",
        f2(mt.prompt_eval_ms, " ms")
    ));
    s.push_str(&format!("- Eval Duration: {}\n", f2(mt.eval_ms, " ms")));
    s.push_str(&format!("- Load Duration: {}\n", f2(mt.load_ms, " ms")));
    s.push_str("\n## Key Findings\n");
    s.push_str(&bullets(&r.analysis.key_findings));
    s.push_str("\n## Recommendations\n");
    s.push_str(&bullets(&r.analysis.recommendations));
    s.push_str("\n## Persona Prompt\n");
    match r.persona {
        Some(p) => s.push_str(&format!("```\n{}\n```\n", p.trim_end())),
        None => s.push_str("None: no system prompt was sent to this agent.\n"),
    }
    s.push_str("\n## Calls\n");
    let persona = match (r.persona, m.persona_mode) {
        (None, _) => "no persona".to_string(),
        (Some(_), PersonaMode::System) => {
            "persona sent as the system prompt (persona_mode = \"system\")".to_string()
        }
        (Some(_), PersonaMode::Echo) => {
            "persona shown above but not sent (persona_mode = \"echo\", \
             as the seed system did)"
                .to_string()
        }
    };
    s.push_str(&format!(
        "- Prompts: {} ({persona})\n",
        m.prompt_version.as_str()
    ));
    for (stage, id) in r.calls {
        s.push_str(&format!("- {stage}: `{id}`\n"));
    }
    s.push_str(
        "\nEach call's request as sent and its full answer: `sweep show <run dir> --call <id>`.\n",
    );
    s
}
