//! The peer on the wire, through a plain blocking HTTP/1.1 client: the realistic defaults
//! (Ollama's scheduler and `/api/ps`, llama-server's usage/timings/tokenize/props/slots,
//! llama-cpp-python's flavour) byte for byte, independent of sweep's own client.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use sweep_testkit::{tokens, LoadTimes, MockConfig, MockServer, OpenAiServer, ServerDurations};

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection; chunked bodies are decoded.
fn call(server: &MockServer, method: &str, path: &str, body: Option<Value>) -> Reply {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (mut chunked, mut len, mut content_type) = (false, None, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        match k.to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = v.trim() == "chunked",
            "content-length" => len = v.trim().parse::<usize>().ok(),
            "content-type" => content_type = v.trim().to_string(),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut c = vec![0; n + 2];
            r.read_exact(&mut c).unwrap();
            out.extend_from_slice(&c[..n]);
            if n == 0 {
                break;
            }
        }
    } else {
        out.resize(len.unwrap_or(0), 0);
        r.read_exact(&mut out).unwrap();
    }
    Reply {
        status,
        content_type,
        body: out,
    }
}

/// The JSON payloads of an SSE body, `[DONE]` left out.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| d.trim() != "[DONE]")
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

fn chat(extra: Value) -> Value {
    let mut b = json!({
        "model": "gemma3:latest", "stream": true,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Summarise the benchmark data."}]
    });
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    b
}

fn prompt_total() -> u64 {
    tokens::chat_prompt_tokens(Some("Be brief."), "Summarise the benchmark data.").len() as u64
}

#[test]
fn llama_server_usage_only_when_asked_timings_on_the_last_chunk() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    let r = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(chat(json!({}))),
    );
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/event-stream"));
    let ev = events(&r.text());
    assert!(ev.iter().all(|e| e.get("usage").is_none()), "usage unasked");
    // role, 8 tokens, finish (with timings)
    assert_eq!(ev.len(), 10);
    assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
    let last = ev.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let t = &last["timings"];
    assert_eq!(t["prompt_n"], prompt_total());
    assert_eq!(t["cache_n"], 0, "first request: nothing cached");
    assert_eq!(t["predicted_n"], 8);
    // llama.cpp's decode rate is over predicted_n - 1 steps (the first token is free).
    let ms = t["predicted_ms"].as_f64().unwrap();
    let per_tok = t["predicted_per_token_ms"].as_f64().unwrap();
    assert!((per_tok - ms / 7.0).abs() < 1e-9, "{t}");
    let pps = t["prompt_per_second"].as_f64().unwrap();
    assert!((389.0..431.0).contains(&pps), "{pps}");
    assert!(r.text().ends_with("data: [DONE]\n\n"));

    // Asked: a usage chunk with empty choices, now carrying the timings. The same prompt
    // again is served from the prompt cache (cache_prompt defaults to true)...
    let r = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(chat(
            json!({"stream_options": {"include_usage": true}, "max_tokens": 3}),
        )),
    );
    let ev = events(&r.text());
    let fin = &ev[ev.len() - 2];
    assert_eq!(
        fin["choices"][0]["finish_reason"], "length",
        "max_tokens 3 < 8"
    );
    assert!(fin.get("timings").is_none());
    let u = ev.last().unwrap();
    assert_eq!(u["choices"], json!([]));
    assert_eq!(u["usage"]["prompt_tokens"], prompt_total());
    assert_eq!(u["usage"]["completion_tokens"], 3);
    let cached = u["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(cached, prompt_total() - 1);
    assert_eq!(u["timings"]["cache_n"], cached);
    assert_eq!(u["timings"]["prompt_n"], 1);
    // ...unless the request turns it off, as sweep does.
    let r = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(chat(
            json!({"stream_options": {"include_usage": true}, "cache_prompt": false}),
        )),
    );
    let ev = events(&r.text());
    assert_eq!(ev.last().unwrap()["timings"]["cache_n"], 0);
    assert_eq!(ev.last().unwrap()["timings"]["prompt_n"], prompt_total());
}

