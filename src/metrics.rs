//! The one table of metrics: each metric's name (and the names it is also known by), unit,
//! direction, how one repetition's calls become a value (or how a cell's calls are pooled),
//! and which calls it reads. Spec validation, analysis, tables, plots and the regression
//! gate all look metrics up here.
//!
//! Which calls: every metric reads all the calls of one agent run (or, for a pair phase, of
//! both agents' runs): the analysis call and the report call. The two stages are different
//! workloads (the report prompt carries the analysis), so a repetition counts for a metric
//! only when every one of its calls was measured (succeeded, not warm-up, not cold) and
//! carries the metric's inputs: a rep missing a stage is left out of that metric and
//! counted as incomplete, never silently replaced by the other stage's value.

use serde::{Deserialize, Serialize};

/// A metric of the analysis and the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median TTFT of a rep's calls (also `ttft_p50`).
    TtftMs,
    /// 95th percentile of TTFT over a cell's pooled calls (also `ttft_p95`).
    TtftP95Ms,
    /// Median end-to-end latency of a rep's calls (also `e2e_p50`).
    E2eMs,
    /// Median of the calls' median inter-token gaps (also `itl_p50`).
    ItlP50Ms,
    /// Σ output tokens / Σ server eval seconds over a rep's calls.
    DecodeTps,
    /// Σ output tokens / Σ (e2e − TTFT) client seconds over a rep's calls.
    E2eTps,
    /// Median server prompt-evaluation time of a rep's calls, ms (`prompt_eval_ms`).
    PromptEvalMs,
    /// Median server generation (eval) time of a rep's calls, ms (`eval_ms`).
    EvalMs,
    /// Median server-reported model load time of a rep's calls, ms (`load_ms`; cold calls
    /// are left out, so this is the load a warm call still reports).
    LoadMs,
    /// Median output tokens of a rep's calls: shown for context, never judged.
    OutputTokens,
    /// Σ GPU joules / Σ output tokens over a rep's calls (also `energy_per_token`).
    JPerToken,
    /// Σ GPU joules / Σ prompt tokens × 1 000 over a rep's calls.
    JPer1kPromptTokens,
    /// Σ output tokens of a unit's calls / the phase's wall time: the throughput of all its
    /// agents together (a workload level's total tok/s).
    TotalTps,
    /// Calls within the `[slo]` / the phase's wall time, requests/s (`None` without an SLO).
    GoodputRps,
}

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Smaller values are better (latencies, durations, energy).
    LowerIsBetter,
    /// Larger values are better (throughputs).
    HigherIsBetter,
    /// No better side (token counts): shown, never judged better or worse.
    Neither,
}

/// The seconds a rate divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateClock {
    /// The server's `eval_ms`.
    ServerEval,
    /// The client's e2e − TTFT, over the tokens after the first.
    ClientDecode,
}

/// The tokens an energy metric divides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyPer {
    /// Output (generated) tokens.
    OutputToken,
    /// 1 000 prompt tokens.
    KiloPromptTokens,
}

/// What a wall-time rate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WallCount {
    /// Output tokens.
    OutputTokens,
    /// Calls within the `[slo]` (the `slo_good` column: 1 or 0; null without an SLO).
    GoodCalls,
}

/// How a metric's value is formed from the calls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Per rep: the median of its calls' `column`. The rep is the statistical unit.
    RepMedian {
        /// The record column the median is taken of (e.g. `ttft_ms`).
        column: &'static str,
    },
    /// Per rep: Σ output tokens / Σ seconds over its calls (weighted by call length, not a
    /// mean of per-call rates).
    RepRate {
        /// Which clock's seconds the tokens are divided by.
        clock: RateClock,
    },
    /// Per cell: the type-7 `q` quantile of `column` over the calls of its complete reps,
    /// pooled (a tail needs more values than one rep has); the rep stays the unit of
    /// resampling (cluster bootstrap).
    PooledQuantile {
        /// The record column the quantile is taken of (e.g. `ttft_ms`).
        column: &'static str,
        /// The quantile, in (0, 1) (0.95 for a p95).
        q: f64,
    },
    /// Per rep: Σ GPU energy (each call's share over its own window, `gpu_energy_j`) / Σ
    /// tokens over its calls. A call without an energy figure (no GPU telemetry) makes its
    /// rep incomplete for this metric, like any missing input.
    RepEnergy {
        /// Which tokens the energy is divided by.
        per: EnergyPer,
    },
    /// Per rep: Σ `count` over its calls / the phase's wall time (every record of a phase
    /// carries the same `phase_wall_ms`): what all the unit's agents achieved together.
    RepWallRate {
        /// What is counted.
        count: WallCount,
    },
}

