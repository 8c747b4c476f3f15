//! `sweep run` end to end against a local Ollama protocol peer: the real binary, real
//! sockets, real files. Crash safety is tested by kill -9 at seeded random moments.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sweep::plan::Plan;
use sweep::record::Record;
use sweep::spec::Spec;
use sweep::store::{read_records, Manifest};
use sweep_testkit::{Fault, FaultPlan};

use crate::common::{assert_complete, only_run, quiet_server, root, run_sweep, sweep};

/// An experiment: baseline + a 2-point grid + a pair arm, against `url`.
fn write_spec(dir: &Path, url: &str, reps: u32, extra_backend: &str) -> PathBuf {
    write_spec_run(dir, url, reps, extra_backend, "")
}

/// [`write_spec`] with extra `[run]` keys.
fn write_spec_run(
    dir: &Path,
    url: &str,
    reps: u32,
    extra_backend: &str,
    extra_run: &str,
) -> PathBuf {
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
{extra_run}

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

/// The first line of every generation prompt the peer received: the nonce line of an
/// agent call, or a reload probe's own unique line.
fn nonce_lines(reqs: &[sweep_testkit::RecordedRequest]) -> Vec<String> {
    reqs.iter()
        .filter(|q| q.path == "/api/generate")
        .filter_map(|q| q.json.as_ref()?.get("prompt")?.as_str().map(str::to_owned))
        .map(|p| p.lines().next().unwrap_or_default().to_string())
        .collect()
}

fn assert_unique(lines: &[String]) {
    let mut seen = std::collections::BTreeSet::new();
    let dups: Vec<&String> = lines.iter().filter(|l| !seen.insert(*l)).collect();
    assert!(dups.is_empty(), "nonces sent twice: {dups:?}");
}

/// Kill -9 at seeded random moments, with a second `sweep run` of the same file started
/// during each life of the first: one of the two runs, the other is refused (exit 2, naming
/// the holder), and whatever is killed, the records end up equal to the plan, each call
/// once, every call sent with a nonce no earlier attempt used.
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
    let exp = tmp.path().join("results/rt");
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut kills, mut refused) = (0, 0);
    let mut done = false;
    while !done {
        assert!(
            Instant::now() < deadline,
            "did not finish after {kills} kills"
        );
        // Once the run exists the second starter names it (a bare `sweep run` started after
        // the run finished would rightly start a new run); before, it races the first.
        let existing = std::fs::read_dir(&exp).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| !n.starts_with('.'))
        });
        let mut first = sweep()
            .args(["run", "-q"])
            .arg(&spec)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let wait = Duration::from_millis(next());
        let second_at = wait / 3;
        let mut second = None;
        let t = Instant::now();
        let mut ended = [None, None];
        while t.elapsed() < wait && ended[0].is_none() {
            if second.is_none() && t.elapsed() >= second_at {
                let mut c = sweep();
                c.args(["run", "-q"]);
                if let Some(id) = &existing {
                    c.args(["--resume", id]);
                }
                second = Some(c.arg(&spec).stderr(Stdio::piped()).spawn().unwrap());
            }
            if let Some(st) = first.try_wait().unwrap() {
                ended[0] = Some(st);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut outs = Vec::new();
        for (i, child) in [Some(first), second].into_iter().enumerate() {
            let Some(mut child) = child else { continue };
            if ended[i].is_none() && child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            let out = child.wait_with_output().unwrap();
            outs.push(out);
        }
        let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
        assert!(
            codes.iter().filter(|c| **c == Some(0)).count() <= 1,
            "{codes:?}"
        );
        for o in &outs {
            let err = String::from_utf8_lossy(&o.stderr);
            match o.status.code() {
                None => {} // killed
                Some(0) => done = true,
                Some(2) => {
                    refused += 1;
                    assert!(
                        err.contains("in use by another sweep (pid ")
                            || err.contains("is finished"),
                        "{err}"
                    );
                }
                Some(c) => panic!("exit {c}: {err}"),
            }
        }
    }
    assert!(
        kills >= 3,
        "the schedule should interrupt the run several times ({kills})"
    );
    println!("{kills} kills, {refused} refused starters");
    assert!(
        refused >= 3,
        "the second starter was refused {refused} times"
    );
    let run = only_run(tmp.path(), "rt");
    let recs = read_records(&run.join("records.jsonl")).unwrap();
    assert!(recs.torn_tail.is_none());
    assert_complete(&spec, &recs.records);
    assert!(Manifest::read(&run).unwrap().finished_at.is_some());
    // phases cut short by a kill were sent again, each time with a fresh nonce
    let lines = nonce_lines(&server.requests());
    assert!(
        lines.len() > recs.records.len(),
        "no phase was ever re-sent"
    );
    assert_unique(&lines);
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

/// Two `sweep run` of one file started at the same moment: one runs the plan, the other is
/// refused with exit 2 and the holder's pid; one run directory, the records equal the plan.
#[test]
fn two_starters_at_once_one_runs_the_other_is_refused() {
    let server = quiet_server(4, 2, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 2, "");
    let start = || {
        sweep()
            .args(["run", "-q"])
            .arg(&spec)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let pids = [a.id(), b.id()];
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    codes.sort();
    assert_eq!(codes, vec![Some(0), Some(2)]);
    let refused = outs
        .iter()
        .position(|o| o.status.code() == Some(2))
        .unwrap();
    let err = String::from_utf8_lossy(&outs[refused].stderr);
    let holder = format!("in use by another sweep (pid {} on ", pids[1 - refused]);
    assert!(err.contains(&holder), "{err}");
    let run = only_run(tmp.path(), "rt");
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
    assert!(Manifest::read(&run).unwrap().finished_at.is_some());
}

/// `sweep run` in the background, returning once its log holds at least `records` lines.
fn start_and_wait_for_records(spec: &Path, exp: &Path, records: usize) -> std::process::Child {
    let mut child = sweep()
        .args(["run", "--progress", "plain"])
        .arg(spec)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let n = std::fs::read_dir(exp)
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok())
                    .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
            })
            .and_then(|e| std::fs::read_to_string(e.path().join("records.jsonl")).ok())
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= records {
            return child;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the run ended ({st}) before {records} records");
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no records");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const NO_RETRY: &str = "retry = { attempts = 1, backoff_ms = 0 }";

/// An outage of a couple of seconds mid-run: the run pauses, probes, sees the server back,
/// runs the phases that met the outage again and ends complete with exit 0: no call failed
/// for good.
#[test]
fn a_short_outage_pauses_the_run_and_it_completes() {
    let server = quiet_server(4, 10, FaultPlan::None);
    let addr = server.addr;
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec_run(
        tmp.path(),
        &server.url(),
        3,
        NO_RETRY,
        "outage_wait_s = 60\nunreachable_streak = 3",
    );
    let child = start_and_wait_for_records(&spec, &tmp.path().join("results/rt"), 12);
    let before = server.requests();
    server.shutdown();
    std::thread::sleep(Duration::from_millis(2000));
    let server = sweep_testkit::MockServer::start_on(
        addr,
        sweep_testkit::MockConfig {
            tokens: 4,
            inter_token_delay: Duration::from_millis(10),
            first_token_delay: Duration::from_millis(10),
            ..Default::default()
        },
    )
    .expect("restart on the same port");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("pausing the run"), "{err}");
    assert!(err.contains("the backend answers again after"), "{err}");
    assert!(
        err.contains("ran again after the backend came back"),
        "{err}"
    );
    let run = only_run(tmp.path(), "rt");
    let read = read_records(&run.join("records.jsonl")).unwrap();
    assert_complete(&spec, &read.records);
    // the phases that met the outage were never stored as failed: no attempt of a planned
    // phase was replaced (reload probes sent again are the runner's own warm-up)
    let replaced: Vec<&Record> = read
        .records
        .iter()
        .filter(|r| r.superseded && r.phase != sweep::record::Phase::Reload)
        .collect();
    assert!(replaced.is_empty(), "{replaced:?}");
    let failed: Vec<&Record> = read
        .records
        .iter()
        .filter(|r| !r.ok && r.phase != sweep::record::Phase::Reload)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(Manifest::read(&run).unwrap().finished_at.is_some());
    let mut lines = nonce_lines(&before);
    lines.extend(nonce_lines(&server.requests()));
    assert_unique(&lines);
}

