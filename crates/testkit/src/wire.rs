//! The mock server's HTTP/1.1: request parsing, chunked responses, the Ollama and
//! OpenAI-compatible stream bodies byte for byte as the real servers send them, and the
//! servers' metadata and tokenize endpoints.

use super::sched::{go_time, KeepAlive, LoadCost, RunnerOpts};
use super::{norm, tokens, Fault, MockConfig, MockModel, OpenAiServer, RecordedRequest, Shared};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

pub(super) async fn serve(l: TcpListener, sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            acc = l.accept() => {
                let Ok((sock, _)) = acc else { continue };
                let sh = sh.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = connection(sock, sh) => {}
                    }
                });
            }
        }
    }
}

/// Serves requests on one keep-alive connection until the client closes it or a fault ends it.
async fn connection(mut sock: TcpStream, sh: Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        let Some(req) = read_request(&mut sock, &mut buf).await else {
            return;
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if sh.cfg.record_requests {
            if let Ok(mut r) = sh.requests.lock() {
                r.push(req.clone());
            }
        }
        if !respond(&mut sock, &sh, &req).await {
            // A fault that ends the connection: dropping it sends the reset (zero linger).
            return;
        }
        if close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

/// Reads one request (head and Content-Length body); `None` at EOF or on garbage.
async fn read_request(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<RecordedRequest> {
    let head_end = loop {
        if let Some(p) = find(buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 1024 * 1024 || read_more(sock, buf).await == 0 {
            return None;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?.to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + len {
        if read_more(sock, buf).await == 0 {
            return None;
        }
    }
    let body = buf[body_start..body_start + len].to_vec();
    buf.drain(..body_start + len);
    let json = serde_json::from_slice(&body).ok();
    Some(RecordedRequest {
        method,
        path,
        headers,
        json,
        body,
    })
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut tmp = [0u8; 8192];
    match sock.read(&mut tmp).await {
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            n
        }
        Err(_) => 0,
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Family {
    Ollama,
    OpenAi,
}

/// The slot llama-server gives the peer's requests (one at a time): what `GET /slots` shows
/// and the prompt cache (`cache_prompt`) reuses.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Tokens of the last prompt the slot evaluated.
    prompt: Vec<u32>,
    /// Id of the last task; `None` before the first.
    id_task: Option<u64>,
    n_prompt_tokens: u64,
    n_prompt_tokens_cache: u64,
    n_decoded: u64,
    processing: bool,
}

/// llama-server's default `--ctx-size` (ggml-org/llama.cpp `tools/server/README.md`:
/// "default: 4096, 0 = loaded from model"); with the unified KV cache every slot sees all of
/// it.
const LLAMA_SERVER_N_CTX: u64 = 4096;

/// Answers one request; false when the connection must not be reused.
async fn respond(sock: &mut TcpStream, sh: &Shared, req: &RecordedRequest) -> bool {
    let cfg = &sh.cfg;
    let model = req
        .json
        .as_ref()
        .and_then(|j| j.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let path = req.path.split('?').next().unwrap_or("");
    let llama_server = cfg.openai_server == OpenAiServer::LlamaServer;
    match (req.method.as_str(), path) {
        ("GET", "/api/version") => json_response(sock, 200, &json!({"version": cfg.version})).await,
        ("GET", "/api/tags") => json_response(sock, 200, &tags(sh)).await,
        ("GET", "/api/ps") => {
            let ps = sh
                .sched
                .lock()
                .map(|mut s| s.ps())
                .unwrap_or_else(|_| json!({"models": []}));
            json_response(sock, 200, &ps).await
        }
        ("POST", "/api/show") => match find_model(sh, &model) {
            Some(m) => json_response(sock, 200, &show(&m)).await,
            None => {
                json_response(
                    sock,
                    404,
                    &json!({"error": format!("model '{model}' not found")}),
                )
                .await
            }
        },
        ("GET", "/v1/models") if cfg.openai_models_endpoint => {
            json_response(sock, 200, &openai_models(cfg)).await
        }
        ("POST", "/api/generate") => generation(sock, sh, req, Family::Ollama, false).await,
        ("POST", "/api/chat") => generation(sock, sh, req, Family::Ollama, true).await,
        ("POST", "/v1/chat/completions") => generation(sock, sh, req, Family::OpenAi, true).await,
        ("POST", "/tokenize") if llama_server && cfg.tokenize_endpoint => {
            llama_server_tokenize(sock, req).await
        }
        ("POST", "/extras/tokenize") | ("POST", "/extras/tokenize/count")
            if !llama_server && cfg.tokenize_endpoint =>
        {
            extras_tokenize(sock, req, path.ends_with("/count")).await
        }
        ("GET", "/props") if llama_server => json_response(sock, 200, &props(cfg)).await,
        ("GET", "/slots") if llama_server => {
            let v = slots(sh);
            json_response(sock, 200, &v).await
        }
        ("GET", "/metrics") if llama_server && cfg.metrics_endpoint => {
            let text = metrics(sh);
            whole_response(sock, 200, "text/plain; version=0.0.4", text.as_bytes(), &[]).await
        }
        ("GET", "/metrics") if llama_server => {
            let body = json!({"error": {"code": 501,
                "message": "This server does not support metrics endpoint. Start it with `--metrics`",
                "type": "not_supported_error"}});
            json_response(sock, 501, &body).await
        }
        ("GET", "/health") if llama_server => {
            json_response(sock, 200, &json!({"status": "ok"})).await
        }
        _ if path.starts_with("/api/") => text_response(sock, 404, "404 page not found").await,
        // cpp-httplib's error handler in llama-server (tools/server/server-http.cpp).
        _ if llama_server => {
            json_response(
                sock,
                404,
                &json!({"error": {"message": "File Not Found", "type": "not_found_error",
                                  "code": 404}}),
            )
            .await
        }
        // FastAPI's default 404.
        _ => json_response(sock, 404, &json!({"detail": "Not Found"})).await,
    }
}

fn find_model(sh: &Shared, model: &str) -> Option<MockModel> {
    sh.cfg
        .models
        .iter()
        .find(|m| norm(&m.name) == norm(model))
        .cloned()
}

fn tags(sh: &Shared) -> Value {
    let models: Vec<Value> = sh
        .cfg
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name, "model": m.name, "modified_at": "2026-01-10T08:00:00.000000000Z",
                "size": m.file_size, "digest": m.digest, "details": m.details()
            })
        })
        .collect();
    json!({ "models": models })
}

fn show(m: &MockModel) -> Value {
    let arch = m.family.as_str();
    let mut caps = vec!["completion"];
    if m.vision {
        caps.push("vision");
    }
    json!({
        "modelfile": format!("FROM {}\n", m.name),
        "parameters": "stop \"<end_of_turn>\"\ntemperature 1\ntop_k 64\ntop_p 0.95",
        "template": "{{- range $i, $_ := .Messages }}...{{ end }}",
        "details": m.details(),
        "model_info": {"general.architecture": arch,
                       format!("{arch}.context_length"): m.context_length,
                       format!("{arch}.block_count"): m.block_count},
        "capabilities": caps,
        "modified_at": "2026-01-10T08:00:00.000000000Z"
    })
}

fn openai_models(cfg: &MockConfig) -> Value {
    let data: Vec<Value> = cfg
        .models
        .iter()
        .map(|m| match cfg.openai_server {
            OpenAiServer::LlamaServer => json!({"id": m.name, "object": "model",
                                                "created": 1736936671, "owned_by": "llamacpp"}),
            // llama_cpp/server/app.py get_models
            OpenAiServer::LlamaCppPython => json!({"id": m.name, "object": "model",
                                                   "owned_by": "me", "permissions": []}),
        })
        .collect();
    json!({"object": "list", "data": data})
}

/// llama-server `POST /tokenize` (tools/server/server-context.cpp `post_tokenize`):
/// `content` (no `content`: no tokens), `add_special` (default false: no BOS),
/// `with_pieces` (objects with `id` and `piece`).
async fn llama_server_tokenize(sock: &mut TcpStream, req: &RecordedRequest) -> bool {
    let Some(j) = req.json.as_ref() else {
        return json_response(
            sock,
            500,
            &json!({"error": {"code": 500, "message": "[json.exception.parse_error.101] parse error",
                              "type": "server_error"}}),
        )
        .await;
    };
    let content = j.get("content").and_then(Value::as_str).unwrap_or("");
    let add_special = j
        .get("add_special")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let with_pieces = j
        .get("with_pieces")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut ids = Vec::new();
    if add_special {
        ids.push(tokens::BOS);
    }
    ids.extend(tokens::tokenize(content));
    let v: Value = if with_pieces {
        let pieces = tokens::pieces(content);
        let mut out: Vec<Value> = Vec::new();
        if add_special {
            out.push(json!({"id": tokens::BOS, "piece": "<bos>"}));
        }
        out.extend(
            tokens::tokenize(content)
                .into_iter()
                .zip(pieces)
                .map(|(id, p)| json!({"id": id, "piece": p})),
        );
        Value::Array(out)
    } else {
        json!(ids)
    };
    json_response(sock, 200, &json!({ "tokens": v })).await
}

/// llama-cpp-python `POST /extras/tokenize` and `/extras/tokenize/count`
/// (llama_cpp/server/app.py, types.py `TokenizeInputRequest`): `{"input": ..., "model": ...}`
/// tokenized with `Llama.tokenize`'s default `add_bos=True`, so BOS is counted; a body
/// without `input` is a 500.
async fn extras_tokenize(sock: &mut TcpStream, req: &RecordedRequest, count: bool) -> bool {
    let input = req
        .json
        .as_ref()
        .and_then(|j| j.get("input"))
        .and_then(Value::as_str);
    let Some(input) = input else {
        // Its exception handler turns the validation error into a 500 (observed on
        // llama-cpp-python 0.3.36).
        let msg = format!(
            "1 validation error:\n  {{'type': 'missing', 'loc': ('body', 'input'), 'msg': \
             'Field required', 'input': {}}}\n\n    POST /extras/tokenize",
            req.json.as_ref().map(Value::to_string).unwrap_or_default()
        );
        return json_response(
            sock,
            500,
            &json!({"error": {"message": msg, "type": "internal_server_error",
                              "param": null, "code": null}}),
        )
        .await;
    };
    let mut ids = vec![tokens::BOS];
    ids.extend(tokens::tokenize(input));
    let v = if count {
        json!({ "count": ids.len() })
    } else {
        json!({ "tokens": ids })
    };
    json_response(sock, 200, &v).await
}

/// The sampling defaults llama-server reports (tools/server/README.md, `GET /props`).
fn llama_params() -> Value {
    json!({
        "n_predict": -1, "seed": 4294967295u64, "temperature": 0.800000011920929,
        "dynatemp_range": 0.0, "dynatemp_exponent": 1.0, "top_k": 40,
        "top_p": 0.949999988079071, "min_p": 0.05000000074505806, "top_n_sigma": -1.0,
        "xtc_probability": 0.0, "xtc_threshold": 0.10000000149011612, "typical_p": 1.0,
        "repeat_last_n": 64, "repeat_penalty": 1.0, "presence_penalty": 0.0,
        "frequency_penalty": 0.0, "dry_multiplier": 0.0, "dry_base": 1.75,
        "dry_allowed_length": 2, "dry_penalty_last_n": -1, "mirostat": 0,
        "mirostat_tau": 5.0, "mirostat_eta": 0.10000000149011612, "max_tokens": -1,
        "n_keep": 0, "n_discard": 0, "ignore_eos": false, "stream": true, "n_probs": 0,
        "min_keep": 0, "samplers": ["penalties", "dry", "top_n_sigma", "top_k", "typ_p",
                                    "top_p", "min_p", "xtc", "temperature"],
        "timings_per_token": false, "post_sampling_probs": false, "lora": []
    })
}

/// llama-server `GET /props` (tools/server/server-context.cpp `get_res_props`; the fields and
/// values the llama-server of scripts/llama-server.sh answers with `--chat-template gemma`).
fn props(cfg: &MockConfig) -> Value {
    let alias = cfg
        .models
        .first()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    json!({
        "default_generation_settings": {"params": llama_params(), "n_ctx": LLAMA_SERVER_N_CTX},
        "total_slots": cfg.slots.max(1),
        "model_alias": alias,
        "model_ftype": "Q4_K - Medium",
        "model_path": format!("models/{alias}.gguf"),
        "modalities": {"vision": false, "video": false, "audio": false},
        "media_marker": "<__media_q2iFq5HG4DgMyxCQkxCq6IzLLYN7HfPd__>",
        "endpoint_slots": true, "endpoint_props": false, "endpoint_metrics": false,
        "ui": true, "ui_settings": {},
        "chat_template": "gemma",
        "chat_template_caps": {"supports_object_arguments": false,
                               "supports_parallel_tool_calls": false,
                               "supports_preserve_reasoning": false,
                               "supports_reasoning_effort": false,
                               "supports_string_content": true, "supports_system_role": false,
                               "supports_tool_calls": false, "supports_tools": false,
                               "supports_typed_content": false},
        "bos_token": "<bos>", "eos_token": "<eos>",
        "build_info": BUILD_INFO,
        "is_sleeping": false,
        "cors_proxy_enabled": false
    })
}

/// llama-server `GET /slots`, as the llama-server of scripts/llama-server.sh answers: every
/// slot with `id`, `n_ctx`, `speculative`, `is_processing`; a slot that has run a task also
/// its last task's figures, `params`, and `next_token` as a one-element array (the README's
/// example shows an object: older servers).
fn slots(sh: &Shared) -> Value {
    let s = sh.slot.lock().ok();
    let mut out = Vec::new();
    for id in 0..sh.cfg.slots.max(1) as u64 {
        let mut v = json!({"id": id, "n_ctx": LLAMA_SERVER_N_CTX, "speculative": false,
                           "is_processing": false});
        if let Some(s) = s.as_ref().filter(|s| id == 0 && s.id_task.is_some()) {
            v["is_processing"] = json!(s.processing);
            v["id_task"] = json!(s.id_task);
            v["n_prompt_tokens"] = json!(s.n_prompt_tokens);
            v["n_prompt_tokens_processed"] = json!(s.n_prompt_tokens - s.n_prompt_tokens_cache);
            v["n_prompt_tokens_cache"] = json!(s.n_prompt_tokens_cache);
            v["params"] = llama_params();
            v["next_token"] = json!([{"has_next_token": s.processing, "has_new_line": false,
                                      "n_remain": -1, "n_decoded": s.n_decoded}]);
        }
        out.push(v);
    }
    Value::Array(out)
}

/// llama-server `GET /metrics` with `--metrics`: the queue gauges, in the Prometheus text
/// format and with the HELP lines the llama-server of scripts/llama-server.sh writes (its
/// counters are left out: nothing here reads them).
fn metrics(sh: &Shared) -> String {
    let slots = sh.cfg.slots.max(1);
    let processing = slots.saturating_sub(sh.slots.available_permits());
    let deferred = sh.deferred.load(Ordering::SeqCst);
    format!(
        "# HELP llamacpp:requests_processing Number of requests processing\n\
         # TYPE llamacpp:requests_processing gauge\n\
         llamacpp:requests_processing {processing}\n\
         # HELP llamacpp:requests_deferred Number of requests deferred\n\
         # TYPE llamacpp:requests_deferred gauge\n\
         llamacpp:requests_deferred {deferred}\n"
    )
}

/// llama-server's `system_fingerprint` / `build_info` (`b<build>-<commit>`).
const BUILD_INFO: &str = "b6900-0a1b2c3d";

async fn json_response(sock: &mut TcpStream, status: u16, v: &Value) -> bool {
    let body = v.to_string();
    whole_response(
        sock,
        status,
        "application/json; charset=utf-8",
        body.as_bytes(),
        &[],
    )
    .await
}

async fn text_response(sock: &mut TcpStream, status: u16, text: &str) -> bool {
    whole_response(
        sock,
        status,
        "text/plain; charset=utf-8",
        text.as_bytes(),
        &[],
    )
    .await
}

async fn whole_response(
    sock: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> bool {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nDate: Thu, 15 Jan 2026 10:24:31 GMT\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    for (k, v) in extra {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    sock.write_all(&out).await.is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Appends one chunk of chunked transfer encoding.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn stream_head(family: Family) -> Vec<u8> {
    let ctype = match family {
        Family::Ollama => "application/x-ndjson",
        Family::OpenAi => "text/event-stream",
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nDate: Thu, 15 Jan 2026 10:24:31 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes()
}

/// The prompt of a generation request, as the server's template sees it.
struct Prompt {
    system: Option<String>,
    user: String,
    /// Ollama's load/unload request: an empty `prompt` (generate) or no `messages` (chat).
    load_only: bool,
}

/// Text of a message's `content`: a string, or OpenAI's array of parts.
fn content_text(c: Option<&Value>) -> String {
    match c {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

impl Prompt {
    fn of(j: Option<&Value>, chat: bool) -> Prompt {
        let get = |k: &str| j.and_then(|j| j.get(k));
        if !chat {
            let user = get("prompt").and_then(Value::as_str).unwrap_or("");
            return Prompt {
                system: get("system").and_then(Value::as_str).map(str::to_string),
                user: user.to_string(),
                load_only: user.is_empty(),
            };
        }
        let msgs: &[Value] = get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut system = Vec::new();
        let mut user = Vec::new();
        for m in msgs {
            let text = content_text(m.get("content"));
            match m.get("role").and_then(Value::as_str) {
                Some("system") => system.push(text),
                _ => user.push(text),
            }
        }
        Prompt {
            system: (!system.is_empty()).then(|| system.join("\n")),
            user: user.join("\n"),
            load_only: msgs.is_empty(),
        }
    }

    fn tokens(&self) -> Vec<u32> {
        tokens::chat_prompt_tokens(self.system.as_deref(), &self.user)
    }
}

/// The generation-length limit a request sets (`num_predict`, `max_tokens`, `n_predict`).
fn token_limit(j: Option<&Value>, family: Family) -> Option<usize> {
    let j = j?;
    let v = match family {
        Family::Ollama => j.get("options").and_then(|o| o.get("num_predict")),
        Family::OpenAi => j
            .get("max_tokens")
            .or_else(|| j.get("max_completion_tokens"))
            .or_else(|| j.get("n_predict")),
    }?;
    // Negative: no limit (Ollama -1 = infinite, -2 = fill the context; llama.cpp -1).
    v.as_i64()
        .filter(|&n| n >= 0)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// An RNG for request `i`: the same draws on every run, whatever the timing.
fn request_rng(seed: u64, i: u64) -> rand_chacha::ChaCha8Rng {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6c6f_6164);
    rng.set_stream(i);
    rng
}

/// Ends an Ollama request in the scheduler however the request ends (faults included).
struct EndGuard<'a> {
    sh: &'a Shared,
    model: String,
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.sh.sched.lock() {
            s.end(&self.model);
        }
    }
}

/// Marks llama-server's slot idle however the request ends.
struct SlotGuard<'a>(&'a Shared);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.slot.lock() {
            s.processing = false;
        }
    }
}

/// A streamed generation, with the fault this request drew; then the configured eviction.
async fn generation(
    sock: &mut TcpStream,
    sh: &Shared,
    req: &RecordedRequest,
    family: Family,
    chat: bool,
) -> bool {
    let idx = sh.generation_index.fetch_add(1, Ordering::SeqCst);
    // llama-server: wait for a free slot; Ollama too where OLLAMA_NUM_PARALLEL is set (the
    // other flavours have no such limit here).
    let limited = match family {
        Family::OpenAi => sh.cfg.openai_server == OpenAiServer::LlamaServer,
        _ => sh.cfg.ollama_num_parallel.is_some(),
    };
    let _permit = if limited {
        sh.deferred.fetch_add(1, Ordering::SeqCst);
        let p = sh.slots.acquire().await.ok();
        sh.deferred.fetch_sub(1, Ordering::SeqCst);
        p
    } else {
        None
    };
    let keep = generation_at(sock, sh, req, family, chat, idx).await;
    if sh.cfg.evict_after.contains(&idx) {
        if let Ok(mut s) = sh.sched.lock() {
            s.unload_all();
        }
    }
    keep
}

/// When things happened on the server's clock during one generation.
struct Timeline {
    t0: Instant,
    ready: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
}

async fn generation_at(
    sock: &mut TcpStream,
    sh: &Shared,
    req: &RecordedRequest,
    family: Family,
    chat: bool,
    idx: u64,
) -> bool {
    let j = req.json.as_ref();
    let model = j
        .and_then(|j| j.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let t0 = Instant::now();
    let cfg = &sh.cfg;
    let fault = cfg.faults.fault_for(idx);
    let stop_after = match fault {
        Fault::None => None,
        Fault::Refuse => {
            let _ = sock.set_zero_linger();
            return false;
        }
        Fault::Stall => return std::future::pending::<bool>().await,
        Fault::Status(code) => return error_status(sock, family, code).await,
        Fault::ModelNotFound => return model_not_found(sock, family, model).await,
        Fault::UnauthorizedEcho => {
            let auth = req.header("authorization").unwrap_or("");
            let msg = format!("invalid credentials in header 'Authorization: {auth}'");
            let body = match family {
                Family::Ollama => json!({ "error": msg }),
                Family::OpenAi => json!({"error": {"code": 401, "message": msg,
                                                   "type": "authentication_error"}}),
            };
            return json_response(sock, 401, &body).await;
        }
        Fault::ResetAfter(n)
        | Fault::MalformedAfter(n)
        | Fault::TruncateAfter(n)
        | Fault::StallAfter(n) => Some(n),
    };
    if let Some(r) = &cfg.replay {
        return replay(sock, cfg, r, family, t0, stop_after, &fault).await;
    }
    let Some(m) = find_model(sh, model) else {
        return model_not_found(sock, family, model).await;
    };
    let mut rng = request_rng(cfg.seed, idx);
    let prompt = Prompt::of(j, chat);
    let flavour = cfg.openai_server;

    // Ollama: the scheduler decides what the model costs before the first token.
    let mut load = LoadCost {
        sleep: Duration::ZERO,
        reported: Duration::ZERO,
        cold: false,
    };
    let mut _end = None;
    if family == Family::Ollama {
        let keep_alive = match KeepAlive::from_request(j.and_then(|j| j.get("keep_alive"))) {
            Ok(k) => k,
            Err(e) => return json_response(sock, 400, &json!({ "error": e })).await,
        };
        if prompt.load_only {
            return load_only(sock, sh, &m, j, keep_alive, chat, model, &mut rng).await;
        }
        let opts = RunnerOpts::from_request(j.and_then(|j| j.get("options")), &m);
        if let Ok(mut s) = sh.sched.lock() {
            load = s.begin(&m, opts, keep_alive, &cfg.load, &mut rng);
        }
        _end = Some(EndGuard {
            sh,
            model: m.name.clone(),
        });
    }
    // llama-server: the slot's prompt cache.
    let prompt_tokens = prompt.tokens();
    let mut cache_n = 0usize;
    let mut _slot = None;
    if family == Family::OpenAi && flavour == OpenAiServer::LlamaServer {
        let cache_prompt = j
            .and_then(|j| j.get("cache_prompt"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if let Ok(mut s) = sh.slot.lock() {
            if cache_prompt {
                let common = s
                    .prompt
                    .iter()
                    .zip(&prompt_tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                // At least one token is always evaluated, to get logits.
                cache_n = common.min(prompt_tokens.len().saturating_sub(1));
            }
            s.prompt = prompt_tokens.clone();
            s.n_prompt_tokens = prompt_tokens.len() as u64;
            s.n_prompt_tokens_cache = cache_n as u64;
            s.id_task = Some(s.id_task.map_or(0, |t| t + 1));
            s.processing = true;
            s.n_decoded = 0;
        }
        _slot = Some(SlotGuard(sh));
    }

    let n_tokens = cfg.tokens.min(token_limit(j, family).unwrap_or(usize::MAX));
    let limited = n_tokens < cfg.tokens;
    let id = match flavour {
        OpenAiServer::LlamaServer => completion_id(&mut rng),
        OpenAiServer::LlamaCppPython => python_completion_id(&mut rng),
    };
    let created = unix_now();
    let ready = t0 + load.sleep;
    let first_due = ready + cfg.first_token_delay;
    let mut tl = Timeline {
        t0,
        ready,
        first: None,
        last: None,
    };

    let mut out = stream_head(family);
    if family == Family::OpenAi {
        // llama-server answers at once with a role-only delta; sse-starlette (llama-cpp-python)
        // sends its headers at once and the role with the first token.
        if flavour == OpenAiServer::LlamaServer {
            chunk(&mut out, &sse(&role_chunk(model, &id, created), flavour));
        }
        if sock.write_all(&out).await.is_err() {
            return false;
        }
        out.clear();
    }
    let limit = stop_after.unwrap_or(usize::MAX);
    for i in 0..n_tokens.min(limit) {
        sleep_until_precise(first_due + cfg.inter_token_delay * i as u32).await;
        if i == 0 && family == Family::OpenAi && flavour == OpenAiServer::LlamaCppPython {
            chunk(&mut out, &python_role_chunk(model, &id, created));
        }
        chunk(
            &mut out,
            &token_piece(family, flavour, chat, model, &cfg.token_text, &id, created),
        );
        if sock.write_all(&out).await.is_err() {
            return false;
        }
        out.clear();
        let now = Instant::now();
        tl.first.get_or_insert(now);
        tl.last = Some(now);
        if let Ok(mut s) = sh.slot.lock() {
            s.n_decoded = i as u64 + 1;
        }
    }
    if limit > n_tokens {
        let fin = final_pieces(
            cfg,
            family,
            chat,
            model,
            &id,
            created,
            j,
            &mut rng,
            load,
            &tl,
            prompt_tokens.len(),
            cache_n,
            n_tokens,
            limited,
        );
        for p in fin.iter().take(limit - n_tokens) {
            chunk(&mut out, p);
        }
        if sock.write_all(&out).await.is_err() {
            return false;
        }
        out.clear();
    }
    match fault {
        Fault::ResetAfter(_) => {
            let _ = sock.set_zero_linger();
            false
        }
        Fault::MalformedAfter(_) => {
            let bad: &[u8] = match family {
                Family::Ollama => b"{\"model\":\"x\",\"response\":\"tok\",\"done\":fal\n",
                Family::OpenAi => b"data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}\n\n",
            };
            chunk(&mut out, bad);
            out.extend_from_slice(b"0\r\n\r\n");
            sock.write_all(&out).await.is_ok()
        }
        Fault::StallAfter(_) => std::future::pending::<bool>().await,
        _ => {
            // Also the truncation fault: a clean end of body without the final object.
            out.extend_from_slice(b"0\r\n\r\n");
            sock.write_all(&out).await.is_ok()
        }
    }
}

/// Ollama's answer to a request without a prompt (ollama/ollama `server/routes.go`): load the
/// model and say `done_reason: "load"`, or with `keep_alive: 0` unload it and say `"unload"`.
#[allow(clippy::too_many_arguments)]
async fn load_only(
    sock: &mut TcpStream,
    sh: &Shared,
    m: &MockModel,
    j: Option<&Value>,
    keep_alive: KeepAlive,
    chat: bool,
    model: &str,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> bool {
    let reason = if keep_alive == KeepAlive::For(Duration::ZERO) {
        if let Ok(mut s) = sh.sched.lock() {
            s.unload(&m.name);
        }
        "unload"
    } else {
        let opts = RunnerOpts::from_request(j.and_then(|j| j.get("options")), m);
        let cost = sh
            .sched
            .lock()
            .map(|mut s| s.begin(m, opts, keep_alive, &sh.cfg.load, rng))
            .ok();
        if let Some(c) = cost {
            tokio::time::sleep(c.sleep).await;
            if let Ok(mut s) = sh.sched.lock() {
                s.end(&m.name);
            }
        }
        "load"
    };
    let created_at = go_time(SystemTime::now());
    let body = if chat {
        json!({"model": model, "created_at": created_at,
               "message": {"role": "assistant", "content": ""},
               "done": true, "done_reason": reason})
    } else {
        json!({"model": model, "created_at": created_at, "response": "",
               "done": true, "done_reason": reason})
    };
    json_response(sock, 200, &body).await
}

/// Replays recorded pieces with the configured delays (no load state, no figures of ours).
async fn replay(
    sock: &mut TcpStream,
    cfg: &MockConfig,
    pieces: &[Vec<u8>],
    family: Family,
    t0: Instant,
    stop_after: Option<usize>,
    fault: &Fault,
) -> bool {
    let mut out = stream_head(family);
    let limit = stop_after.unwrap_or(usize::MAX).min(pieces.len());
    for (i, p) in pieces.iter().enumerate().take(limit) {
        sleep_until_precise(t0 + cfg.first_token_delay + cfg.inter_token_delay * i as u32).await;
        chunk(&mut out, p);
        if sock.write_all(&out).await.is_err() {
            return false;
        }
        out.clear();
    }
    match fault {
        Fault::ResetAfter(_) => {
            let _ = sock.set_zero_linger();
            false
        }
        Fault::StallAfter(_) => std::future::pending::<bool>().await,
        _ => {
            out.extend_from_slice(b"0\r\n\r\n");
            sock.write_all(&out).await.is_ok()
        }
    }
}

/// Sleeps until `due` to within microseconds: tokio's timer has 1 ms ticks and rounds up,
/// so it sleeps to 2 ms short and yields in a loop for the rest (a little CPU per token).
async fn sleep_until_precise(due: Instant) {
    let margin = Duration::from_millis(2);
    if let Some(coarse) = due.checked_sub(margin) {
        if coarse > Instant::now() {
            tokio::time::sleep_until(coarse).await;
        }
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `chatcmpl-` and 32 random alphanumerics (llama-server `gen_chatcmplid`).
fn completion_id(rng: &mut impl Rng) -> String {
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let s: String = (0..32)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect();
    format!("chatcmpl-{s}")
}

/// `chat` + `cmpl-<uuid4>` (llama-cpp-python: `"cmpl-" + str(uuid.uuid4())`, prefixed by the
/// chat conversion).
fn python_completion_id(rng: &mut impl Rng) -> String {
    let b: [u8; 16] = rng.gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "chatcmpl-{}-{}-4{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One token chunk in the server's exact format.
fn token_piece(
    family: Family,
    flavour: OpenAiServer,
    chat: bool,
    model: &str,
    text: &str,
    id: &str,
    created: u64,
) -> Vec<u8> {
    match (family, flavour) {
        (Family::Ollama, _) => {
            let created_at = go_time(SystemTime::now());
            if chat {
                ndjson(&json!({"model": model, "created_at": created_at,
                               "message": {"role": "assistant", "content": text}, "done": false}))
            } else {
                ndjson(&json!({"model": model, "created_at": created_at,
                               "response": text, "done": false}))
            }
        }
        (Family::OpenAi, OpenAiServer::LlamaServer) => sse(
            &json!({
                "choices": [{"finish_reason": null, "index": 0, "delta": {"content": text}}],
                "created": created, "id": id, "model": model,
                "system_fingerprint": BUILD_INFO, "object": "chat.completion.chunk"
            }),
            flavour,
        ),
        (Family::OpenAi, OpenAiServer::LlamaCppPython) => {
            let delta = format!("{{\"content\": {}}}", py_str(text));
            python_chunk(model, id, created, &delta, "null")
        }
    }
}

/// One llama-cpp-python chunk (llama_cpp/llama_chat_format.py
/// `_convert_text_completion_chunks_to_chat`), as `json.dumps` writes it: `", "` and `": "`
/// separators, non-ASCII escaped, keys in the order of the source.
fn python_chunk(model: &str, id: &str, created: u64, delta: &str, finish: &str) -> Vec<u8> {
    format!(
        "data: {{\"id\": {}, \"model\": {}, \"created\": {created}, \"object\": \
         \"chat.completion.chunk\", \"choices\": [{{\"index\": 0, \"delta\": {delta}, \
         \"logprobs\": null, \"finish_reason\": {finish}}}]}}\n\n",
        py_str(id),
        py_str(model)
    )
    .into_bytes()
}

/// A string as Python's `json.dumps` (`ensure_ascii=True`) writes it.
fn py_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in Value::from(s).to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            for u in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// What the server reports about one generation.
struct Figures {
    load_ns: u64,
    prompt_eval_count: u64,
    prompt_eval_ns: u64,
    eval_count: u64,
    eval_ns: u64,
    total_ns: u64,
}

/// The per-request figures (see [`MockConfig::durations`]).
#[allow(clippy::too_many_arguments)]
fn figures(
    cfg: &MockConfig,
    family: Family,
    rng: &mut impl Rng,
    load: LoadCost,
    tl: &Timeline,
    prompt_n: usize,
    n: usize,
) -> Figures {
    let end = Instant::now();
    if let Some(d) = &cfg.durations {
        return Figures {
            load_ns: d.load_ns,
            prompt_eval_count: d.prompt_eval_count,
            prompt_eval_ns: d.prompt_eval_ns,
            eval_count: d.eval_count.unwrap_or(n as u64),
            eval_ns: d.eval_ns,
            total_ns: d.total_ns,
        };
    }
    let first = tl.first.unwrap_or(end);
    let last = tl.last.unwrap_or(first);
    let m_prompt = first.saturating_duration_since(tl.ready);
    let m_eval = last.saturating_duration_since(first);
    // Decode steps: llama.cpp counts the first token as free (it comes from the prompt's
    // logits: tools/server/server-common.h `n_gen_steps`); Ollama times every token.
    let steps = match family {
        Family::Ollama => n,
        Family::OpenAi => n.saturating_sub(1),
    };
    let (prompt_ns, eval_ns) = if cfg.first_token_delay.is_zero() && cfg.inter_token_delay.is_zero()
    {
        let (p_rate, d_rate) = match family {
            Family::Ollama => (200.0, 61.0),
            Family::OpenAi => (410.0, 39.0),
        };
        let p = prompt_n as f64 / (p_rate * rng.gen_range(0.95..1.05));
        let d = steps as f64 / (d_rate * rng.gen_range(0.95..1.05));
        ((p * 1e9) as u64, ((d * 1e9) as u64).max(1_000))
    } else {
        (
            m_prompt.as_nanos() as u64,
            (m_eval.as_nanos() as u64).max(1_000),
        )
    };
    // What else the request spent (template, tokenizing, HTTP), as measured.
    let overhead = end
        .saturating_duration_since(tl.t0)
        .saturating_sub(load.sleep + m_prompt + m_eval);
    let load_ns = load.reported.as_nanos() as u64;
    Figures {
        load_ns,
        prompt_eval_count: prompt_n as u64,
        prompt_eval_ns: prompt_ns,
        eval_count: n as u64,
        eval_ns,
        total_ns: load_ns + prompt_ns + eval_ns + overhead.as_nanos() as u64,
    }
}

/// The final piece(s) of a generated stream, in the server's exact format.
#[allow(clippy::too_many_arguments)]
fn final_pieces(
    cfg: &MockConfig,
    family: Family,
    chat: bool,
    model: &str,
    id: &str,
    created: u64,
    j: Option<&Value>,
    rng: &mut impl Rng,
    load: LoadCost,
    tl: &Timeline,
    prompt_total: usize,
    cache_n: usize,
    n: usize,
    limited: bool,
) -> Vec<Vec<u8>> {
    let flavour = cfg.openai_server;
    let finish = if limited { "length" } else { "stop" };
    match family {
        Family::Ollama => {
            let f = figures(cfg, family, rng, load, tl, prompt_total, n);
            let created_at = go_time(SystemTime::now());
            let mut fin = if chat {
                json!({"model": model, "created_at": created_at,
                       "message": {"role": "assistant", "content": ""}})
            } else {
                json!({"model": model, "created_at": created_at, "response": ""})
            };
            let o = fin.as_object_mut().expect("object literal");
            o.insert("done".into(), json!(true));
            o.insert("done_reason".into(), json!(finish));
            if !chat {
                o.insert("context".into(), json!([105, 2364, 107, 9259, 106, 107]));
            }
            o.insert("total_duration".into(), json!(f.total_ns));
            o.insert("load_duration".into(), json!(f.load_ns));
            o.insert("prompt_eval_count".into(), json!(f.prompt_eval_count));
            o.insert("prompt_eval_duration".into(), json!(f.prompt_eval_ns));
            o.insert("eval_count".into(), json!(f.eval_count));
            o.insert("eval_duration".into(), json!(f.eval_ns));
            vec![ndjson(&fin)]
        }
        Family::OpenAi if flavour == OpenAiServer::LlamaCppPython => vec![
            python_chunk(model, id, created, "{}", &py_str(finish)),
            sse_done(flavour),
        ],
        Family::OpenAi => {
            // tools/server/server-task.cpp `to_json_oaicompat_chat_stream`: the finish chunk,
            // the usage chunk (empty choices) when asked, `timings` on the last of them.
            let f = figures(cfg, family, rng, load, tl, prompt_total - cache_n, n);
            let mut chunks = vec![json!({
                "choices": [{"finish_reason": finish, "index": 0, "delta": {}}],
                "created": created, "id": id, "model": model,
                "system_fingerprint": BUILD_INFO, "object": "chat.completion.chunk"
            })];
            let include_usage = j
                .and_then(|j| j.get("stream_options"))
                .and_then(|o| o.get("include_usage"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let (prompt_tokens, cached) = match &cfg.durations {
                Some(d) => (d.prompt_eval_count, 0),
                None => (prompt_total as u64, cache_n as u64),
            };
            if include_usage && cfg.openai_usage {
                chunks.push(json!({
                    "choices": [], "created": created, "id": id, "model": model,
                    "system_fingerprint": BUILD_INFO, "object": "chat.completion.chunk",
                    "usage": {"completion_tokens": f.eval_count, "prompt_tokens": prompt_tokens,
                              "total_tokens": f.eval_count + prompt_tokens,
                              "prompt_tokens_details": {"cached_tokens": cached}}
                }));
            }
            if cfg.openai_timings {
                if let Some(last) = chunks.last_mut() {
                    last["timings"] = timings(&f, cached);
                }
            }
            let mut v: Vec<Vec<u8>> = chunks.iter().map(|c| sse(c, flavour)).collect();
            v.push(sse_done(flavour));
            v
        }
    }
}

/// llama-server's `timings` (tools/server/server-common.cpp `server_slot_stats::to_json`;
/// per-token and per-second decode figures over `predicted_n - 1` steps).
fn timings(f: &Figures, cache_n: u64) -> Value {
    let prompt_ms = f.prompt_eval_ns as f64 / 1e6;
    let predicted_ms = f.eval_ns as f64 / 1e6;
    let pn = f.prompt_eval_count;
    let steps = f.eval_count.saturating_sub(1);
    let per = |ms: f64, n: u64| if n > 0 { ms / n as f64 } else { 0.0 };
    let rate = |ms: f64, n: u64| if ms > 0.0 { 1e3 / ms * n as f64 } else { 0.0 };
    json!({
        "cache_n": cache_n,
        "prompt_n": pn, "prompt_ms": prompt_ms,
        "prompt_per_token_ms": per(prompt_ms, pn), "prompt_per_second": rate(prompt_ms, pn),
        "predicted_n": f.eval_count, "predicted_ms": predicted_ms,
        "predicted_per_token_ms": per(predicted_ms, steps),
        "predicted_per_second": rate(predicted_ms, steps)
    })
}

fn role_chunk(model: &str, id: &str, created: u64) -> Value {
    json!({
        "choices": [{"finish_reason": null, "index": 0, "delta": {"role": "assistant", "content": null}}],
        "created": created, "id": id, "model": model,
        "system_fingerprint": BUILD_INFO, "object": "chat.completion.chunk"
    })
}

fn python_role_chunk(model: &str, id: &str, created: u64) -> Vec<u8> {
    python_chunk(model, id, created, "{\"role\": \"assistant\"}", "null")
}

fn ndjson(v: &Value) -> Vec<u8> {
    let mut s = v.to_string().into_bytes();
    s.push(b'\n');
    s
}

/// One event, ended by a blank line (LF, for llama-server and for the sse-starlette 3.7.0
/// under llama-cpp-python 0.3.36 alike: recorded in tests/fixtures/wire).
fn sse(v: &Value, _flavour: OpenAiServer) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
}

fn sse_done(_flavour: OpenAiServer) -> Vec<u8> {
    b"data: [DONE]\n\n".to_vec()
}

async fn error_status(sock: &mut TcpStream, family: Family, code: u16) -> bool {
    let msg = match code {
        429 => "server busy, please try again. maximum pending requests exceeded",
        500 => "llama runner process has terminated: signal: killed",
        503 => "server overloaded",
        _ => "request failed",
    };
    let body = match family {
        Family::Ollama => json!({ "error": msg }),
        Family::OpenAi => {
            json!({"error": {"code": code, "message": msg, "type": if code == 429 {"unavailable_error"} else {"server_error"}}})
        }
    };
    let extra: &[(&str, &str)] = if code == 429 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    whole_response(
        sock,
        code,
        "application/json; charset=utf-8",
        body.to_string().as_bytes(),
        extra,
    )
    .await
}

async fn model_not_found(sock: &mut TcpStream, family: Family, model: &str) -> bool {
    let body = match family {
        Family::Ollama => {
            json!({ "error": format!("model \"{model}\" not found, try pulling it first") })
        }
        Family::OpenAi => {
            json!({"object": "error", "message": format!("The model `{model}` does not exist."),
                                 "type": "NotFoundError", "param": null, "code": 404})
        }
    };
    json_response(sock, 404, &body).await
}
