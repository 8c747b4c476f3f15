//! `[server]`: sweep starts the real llama-server (built by `scripts/llama-server.sh`) for
//! each server configuration of the grid, on the Gemma 3 270M GGUF. The tests check, from
//! the server's own log and `/props`, that every cell ran on a server with exactly its
//! values; that a server killed mid-run is restarted and the run completes; and, by PID, that
//! no server outlives sweep: after a normal end, Ctrl-C (SIGINT), SIGTERM, and kill -9.

use crate::common::{alive, assert_complete, llama_server_binary, only_run, root, sweep};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use sweep::plan::Plan;
use sweep::server::{read_events, ServerEvent};
use sweep::spec::Spec;
use sweep::store::read_records;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";

/// A single-agent arm over `grid` (and `extra_arms`) on a managed llama-server.
fn write_spec(dir: &Path, reps: u32, max_tokens: u32, grid: &str, extra_arms: &str) -> PathBuf {
    assert!(
        root().join(MODEL).is_file(),
        "{MODEL} is missing: run scripts/fetch-model.sh"
    );
    let text = format!(
        r#"[experiment]
name = "managed"
repetitions = {reps}
warmup = 0
seed = 5
prompt_version = "small-1"

[backend]
kind = "openai"
timeout_s = 120

[server]
preset = "llama-server"
command = "{bin}"
model_path = "{model}"
args = ["--no-jinja", "--chat-template", "gemma", "-t", "2"]
ready_timeout_s = 60
stop_grace_s = 5

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[[arm]]
name = "tuned"
agent = "single"
max_tokens = {max_tokens}
[arm.grid]
{grid}
{extra_arms}"#,
        bin = llama_server_binary().display(),
        model = root().join(MODEL).display(),
        corpus = root().join("experiments/corpus").display(),
        results = dir.join("results").display(),
    );
    let path = dir.join("managed.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// num_ctx (-c) × flash attention (-fa): four server configurations.
const GRID: &str = "num_ctx = [1024, 2048]\nflash_attn = [false, true]";

/// A pair whose agents need two servers (-c differs): B runs on a second one.
const PAIR: &str = r#"
[[arm]]
name = "hetero"
agent = "pair"
a = { num_ctx = 1024, max_tokens = 8 }
b = { num_ctx = 2048, max_tokens = 8 }
"#;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn starts(run: &Path) -> Vec<ServerEvent> {
    read_events(run)
        .into_iter()
        .filter(|e| matches!(e, ServerEvent::Start { .. }))
        .collect()
}

/// The value llama.cpp logged for `key` (`key = value` or `key: value`), last occurrence.
fn logged(log: &str, key: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(key)?;
            let v = rest
                .trim_start_matches([' ', '=', ':'])
                .split_whitespace()
                .next()?;
            Some(v.trim_end_matches(',').to_string())
        })
        .next_back()
}

