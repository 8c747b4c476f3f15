//! The validated experiment: the types the plan, runner and reports read, with their
//! defaults (`Default`): validation fills what the file leaves out from these, never from
//! literals of its own.

use super::*;

/// Run order of the plan's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Randomized blocks (the default): every round (one rep of every cell) visits the
    /// reload groups in a fresh seeded order, cells shuffled inside each group, a reload
    /// probe after each reload. No factor level is one block of time, so drift over the run
    /// (heat, other load, server state) cannot read as a num_ctx or num_gpu effect.
    Blocks,
    /// Reload-minimizing: each reload group once, all its rounds inside (cells shuffled per
    /// round). Fewest reloads, but a factor level is one block of time: `plan` warns.
    Interleaved,
    /// Every repetition round shuffles all cells, ignoring reload groups (more reloads).
    Random,
    /// File order, every repetition of a cell back to back.
    Sequential,
}

impl Order {
    /// The word the experiment file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Blocks => "blocks",
            Order::Interleaved => "interleaved",
            Order::Random => "random",
            Order::Sequential => "sequential",
        }
    }
}

/// `[backend] kind`: what serves the LLM calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// An Ollama server, over its native API (`/api/generate` or `/api/chat`).
    Ollama,
    /// An OpenAI-compatible server (streamed `POST /v1/chat/completions`, e.g. llama.cpp's
    /// server).
    Openai,
    /// The llama.cpp engine in-process, running a GGUF file (`model_path`).
    Embedded,
}

impl BackendKind {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            BackendKind::Ollama => "ollama",
            BackendKind::Openai => "openai",
            BackendKind::Embedded => "embedded",
        }
    }

    /// What an agent that sends no options runs with, in the reports' words (the seeds'
    /// "Ollama defaults" only where it is true). The embedded engine's figures are
    /// `backend::embedded::DEFAULT_NUM_CTX` and `DEFAULT_NUM_PREDICT` (a test keeps them equal).
    pub fn defaults_label(&self) -> &'static str {
        match self {
            BackendKind::Ollama => "Ollama defaults",
            BackendKind::Openai => "server defaults",
            BackendKind::Embedded => "engine defaults (num_ctx 2048, 128 tokens)",
        }
    }
}

/// Which Ollama endpoint carries the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OllamaApi {
    /// `POST /api/generate`: a prompt plus a `system` field (the default).
    Generate,
    /// `POST /api/chat`: the system prompt and the prompt as messages.
    Chat,
}

/// `[backend.retry]`: how a failed call is tried again. Only errors that may pass are
/// retried (`BackendError::retryable`: not a missing model, an invalid request or a 4xx other
/// than 429).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts per call (1 = no retry).
    pub attempts: u32,
    /// Backoff before retry k is `backoff_ms * 2^(k-1)`.
    pub backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 2,
            backoff_ms: 500,
        }
    }
}

/// Per-call deadlines, seconds; a call past one fails with a `timeout_*` error kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    /// Connecting to the server (`connect_timeout_s`, default 10).
    pub connect_s: f64,
    /// Request sent → first token (`first_token_timeout_s`, default `total_s`).
    pub first_token_s: f64,
    /// Request sent → end of the stream (`timeout_s`, default 300).
    pub total_s: f64,
}

impl Default for Timeouts {
    /// 10 s to connect, 300 s for the whole call, the first token within the whole call's
    /// deadline (validation sets `first_token_s` to the file's `timeout_s` when only that
    /// is given).
    fn default() -> Self {
        Self {
            connect_s: 10.0,
            first_token_s: 300.0,
            total_s: 300.0,
        }
    }
}

