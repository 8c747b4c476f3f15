//! OpenAI-compatible servers (llama.cpp `llama-server`, llama-cpp-python, vLLM, …):
//! `POST /v1/chat/completions` streamed as server-sent events (`data: {...}` lines, then
//! `data: [DONE]`), with usage and, from llama.cpp, a `timings` object. Preflight uses
//! `GET /v1/models`.
//!
//! Token counts come from every server, in this order: the stream's own (`usage`, or
//! llama.cpp's `timings`); else the server's tokenize endpoint applied to the prompt and the
//! output text after the stream (llama.cpp `POST /tokenize`, llama-cpp-python
//! `POST /extras/tokenize`: llama-cpp-python's server ignores `stream_options.include_usage`
//! and sends no timings); else the number of non-empty content chunks.
//! [`ServerMetrics::tokens_source`](super::ServerMetrics::tokens_source) says which.

use super::http::{self, Deadlines};
use super::stream::{LineParser, LineStream, StreamState};
use super::{
    Backend, BackendError, BackendInfo, BoxFuture, ClientTimer, GenRequest, Generation,
    WireRequest, TOKENS_FROM_TOKENIZE, TOKENS_FROM_USAGE,
};
use crate::spec::{BackendConfig, Timeouts};
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::OnceCell;

/// A client for one or more OpenAI-compatible servers.
#[derive(Clone)]
pub struct OpenAiBackend {
    client: reqwest::Client,
    urls: Vec<String>,
    timeouts: Timeouts,
    /// Bearer token read from the environment; never printed (see the Debug impl).
    api_key: Option<String>,
    cache_prompt: bool,
    extra: Map<String, Value>,
    /// Which tokenize endpoint each base URL has, found out once (shared by clones).
    tokenizers: Arc<Mutex<HashMap<String, Arc<OnceCell<TokenizeApi>>>>>,
}

/// A server's tokenize endpoint, with the tokens it adds to any text (BOS): what it answers
/// for the empty string, subtracted from every count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenizeApi {
    /// llama.cpp `llama-server`: `POST /tokenize` `{"content": text}` → `{"tokens": [...]}`
    /// (ggml-org/llama.cpp `tools/server/README.md`; `add_special` defaults to false, no BOS).
    LlamaCpp { overhead: u64 },
    /// llama-cpp-python: `POST /extras/tokenize` `{"input": text, "model": id}` →
    /// `{"tokens": [...]}` (abetlen/llama-cpp-python `llama_cpp/server/app.py`,
    /// `types.py` `TokenizeInputRequest`; `Llama.tokenize` adds BOS by default). The model
    /// is sent because a multi-model llama-cpp-python server swaps in the model it names.
    Extras { overhead: u64 },
    /// Neither answered: count chunks.
    None,
}

/// Why a tokenize request gave no count.
enum TokenizeFailure {
    /// The server says it has no such endpoint (a 4xx, or an answer of another shape).
    Absent,
    /// The server or the network failed (5xx, 429, reset, timeout): worth asking again.
    Transient,
}

impl std::fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiBackend")
            .field("urls", &self.urls)
            .field("timeouts", &self.timeouts)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("cache_prompt", &self.cache_prompt)
            .field("extra", &self.extra)
            .finish()
    }
}

