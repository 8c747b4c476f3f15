//! Integration tests for `stats` (against scipy reference values), `analysis` and `report`.

use serde_json::Value;
use sweep::stats::{self, MwuMethod, OutlierLabel, Statistic, StatsError};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stats_reference.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn vals(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn sample(f: &Value, name: &str) -> Vec<f64> {
    vals(&f["samples"][name])
}

#[track_caller]
fn close(got: f64, want: f64, rel: f64, what: &str) {
    let tol = rel * want.abs().max(1e-300);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, scipy {want} (rel tol {rel})"
    );
}

#[test]
fn describe_matches_numpy() {
    let f = fixture();
    for (name, d) in f["describe"].as_object().unwrap() {
        let xs = sample(&f, name);
        let s = stats::summarize(&xs).unwrap();
        assert_eq!(s.n as u64, d["n"].as_u64().unwrap());
        for (k, got) in [
            ("mean", s.mean),
            ("median", s.median),
            ("min", s.min),
            ("max", s.max),
            ("p5", s.p5),
            ("p25", s.p25),
            ("p75", s.p75),
            ("p95", s.p95),
            ("p99", s.p99),
        ] {
            close(got, d[k].as_f64().unwrap(), 1e-12, &format!("{name}.{k}"));
        }
        if let Some(sd) = d["sd"].as_f64() {
            close(s.sd.unwrap(), sd, 1e-10, &format!("{name}.sd"));
            close(s.cv.unwrap(), d["cv"].as_f64().unwrap(), 1e-10, "cv");
        } else {
            assert!(s.sd.is_none(), "{name}: sd must be None below n = 2");
        }
        match stats::tukey_fences(&xs) {
            Ok(t) => {
                close(
                    t.lower,
                    d["tukey_lower"].as_f64().unwrap(),
                    1e-12,
                    "lower fence",
                );
                close(
                    t.upper,
                    d["tukey_upper"].as_f64().unwrap(),
                    1e-12,
                    "upper fence",
                );
                let want: Vec<OutlierLabel> =
                    serde_json::from_value(d["tukey_labels"].clone()).unwrap();
                assert_eq!(t.labels, want, "{name} labels");
            }
            Err(e) => assert!(d.get("tukey_lower").is_none(), "{name}: {e}"),
        }
    }
    assert_eq!(
        stats::tukey_fences(&sample(&f, "outliers"))
            .unwrap()
            .outliers(),
        2
    );
}

#[test]
fn confidence_intervals_match_scipy() {
    let f = fixture();
    for (name, e) in f["ci"].as_object().unwrap() {
        let xs = sample(&f, name);
        for (key, level) in [("mean_t95", 0.95), ("mean_t90", 0.90)] {
            if let Some(want) = e.get(key) {
                let want = vals(want);
                let got = stats::mean_ci_t(&xs, level).unwrap();
                close(got.lower, want[0], 1e-9, &format!("{name}.{key}.lo"));
                close(got.upper, want[1], 1e-9, &format!("{name}.{key}.hi"));
            }
        }
        match (e.get("median_os95"), stats::median_ci(&xs, 0.95)) {
            (Some(want), Ok(got)) => {
                let want = vals(want);
                assert_eq!(
                    [got.lower, got.upper],
                    [want[0], want[1]],
                    "{name} median CI"
                );
                assert!(got.coverage >= 0.95);
            }
            (None, Err(StatsError::TooFew { need, have, .. })) => {
                assert_eq!(need, 6);
                assert_eq!(have, xs.len());
            }
            (w, g) => panic!("{name}: scipy {w:?}, ours {g:?}"),
        }
    }
    assert!(matches!(
        stats::mean_ci_t(&[1.0], 0.95),
        Err(StatsError::TooFew { need: 2, .. })
    ));
}

