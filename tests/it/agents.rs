//! Corpus ingest, the data summary on the shipped corpus, the report file, and the agent
//! workflow. The workflow runs against `StubLlm`, an in-file `Backend` that sleeps and
//! returns text: a protocol-level stand-in for the LLM (the agent code is under test; the
//! end-to-end tests on real servers live with the backends).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sweep::agent::{
    self, report_md, AgentContext, Analysis, ReportInput, RunMetrics, COLLECTOR_PERSONA,
    INSIGHT_PERSONA,
};
use sweep::backend::{
    Backend, BackendError, BackendInfo, BoxFuture, ClientTimer, GenRequest, Generation,
    ServerMetrics,
};
use sweep::corpus::{self, Corpus, CorpusError, FileKind, Parsed};
use sweep::plan::{member_titles, Member};
use sweep::record::Stage;
use sweep::spec::{ModelOptions, Persona, PersonaMode, PromptVersion, RetryPolicy, Slot};

const MAX: u64 = 10 * 1024 * 1024;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// The shipped corpus copied to a temp dir with its recorded mtimes applied.
fn shipped_corpus() -> (tempfile::TempDir, Corpus) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corpus");
    copy_dir(&repo().join("experiments/corpus"), &root);
    let mtimes = corpus::read_mtimes(&repo().join("experiments/corpus.mtimes.tsv")).unwrap();
    assert_eq!(mtimes.len(), 101);
    corpus::apply_mtimes(&root, &mtimes).unwrap();
    let c = Corpus::load_path(&root, MAX).unwrap();
    (tmp, c)
}

#[test]
fn data_summary_of_shipped_corpus_is_the_seeds_block() {
    let (_tmp, c) = shipped_corpus();
    let expected =
        std::fs::read_to_string(repo().join("tests/fixtures/golden/seed_data_summary.txt"))
            .unwrap();
    assert_eq!(c.data_summary(), expected);
    assert_eq!(c.len(), 101);
    assert_eq!(c.of_kind(FileKind::Csv).count(), 28);
    assert_eq!(c.of_kind(FileKind::Json).count(), 44);
    assert_eq!(c.of_kind(FileKind::Markdown).count(), 29);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Parsed: CSV headers, JSON metric fields (flattened), Markdown headings.
    let conv = c
        .files
        .iter()
        .find(|f| f.path == "reports/compilation/conv_cuda_bench_20251002-172037.json")
        .unwrap();
    match &conv.parsed {
        Parsed::Json { metrics } => {
            assert!(metrics.contains_key("latency_s.p95"), "{metrics:?}");
            assert!(metrics.contains_key("total_latency"));
            assert!(!metrics.contains_key("compute_time"));
        }
        p => panic!("{p:?}"),
    }
    let csv = &c.files.iter().find(|f| f.kind == FileKind::Csv).unwrap();
    assert!(
        matches!(&csv.parsed, Parsed::Csv { headers, rows } if headers.contains(&"tokens_per_second".to_string()) && *rows > 0)
    );
    // The hash covers contents, not mtimes: the checkout and the copy agree.
    let orig = Corpus::load_path(&repo().join("experiments/corpus"), MAX).unwrap();
    assert_eq!(orig.hash, c.hash);
    // A corpus edit without regenerating this golden (and the manifests that cite it) fails.
    let golden_hash =
        std::fs::read_to_string(repo().join("tests/fixtures/golden/corpus_sha256.txt")).unwrap();
    assert_eq!(c.hash, golden_hash.trim());
    eprintln!(
        "ingest of the shipped corpus: {} files, {} bytes, {:.2} ms",
        c.len(),
        c.total_bytes,
        c.ingest_ms
    );
}

