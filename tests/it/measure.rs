//! What is measured and what is thrown away, end to end against the realistic Ollama peer
//! (warm `load_duration` of a few ms varying per call, 0.5–3 s loads after an options change,
//! `/api/ps` answering from the same state, evictions): reload calls are excluded with reason
//! `reload`, an eviction mid-run shows as `unexpected_reload`, warm calls are measured, and
//! the tables count exactly what the records say. A run whose every call is excluded is never
//! silently empty: `run`, `analyze`, `report` and `compare` exit 3 and name the cells.

use crate::common::{only_run, root, run_sweep, sweep};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sweep::record::{ColdReason, Phase, Record};
use sweep::store::read_records;
use sweep_testkit::{MockConfig, MockServer};

/// Two cells that need different runners (num_ctx 2048 and 4096: Ollama raises a smaller
/// num_ctx of a multimodal gemma3 to 2048, so those would share one), a baseline on server
/// defaults, 3 reps.
fn write_spec(dir: &Path, url: &str, order: &str, analysis: &str) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "ms"
repetitions = 3
warmup = 1
seed = 5
order = "{order}"

[backend]
kind = "ollama"
url = "{url}"
model = "gemma3:latest"
timeout_s = 20

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

{analysis}

[[arm]]
name = "baseline"

[[arm]]
name = "chimera"
max_tokens = 16
[arm.grid]
num_ctx = [2048, 4096]
"#,
        corpus = root().join("experiments/corpus").display(),
        results = dir.join("results").display(),
    );
    let path = dir.join("ms.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn peer(evict_after: Vec<u64>) -> MockServer {
    MockServer::start(MockConfig {
        tokens: 6,
        inter_token_delay: Duration::from_millis(2),
        evict_after,
        ..Default::default()
    })
    .expect("peer")
}

fn records(run: &Path) -> Vec<Record> {
    read_records(&run.join("records.jsonl")).unwrap().records
}

#[test]
fn reloads_are_probed_evictions_are_seen_and_warm_calls_measured() {
    // Evict the model after generation request 4 (a keep_alive expiry or another client):
    // in the reload-minimizing order that is between two units of the first reload group
    // (probe = request 0, then 2 calls per unit), so the runner sees it in /api/ps before the
    // next phase and probes again.
    let server = peer(vec![4]);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), "interleaved", "");
    let out = run_sweep(&["run", "--progress", "plain"], &spec);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let run = only_run(tmp.path(), "ms");
    let recs = records(&run);
    let probes: Vec<&Record> = recs.iter().filter(|r| r.phase == Phase::Reload).collect();
    let calls: Vec<&Record> = recs.iter().filter(|r| r.phase != Phase::Reload).collect();
    let plan = sweep::plan::Plan::build(&sweep::spec::Spec::load(&spec).unwrap(), None);
    assert_eq!(calls.len(), plan.total_calls());
    // One probe per reload of the plan, each warm-up and cold with reason `reload`, and the
    // one the eviction caused with reason `unexpected_reload`.
    let reload = probes
        .iter()
        .filter(|r| r.cold_reason == Some(ColdReason::Reload))
        .count();
    let unexpected = probes
        .iter()
        .filter(|r| r.cold_reason == Some(ColdReason::UnexpectedReload))
        .count();
    assert_eq!(reload, plan.reloads(), "{probes:#?}");
    assert_eq!(unexpected, 1, "{probes:#?}");
    assert!(probes.iter().all(|r| r.warmup && r.cold && r.ok));
    // The probes took the loads: the first one (a fresh server) and the one after the
    // eviction report the peer's cold range (0.5–3 s). (A probe after a key change can find
    // the model loaded: Ollama's default context for this model is 2048, so the baseline
    // and num_ctx = 2048 share one runner; the runner's reload key is conservative.)
    let unexpected_probe = probes
        .iter()
        .find(|r| r.cold_reason == Some(ColdReason::UnexpectedReload))
        .unwrap();
    for p in [probes[0], *unexpected_probe] {
        let l = p.load_ms.unwrap();
        assert!((500.0..3000.0).contains(&l), "probe load {l}");
    }
    for p in &probes {
        let loaded = p
            .loaded
            .as_ref()
            .expect("what /api/ps said after the probe");
        assert_eq!(loaded.name, "gemma3:latest");
    }
    // ... and every measured call is warm: a few ms of load, different from call to call.
    let warm: Vec<f64> = calls
        .iter()
        .filter(|r| !r.warmup)
        .map(|r| r.load_ms.unwrap())
        .collect();
    assert!(warm.iter().all(|l| (1.0..30.0).contains(l)), "{warm:?}");
    let distinct: std::collections::BTreeSet<u64> = warm.iter().map(|l| l.to_bits()).collect();
    assert!(distinct.len() > warm.len() / 2, "load_ms varies per call");
    assert!(calls.iter().all(|r| !r.cold), "no measured call is cold");
    // The run summary says what was excluded, by reason.
    assert!(err.contains(&format!("reload {reload}")), "{err}");
    assert!(err.contains("unexpected_reload 1"), "{err}");

    // The analysis counts exactly what the records say.
    let out = sweep().arg("analyze").arg(&run).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("analysis/summary.json")).unwrap())
            .unwrap();
    let mut by_cell: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for r in &recs {
        let e = by_cell.entry(r.cell_id.clone()).or_default();
        e.0 += 1;
        e.1 += u64::from(r.warmup);
        e.2 += u64::from(!r.warmup && r.ok && !r.cold);
    }
    for c in summary["cells"].as_array().unwrap() {
        let id = c["cell_id"].as_str().unwrap();
        let (calls, warmup, measured) = by_cell[id];
        assert_eq!(c["counts"]["calls"], calls, "{id}");
        assert_eq!(c["counts"]["warmup"], warmup, "{id}");
        assert_eq!(c["counts"]["measured"], measured, "{id}");
        assert_eq!(
            c["counts"]["cold"], 0,
            "{id}: probes are warm-up, not cold measured calls"
        );
    }
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("Excluded by rule and counted:"), "{md}");
    assert!(
        md.contains("median over its calls (analysis + report stage)"),
        "{md}"
    );
    let measured: u64 = by_cell.values().map(|v| v.2).sum();
    assert!(
        md.contains(&format!(
            "Token counts of the measured calls from: usage {measured}."
        )),
        "{md}"
    );
}

#[test]
fn a_run_with_nothing_measured_is_never_silently_empty() {
    // A cold threshold below every warm load: every measured call is cold (`load_ms`).
    let server = peer(Vec::new());
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(
        tmp.path(),
        &server.url(),
        "blocks",
        "[analysis]\ncold_load_ms = 0.5",
    );
    let out = run_sweep(&["run", "-q"], &spec);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "run: {err}");
    assert!(err.contains("nothing measured in 3 cell(s)"), "{err}");
    let run = only_run(tmp.path(), "ms");
    assert!(records(&run)
        .iter()
        .filter(|r| !r.warmup)
        .all(|r| r.cold && r.cold_reason == Some(ColdReason::LoadMs)));
    for cmd in ["analyze", "report"] {
        let out = sweep().arg(cmd).arg(&run).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{cmd}: {err}");
        assert!(
            err.contains("nothing measured in 3 of 3 cells") && err.contains("baseline-"),
            "{cmd}: {err}"
        );
        assert!(err.contains("cold (load_ms"), "{cmd}: {err}");
    }
    // The gate against itself: nothing to compare, so no pass.
    let out = sweep()
        .args(["compare", "--quiet"])
        .arg(&run)
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