#[test]
fn bootstrap_ratio_agrees_with_scipy_within_monte_carlo_error() {
    let f = fixture();
    for b in f["bootstrap_ratio_median"].as_array().unwrap() {
        let x = sample(&f, b["x"].as_str().unwrap());
        let y = sample(&f, b["y"].as_str().unwrap());
        let got = stats::bootstrap_ratio_ci(&x, &y, Statistic::Median, 0.95, 20_000, 42).unwrap();
        close(
            got.estimate,
            b["estimate"].as_f64().unwrap(),
            1e-12,
            "ratio",
        );
        let want = vals(&b["ci"]);
        let width = want[1] - want[0];
        // Different generators: endpoints agree to a small fraction of the width.
        assert!(
            (got.lower - want[0]).abs() < 0.1 * width,
            "{got:?} vs {want:?}"
        );
        assert!(
            (got.upper - want[1]).abs() < 0.1 * width,
            "{got:?} vs {want:?}"
        );
        let again = stats::bootstrap_ratio_ci(&x, &y, Statistic::Median, 0.95, 20_000, 42).unwrap();
        assert_eq!(got, again, "same seed, same interval");
    }
}

#[test]
fn two_sample_tests_and_effect_sizes_match_scipy() {
    let f = fixture();
    for t in f["two_sample"].as_array().unwrap() {
        let (xn, yn) = (t["x"].as_str().unwrap(), t["y"].as_str().unwrap());
        let x = sample(&f, xn);
        let y = sample(&f, yn);
        let g = |k: &str| t[k].as_f64().unwrap();
        let w = stats::welch_t(&x, &y).unwrap();
        close(w.t, g("welch_t"), 1e-9, "welch t");
        close(w.df, g("welch_df"), 1e-9, "welch df");
        close(w.p, g("welch_p"), 1e-7, "welch p");
        let wl = stats::welch_t_log(&x, &y).unwrap();
        close(wl.t, g("welch_log_t"), 1e-9, "welch log t");
        close(wl.p, g("welch_log_p"), 1e-7, "welch log p");
        let m = stats::mann_whitney_u(&x, &y).unwrap();
        let method = match m.method {
            MwuMethod::Exact => "exact",
            MwuMethod::Asymptotic => "asymptotic",
        };
        assert_eq!(method, t["mwu_method"].as_str().unwrap(), "{xn} vs {yn}");
        close(m.u, g("mwu_u"), 1e-12, "U");
        close(m.p, g("mwu_p"), 1e-9, &format!("{xn} vs {yn} MWU p"));
        close(
            stats::cliffs_delta(&x, &y).unwrap(),
            g("cliffs_delta"),
            1e-12,
            "δ",
        );
        close(
            stats::hodges_lehmann(&x, &y).unwrap(),
            g("hodges_lehmann"),
            1e-12,
            "HL",
        );
        close(stats::cohens_d(&x, &y).unwrap(), g("cohens_d"), 1e-10, "d");
    }
    assert!(matches!(
        stats::mann_whitney_u(&[1.0], &[2.0, 3.0]),
        Err(StatsError::TooFew {
            need: 2,
            have: 1,
            ..
        })
    ));
}

