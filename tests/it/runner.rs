//! `sweep run` end to end against a local Ollama protocol peer: the real binary, real
//! sockets, real files. Crash safety is tested by kill -9 at seeded random moments.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sweep::record::Record;
use sweep::store::{read_records, Manifest};
use sweep_testkit::{Fault, FaultPlan};

use crate::common::{assert_complete, only_run, quiet_server, root, run_sweep, sweep};

/// An experiment: baseline + a 2-point grid + a pair arm, against `url`.
fn write_spec(dir: &Path, url: &str, reps: u32, extra_backend: &str) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "rt"
repetitions = {reps}
warmup = 1
seed = 3

[backend]
kind = "ollama"
url = "{url}"
model = "gemma3:latest"
timeout_s = 10
{extra_backend}

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[[arm]]
name = "baseline"

[[arm]]
name = "chimera"
[arm.grid]
num_ctx = [256, 512]

[[arm]]
name = "duo"
agent = "pair"
a = {{ persona = "chimera", num_ctx = 512 }}
b = {{ num_ctx = 512 }}
"#,
        corpus = root().join("experiments/corpus").display(),
        results = dir.join("results").display(),
    );
    let path = dir.join("rt.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn full_run_stores_every_call_reports_and_manifest() {
    let server = quiet_server(6, 2, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 2, "");
    let out = run_sweep(&["run", "--progress", "plain"], &spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("no failures"), "{err}");
    let run = only_run(tmp.path(), "rt");
    let m = Manifest::read(&run).unwrap();
    assert!(m.finished_at.is_some());
    assert_eq!(m.backend.version.as_deref(), Some("0.6.5"));
    assert!(m.backend.model_digest.is_some());
    assert!(m.corpus_hash.is_some());
    assert_eq!(m.corpus_files, Some(101));
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
    assert!(
        recs.iter().all(|r| r.ok),
        "{:?}",
        recs.iter().find(|r| !r.ok)
    );
    // metrics made it through: server durations and client timing
    let r = recs
        .iter()
        .find(|r| r.phase != sweep::record::Phase::Reload)
        .unwrap();
    assert_eq!(r.output_tokens, Some(6));
    assert!(r.ttft_ms.unwrap() >= 2.0);
    assert!(r.e2e_ms.unwrap() >= r.ttft_ms.unwrap());
    assert!(r.decode_tps.unwrap() > 0.0);
    assert!(recs.iter().all(|r| r.cache_defeated));
    // options recorded exactly as sent
    assert!(recs
        .iter()
        .any(|r| r.options.get("num_ctx").map(|v| v.to_string()) == Some("256".into())));
    // a pair's concurrent phase overlaps its agents in time; the sequential one does not
    let conc: Vec<&Record> = recs
        .iter()
        .filter(|r| r.phase.as_str() == "concurrent" && !r.warmup && r.rep == 0)
        .collect();
    let a0 = conc
        .iter()
        .find(|r| r.agent == "A" && r.stage.as_str() == "analysis")
        .unwrap();
    let b0 = conc
        .iter()
        .find(|r| r.agent == "B" && r.stage.as_str() == "analysis")
        .unwrap();
    assert!(a0.start_offset_ms < b0.end_offset_ms && b0.start_offset_ms < a0.end_offset_ms);
    let seq: Vec<&Record> = recs
        .iter()
        .filter(|r| r.phase.as_str() == "sequential" && !r.warmup && r.rep == 0)
        .collect();
    let a_end = seq
        .iter()
        .filter(|r| r.agent == "A")
        .map(|r| r.end_offset_ms)
        .fold(0.0, f64::max);
    let b_start = seq
        .iter()
        .filter(|r| r.agent == "B")
        .map(|r| r.start_offset_ms)
        .fold(f64::MAX, f64::min);
    assert!(a_end <= b_start);
    // the persona was sent as the system prompt, and only for the agent that has one (B:
    // InsightAgent by default)
    let sys = server
        .requests()
        .iter()
        .filter(|q| q.json.as_ref().and_then(|b| b.get("system")).is_some())
        .count();
    assert_eq!(sys, 3 * 2 * 2); // 3 units × 2 phases × 2 calls of agent B
                                // a report per successful agent run, where the seeds put them
    let cell = recs
        .iter()
        .find(|r| r.arm == "duo")
        .unwrap()
        .cell_id
        .clone();
    let dir = run.join("reports").join(&cell).join("run_1");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"chimera_agent_a_report.md".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"chimera_agent_b_report.md".to_string()),
        "{names:?}"
    );
    let md = std::fs::read_to_string(dir.join("chimera_agent_b_report.md")).unwrap();
    for section in [
        "## Workflow Summary",
        "## Metrics",
        "## Key Findings",
        "## Recommendations",
        "## Persona Prompt",
    ] {
        assert!(md.contains(section), "{section} missing");
    }
    // the end-of-run parquet copy, then analysis and paper tables from the stored run
    assert!(run.join("records.parquet").is_file());
    let out = sweep().arg("analyze").arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("(ref)"), "{text}");
    // 2 reps per cell: no fake interval for the change, and the file's reference arm is used
    assert!(text.contains("| need ≥ 6 |"), "{text}");
    assert!(
        text.contains("reference arm `baseline`") && !text.contains("none given"),
        "{text}"
    );
    assert!(run.join("analysis/summary.json").is_file());
    let out = sweep().arg("report").arg(&run).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = String::from_utf8_lossy(&out.stdout);
    for ext in [".md", ".tex", ".csv", ".json", ".svg"] {
        assert!(
            written.lines().any(|l| l.ends_with(ext)),
            "no {ext} in {written}"
        );
    }
    let out = sweep()
        .arg("report")
        .arg(&run)
        .args(["--group-by", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // the plan now has an ETA from this run's timings
    let out = sweep().arg("plan").arg(&spec).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ETA: ") && text.contains("4 of 4 cells measured"),
        "{text}"
    );
    // a finished run is not resumed: a second run starts anew
    let out = sweep().args(["run", "-q"]).arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("results/rt"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn failing_calls_never_stop_the_sweep_and_are_recorded() {
    // every third generation request fails with a 500, every fifth with a reset
    let plan = FaultPlan::Custom(std::sync::Arc::new(|i| match i % 15 {
        0 | 3 | 6 | 9 | 12 => Fault::Status(500),
        5 | 10 => Fault::ResetAfter(2),
        _ => Fault::None,
    }));
    let server = quiet_server(4, 1, plan);
    let tmp = tempfile::tempdir().unwrap();
    let no_retry = "retry = { attempts = 1, backoff_ms = 0 }";
    let spec = write_spec(tmp.path(), &server.url(), 1, no_retry);
    let out = run_sweep(&["run", "--progress", "plain"], &spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("http_5xx"), "{err}");
    let recs = read_records(&only_run(tmp.path(), "rt").join("records.jsonl"))
        .unwrap()
        .records;
    assert_complete(&spec, &recs);
    let failed = recs.iter().filter(|r| !r.ok).count();
    assert!(failed > 0);
    // a failed analysis skips its report call, which is still a record
    assert!(recs
        .iter()
        .any(|r| r.error_kind.as_deref() == Some("skipped_after_failure")));
    assert!(recs
        .iter()
        .filter(|r| !r.ok)
        .all(|r| r.error_kind.is_some() && r.error_message.is_some()));

    // --fail-fast stops at the first failure with exit 4 (finished with failures), resumable
    let tmp2 = tempfile::tempdir().unwrap();
    let spec2 = write_spec(tmp2.path(), &server.url(), 1, no_retry);
    let out = run_sweep(&["run", "-q", "--fail-fast"], &spec2);
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn unreachable_backend_is_a_clear_setup_error() {
    let url = sweep_testkit::refused_url().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &url, 1, "");
    let out = sweep().args(["run", "-q"]).arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("preflight") && err.contains("refused"),
        "{err}"
    );
}

#[test]
fn kill_9_at_random_moments_then_resume_stores_every_call_exactly_once() {
    let server = quiet_server(8, 5, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 6, "");
    // a seeded schedule of kill times (ms after start), so failures reproduce
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        40 + state % 400
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut kills = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "did not finish after {kills} kills"
        );
        let mut child = sweep().args(["run", "-q"]).arg(&spec).spawn().unwrap();
        let wait = Duration::from_millis(next());
        let t = Instant::now();
        let mut finished = None;
        while t.elapsed() < wait {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match finished {
            Some(status) => {
                assert_eq!(status.code(), Some(0));
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
        }
    }
    assert!(
        kills >= 3,
        "the schedule should interrupt the run several times ({kills})"
    );
    let run = only_run(tmp.path(), "rt");
    let recs = read_records(&run.join("records.jsonl")).unwrap();
    assert!(recs.torn_tail.is_none());
    assert_complete(&spec, &recs.records);
    assert!(Manifest::read(&run).unwrap().finished_at.is_some());
}

#[test]
fn sigint_stops_cleanly_and_prints_how_to_resume() {
    let server = quiet_server(5, 20, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 2, "");
    // Stored away from the experiment's own results_dir: the printed command must say where.
    let elsewhere = tmp.path().join("elsewhere");
    let results = elsewhere.join("results");
    let child = sweep()
        .args(["run", "--progress", "plain", "--results-dir"])
        .arg(&results)
        .arg(&spec)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let run = only_run(&elsewhere, "rt");
    let id = run.file_name().unwrap().to_string_lossy().into_owned();
    let resume = format!("--resume {id} --results-dir {}", results.display());
    assert!(err.contains(&resume), "{err}");
    let out = sweep()
        .args(["run", "-q", "--resume", &id, "--results-dir"])
        .arg(&results)
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
}

#[test]
fn shards_run_separately_and_merge_into_the_whole() {
    let server = quiet_server(3, 1, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 1, "");
    for s in ["0/2", "1/2"] {
        let out = run_sweep(&["run", "-q", "--shard", s], &spec);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("results/rt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 2);
    let merged = tmp.path().join("merged");
    let out = sweep()
        .arg("merge")
        .args(&runs)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = read_records(&merged.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
}
