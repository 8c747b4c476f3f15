//! LLM backends behind one contract: a request in, a streamed generation out, measured the
//! same way everywhere (client-side TTFT/ITL/e2e from a monotonic clock, plus whatever
//! durations and token counts the server reports).

#[cfg(feature = "embedded")]
pub mod embedded;
mod http;
pub mod ollama;
pub mod openai;
pub mod stream;
pub mod timing;

use crate::spec::{BackendConfig, BackendKind, ModelOptions};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

pub use ollama::{NdjsonLines, OllamaBackend, OllamaStream};
pub use openai::{OpenAiBackend, SseLines, SseStream};
pub use stream::{LineParser, LineStream, StreamState};
pub use timing::{ClientTimer, ClientTiming};

/// Where an engine put the model's layers, as a reload probe stores it in
/// `Record::server_state`: the embedded engine writes every field; an Ollama probe only
/// `layers_total` (from `/api/show`). One type for the writers and the reader
/// (`telemetry::offload`), so a renamed field cannot silently break the offload check.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EnginePlacement {
    /// `num_gpu` as it took effect (`None`: llama.cpp's default, or not said; a build
    /// without the `cuda` feature ignores `num_gpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers_requested: Option<u32>,
    /// Layers on a GPU device (`None` where the server does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_offloaded: Option<u64>,
    /// The model's layers plus the output layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_total: Option<u64>,
    /// GPU devices llama.cpp sees ("CUDA0: NVIDIA H200 (143771 MiB)"); `None` where the
    /// server does not say, empty when it sees none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_devices: Option<Vec<String>>,
    /// Built with the `cuda` feature (`None` where the server does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_build: Option<bool>,
}

impl EnginePlacement {
    /// The placement in a record's `server_state`, when it carries any of its fields (a
    /// llama-server's `/props` state carries none).
    pub fn from_state(state: &serde_json::Value) -> Option<Self> {
        let p: Self = serde_json::from_value(state.clone()).ok()?;
        (p != Self::default()).then_some(p)
    }

