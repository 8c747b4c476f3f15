//! `sweep run` against a real third-party OpenAI-compatible server: llama.cpp's
//! `llama-server` (built and cached by `scripts/llama-server.sh`) serving the Gemma 3 270M
//! GGUF. A transparent TCP proxy between sweep and the server keeps every byte the server
//! sent, so the test checks the stored token counts against the server's own `usage`
//! chunks on the wire, not against what our parser made of them.

use crate::common::llama_server_binary;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sweep::store::read_records;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";
const MAX_TOKENS: u64 = 16;
const REPS: usize = 2;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Kills the server when the test ends, panics included.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One blocking HTTP/1.1 GET with `Connection: close`: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let mut responses = parse_responses(&raw);
    let r = responses
        .pop()
        .ok_or_else(|| std::io::Error::other("no HTTP response"))?;
    Ok((r.status, r.body))
}

fn start_server(bin: &Path, port: u16) -> ServerGuard {
    let child = Command::new(bin)
        .current_dir(root())
        .args(["-m", MODEL, "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args([
            "--no-jinja",
            "--chat-template",
            "gemma",
            "-t",
            "2",
            "-c",
            "2048",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama-server");
    let mut guard = ServerGuard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            panic!("llama-server exited during start-up: {status}");
        }
        if let Ok((200, _)) = http_get(port, "/health") {
            return guard;
        }
        assert!(
            Instant::now() < deadline,
            "llama-server not healthy after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One connection's server-to-client bytes.
type Capture = Arc<Mutex<Vec<u8>>>;

/// A transparent proxy that records what the server sent on each connection.
struct Proxy {
    port: u16,
    from_server: Arc<Mutex<Vec<Capture>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().unwrap().port();
        let from_server: Arc<Mutex<Vec<Capture>>> = Arc::default();
        let conns = from_server.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let log: Capture = Arc::default();
                conns.lock().unwrap().push(log.clone());
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                pump(server, client, Some(log));
            }
        });
        Proxy { port, from_server }
    }

    /// Everything the server sent, one buffer per connection, in accept order.
    fn captured(&self) -> Vec<Vec<u8>> {
        self.from_server
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.lock().unwrap().clone())
            .collect()
    }
}