/// Everything there is to know about one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MetricDef {
    pub(crate) metric: Metric,
    /// The name used everywhere (files, tables, JSON, flags).
    pub name: &'static str,
    /// Other names accepted in experiment files and flags.
    pub aliases: &'static [&'static str],
    pub(crate) unit: &'static str,
    /// Label with unit, for tables and plot axes.
    pub label: &'static str,
    pub(crate) direction: Direction,
    pub(crate) estimator: Estimator,
    /// Multiplicative noise: tests run on ln values (timings and rates).
    pub log_scale: bool,
    /// Compared by `sweep compare` even without a threshold.
    pub gate_default: bool,
    /// Default regression threshold (relative change) in `[compare]`.
    pub default_threshold: Option<f64>,
}

const fn median(
    metric: Metric,
    name: &'static str,
    aliases: &'static [&'static str],
    unit: &'static str,
    label: &'static str,
) -> MetricDef {
    MetricDef {
        metric,
        name,
        aliases,
        unit,
        label,
        direction: Direction::LowerIsBetter,
        estimator: Estimator::RepMedian { column: name },
        log_scale: true,
        gate_default: false,
        default_threshold: None,
    }
}

/// The table, in display order.
pub const METRICS: [MetricDef; 14] = [
    MetricDef {
        gate_default: true,
        default_threshold: Some(0.05),
        ..median(Metric::TtftMs, "ttft_ms", &["ttft_p50"], "ms", "TTFT (ms)")
    },
    MetricDef {
        estimator: Estimator::PooledQuantile {
            column: "ttft_ms",
            q: 0.95,
        },
        // Gated only where a [compare] table names it: a p95 needs ≥ 100 calls per cell
        // (50 reps of an agent run) before it is tested (see stats::engine::TAIL_CALLS).
        gate_default: true,
        default_threshold: None,
        ..median(
            Metric::TtftP95Ms,
            "ttft_p95_ms",
            &["ttft_p95"],
            "ms",
            "TTFT p95 over calls (ms)",
        )
    },
    MetricDef {
        gate_default: true,
        ..median(
            Metric::E2eMs,
            "e2e_ms",
            &["e2e_p50"],
            "ms",
            "end-to-end latency (ms)",
        )
    },
    median(
        Metric::ItlP50Ms,
        "itl_p50_ms",
        &["itl_p50"],
        "ms",
        "median inter-token latency (ms)",
    ),
    MetricDef {
        direction: Direction::HigherIsBetter,
        estimator: Estimator::RepRate {
            clock: RateClock::ServerEval,
        },
        gate_default: true,
        default_threshold: Some(0.03),
        ..median(
            Metric::DecodeTps,
            "decode_tps",
            &[],
            "tok/s",
            "decode throughput (tok/s)",
        )
    },
    MetricDef {
        direction: Direction::HigherIsBetter,
        estimator: Estimator::RepRate {
            clock: RateClock::ClientDecode,
        },
        ..median(
            Metric::E2eTps,
            "e2e_tps",
            &[],
            "tok/s",
            "client throughput (tok/s)",
        )
    },
    median(
        Metric::PromptEvalMs,
        "prompt_eval_ms",
        &[],
        "ms",
        "prompt eval (ms)",
    ),
    median(Metric::EvalMs, "eval_ms", &[], "ms", "eval (ms)"),
    median(Metric::LoadMs, "load_ms", &[], "ms", "load (ms)"),
    MetricDef {
        direction: Direction::Neither,
        log_scale: false,
        ..median(
            Metric::OutputTokens,
            "output_tokens",
            &[],
            "tokens",
            "output tokens",
        )
    },
    MetricDef {
        estimator: Estimator::RepEnergy {
            per: EnergyPer::OutputToken,
        },
        ..median(
            Metric::JPerToken,
            "j_per_token",
            &["energy_per_token", "j_per_output_token"],
            "J/token",
            "GPU energy per output token (J/token)",
        )
    },
    MetricDef {
        estimator: Estimator::RepEnergy {
            per: EnergyPer::KiloPromptTokens,
        },
        ..median(
            Metric::JPer1kPromptTokens,
            "j_per_1k_prompt_tokens",
            &["energy_per_1k_prompt_tokens"],
            "J/1k prompt tokens",
            "GPU energy per 1 000 prompt tokens (J)",
        )
    },
    MetricDef {
        direction: Direction::HigherIsBetter,
        estimator: Estimator::RepWallRate {
            count: WallCount::OutputTokens,
        },
        ..median(
            Metric::TotalTps,
            "total_tps",
            &["unit_tps"],
            "tok/s",
            "total throughput, all agents (tok/s)",
        )
    },
    MetricDef {
        direction: Direction::HigherIsBetter,
        estimator: Estimator::RepWallRate {
            count: WallCount::GoodCalls,
        },
        // A unit where no call met the SLO has goodput 0, the worst regression there is:
        // tested on the values themselves, not their logarithms.
        log_scale: false,
        ..median(
            Metric::GoodputRps,
            "goodput_rps",
            &["goodput"],
            "req/s",
            "goodput, calls within the SLO (req/s)",
        )
    },
];

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 14] = [
        Metric::TtftMs,
        Metric::TtftP95Ms,
        Metric::E2eMs,
        Metric::ItlP50Ms,
        Metric::DecodeTps,
        Metric::E2eTps,
        Metric::PromptEvalMs,
        Metric::EvalMs,
        Metric::LoadMs,
        Metric::OutputTokens,
        Metric::JPerToken,
        Metric::JPer1kPromptTokens,
        Metric::TotalTps,
        Metric::GoodputRps,
    ];

    /// The metric's row of [`METRICS`].
    pub fn def(self) -> &'static MetricDef {
        // METRICS is in the order of ALL (checked by a test).
        &METRICS[self as usize]
    }

    pub(crate) fn name(self) -> &'static str {
        self.def().name
    }

    pub(crate) fn label(self) -> &'static str {
        self.def().label
    }

    pub(crate) fn unit(self) -> &'static str {
        self.def().unit
    }

    pub(crate) fn direction(self) -> Direction {
        self.def().direction
    }

    /// `Some(true)` when higher is better, `None` when neither side is.
    pub fn higher_is_better(self) -> Option<bool> {
        match self.direction() {
            Direction::HigherIsBetter => Some(true),
            Direction::LowerIsBetter => Some(false),
            Direction::Neither => None,
        }
    }

    pub(crate) fn log_scale(self) -> bool {
        self.def().log_scale
    }

    /// True for a metric that grows with the number of generated tokens (a whole call's or
    /// its generation's duration): comparing it between workloads of different output
    /// lengths compares the lengths, not the speed.
    pub fn scales_with_output_tokens(self) -> bool {
        matches!(self, Metric::E2eMs | Metric::EvalMs)
    }

    /// A name or one of its aliases (`ttft_p50` is `ttft_ms`).
    pub fn parse(s: &str) -> Option<Metric> {
        METRICS
            .iter()
            .find(|d| d.name == s || d.aliases.contains(&s))
            .map(|d| d.metric)
    }

    /// Every accepted name, for error messages.
    pub fn all_names() -> Vec<&'static str> {
        METRICS
            .iter()
            .flat_map(|d| std::iter::once(d.name).chain(d.aliases.iter().copied()))
            .collect()
    }

    /// The records columns this metric reads.
    pub fn columns(self) -> &'static [&'static str] {
        match self.def().estimator {
            Estimator::RepMedian { column } | Estimator::PooledQuantile { column, .. } => {
                match column {
                    "ttft_ms" => &["ttft_ms"],
                    "e2e_ms" => &["e2e_ms"],
                    "itl_p50_ms" => &["itl_p50_ms"],
                    "prompt_eval_ms" => &["prompt_eval_ms"],
                    "eval_ms" => &["eval_ms"],
                    "load_ms" => &["load_ms"],
                    _ => &["output_tokens"],
                }
            }
            Estimator::RepRate {
                clock: RateClock::ServerEval,
            } => &["output_tokens", "eval_ms"],
            Estimator::RepRate {
                clock: RateClock::ClientDecode,
            } => &["output_tokens", "e2e_ms", "ttft_ms"],
            Estimator::RepEnergy {
                per: EnergyPer::OutputToken,
            } => &["gpu_energy_j", "output_tokens"],
            Estimator::RepEnergy {
                per: EnergyPer::KiloPromptTokens,
            } => &["gpu_energy_j", "prompt_tokens"],
            Estimator::RepWallRate {
                count: WallCount::OutputTokens,
            } => &["output_tokens", "phase_wall_ms"],
            Estimator::RepWallRate {
                count: WallCount::GoodCalls,
            } => &["phase_wall_ms", "slo_good"],
        }
    }

    /// True for a metric whose value pools a cell's calls (a tail quantile).
    pub fn is_pooled(self) -> bool {
        matches!(self.def().estimator, Estimator::PooledQuantile { .. })
    }

    /// The metrics `sweep compare` checks even without a threshold.
    pub fn gate_defaults() -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|m| m.def().gate_default)
            .collect()
    }

    /// What one value of the metric is, in words, for table footers.
    pub fn estimand(self) -> String {
        match self.def().estimator {
            Estimator::RepMedian { .. } => format!(
                "{}: per rep the median over its calls (analysis + report stage)",
                self.name()
            ),
            Estimator::RepRate { clock } => format!(
                "{}: per rep {} over its calls",
                self.name(),
                match clock {
                    RateClock::ServerEval => "Σ output tokens / Σ server eval seconds",
                    RateClock::ClientDecode =>
                        "Σ (output tokens − 1) / Σ client (e2e − TTFT) seconds, calls of \
                         ≥ 2 tokens",
                }
            ),
            Estimator::RepEnergy { per } => format!(
                "{}: per rep Σ GPU joules (each call's share of the GPUs' energy over its own \
                 window) / Σ {} over its calls",
                self.name(),
                match per {
                    EnergyPer::OutputToken => "output tokens",
                    EnergyPer::KiloPromptTokens => "prompt tokens × 1 000",
                }
            ),
            Estimator::RepWallRate { count } => format!(
                "{}: per rep Σ {} over its calls / the phase's wall time (all its agents \
                 together)",
                self.name(),
                match count {
                    WallCount::OutputTokens => "output tokens",
                    WallCount::GoodCalls => "calls within the SLO",
                }
            ),
            Estimator::PooledQuantile { q, .. } => format!(
                "{}: the p{:.0} over the cell's pooled calls of complete reps (reps resampled as clusters)",
                self.name(),
                q * 100.0
            ),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::parse(s).ok_or_else(|| {
            format!(
                "unknown metric {s:?}; expected one of: {}",
                Metric::all_names().join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_names_are_unique() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(METRICS[i].metric, *m);
            assert_eq!(*m as usize, i);
        }
        let mut names = Metric::all_names();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a name or alias is used twice");
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!(Metric::parse("ttft_p50"), Some(Metric::TtftMs));
        assert_eq!(Metric::parse("ttft_p95"), Some(Metric::TtftP95Ms));
        assert_eq!(Metric::parse("e2e_p50"), Some(Metric::E2eMs));
        assert_eq!(Metric::parse("energy_per_token"), Some(Metric::JPerToken));
        assert_eq!(
            Metric::JPerToken.columns(),
            &["gpu_energy_j", "output_tokens"]
        );
        assert_eq!(Metric::parse("nope"), None);
        assert!("nope".parse::<Metric>().unwrap_err().contains("ttft_ms"));
    }
}