#[test]
fn corpus_errors_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    assert!(matches!(
        Corpus::load_path(&missing, MAX),
        Err(CorpusError::Missing { .. })
    ));
    let file = tmp.path().join("f.csv");
    std::fs::write(&file, "a,b\n").unwrap();
    assert!(matches!(
        Corpus::load_path(&file, MAX),
        Err(CorpusError::NotADirectory { .. })
    ));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    std::fs::write(empty.join("sub/notes.txt"), "not a corpus file").unwrap();
    let err = Corpus::load_path(&empty, MAX).unwrap_err();
    assert!(matches!(err, CorpusError::Empty { .. }));
    assert!(err.to_string().contains("refusing a silent empty run"));
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_root_and_oversize_files_are_skipped_with_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.csv"), "x,y\n1,2\n").unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/a.csv"), "tok_s,ttft\n1,2\n").unwrap();
    std::fs::write(
        root.join("big.json"),
        format!("{{\"x\":\"{}\"}}", "a".repeat(200)),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("secret.csv"), root.join("escape.csv")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape_dir")).unwrap();
    std::os::unix::fs::symlink(root.join("d/a.csv"), root.join("inside.csv")).unwrap();

    let c = Corpus::load_path(&root, 100).unwrap();
    let paths: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, vec!["d/a.csv", "inside.csv"]);
    let w = c.warnings.join("\n");
    assert!(
        w.contains("escape.csv: skipped, symlink points outside"),
        "{w}"
    );
    assert!(w.contains("escape_dir: skipped"), "{w}");
    assert!(w.contains("big.json: skipped"), "{w}");
    assert!(c
        .data_summary()
        .starts_with("Total files analyzed: 2\n\nCSV Files (2)\n"));
}

/// An agent titled as it would be alone (a single agent, or a pair agent among tuned ones).
fn member(slot: Slot, persona: Persona, options: ModelOptions) -> Member {
    let mut m = Member {
        slot,
        persona,
        persona_mode: PersonaMode::System,
        prompt_version: PromptVersion::Sweep1,
        options,
        model: "gemma3:latest".into(),
        endpoint: None,
        title: String::new(),
    };
    m.title = member_titles(std::slice::from_ref(&m)).remove(0);
    m
}

/// Two agents of one pair cell, titled as the plan titles them.
fn pair(mut a: Member, mut b: Member) -> (Member, Member) {
    let t = member_titles(&[a.clone(), b.clone()]);
    a.title = t[0].clone();
    b.title = t[1].clone();
    (a, b)
}

fn opts(gpu: u32, ctx: u32, temp: f64) -> ModelOptions {
    ModelOptions {
        num_gpu: Some(gpu),
        num_ctx: Some(ctx),
        temperature: Some(temp),
        ..Default::default()
    }
}

fn check_golden(name: &str, actual: &str) {
    let path = repo().join("tests/fixtures/golden").join(name);
    if std::env::var_os("SWEEP_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(actual, expected, "golden {name} differs");
}

/// The bullet items under `heading` in a report text.
fn section_items(text: &str, heading: &str) -> Vec<String> {
    text.split(&format!("{heading}\n"))
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| l.starts_with("- "))
        .map(|l| l[2..].to_string())
        .collect()
}

