//! The HTTP backends against the `testkit` protocol peer over real loopback sockets:
//! client-side timing against injected delays, server figures against recorded wire
//! fixtures, every fault mapped to its error kind, and exactly what goes on the wire.

use std::path::Path;
use std::time::Duration;
use sweep::backend::{self, Backend, BackendError, GenRequest, OllamaBackend, OpenAiBackend};
use sweep::spec::{BackendConfig, BackendKind, ModelOptions, OllamaApi, RetryPolicy, Timeouts};
use sweep_testkit::{refused_url, Fault, FaultPlan, MockConfig, MockServer};

fn cfg(kind: BackendKind, url: &str) -> BackendConfig {
    BackendConfig {
        kind,
        urls: vec![url.to_string()],
        model: "gemma3:latest".into(),
        model_path: None,
        ollama_api: OllamaApi::Generate,
        timeouts: Timeouts {
            connect_s: 2.0,
            first_token_s: 5.0,
            total_s: 10.0,
        },
        api_key_env: None,
        retry: RetryPolicy::default(),
        threads: None,
        cache_prompt: false,
        extra: Default::default(),
    }
}

fn req(options: ModelOptions) -> GenRequest {
    GenRequest {
        model: "gemma3:latest".into(),
        system: None,
        prompt: "Summarise the benchmark data.".into(),
        options,
        endpoint: None,
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire")
        .join(name)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let h = (v.len() - 1) as f64 * 0.5;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

fn backends(url: &str, api: OllamaApi) -> Vec<(&'static str, Box<dyn Backend>)> {
    let mut o = cfg(BackendKind::Ollama, url);
    o.ollama_api = api;
    vec![
        ("ollama", Box::new(OllamaBackend::new(&o).unwrap())),
        (
            "openai",
            Box::new(OpenAiBackend::new(&cfg(BackendKind::Openai, url)).unwrap()),
        ),
    ]
}

/// TTFT and ITL against injected delays (first token 50 ms, then every 20 ms).
///
/// The server schedules tokens on absolute deadlines with tokio's 1 ms timer, so a single
/// gap may be off by up to a millisecond and a busy 2-core box can delay any one wake-up
/// further; medians over many gaps and calls are what must sit within 1 ms.
#[tokio::test]
async fn ttft_and_itl_match_injected_delays() {
    let server = MockServer::start(MockConfig {
        tokens: 25,
        first_token_delay: Duration::from_millis(50),
        inter_token_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .unwrap();
    for (name, b) in backends(&server.url(), OllamaApi::Chat) {
        // Scheduling noise on a loaded machine only ever adds delay, so up to three rounds
        // are measured and the test passes on the first round whose medians are within
        // bounds; all rounds are printed either way.
        let mut rounds = Vec::new();
        for _ in 0..3 {
            let mut ttfts = Vec::new();
            let mut gaps = Vec::new();
            for _ in 0..5 {
                let g = b.generate(&req(ModelOptions::default())).await.unwrap();
                assert_eq!(g.timing.chunks, 25, "{name}");
                assert_eq!(g.timing.itl_ms.len(), 24, "{name}");
                let ttft = g.timing.ttft_ms.unwrap();
                // The request is written before the server starts its 50 ms: never less.
                assert!(ttft >= 50.0, "{name}: ttft {ttft} ms < injected 50 ms");
                // The last token is due 50 + 24 × 20 ms after the request was read.
                assert!(g.timing.e2e_ms >= 530.0, "{name}: e2e {}", g.timing.e2e_ms);
                ttfts.push(ttft);
                gaps.extend(g.timing.itl_ms);
            }
            let t = median(ttfts);
            let itl = median(gaps);
            eprintln!("{name}: median ttft {t:.3} ms, median itl {itl:.3} ms");
            rounds.push((t, itl));
            if (50.0..51.0).contains(&t) && (itl - 20.0).abs() < 1.0 {
                break;
            }
        }
        let (t, itl) = *rounds.last().unwrap();
        assert!(
            (50.0..51.0).contains(&t) && (itl - 20.0).abs() < 1.0,
            "{name}: no round had median ttft in [50, 51) ms and median itl within 1 ms of 20: {rounds:?}"
        );
    }
}

#[tokio::test]
async fn ollama_generate_fixture_parsed_exactly() {
    let server = MockServer::start(
        MockConfig::default()
            .replay_file(&fixture("ollama_generate.ndjson"))
            .unwrap(),
    )
    .unwrap();
    let b = OllamaBackend::new(&cfg(BackendKind::Ollama, &server.url())).unwrap();
    let g = b.generate(&req(ModelOptions::default())).await.unwrap();
    assert_eq!(
        g.text,
        "The sky is blue \u{2014} \"Rayleigh\" scattering.\n"
    );
    assert_eq!(g.timing.chunks, 6);
    assert_eq!(g.server.total_ms, Some(10706.818083));
    assert_eq!(g.server.load_ms, Some(6338.219291));
    assert_eq!(g.server.prompt_eval_ms, Some(130.079));
    assert_eq!(g.server.eval_ms, Some(4232.71));
    assert_eq!(g.server.prompt_tokens, Some(26));
    assert_eq!(g.server.output_tokens, Some(259));
}

#[tokio::test]
async fn ollama_chat_fixture_parsed_exactly() {
    let server = MockServer::start(
        MockConfig::default()
            .replay_file(&fixture("ollama_chat.ndjson"))
            .unwrap(),
    )
    .unwrap();
    let mut c = cfg(BackendKind::Ollama, &server.url());
    c.ollama_api = OllamaApi::Chat;
    let b = OllamaBackend::new(&c).unwrap();
    let g = b.generate(&req(ModelOptions::default())).await.unwrap();
    assert_eq!(g.text, "Hello! How can I help?");
    assert_eq!(g.server.total_ms, Some(4883.583458));
    assert_eq!(g.server.load_ms, Some(1.334875));
    assert_eq!(g.server.prompt_eval_ms, Some(342.546));
    assert_eq!(g.server.eval_ms, Some(4535.599));
    assert_eq!(g.server.output_tokens, Some(282));
    assert_eq!(server.requests()[0].path, "/api/chat");
}

#[tokio::test]
async fn llamacpp_fixture_parsed_exactly() {
    let server = MockServer::start(
        MockConfig::default()
            .replay_file(&fixture("llamacpp_chat.sse"))
            .unwrap(),
    )
    .unwrap();
    let b = OpenAiBackend::new(&cfg(BackendKind::Openai, &server.url())).unwrap();
    let g = b.generate(&req(ModelOptions::default())).await.unwrap();
    assert_eq!(g.text, "Throughput rose 12%\n");
    assert_eq!(g.timing.chunks, 4, "the role-only chunk is not a token");
    assert_eq!(g.server.prompt_eval_ms, Some(702.113));
    assert_eq!(g.server.eval_ms, Some(101.871));
    assert_eq!(g.server.prompt_tokens, Some(288));
    assert_eq!(g.server.output_tokens, Some(4));
    assert_eq!(g.server.load_ms, None);
    assert_eq!(g.server.total_ms, None);
}

#[tokio::test]
async fn generated_server_durations_round_trip() {
    let mc = MockConfig {
        tokens: 5,
        ..Default::default()
    };
    let d = mc.durations.clone();
    let server = MockServer::start(mc).unwrap();
    for (name, b) in backends(&server.url(), OllamaApi::Generate) {
        let g = b.generate(&req(ModelOptions::default())).await.unwrap();
        assert_eq!(g.text, "tok ".repeat(5), "{name}");
        assert_eq!(
            g.server.prompt_eval_ms,
            Some(d.prompt_eval_ns as f64 / 1e6),
            "{name}"
        );
        assert_eq!(g.server.eval_ms, Some(d.eval_ns as f64 / 1e6), "{name}");
        assert_eq!(g.server.prompt_tokens, Some(d.prompt_eval_count), "{name}");
        assert_eq!(g.server.output_tokens, Some(5), "{name}");
        if name == "ollama" {
            assert_eq!(g.server.total_ms, Some(d.total_ns as f64 / 1e6));
            assert_eq!(g.server.load_ms, Some(d.load_ns as f64 / 1e6));
        }
    }
}

/// The error kind each fault must produce.
fn expected_kind(f: &Fault) -> Option<&'static str> {
    Some(match f {
        Fault::None => return None,
        Fault::Refuse | Fault::ResetAfter(_) => "reset",
        Fault::MalformedAfter(_) => "malformed",
        Fault::TruncateAfter(_) => "truncated",
        Fault::Stall => "timeout_first_token",
        Fault::StallAfter(_) => "timeout_total",
        Fault::Status(429) => "http_429",
        Fault::Status(s) if *s >= 500 => "http_5xx",
        Fault::Status(_) => "http_4xx",
        Fault::ModelNotFound => "model_not_found",
        Fault::UnauthorizedEcho => "http_4xx",
    })
}

fn fast_timeouts(c: &mut BackendConfig) {
    c.timeouts = Timeouts {
        connect_s: 1.0,
        first_token_s: 0.3,
        total_s: 0.6,
    };
}

#[tokio::test]
async fn every_fault_maps_to_its_error_kind() {
    let faults = vec![
        Fault::Refuse,
        Fault::ResetAfter(3),
        Fault::MalformedAfter(2),
        Fault::TruncateAfter(3),
        Fault::Stall,
        Fault::StallAfter(2),
        Fault::Status(500),
        Fault::Status(429),
        Fault::Status(400),
        Fault::ModelNotFound,
        Fault::None,
    ];
    for kind in [BackendKind::Ollama, BackendKind::Openai] {
        let server = MockServer::start(MockConfig {
            faults: FaultPlan::Sequence(faults.clone()),
            ..Default::default()
        })
        .unwrap();
        let mut c = cfg(kind, &server.url());
        fast_timeouts(&mut c);
        let b = backend::build(&c).unwrap();
        for f in &faults {
            let out = b.generate(&req(ModelOptions::default())).await;
            match (expected_kind(f), out) {
                (None, Ok(g)) => assert_eq!(g.timing.chunks, 8),
                (Some(k), Err(e)) => {
                    assert_eq!(e.kind(), k, "{kind:?} {f:?}: {e}");
                    let retry = !matches!(f, Fault::ModelNotFound | Fault::Status(400));
                    assert_eq!(e.retryable(), retry, "{kind:?} {f:?}");
                    if let Fault::Status(500) = f {
                        assert!(e.to_string().contains("llama runner process"), "{e}");
                    }
                    if let (Fault::ModelNotFound, BackendKind::Ollama) = (f, kind) {
                        assert!(e.to_string().contains("ollama pull gemma3:latest"), "{e}");
                    }
                }
                (want, got) => panic!("{kind:?} {f:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}

#[tokio::test]
async fn refused_port_is_connection_refused() {
    let url = refused_url().unwrap();
    for (name, b) in backends(&url, OllamaApi::Generate) {
        let e = b.generate(&req(ModelOptions::default())).await.unwrap_err();
        assert_eq!(e.kind(), "connection_refused", "{name}: {e}");
        assert!(e.retryable());
    }
}

/// A seeded fault schedule (as the hardening sweep will use): every outcome is the one the
/// schedule says, call after call, whatever the mix.
#[tokio::test]
async fn seeded_fault_schedule_outcomes_match() {
    let plan = FaultPlan::Seeded {
        seed: 2026,
        rate: 0.5,
        faults: vec![
            Fault::Refuse,
            Fault::ResetAfter(1),
            Fault::MalformedAfter(1),
            Fault::TruncateAfter(2),
            Fault::Status(503),
            Fault::Status(429),
        ],
    };
    let server = MockServer::start(MockConfig {
        tokens: 4,
        faults: plan.clone(),
        ..Default::default()
    })
    .unwrap();
    let b = OllamaBackend::new(&cfg(BackendKind::Ollama, &server.url())).unwrap();
    let mut failures = 0;
    for i in 0..24 {
        let out = b.generate(&req(ModelOptions::default())).await;
        let f = plan.fault_for(i);
        match (expected_kind(&f), out) {
            (None, Ok(_)) => {}
            (Some(k), Err(e)) => {
                failures += 1;
                assert_eq!(e.kind(), k, "call {i} {f:?}: {e}");
            }
            (want, got) => panic!("call {i} {f:?}: wanted {want:?}, got {got:?}"),
        }
    }
    assert!(failures > 0 && failures < 24);
}

#[tokio::test]
async fn unset_options_are_absent_and_set_ones_exact() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    let url = server.url();
    let set = ModelOptions {
        num_gpu: Some(80),
        num_ctx: Some(512),
        temperature: Some(0.8),
        top_p: Some(0.9),
        top_k: Some(40),
        repeat_penalty: Some(1.1),
        seed: Some(42),
        num_predict: Some(128),
        keep_alive: Some("5m".into()),
    };
    let mut oc = cfg(BackendKind::Ollama, &url);
    let ollama = OllamaBackend::new(&oc).unwrap();
    ollama
        .generate(&req(ModelOptions::default()))
        .await
        .unwrap();
    ollama.generate(&req(set.clone())).await.unwrap();
    oc.ollama_api = OllamaApi::Chat;
    let mut with_system = req(ModelOptions::default());
    with_system.system = Some("You are InsightAgent.".into());
    OllamaBackend::new(&oc)
        .unwrap()
        .generate(&with_system)
        .await
        .unwrap();

    let mut ac = cfg(BackendKind::Openai, &url);
    ac.extra.insert("min_p".into(), serde_json::json!(0.05));
    let openai = OpenAiBackend::new(&ac).unwrap();
    openai
        .generate(&req(ModelOptions::default()))
        .await
        .unwrap();
    openai.generate(&req(set)).await.unwrap();

    let r = server.requests();
    assert_eq!(r.len(), 5);
    // Ollama, nothing set: no options object, no keep_alive.
    let j = r[0].json.as_ref().unwrap();
    assert_eq!(r[0].path, "/api/generate");
    assert_eq!(j["stream"], true);
    assert!(
        j.get("options").is_none() && j.get("keep_alive").is_none(),
        "{j}"
    );
    assert!(j.get("system").is_none());
    // Ollama, everything set: exact decimal text on the wire, keep_alive top level.
    let body = String::from_utf8(r[1].body.clone()).unwrap();
    for frag in [
        r#""temperature":0.8"#,
        r#""top_p":0.9"#,
        r#""repeat_penalty":1.1"#,
        r#""num_gpu":80"#,
        r#""num_ctx":512"#,
        r#""top_k":40"#,
        r#""seed":42"#,
        r#""num_predict":128"#,
        r#""keep_alive":"5m""#,
    ] {
        assert!(body.contains(frag), "{frag} not in {body}");
    }
    let j = r[1].json.as_ref().unwrap();
    assert!(j["options"].get("keep_alive").is_none());
    // Chat with a system prompt.
    let j = r[2].json.as_ref().unwrap();
    assert_eq!(r[2].path, "/api/chat");
    assert_eq!(j["messages"][0]["role"], "system");
    assert_eq!(j["messages"][0]["content"], "You are InsightAgent.");
    assert_eq!(j["messages"][1]["role"], "user");
    // OpenAI, nothing set: only the protocol fields, extra passed through.
    let j = r[3].json.as_ref().unwrap();
    assert_eq!(r[3].path, "/v1/chat/completions");
    for k in [
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "top_k",
        "repeat_penalty",
    ] {
        assert!(j.get(k).is_none(), "{k} sent unset: {j}");
    }
    assert_eq!(j["stream_options"]["include_usage"], true);
    assert_eq!(j["cache_prompt"], false);
    assert_eq!(j["min_p"], 0.05);
    assert!(r[3].header("authorization").is_none());
    // OpenAI, set: mapped names, exact values, no Ollama-only fields.
    let body = String::from_utf8(r[4].body.clone()).unwrap();
    for frag in [
        r#""temperature":0.8"#,
        r#""top_p":0.9"#,
        r#""max_tokens":128"#,
        r#""seed":42"#,
        r#""top_k":40"#,
        r#""repeat_penalty":1.1"#,
    ] {
        assert!(body.contains(frag), "{frag} not in {body}");
    }
    let j = r[4].json.as_ref().unwrap();
    assert!(j.get("keep_alive").is_none() && j.get("num_ctx").is_none());
}

#[tokio::test]
async fn api_key_is_sent_as_bearer_and_never_printed() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    let var = "SWEEP_TEST_BACKENDS_API_KEY";
    let secret = "sk-test-5f1e9c0d7a";
    std::env::set_var(var, secret);
    let mut c = cfg(BackendKind::Openai, &server.url());
    c.api_key_env = Some(var.into());
    let b = OpenAiBackend::new(&c).unwrap();
    b.generate(&req(ModelOptions::default())).await.unwrap();
    b.preflight("gemma3:latest").await.unwrap();
    for r in server.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {secret}").as_str())
        );
    }
    let shown = format!("{b:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("redacted"));

    c.api_key_env = Some("SWEEP_TEST_BACKENDS_UNSET_VAR".into());
    let e = OpenAiBackend::new(&c).unwrap_err();
    assert_eq!(e.kind(), "invalid_request");
}

#[tokio::test]
async fn preflight_reports_version_digest_and_missing_models() {
    let server = MockServer::start(MockConfig::default()).unwrap();
    let ollama = OllamaBackend::new(&cfg(BackendKind::Ollama, &server.url())).unwrap();
    let info = ollama.preflight("gemma3").await.unwrap();
    assert_eq!(info.kind, "ollama");
    assert_eq!(info.version.as_deref(), Some("0.6.5"));
    assert_eq!(
        info.model_digest.as_deref(),
        Some("a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a")
    );
    let e = ollama.preflight("llama3:8b").await.unwrap_err();
    assert!(matches!(e, BackendError::ModelNotFound { .. }), "{e}");
    assert!(e.to_string().contains("ollama pull llama3:8b"), "{e}");
    assert!(!e.retryable());

    let openai = OpenAiBackend::new(&cfg(BackendKind::Openai, &server.url())).unwrap();
    openai.preflight("gemma3:latest").await.unwrap();
    let e = openai.preflight("other").await.unwrap_err();
    assert_eq!(e.kind(), "model_not_found");
    assert!(
        e.to_string().contains("gemma3:latest"),
        "lists the ids: {e}"
    );

    // A server without a model list: the check is skipped.
    let bare = MockServer::start(MockConfig {
        openai_models_endpoint: false,
        ..Default::default()
    })
    .unwrap();
    let openai = OpenAiBackend::new(&cfg(BackendKind::Openai, &bare.url())).unwrap();
    openai.preflight("anything").await.unwrap();

    // Generation of a model the server lacks: a 404 mapped to ModelNotFound.
    let mut r = req(ModelOptions::default());
    r.model = "missing:1b".into();
    for (name, b) in backends(&server.url(), OllamaApi::Generate) {
        let e = b.generate(&r).await.unwrap_err();
        assert_eq!(e.kind(), "model_not_found", "{name}: {e}");
    }
}

#[tokio::test]
async fn request_endpoint_overrides_the_first_url() {
    let a = MockServer::start(MockConfig::default()).unwrap();
    let b = MockServer::start(MockConfig::default()).unwrap();
    let mut c = cfg(BackendKind::Ollama, &a.url());
    c.urls.push(b.url());
    let backend = backend::build(&c).unwrap();
    backend
        .generate(&req(ModelOptions::default()))
        .await
        .unwrap();
    let mut r = req(ModelOptions::default());
    r.endpoint = Some(b.url());
    backend.generate(&r).await.unwrap();
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 1);
    // Preflight visits every endpoint.
    let info = backend.preflight("gemma3:latest").await.unwrap();
    assert_eq!(info.endpoints, vec![a.url(), b.url()]);
    assert!(b.requests().iter().any(|r| r.path == "/api/tags"));

    // The factory builds the embedded engine too (when compiled in); a missing model file
    // is a typed error that says how to fetch it, never a panic.
    let mut e = cfg(BackendKind::Embedded, "");
    e.urls.clear();
    e.model_path = Some("no/such/model.gguf".into());
    let err = backend::build(&e).err().expect("missing model must fail");
    if cfg!(feature = "embedded") {
        assert!(err.to_string().contains("fetch-model.sh"), "{err}");
    } else {
        assert_eq!(err.kind(), "invalid_request");
    }
}

/// Requests per second that one current-thread runtime drives against an instant server.
/// Ignored by default (it is a measurement, not a check); run with
/// `cargo test --test backends -- --ignored --nocapture drive_rate` (BENCHMARKS.md).
#[test]
#[ignore]
fn drive_rate() {
    let server = MockServer::start(MockConfig {
        tokens: 16,
        ..Default::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for kind in [BackendKind::Ollama, BackendKind::Openai] {
        let b = backend::build(&cfg(kind, &server.url())).unwrap();
        let r = req(ModelOptions::default());
        let (n, secs) = rt.block_on(async {
            b.generate(&r).await.unwrap();
            let t = std::time::Instant::now();
            let mut n = 0u64;
            while t.elapsed() < Duration::from_secs(3) {
                b.generate(&r).await.unwrap();
                n += 1;
            }
            (n, t.elapsed().as_secs_f64())
        });
        println!(
            "{kind:?}: {n} requests (16 tokens each) in {secs:.2} s = {:.0} req/s",
            n as f64 / secs
        );
    }
}

/// A listener whose accept queue is full drops new SYNs, so connecting hangs until the
/// connect timeout fires.
#[tokio::test]
async fn full_accept_queue_is_a_connect_timeout() {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = sock.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the queue (never accepted).
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let mut c = cfg(BackendKind::Ollama, &format!("http://{addr}"));
    c.timeouts.connect_s = 0.3;
    let b = OllamaBackend::new(&c).unwrap();
    let t = std::time::Instant::now();
    let e = b.generate(&req(ModelOptions::default())).await.unwrap_err();
    assert_eq!(e.kind(), "timeout_connect", "{e}");
    assert!(e.retryable());
    assert!(t.elapsed() >= Duration::from_millis(300));
    drop(listener);
}
