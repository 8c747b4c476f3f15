//! The declarative experiment file: parse, validate, and hand the plan a checked [`Spec`].
//!
//! Every error names the file, line and column and what was expected; validation collects
//! all semantic problems at once rather than stopping at the first.

mod diag;
mod options;
mod raw;
mod server;
mod table;

pub use diag::{Diagnostic, SourceMap};
pub use options::{ModelOptions, OptionValue, KV_CACHE_TYPES, OPTION_NAMES, SERVER_OPTION_NAMES};
pub use server::{
    route, separate_servers, Launch, Preset, Route, ServerConfig, DEFAULT_READY_TIMEOUT_S,
    DEFAULT_STOP_GRACE_S,
};
pub use table::{BoldRule, CiStyle, Columns, Statistic, TableSpec};

/// Words the validator accepts for `order`, backend `kind`, `api`, `agent` and `persona`
/// (the JSON Schema lists the same constants).
pub const ORDER_WORDS: &[&str] = &["blocks", "interleaved", "grouped", "random", "sequential"];
pub(crate) const BACKEND_KIND_WORDS: &[&str] = &["ollama", "openai", "embedded"];
pub(crate) const API_WORDS: &[&str] = &["generate", "chat"];
pub(crate) const AGENT_WORDS: &[&str] = &["single", "pair"];
pub(crate) const PERSONA_WORDS: &[&str] = &["chimera", "insight", "collector"];
/// `persona_mode` values.
pub const PERSONA_MODE_WORDS: &[&str] = &["system", "echo"];

/// The JSON Schema of the experiment file, generated from the structs that parse it
/// (`sweep schema`; editors pick it up through the `#:schema` directive).
pub fn json_schema() -> serde_json::Value {
    let mut s = schemars::schema_for!(raw::RawSpec);
    s.insert(
        "$id".into(),
        "https://sweep.invalid/experiment.schema.json".into(),
    );
    s.to_value()
}

use crate::metrics::Metric;
use raw::{GridTable, OptTable, RawArm, RawSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Why an experiment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read (missing, a directory, no permission).
    #[error("{}: cannot read experiment file: {source}", path.display())]
    Io {
        /// The experiment file as given.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid experiment: every problem found, each located.
    #[error("{}", render_diags(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render_diags(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl SpecError {
    /// The located problems of an invalid file (none for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Invalid(d) => d,
            SpecError::Io { .. } => &[],
        }
    }
}

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

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Position of an agent within its arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Slot {
    /// The agent of a single arm.
    #[serde(rename = "single")]
    Single,
    /// A pair's first agent (the seeds' DataCollector by default).
    #[serde(rename = "A")]
    A,
    /// A pair's second agent (the seeds' InsightAgent by default).
    #[serde(rename = "B")]
    B,
}

impl Slot {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Slot::Single => "single",
            Slot::A => "A",
            Slot::B => "B",
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
}

/// Default GGUF location for the embedded engine (fetched by `scripts/fetch-model.sh`).
pub const DEFAULT_MODEL_PATH: &str = "models/gemma-3-270m-q4_k_m.gguf";

impl Spec {
    /// Reads and validates an experiment file. Relative paths inside it are resolved
    /// against the current directory (the usual place to run sweep from: the repo root).
    ///
    /// Unlike [`Spec::parse`], it also checks what the file points at on this machine: the
    /// corpus must be an existing directory (a stored copy of a file, parsed later on
    /// another machine, need not).
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let bytes = std::fs::read(path).map_err(|source| SpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return Err(not_utf8(path, e.as_bytes(), e.utf8_error().valid_up_to())),
        };
        Spec::validate(path, &text, true)
    }

    /// Validates experiment-file text; `file` is only used in messages.
    pub fn parse(file: &Path, text: &str) -> Result<Spec, SpecError> {
        Spec::validate(file, text, false)
    }

    fn validate(file: &Path, text: &str, check_paths: bool) -> Result<Spec, SpecError> {
        let map = SourceMap::new(file, text);
        // TOML allows no control character but tab and line ends, anywhere: one is binary
        // data (or a file in another encoding), better named as such than as a syntax error.
        if let Some((at, c)) = text
            .char_indices()
            .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(SpecError::Invalid(vec![map.at(
                Some(at..at),
                format!(
                    "binary data: control character U+{:04X} (an experiment file is TOML text)",
                    c as u32
                ),
            )]));
        }
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            SpecError::Invalid(vec![map.at(e.span(), humanize_toml_message(e.message()))])
        })?;
        let mut v = Validator {
            map: &map,
            diags: Vec::new(),
            limits: (1, DEFAULT_MAX_CALLS),
            check_paths,
            prompt_version: PromptVersion::default(),
            persona_mode: PersonaMode::default(),
            kind: BackendKind::Ollama,
            server: None,
        };
        let spec = v.spec(file, text, raw);
        if v.diags.is_empty() {
            Ok(spec)
        } else {
            Err(SpecError::Invalid(v.diags))
        }
    }

    pub(crate) fn arm(&self, name: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.name == name)
    }
}

