//! `sweep compare` and `sweep baseline save` on synthetic stores: seeded lognormal TTFT
//! (~700 ms, CV 5%) and decode rates (~40 tok/s), written with the real `RunStore` and
//! checked through the real binary, plus seeded false-alarm and power loops at library level.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use sweep::compare::{self, CompareError, Metric, RunData, Settings, Verdict};
use sweep::env::{GpuInfo, HostInfo};
use sweep::record::{Phase, Record, Stage};
use sweep::store::{Manifest, RunStore};

/// How a synthetic run is generated.
#[derive(Clone)]
struct Gen {
    cells: usize,
    reps: u32,
    /// TTFT multiplier per cell index (1.10 = a 10% regression).
    ttft_factor: BTreeMap<usize, f64>,
    driver: String,
    digest: String,
    spec: String,
    /// The first `failures` measured calls of cell 0 fail (excluded and counted).
    failures: usize,
}

impl Default for Gen {
    fn default() -> Self {
        Gen {
            cells: 3,
            reps: 10,
            ttft_factor: BTreeMap::new(),
            driver: "550.54.15".into(),
            digest: "sha256:aaaa".into(),
            spec: String::new(),
            failures: 0,
        }
    }
}

/// Standard normal by Box–Muller (rand 0.8 without rand_distr).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn manifest(g: &Gen, run_id: &str) -> Manifest {
    Manifest {
        experiment: "nightly".into(),
        run_id: run_id.into(),
        spec_file: "experiments/nightly.toml".into(),
        spec_hash: "spec-hash-1".into(),
        spec: g.spec.clone(),
        host: HostInfo {
            cpu_model: "Intel Xeon Test".into(),
            gpus: vec![GpuInfo {
                name: "NVIDIA H100".into(),
                driver: g.driver.clone(),
                memory_mib: Some(81559),
            }],
            ..Default::default()
        },
        backend: sweep::backend::BackendInfo {
            kind: "ollama".into(),
            model_digest: Some(g.digest.clone()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Records grouped by phase: one warm-up rep (first call cold), then `reps` measured reps of
/// two calls each, per cell.
fn records(g: &Gen, run_id: &str, seed: u64) -> Vec<Vec<Record>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut groups = Vec::new();
    let mut failures = g.failures;
    for cell in 0..g.cells {
        let f = g.ttft_factor.get(&cell).copied().unwrap_or(1.0);
        for (rep, warmup) in std::iter::once((0, true)).chain((0..g.reps).map(|r| (r, false))) {
            let mut group = Vec::new();
            for (k, stage) in [Stage::Analysis, Stage::Report].into_iter().enumerate() {
                let ttft = f * 700.0 * (0.05 * normal(&mut rng)).exp();
                let tps = 40.0 * (0.03 * normal(&mut rng)).exp();
                let tokens = 128u64;
                let eval_ms = tokens as f64 / tps * 1000.0;
                let cold = warmup && k == 0;
                let fail = !warmup && cell == 0 && failures > 0;
                failures -= fail as usize;
                group.push(Record {
                    experiment: "nightly".into(),
                    run_id: run_id.into(),
                    arm: "chimera".into(),
                    cell_id: format!("chimera-c{cell}"),
                    agent: "single".into(),
                    phase: Phase::Single,
                    stage,
                    rep,
                    warmup,
                    model: "gemma3:latest".into(),
                    ok: !fail,
                    error_kind: fail.then(|| "timeout".to_string()),
                    attempts: 1,
                    ttft_ms: Some(ttft + if cold { 500.0 } else { 0.0 }),
                    e2e_ms: Some(ttft + eval_ms),
                    load_ms: cold.then_some(480.0),
                    eval_ms: Some(eval_ms),
                    output_tokens: Some(tokens),
                    decode_tps: Some(tps),
                    cold,
                    cache_defeated: true,
                    ..Default::default()
                });
            }
            groups.push(group);
        }
    }
    groups
}

/// Writes a run with the real store (manifest, fsynced records.jsonl).
fn write_run(root: &Path, name: &str, g: &Gen, seed: u64) -> PathBuf {
    let dir = root.join(name);
    let mut store = RunStore::create(&dir, &manifest(g, name)).unwrap();
    for group in records(g, name, seed) {
        store.append(&group).unwrap();
    }
    dir
}

/// The same run in memory, for the many-trial loops (no thousands of fsyncs).
fn mem_run(g: &Gen, name: &str, seed: u64) -> RunData {
    RunData {
        dir: PathBuf::from(name),
        manifest: manifest(g, name),
        records: records(g, name, seed).into_iter().flatten().collect(),
        torn_tail: false,
    }
}

fn sweep(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sweep"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 10% TTFT slow-down in every cell (as a driver or build change would cause).
fn regression() -> Gen {
    Gen {
        ttft_factor: (0..3).map(|c| (c, 1.10)).collect(),
        ..Gen::default()
    }
}

/// Rough well-formedness: every tag closes in order; returns (tag name, attributes) list.
fn xml_elements(xml: &str) -> Vec<(String, String)> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find('<') {
        let text = &rest[..i];
        assert!(!text.contains('>'), "unescaped '>' in text: {text}");
        let j = rest[i..].find('>').expect("unterminated tag") + i;
        let tag = &rest[i + 1..j];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
            assert_eq!(
                attrs.matches('"').count() % 2,
                0,
                "unbalanced quotes: {tag}"
            );
            out.push((name.to_string(), attrs.to_string()));
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        rest = &rest[j + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert!(rest.trim().is_empty());
    out
}

#[test]
fn injected_ttft_regression_fails_the_binary_with_all_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_run(tmp.path(), "base", &Gen::default(), 1);
    let cur = write_run(
        tmp.path(),
        "cur",
        &Gen {
            failures: 2,
            ..regression()
        },
        2,
    );
    let (md, json, junit) = (
        tmp.path().join("out/summary.md"),
        tmp.path().join("out/cmp.json"),
        tmp.path().join("out/junit.xml"),
    );
    let (code, stdout, stderr) = sweep(&[
        "compare",
        s(&base),
        s(&cur),
        "--markdown",
        s(&md),
        "--json",
        s(&json),
        "--junit",
        s(&junit),
    ]);
    println!("{stdout}");
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("## sweep compare: ❌"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&md).unwrap(), stdout);
    // The worst regression comes first, and it is a TTFT row.
    let first_row = stdout.lines().find(|l| l.starts_with("| chimera")).unwrap();
    assert!(first_row.contains("| ttft_p"), "{first_row}");
    assert!(first_row.contains("❌ regression"), "{first_row}");
    assert!(stdout.contains("α = 0.05"));
    assert!(stdout.contains("Welch t on ln"));

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3 * 4);
    let failing: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r["verdict"] == "regression" && !r["threshold"].is_null())
        .map(|r| (r["cell"].as_str().unwrap(), r["metric"].as_str().unwrap()))
        .collect();
    assert!(!failing.is_empty());
    assert!(
        failing.iter().all(|(_, m)| m.starts_with("ttft_p")),
        "{failing:?}"
    );
    // Warm-up and cold calls are excluded and counted: 3 cells × 2 warm-up calls.
    assert_eq!(v["current"]["excluded_warmup"], 6);
    // Failed calls too: never in the statistics, always counted.
    assert_eq!(v["current"]["excluded_failed"], 2);
    assert_eq!(v["current"]["used_calls"], 3 * 10 * 2 - 2);
    assert!(stdout.contains("excluded 6 warm-up, 2 failed"), "{stdout}");
    for r in rows.iter().filter(|r| r["metric"] == "ttft_p50") {
        let change = r["change"].as_f64().unwrap();
        assert!((0.04..0.16).contains(&change), "{change}");
        assert!(r["p_holm"].as_f64().unwrap() < 0.05, "{r}");
        assert!(r["p_mwu"].as_f64().unwrap() < 0.05, "{r}");
        if r["verdict"] == "regression" {
            assert!(r["ci_lower"].as_f64().unwrap() > 0.05, "{r}");
        }
    }

    let xml = std::fs::read_to_string(&junit).unwrap();
    let els = xml_elements(&xml);
    let cases = els.iter().filter(|(n, _)| n == "testcase").count();
    let failures = els.iter().filter(|(n, _)| n == "failure").count();
    assert_eq!(cases, rows.len());
    assert_eq!(failures, failing.len());
    assert!(els[0]
        .1
        .contains(&format!("failures=\"{}\"", failing.len())));
}