#[test]
fn each_cell_runs_on_a_llama_server_with_exactly_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = write_spec(dir.path(), 2, 8, GRID, PAIR);
    let out = sweep()
        .current_dir(root())
        .args(["run", "--quiet"])
        .arg(&spec_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sweep run failed: {stderr}");
    let run = only_run(dir.path(), "managed");
    let records = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec_path, &records);
    assert!(
        records.iter().all(|r| r.error_kind.is_none()),
        "every call answered: {:?}",
        records.iter().find(|r| r.error_kind.is_some())
    );

    let spec = Spec::load(&spec_path).unwrap();
    let plan = Plan::build(&spec, None);
    let events = read_events(&run);
    let mut config_of_instance = BTreeMap::new();
    let mut pids = Vec::new();
    for e in &events {
        if let ServerEvent::Start {
            instance,
            options,
            reported,
            mismatches,
            log,
            healthy_ms,
            first_token_ms,
            pid,
            command,
            ..
        } = e
        {
            pids.push(*pid);
            config_of_instance.insert(*instance, options.clone());
            assert!(mismatches.is_empty(), "{mismatches:?}");
            // From /props: the context of one slot and the slots.
            assert_eq!(reported.n_ctx, options.num_ctx.map(u64::from), "{command}");
            assert_eq!(reported.slots, Some(1));
            // From the captured log, read here independently of sweep's own parser.
            let text = std::fs::read_to_string(run.join(log)).unwrap();
            let fa =
                logged(&text, "flash_attn").unwrap_or_else(|| panic!("{log}: no flash_attn line"));
            // Unset (the pair's servers): llama.cpp's own default, "auto".
            let want = match options.flash_attn {
                Some(true) => "enabled",
                Some(false) => "disabled",
                None => "auto",
            };
            assert_eq!(fa, want, "{log}");
            let n_ctx = logged(&text, "n_ctx_slot").or_else(|| logged(&text, "n_ctx_seq"));
            assert_eq!(n_ctx, options.num_ctx.map(|n| n.to_string()), "{log}");
            assert!(*healthy_ms > 0.0 && first_token_ms.unwrap() >= *healthy_ms);
        }
    }
    // Four configurations of the grid (the pair's two are among them: flash_attn unset).
    let mut configs: Vec<String> = config_of_instance.values().map(|o| o.canonical()).collect();
    configs.sort();
    configs.dedup();
    assert_eq!(configs.len(), 6, "{configs:?}");
    // Every cell was served only by servers of its own configuration: a single cell's by
    // its one, the pair's by A's and B's.
    let mut served: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &events {
        if let ServerEvent::Stop {
            instance, cells, ..
        } = e
        {
            for id in cells {
                let cell = plan.cell(id).unwrap();
                let got = &config_of_instance[instance];
                assert!(
                    cell.members()
                        .iter()
                        .any(|m| m.options.num_ctx == got.num_ctx
                            && m.options.flash_attn == got.flash_attn),
                    "{id} on instance {instance} ({})",
                    got.canonical()
                );
                served.entry(id.clone()).or_default().push(got.canonical());
            }
        }
    }
    assert_eq!(served.len(), plan.cells.len(), "{served:?}");
    let pair = plan.cells.iter().find(|c| c.arm() == "hetero").unwrap();
    let mut pair_configs = served[&pair.id].clone();
    pair_configs.sort();
    pair_configs.dedup();
    assert_eq!(pair_configs, vec!["num_ctx=1024", "num_ctx=2048"]);
    // B's calls went to the second server.
    let endpoint = |slot: &str| {
        let mut e: Vec<&str> = records
            .iter()
            .filter(|r| r.cell_id == pair.id && r.agent == slot)
            .map(|r| r.endpoint.as_str())
            .collect();
        e.sort();
        e.dedup();
        e
    };
    assert_eq!(endpoint("A").len(), 1);
    assert_eq!(endpoint("B").len(), 1);
    assert_ne!(endpoint("A"), endpoint("B"));
    for pid in pids {
        assert!(!alive(pid), "llama-server {pid} outlived the run");
    }
    // The start-up table.
    let rep = sweep()
        .current_dir(root())
        .args(["report"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let md = std::fs::read_to_string(run.join("tables/server_startup.md")).unwrap();
    assert!(md.contains("Server start-up"), "{md}");
    assert!(md.contains("num_ctx=2048, flash_attn=true"), "{md}");
    eprintln!("{md}");
}

/// Starts `sweep run` in the background and waits for its first server.
fn start_and_wait_for_server(spec: &Path, dir: &Path) -> (std::process::Child, PathBuf, u32) {
    let child = sweep()
        .current_dir(root())
        .args(["run", "--quiet"])
        .arg(spec)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = PathBuf::new();
    let mut pid = 0;
    wait_until("the first managed server", Duration::from_secs(120), || {
        let Ok(rd) = std::fs::read_dir(dir.join("results/managed")) else {
            return false;
        };
        for e in rd.flatten() {
            // The server serving now: the last one started, while it runs.
            if let Some(ServerEvent::Start { pid: p, .. }) = starts(&e.path()).last() {
                if alive(*p) {
                    run = e.path();
                    pid = *p;
                    return true;
                }
            }
        }
        false
    });
    (child, run, pid)
}

#[test]
fn no_server_outlives_sweep_after_ctrl_c_sigterm_or_kill_9() {
    for (signal, name) in [
        (libc::SIGINT, "SIGINT (Ctrl-C)"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGKILL, "SIGKILL"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spec = write_spec(dir.path(), 20, 32, GRID, "");
        let (mut child, run, pid) = start_and_wait_for_server(&spec, dir.path());
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "{name}: {status:?}");
        wait_until(
            &format!("llama-server {pid} to be gone after {name} of sweep"),
            Duration::from_secs(15),
            || !alive(pid),
        );
        for e in starts(&run) {
            if let ServerEvent::Start { pid, .. } = e {
                assert!(!alive(pid), "{name}: llama-server {pid} outlived sweep");
            }
        }
    }
}

#[test]
fn a_server_killed_mid_run_is_restarted_and_the_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), 4, 16, "num_ctx = [1024]", "");
    let (child, run, pid) = start_and_wait_for_server(&spec, dir.path());
    // Let it serve a call or two, then kill it.
    wait_until("a stored phase", Duration::from_secs(120), || {
        read_records(&run.join("records.jsonl"))
            .map(|r| !r.records.is_empty())
            .unwrap_or(false)
    });
    // SAFETY: a process this test's child started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let records = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &records);
    let events = read_events(&run);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ServerEvent::Exited { instance: 1, .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(
            |e| matches!(e, ServerEvent::Start { reason, .. } if reason.starts_with("restart after exit"))
        ),
        "{events:?}"
    );
    for e in &events {
        if let ServerEvent::Start { pid, .. } = e {
            assert!(!alive(*pid));
        }
    }
}

