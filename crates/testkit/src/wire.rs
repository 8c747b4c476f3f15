//! The mock server's HTTP/1.1: request parsing, chunked responses, and the Ollama and
//! OpenAI-compatible stream bodies, byte for byte as the real servers send them.

use super::{Fault, RecordedRequest, Shared};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const CREATED_AT: &str = "2026-01-15T10:24:31.123456789Z";

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

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Ollama,
    OpenAi,
}

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
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/version") => json_response(sock, 200, &json!({"version": cfg.version})).await,
        ("GET", "/api/tags") => json_response(sock, 200, &tags(sh)).await,
        ("POST", "/api/show") => match has_model(sh, &model) {
            true => json_response(sock, 200, &show()).await,
            false => {
                json_response(
                    sock,
                    404,
                    &json!({"error": format!("model '{model}' not found")}),
                )
                .await
            }
        },
        ("GET", "/v1/models") if cfg.openai_models_endpoint => {
            let data: Vec<Value> = cfg
                .models
                .iter()
                .map(|m| json!({"id": m.name, "object": "model", "created": 1736936671, "owned_by": "llamacpp"}))
                .collect();
            json_response(sock, 200, &json!({"object": "list", "data": data})).await
        }
        ("POST", "/api/generate") => generation(sock, sh, req, Family::Ollama, false).await,
        ("POST", "/api/chat") => generation(sock, sh, req, Family::Ollama, true).await,
        ("POST", "/v1/chat/completions") => generation(sock, sh, req, Family::OpenAi, true).await,
        _ => text_response(sock, 404, "404 page not found").await,
    }
}

fn norm(m: &str) -> String {
    if m.contains(':') {
        m.to_string()
    } else {
        format!("{m}:latest")
    }
}

fn has_model(sh: &Shared, model: &str) -> bool {
    sh.cfg.models.iter().any(|m| norm(&m.name) == norm(model))
}

fn tags(sh: &Shared) -> Value {
    let models: Vec<Value> = sh
        .cfg
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name, "model": m.name, "modified_at": "2026-01-10T08:00:00.000000000Z",
                "size": 3338801804u64, "digest": m.digest,
                "details": {"parent_model": "", "format": "gguf", "family": "gemma3",
                            "families": ["gemma3"], "parameter_size": "4.3B",
                            "quantization_level": "Q4_K_M"}
            })
        })
        .collect();
    json!({ "models": models })
}

fn show() -> Value {
    json!({
        "modelfile": "FROM gemma3:latest\n",
        "parameters": "stop \"<end_of_turn>\"\ntemperature 1\ntop_k 64\ntop_p 0.95",
        "template": "{{- range $i, $_ := .Messages }}...{{ end }}",
        "details": {"parent_model": "", "format": "gguf", "family": "gemma3",
                    "families": ["gemma3"], "parameter_size": "4.3B", "quantization_level": "Q4_K_M"},
        "model_info": {"general.architecture": "gemma3", "gemma3.context_length": 131072},
        "capabilities": ["completion", "vision"],
        "modified_at": "2026-01-10T08:00:00.000000000Z"
    })
}

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
        429 => "Too Many Requests",
        500 => "Internal Server Error",
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