/// Copies `from` to `to` until EOF, keeping a copy in `log`; then half-closes `to`.
fn pump(mut from: TcpStream, to: TcpStream, log: Option<Capture>) {
    std::thread::spawn(move || {
        let mut to = to;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(l) = &log {
                        l.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

struct Response {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// Splits a connection's server-to-client bytes into HTTP/1.1 responses, undoing chunked
/// transfer encoding (a chunk boundary may fall anywhere inside an SSE event).
fn parse_responses(raw: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    let mut r = BufReader::new(raw);
    loop {
        let mut status_line = String::new();
        if r.read_line(&mut status_line).unwrap_or(0) == 0 {
            return out;
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let (mut chunked, mut length, mut content_type) = (false, None, String::new());
        loop {
            let mut h = String::new();
            r.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("header with a colon");
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "content-length" => length = v.parse::<usize>().ok(),
                "content-type" => content_type = v.to_ascii_lowercase(),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).expect("chunk size");
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                    .expect("hex chunk size");
                let mut chunk = vec![0; size + 2];
                r.read_exact(&mut chunk).expect("chunk");
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            r.read_exact(&mut body).expect("body");
        } else {
            r.read_to_end(&mut body).expect("body to EOF");
        }
        out.push(Response {
            status,
            content_type,
            body,
        });
    }
}

/// What the server itself reported for one streamed completion.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
struct WireCounts {
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_ms: f64,
    predicted_ms: f64,
}

/// The `usage` and `timings` objects of one SSE body.
fn wire_counts(body: &[u8]) -> WireCounts {
    let text = String::from_utf8_lossy(body);
    let (mut usage, mut timings) = (None, None);
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).expect("SSE data is JSON");
        if v["usage"].is_object() {
            usage = Some(v["usage"].clone());
        }
        if v["timings"].is_object() {
            timings = Some(v["timings"].clone());
        }
    }
    let usage = usage.unwrap_or_else(|| panic!("no usage chunk in stream:\n{text}"));
    let timings = timings.unwrap_or_else(|| panic!("no timings in stream:\n{text}"));
    WireCounts {
        prompt_tokens: usage["prompt_tokens"]
            .as_u64()
            .expect("usage.prompt_tokens"),
        completion_tokens: usage["completion_tokens"]
            .as_u64()
            .expect("usage.completion_tokens"),
        prompt_ms: timings["prompt_ms"].as_f64().expect("timings.prompt_ms"),
        predicted_ms: timings["predicted_ms"]
            .as_f64()
            .expect("timings.predicted_ms"),
    }
}

fn write_spec(dir: &Path, url: &str, model: &str) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "real"
repetitions = {REPS}
warmup = 0
seed = 11

[backend]
kind = "openai"
url = "{url}"
model = "{model}"
timeout_s = 120

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[[arm]]
name = "baseline"
agent = "single"
max_tokens = {MAX_TOKENS}
"#,
        corpus = root().join("experiments/corpus").display(),
        results = dir.join("results").display(),
    );
    let path = dir.join("real.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn llama_server_counts_are_stored_as_the_server_sent_them() {
    assert!(
        root().join(MODEL).is_file(),
        "{MODEL} is missing: run scripts/fetch-model.sh"
    );
    let bin = llama_server_binary();
    let port = free_port();
    let t0 = Instant::now();
    let _server = start_server(&bin, port);
    eprintln!(
        "llama-server healthy after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let (status, body) = http_get(port, "/v1/models").expect("GET /v1/models");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let models: serde_json::Value = serde_json::from_slice(&body).expect("models JSON");
    let model = models["data"][0]["id"]
        .as_str()
        .expect("data[0].id")
        .to_string();

    let proxy = Proxy::start(port);
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        &format!("http://127.0.0.1:{}", proxy.port),
        &model,
    );
    let t1 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .current_dir(root())
        .arg("run")
        .arg(&spec)
        .stdin(Stdio::null())
        .output()
        .expect("run sweep");
    assert!(
        out.status.success(),
        "sweep run failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    eprintln!("sweep run took {:.1} s", t1.elapsed().as_secs_f64());
    let exp = dir.path().join("results/real");
    let runs: Vec<PathBuf> = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    // Every stored call, the runner's reload probe included, is one stream on the wire.
    let records = read_records(&runs[0].join("records.jsonl"))
        .unwrap()
        .records;
    let probes = records
        .iter()
        .filter(|r| r.phase == sweep::record::Phase::Reload)
        .count();
    // One single-agent arm: an analysis and a report call per repetition.
    assert_eq!(records.len() - probes, 2 * REPS);
    for r in &records {
        assert!(
            r.ok,
            "call failed: {:?} {:?}",
            r.error_kind, r.error_message
        );
        assert!(r.ttft_ms.is_some_and(|t| t > 0.0), "{r:?}");
    }

    // Every completion the server streamed through the proxy, with its own counts.
    let mut wire: Vec<WireCounts> = proxy
        .captured()
        .iter()
        .flat_map(|c| parse_responses(c))
        .filter(|r| r.content_type.starts_with("text/event-stream"))
        .map(|r| {
            assert_eq!(r.status, 200);
            wire_counts(&r.body)
        })
        .collect();
    let mut stored: Vec<WireCounts> = records
        .iter()
        .map(|r| WireCounts {
            prompt_tokens: r.prompt_tokens.expect("stored prompt_tokens"),
            completion_tokens: r.output_tokens.expect("stored output_tokens"),
            prompt_ms: r.prompt_eval_ms.expect("stored prompt_eval_ms"),
            predicted_ms: r.eval_ms.expect("stored eval_ms"),
        })
        .collect();
    eprintln!("server usage/timings on the wire: {wire:?}");
    assert_eq!(wire.len(), records.len(), "one stream per stored call");
    for w in &wire {
        assert!(w.prompt_tokens > 0);
        assert!((1..=MAX_TOKENS).contains(&w.completion_tokens), "{w:?}");
    }
    let by_value = |a: &WireCounts, b: &WireCounts| a.partial_cmp(b).unwrap();
    wire.sort_by(by_value);
    stored.sort_by(by_value);
    assert_eq!(stored, wire, "stored counts differ from the server's usage");
}

/// The venv's python with llama-cpp-python's server, found by the script that installs it.
/// Absent: fail loudly, as for llama-server.
fn llama_cpp_python() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/llama-cpp-python.sh"))
        .arg("--path")
        .output()
        .expect("run scripts/llama-cpp-python.sh --path");
    assert!(
        out.status.success(),
        "llama-cpp-python is not installed: run scripts/llama-cpp-python.sh before this \
         test. Script said: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// One blocking HTTP/1.1 POST of a JSON body with `Connection: close`: (status, body).
fn http_post_json(port: u16, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let b = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = parse_responses(&raw).pop().expect("one response");
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)));
    (r.status, v)
}

/// llama-cpp-python's server streams no `usage` (it ignores `stream_options.include_usage`)
/// and no `timings`: the openai backend counts through its `POST /extras/tokenize`, and the
/// counts are that endpoint's own for the prompt, the system prompt and the output (less the
/// BOS it adds to every text), with `tokens_source = "tokenize"`.
#[test]
fn llama_cpp_python_counts_come_from_its_tokenize_endpoint() {
    use sweep::backend::{Backend, GenRequest, OpenAiBackend};
    use sweep::spec::{BackendConfig, BackendKind, ModelOptions, OllamaApi, RetryPolicy, Timeouts};

    assert!(
        root().join(MODEL).is_file(),
        "{MODEL} is missing: run scripts/fetch-model.sh"
    );
    let python = llama_cpp_python();
    let port = free_port();
    let t0 = Instant::now();
    let child = Command::new(&python)
        .current_dir(root())
        .args([
            "-m",
            "llama_cpp.server",
            "--model",
            MODEL,
            "--chat_format",
            "gemma",
        ])
        .args([
            "--n_threads",
            "2",
            "--n_ctx",
            "2048",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start llama-cpp-python's server");
    let mut guard = ServerGuard(child);
    // It has no /health; /v1/models answers once the model is loaded.
    let deadline = Instant::now() + Duration::from_secs(120);
    let model = loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            panic!("llama-cpp-python's server exited during start-up: {status}");
        }
        if let Ok((200, body)) = http_get(port, "/v1/models") {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("models JSON");
            break v["data"][0]["id"].as_str().expect("data[0].id").to_string();
        }
        assert!(Instant::now() < deadline, "server not up after 120 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "llama-cpp-python's server up after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let cfg = BackendConfig {
        kind: BackendKind::Openai,
        urls: vec![format!("http://127.0.0.1:{port}")],
        model: model.clone(),
        model_path: None,
        ollama_api: OllamaApi::Generate,
        timeouts: Timeouts {
            connect_s: 5.0,
            first_token_s: 60.0,
            total_s: 120.0,
        },
        api_key_env: None,
        retry: RetryPolicy::default(),
        threads: None,
        cache_prompt: false,
        extra: Default::default(),
        fresh_connections: false,
    };
    let backend = OpenAiBackend::new(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let count = |text: &str| -> u64 {
        let (status, v) = http_post_json(
            port,
            "/extras/tokenize",
            &serde_json::json!({"input": text, "model": model}),
        );
        assert_eq!(status, 200, "{v}");
        v["tokens"].as_array().expect("tokens").len() as u64
    };
    let bos = count("");
    assert_eq!(bos, 1, "Llama.tokenize adds BOS to every text");
    for (i, topic) in ["throughput", "latency"].iter().enumerate() {
        let req = GenRequest {
            model: model.clone(),
            system: Some("You are a terse benchmark analyst.".into()),
            prompt: format!("Call {i}: summarise the {topic} figures in one sentence."),
            options: ModelOptions {
                num_predict: Some(MAX_TOKENS as u32),
                temperature: Some(0.0),
                seed: Some(7),
                ..Default::default()
            },
            endpoint: None,
        };
        let g = rt.block_on(backend.generate(&req)).expect("generation");
        eprintln!("llama-cpp-python: {:?} {:?}", g.server, g.timing.chunks);
        assert_eq!(g.server.tokens_source.as_deref(), Some("tokenize"));
        assert_eq!(g.server.eval_ms, None, "no timings when streaming");
        let system = req.system.as_deref().unwrap();
        let want_prompt = count(&req.prompt) - bos + count(system) - bos;
        assert_eq!(g.server.prompt_tokens, Some(want_prompt));
        assert_eq!(g.server.output_tokens, Some(count(&g.text) - bos));
        // The output re-tokenized is close to what was generated (one chunk per token).
        let out = g.server.output_tokens.unwrap();
        assert!(
            out.abs_diff(g.timing.chunks) <= 2 && (1..=MAX_TOKENS + 2).contains(&out),
            "{out} tokens vs {} chunks",
            g.timing.chunks
        );
    }
}
