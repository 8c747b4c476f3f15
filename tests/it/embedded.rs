//! The embedded engine against the real Gemma 3 270M GGUF (fetched by scripts/fetch-model.sh).
#![cfg(feature = "embedded")]

use std::path::PathBuf;
use sweep::backend::embedded::EmbeddedBackend;
use sweep::backend::{Backend, GenRequest, Generation};
use sweep::spec::{
    BackendConfig, BackendKind, ModelOptions, OllamaApi, RetryPolicy, Timeouts, DEFAULT_MODEL_PATH,
};

fn config(model_path: PathBuf) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Embedded,
        urls: Vec::new(),
        model: "gemma3:270m".into(),
        model_path: Some(model_path),
        ollama_api: OllamaApi::Generate,
        timeouts: Timeouts {
            connect_s: 10.0,
            first_token_s: 120.0,
            total_s: 600.0,
        },
        api_key_env: None,
        retry: RetryPolicy::default(),
        threads: None,
        cache_prompt: false,
        extra: Default::default(),
        fresh_connections: false,
    }
}

/// The real model, or a failure that says how to get it (never a silent skip).
fn backend() -> EmbeddedBackend {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL_PATH);
    assert!(
        path.is_file(),
        "model file {} is missing: run scripts/fetch-model.sh first",
        path.display()
    );
    match EmbeddedBackend::new(&config(path)) {
        Ok(b) => b,
        Err(e) => panic!("cannot start the embedded engine: {e}"),
    }
}

fn request(prompt: &str, options: ModelOptions) -> GenRequest {
    GenRequest {
        model: "gemma3:270m".into(),
        system: Some("You are a concise performance analyst.".into()),
        prompt: prompt.into(),
        options,
        endpoint: None,
    }
}

fn opts(num_ctx: u32, num_predict: u32, seed: u64) -> ModelOptions {
    ModelOptions {
        num_ctx: Some(num_ctx),
        num_predict: Some(num_predict),
        seed: Some(seed),
        temperature: Some(0.8),
        top_k: Some(40),
        top_p: Some(0.9),
        repeat_penalty: Some(1.1),
        ..Default::default()
    }
}

