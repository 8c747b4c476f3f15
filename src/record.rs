//! One record per LLM call: identity, outcome, metrics. The unit of the crash-safe log
//! (`records.jsonl`) and of every analysis. A failed call is a record too.

use crate::backend::{BackendError, Generation};
use crate::spec::OptionValue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a unit's agents were run.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A single agent.
    #[default]
    Single,
    /// A pair's agents started together.
    Concurrent,
    /// The same pair run back to back (the measured sequential baseline for speedup).
    Sequential,
    /// An open-loop unit (`rate`): each agent run started on its planned arrival time,
    /// whether the earlier ones have answered or not.
    Open,
    /// A one-token call the runner makes after it changes the reload key (model, num_ctx,
    /// num_gpu): it takes the model load, so the calls that follow are warm. Stored as
    /// warm-up; for these records `rep` is 2 × the run-order position of the unit they
    /// precede, + 1 before a pair's sequential phase (one key per probe).
    Reload,
}

impl Phase {
    /// The word records, call ids and reports use (`single`, `concurrent`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Single => "single",
            Phase::Concurrent => "concurrent",
            Phase::Sequential => "sequential",
            Phase::Open => "open",
            Phase::Reload => "reload",
        }
    }
}

/// Workflow stage of a call.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The first call: the model analyses the corpus' data summary (a reload probe is
    /// stored as this stage too).
    #[default]
    Analysis,
    /// The second call: the model writes the report from the analysis. When the analysis
    /// call failed it is not sent, and its record is stored failed (`skipped_after_failure`).
    Report,
}

impl Stage {
    /// The word records and call ids use (`analysis`, `report`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Analysis => "analysis",
            Stage::Report => "report",
        }
    }
}

/// The key that makes a group of records atomic for resume: a phase of a unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PhaseKey {
    pub(crate) cell_id: String,
    pub(crate) rep: u32,
    pub(crate) warmup: bool,
    pub(crate) phase: Phase,
}