#[test]
fn adjustments_and_k_sample_tests_match_scipy() {
    let f = fixture();
    let p = vals(&f["adjust"]["p"]);
    for (got, want) in stats::holm(&p).iter().zip(vals(&f["adjust"]["holm"])) {
        close(*got, want, 1e-12, "holm");
    }
    for (got, want) in stats::benjamini_hochberg(&p)
        .iter()
        .zip(vals(&f["adjust"]["bh"]))
    {
        close(*got, want, 1e-12, "bh");
    }
    for k in f["k_sample"].as_array().unwrap() {
        let groups: Vec<Vec<f64>> = k["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| sample(&f, n.as_str().unwrap()))
            .collect();
        let refs: Vec<&[f64]> = groups.iter().map(|g| g.as_slice()).collect();
        let kw = stats::kruskal_wallis(&refs).unwrap();
        close(kw.statistic, k["kruskal_h"].as_f64().unwrap(), 1e-10, "H");
        close(kw.p, k["kruskal_p"].as_f64().unwrap(), 1e-8, "KW p");
        let an = stats::anova_oneway(&refs).unwrap();
        close(an.statistic, k["anova_f"].as_f64().unwrap(), 1e-10, "F");
        close(an.p, k["anova_p"].as_f64().unwrap(), 1e-8, "ANOVA p");
    }
}

// ---------------------------------------------------------------------------------------
// analysis: synthetic runs written as real files
// ---------------------------------------------------------------------------------------

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use sweep::analysis::{self, AnalysisOptions, Avail, Decision, Metric, Source};
use sweep::record::{ColdReason, Phase, Record, Stage};
use sweep::spec::OptionValue;
use sweep::store::{self, Manifest};

/// A call with plausible figures: TTFT around `ttft`, decode around `tps`.
pub(crate) fn call(
    cell: &str,
    arm: &str,
    rep: u32,
    ttft: f64,
    tps: f64,
    rng: &mut ChaCha8Rng,
) -> Record {
    let ttft_ms = ttft * rng.gen_range(0.95..1.05);
    let out = rng.gen_range(100..140u64);
    let eval_ms = out as f64 / (tps * rng.gen_range(0.98..1.02)) * 1000.0;
    let e2e = ttft_ms + eval_ms * 1.01;
    let mut options = BTreeMap::new();
    if let Some(ctx) = cell.strip_prefix("chimera-ctx") {
        options.insert(
            "num_ctx".to_string(),
            OptionValue::Int(ctx.parse().unwrap_or(512)),
        );
        options.insert("temperature".to_string(), OptionValue::Float(0.6));
    }
    Record {
        experiment: "synthetic".into(),
        run_id: "run-1".into(),
        arm: arm.into(),
        cell_id: cell.into(),
        options,
        agent: "single".into(),
        persona: "chimera".into(),
        phase: Phase::Single,
        stage: Stage::Analysis,
        rep,
        warmup: false,
        order: 0,
        timestamp: "2026-11-23T10:00:00Z".into(),
        model: "gemma3:270m".into(),
        endpoint: "http://127.0.0.1:11434".into(),
        ok: true,
        error_kind: None,
        error_message: None,
        attempts: 1,
        ttft_ms: Some(ttft_ms),
        itl_ms: vec![1000.0 / tps; 3],
        itl_p50_ms: Some(1000.0 / tps),
        e2e_ms: Some(e2e),
        load_ms: Some(0.0),
        prompt_eval_ms: Some(ttft_ms * 0.9),
        eval_ms: Some(eval_ms),
        total_ms: Some(e2e),
        prompt_tokens: Some(288),
        output_tokens: Some(out),
        decode_tps: Some(out as f64 / (eval_ms / 1000.0)),
        e2e_tps: sweep::record::client_decode_tps(Some(out), Some(e2e), Some(ttft_ms)),
        cold: false,
        cache_defeated: true,
        start_offset_ms: 0.0,
        end_offset_ms: e2e,
        phase_wall_ms: e2e,
        agent_wall_ms: e2e + 5.0,
        ingest_ms: 5.0,
        phase_records: 0,
        ..Default::default()
    }
}

/// Baseline (700 ms, 40 tok/s), a slower cell (1.3× TTFT, 0.8× decode), an equal cell,
/// and a 4-rep cell (2 complete); each with a warm-up, 4 calls per rep, a cold call in rep 0 and a failed
/// call in rep 1 (each stored inside its rep's phase, as the store writes them).
pub(crate) fn synthetic(reps: u32) -> Vec<Record> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut out = Vec::new();
    let cells = [
        ("baseline-00000001", "baseline", 700.0, 40.0, reps),
        ("chimera-ctx256", "chimera", 910.0, 32.0, reps),
        ("chimera-ctx512", "chimera", 700.0, 40.0, reps),
        ("chimera-ctx1024", "chimera", 700.0, 40.0, 4),
    ];
    let mut order = 0;
    for (cell, arm, ttft, tps, n) in cells {
        let mut w = call(cell, arm, 0, ttft * 3.0, tps, &mut rng);
        w.warmup = true;
        w.order = order;
        order += 1;
        out.push(w);
        for rep in 0..n {
            for _ in 0..4 {
                let mut r = call(cell, arm, rep, ttft, tps, &mut rng);
                r.order = order;
                out.push(r);
            }
            if rep == 0 {
                let mut c = call(cell, arm, 0, ttft * 4.0, tps, &mut rng);
                c.mark_cold(ColdReason::Reload);
                c.load_ms = Some(500.0);
                c.order = order;
                out.push(c);
            }
            if rep == 1 {
                let mut f = call(cell, arm, 1, ttft, tps, &mut rng);
                f.ok = false;
                f.error_kind = Some("timeout".into());
                f.ttft_ms = None;
                f.order = order;
                out.push(f);
            }
            order += 1;
        }
    }
    out
}