/// A number as a person would write it: `1e300` rather than three hundred digits.
fn number(x: f64) -> String {
    if x.is_finite() && x.abs() >= 1e9 {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// Binary or non-UTF-8 input: located at the first byte that is not UTF-8 text.
fn not_utf8(file: &Path, bytes: &[u8], valid_up_to: usize) -> SpecError {
    let prefix = std::str::from_utf8(&bytes[..valid_up_to]).unwrap_or_default();
    let byte = bytes.get(valid_up_to).copied().unwrap_or_default();
    let map = SourceMap::new(file, prefix);
    SpecError::Invalid(vec![map.at(
        Some(valid_up_to..valid_up_to),
        format!(
            "not UTF-8 text: byte 0x{byte:02x} at offset {valid_up_to} (an experiment file is \
             TOML, which is UTF-8; is this a binary file or another encoding?)"
        ),
    )])
}

/// toml/serde messages speak of "sequence" and "map"; the file speaks of arrays and tables.
fn humanize_toml_message(m: &str) -> String {
    let m = m.trim_end().replace('\n', "; ");
    let m = m
        .replace("a sequence", "an array")
        .replace("a map", "a table")
        .replace("struct Raw", "table ");
    let mut out = m.to_string();
    if out.starts_with("missing field `") {
        out = format!("{out} (a required key is absent)");
    }
    out
}

struct Validator<'a> {
    map: &'a SourceMap<'a>,
    diags: Vec<Diagnostic>,
    /// (units per cell = repetitions + warm-up, `[run] max_calls`) for the grid bound.
    limits: (u32, u64),
    /// Check paths on this machine (the corpus directory).
    check_paths: bool,
    /// `[experiment]` defaults that arms and agents inherit.
    prompt_version: PromptVersion,
    persona_mode: PersonaMode,
    /// `[backend] kind` and `[server]`: which options a cell can carry (see [`route`]).
    kind: BackendKind,
    server: Option<ServerConfig>,
}

fn span_of<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Validator<'_> {
    fn err(&mut self, span: Option<Range<usize>>, msg: impl Into<String>) {
        let d = self.map.at(span, msg);
        // One grid axis checked value by value says a problem of the axis once per line.
        if !self
            .diags
            .iter()
            .any(|x| x.line == d.line && x.message == d.message)
        {
            self.diags.push(d);
        }
    }

    fn int_in(&mut self, v: &Spanned<i64>, what: &str, min: i64, max: i64) -> i64 {
        let x = *v.get_ref();
        if x < min || x > max {
            self.err(
                span_of(v),
                format!("{what} must be between {min} and {max}, found {x}"),
            );
            return min;
        }
        x
    }

    /// A timeout: positive, finite, at most [`MAX_SECONDS`].
    fn positive_f64(&mut self, v: &Spanned<f64>, what: &str) -> f64 {
        let x = *v.get_ref();
        if !(x.is_finite() && x > 0.0 && x <= MAX_SECONDS) {
            self.err(
                span_of(v),
                format!(
                    "{what} must be a positive number of seconds up to {MAX_SECONDS} (one day), found {}",
                    number(x)
                ),
            );
            return 1.0;
        }
        x
    }

    /// A wait in seconds from `min` to [`MAX_SECONDS`].
    fn seconds_in(&mut self, v: &Spanned<f64>, what: &str, min: f64) -> f64 {
        let x = *v.get_ref();
        if !(x.is_finite() && x >= min && x <= MAX_SECONDS) {
            self.err(
                span_of(v),
                format!(
                    "{what} must be a number of seconds from {min} to {MAX_SECONDS} (one day), found {}",
                    number(x)
                ),
            );
            return min;
        }
        x
    }

    fn failed_share(&mut self, v: &Spanned<f64>) -> f64 {
        let x = *v.get_ref();
        if x > 0.0 && x <= 1.0 {
            return x;
        }
        self.err(
            span_of(v),
            format!("max_failed_share must be a share above 0 and at most 1 (0.5 = half of the last {FAILED_SHARE_WINDOW} calls; 1 = never pause for failures), found {x}"),
        );
        DEFAULT_MAX_FAILED_SHARE
    }

    fn spec(&mut self, file: &Path, text: &str, raw: RawSpec) -> Spec {
        let hash = hex(&Sha256::digest(text.as_bytes()));
        let e = raw.experiment.into_inner();
        let name = e.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            self.err(
                span_of(&e.name),
                format!("experiment name must be a non-empty word of letters, digits, '_', '-' or '.' (it names a results folder), found {:?}", e.name.get_ref()),
            );
        }
        let repetitions = e
            .repetitions
            .as_ref()
            .map(|r| self.int_in(r, "repetitions", 1, 100_000))
            .unwrap_or(5) as u32;
        let warmup = e
            .warmup
            .as_ref()
            .map(|r| self.int_in(r, "warmup", 0, 1000))
            .unwrap_or(1) as u32;
        let seed = e
            .seed
            .as_ref()
            .map(|r| self.int_in(r, "seed", 0, i64::MAX))
            .unwrap_or(42) as u64;
        let order = match e.order.as_ref().map(|o| o.get_ref().as_str()) {
            None | Some("blocks") => Order::Blocks,
            Some("interleaved") | Some("grouped") => Order::Interleaved,
            Some("random") => Order::Random,
            Some("sequential") => Order::Sequential,
            Some(other) => {
                let span = e.order.as_ref().and_then(span_of);
                self.err(
                    span,
                    format!("order must be \"blocks\" (randomized blocks, the default), \"interleaved\" (fewest reloads), \"random\" or \"sequential\", found {other:?}"),
                );
                Order::Blocks
            }
        };

        self.prompt_version = self.prompt_version(&e.prompt_version, PromptVersion::default());
        self.persona_mode = self.persona_mode(&e.persona_mode, PersonaMode::default());
        let num_parallel = raw
            .backend
            .get_ref()
            .num_parallel
            .as_ref()
            .map(|n| self.int_in(n, "num_parallel", 1, 1024) as u32);
        self.kind = match raw.backend.get_ref().kind.get_ref().as_str() {
            "openai" => BackendKind::Openai,
            "embedded" => BackendKind::Embedded,
            _ => BackendKind::Ollama,
        };
        self.server = raw.server.map(|s| self.server(s));
        let backend = self.backend(raw.backend);
        let corpus = {
            let c = raw.corpus.into_inner();
            if c.path.get_ref().trim().is_empty() {
                self.err(span_of(&c.path), "corpus path must not be empty");
            }
            let max_file_bytes = c
                .max_file_bytes
                .as_ref()
                .map(|m| self.int_in(m, "max_file_bytes", 1, i64::MAX))
                .unwrap_or(16 * 1024 * 1024) as u64;
            let path = PathBuf::from(c.path.get_ref());
            if self.check_paths && !c.path.get_ref().trim().is_empty() {
                self.corpus_dir(&c.path, &path);
            }
            CorpusConfig {
                path,
                max_file_bytes,
            }
        };

        let run = match raw.run {
            None => RunConfig::default(),
            Some(r) => {
                let r = r.into_inner();
                RunConfig {
                    concurrency: r
                        .concurrency
                        .as_ref()
                        .map(|c| self.int_in(c, "concurrency", 1, 1024))
                        .unwrap_or(1) as u32,
                    results_dir: r
                        .results_dir
                        .map(|d| PathBuf::from(d.into_inner()))
                        .unwrap_or_else(|| PathBuf::from("results")),
                    max_calls: r
                        .max_calls
                        .as_ref()
                        .map(|c| self.int_in(c, "max_calls", 1, i64::MAX))
                        .unwrap_or(DEFAULT_MAX_CALLS as i64) as u64,
                    max_failed_share: r
                        .max_failed_share
                        .as_ref()
                        .map(|v| self.failed_share(v))
                        .unwrap_or(DEFAULT_MAX_FAILED_SHARE),
                    unreachable_streak: r
                        .unreachable_streak
                        .as_ref()
                        .map(|c| self.int_in(c, "unreachable_streak", 1, 10_000))
                        .unwrap_or(i64::from(DEFAULT_UNREACHABLE_STREAK))
                        as u32,
                    outage_wait_s: r
                        .outage_wait_s
                        .as_ref()
                        .map(|v| self.seconds_in(v, "outage_wait_s", 0.0))
                        .unwrap_or(DEFAULT_OUTAGE_WAIT_S),
                }
            }
        };
        self.limits = (repetitions + warmup, run.max_calls);
        let mut arms = Vec::new();
        let mut seen: BTreeMap<String, Range<usize>> = BTreeMap::new();
        match &raw.arms {
            None => self.err(
                None,
                "no [[arm]] tables: an experiment needs at least one arm (agent + options)",
            ),
            Some(list) if list.get_ref().is_empty() => self.err(
                span_of(list),
                "no [[arm]] tables: an experiment needs at least one arm",
            ),
            _ => {}
        }
        for arm in raw.arms.into_iter().flat_map(|a| a.into_inner()) {
            let span = arm.span();
            let arm = arm.into_inner();
            let aname = arm.name.get_ref().clone();
            if let Some(first) = seen.get(&aname) {
                let (line, _) = {
                    let d = self.map.at(Some(first.clone()), "");
                    (d.line, d.col)
                };
                self.err(
                    span_of(&arm.name),
                    format!("duplicate arm name {aname:?} (first defined on line {line}); arm names must be unique"),
                );
            } else {
                seen.insert(aname.clone(), arm.name.span());
            }
            if let Some(a) = self.arm(arm, span) {
                arms.push(a);
            }
        }

        let reference = match &e.reference {
            Some(r) => {
                if !arms.is_empty() && !arms.iter().any(|a| &a.name == r.get_ref()) {
                    let names: Vec<_> = arms.iter().map(|a| a.name.as_str()).collect();
                    self.err(
                        span_of(r),
                        format!(
                            "reference arm {:?} is not defined; expected one of: {}",
                            r.get_ref(),
                            names.join(", ")
                        ),
                    );
                }
                r.get_ref().clone()
            }
            None => arms.first().map(|a| a.name.clone()).unwrap_or_default(),
        };

        let compare = self.compare(raw.compare);
        let analysis = self.analysis(raw.analysis);
        let tables = self.tables(raw.tables, &arms);

        let num_parallel = server_parallel(&self.server, &arms).or(num_parallel);
        Spec {
            file: file.to_path_buf(),
            source: text.to_string(),
            hash,
            experiment: Experiment {
                name,
                description: e.description,
                repetitions,
                warmup,
                seed,
                order,
                reference,
            },
            backend,
            corpus,
            arms,
            compare,
            analysis,
            run,
            num_parallel,
            tables,
            server: self.server.take(),
        }
    }

    /// `[server]`: the preset against the backend kind, the command, the address and the
    /// probe's limits, every default written here once.
    fn server(&mut self, s: Spanned<raw::RawServer>) -> ServerConfig {
        let sspan = s.span();
        let s = s.into_inner();
        let preset = Preset::parse(s.preset.get_ref()).unwrap_or_else(|| {
            self.err(
                span_of(&s.preset),
                format!(
                    "server preset must be one of {}, found {:?}",
                    server::PRESET_WORDS
                        .iter()
                        .map(|w| format!("{w:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    s.preset.get_ref()
                ),
            );
            Preset::Custom
        });
        match (preset.backend_kind(), self.kind) {
            (_, BackendKind::Embedded) => self.err(
                Some(sspan.clone()),
                "[server] starts an HTTP server; the embedded engine runs in-process and takes \
                 its engine options (flash_attn, kv_cache_type, batch_size, ubatch_size, \
                 threads) directly: remove [server] or set [backend] kind = \"openai\"",
            ),
            (Some(want), have) if want != have => self.err(
                span_of(&s.preset),
                format!(
                    "preset {:?} serves [backend] kind = {:?}, but the backend is {:?}",
                    preset.as_str(),
                    want.as_str(),
                    have.as_str()
                ),
            ),
            _ => {}
        }
        let command = match (&s.command, preset.default_command()) {
            (Some(c), _) if c.get_ref().trim().is_empty() => {
                self.err(span_of(c), "server command must not be empty");
                String::new()
            }
            (Some(c), _) => c.get_ref().clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                self.err(
                    span_of(&s.preset),
                    "a custom server needs command = \"/path/to/server\" (and args with \
                     {port} where it takes its port)",
                );
                String::new()
            }
        };
        let args: Vec<String> = s
            .args
            .map(|a| a.into_inner().into_iter().map(|x| x.into_inner()).collect())
            .unwrap_or_default();
        let mut env = BTreeMap::new();
        for (k, v) in s.env.map(|e| e.into_inner()).unwrap_or_default() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.err(
                    span_of(&v),
                    format!("environment variable name {k:?} must be letters, digits and '_'"),
                );
            }
            env.insert(k, v.into_inner());
        }
        let model_path = match (&s.model_path, preset) {
            (Some(p), _) => Some(PathBuf::from(p.get_ref())),
            (None, Preset::LlamaServer) => Some(PathBuf::from(DEFAULT_MODEL_PATH)),
            (None, _) => None,
        };
        if let (true, Some(p), Preset::LlamaServer) = (self.check_paths, &model_path, preset) {
            if !p.is_file() {
                let span = s
                    .model_path
                    .as_ref()
                    .and_then(span_of)
                    .or(Some(sspan.clone()));
                self.err(
                    span,
                    format!(
                        "llama-server's model {} is not a file (scripts/fetch-model.sh fetches \
                         the default; set [server] model_path for another GGUF)",
                        p.display()
                    ),
                );
            }
        }
        let host = s
            .host
            .as_ref()
            .map(|h| h.get_ref().clone())
            .unwrap_or_else(|| "127.0.0.1".into());
        if host.is_empty() || host.contains('/') || host.contains(' ') {
            let span = s.host.as_ref().and_then(span_of);
            self.err(
                span,
                format!("server host must be an address like 127.0.0.1, found {host:?}"),
            );
        }
        let port = s
            .port
            .as_ref()
            .map(|p| self.int_in(p, "server port", 1, 65535) as u16);
        let health_path = match &s.health_path {
            Some(h) if !h.get_ref().starts_with('/') => {
                self.err(
                    span_of(h),
                    "health_path must start with '/' (e.g. \"/health\")",
                );
                preset.default_health_path().to_string()
            }
            Some(h) => h.get_ref().clone(),
            None => preset.default_health_path().to_string(),
        };
        let ready_timeout_s = s
            .ready_timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "ready_timeout_s"))
            .unwrap_or(DEFAULT_READY_TIMEOUT_S);
        let stop_grace_s = s
            .stop_grace_s
            .as_ref()
            .map(|t| self.seconds_in(t, "stop_grace_s", 0.0))
            .unwrap_or(DEFAULT_STOP_GRACE_S);
        ServerConfig {
            preset,
            command,
            args,
            env,
            model_path,
            host,
            port,
            health_path,
            ready_timeout_s,
            stop_grace_s,
        }
    }

    fn prompt_version(
        &mut self,
        v: &Option<Spanned<String>>,
        default: PromptVersion,
    ) -> PromptVersion {
        let Some(v) = v else { return default };
        PromptVersion::parse(v.get_ref()).unwrap_or_else(|| {
            let names: Vec<String> = PromptVersion::ALL
                .iter()
                .map(|p| format!("{:?}", p.as_str()))
                .collect();
            self.err(
                span_of(v),
                format!(
                    "prompt_version must be one of {}, found {:?}",
                    names.join(", "),
                    v.get_ref()
                ),
            );
            default
        })
    }

    fn persona_mode(&mut self, v: &Option<Spanned<String>>, default: PersonaMode) -> PersonaMode {
        match v.as_ref().map(|v| v.get_ref().as_str()) {
            None => default,
            Some("system") => PersonaMode::System,
            Some("echo") => PersonaMode::Echo,
            Some(other) => {
                self.err(
                    v.as_ref().and_then(span_of),
                    format!(
                        "persona_mode must be \"system\" (sent as the system prompt) or \"echo\" \
                         (shown in the report, not sent, as the seed system did), found {other:?}"
                    ),
                );
                default
            }
        }
    }

    /// The corpus must be an existing directory (relative paths are read from the current
    /// directory, as `sweep run` reads them).
    fn corpus_dir(&mut self, span: &Spanned<String>, path: &Path) {
        let from = || {
            if path.is_relative() {
                std::env::current_dir()
                    .map(|d| format!(" (relative to the current directory {})", d.display()))
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => self.err(
                span_of(span),
                format!(
                    "corpus path {} is not a directory{}",
                    path.display(),
                    from()
                ),
            ),
            Err(e) => self.err(
                span_of(span),
                format!(
                    "corpus path {} cannot be read: {e}{}",
                    path.display(),
                    from()
                ),
            ),
        }
    }

    fn backend(&mut self, b: Spanned<raw::RawBackend>) -> BackendConfig {
        let bspan = b.span();
        let b = b.into_inner();
        let kind = match b.kind.get_ref().as_str() {
            "ollama" => BackendKind::Ollama,
            "openai" => BackendKind::Openai,
            "embedded" => BackendKind::Embedded,
            other => {
                self.err(
                    span_of(&b.kind),
                    format!(
                        "backend kind must be \"ollama\", \"openai\" or \"embedded\", found {other:?}"
                    ),
                );
                BackendKind::Ollama
            }
        };
        let mut urls = Vec::new();
        if let Some(u) = &b.url {
            urls.push(u.clone());
        }
        if let Some(list) = &b.urls {
            if list.get_ref().is_empty() {
                self.err(span_of(list), "urls must list at least one endpoint");
            }
            urls.extend(list.get_ref().iter().cloned());
        }
        for u in &urls {
            self.check_url(u);
        }
        if let (Some(srv), Some(u)) = (&self.server, urls.first()) {
            let at = format!(
                "{}:{}",
                srv.host,
                srv.port.map_or("PORT".into(), |p| p.to_string())
            );
            self.err(
                span_of(u),
                format!(
                    "with [server], sweep starts the server and talks to it at {at}: remove \
                     url/urls (set [server] host and port to choose the address)"
                ),
            );
        }
        let mut urls: Vec<String> = urls.into_iter().map(|u| u.into_inner()).collect();
        if let Some(srv) = &self.server {
            // The port is chosen when the run starts (a free one where none is set); the
            // runner puts the real address here.
            urls = vec![format!("http://{}:{}", srv.host, srv.port.unwrap_or(0))];
        }
        if urls.is_empty() {
            match kind {
                BackendKind::Ollama => urls.push("http://127.0.0.1:11434".into()),
                BackendKind::Openai => self.err(
                    Some(bspan.clone()),
                    "backend kind \"openai\" needs url = \"http://host:port\" (the server's base URL, without /v1)",
                ),
                BackendKind::Embedded => {}
            }
        }
        let model = match (&b.model, kind) {
            (Some(m), _) if m.get_ref().trim().is_empty() => {
                self.err(span_of(m), "model must not be empty");
                String::new()
            }
            (Some(m), _) => m.get_ref().clone(),
            (None, BackendKind::Embedded) => "gemma-3-270m-q4_k_m".into(),
            // llama-server serves the one model it loaded, whatever a request names.
            (None, _)
                if self
                    .server
                    .as_ref()
                    .is_some_and(|s| s.preset == Preset::LlamaServer) =>
            {
                self.server
                    .as_ref()
                    .and_then(|s| s.model_path.as_ref())
                    .and_then(|p| p.file_stem())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "gemma-3-270m-q4_k_m".into())
            }
            (None, _) => {
                self.err(
                    Some(bspan.clone()),
                    "missing key `model` in [backend] (e.g. model = \"gemma3:latest\")",
                );
                String::new()
            }
        };
        let model_path = match (&b.model_path, kind) {
            (Some(p), BackendKind::Embedded) => Some(PathBuf::from(p.get_ref())),
            (Some(p), _) => {
                self.err(span_of(p), "model_path applies only to kind = \"embedded\"");
                None
            }
            (None, BackendKind::Embedded) => Some(PathBuf::from(DEFAULT_MODEL_PATH)),
            (None, _) => None,
        };
        let ollama_api = match b.api.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("generate") => OllamaApi::Generate,
            Some("chat") => OllamaApi::Chat,
            Some(other) => {
                let span = b.api.as_ref().and_then(span_of);
                self.err(
                    span,
                    format!("api must be \"generate\" or \"chat\", found {other:?}"),
                );
                OllamaApi::Generate
            }
        };
        let total_s = b
            .timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "timeout_s"))
            .unwrap_or(300.0);
        let connect_s = b
            .connect_timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "connect_timeout_s"))
            .unwrap_or(10.0);
        let first_token_s = b
            .first_token_timeout_s
            .as_ref()
            .map(|t| self.positive_f64(t, "first_token_timeout_s"))
            .unwrap_or(total_s);
        let defaults = RetryPolicy::default();
        let retry = match &b.retry {
            None => defaults.clone(),
            Some(r) => {
                let r = r.get_ref();
                RetryPolicy {
                    attempts: r
                        .attempts
                        .as_ref()
                        .map(|a| self.int_in(a, "retry.attempts", 1, 100) as u32)
                        .unwrap_or(defaults.attempts),
                    backoff_ms: r
                        .backoff_ms
                        .as_ref()
                        .map(|a| self.int_in(a, "retry.backoff_ms", 0, 600_000) as u64)
                        .unwrap_or(defaults.backoff_ms),
                }
            }
        };
        let threads = b
            .threads
            .as_ref()
            .map(|t| self.int_in(t, "threads", 1, 1024) as u32);
        if let Some(env) = &b.api_key_env {
            let ok = !env.get_ref().is_empty()
                && env
                    .get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                self.err(
                    span_of(env),
                    "api_key_env must name an environment variable (letters, digits, '_'), not hold the key itself",
                );
            }
        }
        let extra = b
            .extra
            .map(|t| match serde_json::to_value(t) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            })
            .unwrap_or_default();
        BackendConfig {
            kind,
            urls,
            model,
            model_path,
            ollama_api,
            timeouts: Timeouts {
                connect_s,
                first_token_s,
                total_s,
            },
            api_key_env: b.api_key_env.map(|e| e.into_inner()),
            retry,
            threads,
            cache_prompt: b.cache_prompt.unwrap_or(false),
            extra,
            fresh_connections: self.server.is_some(),
        }
    }

    fn check_url(&mut self, u: &Spanned<String>) {
        let s = u.get_ref();
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') => {}
            _ => self.err(
                span_of(u),
                format!("expected an http:// or https:// URL with a host, found {s:?}"),
            ),
        }
    }

    fn analysis(&mut self, a: Option<Spanned<raw::RawAnalysis>>) -> AnalysisConfig {
        let mut cfg = AnalysisConfig::default();
        let Some(a) = a else { return cfg };
        let a = a.into_inner();
        if let Some(v) = &a.cold_load_ms {
            let x = *v.get_ref();
            if x.is_finite() && x > 0.0 && x <= 3_600_000.0 {
                cfg.cold_load_ms = x;
            } else {
                self.err(
                    span_of(v),
                    format!("cold_load_ms must be a positive number of milliseconds (e.g. 250), found {x}"),
                );
            }
        }
        cfg
    }

    fn compare(&mut self, c: Option<Spanned<raw::RawCompare>>) -> CompareConfig {
        let mut cfg = CompareConfig::default();
        let Some(c) = c else { return cfg };
        cfg.declared = true;
        let c = c.into_inner();
        if let Some(v) = &c.max_failed_share {
            let x = *v.get_ref();
            if (0.0..=1.0).contains(&x) {
                cfg.max_failed_share = x;
            } else {
                self.err(
                    span_of(v),
                    format!(
                        "max_failed_share must be a share between 0 and 1 (0.1 = 10%), found {x}"
                    ),
                );
            }
        }
        if let Some(a) = &c.alpha {
            let x = *a.get_ref();
            if !crate::stats::is_open_unit(x) {
                self.err(
                    span_of(a),
                    format!("alpha must be strictly between 0 and 1, found {x}"),
                );
            } else {
                cfg.alpha = x;
            }
        }
        for (k, v) in c.thresholds.unwrap_or_default() {
            let Some(metric) = Metric::parse(k.get_ref()) else {
                self.err(
                    span_of(&k),
                    format!(
                        "unknown threshold metric {:?}; expected one of: {}",
                        k.get_ref(),
                        Metric::all_names().join(", ")
                    ),
                );
                continue;
            };
            let x = *v.get_ref();
            if !(x.is_finite() && x >= 0.0) {
                self.err(
                    span_of(&v),
                    format!("threshold must be a relative change ≥ 0 (0.05 = 5%), found {x}"),
                );
                continue;
            }
            cfg.thresholds.insert(metric, x);
        }
        cfg
    }

    fn arm(&mut self, arm: RawArm, span: Range<usize>) -> Option<Arm> {
        let name = arm.name.get_ref().clone();
        let before = self.diags.len();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.err(
                span_of(&arm.name),
                format!("arm name must be a non-empty word of letters, digits, '_' or '-', found {name:?}"),
            );
        }
        let agent = match arm.agent.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("single") => AgentKind::Single,
            Some("pair") => AgentKind::Pair,
            Some(other) => {
                let s = arm.agent.as_ref().and_then(span_of);
                self.err(
                    s,
                    format!("agent must be \"single\" or \"pair\", found {other:?}"),
                );
                AgentKind::Single
            }
        };
        let persona = |v: &mut Self, p: &Option<Spanned<String>>, default: Persona| match p
            .as_ref()
            .map(|p| p.get_ref().as_str())
        {
            None => default,
            Some("chimera") => Persona::Chimera,
            Some("insight") => Persona::Insight,
            Some("collector") => Persona::Collector,
            Some(other) => {
                v.err(
                    p.as_ref().and_then(span_of),
                    format!(
                        "persona must be \"chimera\" or \"insight\" or \"collector\", found {other:?}"
                    ),
                );
                default
            }
        };

        // Arm-level base options: `options`, plus the max_tokens/keep_alive shorthands.
        let mut base = match &arm.options {
            Some(t) => self.options_table(t.get_ref(), &[]).0,
            None => ModelOptions::default(),
        };
        if let Some(v) = &arm.max_tokens {
            let mut one = ModelOptions::default();
            self.set_option(&mut one, "num_predict", v);
            base = base.merged_with(&one);
        }
        if let Some(v) = &arm.keep_alive {
            let mut one = ModelOptions::default();
            self.set_option(&mut one, "keep_alive", v);
            base = base.merged_with(&one);
        }
        let arm_endpoint = arm.endpoint.as_ref().map(|e| {
            self.check_url(e);
            e.get_ref().clone()
        });
        let arm_model = arm.model.as_ref().map(|m| m.get_ref().clone());
        let prompt_version = self.prompt_version(&arm.prompt_version, self.prompt_version);
        let arm_mode = self.persona_mode(&arm.persona_mode, self.persona_mode);

        let members = match agent {
            AgentKind::Single => {
                for (key, v) in [("a", &arm.a), ("b", &arm.b)] {
                    if let Some(v) = v {
                        self.err(
                            span_of(v),
                            format!("key `{key}` applies only to agent = \"pair\"; a single agent takes `options` and `grid`"),
                        );
                    }
                }
                vec![MemberTemplate {
                    slot: Slot::Single,
                    persona: persona(self, &arm.persona, Persona::Chimera),
                    persona_mode: arm_mode,
                    prompt_version,
                    options: base.clone(),
                    endpoint: arm_endpoint.clone(),
                    model: arm_model.clone(),
                }]
            }
            AgentKind::Pair => {
                if arm.persona.is_some() {
                    self.err(
                        arm.persona.as_ref().and_then(span_of),
                        "a pair arm sets persona per agent: a = { persona = \"insight\", … }",
                    );
                }
                let mut out = Vec::new();
                // The seed pairs: DataCollector-9000 on A, InsightAgent on B.
                for (slot, t, default_persona) in [
                    (Slot::A, &arm.a, Persona::Collector),
                    (Slot::B, &arm.b, Persona::Insight),
                ] {
                    let Some(t) = t else {
                        self.err(
                            Some(span.clone()),
                            format!(
                                "pair arm {name:?} needs `{}` = {{ … }}: the options of Agent {} (use {{}} for server defaults)",
                                slot.as_str().to_lowercase(),
                                slot.as_str()
                            ),
                        );
                        continue;
                    };
                    let (opts, extra) = self.options_table(
                        t.get_ref(),
                        &["persona", "persona_mode", "endpoint", "model"],
                    );
                    let mut m = MemberTemplate {
                        slot,
                        persona: default_persona,
                        persona_mode: arm_mode,
                        prompt_version,
                        options: base.merged_with(&opts),
                        endpoint: arm_endpoint.clone(),
                        model: arm_model.clone(),
                    };
                    for (k, v) in extra {
                        let text = match v.get_ref() {
                            toml::Value::String(s) => s.clone(),
                            other => {
                                self.err(
                                    span_of(&v),
                                    format!("`{k}` must be a string, found {}", other.type_str()),
                                );
                                continue;
                            }
                        };
                        match k.as_str() {
                            "persona" => {
                                let p = Spanned::new(v.span(), text);
                                m.persona = persona(self, &Some(p), default_persona);
                            }
                            "persona_mode" => {
                                let p = Spanned::new(v.span(), text);
                                m.persona_mode = self.persona_mode(&Some(p), arm_mode);
                            }
                            "endpoint" => {
                                self.check_url(&Spanned::new(v.span(), text.clone()));
                                m.endpoint = Some(text);
                            }
                            _ => m.model = Some(text),
                        }
                    }
                    out.push(m);
                }
                out
            }
        };

        let calls_per_point = match agent {
            AgentKind::Single => 2u64,
            AgentKind::Pair => 8u64,
        };
        let points = self.points(
            &arm.grid,
            &arm.include,
            &arm.exclude,
            &name,
            calls_per_point,
        );
        let quantized_without_fa = points.iter().find_map(|p| {
            members.iter().find_map(|m| {
                let o = m.options.merged_with(p);
                match (o.flash_attn, o.kv_cache_type.as_deref()) {
                    (Some(false), Some(t)) if t.starts_with('q') || t.starts_with("iq") => {
                        Some(t.to_string())
                    }
                    _ => None,
                }
            })
        });
        if let Some(t) = quantized_without_fa {
            let at = arm.grid.as_ref().and_then(span_of).or(Some(span.clone()));
            self.err(
                at,
                format!(
                    "arm {name:?}: kv_cache_type {t:?} with flash_attn = false: llama.cpp \
                     refuses a quantized V cache without flash attention (llama-context.cpp: \
                     \"quantized V cache requires flash_attn to be enabled\"); exclude those \
                     points, e.g. exclude = [{{ flash_attn = false, kv_cache_type = \"{t}\" }}]"
                ),
            );
        }
        if self.server.is_some() {
            self.managed_arm(&arm, &name, &members, span);
        }
        if self.diags.len() > before {
            return None;
        }
        Some(Arm {
            name,
            agent,
            members,
            points,
        })
    }

    /// An arm under `[server]` has no endpoint of its own: sweep chooses the addresses.
    fn managed_arm(
        &mut self,
        arm: &RawArm,
        name: &str,
        members: &[MemberTemplate],
        span: Range<usize>,
    ) {
        if members.iter().any(|m| m.endpoint.is_some()) {
            let at = arm.endpoint.as_ref().and_then(span_of).or(Some(span));
            self.err(
                at,
                format!(
                    "arm {name:?} sets an endpoint, but [server] makes sweep start the server \
                     and choose its address: remove the endpoint"
                ),
            );
        }
    }

    /// Expands `grid` (cartesian product), drops `exclude` matches, appends `include` points.
    fn points(
        &mut self,
        grid: &Option<Spanned<GridTable>>,
        include: &Option<Spanned<Vec<Spanned<OptTable>>>>,
        exclude: &Option<Spanned<Vec<Spanned<OptTable>>>>,
        arm: &str,
        calls_per_point: u64,
    ) -> Vec<ModelOptions> {
        let mut points = vec![ModelOptions::default()];
        let before = self.diags.len();
        if let Some(g) = grid {
            // Size the grid before expanding it: a cartesian product can outgrow memory.
            let size = g.get_ref().values().fold(1u128, |n, v| {
                n.saturating_mul(v.get_ref().len().max(1) as u128)
            });
            let (units, max_calls) = self.limits;
            let calls = size
                .saturating_mul(u128::from(units))
                .saturating_mul(u128::from(calls_per_point));
            if calls > u128::from(max_calls) {
                self.err(
                    span_of(g),
                    format!(
                        "arm {arm:?}: this grid expands to {size} points × {units} units × \
                         {calls_per_point} calls = {calls} LLM calls, above [run] max_calls = \
                         {max_calls}; shrink the grid or raise max_calls"
                    ),
                );
                return Vec::new();
            }
            if g.get_ref().is_empty() {
                self.err(
                    span_of(g),
                    format!("arm {arm:?}: empty grid; give at least one option with a list of values, or remove [arm.grid]"),
                );
            }
            for (key, values) in g.get_ref() {
                if !OPTION_NAMES.contains(&key.get_ref().as_str()) && key.get_ref() != "max_tokens"
                {
                    self.unknown_option(key);
                    continue;
                }
                if values.get_ref().is_empty() {
                    self.err(
                        span_of(values),
                        format!(
                            "grid axis `{}` has no values: expected a non-empty array",
                            key.get_ref()
                        ),
                    );
                    continue;
                }
                let mut seen = Vec::new();
                let mut next = Vec::new();
                for v in values.get_ref() {
                    let mut one = ModelOptions::default();
                    if !self.set_option(&mut one, key.get_ref(), v) {
                        continue;
                    }
                    if seen.contains(&one) {
                        self.err(
                            span_of(v),
                            format!("grid axis `{}` repeats a value", key.get_ref()),
                        );
                        continue;
                    }
                    seen.push(one.clone());
                    for p in &points {
                        next.push(p.merged_with(&one));
                    }
                }
                points = next;
            }
        }
        if let Some(ex) = exclude {
            for e in ex.get_ref() {
                let (pat, _) = self.options_table(e.get_ref(), &[]);
                if pat.is_empty() {
                    self.err(span_of(e), "an exclude entry must name at least one option");
                    continue;
                }
                let before = points.len();
                points.retain(|p| !matches(p, &pat));
                if points.len() == before {
                    self.err(
                        span_of(e),
                        "this exclude entry matches no grid point (check option names and values)",
                    );
                }
            }
        }
        if let Some(inc) = include {
            for i in inc.get_ref() {
                let (p, _) = self.options_table(i.get_ref(), &[]);
                if !points.contains(&p) {
                    points.push(p);
                }
            }
        }
        if points.is_empty() && self.diags.len() == before {
            let span = grid.as_ref().and_then(span_of);
            self.err(
                span,
                format!("arm {arm:?}: every grid point was excluded; nothing to run"),
            );
        }
        points
    }

    fn unknown_option(&mut self, key: &Spanned<String>) {
        self.err(
            span_of(key),
            format!(
                "unknown option `{}`; expected one of: {}, max_tokens",
                key.get_ref(),
                OPTION_NAMES.join(", ")
            ),
        );
    }

    /// Parses a table of options; keys listed in `allowed_extra` are handed back untouched.
    fn options_table(
        &mut self,
        t: &OptTable,
        allowed_extra: &[&str],
    ) -> (ModelOptions, Vec<(String, Spanned<toml::Value>)>) {
        let mut o = ModelOptions::default();
        let mut extra = Vec::new();
        for (k, v) in t {
            if allowed_extra.contains(&k.get_ref().as_str()) {
                extra.push((k.get_ref().clone(), v.clone()));
                continue;
            }
            if !OPTION_NAMES.contains(&k.get_ref().as_str()) && k.get_ref() != "max_tokens" {
                if allowed_extra.is_empty() {
                    self.unknown_option(k);
                } else {
                    self.err(
                        span_of(k),
                        format!(
                            "unknown key `{}`; expected an option ({}, max_tokens) or one of: {}",
                            k.get_ref(),
                            OPTION_NAMES.join(", "),
                            allowed_extra.join(", ")
                        ),
                    );
                }
                continue;
            }
            self.set_option(&mut o, k.get_ref(), v);
        }
        (o, extra)
    }

    /// Checks one option value's type and range; returns false (and records why) when bad.
    fn set_option(&mut self, o: &mut ModelOptions, key: &str, v: &Spanned<toml::Value>) -> bool {
        let span = span_of(v);
        let val = v.get_ref();
        let as_int = |val: &toml::Value| match val {
            toml::Value::Integer(i) => Some(*i),
            _ => None,
        };
        let as_num = |val: &toml::Value| match val {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        let found = || format!("{} {}", val.type_str(), short(val));
        macro_rules! bad {
            ($($arg:tt)*) => {{
                self.err(span, format!($($arg)*));
                return false;
            }};
        }
        match key {
            "num_gpu" => match as_int(val) {
                Some(i) if (0..=100_000).contains(&i) => o.num_gpu = Some(i as u32),
                _ => bad!("num_gpu must be an integer ≥ 0 (layers offloaded to the GPU), found {}", found()),
            },
            "num_ctx" => match as_int(val) {
                Some(i) if (1..=10_000_000).contains(&i) => o.num_ctx = Some(i as u32),
                _ => bad!("num_ctx must be a positive integer (context length in tokens), found {}", found()),
            },
            "temperature" => match as_num(val) {
                Some(x) if x.is_finite() && (0.0..=100.0).contains(&x) => o.temperature = Some(x),
                _ => bad!("temperature must be a number ≥ 0, found {}", found()),
            },
            "top_p" => match as_num(val) {
                Some(x) if x > 0.0 && x <= 1.0 => o.top_p = Some(x),
                _ => bad!("top_p must be a number in (0, 1], found {}", found()),
            },
            "top_k" => match as_int(val) {
                Some(i) if (0..=1_000_000).contains(&i) => o.top_k = Some(i as u32),
                _ => bad!("top_k must be an integer ≥ 0, found {}", found()),
            },
            "repeat_penalty" => match as_num(val) {
                Some(x) if x.is_finite() && x > 0.0 => o.repeat_penalty = Some(x),
                _ => bad!("repeat_penalty must be a number > 0, found {}", found()),
            },
            "seed" => match as_int(val) {
                Some(i) if i >= 0 => o.seed = Some(i as u64),
                _ => bad!("seed must be an integer ≥ 0, found {}", found()),
            },
            "num_predict" | "max_tokens" => match as_int(val) {
                Some(i) if (1..=1_000_000).contains(&i) => o.num_predict = Some(i as u32),
                _ => bad!("{key} must be a positive integer (tokens to generate), found {}", found()),
            },
            "keep_alive" => match val {
                toml::Value::String(s) if !s.is_empty() => o.keep_alive = Some(s.clone()),
                toml::Value::Integer(i) => o.keep_alive = Some(format!("{i}s")),
                _ => bad!("keep_alive must be a duration string like \"5m\" or seconds as an integer, found {}", found()),
            },
            "flash_attn" => match val {
                toml::Value::Boolean(b) => o.flash_attn = Some(*b),
                _ => bad!("flash_attn must be true or false, found {}", found()),
            },
            "kv_cache_type" => match val {
                toml::Value::String(s) if KV_CACHE_TYPES.contains(&s.as_str()) => {
                    o.kv_cache_type = Some(s.clone())
                }
                _ => bad!(
                    "kv_cache_type must be one of {} (llama.cpp's KV cache types), found {}",
                    KV_CACHE_TYPES.join(", "),
                    found()
                ),
            },
            "parallel" => match as_int(val) {
                Some(i) if (1..=1024).contains(&i) => o.parallel = Some(i as u32),
                _ => bad!("parallel must be an integer in 1..=1024 (requests served at once), found {}", found()),
            },
            "batch_size" | "ubatch_size" => match as_int(val) {
                Some(i) if (1..=1_000_000).contains(&i) => {
                    if key == "batch_size" {
                        o.batch_size = Some(i as u32)
                    } else {
                        o.ubatch_size = Some(i as u32)
                    }
                }
                _ => bad!("{key} must be a positive integer (tokens per batch), found {}", found()),
            },
            "threads" => match as_int(val) {
                Some(i) if (1..=4096).contains(&i) => o.threads = Some(i as u32),
                _ => bad!("threads must be a positive integer (CPU threads), found {}", found()),
            },
            _ => bad!("unknown option `{key}`"),
        }
        let name = if key == "max_tokens" {
            "num_predict"
        } else {
            key
        };
        if let Err(why) = route(name, self.kind, self.server.as_ref()) {
            bad!("{why}");
        }
        true
    }
}

/// A managed server's slots, where every cell asks for the same number: what the
/// shared-endpoint warning needs instead of a hand-declared `num_parallel`.
fn server_parallel(server: &Option<ServerConfig>, arms: &[Arm]) -> Option<u32> {
    server.as_ref()?;
    let mut values = arms.iter().flat_map(|a| {
        a.points.iter().flat_map(move |p| {
            a.members
                .iter()
                .map(move |m| m.options.merged_with(p).parallel)
        })
    });
    let first = values.next()?;
    values.all(|v| v == first).then_some(first.unwrap_or(1))
}

/// True when every option set in `pat` has the same value in `p`.
fn matches(p: &ModelOptions, pat: &ModelOptions) -> bool {
    let pm = p.to_map();
    pat.to_map().iter().all(|(k, v)| pm.get(k) == Some(v))
}

fn short(v: &toml::Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary_compat(40)])
    } else {
        s
    }
}

trait FloorBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Option names set anywhere in an arm (for table factor columns).
pub fn factor_names(arms: &[Arm]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in arms {
        for p in &a.points {
            out.extend(p.to_map().into_keys());
        }
    }
    out
}