/// The peer killed mid-run and not back within `outage_wait_s`: the run stores the phases
/// that met the outage as failed, stops with exit 4 and prints the exact `--retry-failed`
/// command; with a peer back on the same port that command completes the run, each phase
/// that failed stored again as a further attempt. Analysis counts every planned call once,
/// and the replaced attempts apart.
#[test]
fn peer_killed_mid_run_then_retry_failed_completes_the_run() {
    let server = quiet_server(4, 10, FaultPlan::None);
    let addr = server.addr;
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec_run(
        tmp.path(),
        &server.url(),
        3,
        NO_RETRY,
        "outage_wait_s = 1.5\nunreachable_streak = 3",
    );
    let child = start_and_wait_for_records(&spec, &tmp.path().join("results/rt"), 12);
    let mut lines = nonce_lines(&server.requests());
    server.shutdown();
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    // it gave up after the bounded wait, not at once and not after the whole plan
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    assert!(err.contains("did not answer for"), "{err}");
    let run = only_run(tmp.path(), "rt");
    let id = crate::common::run_id(&run);
    let retry = format!("sweep run {} --retry-failed {id}", spec.display());
    assert!(err.contains(&retry), "{err}");
    assert!(err.contains("unfinished with failures"), "{err}");
    let m = Manifest::read(&run).unwrap();
    assert!(m.finished_at.is_none());
    let first = read_records(&run.join("records.jsonl")).unwrap();
    let failed_first = first.records.iter().filter(|r| !r.ok).count();
    assert!(failed_first > 0);
    assert!(
        first
            .records
            .iter()
            .filter(|r| r.phase != sweep::record::Phase::Reload)
            .count()
            < Plan::build(&Spec::load(&spec).unwrap(), None).total_calls(),
        "the run stopped instead of failing the rest of the plan"
    );

    let server = sweep_testkit::MockServer::start_on(addr, sweep_testkit::MockConfig::default())
        .expect("restart on the same port");
    let out = run_sweep(
        &["run", "--progress", "plain", "--retry-failed", &id],
        &spec,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("no failures"), "{err}");
    assert_eq!(only_run(tmp.path(), "rt"), run);
    let read = read_records(&run.join("records.jsonl")).unwrap();
    assert_complete(&spec, &read.records);
    assert!(read
        .current()
        .all(|r| r.ok || r.phase == sweep::record::Phase::Reload));
    // every replaced attempt of a planned phase had a failed call, and its new attempt is
    // retry 1
    let replaced: Vec<&Record> = read
        .records
        .iter()
        .filter(|r| r.superseded && r.phase != sweep::record::Phase::Reload)
        .collect();
    assert!(!replaced.is_empty());
    for r in &replaced {
        assert_eq!(r.retry, 0);
        assert!(replaced
            .iter()
            .any(|f| f.phase_key() == r.phase_key() && !f.ok));
        assert!(read
            .current()
            .any(|c| c.phase_key() == r.phase_key() && c.retry == 1));
    }
    let m = Manifest::read(&run).unwrap();
    assert!(m.finished_at.is_some());
    assert_eq!(m.records.as_ref().unwrap().superseded, read.superseded);
    lines.extend(nonce_lines(&server.requests()));
    assert_unique(&lines);

    // analysis: each planned call once; the replaced attempts counted apart
    let out = sweep().arg("analyze").arg(&run).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("analysis/summary.json")).unwrap()).unwrap();
    let sum = |k: &str| -> u64 {
        summary["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["counts"][k].as_u64().unwrap())
            .sum()
    };
    let plan = Plan::build(&Spec::load(&spec).unwrap(), None);
    let measured_calls: usize = plan
        .units
        .iter()
        .filter(|u| !u.warmup)
        .map(|u| plan.cells[u.cell].calls_per_unit())
        .sum();
    let superseded_measured = read
        .records
        .iter()
        .filter(|r| r.superseded && !r.warmup)
        .count() as u64;
    assert_eq!(sum("superseded"), superseded_measured);
    assert_eq!(
        sum("calls") - sum("warmup") - sum("superseded"),
        measured_calls as u64
    );
    assert_eq!(sum("failed"), 0);

    // nothing left to retry: a second --retry-failed (naming no run: the newest of this
    // file) changes nothing
    let before = std::fs::read(run.join("records.jsonl")).unwrap();
    let out = sweep()
        .args(["run"])
        .arg(&spec)
        .args(["-q", "--retry-failed"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(run.join("records.jsonl")).unwrap(), before);
}

#[test]
fn sigterm_stops_cleanly_prints_how_to_resume_and_resume_completes() {
    let server = quiet_server(5, 20, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 2, "");
    let child = start_and_wait_for_records(&spec, &tmp.path().join("results/rt"), 4);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    let run = only_run(tmp.path(), "rt");
    let id = crate::common::run_id(&run);
    assert!(
        err.contains(&format!("sweep run {} --resume {id}", spec.display())),
        "{err}"
    );
    let stored = read_records(&run.join("records.jsonl")).unwrap();
    assert!(stored.torn_tail.is_none() && stored.incomplete_tail.is_none());
    assert!(Manifest::read(&run).unwrap().finished_at.is_none());
    let out = run_sweep(&["run", "-q", "--resume", &id], &spec);
    assert_eq!(out.status.code(), Some(0));
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
}

/// The experiment file edited after a crash: auto-resume does not abandon the unfinished run
/// silently; it names it, says what changed and how to continue or leave it. `--resume`
/// refuses with the same explanation; `--new` starts afresh; the restored file resumes.
#[test]
fn an_edited_file_names_the_unfinished_run_instead_of_abandoning_it() {
    let server = quiet_server(3, 1, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 1, "");
    let out = run_sweep(&["run", "-q", "--max-phases", "2"], &spec);
    assert_eq!(out.status.code(), Some(0));
    let run = only_run(tmp.path(), "rt");
    let id = crate::common::run_id(&run);
    let original = std::fs::read_to_string(&spec).unwrap();
    let edited = original.replacen("seed = 3", "seed = 3 # a comment", 1);
    std::fs::write(&spec, &edited).unwrap();

    let out = run_sweep(&["run", "-q"], &spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        format!("unfinished run {id} of experiment rt"),
        "first difference at line 5: was `seed = 3`, now `seed = 3 # a comment`".into(),
        format!("--resume {id}"),
        format!("sweep run {} --new", spec.display()),
        run.join("manifest.json").display().to_string(),
    ] {
        assert!(err.contains(&want), "{want:?} not in {err}");
    }
    assert_eq!(only_run(tmp.path(), "rt"), run, "no new run was started");

    let out = run_sweep(&["run", "-q", "--resume", &id], &spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("run {id} was made from another version of"))
            && err.contains("first difference at line 5"),
        "{err}"
    );

    let out = run_sweep(&["run", "-q", "--new"], &spec);
    assert_eq!(out.status.code(), Some(0));
    let runs = std::fs::read_dir(tmp.path().join("results/rt"))
        .unwrap()
        .count();
    assert_eq!(runs, 2);

    std::fs::write(&spec, &original).unwrap();
    let out = run_sweep(&["run", "-q"], &spec);
    assert_eq!(out.status.code(), Some(0));
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
    assert!(Manifest::read(&run).unwrap().finished_at.is_some());
    // a finished run is not resumed
    let out = run_sweep(&["run", "-q", "--resume", &id], &spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is finished"), "{err}");
}

/// Run ids are plain names: nothing is read or written outside the experiment's results.
#[test]
fn run_ids_must_be_plain_names() {
    let server = quiet_server(3, 1, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 1, "");
    for args in [
        ["--resume", "../../x"],
        ["--resume", "a/b"],
        ["--run-id", "../escape"],
        ["--run-id", ".."],
        ["--retry-failed", "../x"],
        ["--run-id", ".hidden"],
    ] {
        let out = run_sweep(&["run", "-q", args[0], args[1]], &spec);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("must be a plain name"), "{args:?}: {err}");
    }
    let entries: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["rt.toml".to_string()], "{entries:?}");
}

