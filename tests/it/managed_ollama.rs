//! `[server] preset = "ollama"`, as `experiments/gemma3.toml` uses it: sweep starts `ollama
//! serve` with the file's environment on a free port (`OLLAMA_HOST`), a second one for
//! Agent B of a pair whose agents load the model differently, records both, and leaves no
//! process behind. Ollama itself cannot be installed from a package registry here, so the
//! server is the protocol peer started the way `ollama serve` starts
//! (`crates/testkit/examples/peer.rs serve`: address from `OLLAMA_HOST`, at most
//! `OLLAMA_NUM_PARALLEL` generations at once as Ollama's runner semaphore allows, Ollama's
//! load times). What is under test is sweep's side: the command, the environment reaching
//! the server (its effect is measured: the homo pair's speedup), the second server, the
//! records' endpoints and the processes' end.

use crate::common::{alive, assert_complete, only_run, sweep};
use std::path::{Path, PathBuf};
use sweep::analysis::{analyze, AnalysisOptions};
use sweep::server::{read_events, ServerEvent};
use sweep::store::read_records;

/// The peer binary beside sweep's (`cargo build -p sweep-testkit --example peer`; the test
/// command, scripts/test.sh, builds it first).
fn peer() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_sweep"))
        .parent()
        .unwrap()
        .join("examples/peer");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build -p sweep-testkit --example peer` (scripts/test.sh \
         does before the tests)",
        p.display()
    );
    p
}

fn spec(dir: &Path, parallel: u32) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "ollama"
repetitions = 3
warmup = 0
seed = 3

[backend]
kind = "ollama"
model = "gemma3:latest"
timeout_s = 60
retry = {{ attempts = 1, backoff_ms = 0 }}

[server]
preset = "ollama"
command = "{peer}"
args = ["8", "20"]              # the peer's tokens per answer and ms per token
env = {{ OLLAMA_NUM_PARALLEL = "{parallel}", OLLAMA_MAX_LOADED_MODELS = "2" }}
ready_timeout_s = 20

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[[arm]]
name = "homo"
agent = "pair"
a = {{ num_ctx = 512 }}
b = {{ num_ctx = 512 }}

[[arm]]
name = "hetero"
agent = "pair"
a = {{ num_ctx = 512 }}
b = {{ num_ctx = 1024 }}
"#,
        peer = peer().display(),
        corpus = crate::common::root()
            .join("experiments/corpus/reports/llama3")
            .display(),
        results = dir.join("results").display(),
    );
    let path = dir.join(format!("ollama-{parallel}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the study with `OLLAMA_NUM_PARALLEL = parallel`; returns the homo pair's median
/// speedup (its agents back to back over together).
fn run_with(parallel: u32) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = spec(tmp.path(), parallel);
    let plan = sweep().args(["plan"]).arg(&spec_path).output().unwrap();
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains("a second server for Agent B in 1 pair cell(s)"),
        "{plan_text}"
    );
    // One slot and two agents sharing it: the plan says the pair is queued.
    assert_eq!(
        plan_text.contains("arm \"homo\": agents A and B share one Ollama endpoint"),
        parallel == 1,
        "{plan_text}"
    );
    let out = sweep()
        .args(["run", "--quiet"])
        .arg(&spec_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(tmp.path(), "ollama");
    let records = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec_path, &records);
    assert!(records.iter().all(|r| r.ok), "every call answered");

    // Two servers, each `<peer> serve 8 20` with the file's environment and its own
    // OLLAMA_HOST, the second for the hetero pair's B.
    let starts: Vec<_> = read_events(&run)
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Start {
                pid, env, command, ..
            } => Some((pid, env, command)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    let hosts: Vec<&String> = starts
        .iter()
        .map(|(_, env, _)| &env["OLLAMA_HOST"])
        .collect();
    assert_ne!(hosts[0], hosts[1]);
    for (_, env, command) in &starts {
        assert_eq!(
            env["OLLAMA_NUM_PARALLEL"],
            parallel.to_string(),
            "{command}"
        );
        assert_eq!(env["OLLAMA_MAX_LOADED_MODELS"], "2");
        assert!(command.ends_with("peer serve 8 20"), "{command}");
    }
    // The records went where the servers were: the hetero pair's B to the second server,
    // every other agent to the first.
    let first = format!("http://{}", hosts[0]);
    let second = format!("http://{}", hosts[1]);
    for r in &records {
        let want = if r.cell_id.starts_with("hetero") && r.agent == "B" {
            &second
        } else {
            &first
        };
        assert!(
            r.endpoint.trim_end_matches('/') == want,
            "{} {} {:?}: {} (want {want})",
            r.cell_id,
            r.agent,
            r.phase,
            r.endpoint
        );
    }
    // Nothing left running.
    for (pid, _, _) in &starts {
        assert!(!alive(*pid), "server pid {pid} outlived sweep");
    }

    let a = analyze(&run, &AnalysisOptions::default()).unwrap();
    let homo = a
        .pairs
        .iter()
        .find(|p| p.cell_id.starts_with("homo"))
        .expect("homo pair analysis");
    homo.speedup.summary.value().map(|s| s.median).unwrap()
}

/// With `OLLAMA_NUM_PARALLEL = 2` the homo pair's agents run together (speedup 2: each call
/// is 20 ms + 7 × 20 ms on the peer, the same together as alone); with 1 the second waits
/// for the first (speedup 1). Margin ±0.3: the client's per-call overhead (a few ms on
/// 160 ms calls) moves the ratio by a few percent; the two settings are 1.0 apart.
#[test]
fn the_managed_ollama_gets_the_files_environment_and_a_second_server_for_b() {
    let together = run_with(2);
    let queued = run_with(1);
    eprintln!("homo pair speedup: {together:.3} at OLLAMA_NUM_PARALLEL=2, {queued:.3} at 1");
    assert!((together - 2.0).abs() <= 0.3, "speedup at 2: {together}");
    assert!((queued - 1.0).abs() <= 0.3, "speedup at 1: {queued}");
}