/// `[backend]`, validated: which server (or the embedded engine), model and call policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendConfig {
    /// What serves the calls.
    pub kind: BackendKind,
    /// One or more endpoints sharing the plan (empty for the embedded engine).
    pub urls: Vec<String>,
    /// The model every arm uses unless it names its own (the embedded engine defaults to
    /// `gemma-3-270m-q4_k_m`).
    pub model: String,
    /// GGUF file for the embedded engine.
    pub model_path: Option<PathBuf>,
    /// Which Ollama endpoint carries the prompt (`api`; Ollama only).
    pub ollama_api: OllamaApi,
    /// Per-call deadlines.
    pub timeouts: Timeouts,
    /// Name of the environment variable holding a bearer token; the token itself is never stored.
    pub api_key_env: Option<String>,
    /// Retries of a failed call (default: 2 attempts, 500 ms backoff).
    pub retry: RetryPolicy,
    /// Threads for the embedded engine (default: physical cores).
    pub threads: Option<u32>,
    /// Ask the server to reuse its prompt cache. Off by default: caches make TTFT lie.
    pub cache_prompt: bool,
    /// Extra fields passed through in OpenAI-compatible request bodies.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// A new connection for every call, none kept idle: set under `[server]`, whose server
    /// restarts on the same port, where a pooled connection to the old process would fail
    /// the new one's first call.
    #[serde(default)]
    pub fresh_connections: bool,
}

/// `[corpus]`: the directory of files every agent ingests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusConfig {
    pub(crate) path: PathBuf,
    pub(crate) max_file_bytes: u64,
}

/// Default `[corpus] max_file_bytes`: 16 MiB (a larger benchmark file is skipped with a
/// warning rather than read whole).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Agent kind of an arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// One agent per unit (phase `single`).
    Single,
    /// Two agents, `A` and `B`: run together (`concurrent`), then back to back (`sequential`).
    Pair,
}

/// System-prompt persona of an agent: the seed system's two personas, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Persona {
    /// The Chimera analysis agent (no persona; the single agent of the seeds).
    Chimera,
    /// InsightAgent, Agent B of the seed pairs (the default for `b`).
    Insight,
    /// DataCollector-9000, Agent A of the seed pairs (the default for `a`).
    Collector,
}

impl Persona {
    /// The word the experiment file and the records use.
    pub fn as_str(self) -> &'static str {
        match self {
            Persona::Chimera => "chimera",
            Persona::Insight => "insight",
            Persona::Collector => "collector",
        }
    }
}

/// What happens to an agent's persona text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonaMode {
    /// Sent as the system prompt (the default), and shown in the report.
    #[default]
    System,
    /// Shown in the report, not sent: what the seed system did (it printed the persona but
    /// never sent it), to reproduce its requests, token counts and durations.
    Echo,
}

impl PersonaMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PersonaMode::System => "system",
            PersonaMode::Echo => "echo",
        }
    }
}

/// The prompt set an agent's two calls use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptVersion {
    /// sweep's prompts (the default): the seed system's analysis prompt, and a report prompt
    /// with a sample of the corpus' JSON metrics.
    #[default]
    #[serde(rename = "sweep-1")]
    Sweep1,
    /// The seed system's prompts byte for byte after sweep's nonce line: its analysis prompt,
    /// and its report prompt "in the style of Technical Report 108" carrying the full metric
    /// set from the CSV and JSON files, with its own extraction of findings and
    /// recommendations (Chimeraforge `src/rust/demo_multiagent/src/main.rs`).
    #[serde(rename = "chimera-2025")]
    Chimera2025,
    /// Short prompts for a small base model (the quickstart's Gemma 3 270M), which copies the
    /// start of most prompts: a title line, the nonce, a listing (the data summary; measured
    /// values before the analysis' notes), the question last.
    #[serde(rename = "small-1")]
    Small1,
}

impl PromptVersion {
    pub(crate) const ALL: [PromptVersion; 3] = [
        PromptVersion::Sweep1,
        PromptVersion::Chimera2025,
        PromptVersion::Small1,
    ];