/// Seed 000 is Agent B of a tuned pair, with the InsightAgent persona: given its figures and
/// its findings, the report from `## Workflow Summary` to the end of the persona block is the
/// seed's, byte for byte; sweep's own `## Calls` follows.
#[test]
fn report_files_render_like_the_seeds() {
    let (_tmp, c) = shipped_corpus();
    let summary = c.data_summary();
    let tail =
        std::fs::read_to_string(repo().join("tests/fixtures/golden/seed_000_tail.txt")).unwrap();
    let analysis = Analysis {
        summary: "s".into(),
        key_findings: section_items(&tail, "## Key Findings"),
        recommendations: section_items(&tail, "## Recommendations"),
    };
    assert_eq!(
        (analysis.key_findings.len(), analysis.recommendations.len()),
        (2, 8)
    );
    let metrics = RunMetrics {
        throughput_tps: Some(42.9),
        ttft_ms: Some(889.97),
        total_duration_ms: Some(61913.37),
        tokens_generated: Some(2514),
        prompt_eval_ms: Some(797.9),
        eval_ms: Some(58277.19),
        load_ms: Some(627.58),
    };
    let (_, b) = pair(
        member(Slot::A, Persona::Collector, opts(80, 512, 1.0)),
        member(Slot::B, Persona::Insight, opts(80, 512, 1.0)),
    );
    assert_eq!(b.title, "Chimera Agent B");
    let calls = [
        ("analysis", "homo-1/r1/B/concurrent/analysis".to_string()),
        ("report", "homo-1/r1/B/concurrent/report".to_string()),
    ];
    let input = ReportInput {
        member: &b,
        date: "2025-11-15",
        report_text: "## Technical Report\n\nBody.\n",
        files_analyzed: c.len(),
        data_summary: &summary,
        ingest_ms: 20.0,
        analysis_ms: 28250.0,
        report_ms: 33670.0,
        total_ms: 61940.0,
        metrics: &metrics,
        analysis: &analysis,
        persona: Some(INSIGHT_PERSONA),
        defaults_label: "Ollama defaults",
        calls: &calls,
    };
    let pair_b = report_md::render(&input);
    check_golden("report_chimera_agent_b.md", &pair_b);
    assert!(pair_b.starts_with("# Chimera Agent B\n\n# Technical Report: Chimera Agent B Analysis\n\n**Date:** 2025-11-15\n**Agent Type:** Chimera Agent B\n**Model:** gemma3:latest\n**Configuration:** num_gpu=80, num_ctx=512, temp=1, top_p=default, top_k=default, repeat_penalty=default\n\n---\n\n"));
    assert!(
        pair_b.contains(&format!("Body.\n\n---\n\n{tail}\n## Calls\n")),
        "seed 000's tail not reproduced"
    );
    assert!(pair_b.ends_with("## Calls\n- Prompts: sweep-1 (persona sent as the system prompt (persona_mode = \"system\"))\n- analysis: `homo-1/r1/B/concurrent/analysis`\n- report: `homo-1/r1/B/concurrent/report`\n\nEach call's request as sent and its full answer: `sweep show <run dir> --call <id>`.\n"));

    // echo: the same persona block (the seed system printed it and never sent it), said so.
    let echo_b = Member {
        persona_mode: PersonaMode::Echo,
        ..b.clone()
    };
    let echo = report_md::render(&ReportInput {
        member: &echo_b,
        ..input.clone()
    });
    assert!(echo.contains(&tail));
    assert!(echo.contains("persona shown above but not sent (persona_mode = \"echo\""));

    // Single baseline agent, server gave no figures, no persona; the backend's own words for
    // "no options" (the embedded engine is not Ollama).
    let base = member(Slot::Single, Persona::Chimera, ModelOptions::default());
    let none = RunMetrics {
        ttft_ms: Some(700.0),
        total_duration_ms: Some(1500.0),
        ..Default::default()
    };
    let single = report_md::render(&ReportInput {
        member: &base,
        metrics: &none,
        persona: None,
        ..input.clone()
    });
    check_golden("report_baseline_single.md", &single);
    assert!(single.starts_with("# Technical Report: Baseline Agent Analysis\n\n**Date:** 2025-11-15\n**Model:** gemma3:latest\n**Agent Type:** Baseline\n**Configuration:** Ollama defaults\n"));
    assert!(single.contains("- Throughput: n/a\n- TTFT: 700.00 ms\n"));
    assert!(single.contains("- Load Duration: n/a\n"));
    assert!(!single.contains(": 0\n"));
    assert!(single.contains("None: no system prompt was sent to this agent.\n\n## Calls\n- Prompts: sweep-1 (no persona)\n"));
    let embedded = report_md::render(&ReportInput {
        member: &base,
        defaults_label: sweep::spec::BackendKind::Embedded.defaults_label(),
        persona: None,
        ..input.clone()
    });
    assert!(embedded.contains("**Configuration:** engine defaults (num_ctx 2048, 128 tokens)\n"));

    // The seeds' baseline_vs_chimera pair: "Baseline Collector" and "Chimera Insight", each
    // with its own persona block.
    let (a, b) = pair(
        member(Slot::A, Persona::Collector, ModelOptions::default()),
        member(Slot::B, Persona::Insight, opts(80, 512, 1.0)),
    );
    let ins = report_md::render(&ReportInput {
        member: &b,
        ..input.clone()
    });
    assert!(ins.starts_with("# Chimera Insight\n\n# Technical Report: Chimera Insight Analysis\n"));
    let col = report_md::render(&ReportInput {
        member: &a,
        persona: Some(COLLECTOR_PERSONA),
        ..input.clone()
    });
    assert!(col
        .starts_with("# Baseline Collector\n\n# Technical Report: Baseline Collector Analysis\n"));
    assert!(col.contains("**Configuration:** Ollama defaults\n"));
    assert!(col.contains("## Persona Prompt\n```\nYou are DataCollector-9000, a systems analyst tasked with scanning benchmark artifacts.\n"));
}

