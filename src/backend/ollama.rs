//! Ollama's native API: `POST /api/generate` or `/api/chat` streamed as NDJSON, one JSON
//! object per token chunk and a final object (`done: true`) with the server's durations.
//! Preflight uses `GET /api/version`, `GET /api/tags` and `POST /api/show`; `GET /api/ps`
//! says which models are loaded ([`Backend::loaded`]).

use super::http::{self, Deadlines};
use super::stream::{LineParser, LineStream, StreamState};
use super::{
    Backend, BackendError, BackendInfo, BoxFuture, ClientTimer, GenRequest, Generation,
    LoadedModel, ServerMetrics, WireRequest, TOKENS_FROM_USAGE,
};
use crate::spec::{BackendConfig, ModelOptions, OllamaApi, Timeouts};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::Instant;

/// A client for one or more Ollama servers.
#[derive(Debug, Clone)]
pub struct OllamaBackend {
    client: reqwest::Client,
    urls: Vec<String>,
    api: OllamaApi,
    timeouts: Timeouts,
}

impl OllamaBackend {
    /// A client for the experiment's `urls` (checked and normalised) with its timeouts and
    /// Ollama API (`generate` or `chat`); connects to nothing yet.
    pub fn new(cfg: &BackendConfig) -> Result<Self, BackendError> {
        Ok(Self {
            client: http::client(&cfg.timeouts, cfg.fresh_connections)?,
            urls: http::base_urls(&cfg.urls)?,
            api: cfg.ollama_api,
            timeouts: cfg.timeouts.clone(),
        })
    }

    fn base<'a>(&'a self, req: &'a GenRequest) -> Result<Cow<'a, str>, BackendError> {
        match &req.endpoint {
            Some(e) => http::base_url(e).map(Cow::Owned),
            None => Ok(Cow::Borrowed(&self.urls[0])),
        }
    }

    /// The URL and the JSON body of a generation: what is sent, and what the call store keeps.
    fn wire<'a>(
        &'a self,
        req: &'a GenRequest,
    ) -> Result<(Cow<'a, str>, String, serde_json::Value), BackendError> {
        let base = self.base(req)?;
        let (path, body) = request_body(self.api, req);
        let url = format!("{base}{path}");
        let body = serde_json::to_value(body)
            .map_err(|e| BackendError::InvalidRequest(format!("request body: {e}")))?;
        Ok((base, url, body))
    }

    async fn generate_inner(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        let (base, url, body) = self.wire(req)?;
        let rb = self.client.post(&url).json(&body);

        let timer = ClientTimer::start();
        let mut deadlines = Deadlines::start(&self.timeouts)?;
        let resp = http::send(rb, &base, &mut deadlines, &req.model, pull_hint).await?;
        let mut g = OllamaStream::new(timer).read(resp, &mut deadlines).await?;
        // Ollama always sends eval_count; a compatible server that does not gets the
        // chunk count (Ollama has no tokenize endpoint to ask).
        if g.server.output_tokens.is_none() {
            super::stream::count_chunks(&mut g);
        }
        Ok(g)
    }

    /// `GET {base}/api/ps`: the loaded models, as the server reports them.
    async fn ps(&self, endpoint: Option<&str>) -> Result<Vec<LoadedModel>, BackendError> {
        let base = match endpoint {
            Some(e) => http::base_url(e)?,
            None => self.urls[0].clone(),
        };
        let mut d = Deadlines::metadata(&self.timeouts)?;
        let no_hint: fn(&str) -> String = |_| String::new();
        let resp = http::send(
            self.client.get(format!("{base}/api/ps")),
            &base,
            &mut d,
            "",
            no_hint,
        )
        .await?;
        let ps: Ps = http::read_json(resp, &mut d).await?;
        Ok(ps.models.iter().filter_map(loaded_model).collect())
    }

    async fn preflight_one(&self, base: &str, model: &str) -> Result<Preflight, BackendError> {
        let mut d = Deadlines::metadata(&self.timeouts)?;
        let no_hint: fn(&str) -> String = |_| String::new();
        let resp = http::send(
            self.client.get(format!("{base}/api/version")),
            base,
            &mut d,
            model,
            no_hint,
        )
        .await?;
        let version: Version = http::read_json(resp, &mut d).await?;

        let resp = http::send(
            self.client.get(format!("{base}/api/tags")),
            base,
            &mut d,
            model,
            no_hint,
        )
        .await?;
        let tags: Tags = http::read_json(resp, &mut d).await?;
        let digest = tags
            .models
            .iter()
            .find(|t| t.is(model))
            .and_then(|t| t.digest.clone());
        // /api/show resolves aliases (or says the model is missing) and reports the model's
        // own parameters: the defaults a request that sets nothing runs with.
        let resp = http::send(
            self.client
                .post(format!("{base}/api/show"))
                .json(&serde_json::json!({ "model": model })),
            base,
            &mut d,
            model,
            pull_hint,
        )
        .await;
        match resp {
            Ok(resp) => {
                let show: serde_json::Value = http::read_json(resp, &mut d).await?;
                Ok(Preflight {
                    version: version.version,
                    digest,
                    defaults: show_defaults(&show),
                })
            }
            Err(BackendError::Http { status: 404, .. }) => Err(BackendError::ModelNotFound {
                model: model.to_string(),
                hint: pull_hint(model),
            }),
            Err(e) => Err(e),
        }
    }
}