    /// The name the experiment file, the records and the manifest use.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptVersion::Sweep1 => "sweep-1",
            PromptVersion::Chimera2025 => "chimera-2025",
            PromptVersion::Small1 => "small-1",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Position of an agent within its arm. Stored as its word: `single`, `A`, `B`, or the
/// copy's number `1`..`N` at a workload level of N agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Slot {
    /// The agent of a single arm.
    Single,
    /// A pair's first agent (the seeds' DataCollector by default).
    A,
    /// A pair's second agent (the seeds' InsightAgent by default).
    B,
    /// Copy k (1-based) of a single arm's agent, at a level of `agents` > 1.
    Copy(u16),
}

impl Slot {
    /// The word records, call ids and titles use.
    pub(crate) fn as_str(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Slot::Single => "single".into(),
            Slot::A => "A".into(),
            Slot::B => "B".into(),
            Slot::Copy(k) => k.to_string().into(),
        }
    }
}

impl From<Slot> for String {
    fn from(s: Slot) -> String {
        s.as_str().into_owned()
    }
}

impl TryFrom<String> for Slot {
    type Error = String;
    fn try_from(s: String) -> Result<Slot, String> {
        match s.as_str() {
            "single" => Ok(Slot::Single),
            "A" => Ok(Slot::A),
            "B" => Ok(Slot::B),
            n => n
                .parse::<u16>()
                .ok()
                .filter(|k| *k >= 1)
                .map(Slot::Copy)
                .ok_or_else(|| format!("unknown agent slot {s:?}: expected single, A, B or 1..")),
        }
    }
}

/// Most agents one cell may run at once (`agents`): a unit of 64 agents is 128 calls in
/// flight; a larger level is a rate (open-loop) question, not a concurrency one.
pub const MAX_AGENTS: u32 = 64;

/// Highest open-loop `rate`, arrivals per second.
pub const MAX_RATE: f64 = 1000.0;
/// Default `requests` of an open-loop arm: arrivals per unit.
pub const DEFAULT_OPEN_LOOP_REQUESTS: u32 = 16;

/// How an open-loop unit's arrivals are spaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exponential gaps of mean 1 / rate from a seeded generator (a Poisson process): the
    /// default, the arrival pattern of independent users.
    #[default]
    Poisson,
    /// Every 1 / rate seconds exactly.
    Constant,
}

impl Arrivals {
    /// The word the experiment file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Arrivals::Poisson => "poisson",
            Arrivals::Constant => "constant",
        }
    }
}

/// An open-loop arm's arrival process: the pattern and how many per unit (the rate is the
/// cell's `rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpenLoop {
    /// Spacing of the arrivals.
    pub arrivals: Arrivals,
    /// Arrivals (agent runs) per unit when the arm gives a count (ignored with a window).
    pub requests: u32,
    /// `duration_s` in ms: the schedule covers this window, with round(rate × window)
    /// arrivals per cell (`None`: a request count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u32>,
}

impl OpenLoop {
    /// Arrivals per unit at `rate` per second: the arm's count, or round(rate × window)
    /// (at least one) over a window.
    pub fn arrivals_at(&self, rate: f64) -> u32 {
        match self.window_ms {
            None => self.requests,
            Some(w) => ((rate * f64::from(w) / 1000.0).round() as u32).max(1),
        }
    }
}

/// One agent of an arm before grid expansion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberTemplate {
    pub(crate) slot: Slot,
    pub(crate) persona: Persona,
    pub(crate) persona_mode: PersonaMode,
    pub(crate) prompt_version: PromptVersion,
    pub(crate) options: ModelOptions,
    pub(crate) endpoint: Option<String>,
    pub(crate) model: Option<String>,
}

/// One validated `[[arm]]`: an agent kind, its members and the grid points its cells take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub(crate) name: String,
    pub(crate) agent: AgentKind,
    pub(crate) members: Vec<MemberTemplate>,
    /// Grid points merged over every member's options; one empty point when there is no grid.
    pub points: Vec<ModelOptions>,
    /// `speedup = true`: a unit of N > 1 agents also runs them back to back, the measured
    /// sequential baseline of speedup and efficiency (as a pair always does).
    #[serde(default)]
    pub speedup: bool,
    /// The arrival process of a `rate` arm (`None`: closed loop).
    #[serde(default)]
    pub open_loop: Option<OpenLoop>,
}