/// One LLM call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    // identity
    /// The experiment's name (`[experiment] name`).
    pub experiment: String,
    /// The run this call belongs to: its directory name under `results/<experiment>/`.
    pub run_id: String,
    /// The `[[arm]]` the cell comes from.
    pub arm: String,
    /// The cell (`<arm>-<8 hex>`, stable across runs and machines; see [`crate::plan::cell_id`]).
    pub cell_id: String,
    /// This agent's options as sent (only the set ones).
    pub options: BTreeMap<String, OptionValue>,
    /// "single", "A" or "B".
    pub agent: String,
    /// "chimera", "insight" or "collector".
    pub persona: String,
    /// `system` (the persona was sent as the system prompt) or `echo` (only shown in the
    /// report, as the seed system did). `None` in logs from before persona modes.
    #[serde(default)]
    pub persona_mode: Option<String>,
    /// The prompt set of the call (`sweep-1`, `chimera-2025`, `small-1`). `None` in logs from
    /// before prompt versions (they used `sweep-1`).
    #[serde(default)]
    pub prompt_version: Option<String>,
    /// The call's key in the run's call store (`calls.jsonl.zst`), where its request as sent
    /// and its full answer are kept: `<cell>/<r|w><rep>/<agent>/<phase>/<stage>`, with
    /// `~<k>` for the k-th further attempt of its phase. `None` for a call that was never
    /// sent (a report skipped after a failed analysis) and in older logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// How the unit's agents ran in this call's phase (or `reload` for a reload probe).
    pub phase: Phase,
    /// Which of the agent run's two calls this is.
    pub stage: Stage,
    /// 0-based repetition of the cell, counted separately for warm-up and measured units
    /// (reload probes number theirs differently: see [`Phase::Reload`]).
    pub rep: u32,
    /// A warm-up unit's call (or a reload probe): never in statistics.
    pub warmup: bool,
    /// Position of the unit in the run order.
    pub order: usize,
    /// RFC 3339 UTC time the call started.
    pub timestamp: String,
    /// The model name sent to the backend (the arm's `model`, else `[backend] model`).
    pub model: String,
    /// The server URL the call went to, or `embedded` for the in-process engine.
    pub endpoint: String,

    // outcome
    /// The call succeeded: the stream finished and the metric fields are filled.
    pub ok: bool,
    /// Why the call failed, as a stable word: the backend error's kind (`connection_refused`,
    /// `http_5xx`, `timeout_first_token`, … see `BackendError::kind`), or `corpus` /
    /// `skipped_after_failure` for a call never sent. `None` when `ok`.
    pub error_kind: Option<String>,
    /// The failure in words (the error's message); `None` when `ok`.
    pub error_message: Option<String>,
    /// Attempts made (1 = first try succeeded or no retry).
    pub attempts: u32,

    // client-side metrics (ms)
    /// Time to first token on the client's monotonic clock, ms: request written → first
    /// non-empty token chunk (includes any model load). `None` when no token arrived.
    pub ttft_ms: Option<f64>,
    /// Gaps between successive non-empty token chunks, ms, in stream order (empty with fewer
    /// than two chunks).
    pub itl_ms: Vec<f64>,
    /// Median of `itl_ms` (type-7), ms; `None` when there are no gaps.
    pub itl_p50_ms: Option<f64>,
    /// End-to-end latency on the client's clock, ms: request written → final chunk. `None`
    /// for a failed call.
    pub e2e_ms: Option<f64>,
    // server-side metrics (ms, counts)
    /// The server's model load time for this call, ms (Ollama `load_duration`; the embedded
    /// engine's model load + context creation, 0 when warm); `None` when the server does not
    /// report it (OpenAI-compatible servers).
    pub load_ms: Option<f64>,
    /// The server's prompt-processing time, ms (Ollama `prompt_eval_duration`, llama.cpp
    /// `timings.prompt_ms`, the embedded engine's prompt decode); `None` when not reported.
    pub prompt_eval_ms: Option<f64>,
    /// The server's token-generation time, ms (Ollama `eval_duration`, llama.cpp
    /// `timings.predicted_ms`, the embedded engine's decodes); `None` when not reported.
    pub eval_ms: Option<f64>,
    /// The server's whole-request time, ms (Ollama `total_duration`, the embedded engine's
    /// call time including a model load it waited for); `None` when not reported
    /// (OpenAI-compatible servers).
    pub total_ms: Option<f64>,
    /// Prompt tokens as counted per `tokens_source`; `None` when there is no count.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens as counted per `tokens_source`; `None` when there is no count.
    pub output_tokens: Option<u64>,
    /// output_tokens / eval_ms (server clock), tok/s.
    pub decode_tps: Option<f64>,
    /// (output_tokens − 1) / (e2e − ttft) (client clock), tok/s: see [`client_decode_tps`].
    pub e2e_tps: Option<f64>,
    /// A model (re)load is in this call: excluded from statistics by rule (see
    /// [`ColdReason`] for when, and `cold_reason` for why).
    pub cold: bool,
    /// Why the call is cold: `reload` (the runner changed the reload key), `unexpected_reload`
    /// (the server reloaded on its own: evicted by keep_alive, another client), `load_ms`
    /// (the server reported a load above the experiment's threshold, cause unknown).
    #[serde(default)]
    pub cold_reason: Option<ColdReason>,
    /// True when the prompt carried a unique nonce / the server cache was switched off.
    pub cache_defeated: bool,

    // placement in time (ms from the phase's start, monotonic) and the phase's wall time
    /// When the call's first attempt started, ms after the phase started (monotonic clock).
    pub start_offset_ms: f64,
    /// When the call's last attempt ended, ms after the phase started (monotonic clock).
    pub end_offset_ms: f64,
    /// Wall time of the whole phase (all its agents), ms; the same on every record of it.
    pub phase_wall_ms: f64,
    /// The whole agent run this call belongs to (ingest + both calls), ms.
    pub agent_wall_ms: f64,
    /// Open loop: when the agent run was planned to start, ms after the phase started
    /// (`None` in closed-loop phases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start_ms: Option<f64>,
    /// Open loop: how late the agent run really started against its plan, ms (the client's
    /// send-time error; a client that falls behind shows it here instead of silently
    /// becoming a closed loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_lag_ms: Option<f64>,
    /// Time the agent run spent ingesting the corpus, ms (charged to it, as the seeds'
    /// "ingest" split did); 0 for a reload probe.
    pub ingest_ms: f64,

    /// Where the token counts came from: `usage` (the server's counts), `tokenize` (the
    /// server's tokenize endpoint on the prompt and output text), `chunks` (counted content
    /// chunks: an approximation). `None` when there are no counts.
    #[serde(default)]
    pub tokens_source: Option<String>,
    /// What the server said it had loaded right after a reload probe (Ollama `/api/ps`):
    /// the offload `num_gpu` produced, the context length, keep_alive expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<crate::backend::LoadedModel>,
    /// What the server (or engine) reported about its own setup right after a reload probe:
    /// llama.cpp `/props` and `/slots`, the layer count Ollama offloads (`/api/show`), the
    /// embedded engine's offloaded layers. Reload probes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<serde_json::Value>,
    /// The server's queue over the call's phase (llama-server `/metrics`, sampled every
    /// 100 ms while the agents of a concurrent or open-loop phase ran): `None` where the
    /// server does not report one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_queue: Option<QueueWindow>,
    /// The GPUs over this call's window (energy, power, memory, utilisation): `None` without
    /// GPU telemetry (no NVIDIA driver or nvidia-smi), never zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuWindow>,

    // integrity
    /// How many records the call's phase group has, written on each of them by the store, so
    /// that resume can tell a complete phase from one cut short by a crash mid-write (0 in
    /// logs from before this field: taken as complete).
    #[serde(default)]
    pub phase_records: u32,
    /// Which attempt of the phase this is: 0 for the first, k for the k-th
    /// `sweep run --retry-failed` re-run. The latest attempt of a phase is the one that counts.
    #[serde(default)]
    pub retry: u32,
    /// Set by the records reader (never stored in the log): a later attempt replaced this one.
    #[serde(skip)]
    pub superseded: bool,
}