/// The model options among `/api/show`'s `parameters` (the Modelfile's `PARAMETER` lines,
/// one `name value` per line; `stop` and other non-options are skipped; a name given twice
/// keeps its first value).
pub fn show_defaults(show: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let text = show
        .get("parameters")
        .and_then(|p| p.as_str())
        .unwrap_or("");
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        if crate::spec::OPTION_NAMES.contains(&k) && it.next().is_none() {
            out.entry(k.to_string())
                .or_insert_with(|| v.trim_matches('"').to_string());
        }
    }
    out
}

struct Preflight {
    version: Option<String>,
    digest: Option<String>,
    defaults: std::collections::BTreeMap<String, String>,
}

fn pull_hint(model: &str) -> String {
    format!(" (pull it first: ollama pull {model})")
}

impl Backend for OllamaBackend {
    fn generate<'a>(
        &'a self,
        req: &'a GenRequest,
    ) -> BoxFuture<'a, Result<Generation, BackendError>> {
        Box::pin(self.generate_inner(req))
    }

    fn preflight<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<BackendInfo, BackendError>> {
        Box::pin(async move {
            let mut info = BackendInfo {
                kind: "ollama".into(),
                endpoints: self.urls.clone(),
                ..Default::default()
            };
            for (i, base) in self.urls.iter().enumerate() {
                let p = self.preflight_one(base, model).await?;
                if i == 0 {
                    info.version = p.version;
                    info.model_digest = p.digest;
                    info.defaults = p.defaults;
                }
            }
            Ok(info)
        })
    }

    fn wire_request(&self, req: &GenRequest) -> WireRequest {
        match self.wire(req) {
            Ok((_, url, body)) => WireRequest {
                endpoint: super::redact_url(&url),
                body,
            },
            // The same error fails the call itself; keep what was asked.
            Err(_) => WireRequest {
                endpoint: req
                    .endpoint
                    .as_deref()
                    .map(super::redact_url)
                    .unwrap_or_default(),
                body: serde_json::to_value(req).unwrap_or_default(),
            },
        }
    }

    fn defaults_label(&self) -> String {
        crate::spec::BackendKind::Ollama.defaults_label().into()
    }

    fn loaded<'a>(&'a self, endpoint: Option<&'a str>) -> BoxFuture<'a, Option<Vec<LoadedModel>>> {
        Box::pin(async move {
            match self.ps(endpoint).await {
                Ok(models) => Some(models),
                Err(e) => {
                    tracing::debug!(endpoint = ?endpoint, error = %e, "GET /api/ps failed");
                    None
                }
            }
        })
    }
}

/// `GET /api/ps` (ollama/ollama `api/types.go` `ProcessResponse`). Entries are read field by
/// field, leniently: a field of an unexpected type is left out, not an error.
#[derive(Deserialize)]
struct Ps {
    #[serde(default)]
    models: Vec<serde_json::Value>,
}

