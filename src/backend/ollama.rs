//! Ollama's native API: `POST /api/generate` or `/api/chat` streamed as NDJSON, one JSON
//! object per token chunk and a final object (`done: true`) with the server's durations.
//! Preflight uses `GET /api/version`, `GET /api/tags` and `POST /api/show`.

use super::http::{self, Deadlines};
use super::stream::{LineParser, LineStream, StreamState};
use super::{
    Backend, BackendError, BackendInfo, BoxFuture, ClientTimer, GenRequest, Generation,
    ServerMetrics,
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
    pub fn new(cfg: &BackendConfig) -> Result<Self, BackendError> {
        Ok(Self {
            client: http::client(&cfg.timeouts)?,
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

    async fn generate_inner(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        let base = self.base(req)?;
        let (path, body) = request_body(self.api, req);
        let url = format!("{base}{path}");
        let rb = self.client.post(&url).json(&body);

        let timer = ClientTimer::start();
        let mut deadlines = Deadlines::start(&self.timeouts)?;
        let resp = http::send(rb, &base, &mut deadlines, &req.model, pull_hint).await?;
        OllamaStream::new(timer).read(resp, &mut deadlines).await
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
        if let Some(t) = tags.models.iter().find(|t| t.is(model)) {
            return Ok(Preflight {
                version: version.version,
                digest: t.digest.clone(),
            });
        }
        // Not listed under that name: /api/show resolves aliases or says it is missing.
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
                let _: serde_json::Value = http::read_json(resp, &mut d).await?;
                Ok(Preflight {
                    version: version.version,
                    digest: None,
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

struct Preflight {
    version: Option<String>,
    digest: Option<String>,
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
                }
            }
            Ok(info)
        })
    }
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
        let empty = ModelOptions {
            keep_alive: None,
            ..o.clone()
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
    keep_alive: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<Options>,
}

/// Path and JSON body of a streamed generation for the chosen API.
fn request_body(api: OllamaApi, req: &GenRequest) -> (&'static str, Body<'_>) {
    let mut body = Body {
        model: &req.model,
        prompt: None,
        system: None,
        messages: None,
        stream: true,
        keep_alive: req.options.keep_alive.as_deref(),
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
                tokens_source: line.eval_count.map(|_| "usage".to_string()),
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