#[test]
fn llama_server_tokenize_props_slots_health() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    let text = "Hello, world! internationalization";
    let r = call(&server, "POST", "/tokenize", Some(json!({"content": text})));
    assert_eq!(r.status, 200);
    let ids: Vec<u64> = serde_json::from_value(r.json()["tokens"].clone()).unwrap();
    assert_eq!(ids.len(), tokens::count(text));
    let r = call(
        &server,
        "POST",
        "/tokenize",
        Some(json!({"content": text, "add_special": true, "with_pieces": true})),
    );
    let t = r.json()["tokens"].clone();
    assert_eq!(t[0], json!({"id": tokens::BOS, "piece": "<bos>"}));
    assert_eq!(t[1]["piece"], "Hello");
    assert_eq!(
        call(&server, "POST", "/tokenize", Some(json!({"content": ""}))).json(),
        json!({"tokens": []})
    );
    assert_eq!(call(&server, "GET", "/health", None).json()["status"], "ok");

    let p = call(&server, "GET", "/props", None).json();
    assert_eq!(p["total_slots"], 4);
    assert_eq!(p["default_generation_settings"]["n_ctx"], 4096);
    assert!(p["build_info"].as_str().unwrap().starts_with('b'));

    let s = call(&server, "GET", "/slots", None).json();
    assert_eq!(s.as_array().unwrap().len(), 4);
    assert_eq!(
        s[0],
        json!({"id": 0, "n_ctx": 4096, "speculative": false, "is_processing": false})
    );
    call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(chat(json!({"max_tokens": 5}))),
    );
    let s = call(&server, "GET", "/slots", None).json();
    assert_eq!(s[0]["id_task"], 0);
    assert_eq!(s[0]["is_processing"], false);
    assert_eq!(s[0]["n_prompt_tokens"], prompt_total());
    assert_eq!(s[0]["next_token"][0]["n_decoded"], 5);
    assert!(s[1].get("id_task").is_none());

    // llama-server has no /extras/tokenize: cpp-httplib's 404.
    let r = call(
        &server,
        "POST",
        "/extras/tokenize",
        Some(json!({"input": "x"})),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["message"], "File Not Found");
}

#[test]
fn llama_cpp_python_flavour() {
    let server = MockServer::start(MockConfig {
        token_text: "é ".into(),
        ..MockConfig::llama_cpp_python()
    })
    .unwrap();
    let r = call(
        &server,
        "POST",
        "/v1/chat/completions",
        Some(chat(json!({"stream_options": {"include_usage": true}}))),
    );
    let text = r.text();
    // Written by Python's json.dumps, as tests/fixtures/wire/llama_cpp_python_chat.sse.
    assert!(text.starts_with("data: {\"id\": \"chatcmpl-"), "{text}");
    assert!(
        text.contains("\"delta\": {\"content\": \"\\u00e9 \"}"),
        "{text}"
    );
    assert!(!text.contains('\r'));
    assert!(text.ends_with("data: [DONE]\n\n"));
    let ev = events(&text);
    assert!(ev
        .iter()
        .all(|e| e.get("usage").is_none() && e.get("timings").is_none()));
    assert_eq!(ev[0]["choices"][0]["delta"], json!({"role": "assistant"}));
    assert_eq!(ev[1]["choices"][0]["delta"]["content"], "é ");
    assert_eq!(ev.len(), 1 + 8 + 1);
    assert_eq!(ev[9]["choices"][0]["finish_reason"], "stop");
    assert_eq!(ev[9]["choices"][0]["delta"], json!({}));

    let r = call(
        &server,
        "POST",
        "/extras/tokenize",
        Some(json!({"input": "tok tok", "model": "gemma3:latest"})),
    );
    let ids = r.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(ids[0], tokens::BOS, "Llama.tokenize adds BOS");
    assert_eq!(ids.len(), 1 + tokens::count("tok tok"));
    let r = call(
        &server,
        "POST",
        "/extras/tokenize/count",
        Some(json!({"input": ""})),
    );
    assert_eq!(r.json(), json!({"count": 1}));
    let r = call(
        &server,
        "POST",
        "/extras/tokenize",
        Some(json!({"text": "x"})),
    );
    assert_eq!(r.status, 500);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Field required"));
    let r = call(&server, "POST", "/tokenize", Some(json!({"content": "x"})));
    assert_eq!((r.status, r.json()), (404, json!({"detail": "Not Found"})));
    let m = call(&server, "GET", "/v1/models", None).json();
    assert_eq!(m["data"][0]["owned_by"], "me");
}

fn generate(server: &MockServer, extra: Value) -> (Reply, f64) {
    let mut b = json!({"model": "gemma3", "prompt": "Why is the sky blue?"});
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let t = Instant::now();
    let r = call(server, "POST", "/api/generate", Some(b));
    (r, t.elapsed().as_secs_f64() * 1e3)
}

fn final_object(r: &Reply) -> Value {
    let last = r.text().lines().last().unwrap().to_string();
    serde_json::from_str(&last).unwrap()
}