// ---------- the workflow over a stand-in LLM ----------

#[derive(Debug, Clone)]
struct Seen {
    system: Option<String>,
    prompt: String,
    start: Instant,
    end: Instant,
}

/// Sleeps `delay`, streams two chunks through the real `ClientTimer`, returns canned text.
/// Fails the first `fail_first` calls with `fail_with`.
struct StubLlm {
    delay: Duration,
    fail_first: u32,
    fail_with: BackendError,
    calls: AtomicU32,
    seen: Mutex<Vec<Seen>>,
    server: ServerMetrics,
}

const ANALYSIS_TEXT: &str = "## Executive Summary\nThe corpus has 101 files.\n\n## Key Findings\n- p95 latency is 15.6 s.\n- Throughput is 42 tok/s.\n\n## Recommendations\n1. Pin num_ctx to 512.\n2. Keep the model loaded.\n";

impl StubLlm {
    fn new(delay_ms: u64) -> Self {
        StubLlm {
            delay: Duration::from_millis(delay_ms),
            fail_first: 0,
            fail_with: BackendError::Truncated,
            calls: AtomicU32::new(0),
            seen: Mutex::new(Vec::new()),
            server: ServerMetrics {
                load_ms: Some(1.5),
                prompt_eval_ms: Some(10.0),
                eval_ms: Some(40.0),
                total_ms: Some(55.0),
                prompt_tokens: Some(300),
                output_tokens: Some(20),
                ..Default::default()
            },
        }
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Backend for StubLlm {
    fn generate<'a>(
        &'a self,
        req: &'a GenRequest,
    ) -> BoxFuture<'a, Result<Generation, BackendError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let start = Instant::now();
            let mut timer = ClientTimer::start_at(start);
            tokio::time::sleep(self.delay / 2).await;
            if n < self.fail_first {
                return Err(self.fail_with.clone());
            }
            timer.chunk(true);
            tokio::time::sleep(self.delay / 2).await;
            timer.chunk(true);
            let timing = timer.finish();
            self.seen.lock().unwrap().push(Seen {
                system: req.system.clone(),
                prompt: req.prompt.clone(),
                start,
                end: Instant::now(),
            });
            let text = if req.prompt.contains("performance analysis expert") {
                ANALYSIS_TEXT.to_string()
            } else {
                "# Report\nAll good.".to_string()
            };
            Ok(Generation {
                text,
                timing,
                server: self.server.clone(),
            })
        })
    }

    fn preflight<'a>(
        &'a self,
        _model: &'a str,
    ) -> BoxFuture<'a, Result<BackendInfo, BackendError>> {
        Box::pin(async { Ok(BackendInfo::default()) })
    }
}

fn tiny_corpus() -> (tempfile::TempDir, Corpus) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("a.csv"),
        "tokens_per_second,ttft_ms\n40,700\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("b.json"),
        r#"{"summary":{"ttft_ms":700.5}}"#,
    )
    .unwrap();
    std::fs::write(tmp.path().join("c.md"), "# Notes\n").unwrap();
    let c = Corpus::load_path(tmp.path(), MAX).unwrap();
    (tmp, c)
}

fn ctx<'a>(m: &'a Member, c: &'a Corpus, retry: &'a RetryPolicy, nonce: &str) -> AgentContext<'a> {
    AgentContext {
        member: m,
        corpus: c,
        ingest_ms: 3.0,
        nonce: nonce.into(),
        call_stem: nonce.into(),
        retry,
    }
}