/// A streamed generation, with the fault this request drew.
async fn generation(
    sock: &mut TcpStream,
    sh: &Shared,
    req: &RecordedRequest,
    family: Family,
    chat: bool,
) -> bool {
    let model = req
        .json
        .as_ref()
        .and_then(|j| j.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let t0 = Instant::now();
    let cfg = &sh.cfg;
    let idx = sh.generation_index.fetch_add(1, Ordering::SeqCst);
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
    if cfg.replay.is_none() && !has_model(sh, model) {
        return model_not_found(sock, family, model).await;
    }

    let pieces: Vec<Vec<u8>> = match &cfg.replay {
        Some(r) => r.clone(),
        None => generated(cfg, family, chat, model),
    };
    // The last piece(s) of a generated stream are the final object; faults cut before them.
    let n_tokens = match &cfg.replay {
        Some(r) => r.len(),
        None => cfg.tokens,
    };
    let mut out = stream_head(family);
    if family == Family::OpenAi && cfg.replay.is_none() {
        // OpenAI-compatible servers answer at once with a role-only delta.
        chunk(&mut out, &sse(&role_chunk(model)));
        if sock.write_all(&out).await.is_err() {
            return false;
        }
        out.clear();
    }
    let limit = stop_after.unwrap_or(usize::MAX).min(pieces.len());
    for (i, p) in pieces.iter().enumerate().take(limit) {
        let due = if i < n_tokens {
            t0 + cfg.first_token_delay + cfg.inter_token_delay * i as u32
        } else {
            t0 + cfg.first_token_delay + cfg.inter_token_delay * n_tokens.saturating_sub(1) as u32
        };
        sleep_until_precise(due).await;
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
        Fault::MalformedAfter(_) => {
            let bad: &[u8] = match family {
                Family::Ollama => b"{\"model\":\"x\",\"response\":\"tok\",\"done\":fal\n",
                Family::OpenAi => b"data: {\"choices\":[{\"delta\":{\"content\":\"tok\"}\n\n",
            };
            chunk(&mut out, bad);
            out.extend_from_slice(b"0\r\n\r\n");
            sock.write_all(&out).await.is_ok()
        }
        Fault::StallAfter(_) => {
            if !out.is_empty() {
                let _ = sock.write_all(&out).await;
            }
            std::future::pending::<bool>().await
        }
        _ => {
            // Also the truncation fault: a clean end of body without the final object.
            out.extend_from_slice(b"0\r\n\r\n");
            sock.write_all(&out).await.is_ok()
        }
    }
}

/// Sleeps until `due` to within microseconds: tokio's timer has 1 ms ticks and rounds up,
/// so it sleeps to 2 ms short and yields in a loop for the rest (a little CPU per token).
async fn sleep_until_precise(due: Instant) {
    let margin = std::time::Duration::from_millis(2);
    if let Some(coarse) = due.checked_sub(margin) {
        if coarse > Instant::now() {
            tokio::time::sleep_until(coarse).await;
        }
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// Token pieces followed by the final piece(s), in the server family's exact format.
fn generated(cfg: &super::MockConfig, family: Family, chat: bool, model: &str) -> Vec<Vec<u8>> {
    let d = &cfg.durations;
    let eval_count = d.eval_count.unwrap_or(cfg.tokens as u64);
    let mut v = Vec::with_capacity(cfg.tokens + 3);
    match family {
        Family::Ollama => {
            for _ in 0..cfg.tokens {
                let line = if chat {
                    json!({"model": model, "created_at": CREATED_AT,
                           "message": {"role": "assistant", "content": cfg.token_text}, "done": false})
                } else {
                    json!({"model": model, "created_at": CREATED_AT,
                           "response": cfg.token_text, "done": false})
                };
                v.push(ndjson(&line));
            }
            let mut fin = if chat {
                json!({"model": model, "created_at": CREATED_AT,
                       "message": {"role": "assistant", "content": ""}})
            } else {
                json!({"model": model, "created_at": CREATED_AT, "response": ""})
            };
            let o = fin.as_object_mut().expect("object literal");
            o.insert("done".into(), json!(true));
            o.insert("done_reason".into(), json!("stop"));
            if !chat {
                o.insert("context".into(), json!([105, 2364, 107, 9259, 106, 107]));
            }
            o.insert("total_duration".into(), json!(d.total_ns));
            o.insert("load_duration".into(), json!(d.load_ns));
            o.insert("prompt_eval_count".into(), json!(d.prompt_eval_count));
            o.insert("prompt_eval_duration".into(), json!(d.prompt_eval_ns));
            o.insert("eval_count".into(), json!(eval_count));
            o.insert("eval_duration".into(), json!(d.eval_ns));
            v.push(ndjson(&fin));
        }
        Family::OpenAi => {
            for _ in 0..cfg.tokens {
                v.push(sse(&json!({
                    "choices": [{"finish_reason": null, "index": 0, "delta": {"content": cfg.token_text}}],
                    "created": 1736936671, "id": "chatcmpl-mock", "model": model,
                    "system_fingerprint": "b5200-mock", "object": "chat.completion.chunk"
                })));
            }
            let mut fin = json!({
                "choices": [{"finish_reason": "stop", "index": 0, "delta": {}}],
                "created": 1736936671, "id": "chatcmpl-mock", "model": model,
                "system_fingerprint": "b5200-mock", "object": "chat.completion.chunk"
            });
            if cfg.openai_timings {
                let prompt_ms = d.prompt_eval_ns as f64 / 1e6;
                let predicted_ms = d.eval_ns as f64 / 1e6;
                fin["timings"] = json!({
                    "prompt_n": d.prompt_eval_count, "prompt_ms": prompt_ms,
                    "prompt_per_token_ms": prompt_ms / d.prompt_eval_count.max(1) as f64,
                    "prompt_per_second": d.prompt_eval_count as f64 / prompt_ms * 1e3,
                    "predicted_n": eval_count, "predicted_ms": predicted_ms,
                    "predicted_per_token_ms": predicted_ms / eval_count.max(1) as f64,
                    "predicted_per_second": eval_count as f64 / predicted_ms * 1e3
                });
            }
            v.push(sse(&fin));
            if cfg.openai_usage {
                v.push(sse(&json!({
                    "choices": [], "created": 1736936671, "id": "chatcmpl-mock", "model": model,
                    "system_fingerprint": "b5200-mock", "object": "chat.completion.chunk",
                    "usage": {"completion_tokens": eval_count, "prompt_tokens": d.prompt_eval_count,
                              "total_tokens": eval_count + d.prompt_eval_count}
                })));
            }
            v.push(b"data: [DONE]\n\n".to_vec());
        }
    }
    v
}

fn role_chunk(model: &str) -> Value {
    json!({
        "choices": [{"finish_reason": null, "index": 0, "delta": {"role": "assistant", "content": null}}],
        "created": 1736936671, "id": "chatcmpl-mock", "model": model,
        "system_fingerprint": "b5200-mock", "object": "chat.completion.chunk"
    })
}

fn ndjson(v: &Value) -> Vec<u8> {
    let mut s = v.to_string().into_bytes();
    s.push(b'\n');
    s
}

fn sse(v: &Value) -> Vec<u8> {
    format!("data: {v}\n\n").into_bytes()
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
