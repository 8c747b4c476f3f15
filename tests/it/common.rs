//! Helpers shared by the end-to-end tests that drive the real `sweep` binary against the
//! Ollama protocol peer (`tests/runner.rs`, `tests/hardening.rs`).
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use sweep::plan::Plan;
use sweep::record::Record;
use sweep::spec::Spec;
use sweep_testkit::{FaultPlan, MockConfig, MockServer};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An Ollama peer answering `tokens` tokens `gap_ms` apart, with the given faults and the
/// peer's realistic model loads: the first request, and the first after a change of
/// `num_ctx`/`num_gpu`/model or an unload, reports a cold `load_duration` of 0.5–3 s (a tenth
/// of it really spent before the first token); every other request a warm one of 1–30 ms,
/// different on every call (see `sweep_testkit::LoadTimes`).
pub fn quiet_server(tokens: usize, gap_ms: u64, faults: FaultPlan) -> MockServer {
    MockServer::start(MockConfig {
        tokens,
        inter_token_delay: Duration::from_millis(gap_ms),
        first_token_delay: Duration::from_millis(gap_ms),
        faults,
        ..Default::default()
    })
    .expect("mock server")
}

/// The binary under test, with no stdin.
pub fn sweep() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sweep"));
    c.stdin(Stdio::null());
    c
}

/// `sweep ARGS… SPEC`, run to completion.
pub fn run_sweep(args: &[&str], spec: &Path) -> Output {
    sweep().args(args).arg(spec).output().unwrap()
}

/// The one run of `experiment` under `dir/results` (hidden `.creating-*` staging directories
/// are a crash's leftovers, not runs).
pub fn only_run(dir: &Path, experiment: &str) -> PathBuf {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join("results").join(experiment))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

pub fn run_id(run: &Path) -> String {
    run.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every planned call, each exactly once (reload probes, stored as warm-up records of phase
/// `reload`, are the runner's own and counted apart).
pub fn assert_complete(spec_path: &Path, records: &[Record]) {
    let plan = Plan::build(&Spec::load(spec_path).unwrap(), None);
    let records: Vec<&Record> = records
        .iter()
        .filter(|r| r.phase != sweep::record::Phase::Reload && !r.superseded)
        .collect();
    assert_eq!(records.len(), plan.total_calls());
    let mut seen: BTreeMap<(String, u32, bool, String, String, String), usize> = BTreeMap::new();
    for r in records {
        let key = (
            r.cell_id.clone(),
            r.rep,
            r.warmup,
            r.phase.as_str().to_string(),
            r.agent.clone(),
            r.stage.as_str().to_string(),
        );
        *seen.entry(key).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicates: {dups:?}");
    assert_eq!(seen.len(), plan.total_calls());
}

/// The cached llama-server, found by the same script that builds it. Absent: fail loudly.
pub fn llama_server_binary() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/llama-server.sh"))
        .arg("--path")
        .output()
        .expect("run scripts/llama-server.sh --path");
    assert!(
        out.status.success(),
        "llama-server is not built: run scripts/llama-server.sh (scripts/test.sh does) \
         before this test. Script said: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// True while `pid` is a live process (a zombie nobody reaped yet counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(") ")
                .map(|(_, rest)| rest.chars().next().unwrap_or('?'));
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}