#[test]
fn identical_distributions_rarely_raise_a_false_alarm() {
    let g = Gen::default();
    let settings = Settings::default();
    let trials = 100;
    let mut alarms = 0;
    let mut significant = 0;
    for t in 0..trials {
        let b = mem_run(&g, "base", 1000 + 2 * t);
        let c = mem_run(&g, "cur", 1001 + 2 * t);
        let cmp = compare::compare(&b, &c, &settings).unwrap();
        assert!(cmp.rows.iter().all(|r| r.verdict != Verdict::Inconclusive));
        if cmp.regressions() > 0 {
            alarms += 1;
        }
        if cmp
            .rows
            .iter()
            .any(|r| r.p_holm.is_some_and(|p| p < settings.alpha))
        {
            significant += 1;
        }
    }
    println!(
        "false alarms: {alarms}/{trials} trials (any Holm-significant row: {significant}/{trials})"
    );
    assert!(alarms <= 5, "{alarms} false alarms in {trials} trials");
    // Holm controls the family-wise error: significant rows themselves are rare too.
    assert!(significant <= 10, "{significant}");
}

/// Power of the rule "Holm p < α and the whole 95% CI of the median ratio beyond 5%" for a
/// 10% TTFT shift at 10 reps × 2 calls, CV 5%: cells 1 and 2 are slowed, cell 0 is not.
#[test]
fn a_ten_percent_ttft_regression_is_detected() {
    let settings = Settings::default();
    let slowed = Gen {
        ttft_factor: [(1, 1.10), (2, 1.10)].into_iter().collect(),
        ..Gen::default()
    };
    let trials = 100;
    let (mut cell_hits, mut any_hits, mut untouched) = (0, 0, 0);
    for t in 0..trials {
        let b = mem_run(&Gen::default(), "base", 5000 + 2 * t);
        let c = mem_run(&slowed, "cur", 5001 + 2 * t);
        let cmp = compare::compare(&b, &c, &settings).unwrap();
        let hits = cmp
            .rows
            .iter()
            .filter(|r| r.fails() && r.metric == Metric::TtftP50 && r.cell != "chimera-c0")
            .count();
        cell_hits += hits;
        any_hits += (cmp.exit_code() == 1) as usize;
        untouched += cmp
            .rows
            .iter()
            .filter(|r| r.fails() && (r.cell == "chimera-c0" || !r.metric.higher_is_worse()))
            .count();
    }
    println!(
        "10% TTFT shift: ttft_p50 regression in {cell_hits}/{} slowed cells; exit 1 in {any_hits}/{trials} runs; \
false regressions in the untouched cell or throughput: {untouched}",
        2 * trials
    );
    assert!(
        cell_hits >= trials as usize,
        "per-cell power {cell_hits}/{}",
        2 * trials
    );
    assert!(
        any_hits >= trials as usize * 8 / 10,
        "run-level power {any_hits}/{trials}"
    );
    assert!(untouched <= 5, "{untouched}");
}