/// `merge` of one of two shards is refused and leaves nothing behind; with --allow-partial it
/// is kept, marked partial (exit 3), and analysis refuses it unless asked.
#[test]
fn a_partial_merge_is_refused_unless_allowed_and_analysis_refuses_it_too() {
    let server = quiet_server(3, 1, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 2, "");
    let out = run_sweep(&["run", "-q", "--shard", "0/2"], &spec);
    assert_eq!(out.status.code(), Some(0));
    let shard = only_run(tmp.path(), "rt");
    let merged = tmp.path().join("merged");
    let merge = |extra: &[&str]| {
        sweep()
            .arg("merge")
            .arg(&shard)
            .arg("--out")
            .arg(&merged)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = merge(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("planned phases") && err.contains("--allow-partial"),
        "{err}"
    );
    assert!(!merged.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = merge(&["--allow-partial"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("PARTIAL"), "{text}");
    assert!(Manifest::read(&merged).unwrap().partial);
    let out = sweep().arg("analyze").arg(&merged).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("partial"), "{err}");
    let out = sweep()
        .arg("analyze")
        .arg(&merged)
        .arg("--allow-partial")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Many failed calls from a backend that still answers are the calls' own failures: the run
/// pauses, finds the backend up at the first probe, stores them as they are and goes on (no
/// phase is sent twice), and ends with exit 4 and the `--retry-failed` command.
#[test]
fn a_failing_share_with_the_backend_up_is_stored_and_the_run_goes_on() {
    let plan = FaultPlan::Custom(std::sync::Arc::new(|i| {
        if i % 2 == 0 {
            Fault::Status(500)
        } else {
            Fault::None
        }
    }));
    let server = quiet_server(3, 1, plan);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec_run(
        tmp.path(),
        &server.url(),
        3,
        NO_RETRY,
        "max_failed_share = 0.2",
    );
    let out = run_sweep(&["run", "--progress", "plain"], &spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("pausing the run: "), "{err}");
    assert!(err.contains("but the backend answers"), "{err}");
    let run = only_run(tmp.path(), "rt");
    let id = crate::common::run_id(&run);
    assert!(
        err.contains("finished with failures: ") && err.contains(&format!("--retry-failed {id}")),
        "{err}"
    );
    let read = read_records(&run.join("records.jsonl")).unwrap();
    assert_complete(&spec, &read.records);
    let attempts: u64 = read.records.iter().map(|r| u64::from(r.attempts)).sum();
    assert_eq!(
        server.generation_requests(),
        attempts,
        "a phase was sent twice"
    );
    assert!(Manifest::read(&run).unwrap().finished_at.is_some());
}
