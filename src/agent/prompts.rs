//! The prompts of one agent run, and the nonce that keeps prompt caches from lying.

use super::extract::Analysis;
use crate::corpus::Corpus;
use crate::record::Stage;

/// The InsightAgent persona, verbatim from the seeds' `## Persona Prompt` block. Sent as the
/// system prompt of `insight` agents (the seed system printed it but never sent it).
pub const INSIGHT_PERSONA: &str =
    "You are InsightAgent, a Chimera-optimised LLM operations specialist.
Given the repository context described previously, produce:
1. Executive summary of model performance.
2. Three optimisation recommendations that balance throughput, TTFT, and quality.
3. A risk/mitigation table with at least two rows.
Aim for 300-400 words, with numbered sections and bolded metric callouts.";

/// Metric samples from the corpus quoted in the report prompt.
const DIGEST_METRICS: usize = 12;

/// The first line of every measured prompt: `Run: <run>/<cell>/<rep>/<agent>/<stage>`.
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

/// Analysis call: a performance-analysis expert reads the data summary.
pub fn analysis_prompt(nonce: &str, data_summary: &str) -> String {
    with_nonce(
        nonce,
        Stage::Analysis,
        format!(
            "You are a performance analysis expert. Analyze the following benchmark data and provide insights.\n\n\
Benchmark Data Summary:\n{data_summary}\n\
Please provide:\n\
1. Executive summary of the data\n\
2. Key performance findings\n\
3. Performance metrics analysis\n\
4. Recommendations for optimization\n\n\
Format your response as structured analysis with clear sections."
        ),
    )
}

/// Report call: a technical report built from the analysis and the corpus' metrics.
pub fn report_prompt(nonce: &str, analysis: &Analysis, corpus: &Corpus) -> String {
    let numbered = |items: &[String]| {
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
    };
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
    with_nonce(
        nonce,
        Stage::Report,
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
        ),
    )
}
