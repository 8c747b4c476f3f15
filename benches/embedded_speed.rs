//! Prompt and decode speed of the embedded engine, to compare with llama.cpp's `llama-bench`
//! on the same model and thread count (see BENCHMARKS.md, "Embedded engine").
//!
//! `cargo bench --bench embedded_speed` (release). Environment: `SWEEP_BENCH_THREADS` (2),
//! `SWEEP_BENCH_RUNS` (5 measured runs after one cold warm-up), `SWEEP_BENCH_PREDICT` (128).
//!
//! Figures come from llama.cpp's perf counters as reported in `ServerMetrics`: prompt tok/s =
//! prompt tokens / prompt_eval_ms; decode tok/s = decode calls / eval_ms, where the decode calls
//! are output tokens − 1 when generation stopped at the token limit (the last sampled token is
//! not decoded) and output tokens when it stopped at end-of-generation.

use std::path::PathBuf;
use sweep::backend::embedded::EmbeddedBackend;
use sweep::backend::{Backend, GenRequest};
use sweep::spec::{
    BackendConfig, BackendKind, ModelOptions, OllamaApi, RetryPolicy, Timeouts, DEFAULT_MODEL_PATH,
};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A prompt of about 288 tokens once the chat template is applied; `run` makes it unique.
fn prompt(run: u32) -> String {
    let mut p = format!(
        "Run {run}. Summarise these benchmark notes in one paragraph for an engineering lead.\n"
    );
    for i in 0..5 {
        p.push_str(&format!(
            "Note {i}: with num_ctx {} and {} GPU layers the agent reached {} tokens per second, \
             a first token after {} ms and an end-to-end time of {} s.\n",
            256 << (i % 4),
            40 + 10 * i,
            30 + i,
            600 + 13 * i,
            20 + i
        ));
    }
    p
}

struct Stats {
    mean: f64,
    sd: f64,
}

fn stats(v: &[f64]) -> Stats {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Stats {
        mean,
        sd: var.sqrt(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("embedded_speed bench: run with `cargo bench --bench embedded_speed`");
        return;
    }
    let threads = env_u32("SWEEP_BENCH_THREADS", 2);
    let runs = env_u32("SWEEP_BENCH_RUNS", 5).max(1);
    let predict = env_u32("SWEEP_BENCH_PREDICT", 128).max(2);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL_PATH);
    let cfg = BackendConfig {
        kind: BackendKind::Embedded,
        urls: Vec::new(),
        model: "gemma3:270m".into(),
        model_path: Some(path),
        ollama_api: OllamaApi::Generate,
        timeouts: Timeouts {
            connect_s: 10.0,
            first_token_s: 300.0,
            total_s: 600.0,
        },
        api_key_env: None,
        retry: RetryPolicy::default(),
        threads: Some(threads),
        cache_prompt: false,
        extra: Default::default(),
        fresh_connections: false,
    };
    let backend = match EmbeddedBackend::new(&cfg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("embedded_speed: {e}");
            std::process::exit(1);
        }
    };
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    let mut ttft = Vec::new();
    let mut prompt_tokens = 0;
    println!("embedded_speed: threads={threads} runs={runs} num_predict={predict} (+1 warm-up)");
    for run in 0..=runs {
        let req = GenRequest {
            model: "gemma3:270m".into(),
            system: None,
            prompt: prompt(run),
            options: ModelOptions {
                num_ctx: Some(512),
                num_predict: Some(predict),
                temperature: Some(0.8),
                seed: Some(run as u64),
                ..Default::default()
            },
            endpoint: None,
        };
        let g = match backend.generate(&req).await {
            Ok(g) => g,
            Err(e) => {
                eprintln!("embedded_speed: run {run}: {e}");
                std::process::exit(1);
            }
        };
        let s = &g.server;
        let (p_tok, out) = (s.prompt_tokens.unwrap_or(0), s.output_tokens.unwrap_or(0));
        let decodes = if out >= predict as u64 { out - 1 } else { out };
        let p_ms = s.prompt_eval_ms.unwrap_or(f64::NAN);
        let e_ms = s.eval_ms.unwrap_or(f64::NAN);
        let p_tps = p_tok as f64 / p_ms * 1000.0;
        let d_tps = decodes as f64 / e_ms * 1000.0;
        println!(
            "run {run}{}: prompt {p_tok} tok in {p_ms:.1} ms = {p_tps:.1} tok/s; \
             decode {decodes} tok in {e_ms:.1} ms = {d_tps:.2} tok/s; \
             load {:.1} ms, ttft {:.1} ms, e2e {:.1} ms",
            if run == 0 { " (warm-up)" } else { "" },
            s.load_ms.unwrap_or(0.0),
            g.timing.ttft_ms.unwrap_or(f64::NAN),
            g.timing.e2e_ms,
        );
        if run > 0 {
            pp.push(p_tps);
            tg.push(d_tps);
            ttft.push(g.timing.ttft_ms.unwrap_or(f64::NAN));
            prompt_tokens = p_tok;
        }
    }
    let (p, d, t) = (stats(&pp), stats(&tg), stats(&ttft));
    println!(
        "embedded pp{prompt_tokens}: {:.1} ± {:.1} tok/s | decode (tg{predict} after the prompt): \
         {:.2} ± {:.2} tok/s | ttft {:.1} ± {:.1} ms | n={runs}",
        p.mean, p.sd, d.mean, d.sd, t.mean, t.sd
    );
    println!(
        "compare: llama-bench -m {DEFAULT_MODEL_PATH} -p {prompt_tokens} -n {predict} \
         -d 0,{prompt_tokens} -t {threads} -r {runs}"
    );
}