/// Why a call counts as cold (a model load is in its timings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColdReason {
    /// The first call after the runner changed the reload key (model, num_ctx, num_gpu).
    Reload,
    /// The server reloaded the model without the runner changing anything (keep_alive
    /// eviction, another client): seen in the server's loaded-model list, or as a load above
    /// the threshold right after the model was found unloaded.
    UnexpectedReload,
    /// The server reported `load_ms` above the experiment's cold threshold.
    LoadMs,
}

impl ColdReason {
    pub(crate) const ALL: [ColdReason; 3] = [
        ColdReason::Reload,
        ColdReason::UnexpectedReload,
        ColdReason::LoadMs,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ColdReason::Reload => "reload",
            ColdReason::UnexpectedReload => "unexpected_reload",
            ColdReason::LoadMs => "load_ms",
        }
    }
}

/// The client-clock decode rate, tok/s: the tokens generated after the first over
/// (e2e − TTFT). The first token arrives at TTFT, so that interval holds n − 1 tokens, not n
/// (vLLM's benchmark TPOT and AIPerf's inter-token latency divide by n − 1 the same way);
/// dividing n by it overstated the rate by n/(n − 1), 5% on a 20-token answer, and gave a
/// one-token call an absurd rate. `None` under two tokens or without a positive interval.
pub fn client_decode_tps(
    output_tokens: Option<u64>,
    e2e_ms: Option<f64>,
    ttft_ms: Option<f64>,
) -> Option<f64> {
    let (n, e2e, ttft) = (output_tokens?, e2e_ms?, ttft_ms?);
    (n >= 2 && e2e > ttft).then(|| (n - 1) as f64 / ((e2e - ttft) / 1000.0))
}