/// One `ProcessModelResponse`: `name`/`model`, `size`, `size_vram`, `expires_at`, and
/// `context_length` (reported since Ollama 0.9.6; 0 or absent: unknown). An entry without
/// a name is skipped.
fn loaded_model(v: &serde_json::Value) -> Option<LoadedModel> {
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).filter(|s| !s.is_empty());
    let name = text("name").or_else(|| text("model"))?.to_string();
    let num = |k: &str| v.get(k).and_then(|x| x.as_u64());
    Some(LoadedModel {
        name,
        size: num("size"),
        size_vram: num("size_vram"),
        context_length: num("context_length").filter(|&n| n > 0),
        expires_at: text("expires_at").map(str::to_string),
    })
}

#[derive(Deserialize)]
struct Version {
    version: Option<String>,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    #[serde(default)]
    name: String,
    #[serde(default)]
    model: String,
    digest: Option<String>,
}

impl Tag {
    /// `gemma3` names the same model as `gemma3:latest`.
    fn is(&self, wanted: &str) -> bool {
        let norm = |s: &str| {
            if s.contains(':') {
                s.to_string()
            } else {
                format!("{s}:latest")
            }
        };
        let w = norm(wanted);
        (!self.name.is_empty() && norm(&self.name) == w)
            || (!self.model.is_empty() && norm(&self.model) == w)
    }
}

/// The options object: only what is set, keep_alive excluded (it is a top-level field).
#[derive(Serialize)]
struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    num_gpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_ctx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_predict: Option<u32>,
}

impl Options {
    fn from(o: &ModelOptions) -> Option<Self> {
        let out = Options {
            num_gpu: o.num_gpu,
            num_ctx: o.num_ctx,
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            repeat_penalty: o.repeat_penalty,
            seed: o.seed,
            num_predict: o.num_predict,
        };
        // Server-level options (flash_attn, …) are the managed server's environment, never a
        // request option.
        let empty = ModelOptions {
            keep_alive: None,
            ..o.request_level()
        } == ModelOptions::default();
        (!empty).then_some(out)
    }
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<ChatMessage<'a>>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<KeepAlive<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<Options>,
}

/// `keep_alive` on the wire. Ollama reads a JSON string with Go's `time.ParseDuration`, which
/// rejects a bare number ("-1", "300": HTTP 400 `time: missing unit in duration "-1"`, as
/// open-webui/open-webui#753 and valentinfrlch/ha-llmvision#625 ran into), and a JSON number
/// as seconds, negative meaning forever (ollama/ollama `api/types.go`
/// `Duration.UnmarshalJSON`). So a bare number goes as a number, anything else as the string.
struct KeepAlive<'a>(&'a str);

impl Serialize for KeepAlive<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0.trim();
        if let Ok(i) = t.parse::<i64>() {
            return s.serialize_i64(i);
        }
        match t.parse::<f64>() {
            Ok(f)
                if f.is_finite() && t.chars().all(|c| c.is_ascii_digit() || "+-.".contains(c)) =>
            {
                s.serialize_f64(f)
            }
            _ => s.serialize_str(self.0),
        }
    }
}

/// Path and JSON body of a streamed generation for the chosen API.
fn request_body(api: OllamaApi, req: &GenRequest) -> (&'static str, Body<'_>) {
    let mut body = Body {
        model: &req.model,
        prompt: None,
        system: None,
        messages: None,
        stream: true,
        keep_alive: req.options.keep_alive.as_deref().map(KeepAlive),
        options: Options::from(&req.options),
    };
    match api {
        OllamaApi::Generate => {
            body.prompt = Some(&req.prompt);
            body.system = req.system.as_deref();
            ("/api/generate", body)
        }
        OllamaApi::Chat => {
            let mut m = Vec::with_capacity(2);
            if let Some(s) = &req.system {
                m.push(ChatMessage {
                    role: "system",
                    content: s,
                });
            }
            m.push(ChatMessage {
                role: "user",
                content: &req.prompt,
            });
            body.messages = Some(m);
            ("/api/chat", body)
        }
    }
}

