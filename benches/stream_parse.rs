//! Cost of the per-chunk path: NDJSON (Ollama) and SSE (OpenAI-compatible) parsing plus the
//! `ClientTimer` tick, fed one network piece per token as a real stream arrives; and the
//! rate at which one current-thread runtime drives whole requests against an instant
//! local server (`drive_local`: time per request, so req/s = 1 / time).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sweep::backend::{self, ClientTimer, GenRequest, OllamaStream, SseStream};
use sweep::spec::{BackendConfig, BackendKind, ModelOptions, OllamaApi, RetryPolicy, Timeouts};
use sweep_testkit::{MockConfig, MockServer};

const TOKENS: usize = 256;

fn ndjson_pieces() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..TOKENS)
        .map(|i| {
            format!(
                "{{\"model\":\"gemma3:latest\",\"created_at\":\"2025-03-12T09:14:02.551093477Z\",\"response\":\" word{i}\",\"done\":false}}\n"
            )
            .into_bytes()
        })
        .collect();
    v.push(
        b"{\"model\":\"gemma3:latest\",\"created_at\":\"2025-03-12T09:14:09.1Z\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"context\":[105,2364,107,3689,563,506,7217],\"total_duration\":10706818083,\"load_duration\":6338219291,\"prompt_eval_count\":26,\"prompt_eval_duration\":130079000,\"eval_count\":256,\"eval_duration\":4232710000}\n"
            .to_vec(),
    );
    v
}

fn sse_pieces() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (0..TOKENS)
        .map(|i| {
            format!(
                "data: {{\"choices\":[{{\"finish_reason\":null,\"index\":0,\"delta\":{{\"content\":\" word{i}\"}}}}],\"created\":1741770942,\"id\":\"chatcmpl-Xq3vM9b2kqJ7uYc1sPzT0aRn5WdEfGh8\",\"model\":\"gemma-3-270m\",\"system_fingerprint\":\"b5200-ae8de6d5\",\"object\":\"chat.completion.chunk\"}}\n\n"
            )
            .into_bytes()
        })
        .collect();
    v.push(b"data: {\"choices\":[{\"finish_reason\":\"stop\",\"index\":0,\"delta\":{}}],\"object\":\"chat.completion.chunk\",\"timings\":{\"prompt_n\":288,\"prompt_ms\":702.113,\"predicted_n\":256,\"predicted_ms\":6501.9}}\n\n".to_vec());
    v.push(b"data: {\"choices\":[],\"usage\":{\"completion_tokens\":256,\"prompt_tokens\":288,\"total_tokens\":544}}\n\n".to_vec());
    v.push(b"data: [DONE]\n\n".to_vec());
    v
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_parse");
    g.throughput(Throughput::Elements(TOKENS as u64));
    let nd = ndjson_pieces();
    g.bench_function("ndjson_256_tokens", |b| {
        b.iter(|| {
            let mut s = OllamaStream::new(ClientTimer::start());
            for p in &nd {
                if s.feed(black_box(p)).expect("valid stream") {
                    break;
                }
            }
            black_box(s.finish().expect("complete"))
        })
    });
    let sse = sse_pieces();
    g.bench_function("sse_256_tokens", |b| {
        b.iter(|| {
            let mut s = SseStream::new(ClientTimer::start());
            for p in &sse {
                if s.feed(black_box(p)).expect("valid stream") {
                    break;
                }
            }
            black_box(s.finish().expect("complete"))
        })
    });
    g.finish();
}

fn cfg(kind: BackendKind, url: String) -> BackendConfig {
    BackendConfig {
        kind,
        urls: vec![url],
        model: "gemma3:latest".into(),
        model_path: None,
        ollama_api: OllamaApi::Generate,
        timeouts: Timeouts {
            connect_s: 5.0,
            first_token_s: 30.0,
            total_s: 60.0,
        },
        api_key_env: None,
        retry: RetryPolicy::default(),
        threads: None,
        cache_prompt: false,
        extra: Default::default(),
        fresh_connections: false,
    }
}

fn drive(c: &mut Criterion) {
    let server = MockServer::start(MockConfig {
        tokens: 16,
        // No model-load sleeps: this measures the client's request rate, not model loads.
        load: sweep_testkit::LoadTimes::none(),
        ..Default::default()
    })
    .expect("mock server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let req = GenRequest {
        model: "gemma3:latest".into(),
        system: None,
        prompt: "Summarise the benchmark data.".into(),
        options: ModelOptions::default(),
        endpoint: None,
    };
    let mut g = c.benchmark_group("drive_local");
    g.throughput(Throughput::Elements(1));
    for (name, kind) in [
        ("ollama_16_tokens", BackendKind::Ollama),
        ("openai_16_tokens", BackendKind::Openai),
    ] {
        let b = backend::build(&cfg(kind, server.url())).expect("backend");
        g.bench_function(name, |bench| {
            bench.iter(|| rt.block_on(b.generate(&req)).expect("generation"))
        });
    }
    g.finish();
}

criterion_group!(benches, parse, drive);
criterion_main!(benches);
