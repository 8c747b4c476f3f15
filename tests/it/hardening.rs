//! Hardening, end to end through the real binary: seeded fault injection over a 500-call
//! sweep, storage faults (unwritable results directory, file size limit = disk full, torn
//! last line), API-key secrecy, and corpus walking limits. Real sockets, real files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use sweep::record::Record;
use sweep::store::{read_records, Manifest, RECORDS_JSONL};
use sweep_testkit::{Fault, FaultPlan, MockConfig, MockServer};

use crate::common::{
    assert_complete, only_run, quiet_server as server, root, run_id, run_sweep, sweep,
};

/// Every `error_kind` a record can carry: the backend's kinds plus the executor's own.
const KNOWN_KINDS: &[&str] = &[
    "connection_refused",
    "connect",
    "reset",
    "http_429",
    "http_5xx",
    "http_4xx",
    "model_not_found",
    "malformed",
    "truncated",
    "timeout_connect",
    "timeout_first_token",
    "timeout_total",
    "engine",
    "invalid_request",
    "skipped_after_failure",
    "corpus",
];

/// Kinds the retry policy does not retry.
const NOT_RETRIED: &[&str] = &["model_not_found", "http_4xx", "invalid_request"];

/// A one-arm single-agent experiment: `2 × reps` calls, no warm-up.
struct SpecText<'a> {
    url: &'a str,
    reps: u32,
    kind: &'a str,
    model: &'a str,
    backend_extra: &'a str,
    corpus: PathBuf,
    corpus_extra: &'a str,
    concurrency: u32,
}