#[test]
fn a_launch_flag_on_an_external_openai_server_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("external.toml");
    std::fs::write(
        &path,
        format!(
            "[experiment]\nname = \"x\"\n\n[backend]\nkind = \"openai\"\nurl = \"http://127.0.0.1:8080\"\nmodel = \"m\"\n\n[corpus]\npath = \"{}\"\n\n[[arm]]\nname = \"a\"\n[arm.grid]\nnum_ctx = [256, 1024]\n",
            root().join("experiments/corpus").display()
        ),
    )
    .unwrap();
    let out = sweep().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("external.toml:15:12"), "{err}");
    assert!(err.contains("[server]") && err.contains("-c"), "{err}");
}

/// Workload levels on the real llama-server with four slots (`parallel = 4`, `-np 4`): N
/// agents at once for N = 1, 2, 4, 8 against one server on the Gemma 3 270M GGUF. What the
/// physics says and the test checks, on medians over 3 reps:
/// - total tokens/s rises from 1 to 2 to 4 agents: the slots decode together in one batch,
///   and a batch of a 270M model costs little more per step than one sequence;
/// - tokens/s per user falls from 1 to 4 agents: each step of a larger batch takes longer;
/// - TTFT at 8 agents exceeds TTFT at 4: four of the eight analyses wait for a free slot,
///   and the server's own queue (`/metrics`, requests deferred) says so: 0 at 4, ≥ 1 at 8;
/// - the capacity under `[slo] ttft_ms` is what the records say when recomputed here from
///   `records.jsonl` (every call's TTFT against the limit, per rep and level), independent
///   of sweep's analysis code.
///
/// Throughput on a 2-core machine is the measurement, so the test runs alone: ignored in
/// the parallel pass and run by `scripts/test.sh` on its own (`--ignored --test-threads=1`).
/// Run among the other tests on CI, a neighbour's build or model run took the cores during
/// the 4-agent reps (total 11.6 tok/s against 18.2 at one agent), which measures the
/// neighbour, not the slots.
#[test]
#[ignore = "runs alone: scripts/test.sh runs it after the parallel pass"]
fn levels_on_four_slots_raise_throughput_then_queue() {
    assert!(
        root().join(MODEL).is_file(),
        "{MODEL} is missing: run scripts/fetch-model.sh"
    );
    const SLO_TTFT_MS: f64 = 3000.0;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"[experiment]
name = "slots"
repetitions = 3
warmup = 1
seed = 5
prompt_version = "small-1"

[backend]
kind = "openai"
timeout_s = 300

[server]
preset = "llama-server"
command = "{bin}"
model_path = "{model}"
args = ["--no-jinja", "--chat-template", "gemma", "-t", "2"]
ready_timeout_s = 60
stop_grace_s = 5

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[slo]
ttft_ms = {SLO_TTFT_MS}
percentile = 90

[[arm]]
name = "slots4"
agent = "single"
max_tokens = 64
options = {{ parallel = 4, num_ctx = 4096 }}
[arm.grid]
agents = [1, 2, 4, 8]
"#,
        bin = llama_server_binary().display(),
        model = root().join(MODEL).display(),
        corpus = root().join("experiments/corpus/reports/llama3").display(),
        results = dir.path().join("results").display(),
    );
    let spec = dir.path().join("slots.toml");
    std::fs::write(&spec, text).unwrap();
    let t0 = Instant::now();
    let out = sweep()
        .args(["run", "--progress", "plain"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("sweep run: {:.0} s", t0.elapsed().as_secs_f64());
    let run = only_run(dir.path(), "slots");
    let a = sweep::analysis::analyze(&run, &sweep::analysis::AnalysisOptions::default()).unwrap();
    let w = &a.workload;
    let median = |r: &sweep::analysis::RepStats| r.summary.value().map(|s| s.median).unwrap();
    let at = |n: u32| w.levels.iter().find(|l| l.agents == n).unwrap();
    for n in [1, 2, 4, 8] {
        let l = at(n);
        eprintln!(
            "N={n}: total {:.1} tok/s, per user {:.1} tok/s, TTFT p50 {:.0} ms p95 {:.0} ms, \
             within SLO {}/{}",
            median(&l.total_tps),
            median(&l.user_tps),
            median(&l.ttft_p50_ms),
            median(&l.ttft_p95_ms),
            l.slo_reps_met,
            l.slo_reps
        );
        assert_eq!(l.total_tps.reps.len(), 3, "N={n}: {l:?}");
    }
    let total = |n| median(&at(n).total_tps);
    assert!(
        total(1) < total(2) && total(2) < total(4),
        "total tok/s 1, 2, 4: {} {} {}",
        total(1),
        total(2),
        total(4)
    );
    assert!(median(&at(4).user_tps) < median(&at(1).user_tps));
    assert!(median(&at(8).ttft_p50_ms) > median(&at(4).ttft_p50_ms));
    // The server's own queue (sweep starts it with --metrics): four agents fit the four
    // slots; of eight, some wait.
    let queue = |n| at(n).server_queue_max.as_ref().map(median);
    assert_eq!(queue(4), Some(0.0));
    assert!(queue(8).is_some_and(|q| q >= 1.0), "{:?}", queue(8));

    // Capacity recomputed from the records: per (level, rep) the share of measured calls
    // with TTFT ≤ the limit, ≥ 90% to be within; per rep the climb up the levels.
    let records = read_records(&run.join("records.jsonl")).unwrap().records;
    let level_of: BTreeMap<String, u32> = w
        .levels
        .iter()
        .map(|l| (l.cell_id.clone(), l.agents))
        .collect();
    let mut good: BTreeMap<(u32, u32), (usize, usize)> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| !r.warmup && !r.cold && !r.superseded)
    {
        let e = good.entry((level_of[&r.cell_id], r.rep)).or_default();
        e.1 += 1;
        if r.ok && r.ttft_ms.is_some_and(|t| t <= SLO_TTFT_MS) {
            e.0 += 1;
        }
    }
    let mut expected = Vec::new();
    for rep in 0..3 {
        let mut cap = 0.0;
        for n in [1, 2, 4, 8] {
            let (g, all) = good[&(n, rep)];
            if g * 10 >= all * 9 {
                cap = f64::from(n);
            } else {
                break;
            }
        }
        expected.push(cap);
    }
    eprintln!("capacity per rep: {expected:?}");
    assert_eq!(w.capacity[0].per_rep.reps, expected);
}
