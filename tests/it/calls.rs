//! The call store end to end, through the real binary against the Ollama and
//! OpenAI-compatible protocol peers: every call's request (byte for byte what the server
//! received) and answer kept beside the records, cut back and resumed with them, `--no-text`,
//! `sweep show`, API keys kept out, and persona modes checked on the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use sweep::record::Record;
use sweep::store::{read_calls, read_records, CallText, Manifest, CALLS_ZST, RECORDS_JSONL};
use sweep_testkit::{Fault, FaultPlan};

use crate::common::{assert_complete, only_run, quiet_server, root, run_id, run_sweep, sweep};

/// An experiment of backend `kind` at `url` with the given arms (TOML), no warm-up, `reps`
/// repetitions.
fn spec(dir: &Path, kind: &str, url: &str, reps: u32, backend_extra: &str, arms: &str) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "calls"
repetitions = {reps}
warmup = 0
seed = 5

[backend]
kind = "{kind}"
url = "{url}"
model = "gemma3:latest"
retry = {{ attempts = 1, backoff_ms = 0 }}
{backend_extra}

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

{arms}
"#,
        corpus = root().join("experiments/corpus").display(),
        results = dir.join("results").display(),
    );
    let path = dir.join("calls.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const SINGLE_AND_PAIR: &str = r#"
[[arm]]
name = "solo"
options = { num_ctx = 512 }

[[arm]]
name = "duo"
agent = "pair"
a = { num_ctx = 512 }
b = { num_ctx = 512 }
"#;

fn records(run: &Path) -> Vec<Record> {
    read_records(&run.join(RECORDS_JSONL)).unwrap().records
}

/// Every record of a sent call names exactly one stored text, every stored text one record,
/// with the same key; no id twice.
fn assert_texts_match_records(recs: &[Record], calls: &[CallText]) {
    let by_id: BTreeMap<&str, &CallText> = calls.iter().map(|c| (c.call_id.as_str(), c)).collect();
    assert_eq!(by_id.len(), calls.len(), "a call id stored twice");
    let ids: BTreeSet<&str> = recs.iter().filter_map(|r| r.call_id.as_deref()).collect();
    assert_eq!(
        ids.len(),
        recs.iter().filter(|r| r.call_id.is_some()).count()
    );
    assert_eq!(ids, by_id.keys().copied().collect::<BTreeSet<_>>());
    for r in recs {
        let Some(id) = r.call_id.as_deref() else {
            continue;
        };
        let c = by_id[id];
        assert_eq!(
            (&c.cell_id, c.rep, c.warmup, c.phase, &c.agent, c.stage, c.retry),
            (&r.cell_id, r.rep, r.warmup, r.phase, &r.agent, r.stage, r.retry)
        );
        assert_eq!(c.response.is_some(), r.ok, "{id}");
    }
}

#[test]
fn call_texts_are_the_requests_sent_and_resume_with_the_records() {
    let srv = quiet_server(5, 1, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), "ollama", &srv.url(), 2, "", SINGLE_AND_PAIR);
    let out = run_sweep(&["run", "-q", "--max-phases", "4"], &spec);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(tmp.path(), "calls");
    assert_eq!(
        Manifest::read(&run).unwrap().call_texts.as_deref(),
        Some(CALLS_ZST)
    );
    let recs = records(&run);
    let calls = read_calls(&run).unwrap();
    assert!(!calls.is_empty());
    assert_texts_match_records(&recs, &calls);

    // The stored body is, byte for byte, the body the server received; the answer is the
    // text the server streamed.
    let sent: Vec<Vec<u8>> = srv
        .requests()
        .into_iter()
        .filter(|q| q.path == "/api/generate")
        .map(|q| q.body)
        .collect();
    assert_eq!(sent.len(), calls.len(), "every generation is stored once");
    for c in &calls {
        let body = serde_json::to_vec(&c.request.body).unwrap();
        assert!(sent.contains(&body), "{}: not what was sent", c.call_id);
        assert_eq!(
            c.request.endpoint,
            format!("{}/api/generate", srv.url().trim_end_matches('/'))
        );
        assert!(!c.response.as_deref().unwrap_or_default().is_empty());
    }
    // The nonce line of an agent call's prompt carries its call id: run, call stem, then this
    // execution's session and counter, then the stage.
    let analysis = calls
        .iter()
        .find(|c| c.stage.as_str() == "analysis" && c.phase.as_str() != "reload")
        .unwrap();
    let prompt = analysis.request.body["prompt"].as_str().unwrap();
    let first = prompt.lines().next().unwrap();
    let stem = analysis.call_id.strip_suffix("/analysis").unwrap();
    assert!(
        first.starts_with(&format!("Run: {}/{stem}/", run_id(&run)))
            && first.ends_with("/analysis"),
        "{first}"
    );
    assert_eq!(analysis.request.body["options"]["num_ctx"], 512);

    // A crash after a phase's texts were written but before its records: cut the last
    // phase's records off (as a crash mid-write leaves them), and tear a frame onto the store.
    let text = std::fs::read_to_string(run.join(RECORDS_JSONL)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let last: Record = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    let keep = lines
        .iter()
        .take_while(|l| {
            let r: Record = serde_json::from_str(l).unwrap();
            (r.phase_key(), r.retry) != (last.phase_key(), last.retry)
        })
        .count();
    std::fs::write(
        run.join(RECORDS_JSONL),
        lines[..keep]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let mut store = std::fs::read(run.join(CALLS_ZST)).unwrap();
    store.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0x20]);
    std::fs::write(run.join(CALLS_ZST), &store).unwrap();

    let out = run_sweep(&["run", "-q", "--resume", &run_id(&run)], &spec);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(CALLS_ZST) && err.contains("cut 1 call group(s)") && err.contains("torn"),
        "{err}"
    );
    let recs = records(&run);
    assert_complete(&spec, &recs);
    let calls = read_calls(&run).unwrap();
    assert_texts_match_records(&recs, &calls);
    assert!(recs.iter().filter(|r| r.ok).all(|r| r.call_id.is_some()));
}