/// One NDJSON line of either API, text fields borrowed from the line when unescaped.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    response: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<LineMessage<'a>>,
    #[serde(default)]
    done: bool,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
    total_duration: Option<u64>,
    load_duration: Option<u64>,
    prompt_eval_count: Option<u64>,
    prompt_eval_duration: Option<u64>,
    eval_count: Option<u64>,
    eval_duration: Option<u64>,
}

#[derive(Deserialize)]
struct LineMessage<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

/// Incremental parser of an Ollama NDJSON body, timing each token chunk as it is parsed.
///
/// Public so that benchmarks measure exactly the code the backend runs.
pub type OllamaStream = LineStream<NdjsonLines>;

/// Ollama's NDJSON lines: a piece per object, server figures in the final (`done`) one.
#[derive(Debug, Default)]
pub struct NdjsonLines;

impl LineParser for NdjsonLines {
    fn line(&mut self, raw: &[u8], st: &mut StreamState) -> Result<bool, BackendError> {
        if http::trim_ascii(raw).is_empty() {
            return Ok(false);
        }
        let line: Line<'_> = serde_json::from_slice(raw).map_err(|e| BackendError::Malformed {
            message: e.to_string(),
            line: http::quote_line(raw),
        })?;
        if let Some(err) = line.error {
            return Err(BackendError::Engine(err.into_owned()));
        }
        let piece = line
            .response
            .or_else(|| line.message.and_then(|m| m.content));
        st.piece(piece.as_deref().unwrap_or(""));
        if line.done {
            st.end = Some(Instant::now());
            st.server = ServerMetrics {
                load_ms: line.load_duration.map(http::ns_to_ms),
                prompt_eval_ms: line.prompt_eval_duration.map(http::ns_to_ms),
                eval_ms: line.eval_duration.map(http::ns_to_ms),
                total_ms: line.total_duration.map(http::ns_to_ms),
                prompt_tokens: line.prompt_eval_count,
                output_tokens: line.eval_count,
                tokens_source: line.eval_count.map(|_| TOKENS_FROM_USAGE.to_string()),
            };
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(opts: ModelOptions, system: Option<&str>) -> GenRequest {
        GenRequest {
            model: "gemma3:latest".into(),
            system: system.map(str::to_string),
            prompt: "hi".into(),
            options: opts,
            endpoint: None,
        }
    }

    #[test]
    fn unset_options_are_not_sent() {
        let r = req(ModelOptions::default(), None);
        let (path, body) = request_body(OllamaApi::Generate, &r);
        assert_eq!(path, "/api/generate");
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"gemma3:latest","prompt":"hi","stream":true})
        );
    }

    #[test]
    fn keep_alive_is_top_level_and_floats_exact() {
        let o = ModelOptions {
            temperature: Some(0.8),
            num_ctx: Some(512),
            keep_alive: Some("5m".into()),
            ..Default::default()
        };
        let r = req(o, Some("persona"));
        let (path, body) = request_body(OllamaApi::Chat, &r);
        assert_eq!(path, "/api/chat");
        let s = serde_json::to_string(&body).unwrap();
        assert!(s.contains(r#""temperature":0.8"#), "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["keep_alive"], "5m");
        assert!(v["options"].get("keep_alive").is_none());
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"], "hi");
    }

    #[test]
    fn bare_number_keep_alive_is_sent_as_a_number() {
        let sent = |k: &str| {
            let o = ModelOptions {
                keep_alive: Some(k.into()),
                ..Default::default()
            };
            let r = req(o, None);
            serde_json::to_value(request_body(OllamaApi::Generate, &r).1).unwrap()["keep_alive"]
                .clone()
        };
        assert_eq!(sent("-1"), serde_json::json!(-1));
        assert_eq!(sent("300"), serde_json::json!(300));
        assert_eq!(sent("0"), serde_json::json!(0));
        assert_eq!(sent("1.5"), serde_json::json!(1.5));
        assert_eq!(sent("5m"), serde_json::json!("5m"));
        assert_eq!(sent("-1m"), serde_json::json!("-1m"));
        assert_eq!(sent("inf"), serde_json::json!("inf"));
        assert_eq!(sent("NaN"), serde_json::json!("NaN"));
    }

    #[test]
    fn keep_alive_alone_sends_no_options_object() {
        let o = ModelOptions {
            keep_alive: Some("0".into()),
            ..Default::default()
        };
        let r = req(o, None);
        let (_, body) = request_body(OllamaApi::Generate, &r);
        let v = serde_json::to_value(&body).unwrap();
        assert!(v.get("options").is_none());
    }

    #[test]
    fn stream_parses_tokens_and_final_durations() {
        let mut s = OllamaStream::new(ClientTimer::start());
        let body = concat!(
            "{\"model\":\"m\",\"response\":\"Hel\",\"done\":false}\n",
            "{\"model\":\"m\",\"response\":\"lo \\\"x\\\"\",\"done\":false}\n",
            "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"total_duration\":1500000,",
            "\"load_duration\":250000,\"prompt_eval_count\":7,\"prompt_eval_duration\":125000,",
            "\"eval_count\":2,\"eval_duration\":1000001}\n"
        );
        // Split mid-line to exercise buffering.
        assert!(!s.feed(&body.as_bytes()[..30]).unwrap());
        assert!(s.feed(&body.as_bytes()[30..]).unwrap());
        let g = s.finish().unwrap();
        assert_eq!(g.text, "Hello \"x\"");
        assert_eq!(g.timing.chunks, 2);
        assert_eq!(g.server.total_ms, Some(1.5));
        assert_eq!(g.server.load_ms, Some(0.25));
        assert_eq!(g.server.prompt_eval_ms, Some(0.125));
        assert_eq!(g.server.eval_ms, Some(1.000001));
        assert_eq!(g.server.prompt_tokens, Some(7));
        assert_eq!(g.server.output_tokens, Some(2));
    }

    #[test]
    fn stream_errors_are_typed() {
        let mut s = OllamaStream::new(ClientTimer::start());
        let e = s.feed(b"{\"response\":\"a\"\n").unwrap_err();
        assert_eq!(e.kind(), "malformed");

        let mut s = OllamaStream::new(ClientTimer::start());
        assert!(!s.feed(b"{\"response\":\"a\",\"done\":false}\n").unwrap());
        assert_eq!(s.end_of_body().unwrap_err(), BackendError::Truncated);

        let mut s = OllamaStream::new(ClientTimer::start());
        let e = s.feed(b"{\"error\":\"out of memory\"}\n").unwrap_err();
        assert_eq!(e, BackendError::Engine("out of memory".into()));
    }

    #[test]
    fn ps_entries_are_read_leniently() {
        let v = serde_json::json!({
            "name": "gemma3:latest", "model": "gemma3:latest", "size": 6_000_000_000u64,
            "size_vram": 3_000_000_000u64, "expires_at": "2026-01-15T10:29:31.5Z",
            "context_length": 8192, "details": {"family": "gemma3"}
        });
        let m = loaded_model(&v).unwrap();
        assert_eq!(m.name, "gemma3:latest");
        assert_eq!(m.offload_fraction(), Some(0.5));
        assert_eq!(m.context_length, Some(8192));
        assert_eq!(m.expires_at.as_deref(), Some("2026-01-15T10:29:31.5Z"));
        // Older servers: no context_length; still loading: 0. A size of the wrong type is
        // left out; an entry without a name is skipped.
        let old = serde_json::json!({"model": "m:1b", "size": "big", "context_length": 0});
        let m = loaded_model(&old).unwrap();
        assert_eq!(
            (m.name.as_str(), m.size, m.context_length),
            ("m:1b", None, None)
        );
        assert!(loaded_model(&serde_json::json!({"size": 1})).is_none());
        assert!(loaded_model(&serde_json::json!([1, 2])).is_none());
    }

    #[test]
    fn tag_names_match_with_implicit_latest() {
        let t = Tag {
            name: "gemma3:latest".into(),
            model: String::new(),
            digest: None,
        };
        assert!(t.is("gemma3"));
        assert!(t.is("gemma3:latest"));
        assert!(!t.is("gemma3:1b"));
    }
}