/// A finished run's manifest (no records digest: the loader reads the JSONL).
pub(crate) fn manifest(reference: Option<&str>) -> Manifest {
    let spec = reference
        .map(|r| {
            format!(
                "[experiment]\nname = \"synthetic\"\nreference = \"{r}\"\n[backend]\nkind = \"ollama\"\nmodel = \"gemma3:270m\"\n\
                 [corpus]\npath = \"experiments/corpus\"\n[[arm]]\nname = \"{r}\"\n[[arm]]\nname = \"chimera\"\n[[arm]]\nname = \"pair\"\n"
            )
        })
        .unwrap_or_default();
    Manifest {
        experiment: "synthetic".into(),
        run_id: "run-1".into(),
        spec_file: "synthetic.toml".into(),
        spec,
        started_at: "2026-11-23T10:00:00Z".into(),
        finished_at: Some("2026-11-23T11:00:00Z".into()),
        ..Default::default()
    }
}

pub(crate) fn write_jsonl(dir: &Path, records: &[Record], torn: bool) {
    let m = Manifest::read(dir).unwrap_or_else(|_| manifest(None));
    m.write(dir).unwrap();
    let mut f = std::fs::File::create(dir.join("records.jsonl")).unwrap();
    for r in records {
        writeln!(f, "{}", serde_json::to_string(r).unwrap()).unwrap();
    }
    if torn {
        let line = serde_json::to_string(&records[0]).unwrap();
        f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
    }
}

/// A rep's client tok/s by hand: the tokens after each call's first over its (e2e − TTFT).
fn client_rate(calls: &[&Record]) -> f64 {
    let toks: f64 = calls
        .iter()
        .map(|r| (r.output_tokens.unwrap() - 1) as f64)
        .sum();
    let secs: f64 = calls
        .iter()
        .map(|r| (r.e2e_ms.unwrap() - r.ttft_ms.unwrap()) / 1000.0)
        .sum();
    toks / secs
}

/// The reps of `cell` in which every call was measured (the analysis' complete reps).
fn complete_reps(records: &[Record], cell: &str) -> Vec<u32> {
    let mut reps: Vec<u32> = records
        .iter()
        .filter(|r| r.cell_id == cell && !r.warmup)
        .map(|r| r.rep)
        .collect();
    reps.sort_unstable();
    reps.dedup();
    reps.retain(|&rep| {
        records
            .iter()
            .filter(|r| r.cell_id == cell && !r.warmup && r.rep == rep)
            .all(|r| r.ok && !r.cold)
    });
    reps
}