#[test]
fn no_text_stores_none_and_show_says_so() {
    let srv = quiet_server(4, 0, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), "ollama", &srv.url(), 1, "", SINGLE_AND_PAIR);
    let out = run_sweep(&["run", "-q", "--no-text"], &spec);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(tmp.path(), "calls");
    assert!(!run.join(CALLS_ZST).exists());
    assert_eq!(Manifest::read(&run).unwrap().call_texts, None);
    // the records still name their calls
    assert!(records(&run)
        .iter()
        .filter(|r| r.ok)
        .all(|r| r.call_id.is_some()));
    let out = sweep().arg("show").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-text"));
}

#[test]
fn show_prints_a_stored_call() {
    let srv = quiet_server(4, 0, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(tmp.path(), "ollama", &srv.url(), 2, "", SINGLE_AND_PAIR);
    let out = run_sweep(&["run", "-q"], &spec);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(tmp.path(), "calls");
    let recs = records(&run);
    let r = recs
        .iter()
        .find(|r| {
            r.arm == "duo"
                && r.agent == "B"
                && r.phase.as_str() == "concurrent"
                && r.stage.as_str() == "report"
                && r.rep == 1
        })
        .unwrap();
    let id = r.call_id.clone().unwrap();
    let stored = read_calls(&run)
        .unwrap()
        .into_iter()
        .find(|c| c.call_id == id)
        .unwrap();

    let out = sweep()
        .arg("show")
        .arg(&run)
        .args(["--call", &id])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("=== {id}  (cell {}, rep 2, agent B, phase {}, stage report, prompts sweep-1, persona system", r.cell_id, r.phase.as_str())), "{text}");
    // B is InsightAgent: its persona went as the system prompt
    assert!(text.contains("--- system\nYou are InsightAgent"), "{text}");
    let prompt = stored.request.body["prompt"].as_str().unwrap();
    assert!(text.contains(&format!("--- prompt\n{prompt}\n")), "{text}");
    assert!(text.contains("\"num_ctx\":512"), "{text}");
    let answer = stored.response.as_deref().unwrap();
    assert!(
        text.ends_with(&format!("--- response\n{answer}\n")),
        "{text}"
    );
    assert_eq!(text.matches("=== ").count(), 1);

    // The report links to its calls by id.
    let report = std::fs::read_to_string(
        run.join("reports")
            .join(&r.cell_id)
            .join("run_2")
            .join("chimera_agent_b_report.md"),
    )
    .unwrap();
    assert!(report.contains(&format!("- report: `{id}`\n")), "{report}");

    // Filters: an arm's analysis calls of rep 1, as JSON lines.
    let out = sweep()
        .arg("show")
        .arg(&run)
        .args([
            "--cell", "duo", "--rep", "1", "--stage", "analysis", "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let shown: Vec<CallText> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 agents × (concurrent, sequential)
    assert_eq!(shown.len(), 4);
    assert!(shown
        .iter()
        .all(|c| c.cell_id.starts_with("duo-") && c.rep == 0 && c.stage.as_str() == "analysis"));
    // A reader that has gone (`sweep show RUN | head -1`): the pipe is closed before sweep
    // has read its call store, so its first write meets EPIPE: exit 0, no panic.
    let mut child = sweep()
        .arg("show")
        .arg(&run)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // nothing matches: exit 2, said so
    let out = sweep()
        .arg("show")
        .arg(&run)
        .args(["--call", "nope/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no stored call matches"));
}

fn decompressed(run: &Path) -> Vec<u8> {
    zstd::stream::decode_all(std::fs::File::open(run.join(CALLS_ZST)).unwrap()).unwrap()
}

#[test]
fn an_api_key_never_reaches_the_call_store() {
    const KEY: &str = "sk-call-store-4242";
    // every third generation answers 401 quoting the Authorization header back
    let plan = FaultPlan::Custom(Arc::new(|i| {
        if i % 3 == 1 {
            Fault::UnauthorizedEcho
        } else {
            Fault::None
        }
    }));
    let srv = quiet_server(3, 0, plan);
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec(
        tmp.path(),
        "openai",
        &srv.url(),
        4,
        "api_key_env = \"SWEEP_CALLS_KEY\"",
        "[[arm]]\nname = \"solo\"\n",
    );
    let out = sweep()
        .args(["run", "-q"])
        .arg(&spec)
        .env("SWEEP_CALLS_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the key went to the server
    assert!(srv
        .requests()
        .iter()
        .any(|q| q.header("authorization") == Some(&format!("Bearer {KEY}"))));
    let run = only_run(tmp.path(), "calls");
    let plain = decompressed(&run);
    assert!(!plain.is_empty());
    assert!(
        !plain.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
        "the key is in the call store"
    );
    let calls = read_calls(&run).unwrap();
    // the echoed 401s are stored, redacted
    let failed: Vec<&CallText> = calls.iter().filter(|c| c.response.is_none()).collect();
    assert!(!failed.is_empty());
    assert!(failed
        .iter()
        .all(|c| c.error.as_deref().is_some_and(|e| e.contains("<redacted>"))));
    assert!(calls
        .iter()
        .all(|c| c.request.endpoint.ends_with("/v1/chat/completions")));
    assert_texts_match_records(&records(&run), &calls);
}

/// `persona_mode = "echo"` sends no system prompt (what reached the servers) and the report
/// still shows the persona; with `chimera-2025` the seed system's report prompt went out.
#[test]
fn echo_mode_sends_no_system_prompt_and_the_report_shows_it() {
    let srv = quiet_server(4, 0, FaultPlan::None);
    // the tuned B of the baseline-vs-chimera pair on its own server, as in gemma3.toml
    let srv_b = quiet_server(4, 0, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let arms = format!(
        r#"
[[arm]]
name = "seed"
agent = "pair"
persona_mode = "echo"
prompt_version = "chimera-2025"
a = {{ persona = "collector" }}
b = {{ persona = "insight", num_ctx = 512, endpoint = "{}" }}

[[arm]]
name = "sent"
agent = "pair"
a = {{ num_ctx = 512, persona_mode = "echo" }}
b = {{ num_ctx = 512 }}
"#,
        srv_b.url()
    );
    let spec = spec(tmp.path(), "ollama", &srv.url(), 1, "", &arms);
    let out = run_sweep(&["run", "-q"], &spec);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(tmp.path(), "calls");
    let gens: Vec<serde_json::Value> = srv
        .requests()
        .into_iter()
        .chain(srv_b.requests())
        .filter(|q| q.path == "/api/generate")
        .filter_map(|q| q.json)
        .filter(|j| j["prompt"].as_str().is_some_and(|p| p.starts_with("Run: ")))
        .collect();
    // the nonce line: `Run: <run>/<cell>/r1/<agent>/<phase>/<stage>`
    let of = |arm: &str, agent: &str| -> Vec<&serde_json::Value> {
        gens.iter()
            .filter(|j| {
                let first = j["prompt"].as_str().unwrap().lines().next().unwrap();
                first.contains(&format!("/{arm}-")) && first.contains(&format!("/{agent}/"))
            })
            .collect()
    };
    // 2 phases × 2 calls per agent
    for (arm, agent, sent) in [
        ("seed", "A", false),
        ("seed", "B", false),
        ("sent", "A", false),
        ("sent", "B", true),
    ] {
        let calls = of(arm, agent);
        assert_eq!(calls.len(), 4, "{arm} {agent}");
        assert!(
            calls.iter().all(|j| j.get("system").is_some() == sent),
            "{arm} {agent}: system sent = {}",
            !sent
        );
    }
    assert!(of("seed", "B").iter().any(|j| j["prompt"]
        .as_str()
        .unwrap()
        .contains("in the style of Technical Report 108")));
    assert!(of("sent", "B").iter().all(|j| j["system"]
        .as_str()
        .unwrap()
        .starts_with("You are InsightAgent")));

    let recs = records(&run);
    let cell = |arm: &str| recs.iter().find(|r| r.arm == arm).unwrap().cell_id.clone();
    assert!(recs
        .iter()
        .filter(|r| r.arm == "seed" && r.phase.as_str() != "reload")
        .all(|r| r.persona_mode.as_deref() == Some("echo")
            && r.prompt_version.as_deref() == Some("chimera-2025")));
    let dir = run.join("reports").join(cell("seed")).join("run_1");
    let b = std::fs::read_to_string(dir.join("chimera_insight_report.md")).unwrap();
    assert!(
        b.contains("## Persona Prompt\n```\nYou are InsightAgent"),
        "{b}"
    );
    assert!(b.contains("not sent (persona_mode = \"echo\""), "{b}");
    let a = std::fs::read_to_string(dir.join("baseline_collector_report.md")).unwrap();
    assert!(
        a.contains("## Persona Prompt\n```\nYou are DataCollector-9000"),
        "{a}"
    );
    let dir = run.join("reports").join(cell("sent")).join("run_1");
    let b = std::fs::read_to_string(dir.join("chimera_agent_b_report.md")).unwrap();
    assert!(b.contains("persona sent as the system prompt"), "{b}");

    // The methods printed after the tables say which prompts ran and which personas were
    // sent (once for the run, not under every table).
    let out = sweep().arg("analyze").arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "**Prompts.** Prompt set chimera-2025, sweep-1; personas sent as the system prompt: sent/B insight; \
             personas shown in the reports but not sent (persona_mode = \"echo\", as the seed \
             system did): seed/A collector, seed/B insight, sent/A collector."
        ),
        "{text}"
    );
}