impl OpenAiBackend {
    /// A client for the experiment's `urls` (a trailing `/v1` stripped); reads the API key
    /// from the variable `api_key_env` names, an error when that is unset or empty. Connects
    /// to nothing yet.
    pub fn new(cfg: &BackendConfig) -> Result<Self, BackendError> {
        let api_key = match &cfg.api_key_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
                _ => {
                    return Err(BackendError::InvalidRequest(format!(
                        "environment variable {var} (named by api_key_env) is not set or empty"
                    )))
                }
            },
        };
        Ok(Self {
            client: http::client(&cfg.timeouts, cfg.fresh_connections)?,
            urls: cfg
                .urls
                .iter()
                .map(|u| openai_base(u))
                .collect::<Result<_, _>>()?,
            timeouts: cfg.timeouts.clone(),
            api_key,
            cache_prompt: cfg.cache_prompt,
            extra: cfg.extra.clone(),
            tokenizers: Arc::default(),
        })
        .and_then(|b: Self| {
            if b.urls.is_empty() {
                Err(BackendError::InvalidRequest(
                    "the backend needs at least one url".into(),
                ))
            } else {
                Ok(b)
            }
        })
    }

    /// Removes the bearer token from an error before it can reach a record, a log or the
    /// terminal: some servers and proxies echo the Authorization header in error bodies.
    fn redacted(&self, e: BackendError) -> BackendError {
        match &self.api_key {
            Some(k) => redact(e, k),
            None => e,
        }
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// The JSON body: extra fields first, so that the cell's own options win over them.
    fn body(&self, req: &GenRequest) -> Value {
        let mut m = self.extra.clone();
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = &req.system {
            messages.push(serde_json::json!({"role": "system", "content": s}));
        }
        messages.push(serde_json::json!({"role": "user", "content": req.prompt}));
        m.insert("model".into(), Value::from(req.model.as_str()));
        m.insert("messages".into(), Value::Array(messages));
        m.insert("stream".into(), Value::Bool(true));
        m.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
        let o = &req.options;
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("temperature", o.temperature.map(Value::from));
        put("top_p", o.top_p.map(Value::from));
        put("max_tokens", o.num_predict.map(Value::from));
        put("seed", o.seed.map(Value::from));
        put("top_k", o.top_k.map(Value::from));
        put("repeat_penalty", o.repeat_penalty.map(Value::from));
        m.insert("cache_prompt".into(), Value::Bool(self.cache_prompt));
        Value::Object(m)
    }

    async fn generate_inner(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        let base = match &req.endpoint {
            Some(e) => Cow::Owned(openai_base(e)?),
            None => Cow::Borrowed(self.urls[0].as_str()),
        };
        let url = format!("{base}/v1/chat/completions");
        let rb = self.authed(self.client.post(&url).json(&self.body(req)));

        let timer = ClientTimer::start();
        let mut deadlines = Deadlines::start(&self.timeouts)?;
        let resp = http::send(rb, &base, &mut deadlines, &req.model, models_hint).await?;
        let mut g = SseStream::new(timer).read(resp, &mut deadlines).await?;
        // The call's client timings are final: counting happens after them.
        self.complete_counts(&base, req, &mut g).await;
        Ok(g)
    }

    /// Fills the token counts the stream did not carry: the tokenize endpoint's counts of the
    /// prompt (system and user text) and of the output text, else the output's chunk count.
    ///
    /// A prompt count from tokenize excludes the chat template's own tokens (role markers,
    /// turn separators) and BOS, so it is lower than the server's own prompt count; an
    /// output count is of the text re-tokenized, which can differ from the tokens generated
    /// by a token or two.
    async fn complete_counts(&self, base: &str, req: &GenRequest, g: &mut Generation) {
        if g.server.prompt_tokens.is_some() && g.server.output_tokens.is_some() {
            g.server.tokens_source = Some(TOKENS_FROM_USAGE.to_string());
            return;
        }
        let api = self.tokenize_api(base, &req.model).await;
        if api != TokenizeApi::None {
            let system = req.system.as_deref().unwrap_or("");
            let (p, s, o) = futures_util::future::join3(
                self.tokenize_count(base, api, &req.model, &req.prompt),
                async {
                    if system.is_empty() {
                        Ok(0)
                    } else {
                        self.tokenize_count(base, api, &req.model, system).await
                    }
                },
                self.tokenize_count(base, api, &req.model, &g.text),
            )
            .await;
            if let (Ok(p), Ok(s), Ok(o)) = (p, s, o) {
                g.server.prompt_tokens.get_or_insert(p + s);
                g.server.output_tokens.get_or_insert(o);
                g.server.tokens_source = Some(TOKENS_FROM_TOKENIZE.to_string());
                return;
            }
        }
        if g.server.output_tokens.is_none() {
            super::stream::count_chunks(g);
        } else {
            // The server's own output count, without a prompt count.
            g.server.tokens_source = Some(TOKENS_FROM_USAGE.to_string());
        }
    }

    /// The tokenize endpoint of `base`, asked once per base URL: a definite answer (found, or
    /// absent) is kept for the backend's life; a transient failure is not, and that call
    /// counts chunks.
    async fn tokenize_api(&self, base: &str, model: &str) -> TokenizeApi {
        let cell = match self.tokenizers.lock() {
            Ok(mut m) => m.entry(base.to_string()).or_default().clone(),
            Err(_) => return TokenizeApi::None,
        };
        let found = cell
            .get_or_try_init(|| async {
                for probe in [
                    TokenizeApi::LlamaCpp { overhead: 0 },
                    TokenizeApi::Extras { overhead: 0 },
                ] {
                    match self.tokenize_count(base, probe, model, "").await {
                        Ok(overhead) => {
                            let api = match probe {
                                TokenizeApi::LlamaCpp { .. } => TokenizeApi::LlamaCpp { overhead },
                                _ => TokenizeApi::Extras { overhead },
                            };
                            tracing::debug!(base, ?api, "tokenize endpoint found");
                            return Ok(api);
                        }
                        Err(TokenizeFailure::Absent) => {}
                        Err(TokenizeFailure::Transient) => return Err(()),
                    }
                }
                tracing::debug!(base, "no tokenize endpoint: counting chunks");
                Ok(TokenizeApi::None)
            })
            .await;
        found.copied().unwrap_or(TokenizeApi::None)
    }

    /// Tokens in `text` by the server's tokenizer, less what it adds to any text.
    async fn tokenize_count(
        &self,
        base: &str,
        api: TokenizeApi,
        model: &str,
        text: &str,
    ) -> Result<u64, TokenizeFailure> {
        let (path, body, overhead) = match api {
            TokenizeApi::LlamaCpp { overhead } => (
                "/tokenize",
                serde_json::json!({ "content": text }),
                overhead,
            ),
            TokenizeApi::Extras { overhead } => (
                "/extras/tokenize",
                serde_json::json!({ "input": text, "model": model }),
                overhead,
            ),
            TokenizeApi::None => return Err(TokenizeFailure::Absent),
        };
        let classify = |e: BackendError| {
            tracing::debug!(base, path, error = %self.redacted(e.clone()), "tokenize failed");
            match e {
                BackendError::ModelNotFound { .. } => TokenizeFailure::Absent,
                BackendError::Http { status, .. }
                    if (400..500).contains(&status) && status != 429 =>
                {
                    TokenizeFailure::Absent
                }
                _ => TokenizeFailure::Transient,
            }
        };
        let mut d = Deadlines::metadata(&self.timeouts).map_err(classify)?;
        let rb = self.authed(self.client.post(format!("{base}{path}")).json(&body));
        let no_hint: fn(&str) -> String = |_| String::new();
        let resp = http::send(rb, base, &mut d, model, no_hint)
            .await
            .map_err(classify)?;
        match http::read_json::<TokensAnswer>(resp, &mut d).await {
            Ok(a) => Ok((a.tokens.len() as u64).saturating_sub(overhead)),
            // A 200 of another shape is some other endpoint under that path.
            Err(BackendError::Malformed { .. }) => Err(TokenizeFailure::Absent),
            Err(e) => Err(classify(e)),
        }
    }

    async fn preflight_one(&self, base: &str, model: &str) -> Result<(), BackendError> {
        let mut d = Deadlines::metadata(&self.timeouts)?;
        let no_hint: fn(&str) -> String = |_| String::new();
        let rb = self.authed(self.client.get(format!("{base}/v1/models")));
        let resp = match http::send(rb, base, &mut d, model, no_hint).await {
            Ok(r) => r,
            // Some servers have no model list: nothing to check against.
            Err(BackendError::Http { status: 404, .. } | BackendError::ModelNotFound { .. }) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let list: Models = http::read_json(resp, &mut d).await?;
        if list.data.iter().any(|m| m.id == model) {
            return Ok(());
        }
        let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
        Err(BackendError::ModelNotFound {
            model: model.to_string(),
            hint: format!(" ({base}/v1/models lists: {})", ids.join(", ")),
        })
    }
}

/// `e` with every occurrence of `secret` in its text replaced.
fn redact(e: BackendError, secret: &str) -> BackendError {
    let r = |s: String| s.replace(secret, "<redacted>");
    match e {
        BackendError::ConnectionRefused { endpoint } => BackendError::ConnectionRefused {
            endpoint: r(endpoint),
        },
        BackendError::Connect { endpoint, message } => BackendError::Connect {
            endpoint: r(endpoint),
            message: r(message),
        },
        BackendError::Reset { message } => BackendError::Reset {
            message: r(message),
        },
        BackendError::Http { status, message } => BackendError::Http {
            status,
            message: r(message),
        },
        BackendError::ModelNotFound { model, hint } => BackendError::ModelNotFound {
            model: r(model),
            hint: r(hint),
        },
        BackendError::Malformed { message, line } => BackendError::Malformed {
            message: r(message),
            line: r(line),
        },
        BackendError::Engine(m) => BackendError::Engine(r(m)),
        BackendError::InvalidRequest(m) => BackendError::InvalidRequest(r(m)),
        e @ (BackendError::Truncated | BackendError::Timeout { .. }) => e,
    }
}

/// Endpoint without a trailing `/` or `/v1`, so that `/v1/...` paths can be appended.
fn openai_base(u: &str) -> Result<String, BackendError> {
    let b = http::base_url(u)?;
    Ok(b.strip_suffix("/v1").unwrap_or(&b).to_string())
}

fn models_hint(_model: &str) -> String {
    " (check the model id against GET /v1/models)".to_string()
}

impl Backend for OpenAiBackend {
    fn generate<'a>(
        &'a self,
        req: &'a GenRequest,
    ) -> BoxFuture<'a, Result<Generation, BackendError>> {
        Box::pin(async move { self.generate_inner(req).await.map_err(|e| self.redacted(e)) })
    }

    fn wire_request(&self, req: &GenRequest) -> WireRequest {
        let base = match &req.endpoint {
            Some(e) => openai_base(e).unwrap_or_else(|_| e.clone()),
            None => self.urls[0].clone(),
        };
        // The key travels in the Authorization header, never in the body; an `extra` field
        // could still hold it by mistake, so the body's text is redacted too.
        let body = self.body(req);
        let body = match &self.api_key {
            Some(k) if body.to_string().contains(k.as_str()) => {
                serde_json::from_str(&body.to_string().replace(k.as_str(), "<redacted>"))
                    .unwrap_or_default()
            }
            _ => body,
        };
        WireRequest {
            endpoint: self.redact(&super::redact_url(&format!("{base}/v1/chat/completions"))),
            body,
        }
    }

    fn defaults_label(&self) -> String {
        crate::spec::BackendKind::Openai.defaults_label().into()
    }

    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(k) => text.replace(k.as_str(), "<redacted>"),
            None => text.to_string(),
        }
    }

    fn preflight<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<BackendInfo, BackendError>> {
        Box::pin(async move {
            for base in &self.urls {
                self.preflight_one(base, model)
                    .await
                    .map_err(|e| self.redacted(e))?;
            }
            Ok(BackendInfo {
                kind: "openai".into(),
                version: None,
                model_digest: None,
                endpoints: self.urls.clone(),
                ..Default::default()
            })
        })
    }

    fn queue<'a>(&'a self, endpoint: Option<&'a str>) -> BoxFuture<'a, Option<super::ServerQueue>> {
        Box::pin(async move {
            let base = match endpoint {
                Some(e) => openai_base(e).ok()?,
                None => self.urls.first()?.clone(),
            };
            let text = self.get_text(&base, "/metrics").await?;
            parse_queue(&text)
        })
    }

    fn server_state<'a>(&'a self, endpoint: Option<&'a str>) -> BoxFuture<'a, Option<Value>> {
        Box::pin(async move {
            let base = match endpoint {
                Some(e) => openai_base(e).ok()?,
                None => self.urls[0].clone(),
            };
            let (props, slots) = futures_util::future::join(
                self.get_json(&base, "/props"),
                self.get_json(&base, "/slots"),
            )
            .await;
            server_state_of(props.as_ref(), slots.as_ref())
        })
    }
}