#[test]
fn verdicts_are_reproducible() {
    let b = mem_run(&Gen::default(), "base", 7);
    let c = mem_run(&regression(), "cur", 8);
    let s = Settings::default();
    let one = compare::compare(&b, &c, &s).unwrap();
    let two = compare::compare(&b, &c, &s).unwrap();
    assert_eq!(one, two);
    assert_eq!(one.to_markdown(), two.to_markdown());
}

#[test]
fn environment_mismatch_is_not_comparable_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let base = write_run(tmp.path(), "base", &Gen::default(), 11);
    let other_driver = Gen {
        driver: "560.28.03".into(),
        ..Gen::default()
    };
    let cur = write_run(tmp.path(), "cur", &other_driver, 12);
    let md = tmp.path().join("summary.md");
    let (code, stdout, stderr) = sweep(&["compare", s(&base), s(&cur), "--markdown", s(&md)]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("not comparable") && stderr.contains("GPU"),
        "{stderr}"
    );
    assert!(
        stderr.contains("550.54.15") && stderr.contains("560.28.03"),
        "{stderr}"
    );
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("not comparable"));

    let (code, stdout, stderr) = sweep(&["compare", s(&base), s(&cur), "--allow-env-change"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("## sweep compare: ✅ no regression"),
        "{stdout}"
    );
    assert!(stdout.contains("environment changed") && stdout.contains("560.28.03"));

    // A different model digest, at library level.
    let b = mem_run(&Gen::default(), "base", 13);
    let c = mem_run(
        &Gen {
            digest: "sha256:bbbb".into(),
            ..Gen::default()
        },
        "cur",
        14,
    );
    match compare::compare(&b, &c, &Settings::default()) {
        Err(CompareError::NotComparable(d)) => {
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].what, "model digest");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_few_reps_are_inconclusive_never_a_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let few = Gen {
        reps: 3,
        ..regression()
    };
    let base = write_run(
        tmp.path(),
        "base",
        &Gen {
            reps: 3,
            ..Gen::default()
        },
        21,
    );
    let cur = write_run(tmp.path(), "cur", &few, 22);
    let json = tmp.path().join("c.json");
    let (code, stdout, stderr) = sweep(&["compare", s(&base), s(&cur), "--json", s(&json)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("need ≥ 6 reps per side, have 3 / 3"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for r in v["rows"].as_array().unwrap() {
        assert_eq!(r["verdict"], "inconclusive");
        assert!(r["p_holm"].is_null() && r["ci_lower"].is_null(), "{r}");
    }
}

#[test]
fn baseline_save_then_compare_against_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(tmp.path(), "results/nightly/r1", &Gen::default(), 31);
    std::fs::write(run.join("records.parquet"), b"PAR1 placeholder").unwrap();
    let dir = tmp.path().join("baselines/nightly");
    let (code, stdout, stderr) = sweep(&["baseline", "save", s(&run), "--dir", s(&dir)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for f in ["manifest.json", "records.jsonl", "records.parquet"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(run.join(f)).unwrap(),
            "{f}"
        );
    }
    // A newer run without parquet replaces the baseline and its stale parquet.
    let run2 = write_run(tmp.path(), "results/nightly/r2", &Gen::default(), 32);
    let (code, _, stderr) = sweep(&["baseline", "save", s(&run2), "--dir", s(&dir)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.join("records.parquet").exists());
    assert_eq!(
        std::fs::read(dir.join("records.jsonl")).unwrap(),
        std::fs::read(run2.join("records.jsonl")).unwrap()
    );
    let cur = write_run(tmp.path(), "results/nightly/r3", &regression(), 33);
    let (code, stdout, stderr) = sweep(&["compare", s(&dir), s(&cur), "--quiet"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    // Not a run: exit 2 with a message.
    let (code, _, stderr) = sweep(&["baseline", "save", s(tmp.path()), "--dir", s(&dir)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a run directory"), "{stderr}");
}

#[test]
fn spec_table_and_flags_set_alpha_and_thresholds() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/quickstart.toml"),
    )
    .unwrap();
    let loose = format!("{spec}\n[compare]\nthresholds = {{ ttft_p50 = 0.25, ttft_p95 = 0.25 }}\n");
    let base = write_run(
        tmp.path(),
        "base",
        &Gen {
            spec: loose.clone(),
            ..Gen::default()
        },
        41,
    );
    let cur = write_run(
        tmp.path(),
        "cur",
        &Gen {
            spec: loose,
            ..regression()
        },
        42,
    );
    // The current manifest's [compare] table allows 25% (p50 and p95): the 10% shift is not a regression.
    let (code, stdout, stderr) = sweep(&["compare", s(&base), s(&cur)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ttft_p50 25%"), "{stdout}");
    // A flag overrides the file.
    let (code, stdout, _) = sweep(&["compare", s(&base), s(&cur), "--threshold", "ttft_p50=0.05"]);
    assert_eq!(code, 1, "{stdout}");
    // Bad flags and bad inputs are errors (exit 2), not verdicts.
    for bad in [
        vec!["--threshold", "ttft=0.05"],
        vec!["--threshold", "ttft_p50=-1"],
        vec!["--alpha", "1.5"],
    ] {
        let mut args = vec!["compare", s(&base), s(&cur)];
        args.extend(bad.iter().copied());
        let (code, _, stderr) = sweep(&args);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
    let parquet = tmp.path().join("records.parquet");
    std::fs::write(&parquet, b"PAR1").unwrap();
    let (code, _, stderr) = sweep(&["compare", s(&base), s(&parquet)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("records.parquet"), "{stderr}");
}

#[test]
fn history_mode_against_the_last_k_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results/nightly");
    for i in 0..6u64 {
        write_run(&dir, &format!("h{i}"), &Gen::default(), 60 + i);
    }
    // An earlier run on another driver is left out, not compared.
    let other = Gen {
        driver: "999.0".into(),
        ..Gen::default()
    };
    write_run(&dir, "h9", &other, 69);
    let same = write_run(&dir, "now-ok", &Gen::default(), 70);
    let json = tmp.path().join("h.json");
    let args = |cur: &Path, last: &'static str| {
        vec![
            "compare".to_string(),
            "--history".into(),
            dir.to_str().unwrap().into(),
            "--last".into(),
            last.into(),
            cur.to_str().unwrap().into(),
            "--json".into(),
            json.to_str().unwrap().into(),
        ]
    };
    let run = |a: Vec<String>| sweep(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, stdout, stderr) = run(args(&same, "5"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("History mode: against the last"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = v["method"]["runs"].as_array().unwrap();
    // The newest 5 by run id are h2..h5 and h9; h9 differs in driver and is left out.
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(!runs.iter().any(|r| r == "h9" || r == "now-ok"));
    assert!(v["notes"].to_string().contains("h9"));
    assert!(v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["n_baseline"] == 4 && r["verdict"] != "inconclusive"));

    // A 20% TTFT slow-down everywhere is outside the runs' spread.
    let slow = Gen {
        ttft_factor: (0..3).map(|c| (c, 1.20)).collect(),
        ..Gen::default()
    };
    let cur = write_run(tmp.path(), "slow", &slow, 71);
    let (code, stdout, stderr) = run(args(&cur, "6"));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for r in v["rows"].as_array().unwrap() {
        if r["verdict"] == "regression" && !r["threshold"].is_null() {
            assert!(r["metric"].as_str().unwrap().starts_with("ttft_p"), "{r}");
        }
    }

    // Too little history: inconclusive, never a verdict.
    let (code, stdout, _) = run(args(&cur, "2"));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("need ≥ 3 earlier runs"), "{stdout}");
}

/// Not a check: the power curve of the default rule, for choosing repetitions.
/// `cargo test --test compare power_curve -- --ignored --nocapture`
#[test]
#[ignore]
fn power_curve() {
    let settings = Settings::default();
    println!("shift  reps  per-cell ttft_p50 regression rate (100 trials × 3 cells)");
    for reps in [6u32, 10, 16] {
        for shift in [1.0, 1.05, 1.10, 1.15, 1.20] {
            let base = Gen {
                reps,
                ..Gen::default()
            };
            let cur = Gen {
                reps,
                ttft_factor: (0..3).map(|c| (c, shift)).collect(),
                ..Gen::default()
            };
            let mut hits = 0;
            for t in 0..100u64 {
                let cmp = compare::compare(
                    &mem_run(&base, "b", 9000 + 2 * t),
                    &mem_run(&cur, "c", 9001 + 2 * t),
                    &settings,
                )
                .unwrap();
                hits += cmp
                    .rows
                    .iter()
                    .filter(|r| r.fails() && r.metric == Metric::TtftP50)
                    .count();
            }
            println!(
                "{:>4.0}%  {reps:>4}  {:.2}",
                (shift - 1.0) * 100.0,
                hits as f64 / 300.0
            );
        }
    }
}
