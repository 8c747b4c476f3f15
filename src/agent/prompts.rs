//! The prompts of one agent run, per prompt version, the personas, and the nonce that keeps
//! prompt caches from lying.
//!
//! The persona texts and the `chimera-2025` prompts are the seed system's, reproduced as data
//! from Chimeraforge `src/rust/demo_multiagent/src/main.rs` (`DATA_COLLECTOR_PROMPT`,
//! `INSIGHT_AGENT_PROMPT`, `build_analysis_prompt`, `build_report_prompt`).

use super::extract::Analysis;
use crate::corpus::Corpus;
use crate::record::Stage;
use crate::spec::{Persona, PromptVersion};

/// The InsightAgent persona (Agent B of the seed pairs), verbatim from the seeds'
/// `## Persona Prompt` block and Chimeraforge's `INSIGHT_AGENT_PROMPT`.
pub const INSIGHT_PERSONA: &str =
    "You are InsightAgent, a Chimera-optimised LLM operations specialist.
Given the repository context described previously, produce:
1. Executive summary of model performance.
2. Three optimisation recommendations that balance throughput, TTFT, and quality.
3. A risk/mitigation table with at least two rows.
Aim for 300-400 words, with numbered sections and bolded metric callouts.";

/// The DataCollector-9000 persona (Agent A of the seed pairs), verbatim from Chimeraforge's
/// `DATA_COLLECTOR_PROMPT` (src/rust/demo_multiagent/src/main.rs).
pub const COLLECTOR_PERSONA: &str =
    "You are DataCollector-9000, a systems analyst tasked with scanning benchmark artifacts.
Produce a concise data inventory with bullet points that highlight:
1. Directory coverage (reports/, csv_data/, artifacts/).
2. File counts per type (md, csv, json) and the latest modified timestamp you observe.
3. Any gaps or missing telemetry that could impact model evaluation.
Keep the response under 250 words but include concrete metrics so a second agent can reason over them.";

/// The persona text of an agent (`None` for the Chimera agent, which has none).
pub fn persona_text(persona: Persona) -> Option<&'static str> {
    match persona {
        Persona::Insight => Some(INSIGHT_PERSONA),
        Persona::Collector => Some(COLLECTOR_PERSONA),
        Persona::Chimera => None,
    }
}

/// Metric samples from the corpus quoted in the `sweep-1` report prompt.
const DIGEST_METRICS: usize = 12;

/// The nonce line of every measured prompt: `Run: <run>/<cell>/<rep>/<agent>/<stage>`.
///
/// It goes first, not last: servers reuse the longest cached *prefix*, so a nonce at the end
/// would still let the whole prompt body hit the cache. Only the chat template's header and
/// the (constant) system prompt can be reused.
pub fn nonce_line(nonce: &str, stage: Stage) -> Option<String> {
    if nonce.is_empty() {
        None
    } else {
        Some(format!("Run: {nonce}/{}", stage.as_str()))
    }
}

fn with_nonce(nonce: &str, stage: Stage, body: String) -> String {
    match nonce_line(nonce, stage) {
        Some(line) => format!("{line}\n\n{body}"),
        None => body,
    }
}

/// `small-1`: the opening of every prompt. Gemma 3 270M (a base model) mostly copies the
/// start of a prompt that opens with the nonce line or with the instruction; it answers one
/// that opens with this title, then the nonce, then a listing, with the question last
/// (measured: README, "The quickstart's prompts"). The nonce still precedes the bulk of the
/// prompt, so a prefix cache can reuse only the title line.
const SMALL_TITLE: &str = "Benchmark files of a model-serving project:";

/// Notes from the analysis quoted in a `small-1` report prompt, at most this many characters
/// (the 270M model's analysis can run on; the quickstart's contexts are 1024 tokens).
const SMALL_NOTES_CHARS: usize = 400;

fn small_prompt(nonce: &str, stage: Stage, body: &str, question: &str) -> String {
    let nonce = nonce_line(nonce, stage)
        .map(|l| format!("{l}\n"))
        .unwrap_or_default();
    format!("{SMALL_TITLE}\n{nonce}\n{body}\n{question}\nAnswer:")
}