impl OpenAiBackend {
    /// `GET {base}{path}` as text (at most 1 MiB); `None` on any failure or non-2xx answer
    /// (llama-server answers `/metrics` with 501 unless started with `--metrics`).
    async fn get_text(&self, base: &str, path: &str) -> Option<String> {
        let mut d = Deadlines::metadata(&self.timeouts).ok()?;
        let no_hint: fn(&str) -> String = |_| String::new();
        let rb = self.authed(self.client.get(format!("{base}{path}")));
        let mut resp = http::send(rb, base, &mut d, "", no_hint).await.ok()?;
        let mut body = Vec::new();
        while let Some(c) = http::next_chunk(&mut resp, &mut d).await.ok()? {
            body.extend_from_slice(&c);
            if body.len() > 1024 * 1024 {
                return None;
            }
        }
        String::from_utf8(body).ok()
    }

    /// `GET {base}{path}` as JSON; `None` on any failure (llama-cpp-python and vLLM have no
    /// `/props`; llama-server answers `/slots` only with `--slots`, on by default).
    async fn get_json(&self, base: &str, path: &str) -> Option<Value> {
        let mut d = Deadlines::metadata(&self.timeouts).ok()?;
        let no_hint: fn(&str) -> String = |_| String::new();
        let rb = self.authed(self.client.get(format!("{base}{path}")));
        let resp = http::send(rb, base, &mut d, "", no_hint).await.ok()?;
        http::read_json::<Value>(resp, &mut d).await.ok()
    }
}

