//! Telemetry end to end: a fake sampler through the library (windows, energy against a known
//! power curve, null handling), a fake `nvidia-smi` on PATH for the real binary (per-record
//! windows, `telemetry.parquet`, energy per token through analysis and tables), the Ollama
//! peer's partial offload (recorded fraction and warnings), and a busy machine (a child
//! burning CPU while the run runs).

use polars::prelude::SerReader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use sweep::record::{Phase, Record};
use sweep::spec::OptionValue;
use sweep::store::read_records;
use sweep::telemetry::{
    GpuReading, GpuSampler, GpuSource, Telemetry, TelemetryConfig, TelemetryError, TELEMETRY_JSON,
    TELEMETRY_PARQUET,
};
use sweep_testkit::FaultPlan;

use crate::common::{assert_complete, only_run, quiet_server, root, sweep};

fn now_ms() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1000.0
}

fn rfc3339(ms: f64) -> String {
    chrono::DateTime::from_timestamp_micros((ms * 1000.0) as i64)
        .unwrap()
        .to_rfc3339()
}

/// A GPU whose power follows 200 W + 100 W·sin(2π t / 0.9 s) (t: epoch seconds), with (or
/// without) the cumulative energy counter that integrates it, and optionally no power.
struct Sine {
    counter: bool,
    power: bool,
}

const W: f64 = 2.0 * std::f64::consts::PI / 0.9;

fn power_at(ms: f64) -> f64 {
    200.0 + 100.0 * (W * (ms / 1000.0 % 900.0)).sin()
}

/// ∫ power dt from 0 to `ms` of the same local time base (J).
fn energy_at(ms: f64) -> f64 {
    let t = ms / 1000.0 % 900.0;
    200.0 * t + 100.0 / W * (1.0 - (W * t).cos())
}

impl GpuSampler for Sine {
    fn source(&self) -> &str {
        "fake"
    }
    fn sample(&mut self) -> Result<Vec<GpuReading>, TelemetryError> {
        let t = now_ms();
        Ok(vec![GpuReading {
            index: 0,
            power_w: self.power.then(|| power_at(t)),
            energy_j: self.counter.then(|| energy_at(t)),
            memory_used_mib: Some(4096.0),
            util_pct: Some(75.0),
            ..Default::default()
        }])
    }
}

fn record_at(a: f64, b: f64) -> Record {
    Record {
        timestamp: rfc3339(a),
        start_offset_ms: 0.0,
        end_offset_ms: b - a,
        ..Default::default()
    }
}

fn sampled(counter: bool, power: bool, windows: &[(f64, f64)]) -> Vec<Record> {
    let cfg = TelemetryConfig {
        gpu_interval: Duration::from_millis(10),
        ..TelemetryConfig::default()
    };
    let t = Telemetry::start_with(
        cfg,
        GpuSource::Given(Box::new(Sine { counter, power })),
        None,
    );
    let mut recs: Vec<Record> = windows.iter().map(|&(a, b)| record_at(a, b)).collect();
    let end = windows.iter().map(|w| w.1).fold(0.0, f64::max);
    std::thread::sleep(Duration::from_secs_f64(
        ((end - now_ms()) / 1000.0).max(0.0),
    ));
    t.attach(&mut recs);
    recs
}

/// A local 900-s time base: the windows below stay inside one period of `% 900`.
fn base() -> f64 {
    let now = now_ms();
    let local = now / 1000.0 % 900.0;
    if local > 880.0 {
        std::thread::sleep(Duration::from_secs_f64(900.5 - local));
    }
    now_ms() + 100.0
}

