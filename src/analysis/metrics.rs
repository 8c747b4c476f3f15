//! The metrics analysed, their units, direction (lower or higher is better) and how one
//! repetition's calls collapse into one value.

use serde::{Deserialize, Serialize};

/// A metric of the analysis. Latencies: the rep value is the median of its calls.
/// Throughputs: token-weighted (Σ tokens / Σ seconds) over the rep's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    TtftMs,
    E2eMs,
    ItlP50Ms,
    DecodeTps,
    E2eTps,
    PromptEvalMs,
    EvalMs,
    LoadMs,
    OutputTokens,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::TtftMs,
        Metric::E2eMs,
        Metric::ItlP50Ms,
        Metric::DecodeTps,
        Metric::E2eTps,
        Metric::PromptEvalMs,
        Metric::EvalMs,
        Metric::LoadMs,
        Metric::OutputTokens,
    ];

    /// Column name in the records frame (and the metric's name everywhere).
    pub fn name(self) -> &'static str {
        match self {
            Metric::TtftMs => "ttft_ms",
            Metric::E2eMs => "e2e_ms",
            Metric::ItlP50Ms => "itl_p50_ms",
            Metric::DecodeTps => "decode_tps",
            Metric::E2eTps => "e2e_tps",
            Metric::PromptEvalMs => "prompt_eval_ms",
            Metric::EvalMs => "eval_ms",
            Metric::LoadMs => "load_ms",
            Metric::OutputTokens => "output_tokens",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Human label with unit, for tables and plot axes.
    pub fn label(self) -> &'static str {
        match self {
            Metric::TtftMs => "TTFT (ms)",
            Metric::E2eMs => "end-to-end latency (ms)",
            Metric::ItlP50Ms => "median inter-token latency (ms)",
            Metric::DecodeTps => "decode throughput (tok/s)",
            Metric::E2eTps => "client throughput (tok/s)",
            Metric::PromptEvalMs => "prompt eval (ms)",
            Metric::EvalMs => "eval (ms)",
            Metric::LoadMs => "load (ms)",
            Metric::OutputTokens => "output tokens",
        }
    }

    /// Direction for verdicts; `None` for metrics with no better side (token counts).
    pub fn higher_is_better(self) -> Option<bool> {
        match self {
            Metric::DecodeTps | Metric::E2eTps => Some(true),
            Metric::OutputTokens => None,
            _ => Some(false),
        }
    }

    /// Latencies have multiplicative noise: Welch's test runs on their logs.
    pub fn log_scale(self) -> bool {
        !matches!(self, Metric::OutputTokens)
    }
}