/// The (running, waiting) gauge names of the servers whose Prometheus text sweep reads:
/// llama-server with `--metrics` (tools/server/README.md), vLLM (docs "Production
/// Metrics": `vllm:num_requests_running`/`_waiting`, labelled by model) and SGLang with
/// `--enable-metrics` (docs "Production Metrics": `sglang:num_running_reqs`/`num_queue_reqs`).
const QUEUE_GAUGES: [(&str, &str); 3] = [
    ("llamacpp:requests_processing", "llamacpp:requests_deferred"),
    ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
];

/// The queue gauges of a server's Prometheus text (`/metrics`): the first server whose two
/// gauges are both there, each summed over its label sets (one per engine or rank).
pub fn parse_queue(text: &str) -> Option<super::ServerQueue> {
    let gauge = |name: &str| {
        let values: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                // `name value` or `name{labels} value`, never a longer name.
                let rest = match rest.strip_prefix('{') {
                    Some(r) => &r[r.find('}')? + 1..],
                    None if rest.starts_with(' ') => rest,
                    None => return None,
                };
                rest.split_whitespace().next()?.parse::<f64>().ok()
            })
            .filter(|v| v.is_finite() && *v >= 0.0)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>().round() as u32)
    };
    QUEUE_GAUGES.iter().find_map(|(running, waiting)| {
        Some(super::ServerQueue {
            processing: gauge(running)?,
            deferred: gauge(waiting)?,
        })
    })
}