#[test]
fn fake_sampler_energy_matches_a_known_power_curve_within_one_percent() {
    let a = base();
    let b = a + 1_537.0;
    let exact = energy_at(b) - energy_at(a);
    // Power integrated (no counter).
    let r = &sampled(false, true, &[(a, b)])[0];
    let g = r.gpu.as_ref().expect("a window with GPU figures");
    assert_eq!(g.source, "fake");
    assert_eq!(g.energy_source.as_deref(), Some("power"));
    let e = g.window_energy_j.unwrap();
    assert!(((e - exact) / exact).abs() < 0.01, "{e} J vs {exact} J");
    assert_eq!(
        g.energy_j, g.window_energy_j,
        "one call alone has all of it"
    );
    assert!(g.samples >= 100, "{} samples in 1.5 s at 10 ms", g.samples);
    assert!(g.max_power_w.unwrap() > 290.0 && g.max_power_w.unwrap() <= 300.0 + 1e-9);
    assert_eq!(g.peak_memory_mib, Some(4096.0));
    assert!((g.mean_util_pct.unwrap() - 75.0).abs() < 1e-9);
    // The driver's counter wins where there is one.
    let a = base();
    let b = a + 1_211.0;
    let exact = energy_at(b) - energy_at(a);
    let g = sampled(true, true, &[(a, b)])[0].gpu.clone().unwrap();
    assert_eq!(g.energy_source.as_deref(), Some("counter"));
    let e = g.window_energy_j.unwrap();
    assert!(((e - exact) / exact).abs() < 0.001, "{e} J vs {exact} J");
}

#[test]
fn fake_sampler_splits_overlapping_calls_and_gives_null_not_zero() {
    let a = base();
    let (w1, w2) = ((a, a + 600.0), (a + 300.0, a + 900.0));
    let recs = sampled(false, true, &[w1, w2]);
    let (g1, g2) = (recs[0].gpu.clone().unwrap(), recs[1].gpu.clone().unwrap());
    let union = energy_at(w2.1) - energy_at(w1.0);
    let shared = g1.energy_j.unwrap() + g2.energy_j.unwrap();
    assert!(
        ((shared - union) / union).abs() < 0.01,
        "{shared} vs {union}"
    );
    assert!(g1.energy_j.unwrap() < g1.window_energy_j.unwrap());
    // No power and no counter: every energy figure is null, the rest is there.
    let a = base();
    let g = sampled(false, false, &[(a, a + 300.0)])[0]
        .gpu
        .clone()
        .unwrap();
    assert_eq!(g.energy_j, None);
    assert_eq!(g.window_energy_j, None);
    assert_eq!(g.mean_power_w, None);
    assert_eq!(g.max_power_w, None);
    assert_eq!(g.peak_memory_mib, Some(4096.0));
    // No GPU sampler at all: records stay without a GPU window.
    let t = Telemetry::start_with(TelemetryConfig::default(), GpuSource::None, None);
    let mut r = vec![record_at(now_ms() - 100.0, now_ms())];
    t.attach(&mut r);
    assert!(r[0].gpu.is_none());
}

/// A fake `nvidia-smi`: two GPUs at 150 W and 50 W (GPU 1's power `[N/A]` when
/// FAKE_SMI_NA is set), driver FAKE_DRIVER (default 570.86.15), and another process on the
/// GPU.
fn fake_smi(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let p = bin.join("nvidia-smi");
    std::fs::write(
        &p,
        r#"#!/bin/sh
case "$*" in
  *--query-gpu=name,driver_version,memory.total*) echo "NVIDIA H200, ${FAKE_DRIVER:-570.86.15}, 143771";;
  *--query-gpu=index,*)
    echo "0, 50, 1000, 150.00, 40, 1980"
    if [ -n "$FAKE_SMI_NA" ]; then echo "1, 10, 2000, [N/A], 41, 1980"; else echo "1, 10, 2000, 50.00, 41, 1980"; fi;;
  *--query-compute-apps*) echo "00000000:3B:00.0, 999999, /usr/bin/python3, 2048";;
  *) exit 2;;