impl Record {
    /// The phase group this record belongs to (cell, rep, warm-up, phase): the unit the store
    /// writes atomically and resume skips.
    pub fn phase_key(&self) -> PhaseKey {
        PhaseKey {
            cell_id: self.cell_id.clone(),
            rep: self.rep,
            warmup: self.warmup,
            phase: self.phase,
        }
    }

    /// Fills the metric fields from a finished generation.
    pub fn set_generation(&mut self, g: &Generation) {
        self.ok = true;
        self.error_kind = None;
        self.error_message = None;
        self.ttft_ms = g.timing.ttft_ms;
        self.itl_p50_ms = g.timing.itl_p50_ms();
        self.itl_ms = g.timing.itl_ms.clone();
        self.e2e_ms = Some(g.timing.e2e_ms);
        let s = &g.server;
        self.load_ms = s.load_ms;
        self.prompt_eval_ms = s.prompt_eval_ms;
        self.eval_ms = s.eval_ms;
        self.total_ms = s.total_ms;
        self.prompt_tokens = s.prompt_tokens;
        self.output_tokens = s.output_tokens;
        self.decode_tps = match (s.output_tokens, s.eval_ms) {
            (Some(n), Some(ms)) if ms > 0.0 => Some(n as f64 / (ms / 1000.0)),
            _ => None,
        };
        self.e2e_tps = client_decode_tps(s.output_tokens, Some(g.timing.e2e_ms), g.timing.ttft_ms);
        self.tokens_source = s
            .tokens_source
            .clone()
            .or_else(|| s.output_tokens.map(|_| "usage".to_string()));
    }

    /// Marks the call cold for `reason`, keeping the first reason given.
    pub fn mark_cold(&mut self, reason: ColdReason) {
        self.cold = true;
        self.cold_reason.get_or_insert(reason);
    }

    /// Marks the record failed with a typed backend error.
    pub fn set_error(&mut self, e: &BackendError) {
        self.ok = false;
        self.error_kind = Some(e.kind().to_string());
        self.error_message = Some(e.to_string());
    }
}

/// What the server reported about its queue over one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueWindow {
    /// Most requests waiting for a slot in any sample.
    pub max_deferred: u32,
    /// Most requests in slots in any sample.
    pub max_processing: u32,
    /// Samples taken.
    pub samples: u32,
}

impl QueueWindow {
    /// Adds one sample.
    pub fn add(&mut self, q: crate::backend::ServerQueue) {
        self.max_deferred = self.max_deferred.max(q.deferred);
        self.max_processing = self.max_processing.max(q.processing);
        self.samples += 1;
    }
}

/// What the GPUs did during one call (or phase): computed by telemetry
/// (`crate::telemetry::window`), stored in the record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuWindow {
    /// This call's share of the GPUs' energy over its window: the energy of each stretch of
    /// time divided by the number of the phase's calls running then (a pair's concurrent
    /// calls split it). J. `None` without readings covering the window.
    pub energy_j: Option<f64>,
    /// The GPUs' whole energy over the window, J.
    pub window_energy_j: Option<f64>,
    /// `counter` (the driver's cumulative energy counter) or `power` (power samples
    /// integrated with the trapezoid rule).
    pub energy_source: Option<String>,
    /// Mean power over the window, W (all GPUs).
    pub mean_power_w: Option<f64>,
    /// Highest power seen in the window, W (all GPUs).
    pub max_power_w: Option<f64>,
    /// Highest memory in use from the last sample before the window to the first after it,
    /// MiB (all GPUs, every process).
    pub peak_memory_mib: Option<f64>,
    /// Time-weighted mean utilisation over the window, % (mean over GPUs).
    pub mean_util_pct: Option<f64>,
    /// Samples inside the window (0: the figures are interpolated from the neighbours).
    pub samples: u32,
    /// GPUs sampled.
    pub gpus: u32,
    /// `nvml` or `nvidia-smi`.
    pub source: String,
}