/// What llama.cpp's `llama-server` says about its setup, trimmed to what explains a
/// measurement: from `/props` the model, its context (`default_generation_settings.n_ctx`),
/// the slots and the build; from `/slots` each slot's context and whether it was busy.
/// (ggml-org/llama.cpp `tools/server/README.md`.) `None` when neither answered as JSON.
pub fn server_state_of(props: Option<&Value>, slots: Option<&Value>) -> Option<Value> {
    let mut out = Map::new();
    if let Some(p) = props.and_then(Value::as_object) {
        let mut keep = Map::new();
        for k in [
            "model_alias",
            "model_path",
            "total_slots",
            "build_info",
            "is_sleeping",
        ] {
            if let Some(v) = p.get(k).filter(|v| !v.is_null()) {
                keep.insert(k.into(), v.clone());
            }
        }
        if let Some(n) = p
            .get("default_generation_settings")
            .and_then(|g| g.get("n_ctx"))
        {
            keep.insert("n_ctx".into(), n.clone());
        }
        out.insert("props".into(), Value::Object(keep));
    }
    if let Some(arr) = slots.and_then(Value::as_array) {
        let kept: Vec<Value> = arr
            .iter()
            .filter_map(Value::as_object)
            .map(|s| {
                let mut k = Map::new();
                for f in [
                    "id",
                    "n_ctx",
                    "is_processing",
                    "n_prompt_tokens",
                    "speculative",
                ] {
                    if let Some(v) = s.get(f) {
                        k.insert(f.into(), v.clone());
                    }
                }
                Value::Object(k)
            })
            .collect();
        out.insert("slots".into(), Value::Array(kept));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// A tokenize answer: only the number of tokens matters (ids, or llama.cpp's
/// `{"id", "piece"}` objects).
#[derive(Deserialize)]
struct TokensAnswer {
    tokens: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct Models {
    #[serde(default)]
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
}

/// One `data:` payload. Only the first choice is kept, without allocating a vector.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: FirstChoice<'a>,
    usage: Option<Usage>,
    timings: Option<Timings>,
    error: Option<Value>,
}

#[derive(Default)]
struct FirstChoice<'a>(Option<Choice<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of choices")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(FirstChoice(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<Choice<'a>>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstChoice(first))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// llama.cpp's per-request timings.
#[derive(Deserialize)]
struct Timings {
    prompt_n: Option<u64>,
    prompt_ms: Option<f64>,
    predicted_n: Option<u64>,
    predicted_ms: Option<f64>,
}

/// Incremental parser of a chat-completions SSE body, timing each token chunk.
///
/// Public so that benchmarks measure exactly the code the backend runs.
pub type SseStream = LineStream<SseLines>;

/// Server-sent events of chat completions: pieces in `choices[0].delta`, token counts in
/// `usage`, llama.cpp's `timings`, and `data: [DONE]` at the end.
#[derive(Debug, Default)]
pub struct SseLines {
    /// When the last chunk at or after `finish_reason` arrived (for servers without `[DONE]`).
    finished: Option<Instant>,
}

impl LineParser for SseLines {
    fn line(&mut self, raw: &[u8], st: &mut StreamState) -> Result<bool, BackendError> {
        // Only `data:` lines matter; blank separators, comments, `event:`/`id:` are skipped.
        let Some(data) = raw.strip_prefix(b"data:") else {
            return Ok(false);
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data == b"[DONE]" {
            st.end = Some(Instant::now());
            return Ok(true);
        }
        let chunk: Chunk<'_> =
            serde_json::from_slice(data).map_err(|e| BackendError::Malformed {
                message: e.to_string(),
                line: http::quote_line(raw),
            })?;
        if let Some(err) = chunk.error {
            let body = serde_json::json!({ "error": err }).to_string();
            return Err(BackendError::Engine(http::error_message(body.as_bytes())));
        }
        if let Some(c) = chunk.choices.0 {
            let piece = c.delta.and_then(|d| d.content);
            st.piece(piece.as_deref().unwrap_or(""));
            if c.finish_reason.is_some() {
                self.finished = Some(Instant::now());
            }
        }
        let server = &mut st.server;
        if let Some(u) = chunk.usage {
            server.prompt_tokens = u.prompt_tokens.or(server.prompt_tokens);
            server.output_tokens = u.completion_tokens.or(server.output_tokens);
            server.tokens_source = Some(TOKENS_FROM_USAGE.to_string());
            if self.finished.is_some() {
                self.finished = Some(Instant::now());
            }
        }
        if let Some(t) = chunk.timings {
            server.prompt_eval_ms = t.prompt_ms;
            server.eval_ms = t.predicted_ms;
            // Without usage, llama.cpp's own counts; `prompt_n` counts only the prompt
            // tokens evaluated, not those reused from its prompt cache (`cache_n`).
            server.prompt_tokens = server.prompt_tokens.or(t.prompt_n);
            server.output_tokens = server.output_tokens.or(t.predicted_n);
            server.tokens_source = Some(TOKENS_FROM_USAGE.to_string());
            if self.finished.is_some() {
                self.finished = Some(Instant::now());
            }
        }
        Ok(false)
    }

    /// Without `[DONE]` the body is complete only if a choice finished.
    fn end_without_marker(&mut self, st: &mut StreamState) {
        st.end = self.finished;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_the_key_from_every_text() {
        let e = redact(
            BackendError::Http {
                status: 401,
                message: "bad Authorization: Bearer sk-1; sk-1".into(),
            },
            "sk-1",
        );
        assert_eq!(
            e.to_string(),
            "HTTP 401: bad Authorization: Bearer <redacted>; <redacted>"
        );
        let e = redact(
            BackendError::Malformed {
                message: "x".into(),
                line: "{sk-1".into(),
            },
            "sk-1",
        );
        assert!(!e.to_string().contains("sk-1"));
    }

    #[test]
    fn sse_parses_content_usage_timings() {
        let mut s = SseStream::new(ClientTimer::start());
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            ": keep-alive comment\n\n",
            "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\r\n\r\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],",
            "\"timings\":{\"prompt_n\":12,\"prompt_ms\":30.5,\"predicted_n\":2,\"predicted_ms\":51.25}}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":13,\"completion_tokens\":2,\"total_tokens\":15}}\n\n",
            "data: [DONE]\n\n"
        );
        assert!(s.feed(body.as_bytes()).unwrap());
        let g = s.finish().unwrap();
        assert_eq!(g.text, "Hi there");
        assert_eq!(g.timing.chunks, 2);
        assert_eq!(g.server.prompt_eval_ms, Some(30.5));
        assert_eq!(g.server.eval_ms, Some(51.25));
        // usage wins over timings for counts
        assert_eq!(g.server.prompt_tokens, Some(13));
        assert_eq!(g.server.output_tokens, Some(2));
        assert_eq!(g.server.load_ms, None);
    }

    #[test]
    fn sse_without_done_needs_finish_reason() {
        let mut s = SseStream::new(ClientTimer::start());
        s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
            .unwrap();
        assert_eq!(s.end_of_body().unwrap_err(), BackendError::Truncated);

        let mut s = SseStream::new(ClientTimer::start());
        s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"length\"}]}\n\n")
            .unwrap();
        s.end_of_body().unwrap();
        assert_eq!(s.finish().unwrap().text, "a");
    }

    #[test]
    fn sse_errors_are_typed() {
        let mut s = SseStream::new(ClientTimer::start());
        assert_eq!(
            s.feed(b"data: {\"choices\":[\n").unwrap_err().kind(),
            "malformed"
        );
        let mut s = SseStream::new(ClientTimer::start());
        let e = s
            .feed(b"data: {\"error\":{\"message\":\"boom\",\"code\":500}}\n")
            .unwrap_err();
        assert_eq!(e, BackendError::Engine("boom".into()));
    }

    #[test]
    fn queue_gauges_are_read_from_llama_server_metrics() {
        // As the llama-server of scripts/llama-server.sh answered with --metrics -np 2 and
        // four requests in flight (HELP/TYPE lines and the other gauges around them).
        let text =
            "# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s\n\
                    # TYPE llamacpp:predicted_tokens_seconds gauge\n\
                    llamacpp:predicted_tokens_seconds 0\n\
                    # HELP llamacpp:requests_processing Number of requests processing\n\
                    # TYPE llamacpp:requests_processing gauge\n\
                    llamacpp:requests_processing 2\n\
                    # HELP llamacpp:requests_deferred Number of requests deferred\n\
                    # TYPE llamacpp:requests_deferred gauge\n\
                    llamacpp:requests_deferred 2\n";
        assert_eq!(
            parse_queue(text),
            Some(crate::backend::ServerQueue {
                processing: 2,
                deferred: 2
            })
        );
        // The 501 body of a server without --metrics: no queue gauges; one gauge alone is
        // not a queue.
        assert_eq!(parse_queue("{\"error\":{\"code\":501}}"), None);
        assert_eq!(parse_queue("vllm:num_requests_waiting 3\n"), None);
    }

    #[test]
    fn queue_gauges_are_read_from_vllm_and_sglang_metrics() {
        // vLLM's shape (docs.vllm.ai "Production Metrics": float values, a model_name
        // label, one line per engine in data-parallel serving: summed), with a histogram
        // whose name starts like a gauge's that must not be read.
        let vllm = "# TYPE vllm:num_requests_running gauge\n\
            vllm:num_requests_running{engine=\"0\",model_name=\"google/gemma-3-270m\"} 2.0\n\
            vllm:num_requests_running{engine=\"1\",model_name=\"google/gemma-3-270m\"} 1.0\n\
            # TYPE vllm:num_requests_waiting gauge\n\
            vllm:num_requests_waiting{engine=\"0\",model_name=\"google/gemma-3-270m\"} 3.0\n\
            vllm:num_requests_waiting{engine=\"1\",model_name=\"google/gemma-3-270m\"} 0.0\n\
            vllm:num_requests_waiting_time_seconds_sum{model_name=\"m\"} 9.0\n";
        assert_eq!(
            parse_queue(vllm),
            Some(crate::backend::ServerQueue {
                processing: 3,
                deferred: 3
            })
        );
        // SGLang's shape (docs.sglang.io "Production Metrics", --enable-metrics).
        let sglang = "sglang:num_running_reqs{model_name=\"m\"} 4.0\n\
            sglang:num_queue_reqs{model_name=\"m\"} 7.0\n";
        assert_eq!(
            parse_queue(sglang),
            Some(crate::backend::ServerQueue {
                processing: 4,
                deferred: 7
            })
        );
    }

    #[test]
    fn server_state_keeps_what_explains_a_measurement() {
        // The shapes a real llama-server (scripts/llama-server.sh, -c 2048) answers.
        let props = serde_json::json!({
            "total_slots": 4, "model_alias": "models/gemma-3-270m-q4_k_m.gguf",
            "model_path": "models/gemma-3-270m-q4_k_m.gguf", "build_info": "b0-unknown",
            "is_sleeping": false, "chat_template": "{{ long }}",
            "default_generation_settings": {"n_ctx": 2048, "params": {"top_k": 40}}
        });
        let slots = serde_json::json!([
            {"id": 0, "n_ctx": 2048, "speculative": false, "is_processing": false,
             "params": {"top_k": 40}},
            {"id": 1, "n_ctx": 2048, "speculative": false, "is_processing": true}
        ]);
        let s = server_state_of(Some(&props), Some(&slots)).unwrap();
        assert_eq!(s["props"]["n_ctx"], 2048);
        assert_eq!(s["props"]["total_slots"], 4);
        assert!(s["props"].get("chat_template").is_none());
        assert_eq!(s["slots"][1]["is_processing"], true);
        assert!(s["slots"][0].get("params").is_none());
        assert_eq!(server_state_of(None, None), None);
        let only = server_state_of(None, Some(&serde_json::json!({"error": 1})));
        assert_eq!(only, None, "an error object is not a slot list");
    }

    #[test]
    fn base_strips_v1() {
        assert_eq!(
            openai_base("http://127.0.0.1:8080/v1/").unwrap(),
            "http://127.0.0.1:8080"
        );
    }
}