    /// As stored in `Record::server_state`.
    pub fn to_state(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A boxed future, so that backends can live behind `dyn Backend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One LLM call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    /// Model name as the server knows it (Ollama tag, OpenAI model id); the embedded engine
    /// runs its configured GGUF file and only records this name in the wire body.
    pub model: String,
    /// Sent as the system prompt when present (the InsightAgent persona).
    pub system: Option<String>,
    /// The user message (the agent's analysis or report prompt).
    pub prompt: String,
    /// Only the options that are set are sent.
    pub options: ModelOptions,
    /// Endpoint to use for this call; `None` means the backend's first endpoint.
    pub endpoint: Option<String>,
}

/// A request as it goes on the wire: where it is sent and its JSON body, exactly as sent (the
/// backends send this very value). What the call store keeps of every call's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireRequest {
    /// The URL the body is POSTed to (a password in it replaced by `redacted`), or
    /// `embedded:<model path>` for the in-process engine.
    pub endpoint: String,
    /// The JSON body as sent (for the embedded engine: model, chat messages and the sampling
    /// settings it applied).
    pub body: serde_json::Value,
}

/// `url` with a password in it replaced by `redacted` (credentials never reach the call store).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Durations and counts the server itself reports. `None` when the server gives none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerMetrics {
    /// Model load time, ms: Ollama's `load_duration`; the embedded engine's model load plus
    /// context creation on a cold call (0.0 when warm). OpenAI-compatible servers give none.
    pub load_ms: Option<f64>,
    /// Prompt processing time, ms, server clock (Ollama `prompt_eval_duration`, llama.cpp
    /// `timings.prompt_ms`, the embedded engine's perf counters).
    pub prompt_eval_ms: Option<f64>,
    /// Generation (decode) time of the output tokens, ms, server clock (Ollama
    /// `eval_duration`, llama.cpp `timings.predicted_ms`, embedded perf counters).
    pub eval_ms: Option<f64>,
    /// Whole request as the server timed it, ms (Ollama `total_duration`; for the embedded
    /// engine, from its thread taking the call to the last token, queue wait excluded).
    pub total_ms: Option<f64>,
    /// Prompt tokens (system + user, with the chat template unless counted by tokenize; see
    /// [`tokens_source`](Self::tokens_source)).
    pub prompt_tokens: Option<u64>,
    /// Generated tokens (or content chunks when the server reports no count; see
    /// [`tokens_source`](Self::tokens_source)).
    pub output_tokens: Option<u64>,
    /// Where the counts came from (`usage`, `tokenize`, `chunks`); `None` = the server's own
    /// counts when there are any.
    #[serde(default)]
    pub tokens_source: Option<String>,
}

/// [`ServerMetrics::tokens_source`]: the server's own counts from the stream (Ollama's
/// `prompt_eval_count`/`eval_count`, OpenAI `usage`, llama.cpp `timings`).
pub const TOKENS_FROM_USAGE: &str = "usage";
/// [`ServerMetrics::tokens_source`]: the server's tokenize endpoint applied to the prompt and
/// output text after the stream (the prompt count excludes the chat template's own tokens).
pub const TOKENS_FROM_TOKENIZE: &str = "tokenize";
/// [`ServerMetrics::tokens_source`]: output counted as non-empty content chunks; no prompt
/// count.
pub const TOKENS_FROM_CHUNKS: &str = "chunks";

/// A finished call: the text, the client's clock, the server's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text: every content piece of the stream, concatenated.
    pub text: String,
    /// What the client measured on its own monotonic clock.
    pub timing: ClientTiming,
    /// What the server reported about the same call.
    pub server: ServerMetrics,
}

/// What a backend says about itself before a run (for the manifest and preflight).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// Backend kind: `ollama`, `openai` or `embedded`.
    pub kind: String,
    /// Server version (Ollama `GET /api/version` of the first endpoint) or the `llama-cpp-2`
    /// crate version of the embedded engine; `None` for OpenAI-compatible servers.
    pub version: Option<String>,
    /// Model digest (Ollama) or file sha256 (embedded) for provenance.
    pub model_digest: Option<String>,
    /// The normalised base URLs calls go to (empty for the embedded engine).
    pub endpoints: Vec<String>,
    /// What the backend applies to an option a request leaves unset (option name → value):
    /// the embedded engine's defaults, or the parameters Ollama's `POST /api/show` reports
    /// for the model. Tables show them, marked as defaults, for cells that set nothing.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub defaults: std::collections::BTreeMap<String, String>,
}

/// What a server says about its own queue at one moment (llama-server `GET /metrics`
/// with `--metrics`: the gauges `llamacpp:requests_processing` and
/// `llamacpp:requests_deferred`, tools/server/README.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerQueue {
    /// Requests in a slot, being processed.
    pub processing: u32,
    /// Requests waiting for a free slot.
    pub deferred: u32,
}

/// A model the server says it has loaded (Ollama `GET /api/ps`): what the runner checks
/// before a phase to see an eviction coming, and records after a reload (the offload that
/// `num_gpu` really produced).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    /// Model name as the server lists it (e.g. `gemma3:270m`).
    pub name: String,
    /// Bytes the loaded model takes in all.
    pub size: Option<u64>,
    /// Of which in GPU memory.
    pub size_vram: Option<u64>,
    /// The context length the server loaded it with (newer Ollama versions report it).
    pub context_length: Option<u64>,
    /// When the server will unload it (keep_alive).
    pub expires_at: Option<String>,
}

impl LoadedModel {
    /// Share of the model in GPU memory (`size_vram / size`).
    pub fn offload_fraction(&self) -> Option<f64> {
        match (self.size, self.size_vram) {
            (Some(s), Some(v)) if s > 0 => Some(v as f64 / s as f64),
            _ => None,
        }
    }
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutPhase {
    /// Establishing the connection took longer than `connect_s`.
    Connect,
    /// No content token arrived within `first_token_s` of sending the request (also when the
    /// total deadline fires before the first token).
    FirstToken,
    /// The whole call took longer than `total_s`.
    Total,
}

/// Every way a call can fail; each maps to a stable `kind()` string stored in records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// Nothing listens at the endpoint (TCP connection refused): the server is down.
    #[error("connection refused by {endpoint}")]
    ConnectionRefused {
        /// Base URL that refused.
        endpoint: String,
    },
    /// Connecting failed for another reason (DNS, TLS, unreachable host).
    #[error("connection to {endpoint} failed: {message}")]
    Connect {
        /// Base URL that could not be reached.
        endpoint: String,
        /// The transport error chain.
        message: String,
    },
    /// The connection broke after it was established (while sending or reading the body).
    #[error("connection reset mid-stream: {message}")]
    Reset {
        /// The transport error chain.
        message: String,
    },
    /// The server answered with a non-2xx status.
    #[error("HTTP {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The server's own error message from the body (capped), else the body text.
        message: String,
    },
    /// The server (a 404 naming a missing model) or the embedded engine (no GGUF file) does
    /// not have the model.
    #[error("model {model:?} not found{hint}")]
    ModelNotFound {
        /// Model name, or the GGUF path for the embedded engine.
        model: String,
        /// How to get it, starting with `: ` or ` (`, appended to the message as is (e.g.
        /// `ollama pull`, the fetch command); may be empty.
        hint: String,
    },
    /// A line of the stream or a metadata answer did not parse as the protocol's JSON.
    #[error("malformed stream data: {message} (in {line:?})")]
    Malformed {
        /// The JSON parser's error.
        message: String,
        /// The offending line, lossily decoded and cut to 200 characters.
        line: String,
    },
    /// The body ended without the protocol's end marker (Ollama `done`, SSE `[DONE]` or a
    /// finished choice).
    #[error("stream ended without a final message")]
    Truncated,
    /// A deadline from the experiment's timeouts passed.
    #[error("timed out ({phase:?}) after {after_s} s")]
    Timeout {
        /// Which deadline fired.
        phase: TimeoutPhase,
        /// The configured limit that was exceeded, s.
        after_s: f64,
    },
    /// The server reported an error inside the stream (an `error` field), or the embedded
    /// engine failed (load, context, decode, its thread stopped).
    #[error("engine error: {0}")]
    Engine(String),
    /// The request or the backend configuration cannot work (bad URL, unset API key
    /// variable, a feature not built in); never retried.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl BackendError {
    /// Stable short name for records and failure summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::ConnectionRefused { .. } => "connection_refused",
            BackendError::Connect { .. } => "connect",
            BackendError::Reset { .. } => "reset",
            BackendError::Http { status: 429, .. } => "http_429",
            BackendError::Http { status, .. } if *status >= 500 => "http_5xx",
            BackendError::Http { .. } => "http_4xx",
            BackendError::ModelNotFound { .. } => "model_not_found",
            BackendError::Malformed { .. } => "malformed",
            BackendError::Truncated => "truncated",
            BackendError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            } => "timeout_connect",
            BackendError::Timeout {
                phase: TimeoutPhase::FirstToken,
                ..
            } => "timeout_first_token",
            BackendError::Timeout {
                phase: TimeoutPhase::Total,
                ..
            } => "timeout_total",
            BackendError::Engine(_) => "engine",
            BackendError::InvalidRequest(_) => "invalid_request",
        }
    }

    /// Worth another attempt under the retry policy? (A missing model or a bad request is not.)
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            BackendError::ModelNotFound { .. }
                | BackendError::InvalidRequest(_)
                | BackendError::Http {
                    status: 400..=428 | 430..=499,
                    ..
                }
        )
    }
}

/// The one contract every backend meets.
pub trait Backend: Send + Sync {
    /// Streams one generation, measuring it with [`ClientTimer`].
    fn generate<'a>(
        &'a self,
        req: &'a GenRequest,
    ) -> BoxFuture<'a, Result<Generation, BackendError>>;

    /// Checks the backend is reachable and the model exists; returns provenance.
    fn preflight<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<BackendInfo, BackendError>>;

    /// The models the server has loaded, when it can say (Ollama `GET /api/ps`); `None` for
    /// servers that cannot (or when asking failed: never an error, it only informs).
    fn loaded<'a>(&'a self, _endpoint: Option<&'a str>) -> BoxFuture<'a, Option<Vec<LoadedModel>>> {
        Box::pin(async { None })
    }

    /// The server's queue right now, when it reports one (llama-server with `--metrics`);
    /// `None` for servers that do not (Ollama has no such endpoint) or when asking failed.
    fn queue<'a>(&'a self, _endpoint: Option<&'a str>) -> BoxFuture<'a, Option<ServerQueue>> {
        Box::pin(async { None })
    }

    /// The request `req` goes out as (endpoint and body), for the call store. The default,
    /// for stand-ins that send nothing, is the request itself as JSON.
    fn wire_request(&self, req: &GenRequest) -> WireRequest {
        WireRequest {
            endpoint: req.endpoint.as_deref().map(redact_url).unwrap_or_default(),
            body: serde_json::to_value(req).unwrap_or_default(),
        }
    }

    /// What a request that sets no option runs with, in the reports' words.
    fn defaults_label(&self) -> String {
        "server defaults".into()
    }

    /// `text` with every secret the backend holds (an API key) replaced by `<redacted>`:
    /// applied to whatever is stored of a call.
    fn redact(&self, text: &str) -> String {
        text.to_string()
    }

    /// What the server (or engine) reports about its own setup, recorded on reload probes
    /// (`Record::server_state`): llama.cpp's `/props` and `/slots`, the embedded engine's
    /// offloaded layers. `None` when it cannot say (never an error: it only informs).
    fn server_state<'a>(
        &'a self,
        _endpoint: Option<&'a str>,
    ) -> BoxFuture<'a, Option<serde_json::Value>> {
        Box::pin(async { None })
    }
}

/// Builds the backend the experiment file asks for.
pub fn build(cfg: &BackendConfig) -> Result<std::sync::Arc<dyn Backend>, BackendError> {
    match cfg.kind {
        BackendKind::Ollama => Ok(std::sync::Arc::new(OllamaBackend::new(cfg)?)),
        BackendKind::Openai => Ok(std::sync::Arc::new(OpenAiBackend::new(cfg)?)),
        #[cfg(feature = "embedded")]
        BackendKind::Embedded => Ok(std::sync::Arc::new(embedded::EmbeddedBackend::new(cfg)?)),
        #[cfg(not(feature = "embedded"))]
        BackendKind::Embedded => Err(BackendError::InvalidRequest(
            "this sweep was built without the `embedded` feature (cargo build --features embedded)"
                .into(),
        )),
    }
}