#[test]
fn analysis_of_a_jsonl_run_counts_exclusions_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let records = synthetic(8);
    write_jsonl(dir.path(), &records, true);
    let a = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap();
    assert_eq!(a.source, Source::Jsonl);
    assert_eq!(a.torn_lines, 1);
    assert_eq!(a.reference_arm, "baseline", "first cell in run order");
    assert!(dir.path().join("analysis/summary.json").is_file());
    let csv = std::fs::read_to_string(dir.path().join("analysis/tidy.csv")).unwrap();
    assert!(csv.starts_with("cell_id,arm,factors,metric,statistic,value,note\n"));

    let base = a.cell("baseline-00000001").unwrap();
    assert!(base.is_reference);
    let k = &base.counts;
    assert_eq!((k.calls, k.warmup, k.cold, k.failed), (8 * 4 + 3, 1, 1, 1));
    assert_eq!((k.measured, k.reps), (32, 8));
    assert_eq!(k.cold_by_reason["reload"], 1);

    // A rep counts only when every one of its calls was measured: rep 0 (a cold call) and
    // rep 1 (a failed call) are left out, never replaced by their other calls.
    let complete = complete_reps(&records, &base.cell_id);
    assert_eq!(complete, (2..8).collect::<Vec<u32>>());
    // Per-rep TTFT is the median of that rep's calls.
    let ttft = base.metric(Metric::TtftMs).unwrap();
    assert_eq!(ttft.n_reps, 6);
    assert_eq!(ttft.incomplete_reps, 2);
    for (i, &rep) in complete.iter().enumerate() {
        let calls: Vec<f64> = records
            .iter()
            .filter(|r| r.cell_id == base.cell_id && r.rep == rep && !r.warmup)
            .filter_map(|r| r.ttft_ms)
            .collect();
        let want = stats::percentile(&calls, 0.5).unwrap();
        close(ttft.stats.reps[i], want, 1e-12, "rep median");
    }
    // Rep decode tok/s is token-weighted: Σ tokens / Σ eval seconds.
    let dec = base.metric(Metric::DecodeTps).unwrap();
    let r0: Vec<&Record> = records
        .iter()
        .filter(|r| r.cell_id == base.cell_id && r.rep == complete[0] && !r.warmup)
        .collect();
    let toks: f64 = r0.iter().map(|r| r.output_tokens.unwrap() as f64).sum();
    let secs: f64 = r0.iter().map(|r| r.eval_ms.unwrap() / 1000.0).sum();
    close(dec.stats.reps[0], toks / secs, 1e-12, "rep decode tps");
    // Rep client tok/s: the tokens after each call's first over its (e2e − TTFT).
    let cli = base.metric(Metric::E2eTps).unwrap();
    close(cli.stats.reps[0], client_rate(&r0), 1e-12, "rep client tps");

    // Request-level quantiles (over the calls of complete reps) are type 7, like ours.
    let all: Vec<f64> = records
        .iter()
        .filter(|r| r.cell_id == base.cell_id && !r.warmup && complete.contains(&r.rep))
        .filter_map(|r| r.ttft_ms)
        .collect();
    for (name, p) in analysis::PERCENTILES {
        let got = ttft.request[name].unwrap();
        close(got, stats::percentile(&all, p).unwrap(), 1e-12, name);
    }

    // The slower cell is worse on TTFT and decode; the equal cell is `~`.
    let slow = a.comparison("chimera-ctx256", Metric::TtftMs).unwrap();
    assert_eq!(slow.verdict, Decision::Worse);
    assert_eq!(
        slow.result.test.as_ref().unwrap().name,
        "Welch t on ln(rep values)",
        "one test for analyze and compare"
    );
    let (d, lo, hi) = slow.delta_pct().unwrap();
    assert!(
        lo < d && d < hi && lo > 15.0 && hi < 45.0,
        "{d} [{lo}, {hi}]"
    );
    assert_eq!(
        a.comparison("chimera-ctx256", Metric::DecodeTps)
            .unwrap()
            .verdict,
        Decision::Worse
    );
    assert_eq!(
        a.comparison("chimera-ctx512", Metric::TtftMs)
            .unwrap()
            .verdict,
        Decision::NoChange
    );
    // 3 reps: a median CI needs 6; the answer says so instead of printing an interval.
    let small = a
        .cell("chimera-ctx1024")
        .unwrap()
        .metric(Metric::TtftMs)
        .unwrap();
    match &small.stats.median_ci {
        Avail::Unavailable { unavailable } => assert!(unavailable.contains("need ≥ 6")),
        v => panic!("expected unavailable, got {v:?}"),
    }
    // Axis test across num_ctx within the chimera arm.
    let axis = a
        .axis_tests
        .iter()
        .find(|t| t.factor == "num_ctx" && t.metric == Metric::TtftMs)
        .unwrap();
    assert_eq!(axis.levels, ["256", "512", "1024"]);
    assert!(axis.kruskal_wallis.value().unwrap().p < 0.01);
}