/// `[compare]`: what the regression gate checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareConfig {
    pub(crate) alpha: f64,
    /// Metric → relative threshold (0.05 = 5%); defaults from [`crate::metrics::METRICS`].
    pub thresholds: BTreeMap<Metric, f64>,
    /// Above this share of failed calls on either side the comparison is inconclusive.
    pub max_failed_share: f64,
    /// True when the file has a `[compare]` table (the nightly is meant to gate on it).
    pub declared: bool,
}

impl Default for CompareConfig {
    fn default() -> Self {
        let thresholds = crate::metrics::METRICS
            .iter()
            .filter_map(|d| d.default_threshold.map(|t| (d.metric, t)))
            .collect();
        Self {
            alpha: 0.05,
            thresholds,
            max_failed_share: 0.10,
            declared: false,
        }
    }
}

/// `[analysis]`: the rules that decide what is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    /// A call whose server-reported load time exceeds this is cold even when the runner did
    /// not change the reload key. Ollama reports a few ms (varying per call) on a loaded
    /// model and hundreds of ms to seconds on a reload.
    pub cold_load_ms: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            cold_load_ms: 250.0,
        }
    }
}

/// `[slo]`, validated: what a call must meet to count toward goodput, and the share of a
/// unit's calls that must meet it for the unit's workload level to be within capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloConfig {
    /// Time to first token at most, ms.
    pub ttft_ms: Option<f64>,
    /// Mean inter-token latency at most, ms: (e2e − TTFT) / (output tokens − 1), the TPOT
    /// of vLLM's benchmark (a one-token answer has none and meets this limit).
    pub itl_ms: Option<f64>,
    /// End-to-end latency at most, ms.
    pub e2e_ms: Option<f64>,
    /// Percent of a unit's calls that must meet every limit (default 90).
    pub percentile: f64,
}

/// Default `[slo] percentile`: 90% of a unit's calls.
pub const DEFAULT_SLO_PERCENTILE: f64 = 90.0;

impl SloConfig {
    /// True when a call with these figures meets every limit (a failed call never does).
    pub fn met_by(
        &self,
        ok: bool,
        ttft_ms: Option<f64>,
        itl_ms: Option<f64>,
        e2e_ms: Option<f64>,
    ) -> bool {
        let within = |limit: Option<f64>, v: Option<f64>, none_meets: bool| match (limit, v) {
            (None, _) => true,
            (Some(l), Some(v)) => v <= l,
            (Some(_), None) => none_meets,
        };
        ok && within(self.ttft_ms, ttft_ms, false)
            && within(self.itl_ms, itl_ms, true)
            && within(self.e2e_ms, e2e_ms, false)
    }

    /// `TTFT ≤ 2000 ms, ITL ≤ 100 ms for 90% of calls`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, v) in [
            ("TTFT", self.ttft_ms),
            ("ITL", self.itl_ms),
            ("e2e", self.e2e_ms),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name} ≤ {v} ms"));
            }
        }
        format!("{} for {}% of calls", parts.join(", "), self.percentile)
    }
}

/// `[experiment]`, validated: name, repetitions, order and reference arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// Measured repetitions per cell (1..=100 000, default 5).
    pub repetitions: u32,
    pub(crate) warmup: u32,
    /// Seed of the run order's shuffles (default 42): the same seed gives the same order.
    pub seed: u64,
    /// Run order of the units (default [`Order::Blocks`]).
    pub order: Order,
    /// Arm every comparison is made against.
    pub reference: String,
}

impl Default for Experiment {
    /// 5 reps and 1 warm-up per cell, seed 42, randomized blocks; the name and reference
    /// come from the file.
    fn default() -> Self {
        Self {
            name: String::new(),
            description: None,
            repetitions: 5,
            warmup: 1,
            seed: 42,
            order: Order::Blocks,
            reference: String::new(),
        }
    }
}