#[test]
fn ollama_scheduler_loads_ps_and_load_requests() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    assert_eq!(
        call(&server, "GET", "/api/ps", None).json(),
        json!({"models": []})
    );
    let (r, _) = generate(
        &server,
        json!({"options": {"num_ctx": 8192, "num_gpu": 20}}),
    );
    assert_eq!(r.content_type, "application/x-ndjson");
    let f = final_object(&r);
    assert_eq!(f["done"], true);
    let load = f["load_duration"].as_u64().unwrap();
    assert!((500_000_000..3_000_000_000).contains(&load), "{load}");
    assert!(f["total_duration"].as_u64().unwrap() > load);
    assert_eq!(
        f["prompt_eval_count"],
        tokens::chat_prompt_tokens(None, "Why is the sky blue?").len()
    );

    let ps = call(&server, "GET", "/api/ps", None).json();
    let m = &ps["models"][0];
    assert_eq!(m["name"], "gemma3:latest");
    assert_eq!(m["context_length"], 8192);
    assert_eq!(m["details"]["family"], "gemma3");
    let (size, vram) = (
        m["size"].as_u64().unwrap(),
        m["size_vram"].as_u64().unwrap(),
    );
    assert_eq!(vram, size / 35 * 20, "20 of 35 layers");
    assert!(m["expires_at"].as_str().unwrap().ends_with('Z'));

    // No num_gpu (auto) keeps the partial offload loaded; a sampling option never reloads.
    let (r, _) = generate(
        &server,
        json!({"options": {"num_ctx": 8192, "temperature": 0.2}}),
    );
    assert!(final_object(&r)["load_duration"].as_u64().unwrap() < 30_000_000);
    // A load request: no prompt, a plain JSON answer, done_reason "load"; then "unload".
    let (r, _) = generate(&server, json!({"prompt": "", "options": {"num_ctx": 8192}}));
    assert_eq!(r.json()["done_reason"], "load");
    let (r, _) = generate(&server, json!({"prompt": "", "keep_alive": 0}));
    assert_eq!(r.json()["done_reason"], "unload");
    assert_eq!(
        call(&server, "GET", "/api/ps", None).json(),
        json!({"models": []})
    );
    // num_predict limits the tokens: done_reason "length".
    let (r, _) = generate(&server, json!({"options": {"num_predict": 2}}));
    let f = final_object(&r);
    assert_eq!(
        (f["eval_count"].clone(), f["done_reason"].clone()),
        (json!(2), json!("length"))
    );
    let (r, _) = generate(&server, json!({"keep_alive": "10"}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "time: missing unit in duration \"10\"");
}

#[test]
fn ollama_keep_alive_expiry_and_concurrent_load() {
    let server = MockServer::start(MockConfig {
        tokens: 1,
        ..MockConfig::default()
    })
    .unwrap();
    generate(&server, json!({"keep_alive": "300ms"}));
    assert_eq!(
        call(&server, "GET", "/api/ps", None).json()["models"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        call(&server, "GET", "/api/ps", None).json(),
        json!({"models": []})
    );

    // Two requests arriving together: one loads, the other waits for that load and reports
    // the wait as its load_duration too (both cold).
    let server = std::sync::Arc::new(
        MockServer::start(MockConfig {
            tokens: 1,
            load: LoadTimes {
                cold: Duration::from_millis(600)..Duration::from_millis(601),
                ..LoadTimes::real()
            },
            ..MockConfig::default()
        })
        .unwrap(),
    );
    let s2 = server.clone();
    let h = std::thread::spawn(move || generate(&s2, json!({})));
    std::thread::sleep(Duration::from_millis(100));
    let (b, b_ms) = generate(&server, json!({}));
    let (a, a_ms) = h.join().unwrap();
    let la = final_object(&a)["load_duration"].as_u64().unwrap();
    let lb = final_object(&b)["load_duration"].as_u64().unwrap();
    assert!((600_000_000..601_000_000).contains(&la), "{la}");
    assert!((400_000_000..560_000_000).contains(&lb), "waited {lb}");
    assert!(a_ms >= 600.0 && b_ms >= 400.0, "{a_ms} {b_ms}");
}

#[test]
fn fixed_durations_and_no_load() {
    let d = ServerDurations::default();
    let server = MockServer::start(MockConfig {
        durations: Some(d.clone()),
        load: LoadTimes::none(),
        ..MockConfig::default()
    })
    .unwrap();
    let (r, ms) = generate(&server, json!({}));
    let f = final_object(&r);
    assert_eq!(f["load_duration"], d.load_ns);
    assert_eq!(f["total_duration"], d.total_ns);
    assert!(ms < 100.0, "no load time spent: {ms}");
    let server = MockServer::start(MockConfig {
        openai_server: OpenAiServer::LlamaServer,
        load: LoadTimes::none(),
        ..MockConfig::default()
    })
    .unwrap();
    let (r, _) = generate(&server, json!({}));
    assert_eq!(final_object(&r)["load_duration"], 0);
}