esac
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn write_spec(dir: &Path, url: &str, reps: u32) -> PathBuf {
    let text = format!(
        r#"[experiment]
name = "tele"
repetitions = {reps}
warmup = 1
seed = 5
reference = "baseline"

[backend]
kind = "ollama"
url = "{url}"
model = "gemma3:latest"
timeout_s = 20

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[[arm]]
name = "baseline"

[[arm]]
name = "gpu"
[arm.grid]
num_gpu = [10, 80]

[[arm]]
name = "duo"
agent = "pair"
a = {{ persona = "insight" }}
b = {{ }}
"#,
        corpus = root().join("experiments/corpus").display(),
        results = dir.join("results").display(),
    );
    let path = dir.join("tele.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_with(spec: &Path, env: &[(&str, String)]) -> Output {
    let mut c = sweep();
    c.args(["run", "--progress", "plain"]).arg(spec);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The union length of intervals, ms.
fn union_ms(mut w: Vec<(f64, f64)>) -> f64 {
    w.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut cur: Option<(f64, f64)> = None;
    for (a, b) in w {
        cur = match cur {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + cur.map_or(0.0, |(s, e)| e - s)
}

#[test]
fn fake_nvidia_smi_gives_every_call_its_window_and_energy_per_token_flows_through() {
    let server = quiet_server(6, 3, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_smi(tmp.path());
    let spec = write_spec(tmp.path(), &server.url(), 2);
    let env = [
        ("PATH", path_with(&bin)),
        ("SWEEP_GPU_SAMPLER", "nvidia-smi".to_string()),
        ("SWEEP_GPU_INTERVAL_MS", "40".to_string()),
        ("SWEEP_HOST_INTERVAL_MS", "200".to_string()),
    ];
    let out = run_with(&spec, &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("other processes on the GPU: python3 (pid 999999, 2048 MiB)"),
        "{err}"
    );
    let run = only_run(tmp.path(), "tele");
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    assert_complete(&spec, &recs);
    // The manifest names the (fake) GPU.
    let m = sweep::store::Manifest::read(&run).unwrap();
    assert_eq!(m.host.gpus[0].name, "NVIDIA H200");
    // Every call that ran has its window: 200 W in all, constant, so energy = 200 W × t.
    for r in recs.iter().filter(|r| r.ok) {
        let g = r
            .gpu
            .as_ref()
            .unwrap_or_else(|| panic!("no GPU window: {r:?}"));
        assert_eq!((g.source.as_str(), g.gpus), ("nvidia-smi", 2));
        let secs = (r.end_offset_ms - r.start_offset_ms) / 1000.0;
        let e = g.window_energy_j.unwrap();
        assert!(
            (e - 200.0 * secs).abs() <= 0.01 * 200.0 * secs,
            "{e} J over {secs} s"
        );
        assert!((g.mean_power_w.unwrap() - 200.0).abs() < 0.5);
        assert_eq!(g.peak_memory_mib, Some(3000.0));
        assert_eq!(g.energy_source.as_deref(), Some("power"));
        if r.phase != Phase::Concurrent {
            let share = g.energy_j.unwrap();
            assert!((share - e).abs() <= 1e-6 * e.max(1.0), "{share} vs {e}");
        }
    }
    // A concurrent pair phase splits the energy: its calls' shares add up to the GPUs'
    // energy over the union of their windows.
    let mut phases: BTreeMap<(String, u32, bool), Vec<&Record>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.ok && r.phase == Phase::Concurrent) {
        phases
            .entry((r.cell_id.clone(), r.rep, r.warmup))
            .or_default()
            .push(r);
    }
    assert!(!phases.is_empty());
    for calls in phases.values() {
        let windows: Vec<(f64, f64)> = calls
            .iter()
            .map(|r| sweep::telemetry::record_window(r).unwrap())
            .collect();
        let want = 200.0 * union_ms(windows) / 1000.0;
        let got: f64 = calls
            .iter()
            .map(|r| r.gpu.as_ref().unwrap().energy_j.unwrap())
            .sum();
        assert!((got - want).abs() <= 0.01 * want, "{got} vs {want}");
    }
    // The raw samples beside the records.
    let pq = run.join(TELEMETRY_PARQUET);
    let df = polars::prelude::ParquetReader::new(std::fs::File::open(&pq).unwrap())
        .finish()
        .unwrap();
    let kinds: Vec<String> = df
        .column("kind")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect();
    let n_gpu = kinds.iter().filter(|k| *k == "gpu").count();
    assert!(n_gpu >= 10 && n_gpu % 2 == 0, "{n_gpu} GPU rows");
    assert!(kinds.iter().any(|k| k == "host"));
    let power: Vec<Option<f64>> = df
        .column("power_w")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .collect();
    for (k, p) in kinds.iter().zip(&power) {
        match k.as_str() {
            "gpu" => assert!(*p == Some(150.0) || *p == Some(50.0), "{p:?}"),
            _ => assert_eq!(*p, None),
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join(TELEMETRY_JSON)).unwrap()).unwrap();
    assert_eq!(json["sessions"][0]["gpu_source"], "nvidia-smi");
    assert_eq!(json["sessions"][0]["gpus"], 2);
    // Energy per token in the analysis: each rep's value is Σ J / Σ output tokens of its
    // calls, recomputed here from the records.
    let out = sweep().arg("analyze").arg(&run).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("analysis/summary.json")).unwrap()).unwrap();
    let mut checked = 0;
    for cell in summary["cells"].as_array().unwrap() {
        let id = cell["cell_id"].as_str().unwrap();
        let metric = cell["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == "j_per_token")
            .unwrap();
        let mut got: Vec<f64> = metric["reps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mut by_rep: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
        for r in recs.iter().filter(|r| {
            r.cell_id == id && !r.warmup && !matches!(r.phase, Phase::Sequential | Phase::Reload)
        }) {
            by_rep.entry(r.rep).or_default().push(r);
        }
        let mut want: Vec<f64> = by_rep
            .values()
            .filter(|rs| rs.iter().all(|r| r.ok && !r.cold))
            .map(|rs| {
                let j: f64 = rs
                    .iter()
                    .map(|r| r.gpu.as_ref().unwrap().energy_j.unwrap())
                    .sum();
                let t: u64 = rs.iter().map(|r| r.output_tokens.unwrap()).sum();
                j / t as f64
            })
            .collect();
        got.sort_by(f64::total_cmp);
        want.sort_by(f64::total_cmp);
        assert_eq!(got.len(), want.len(), "{id}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-9 * w, "{id}: {g} vs {w}");
        }
        checked += got.len();
    }
    assert!(checked >= 4, "{checked} rep values checked");
    // …and in the tables and the gate's metric names.
    let out = sweep()
        .args(["analyze", "--metric", "j_per_token"])
        .arg(&run)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("GPU energy per output token (J/token)"),
        "{text}"
    );
    let out = sweep().arg("report").arg(&run).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(run.join("tables/num_gpu.md")).unwrap();
    assert!(table.contains("J/token"), "{table}");
    assert!(run.join("plots/num_gpu.svg").is_file());
    // The gate takes a threshold on it (2 reps: too few to decide, exit 3, but compared).
    let json = tmp.path().join("compare.json");
    let out = sweep()
        .arg("compare")
        .arg(&run)
        .arg(&run)
        .args(["--threshold", "j_per_token=5%", "--quiet", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = std::fs::read_to_string(&json).unwrap();
    assert!(verdict.contains("\"j_per_token\""), "{verdict}");
}

#[test]
fn missing_gpu_power_is_null_everywhere_not_zero() {
    let server = quiet_server(4, 2, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_smi(tmp.path());
    let spec = write_spec(tmp.path(), &server.url(), 1);
    let env = [
        ("PATH", path_with(&bin)),
        ("SWEEP_GPU_SAMPLER", "nvidia-smi".to_string()),
        ("SWEEP_GPU_INTERVAL_MS", "40".to_string()),
        ("FAKE_SMI_NA", "1".to_string()),
    ];
    let out = run_with(&spec, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(tmp.path(), "tele");
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    for r in recs.iter().filter(|r| r.ok) {
        let g = r.gpu.as_ref().unwrap();
        assert_eq!(
            (g.energy_j, g.window_energy_j, g.max_power_w),
            (None, None, None)
        );
        assert_eq!(g.peak_memory_mib, Some(3000.0));
    }
    let line = std::fs::read_to_string(run.join("records.jsonl")).unwrap();
    assert!(line.contains("\"energy_j\":null"), "stored as null");
    let out = sweep().arg("analyze").arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("analysis/summary.json")).unwrap()).unwrap();
    for cell in summary["cells"].as_array().unwrap() {
        let m = cell["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == "j_per_token")
            .unwrap();
        assert_eq!(m["n_reps"], 0, "{m}");
        assert!(m["estimate"].is_null(), "{m}");
    }
}

#[test]
fn ollama_partial_offload_is_recorded_and_warned_about() {
    let server = quiet_server(4, 2, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 1);
    let out = run_with(&spec, &[("SWEEP_GPU_SAMPLER", "none".to_string())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let run = only_run(tmp.path(), "tele");
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    let probes: Vec<&Record> = recs.iter().filter(|r| r.phase == Phase::Reload).collect();
    let frac = |num_gpu: i64| -> Vec<f64> {
        probes
            .iter()
            .filter(|r| r.options.get("num_gpu") == Some(&OptionValue::Int(num_gpu)))
            .filter_map(|r| r.loaded.as_ref()?.offload_fraction())
            .collect()
    };
    // The peer offloads num_gpu of the model's 35 layers (34 blocks + output).
    let f10 = frac(10);
    assert!(!f10.is_empty(), "{probes:#?}");
    for f in &f10 {
        assert!((f - 10.0 / 35.0).abs() < 0.01, "{f}");
    }
    let f80 = frac(80);
    assert!(!f80.is_empty());
    for f in f80 {
        assert!((f - 1.0).abs() < 1e-12, "{f}");
    }
    assert!(probes.iter().all(|r| r
        .server_state
        .as_ref()
        .and_then(|s| s["layers_total"].as_u64())
        == Some(35)));
    assert!(
        err.contains("partial offload, num_gpu=10 put 29% of gemma3:latest"),
        "{err}"
    );
    assert!(err.contains("(10 of 35 layers)"), "{err}");
    assert!(
        err.contains("num_gpu=80 is above gemma3:latest's 35 layers"),
        "{err}"
    );
    // The analysis and the tables carry the same warnings, and the num_gpu table the figures.
    let out = sweep().arg("report").arg(&run).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(run.join("tables/num_gpu.md")).unwrap();
    assert!(
        table.contains("| 29% |") && table.contains("| 100% |"),
        "{table}"
    );
    assert!(table.contains("?/35"), "{table}");
    // The warnings are the run's: stated once, in the methods the tables cite.
    assert!(table.contains("methods.md"), "{table}");
    let methods = std::fs::read_to_string(run.join("tables/methods.md")).unwrap();
    assert!(methods.contains("partial offload, num_gpu=10"), "{methods}");
    assert!(methods.contains("num_gpu=80 is above"), "{methods}");
    assert!(methods.contains("**Placement and energy.**"), "{methods}");
}

/// Child processes burning CPU; killed (and reaped) on drop.
struct Burners(Vec<Child>);

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_busy_machine_is_named_in_the_run_summary_and_the_tables() {
    let burn = Burners(
        (0..2)
            .map(|_| {
                Command::new("yes")
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("yes")
            })
            .collect(),
    );
    // Let the load average notice.
    std::thread::sleep(Duration::from_millis(300));
    let server = quiet_server(6, 15, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let spec = write_spec(tmp.path(), &server.url(), 1);
    let out = run_with(
        &spec,
        &[
            ("SWEEP_GPU_SAMPLER", "none".to_string()),
            ("SWEEP_HOST_INTERVAL_MS", "100".to_string()),
        ],
    );
    drop(burn);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: the machine was busy during the run"),
        "{err}"
    );
    assert!(err.contains("other processes used"), "{err}");
    assert!(err.contains("yes "), "the burner is named: {err}");
    let run = only_run(tmp.path(), "tele");
    let out = sweep().arg("analyze").arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Warning: the machine was busy during the run"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join(TELEMETRY_JSON)).unwrap()).unwrap();
    assert!(json["sessions"][0]["machine"]["samples"].as_u64().unwrap() >= 2);
    assert!(
        json["sessions"][0]["machine"]["other_cpu_mean_pct"]
            .as_f64()
            .unwrap()
            >= 10.0
    );
}

/// `scripts/gpu-check.sh` needs an NVIDIA GPU to pass, but how it reads a run can be checked
/// here: with a fake `nvidia-smi` and this CPU build, it must run the real sweep, read its
/// records and telemetry, and fail the offload checks (exit 1); and it must refuse a driver
/// older than R580, which the CUDA 13 build cannot use (exit 2).
#[test]
fn gpu_check_script_reads_a_real_run_and_fails_without_a_gpu() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_smi(tmp.path());
    let check = |driver: &str| {
        Command::new("bash")
            .arg(root().join("scripts/gpu-check.sh"))
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("FAKE_DRIVER", driver)
            .env("SWEEP_BIN", env!("CARGO_BIN_EXE_sweep"))
            .env("GPU_CHECK_REPS", "1")
            .env("GPU_CHECK_TOKENS", "16")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };

    let old = check("570.86.15");
    let err = String::from_utf8_lossy(&old.stderr);
    assert_eq!(old.status.code(), Some(2), "{err}");
    assert!(err.contains("driver 570.86.15 is older than R580"), "{err}");

    let out = check("580.95.05");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("Traceback"), "{stderr}");
    for want in [
        "GPU telemetry: nvidia-smi on 2 GPU(s)",
        "num_gpu=0: layers offloaded/total [(0, 19)]",
        "FAIL: num_gpu=8: offloaded 0 of 19, expected 8",
        "FAIL: num_gpu=99: offloaded 0 of 19, expected 19",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in:\n{stdout}");
    }
    assert!(
        !stdout.contains("calls without GPU energy"),
        "every call has its GPU window: {stdout}"
    );
}

/// Energy per token over workload levels (issue 27): 1, 2 and 4 agents at once with the
/// fake `nvidia-smi` (200 W in all, constant). Per unit the workload's J/token is what the
/// records give when recomputed here (Σ the calls' energy shares / Σ their output tokens),
/// and what the physics gives: 200 W over the union of the unit's call windows / its tokens
/// (±1%: the sampler's 40 ms steps at the edges). The energy front is drawn and the
/// workload table has the column.
#[test]
fn energy_per_token_over_workload_levels_and_its_pareto_front() {
    let server = quiet_server(12, 10, FaultPlan::None);
    let tmp = tempfile::tempdir().unwrap();
    let bin = fake_smi(tmp.path());
    let text = format!(
        r#"[experiment]
name = "energy"
repetitions = 3
warmup = 1
seed = 9

[backend]
kind = "ollama"
url = "{url}"
model = "gemma3:latest"
timeout_s = 20

[corpus]
path = "{corpus}"

[run]
results_dir = "{results}"

[[arm]]
name = "load"
agent = "single"
[arm.grid]
agents = [1, 2, 4]
"#,
        url = server.url(),
        corpus = root().join("experiments/corpus/reports/llama3").display(),
        results = tmp.path().join("results").display(),
    );
    let spec = tmp.path().join("energy.toml");
    std::fs::write(&spec, text).unwrap();
    let env = [
        ("PATH", path_with(&bin)),
        ("SWEEP_GPU_SAMPLER", "nvidia-smi".to_string()),
        ("SWEEP_GPU_INTERVAL_MS", "40".to_string()),
        ("SWEEP_HOST_INTERVAL_MS", "200".to_string()),
    ];
    let out = run_with(&spec, &env);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = only_run(tmp.path(), "energy");
    let recs = read_records(&run.join("records.jsonl")).unwrap().records;
    // Per (cell, rep): Σ energy, Σ tokens, the call windows.
    type Unit = (f64, f64, Vec<(f64, f64)>);
    let mut units: BTreeMap<(String, u32), Unit> = BTreeMap::new();
    for r in recs
        .iter()
        .filter(|r| !r.warmup && r.ok && r.phase != Phase::Reload)
    {
        let u = units.entry((r.cell_id.clone(), r.rep)).or_default();
        u.0 += r.gpu.as_ref().and_then(|g| g.energy_j).unwrap();
        u.1 += r.output_tokens.unwrap() as f64;
        u.2.push(sweep::telemetry::record_window(r).unwrap());
    }
    let a = sweep::analysis::analyze(&run, &sweep::analysis::AnalysisOptions::default()).unwrap();
    let w = &a.workload;
    assert_eq!(w.levels.len(), 3);
    for l in &w.levels {
        let got = l
            .energy_per_token_j
            .as_ref()
            .unwrap_or_else(|| panic!("{l:?}"));
        let mut want: Vec<f64> = units
            .iter()
            .filter(|((cell, _), _)| *cell == l.cell_id)
            .map(|(_, (j, t, _))| j / t)
            .collect();
        let mut have = got.reps.clone();
        want.sort_by(f64::total_cmp);
        have.sort_by(f64::total_cmp);
        assert_eq!(have.len(), 3, "{l:?}");
        for (h, w) in have.iter().zip(&want) {
            assert!(
                (h - w).abs() <= 1e-9 * w,
                "{}: {have:?} vs {want:?}",
                l.cell_id
            );
        }
    }
    for ((cell, rep), (j, t, windows)) in units {
        let physics = 200.0 * union_ms(windows) / 1000.0 / t;
        assert!(
            ((j / t) - physics).abs() <= 0.01 * physics,
            "{cell} rep {rep}: {} J/token vs {physics}",
            j / t
        );
    }
    assert!(!w.pareto_energy.is_empty(), "{w:?}");
    assert!(run.join("plots/pareto_energy.svg").is_file());
    let table = std::fs::read_to_string(run.join("tables/workload.md")).unwrap();
    assert!(
        table.contains("GPU J/token") && table.contains("energy front"),
        "{table}"
    );
}