#[tokio::test]
async fn single_agent_runs_analysis_then_report_with_nonces() {
    let (_t, c) = tiny_corpus();
    let llm = StubLlm::new(60);
    let m = member(Slot::Single, Persona::Chimera, opts(80, 512, 0.6));
    let retry = RetryPolicy::default();
    let run = agent::run_agent(&llm, &ctx(&m, &c, &retry, "r1/chimera-1/0/single")).await;

    assert_eq!(run.calls.len(), 2);
    assert_eq!(run.calls[0].stage, Stage::Analysis);
    assert_eq!(run.calls[1].stage, Stage::Report);
    assert!(run
        .calls
        .iter()
        .all(|c| c.attempts == 1 && c.cache_defeated));
    let seen = llm.seen();
    assert!(seen[0]
        .prompt
        .starts_with("Run: r1/chimera-1/0/single/analysis\n"));
    assert!(seen[0].prompt.contains(&c.data_summary()));
    assert!(seen[1]
        .prompt
        .starts_with("Run: r1/chimera-1/0/single/report\n"));
    assert!(
        seen[1].prompt.contains("1. p95 latency is 15.6 s."),
        "{}",
        seen[1].prompt
    );
    assert!(seen[1].prompt.contains("b.json: summary.ttft_ms = 700.5"));
    assert!(
        seen.iter().all(|s| s.system.is_none()),
        "chimera sends no system prompt"
    );
    // Report call starts after the analysis ended.
    assert!(run.calls[1].started_at >= run.calls[0].ended_at);
    assert!(run.analysis_ms >= 60.0 && run.report_ms.unwrap() >= 60.0);
    assert!(run.total_ms >= run.ingest_ms + run.analysis_ms + run.report_ms.unwrap() - 0.001);

    let md = run.report_markdown.as_deref().unwrap();
    assert!(md.starts_with("# Technical Report: Chimera Agent Analysis\n"));
    assert!(
        md.contains("\n# Report\nAll good.\n\n---\n\n## Workflow Summary\n- Files analyzed: 3\n")
    );
    assert!(md.contains("## Key Findings\n- p95 latency is 15.6 s.\n- Throughput is 42 tok/s.\n"));
    assert!(md.contains("## Recommendations\n- Pin num_ctx to 512.\n- Keep the model loaded.\n"));
    // Two calls of 20 tokens in 40 ms each: 500 tok/s, 40 tokens, sums of server figures.
    assert!(md.contains("- Throughput: 500.00 tok/s\n"), "{md}");
    assert!(md.contains("- Tokens Generated: 40\n- Prompt Eval: 20.00 ms\n- Eval Duration: 80.00 ms\n- Load Duration: 3.00 ms\n"));
    assert!(md.contains("None: no system prompt was sent"));
}