/// Counts and timings that must hold for every successful call.
fn assert_consistent(g: &Generation, num_predict: u32) {
    let s = &g.server;
    let t = &g.timing;
    assert!(!g.text.is_empty(), "empty text");
    assert!(s.prompt_tokens.unwrap() > 0);
    let out = s.output_tokens.unwrap();
    assert!(out > 0 && out <= num_predict as u64, "output tokens {out}");
    assert!(s.prompt_eval_ms.unwrap() > 0.0);
    if out > 1 {
        assert!(s.eval_ms.unwrap() > 0.0, "eval_ms {:?}", s.eval_ms);
    }
    let ttft = t.ttft_ms.expect("a first token");
    assert!(
        ttft > 0.0 && ttft <= t.e2e_ms,
        "ttft {ttft} e2e {}",
        t.e2e_ms
    );
    assert!(t.chunks >= 1 && t.chunks <= out + 1, "chunks {}", t.chunks);
    assert_eq!(t.itl_ms.len() as u64, t.chunks - 1);
    assert!(t.itl_ms.iter().all(|&d| d >= 0.0));
    // The engine's own figures fit inside the client's clock.
    let total = s.total_ms.unwrap();
    assert!(total <= t.e2e_ms + 1.0, "total {total} e2e {}", t.e2e_ms);
    assert!(s.prompt_eval_ms.unwrap() + s.eval_ms.unwrap() <= total);
    // As in Ollama's total_duration, the total holds the load (a cold call's model load
    // and context creation): it once left the model load out, so a cold call's total was
    // below its own load time.
    assert!(
        s.load_ms.unwrap() + s.prompt_eval_ms.unwrap() <= total,
        "load {:?} + prompt eval {:?} > total {total}",
        s.load_ms,
        s.prompt_eval_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_model_generation_reload_and_limits() {
    let b = backend();
    let prompt = "List three ways to speed up token generation on a CPU.";

    // First call loads the model: cold.
    let first = b
        .generate(&request(prompt, opts(512, 24, 7)))
        .await
        .unwrap();
    eprintln!("first call: {:?}\n{:?}", first.text, first.server);
    assert_consistent(&first, 24);
    assert!(first.server.load_ms.unwrap() > 0.0, "first call is cold");

    // Same options, same seed: warm and identical.
    let again = b
        .generate(&request(prompt, opts(512, 24, 7)))
        .await
        .unwrap();
    assert_consistent(&again, 24);
    assert_eq!(again.server.load_ms, Some(0.0), "same reload key is warm");
    assert_eq!(again.text, first.text, "same seed, same text");
    assert_eq!(again.server.prompt_tokens, first.server.prompt_tokens);

    // A num_ctx change makes the next call cold, then warm again.
    let resized = b
        .generate(&request(prompt, opts(1024, 24, 7)))
        .await
        .unwrap();
    eprintln!("num_ctx change: {:?}", resized.server);
    assert_consistent(&resized, 24);
    assert!(
        resized.server.load_ms.unwrap() > 0.0,
        "num_ctx change is cold"
    );
    let warm = b
        .generate(&request(prompt, opts(1024, 8, 7)))
        .await
        .unwrap();
    assert_consistent(&warm, 8);
    assert_eq!(warm.server.load_ms, Some(0.0));

    // Greedy (temperature 0) is deterministic whatever the seed.
    let greedy = |seed| ModelOptions {
        temperature: Some(0.0),
        ..opts(1024, 16, seed)
    };
    let g1 = b.generate(&request(prompt, greedy(1))).await.unwrap();
    let g2 = b.generate(&request(prompt, greedy(2))).await.unwrap();
    assert_consistent(&g1, 16);
    assert_eq!(g1.text, g2.text);

    // A prompt longer than the context is a typed error with the numbers, not an abort.
    let long = "tokens per second ".repeat(100);
    let err = b
        .generate(&request(&long, opts(64, 8, 7)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_request", "{err}");
    assert!(!err.retryable());
    let msg = err.to_string();
    assert!(msg.contains("num_ctx is 64"), "{msg}");

    // The engine still works after the error.
    let after = b.generate(&request(prompt, opts(512, 8, 3))).await.unwrap();
    assert_consistent(&after, 8);
}

/// Calls queue for the one engine thread: an abandoned call frees it, calls made at once are
/// served one after the other on the same (warm) context, and a reused context gives the
/// text a fresh one gives (its KV cache really is cleared, even after an abandoned call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queue_for_one_engine_and_reuse_its_context() {
    let prompt = "Name two causes of slow prompt evaluation.";
    let fresh = |seed| async move {
        backend()
            .generate(&request(prompt, opts(512, 12, seed)))
            .await
            .unwrap()
    };
    let (fresh1, fresh2) = (fresh(11).await, fresh(12).await);
    assert!(
        fresh1.server.load_ms.unwrap() > 0.0,
        "a new backend is cold"
    );

    let b = backend();
    b.generate(&request(prompt, opts(512, 4, 1))).await.unwrap();
    // Abandoned mid-generation: the future is dropped, the engine stops the call.
    let abandoned = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        b.generate(&request(prompt, opts(512, 200, 1))),
    )
    .await;
    assert!(abandoned.is_err(), "the call should not finish in 20 ms");

    let (rx, ry) = (
        request(prompt, opts(512, 12, 11)),
        request(prompt, opts(512, 12, 12)),
    );
    let (x, y) = tokio::join!(b.generate(&rx), b.generate(&ry));
    let (x, y) = (x.unwrap(), y.unwrap());
    for g in [&x, &y] {
        assert_consistent(g, 12);
        assert_eq!(
            g.server.load_ms,
            Some(0.0),
            "same num_ctx: warm, same context"
        );
    }
    assert_eq!(x.text, fresh1.text, "reused context, same seed: same text");
    assert_eq!(y.text, fresh2.text, "reused context, same seed: same text");
    // The call served second waited for the whole first call (its clock includes the queue).
    let (first, second) = if x.timing.ttft_ms < y.timing.ttft_ms {
        (&x, &y)
    } else {
        (&y, &x)
    };
    let waited = second.timing.ttft_ms.unwrap();
    let ahead = first.server.total_ms.unwrap();
    assert!(
        waited >= ahead,
        "queued ttft {waited} < the first call's {ahead}"
    );
}

#[tokio::test]
async fn preflight_reports_the_file_sha256() {
    let b = backend();
    let info = b.preflight("gemma3:270m").await.unwrap();
    assert_eq!(info.kind, "embedded");
    assert_eq!(info.version.as_deref(), Some("0.1.160"));
    // The checksum fetch-model.sh verifies is the digest we must report.
    let script = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-model.sh"),
    )
    .unwrap();
    let expected = script
        .lines()
        .find_map(|l| l.strip_prefix("sha=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("sha= line in fetch-model.sh");
    assert_eq!(info.model_digest.as_deref(), Some(expected));
    // Cached: the second preflight gives the same answer.
    assert_eq!(b.preflight("gemma3:270m").await.unwrap(), info);
}

#[test]
fn missing_model_names_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let err = EmbeddedBackend::new(&config(dir.path().join("absent.gguf"))).unwrap_err();
    assert_eq!(err.kind(), "model_not_found");
    assert!(err.to_string().contains("scripts/fetch-model.sh"), "{err}");
}

/// `sweep run` on the real model end to end: one single agent, one repetition. The agent's
/// report has every section of the seeds' format, and its metrics block is what the stored
/// records say.
#[test]
fn single_agent_run_on_the_real_model_writes_a_report_matching_the_records() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join(DEFAULT_MODEL_PATH);
    assert!(
        model.is_file(),
        "model file {} is missing: run scripts/fetch-model.sh first",
        model.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("e2e.toml");
    std::fs::write(
        &spec,
        format!(
            "[experiment]\nname = \"e2e\"\nrepetitions = 1\nwarmup = 0\n\
             [backend]\nkind = \"embedded\"\nmodel_path = \"{}\"\ntimeout_s = 300\n\
             [corpus]\npath = \"{}\"\n[run]\nresults_dir = \"{}\"\n\
             [[arm]]\nname = \"chimera\"\noptions = {{ num_ctx = 2048, temperature = 0.6, max_tokens = 24, seed = 7 }}\n",
            model.display(),
            root.join("experiments/corpus").display(),
            tmp.path().join("results").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(["run", "--progress", "plain"])
        .arg(&spec)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let exp = tmp.path().join("results/e2e");
    let run = std::fs::read_dir(&exp)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let all = sweep::store::read_records(&run.join("records.jsonl"))
        .unwrap()
        .records;
    // The runner's reload probe takes the model load (stored as warm-up, reason `reload`),
    // so the measured calls that follow are warm.
    let probes: Vec<_> = all
        .iter()
        .filter(|r| r.phase == sweep::record::Phase::Reload)
        .collect();
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert!(
        probes[0].warmup && probes[0].cold && probes[0].ok,
        "{probes:?}"
    );
    assert_eq!(
        probes[0].cold_reason,
        Some(sweep::record::ColdReason::Reload)
    );
    let recs = all
        .into_iter()
        .filter(|r| r.phase != sweep::record::Phase::Reload)
        .collect::<Vec<_>>();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r.ok), "{recs:?}");
    for r in &recs {
        assert!(r.prompt_tokens.unwrap() > 0);
        let n = r.output_tokens.unwrap();
        assert!(n > 0 && n <= 24, "{n}");
        assert!(r.ttft_ms.unwrap() <= r.e2e_ms.unwrap());
        assert!(r.eval_ms.unwrap() > 0.0);
        // The client rate is the tokens after the first over (e2e − TTFT), an interval that
        // holds every gap between chunks: at most (n − 1) / Σ ITL, and close to it.
        let gaps_s: f64 = r.itl_ms.iter().sum::<f64>() / 1000.0;
        if n >= 2 && gaps_s > 0.0 {
            let bound = (n - 1) as f64 / gaps_s;
            let got = r.e2e_tps.unwrap();
            assert!(
                got <= bound * (1.0 + 1e-9) && got >= 0.5 * bound,
                "e2e_tps {got} vs (n − 1)/Σ ITL {bound}"
            );
        }
    }
    assert!(
        recs.iter().all(|r| !r.cold),
        "the probe took the load: {recs:?}"
    );
    let manifest = sweep::store::Manifest::read(&run).unwrap();
    assert_eq!(manifest.backend.kind, "embedded");
    assert!(manifest.backend.model_digest.is_some());

    let cell = &recs[0].cell_id;
    let report = run
        .join("reports")
        .join(cell)
        .join("run_1/chimera_agent_report.md");
    let md =
        std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{}: {e}", report.display()));
    for section in [
        "**Configuration:** num_gpu=default, num_ctx=2048, temp=0.6",
        "## Workflow Summary",
        "Total files analyzed: 101",
        "## Metrics",
        "## Key Findings",
        "## Recommendations",
        "## Persona Prompt",
    ] {
        assert!(md.contains(section), "{section:?} missing from\n{md}");
    }
    let tokens: u64 = recs.iter().map(|r| r.output_tokens.unwrap()).sum();
    assert!(
        md.contains(&format!("- Tokens Generated: {tokens}\n")),
        "tokens {tokens} not in\n{md}"
    );
    let eval: f64 = recs.iter().map(|r| r.eval_ms.unwrap()).sum();
    assert!(
        md.contains(&format!("- Eval Duration: {eval:.2} ms\n")),
        "eval {eval:.2} not in\n{md}"
    );
    let prompt: f64 = recs.iter().map(|r| r.prompt_eval_ms.unwrap()).sum();
    assert!(
        md.contains(&format!("- Prompt Eval: {prompt:.2} ms\n")),
        "prompt eval {prompt:.2} not in\n{md}"
    );
}

/// The engine-level axes reach llama.cpp's context: a change of one is a new (cold) context,
/// and llama.cpp's own rule that a quantized V cache needs flash attention shows that both
/// settings really arrive (a setting that was dropped would make this call succeed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_level_options_reach_the_llama_cpp_context() {
    let b = backend();
    let prompt = "Name one way to speed up decoding.";
    let with = |fa: bool, kv: &str, ub: Option<u32>| ModelOptions {
        flash_attn: Some(fa),
        kv_cache_type: Some(kv.into()),
        ubatch_size: ub,
        temperature: Some(0.0),
        ..opts(512, 8, 1)
    };
    let f16 = b
        .generate(&request(prompt, with(true, "f16", None)))
        .await
        .unwrap();
    assert_consistent(&f16, 8);
    let again = b
        .generate(&request(prompt, with(true, "f16", None)))
        .await
        .unwrap();
    assert_eq!(
        again.server.load_ms,
        Some(0.0),
        "same engine settings are warm"
    );
    let q8 = b
        .generate(&request(prompt, with(true, "q8_0", None)))
        .await
        .unwrap();
    assert_consistent(&q8, 8);
    assert!(
        q8.server.load_ms.unwrap() > 0.0,
        "a KV cache type change is a new context"
    );
    let ub = b
        .generate(&request(prompt, with(true, "q8_0", Some(64))))
        .await
        .unwrap();
    assert!(
        ub.server.load_ms.unwrap() > 0.0,
        "a ubatch change is a new context"
    );
    let err = b
        .generate(&request(prompt, with(false, "q8_0", None)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("context creation"), "{err}");
    assert!(
        err.contains("flash_attn false") && err.contains("q8_0"),
        "{err}"
    );
}