/// Analysis call: a performance-analysis expert reads the data summary.
pub fn analysis_prompt(version: PromptVersion, nonce: &str, data_summary: &str) -> String {
    let body = match version {
        PromptVersion::Sweep1 => format!(
            "You are a performance analysis expert. Analyze the following benchmark data and provide insights.\n\n\
Benchmark Data Summary:\n{data_summary}\n\
Please provide:\n\
1. Executive summary of the data\n\
2. Key performance findings\n\
3. Performance metrics analysis\n\
4. Recommendations for optimization\n\n\
Format your response as structured analysis with clear sections."
        ),
        // The seed system's summary ended each section with a blank line (ours separates
        // them with one) and its template added "\n\n" after it: three newlines in all.
        PromptVersion::Chimera2025 => format!(
            "You are a performance analysis expert. Analyze the following benchmark data and provide insights.\n\n\
Benchmark Data Summary:\n{data_summary}\n\n\n\
Please provide:\n\
1. Executive summary of the data\n\
2. Key performance findings\n\
3. Performance metrics analysis\n\
4. Recommendations for optimization\n\n\
Format your response as structured analysis with clear sections."
        ),
        PromptVersion::Small1 => {
            return small_prompt(
                nonce,
                Stage::Analysis,
                data_summary,
                "Describe this data set in three short bullet points.",
            )
        }
    };
    with_nonce(nonce, Stage::Analysis, body)
}

fn numbered(items: &[String]) -> String {
    if items.is_empty() {
        "None provided".to_string()
    } else {
        items
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {s}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Report call: a technical report built from the analysis and the corpus' metrics.
pub fn report_prompt(
    version: PromptVersion,
    nonce: &str,
    analysis: &Analysis,
    corpus: &Corpus,
) -> String {
    let body = match version {
        PromptVersion::Sweep1 => {
            let digest = corpus.metric_digest(DIGEST_METRICS);
            let metrics = if digest.is_empty() {
                "None extracted".to_string()
            } else {
                digest
                    .iter()
                    .map(|m| format!("  - {m}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            format!(
                "Generate a comprehensive technical report from the analysis below.\n\n\
Analysis Results:\n\
- Files analyzed: {files} ({bytes} bytes)\n\
- Summary: {summary}\n\
- Key Findings:\n{findings}\n\
- Performance Metrics (sample):\n{metrics}\n\
- Recommendations:\n{recs}\n\n\
Create a professional technical report with the following structure:\n\
1. Executive Summary\n\
2. Data Ingestion Summary\n\
3. Performance Analysis\n\
4. Key Findings\n\
5. Recommendations\n\
6. Appendix\n\n\
Use markdown formatting and include specific metrics and data points.",
                files = corpus.len(),
                bytes = corpus.total_bytes,
                summary = analysis.summary,
                findings = numbered(&analysis.key_findings),
                recs = numbered(&analysis.recommendations),
            )
        }
        PromptVersion::Chimera2025 => {
            // serde_json's pretty printer, as the seed system used; keys in sorted order
            // (the seed system's HashMap printed them in a different order every run).
            let metrics = serde_json::to_string_pretty(&corpus.chimera_metrics())
                .unwrap_or_else(|_| "{}".into());
            format!(
                "Generate a comprehensive technical report in the style of Technical Report 108.\n\n\
Analysis Results:\n\
- Summary: {summary}\n\
- Key Findings:\n{findings}\n\
- Performance Metrics: {metrics}\n\
- Recommendations:\n{recs}\n\n\
Create a professional technical report with the following structure:\n\
1. Executive Summary\n\
2. Data Ingestion Summary\n\
3. Performance Analysis\n\
4. Key Findings\n\
5. Recommendations\n\
6. Appendix\n\n\
Use markdown formatting and include specific metrics and data points.",
                summary = analysis.summary,
                findings = numbered(&analysis.key_findings),
                recs = numbered(&analysis.recommendations),
            )
        }
        PromptVersion::Small1 => {
            // Values first: a listing before prose is answered, prose first is copied.
            let values: String = corpus
                .metric_digest(6)
                .iter()
                .map(|m| format!("- {m}\n"))
                .collect();
            let mut notes = analysis.summary.replace('\n', " ");
            if let Some((cut, _)) = notes.char_indices().nth(SMALL_NOTES_CHARS) {
                notes.truncate(cut);
            }
            return small_prompt(
                nonce,
                Stage::Report,
                &format!("Measured values:\n{values}\nNotes: {notes}\n"),
                "Write a short report on these benchmarks: a summary, the findings and one recommendation.",
            );
        }
    };
    with_nonce(nonce, Stage::Report, body)
}