#[test]
fn parquet_round_trip_gives_the_same_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let records = synthetic(6);
    write_jsonl(dir.path(), &records, false);
    let from_jsonl = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap();
    // A parquet written by hand (no digest of the finished run) is not trusted.
    store::columnar::write_parquet(&dir.path().join("records.parquet"), &records).unwrap();
    let a = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap();
    assert_eq!(a.source, Source::Jsonl);
    assert!(
        a.notes[0].contains("records.parquet not used"),
        "{:?}",
        a.notes
    );
    // Finishing the run writes the parquet and its digest: now it is used.
    store::columnar::finish(dir.path(), "run-1").unwrap();
    let from_parquet = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap();
    assert_eq!(from_parquet.source, Source::Parquet);
    // serde_json's default float parser may differ from the written value in the last
    // bit, so values agree to 1e-12 rather than exactly.
    assert_eq!(from_jsonl.cells.len(), from_parquet.cells.len());
    for (a, b) in from_jsonl.cells.iter().zip(&from_parquet.cells) {
        assert_eq!(a.cell_id, b.cell_id);
        assert_eq!(a.counts, b.counts);
        assert_eq!(a.factors, b.factors);
        assert_eq!(a.reference_cell, b.reference_cell);
        for (x, y) in a.metrics.iter().zip(&b.metrics) {
            for (u, v) in x.stats.reps.iter().zip(&y.stats.reps) {
                close(*u, *v, 1e-12, &a.cell_id);
            }
            for (k, u) in &x.request {
                match (u, y.request[k]) {
                    (Some(u), Some(v)) => close(*u, v, 1e-12, k),
                    (u, v) => assert_eq!(*u, v, "{k}"),
                }
            }
        }
    }
    for (x, y) in from_jsonl.comparisons.iter().zip(&from_parquet.comparisons) {
        assert_eq!(
            (&x.cell_id, x.metric, x.verdict),
            (&y.cell_id, y.metric, y.verdict)
        );
    }

    // A damaged parquet falls back to the log, and says why.
    let pq = dir.path().join("records.parquet");
    let bytes = std::fs::read(&pq).unwrap();
    std::fs::write(&pq, &bytes[..bytes.len() / 2]).unwrap();
    let a = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap();
    assert_eq!(a.source, Source::Jsonl);
    assert!(a.notes[0].contains("sha256 differs"), "{:?}", a.notes);
    assert_eq!(a.cells.len(), from_parquet.cells.len());
    // A log changed after the run finished (a line appended, a duplicate) is caught too.
    store::columnar::finish(dir.path(), "run-1").unwrap();
    let jl = dir.path().join("records.jsonl");
    let text = std::fs::read_to_string(&jl).unwrap();
    let first = text.lines().nth(1).unwrap().to_string();
    std::fs::write(&jl, format!("{text}{first}\n")).unwrap();
    let e = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap_err();
    assert!(e.to_string().contains("stored twice"), "{e}");
}

/// A pair cell: concurrent phase ~2000 ms wall, sequential ~3600 ms; e2e 1900 vs 1500.
pub(crate) fn pair_records(reps: u32) -> Vec<Record> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut records = Vec::new();
    for rep in 0..reps {
        let conc_wall = 2000.0 * rng.gen_range(0.97..1.03);
        let seq_wall = 3600.0 * rng.gen_range(0.97..1.03);
        for (phase, wall, e2e) in [
            (Phase::Concurrent, conc_wall, 1900.0),
            (Phase::Sequential, seq_wall, 1500.0),
        ] {
            for agent in ["A", "B"] {
                let mut r = call("pair-1", "pair", rep, 700.0, 40.0, &mut rng);
                r.agent = agent.into();
                r.phase = phase;
                r.phase_wall_ms = wall;
                r.order = 1000 + rep as usize;
                r.e2e_ms = Some(e2e * rng.gen_range(0.99..1.01));
                records.push(r);
            }
        }
    }
    records
}