#[tokio::test]
async fn failed_analysis_skips_the_report_and_still_returns() {
    let (_t, c) = tiny_corpus();
    let mut llm = StubLlm::new(10);
    llm.fail_first = 5;
    llm.fail_with = BackendError::ModelNotFound {
        model: "gemma3:latest".into(),
        hint: String::new(),
    };
    let m = member(Slot::Single, Persona::Chimera, opts(80, 512, 0.6));
    let retry = RetryPolicy {
        attempts: 3,
        backoff_ms: 1,
    };
    let run = agent::run_agent(&llm, &ctx(&m, &c, &retry, "n")).await;
    assert_eq!(run.calls.len(), 1);
    assert!(run.report_skipped);
    assert_eq!(run.report_ms, None);
    assert!(run.report_markdown.is_none());
    assert_eq!(run.calls[0].attempts, 1, "not retryable: one attempt");
    assert_eq!(
        run.calls[0].result.as_ref().unwrap_err().kind(),
        "model_not_found"
    );
    assert_eq!(llm.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retryable_errors_are_retried_with_backoff_and_counted() {
    let (_t, c) = tiny_corpus();
    let mut llm = StubLlm::new(10);
    llm.fail_first = 2;
    llm.fail_with = BackendError::Http {
        status: 503,
        message: "busy".into(),
    };
    let m = member(Slot::Single, Persona::Chimera, opts(80, 512, 0.6));
    let retry = RetryPolicy {
        attempts: 3,
        backoff_ms: 30,
    };
    let run = agent::run_agent(&llm, &ctx(&m, &c, &retry, "n")).await;
    assert_eq!(run.calls[0].attempts, 3);
    assert!(run.calls[0].result.is_ok());
    assert_eq!(run.calls[1].attempts, 1);
    // Backoff 30 ms then 60 ms, plus three 5 ms half-delays before each failure/first chunk.
    assert!(run.analysis_ms >= 90.0, "{}", run.analysis_ms);
    assert!(run.ok());

    // Out of attempts: the error is kept and every attempt counted.
    let mut llm = StubLlm::new(4);
    llm.fail_first = 10;
    llm.fail_with = BackendError::Reset {
        message: "eof".into(),
    };
    let run = agent::run_agent(&llm, &ctx(&m, &c, &retry, "n")).await;
    assert_eq!(run.calls.len(), 1);
    assert_eq!(run.calls[0].attempts, 3);
    assert_eq!(llm.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn pair_agents_overlap_and_only_insight_sends_the_persona() {
    let (_t, c) = tiny_corpus();
    let llm = StubLlm::new(80);
    let (a, mut b) = pair(
        member(Slot::A, Persona::Chimera, opts(80, 512, 0.8)),
        member(Slot::B, Persona::Insight, opts(120, 1024, 0.8)),
    );
    b.endpoint = Some("http://127.0.0.1:11435".into());
    let retry = RetryPolicy::default();
    let ca = ctx(&a, &c, &retry, "r/pair-1/0/A");
    let cb = ctx(&b, &c, &retry, "r/pair-1/0/B");
    let pair = agent::run_pair_measured(&llm, &ca, &cb).await;

    let conc = &pair.concurrent;
    // A's first call starts before B's first call ends (and vice versa).
    assert!(conc.a.calls[0].started_at < conc.b.calls[0].ended_at);
    assert!(conc.b.calls[0].started_at < conc.a.calls[0].ended_at);
    let seq = &pair.sequential;
    assert!(
        seq.b.calls[0].started_at >= seq.a.calls[1].ended_at,
        "sequential is back to back"
    );
    assert!(
        pair.speedup > 1.3,
        "two sleeping agents overlap: speedup {}",
        pair.speedup
    );
    assert!((pair.efficiency - pair.speedup / 2.0).abs() < 1e-12);
    let (s0, e0) = conc.a.calls[0].offsets_ms(conc.started_at);
    assert!(s0 >= 0.0 && e0 > s0);

    for call in conc.a.calls.iter().chain(&seq.a.calls) {
        assert_eq!(call.request.system, None);
        assert_eq!(call.request.endpoint, None);
    }
    for call in conc.b.calls.iter().chain(&seq.b.calls) {
        assert_eq!(call.request.system.as_deref(), Some(INSIGHT_PERSONA));
        assert_eq!(
            call.request.endpoint.as_deref(),
            Some("http://127.0.0.1:11435")
        );
        assert_eq!(call.request.options.num_ctx, Some(1024));
    }
    // What reached the backend: 8 calls, the persona on exactly B's four.
    let seen = llm.seen();
    assert_eq!(seen.len(), 8);
    let with_system: Vec<&Seen> = seen.iter().filter(|s| s.system.is_some()).collect();
    assert_eq!(with_system.len(), 4);
    assert!(with_system.iter().all(|s| s.prompt.contains("/B/")));
    // Every prompt is unique (nonce per phase, agent and stage).
    let mut prompts: Vec<&str> = seen
        .iter()
        .map(|s| s.prompt.lines().next().unwrap())
        .collect();
    prompts.sort();
    prompts.dedup();
    assert_eq!(prompts.len(), 8);
    assert!(seen.iter().all(|s| s.end > s.start));

    // Call ids: the agent run's stem, the phase tag, the stage.
    assert_eq!(conc.b.calls[1].call_id, "r/pair-1/0/B/concurrent/report");
    assert_eq!(seq.a.calls[0].call_id, "r/pair-1/0/A/sequential/analysis");
    let md_b = conc.b.report_markdown.as_deref().unwrap();
    assert!(md_b.starts_with("# Chimera Agent B\n\n# Technical Report: Chimera Agent B Analysis\n"));
    assert!(md_b.contains("- report: `r/pair-1/0/B/concurrent/report`\n"));
    assert!(md_b.contains("**Configuration:** num_gpu=120, num_ctx=1024, temp=0.8,"));
    assert!(md_b.contains("## Persona Prompt\n```\nYou are InsightAgent"));
    let md_a = conc.a.report_markdown.as_deref().unwrap();
    assert!(md_a.starts_with("# Chimera Agent A\n"));
}

/// `persona_mode = "echo"` sends no system prompt (the seed system's request) and the report
/// still shows the persona, saying it was not sent; `system` sends the DataCollector-9000
/// persona of Agent A.
#[tokio::test]
async fn echo_mode_sends_no_persona_and_the_report_shows_it() {
    let (_t, c) = tiny_corpus();
    let llm = StubLlm::new(4);
    let retry = RetryPolicy::default();
    let (mut a, mut b) = pair(
        member(Slot::A, Persona::Collector, ModelOptions::default()),
        member(Slot::B, Persona::Insight, opts(80, 512, 1.0)),
    );
    a.persona_mode = PersonaMode::Echo;
    b.persona_mode = PersonaMode::Echo;
    let run = agent::run_pair(
        &llm,
        &ctx(&a, &c, &retry, "r/bvc/0/A"),
        &ctx(&b, &c, &retry, "r/bvc/0/B"),
    )
    .await;
    assert!(llm.seen().iter().all(|s| s.system.is_none()));
    let md = run.b.report_markdown.as_deref().unwrap();
    assert!(md.starts_with("# Chimera Insight\n"));
    assert!(md.contains(&format!("## Persona Prompt\n```\n{INSIGHT_PERSONA}\n```\n")));
    assert!(md.contains("not sent (persona_mode = \"echo\""));
    let md = run.a.report_markdown.as_deref().unwrap();
    assert!(md.starts_with("# Baseline Collector\n"));
    assert!(md.contains(&format!("```\n{COLLECTOR_PERSONA}\n```\n")));

    let llm = StubLlm::new(4);
    a.persona_mode = PersonaMode::System;
    let run = agent::run_agent(&llm, &ctx(&a, &c, &retry, "r/bvc/1/A")).await;
    assert!(run.ok());
    assert!(llm
        .seen()
        .iter()
        .all(|s| s.system.as_deref() == Some(COLLECTOR_PERSONA)));
}

/// The seed system's prompts (`chimera-2025`): its analysis prompt byte for byte after the
/// nonce line, its report prompt in the style of Technical Report 108 with the full metric set
/// as pretty JSON, and its own reading of findings and recommendations.
#[tokio::test]
async fn chimera_2025_prompts_are_the_seed_systems() {
    let (_t, c) = tiny_corpus();
    let llm = StubLlm::new(4);
    let retry = RetryPolicy::default();
    let mut m = member(Slot::Single, Persona::Chimera, opts(80, 512, 0.6));
    m.prompt_version = PromptVersion::Chimera2025;
    let run = agent::run_agent(&llm, &ctx(&m, &c, &retry, "r/c/0/single")).await;
    assert!(run.ok());
    let seen = llm.seen();
    let summary = c.data_summary();
    assert_eq!(
        seen[0].prompt,
        format!(
            "Run: r/c/0/single/analysis\n\nYou are a performance analysis expert. Analyze the following benchmark data and provide insights.\n\n\
Benchmark Data Summary:\n{summary}\n\n\nPlease provide:\n1. Executive summary of the data\n2. Key performance findings\n\
3. Performance metrics analysis\n4. Recommendations for optimization\n\nFormat your response as structured analysis with clear sections."
        )
    );
    let report = &seen[1].prompt;
    assert!(report.starts_with("Run: r/c/0/single/report\n\nGenerate a comprehensive technical report in the style of Technical Report 108.\n\nAnalysis Results:\n- Summary: "));
    // The summary is everything after "Executive Summary" up to the next `#` heading.
    assert!(report.contains("- Summary: The corpus has 101 files.\n- Key Findings:\n"));
    // Findings and recommendations: lines with a keyword ("key", "recommend", …) anywhere
    // outside `#` headings; this analysis's bullets have none, so the seed system sent none.
    assert!(
        report.contains("- Key Findings:\nNone provided\n- Performance Metrics: {"),
        "{report}"
    );
    assert!(report.contains("- Recommendations:\nNone provided\n\nCreate a professional"));
    let metrics = serde_json::to_string_pretty(&c.chimera_metrics()).unwrap();
    assert!(report.contains(&format!(
        "- Performance Metrics: {metrics}\n- Recommendations:\n"
    )));
    assert!(
        metrics.contains("\"csv_tokens_per_second\": 40.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\"json_summary.ttft_ms\": 700.5"),
        "{metrics}"
    );
    assert!(metrics.contains("\"total_files_analyzed\": 3"), "{metrics}");
    assert!(
        report.ends_with("Use markdown formatting and include specific metrics and data points.")
    );
    assert!(run
        .report_markdown
        .unwrap()
        .contains("- Prompts: chimera-2025 (no persona)"));
}

/// The seed system's metric set on the shipped corpus: CSV columns from the first ten rows,
/// JSON paths with `[i]` for array items, numeric strings read as numbers, the corpus totals.
#[test]
fn chimera_metric_set_of_the_shipped_corpus() {
    let (_tmp, c) = shipped_corpus();
    let m = c.chimera_metrics();
    let keys: Vec<&str> = m.keys().map(String::as_str).collect();
    eprintln!("{} metric keys: {keys:?}", keys.len());
    assert_eq!(m["total_files_analyzed"], serde_json::json!(101));
    assert_eq!(
        m["data_types"],
        serde_json::json!(["csv", "json", "markdown"])
    );
    assert_eq!(m["total_file_size_bytes"], serde_json::json!(c.total_bytes));
    assert_eq!(m["json_documents"], serde_json::json!(44));
    assert!(keys.iter().any(|k| k.starts_with("csv_")));
    assert!(keys
        .iter()
        .any(|k| k.starts_with("json_") && k.contains('[')));
    assert!(m.contains_key("markdown_heading_count"));
    assert!(m.contains_key("json_latency_s.p95"));
    // 51 on this corpus (sweep-1's report prompt quotes 12 JSON values)
    assert_eq!(m.len(), 51, "{keys:?}");
}

/// A fresh clone has every file's mtime at checkout time: the loader uses the times recorded
/// beside the corpus (for files whose content matches), so the data summary is the seeds'.
#[test]
fn fresh_checkout_prints_the_seeds_latest_modified_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("corpus");
    copy_dir(&repo().join("experiments/corpus"), &root);
    std::fs::copy(
        repo().join("experiments/corpus.mtimes.tsv"),
        tmp.path().join("corpus.mtimes.tsv"),
    )
    .unwrap();
    // A checkout's times: now, for every file.
    let now = std::time::SystemTime::now();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(now)
                    .unwrap();
            }
        }
    }
    let expected =
        std::fs::read_to_string(repo().join("tests/fixtures/golden/seed_data_summary.txt"))
            .unwrap();
    let c = Corpus::load_path(&root, MAX).unwrap();
    assert_eq!(c.data_summary(), expected);
    assert!(c.files.iter().all(|f| f.modified_recorded));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // An edited file is not the recorded one: it gets its own time.
    let edited = "reports/gemma3/gemma3_270m_baseline.csv";
    let mut text = std::fs::read_to_string(root.join(edited)).unwrap();
    text.push('\n');
    std::fs::write(root.join(edited), text).unwrap();
    let c = Corpus::load_path(&root, MAX).unwrap();
    let f = c.files.iter().find(|f| f.path == edited).unwrap();
    assert!(!f.modified_recorded);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(c
        .data_summary()
        .contains(&format!("  Latest modified: {today}")));

    // Without the recorded times: the filesystem's, today's.
    std::fs::remove_file(tmp.path().join("corpus.mtimes.tsv")).unwrap();
    let c = Corpus::load_path(&root, MAX).unwrap();
    assert!(c.files.iter().all(|f| !f.modified_recorded));
    assert_ne!(c.data_summary(), expected);
}