impl<'a> SpecText<'a> {
    fn new(url: &'a str, reps: u32) -> Self {
        SpecText {
            url,
            reps,
            kind: "ollama",
            model: "gemma3:latest",
            backend_extra: "",
            corpus: root().join("experiments/corpus"),
            corpus_extra: "",
            concurrency: 1,
        }
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let text = format!(
            r#"[experiment]
name = "hz"
repetitions = {reps}
warmup = 0
seed = 11

[backend]
kind = "{kind}"
url = "{url}"
model = "{model}"
{backend_extra}

[corpus]
path = "{corpus}"
{corpus_extra}

[run]
results_dir = "{results}"
concurrency = {concurrency}

[[arm]]
name = "baseline"
"#,
            reps = self.reps,
            kind = self.kind,
            url = self.url,
            model = self.model,
            backend_extra = self.backend_extra,
            corpus = self.corpus.display(),
            corpus_extra = self.corpus_extra,
            results = dir.join("results").display(),
            concurrency = self.concurrency,
        );
        let path = dir.join("hz.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn seeded_faults_over_500_calls_are_all_accounted_for() {
    let faults = vec![
        Fault::Refuse,
        Fault::ResetAfter(1),
        Fault::MalformedAfter(1),
        Fault::TruncateAfter(1),
        Fault::Stall,
        Fault::StallAfter(1),
        Fault::Status(500),
        Fault::Status(429),
        Fault::ModelNotFound,
    ];
    let srv = server(
        3,
        1,
        FaultPlan::Seeded {
            seed: 2026,
            rate: 0.3,
            faults,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let url = srv.url();
    let mut st = SpecText::new(&url, 250);
    st.backend_extra =
        "timeout_s = 1\nfirst_token_timeout_s = 0.5\nretry = { attempts = 3, backoff_ms = 1 }";
    st.concurrency = 4;
    let spec = st.write(tmp.path());
    let out = run_sweep(&["run", "--progress", "plain"], &spec);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let recs = read_records(&only_run(tmp.path(), "hz").join(RECORDS_JSONL))
        .unwrap()
        .records;
    let agent_calls = recs
        .iter()
        .filter(|r| r.phase != sweep::record::Phase::Reload)
        .count();
    assert_eq!(agent_calls, 500);
    assert_complete(&spec, &recs);
    let mut kinds = BTreeSet::new();
    for r in &recs {
        assert!((0..=3).contains(&r.attempts), "{r:?}");
        if r.ok {
            assert!(r.error_kind.is_none() && r.attempts >= 1);
            continue;
        }
        let kind = r
            .error_kind
            .as_deref()
            .expect("failed record without a kind");
        assert!(KNOWN_KINDS.contains(&kind), "unknown kind {kind}");
        assert!(r.error_message.is_some());
        kinds.insert(kind.to_string());
        if kind == "skipped_after_failure" {
            assert_eq!(r.attempts, 0);
        } else if !NOT_RETRIED.contains(&kind) {
            // a retryable failure is final only once the policy is used up
            assert_eq!(r.attempts, 3, "{r:?}");
        }
    }
    // the schedule really exercised the faults: timeouts, stream damage and statuses
    for k in [
        "timeout_first_token",
        "model_not_found",
        "skipped_after_failure",
    ] {
        assert!(kinds.contains(k), "{k} not seen in {kinds:?}");
    }
    assert!(kinds.len() >= 7, "{kinds:?}");
    assert!(
        recs.iter().any(|r| r.ok && r.attempts > 1),
        "no retry succeeded"
    );
    // every generation request the server saw is an attempt in some record, and vice versa
    let attempts: u64 = recs.iter().map(|r| u64::from(r.attempts)).sum();
    assert_eq!(srv.generation_requests(), attempts);
    let gen_paths = srv
        .requests()
        .iter()
        .filter(|q| q.path == "/api/generate" || q.path == "/api/chat")
        .count() as u64;
    assert_eq!(gen_paths, attempts);
    // every attempt, retries included, led with a nonce no other request carried: no prompt
    // cache can serve a retry what it kept from the failed attempt
    let firsts: Vec<String> = srv
        .requests()
        .iter()
        .filter(|q| q.path == "/api/generate")
        .filter_map(|q| q.json.as_ref()?.get("prompt")?.as_str().map(str::to_owned))
        .map(|p| p.lines().next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(firsts.len() as u64, attempts);
    let distinct: BTreeSet<&String> = firsts.iter().collect();
    assert_eq!(distinct.len(), firsts.len(), "a nonce was sent twice");
    assert!(
        firsts.iter().any(|l| l.contains("/attempt2/")),
        "{firsts:?}"
    );
}

/// A server that never sends a first token, with only `timeout_s` set (the first-token
/// deadline defaults to it): the record says `timeout_first_token`, not `timeout_total`.
#[test]
fn a_first_token_stall_with_only_timeout_s_is_labelled_first_token() {
    let srv = server(3, 0, FaultPlan::Always(Fault::Stall));
    let tmp = tempfile::tempdir().unwrap();
    let url = srv.url();
    let mut st = SpecText::new(&url, 2);
    st.backend_extra = "timeout_s = 0.5\nretry = { attempts = 1, backoff_ms = 0 }";
    let spec = st.write(tmp.path());
    let out = run_sweep(&["run", "-q"], &spec);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("--retry-failed"), "{err}");
    let recs = read_records(&only_run(tmp.path(), "hz").join(RECORDS_JSONL))
        .unwrap()
        .records;
    let stalled: Vec<&Record> = recs
        .iter()
        .filter(|r| r.error_kind.as_deref() != Some("skipped_after_failure"))
        .collect();
    assert!(stalled.len() >= 2, "{stalled:?}");
    for r in stalled {
        assert_eq!(
            r.error_kind.as_deref(),
            Some("timeout_first_token"),
            "{r:?}"
        );
        let m = r.error_message.as_deref().unwrap_or_default();
        assert!(m.contains("0.5 s"), "{m}");
    }
}

#[test]
fn unwritable_results_directory_is_a_clear_error() {
    let srv = server(2, 0, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let url = srv.url();
    let spec = SpecText::new(&url, 2).write(tmp.path());
    // root ignores permission bits, so block the experiment directory in a way that fails
    // for everyone: a regular file where `results/hz/` must be created.
    std::fs::create_dir_all(tmp.path().join("results")).unwrap();
    let blocker = tmp.path().join("results/hz");
    std::fs::write(&blocker, "not a directory").unwrap();
    let out = sweep().args(["run", "-q"]).arg(&spec).output().unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains(&blocker.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&blocker).unwrap(),
        "not a directory"
    );

    if !is_root() {
        // as an ordinary user, a read-only experiment directory (0555) fails the same way
        use std::os::unix::fs::PermissionsExt;
        std::fs::remove_file(&blocker).unwrap();
        std::fs::create_dir(&blocker).unwrap();
        std::fs::set_permissions(&blocker, std::fs::Permissions::from_mode(0o555)).unwrap();
        let out = sweep().args(["run", "-q"]).arg(&spec).output().unwrap();
        let (_, err) = text(&out);
        std::fs::set_permissions(&blocker, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(out.status.code(), Some(5), "{err}");
        assert!(err.contains(&blocker.display().to_string()), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn disk_full_stops_resumably_and_resume_stores_every_call_once() {
    let srv = server(3, 0, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let url = srv.url();
    let spec = SpecText::new(&url, 40).write(tmp.path());
    // RLIMIT_FSIZE of 24 KiB (48 blocks of 512 bytes) with SIGXFSZ ignored: a write past the
    // limit returns EFBIG, as a full disk returns ENOSPC. Only records.jsonl grows that big.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 48; exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_sweep"))
        .args(["run", "-q"])
        .arg(&spec)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let run = only_run(tmp.path(), "hz");
    let id = run_id(&run);
    let log = run.join(RECORDS_JSONL);
    assert!(err.contains(&log.display().to_string()), "{err}");
    assert!(err.contains("resumable"), "{err}");
    assert!(err.contains(&format!("--resume {id}")), "{err}");
    // what is stored is whole phases only: no torn line, nothing of the failed phase
    let before = read_records(&log).unwrap();
    assert!(before.torn_tail.is_none());
    assert!(!before.records.is_empty() && before.records.len() < 80);
    let agent_calls = before
        .records
        .iter()
        .filter(|r| r.phase != sweep::record::Phase::Reload)
        .count();
    assert_eq!(agent_calls % 2, 0, "a phase was stored in part");
    assert!(std::fs::metadata(&log).unwrap().len() <= 48 * 512);
    assert!(Manifest::read(&run).unwrap().finished_at.is_none());

    let out = run_sweep(&["run", "-q", "--resume", &id], &spec);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let after = read_records(&log).unwrap();
    assert!(after.torn_tail.is_none());
    assert_complete(&spec, &after.records);
    assert_eq!(&after.records[..before.records.len()], &before.records[..]);
    assert!(Manifest::read(&run).unwrap().finished_at.is_some());
}

#[test]
fn torn_last_line_is_cut_on_resume_with_a_warning_and_never_duplicated() {
    let srv = server(3, 0, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let url = srv.url();
    let spec = SpecText::new(&url, 6).write(tmp.path());
    let out = run_sweep(&["run", "-q", "--max-phases", "3"], &spec);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let run = only_run(tmp.path(), "hz");
    let log = run.join(RECORDS_JSONL);
    let stored: Vec<Record> = read_records(&log)
        .unwrap()
        .records
        .into_iter()
        .filter(|r| r.phase != sweep::record::Phase::Reload)
        .collect();
    assert_eq!(stored.len(), 6);
    // a crash mid-write: the first half of the next phase's first record, no newline
    let next = serde_json::to_string(&Record {
        rep: 5,
        ..stored[0].clone()
    })
    .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let good_len = bytes.len();
    let lines = bytes.iter().filter(|b| **b == b'\n').count();
    bytes.extend_from_slice(&next.as_bytes()[..next.len() / 2]);
    std::fs::write(&log, &bytes).unwrap();
    assert_eq!(
        read_records(&log).unwrap().torn_tail,
        Some((lines + 1, good_len as u64))
    );

    let out = run_sweep(&["run", "-q", "--resume", &run_id(&run)], &spec);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("warning") && err.contains("torn"), "{err}");
    assert!(err.contains(&log.display().to_string()), "{err}");
    let after = read_records(&log).unwrap();
    assert!(after.torn_tail.is_none());
    assert_complete(&spec, &after.records);
    let again: Vec<&Record> = after
        .records
        .iter()
        .filter(|r| r.phase != sweep::record::Phase::Reload)
        .collect();
    assert_eq!(
        again[..6].iter().map(|r| (*r).clone()).collect::<Vec<_>>(),
        stored
    );
}

/// Every file under `dir`, recursively, as bytes.
fn all_files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn api_key_reaches_the_server_and_nowhere_else() {
    const KEY: &str = "sk-secret-123";
    // every fourth generation answers 401 quoting the Authorization header back
    let plan = FaultPlan::Custom(Arc::new(|i| {
        if i % 4 == 1 {
            Fault::UnauthorizedEcho
        } else {
            Fault::None
        }
    }));
    let srv = server(3, 0, plan);
    let tmp = tempfile::tempdir().unwrap();
    let url = srv.url();
    let mut st = SpecText::new(&url, 6);
    st.kind = "openai";
    st.backend_extra = "api_key_env = \"SWEEP_TEST_KEY\"\nretry = { attempts = 2, backoff_ms = 0 }";
    let spec = st.write(tmp.path());
    let out = sweep()
        .args(["run", "--progress", "plain"])
        .arg(&spec)
        .env("SWEEP_TEST_KEY", KEY)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");

    let reqs = srv.requests();
    let gens: Vec<_> = reqs
        .iter()
        .filter(|q| q.path == "/v1/chat/completions")
        .collect();
    assert_eq!(gens.len() as u64, srv.generation_requests());
    assert!(!gens.is_empty());
    let bearer = format!("Bearer {KEY}");
    for q in &reqs {
        assert_eq!(
            q.header("authorization"),
            Some(bearer.as_str()),
            "{}",
            q.path
        );
    }
    assert!(reqs.iter().any(|q| q.path == "/v1/models"));

    // the echo reached the client and was recorded, with the key taken out
    let run = only_run(tmp.path(), "hz");
    let recs = read_records(&run.join(RECORDS_JSONL)).unwrap().records;
    let echoed: Vec<&Record> = recs
        .iter()
        .filter(|r| r.error_kind.as_deref() == Some("http_4xx"))
        .collect();
    assert!(!echoed.is_empty());
    assert!(echoed.iter().all(|r| r
        .error_message
        .as_deref()
        .is_some_and(|m| m.contains("Bearer <redacted>"))));
    assert!(stderr.contains("Bearer <redacted>"), "{stderr}");

    assert!(!stdout.contains(KEY), "key on stdout");
    assert!(!stderr.contains(KEY), "key on stderr: {stderr}");
    let mut files = Vec::new();
    all_files(&run, &mut files);
    assert!(files.iter().any(|(p, _)| p.ends_with("manifest.json")));
    assert!(files
        .iter()
        .any(|(p, _)| p.extension().is_some_and(|e| e == "md")));
    for (p, bytes) in &files {
        assert!(!contains(bytes, KEY), "key found in {}", p.display());
    }
}

#[test]
fn corpus_symlink_out_of_root_and_oversize_file_are_skipped_with_warnings() {
    let srv = server(3, 0, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        corpus.join("notes.md"),
        "# Notes\n\nchimera results look fine\n",
    )
    .unwrap();
    std::fs::write(corpus.join("data.csv"), "a,b\n1,2\n3,4\n").unwrap();
    std::fs::write(corpus.join("meta.json"), r#"{"name": "x", "n": 2}"#).unwrap();
    std::fs::write(
        corpus.join("huge.md"),
        format!("# Huge\n\n{}\n", "HUGE-MARKER ".repeat(400)),
    )
    .unwrap();
    std::fs::write(outside.join("secret.md"), "# Secret\n\nOUTSIDE-MARKER\n").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.md"), corpus.join("escape.md")).unwrap();
    std::os::unix::fs::symlink(&outside, corpus.join("escape_dir")).unwrap();

    let url = srv.url();
    let mut st = SpecText::new(&url, 2);
    st.corpus = corpus.clone();
    st.corpus_extra = "max_file_bytes = 1000";
    let spec = st.write(tmp.path());
    let out = run_sweep(&["run", "--progress", "plain"], &spec);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("escape.md") && err.contains("outside the corpus root"),
        "{err}"
    );
    assert!(
        err.contains("huge.md") && err.contains("max_file_bytes"),
        "{err}"
    );
    let run = only_run(tmp.path(), "hz");
    assert_eq!(Manifest::read(&run).unwrap().corpus_files, Some(3));
    let recs = read_records(&run.join(RECORDS_JSONL)).unwrap().records;
    assert_complete(&spec, &recs);
    assert!(recs.iter().all(|r| r.ok));
    // the prompts list the three files and none of the skipped ones
    let gens: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|q| q.path == "/api/generate")
        .collect();
    assert!(gens
        .iter()
        .any(|q| contains(&q.body, "Total files analyzed: 3") && contains(&q.body, "notes.md")));
    for q in &gens {
        for skipped in [
            "escape.md",
            "secret.md",
            "huge.md",
            "OUTSIDE-MARKER",
            "HUGE-MARKER",
        ] {
            assert!(!contains(&q.body, skipped), "{skipped} reached the model");
        }
    }
}

/// Peak RSS of `sweep run` over sweeps of different sizes against an instant server (one
/// token, no delays). Not part of the suite: run by hand with a release binary, e.g.
/// `SWEEP_BIN=target/release/sweep SWEEP_MEM_CALLS=10000,100000 cargo test --test it
/// runner_memory -- --ignored --nocapture`. Prints one line per size.
#[test]
#[ignore = "long: a manual memory measurement (see BENCHMARKS.md)"]
fn runner_memory_peak_rss_by_sweep_size() {
    let bin = std::env::var("SWEEP_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sweep").into());
    let sizes: Vec<u32> = std::env::var("SWEEP_MEM_CALLS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("SWEEP_MEM_CALLS: comma-separated call counts")
        })
        .collect();
    let srv = MockServer::start(MockConfig {
        tokens: 1,
        record_requests: false,
        ..Default::default()
    })
    .expect("mock server");
    let mut peaks = Vec::new();
    for calls in sizes {
        let tmp = tempfile::tempdir().unwrap();
        let corpus = tmp.path().join("corpus");
        std::fs::create_dir_all(&corpus).unwrap();
        std::fs::write(corpus.join("a.md"), "# A\n\ntext\n").unwrap();
        std::fs::write(corpus.join("b.csv"), "x,y\n1,2\n").unwrap();
        let url = srv.url();
        let mut st = SpecText::new(&url, calls / 2);
        st.corpus = corpus;
        st.concurrency = 4;
        let spec = st.write(tmp.path());
        let t = std::time::Instant::now();
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(&bin)
            .args(["run", "--progress", "quiet"])
            .arg(&spec)
            .stdin(Stdio::null())
            .output()
            .expect("/usr/bin/time (apt-get install time)");
        let (_, err) = text(&out);
        assert!(out.status.success(), "{err}");
        let kib: u64 = err
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|v| v.trim().parse().ok())
            .expect("no peak RSS in /usr/bin/time output");
        let recs = read_records(&only_run(tmp.path(), "hz").join(RECORDS_JSONL))
            .unwrap()
            .records;
        assert_eq!(recs.len(), (calls / 2 * 2) as usize);
        println!(
            "calls {calls}: peak RSS {:.1} MiB, wall {:.1} s",
            kib as f64 / 1024.0,
            t.elapsed().as_secs_f64()
        );
        peaks.push(kib);
    }
    assert!(!peaks.is_empty());
}