#[test]
fn pair_speedup_efficiency_and_contention() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = synthetic(6);
    records.extend(pair_records(6));
    write_jsonl(dir.path(), &records, false);
    let a = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap();
    let p = &a.pairs[0];
    assert_eq!(p.cell_id, "pair-1");
    let s = p.speedup.summary.value().unwrap();
    assert_eq!(s.n, 6);
    assert!(s.median > 1.6 && s.median < 2.0, "{s:?}");
    close(
        p.efficiency.summary.value().unwrap().median,
        s.median / 2.0,
        1e-12,
        "efficiency",
    );
    let ci = p.speedup.median_ci.value().unwrap();
    assert!(ci.lower <= s.median && s.median <= ci.upper);
    for agent in ["A", "B"] {
        let c = p.contention[agent].summary.value().unwrap();
        assert!(c.median > 1.2 && c.median < 1.3, "{agent}: {c:?}");
    }
}

#[test]
fn corrupt_middle_line_is_an_error_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let records = synthetic(2);
    let mut text = String::new();
    for (i, r) in records.iter().enumerate() {
        if i == 3 {
            text.push_str("{not json\n");
        }
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
    }
    std::fs::write(dir.path().join("records.jsonl"), text).unwrap();
    manifest(None).write(dir.path()).unwrap();
    let e = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap_err();
    assert!(e.to_string().contains(":4:"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        analysis::analyze(empty.path(), &AnalysisOptions::default()),
        Err(analysis::AnalysisError::Store(store::StoreError::NotARun(
            _
        )))
    ));
    manifest(None).write(empty.path()).unwrap();
    assert!(matches!(
        analysis::analyze(empty.path(), &AnalysisOptions::default()),
        Err(analysis::AnalysisError::Store(
            store::StoreError::NoRecords(_)
        ))
    ));
}

/// The client-clock rate counts the tokens after the first: a stream whose first token came
/// at TTFT and nine more every 10 ms decodes at 100 tok/s, not 111. A one-token answer has no
/// decode interval: it adds nothing to its rep, which stays complete (it was counted as an
/// absurd rate of 1 token over the microseconds between its only token and the stream's end).
#[test]
fn client_rate_counts_the_tokens_after_the_first() {
    use sweep::record::client_decode_tps;
    close(
        client_decode_tps(Some(10), Some(190.0), Some(100.0)).unwrap(),
        100.0,
        1e-12,
        "9 tokens in 90 ms",
    );
    assert_eq!(client_decode_tps(Some(1), Some(100.001), Some(100.0)), None);
    assert_eq!(client_decode_tps(Some(10), Some(100.0), Some(100.0)), None);
    assert_eq!(client_decode_tps(None, Some(190.0), Some(100.0)), None);

    let dir = tempfile::tempdir().unwrap();
    let mut records = synthetic(8);
    // In rep 3 of the baseline, one call answers with a single token.
    let one = records
        .iter_mut()
        .find(|r| r.cell_id == "baseline-00000001" && r.rep == 3 && !r.warmup)
        .unwrap();
    one.output_tokens = Some(1);
    one.e2e_ms = Some(one.ttft_ms.unwrap() + 0.002);
    one.e2e_tps = Some(1.0 / 0.000_002); // what a run stored before the n − 1 rule
    write_jsonl(dir.path(), &records, false);
    let a = analysis::analyze(dir.path(), &AnalysisOptions::default()).unwrap();
    let base = a.cell("baseline-00000001").unwrap();
    let cli = base.metric(Metric::E2eTps).unwrap();
    assert_eq!(cli.n_reps, 6, "the one-token call leaves its rep complete");
    let complete = complete_reps(&records, "baseline-00000001");
    let i = complete.iter().position(|&r| r == 3).unwrap();
    let rep3: Vec<&Record> = records
        .iter()
        .filter(|r| r.cell_id == "baseline-00000001" && r.rep == 3 && !r.warmup)
        .filter(|r| r.output_tokens.unwrap() >= 2)
        .collect();
    assert_eq!(rep3.len(), 3);
    close(
        cli.stats.reps[i],
        client_rate(&rep3),
        1e-12,
        "rep 3 without the one-token call",
    );
    // No call-level rate near the stored 500 000 tok/s reaches the distribution.
    let max = cli.request["max"].unwrap();
    assert!(max < 100.0, "max client rate {max}");
}