/// `[run]`: how the runner executes the plan and when it pauses for a failing backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Units in flight at once (1 = strictly one after another).
    pub concurrency: u32,
    pub(crate) results_dir: PathBuf,
    /// Refuse a plan of more LLM calls than this (checked before the grid is expanded).
    pub max_calls: u64,
    /// Failure policy: when more than this share of the last [`FAILED_SHARE_WINDOW`] calls
    /// failed, the runner pauses and probes the backend before it fails more phases.
    pub max_failed_share: f64,
    /// Failure policy: this many calls in a row that could not reach the backend
    /// (connection refused, connect error or connect timeout) pause the run the same way.
    pub unreachable_streak: u32,
    /// How long a paused run probes the backend (with backoff) before it gives up, stores the
    /// phases that met the outage as failed and stops (exit 4, `--retry-failed` resumes).
    pub outage_wait_s: f64,
}

/// Default `[run] max_calls`: a million calls is weeks of GPU time.
pub const DEFAULT_MAX_CALLS: u64 = 1_000_000;
/// Calls over which `[run] max_failed_share` is measured (the most recent ones).
pub const FAILED_SHARE_WINDOW: usize = 20;
/// Default `[run] max_failed_share`: half of the last 20 calls failed.
pub const DEFAULT_MAX_FAILED_SHARE: f64 = 0.5;
/// Default `[run] unreachable_streak`.
pub const DEFAULT_UNREACHABLE_STREAK: u32 = 3;
/// Default `[run] outage_wait_s`: five minutes covers a server restart or a model pull.
pub const DEFAULT_OUTAGE_WAIT_S: f64 = 300.0;
/// Longest timeout or wait the file may set: one day (anything longer is a typo, and
/// `1e300` seconds would overflow the clock).
pub const MAX_SECONDS: f64 = 86_400.0;

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            concurrency: 1,
            results_dir: PathBuf::from("results"),
            max_calls: DEFAULT_MAX_CALLS,
            max_failed_share: DEFAULT_MAX_FAILED_SHARE,
            unreachable_streak: DEFAULT_UNREACHABLE_STREAK,
            outage_wait_s: DEFAULT_OUTAGE_WAIT_S,
        }
    }
}

/// A validated experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Where the file was read from.
    pub file: PathBuf,
    /// The file's text, copied into every run manifest.
    pub source: String,
    /// sha256 of `source`.
    pub hash: String,
    /// `[experiment]`.
    pub experiment: Experiment,
    pub(crate) backend: BackendConfig,
    pub(crate) corpus: CorpusConfig,
    pub(crate) arms: Vec<Arm>,
    pub(crate) compare: CompareConfig,
    pub(crate) analysis: AnalysisConfig,
    pub(crate) run: RunConfig,
    /// `[backend] num_parallel`: the requests the server runs at once per model (Ollama's
    /// `OLLAMA_NUM_PARALLEL`), as the user declares it; `None` = unknown. Only informs the
    /// shared-endpoint warning of [`crate::plan::warnings`].
    #[serde(default)]
    pub num_parallel: Option<u32>,
    /// `[[table]]`: the paper tables `sweep report` writes (its defaults when empty).
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// `[server]`: the server sweep starts for each server configuration (`None`: an
    /// external server, or the embedded engine).
    #[serde(default)]
    pub server: Option<ServerConfig>,
    /// `[slo]`: the objective goodput and capacity are measured against (`None`: neither).
    #[serde(default)]
    pub slo: Option<SloConfig>,
}

/// Default GGUF location for the embedded engine (fetched by `scripts/fetch-model.sh`).
pub const DEFAULT_MODEL_PATH: &str = "models/gemma-3-270m-q4_k_m.gguf";
/// The model name the embedded engine and a managed llama-server report for the default
/// GGUF (its file stem).
pub const DEFAULT_MODEL: &str = "gemma-3-270m-q4_k_m";
